"""Predict and evaluate: stateful (one O(T) pass carrying state) or windowed (Keras stateless).

Stateful: every sequence runs once from a zero state, chunk after chunk, state carried; many
sequences run side by side in lanes. Windowed: the output at step t comes from a fresh pass
over the `window` steps ending at t (fewer at the start), from a zero state, or from the state
reached by `burn_in` steps before the window. Both are batched; neither keeps gradients.

    # windowed, window 3, one sequence of 5 steps: rows of one batch, ^ = output kept
    # row 0:  x0 x1 x2      outputs at t = 0, 1, 2  (the first window also serves t < window)
    #         ^  ^  ^
    # row 1:  x1 x2 x3      output at t = 3
    #               ^
    # row 2:  x2 x3 x4      output at t = 4
    #               ^

The passes themselves, and `score`, live in `statefulrnn.outputs` (training validates with them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from statefulrnn import losses
from statefulrnn.data.schedule import pack
from statefulrnn.data.sequences import Sequences
from statefulrnn.model.base import RecurrentModel
from statefulrnn.outputs import WINDOWED_ROWS, outputs_in_model_units, score
from statefulrnn.threads import check as check_threads
from statefulrnn.threads import for_model as threads_for

if TYPE_CHECKING:
    from statefulrnn.bundle import ModelBundle

def _unpack(packed_out: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [packed_out[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _bundle_of(model) -> ModelBundle | None:
    """The bundle to answer through: `model` itself, or the one `sr.fit`/a model folder
    recorded on it; None for a bare network."""
    from statefulrnn.bundle import ModelBundle

    if isinstance(model, ModelBundle):
        return model
    if getattr(model, "bundle_info", None):
        return ModelBundle.of(model)
    return None


def _check_loss(bundle: ModelBundle, loss: str | None) -> None:
    if loss is not None and loss != bundle.loss:
        raise ValueError(
            f"this model was trained with loss {bundle.loss!r} and answers through its link "
            f"({bundle.link}); loss={loss!r} contradicts it. Leave loss out, or pass raw=True "
            "for the network's own outputs."
        )


def predict(
    model: RecurrentModel | ModelBundle,
    sequences: Sequences,
    *,
    mode: str | None = None,
    window: int | None = None,
    burn_in: int | str | None = None,
    batch_size: int = 256,
    loss: str | None = None,
    raw: bool = False,
    threads: int | None = None,
) -> list[np.ndarray]:
    """Model outputs for every step of every sequence: a list of `[T_i, O]` arrays (see
    `_predict` for the modes and bundles). `threads`: CPU threads for the call (None: one
    while the recurrent step is small, see statefulrnn/threads.py; the caller's setting is
    restored afterwards)."""
    check_threads(threads)
    with threads_for(threads, _network(model), _rows(mode, batch_size)):
        return _predict(model, sequences, mode=mode, window=window, burn_in=burn_in,
                        batch_size=batch_size, loss=loss, raw=raw)  # fmt: skip


def evaluate(
    model: RecurrentModel | ModelBundle,
    sequences: Sequences,
    *,
    loss: str | None = None,
    mode: str | None = None,
    window: int | None = None,
    burn_in: int | str | None = None,
    metrics: list[str] | None = None,
    batch_size: int = 256,
    raw: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """`{"loss": ..., <metric>: ...}` (see `_evaluate`); `threads` as in `predict`."""
    check_threads(threads)
    with threads_for(threads, _network(model), _rows(mode, batch_size)):
        return _evaluate(model, sequences, loss=loss, mode=mode, window=window, burn_in=burn_in,
                         metrics=metrics, batch_size=batch_size, raw=raw)  # fmt: skip


def _network(model) -> RecurrentModel:
    return model if isinstance(model, RecurrentModel) else model.model


def _rows(mode: str | None, batch_size: int) -> int:
    """Rows of one recurrent step: lanes (stateful) or a batch of window rows (windowed)."""
    return WINDOWED_ROWS if mode == "windowed" else batch_size


def _predict(
    model: RecurrentModel | ModelBundle,
    sequences: Sequences,
    *,
    mode: str | None = None,
    window: int | None = None,
    burn_in: int | str | None = None,
    batch_size: int = 256,
    loss: str | None = None,
    raw: bool = False,
) -> list[np.ndarray]:
    """Model outputs for every step of every sequence: a list of `[T_i, O]` arrays.

    `mode="stateful"`: one pass per sequence carrying state, O(T). `mode="windowed"`: a fresh
    pass over the `window` steps ending at each step, O(T·window), as a Keras stateless model
    predicts. `loss="bce"`/`"ce"` turns logits into probabilities.

    A `ModelBundle`, or a model trained by `sr.fit` (or loaded from a folder that has a
    bundle), answers in the user's units: inputs scaled as in training, outputs through the
    loss's link (probabilities for bce/ce) and back in the targets' units; `mode` and `window`
    default to the training ones. `raw=True` skips the bundle: the network's own outputs.
    """
    bundle = None if raw else _bundle_of(model)
    if bundle is not None:
        _check_loss(bundle, loss)
        return bundle.predict(
            sequences, mode=mode, window=window, burn_in=burn_in, batch_size=batch_size
        )
    out = outputs_in_model_units(_network(model), sequences, mode or "stateful", window, burn_in, batch_size)
    if loss is not None:
        out = losses.to_probabilities(torch.from_numpy(out), loss).numpy()
    return _unpack(out, pack(sequences).offsets)


def _evaluate(
    model: RecurrentModel | ModelBundle,
    sequences: Sequences,
    *,
    loss: str | None = None,
    mode: str | None = None,
    window: int | None = None,
    burn_in: int | str | None = None,
    metrics: list[str] | None = None,
    batch_size: int = 256,
    raw: bool = False,
) -> dict[str, Any]:
    """`{"loss": ..., <metric>: ...}`: weighted means over every scored step, predicted in `mode`.

    With a bundle (see `predict`), `sequences` are in the user's units and are scaled as in
    training; the loss is the training loss, on the network's scale (the number `fit`'s
    validation reports). `loss` defaults to the bundle's, else "mse"; `mode` to the training
    mode's prediction mode, else "stateful".
    """
    bundle = None if raw else _bundle_of(model)
    if bundle is not None:
        _check_loss(bundle, loss)
        loss = bundle.loss
        mode = mode or bundle.predict_mode
        if mode == "windowed":
            window = window or bundle.window
            burn_in = bundle.fit.get("burn_in") if burn_in is None else burn_in
        sequences = bundle.to_model_sequences(sequences)
        model = bundle.model
    loss = loss or "mse"
    losses.get_loss(loss)
    metrics = losses.default_metrics(loss) if metrics is None else list(metrics)
    out = outputs_in_model_units(_network(model), sequences, mode or "stateful", window, burn_in, batch_size)
    return score(out, sequences, loss, metrics)


def error_by_step(packed_out: np.ndarray, seqs: Sequences, loss: str = "mse") -> np.ndarray:
    """Weighted mean per-step loss at each time index t (over sequences scored at t); NaN where none."""
    packed = pack(seqs)
    lengths = seqs.lengths
    t = np.arange(packed.offsets[-1]) - np.repeat(packed.offsets[:-1], lengths)
    step_loss = losses.step_loss(
        loss, torch.from_numpy(packed_out), torch.from_numpy(packed.y)
    ).numpy()
    wn = packed.w
    num = np.bincount(t, weights=step_loss * wn, minlength=int(lengths.max()))
    den = np.bincount(t, weights=wn, minlength=int(lengths.max()))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
