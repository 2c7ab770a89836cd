"""TrainConfig: every option that decides a training run, defined once.

`fit(model, train, val, config=None, **options)` takes a TrainConfig, options named as its
fields, or both (an option replaces the config's field); an option that is not a field is a
TypeError naming it and the valid ones. `statefulrnn train`'s options (`TableTrainConfig`)
extend this class with the table's, so the command line, TOML files and `fit` read one
definition. A TrainConfig checks itself when it is made: one that exists is valid as far as it
can be without the data (`fit` checks the data against it).

Imports no torch at module level: the command line builds its parser from these fields.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from numbers import Integral
from typing import TYPE_CHECKING, Any

from statefulrnn.modes import TRAIN_MODES

if TYPE_CHECKING:
    import torch

OptimizerFactory = Callable[[Any], "torch.optim.Optimizer"]
# the optimizers known by name (train/fit.py makes them, on torch's fused or foreach kernels
# where the parameters allow); "keras-rmsprop" has Keras's defaults
OPTIMIZER_NAMES = ("adam", "adamw", "rmsprop", "keras-rmsprop", "sgd")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; written into checkpoints and run folders."""

    mode: str = "stateful"  # "stateless": every window starts from a zero (or burnt-in) state
    window: int = 50  # steps per chunk; gradients stop at chunk edges (k1 of TBPTT)
    batch_size: int = 32  # lanes (stateful) or windows (stateless) per optimizer step
    epochs: int = 10  # passes over the training sequences
    loss: str = "mse"  # "mse", "bce" (logits out), "ce" (one logit per class)
    # one of OPTIMIZER_NAMES, or a factory: params -> optimizer
    optimizer: str | OptimizerFactory = "adam"
    lr: float = 1e-3  # learning rate (a factory sets its own)
    clip: float | None = None  # max global gradient norm; None: no clipping
    seed: int = 0  # sequence/window order and dropout; same seed, same history
    stride: int | None = None  # stateless: steps between window starts (default: window)
    target: str = "all"  # stateless: "all" steps of a window scored, or the "last" only
    backprop: int | None = (
        None  # stateful: k2 >= window steps of gradient per chunk (TBPTT(k1, k2))
    )
    burn_in: int | str | None = (
        None  # stateless: steps run before each window without gradient, or "all"
    )
    shuffle: bool = True  # shuffle sequence (stateful) or window (stateless) order per epoch
    # windowed validation loss (val_loss_windowed): its window; stateless runs score it always
    # (default: window), stateful runs only when it is given
    val_window: int | None = None
    metrics: tuple[str, ...] | None = None  # e.g. ("accuracy",); None: the loss's defaults

    def __post_init__(self) -> None:
        if self.metrics is not None and not isinstance(self.metrics, tuple):
            object.__setattr__(self, "metrics", tuple(self.metrics))  # a list given: frozen
        _check(self)

    @property
    def optimizer_name(self) -> str:
        """The optimizer as a checkpoint records it: its name, or a factory's `__name__`."""
        if isinstance(self.optimizer, str):
            return self.optimizer
        return getattr(self.optimizer, "__name__", "factory")

    def record(self) -> dict[str, Any]:
        """The fields as plain data (a factory by its name), for checkpoints and run folders."""
        out = {f.name: getattr(self, f.name) for f in fields(TrainConfig)}
        out["optimizer"] = self.optimizer_name
        return out


def option_names() -> list[str]:
    """The options a TrainConfig holds, in definition order."""
    return [f.name for f in fields(TrainConfig)]


def resolve(
    config: TrainConfig | None,
    options: Mapping[str, Any],
    *,
    caller: str = "fit()",
    others: Iterable[str] = (),
) -> TrainConfig:
    """`config` (default: TrainConfig()) as a plain TrainConfig, with `options` in place of its
    fields; an unknown option is a TypeError naming it, the closest option, and the valid ones
    (`others`: the caller's own keyword arguments, named in the message too)."""
    names = option_names()
    unknown = [k for k in options if k not in names]
    if unknown:
        key, valid = unknown[0], names + list(others)
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"{caller} got an unknown option {key!r}.{hint} Valid options: {', '.join(valid)}."
        )
    if config is None:
        return TrainConfig(**options)
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"config must be a statefulrnn.TrainConfig; received {type(config).__name__}. "
            "Give options as keywords instead, e.g. fit(model, train, window=50, epochs=10)."
        )
    if type(config) is not TrainConfig:  # a subclass (TableTrainConfig): its training fields
        config = TrainConfig(**{name: getattr(config, name) for name in names})
    return replace(config, **options) if options else config


def _is_count(v: Any, low: int) -> bool:
    """An integer (Python or numpy, not bool) >= low."""
    return isinstance(v, Integral) and not isinstance(v, bool) and int(v) >= low


def _check(cfg: TrainConfig) -> None:
    from statefulrnn import losses  # imports torch: only when a config is made, not when read

    if cfg.mode not in TRAIN_MODES:
        raise ValueError(f"unknown mode {cfg.mode!r}; choose one of {TRAIN_MODES}.")
    losses.get_loss(cfg.loss)
    if not callable(cfg.optimizer) and cfg.optimizer not in OPTIMIZER_NAMES:
        raise ValueError(
            f"unknown optimizer {cfg.optimizer!r}; choose one of {sorted(OPTIMIZER_NAMES)} "
            "or pass a factory such as lambda p: torch.optim.Adam(p, lr=1e-3)."
        )
    for name in ("window", "batch_size"):
        v = getattr(cfg, name)
        if not _is_count(v, 1):
            raise ValueError(f"{name} must be an integer >= 1; received {v!r}.")
    if not isinstance(cfg.epochs, int) or cfg.epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0; received {cfg.epochs!r}.")
    if not (isinstance(cfg.lr, (int, float)) and cfg.lr > 0):
        raise ValueError(f"lr must be a positive number; received {cfg.lr!r}.")
    if cfg.clip is not None and not cfg.clip > 0:
        raise ValueError(f"clip must be a positive gradient norm or None; received {cfg.clip!r}.")
    if cfg.backprop is not None:
        if cfg.mode != "stateful":
            raise ValueError(
                "backprop (k2 of TBPTT) applies to mode='stateful'; stateless windows use burn_in."
            )
        if not isinstance(cfg.backprop, int) or cfg.backprop < cfg.window:
            raise ValueError(
                f"backprop must be an integer >= window ({cfg.window}); received {cfg.backprop!r}."
            )
    if cfg.burn_in is not None:
        if cfg.mode != "stateless":
            raise ValueError(
                "burn_in applies to mode='stateless'; stateful training already carries state."
            )
        if cfg.burn_in != "all" and (not isinstance(cfg.burn_in, int) or cfg.burn_in < 0):
            raise ValueError(f"burn_in must be an integer >= 0 or 'all'; received {cfg.burn_in!r}.")
    for m in cfg.metrics or ():
        if m not in losses.METRICS:
            raise ValueError(f"unknown metric {m!r}; choose from {sorted(losses.METRICS)}.")
        if m == "accuracy" and cfg.loss == "mse":
            raise ValueError("metric 'accuracy' needs loss 'bce' or 'ce'.")
