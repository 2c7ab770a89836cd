"""Per-step weighted losses and metrics, on tensors only.

Every loss returns `(weighted_sum, weight_sum)` over a chunk's steps, so a caller can form a
weighted mean over one chunk, a whole epoch, or all ranks of a distributed run without
re-weighting. Targets: `mse` any real values; `bce` in [0, 1] with logits out of the model;
`ce` class indices stored as floats in `y[..., 0]` with one logit per class out of the model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def _mean_last(t: Tensor) -> Tensor:
    # the mean of one value is that value, bit for bit: a view, not a reduction, for the
    # common one-output case (per-step training does one of these per optimizer update)
    return t.squeeze(-1) if t.shape[-1] == 1 else t.mean(-1)


def _mse_steps(y_hat: Tensor, y: Tensor) -> Tensor:
    return _mean_last((y_hat - y).square())


def _bce_steps(y_hat: Tensor, y: Tensor) -> Tensor:
    return _mean_last(F.binary_cross_entropy_with_logits(y_hat, y, reduction="none"))


def _ce_steps(y_hat: Tensor, y: Tensor) -> Tensor:
    logits = y_hat.reshape(-1, y_hat.shape[-1])
    return F.cross_entropy(logits, y[..., 0].reshape(-1).long(), reduction="none").view(
        y.shape[:-1]
    )


STEP_LOSSES = {"mse": _mse_steps, "bce": _bce_steps, "ce": _ce_steps}


def _weighted(step_loss):
    def loss(y_hat: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        return (step_loss(y_hat, y) * w).sum(), w.sum()

    loss.__name__ = step_loss.__name__.strip("_").removesuffix("_steps")
    return loss


mse, bce, ce = (_weighted(STEP_LOSSES[k]) for k in ("mse", "bce", "ce"))


def step_loss(name: str, y_hat: Tensor, y: Tensor) -> Tensor:
    """The unweighted loss of every step: shape of y without its last dim."""
    get_loss(name)
    return STEP_LOSSES[name](y_hat, y)


LOSSES: dict[str, LossFn] = {"mse": mse, "bce": bce, "ce": ce}


def accuracy(y_hat: Tensor, y: Tensor, w: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """Weighted share of steps predicted right: bce thresholds logits at 0, ce takes argmax."""
    if loss == "bce":
        right = ((y_hat > 0) == (y > 0.5)).all(-1)
    elif loss == "ce":
        right = y_hat.argmax(-1) == y[..., 0].long()
    else:
        raise ValueError(f"accuracy needs loss 'bce' or 'ce'; the loss is {loss!r}.")
    return (right.to(w.dtype) * w).sum(), w.sum()


METRICS = {"accuracy": accuracy}


def get_loss(name: str) -> LossFn:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}.")
    return LOSSES[name]


def default_metrics(loss: str) -> list[str]:
    return ["accuracy"] if loss in ("bce", "ce") else []


def check_targets(
    loss: str, ys: list[np.ndarray], ws: list[np.ndarray], output_size: int, what: str
) -> None:
    """Refuse targets the loss cannot score, naming the sequence and step."""
    if loss == "mse":
        if ys[0].shape[1] != output_size:
            raise ValueError(
                f"{what}: targets have {ys[0].shape[1]} values per step but the model outputs "
                f"{output_size}; for loss 'mse' they must match."
            )
        return
    for i, (y, w) in enumerate(zip(ys, ws)):
        scored = w > 0
        if loss == "bce":
            if y.shape[1] != output_size:
                raise ValueError(
                    f"{what}: targets have {y.shape[1]} values per step but the model outputs "
                    f"{output_size} logits; for loss 'bce' they must match."
                )
            bad = scored[:, None] & ((y < 0) | (y > 1))
            if bad.any():
                t = int(np.argmax(bad.any(1)))
                raise ValueError(
                    f"{what}: loss 'bce' needs targets in [0, 1], but sequence {i} has "
                    f"{y[t].tolist()} at step {t}."
                )
        elif loss == "ce":
            if y.shape[1] != 1:
                raise ValueError(
                    f"{what}: loss 'ce' needs one class index per step; targets have {y.shape[1]} values."
                )
            c = y[:, 0]
            bad = scored & ((c != np.round(c)) | (c < 0) | (c >= output_size))
            if bad.any():
                t = int(np.argmax(bad))
                raise ValueError(
                    f"{what}: loss 'ce' needs class indices 0..{output_size - 1}, but sequence {i} "
                    f"has {c[t]} at step {t}."
                )


def to_probabilities(y_hat: Tensor, loss: str) -> Tensor:
    """What a user wants back from logits: sigmoid for bce, softmax for ce, as is for mse."""
    if loss == "bce":
        return torch.sigmoid(y_hat)
    if loss == "ce":
        return torch.softmax(y_hat, -1)
    return y_hat
