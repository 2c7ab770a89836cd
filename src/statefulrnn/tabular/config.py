"""The options of `statefulrnn train` (one frozen dataclass) and their defaults.

Kept apart from `tabular.train` and free of torch: the command line builds its parser, with
every default in its help, from this module without importing the model.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from statefulrnn.model import cells

MODES = ("stateful", "stateless")


@dataclass(frozen=True)
class TableTrainConfig:
    """Everything `statefulrnn train` takes; written resolved into MODEL_DIR/extra.json."""

    data: str  # CSV or Parquet file
    out: str  # model folder to write (replaced if it exists)
    features: tuple[str, ...]  # input columns
    targets: tuple[str, ...]  # target columns (may also be features, with horizon >= 1)
    id: str | None = None  # one sequence per distinct id; None: the whole table is one
    time: str | None = None  # orders rows within an id; None: file order
    weight: str | None = None  # per-row weight of the target (0 = not scored)
    horizon: int = 0  # predict the targets this many rows ahead
    fill: str | None = None  # "forward": carry an id's last value into missing cells
    drop: bool = False  # drop rows with missing values (counted in the report)
    sort: bool = False  # sort each id by time instead of refusing unsorted rows
    mode: str = "stateful"  # "stateless": every window starts from a zero state
    window: int = 50  # steps per chunk (stateful) or per window (stateless)
    loss: str = "mse"  # "mse" (real targets), "bce" (0/1 targets), "ce" (one class-index target)
    stride: int | None = None  # stateless: steps between window starts (None: window)
    target: str = "all"  # stateless: score "all" steps of a window, or the "last" only
    burn_in: int | str | None = None  # stateless: steps run (no gradient) before each window
    backprop: int | None = None  # stateful: k2 >= window steps of gradient per chunk
    val_window: int | None = None  # stateless: window of the windowed validation (None: window)
    batch_size: int = 32  # lanes (stateful) or windows (stateless) per optimizer step
    epochs: int = 20  # at most; early stopping may end sooner
    cell: str = "lstm"  # a registered cell: model/cells/
    hidden: int = 64  # hidden units per layer
    layers: int = 1  # stacked recurrent layers
    optimizer: str = "adam"  # "adam", "adamw", "rmsprop", "keras-rmsprop", "sgd"
    lr: float = 1e-3  # the optimizer's learning rate
    shuffle: bool = True  # shuffle sequence (stateful) or window (stateless) order per epoch
    val: float = 0.2  # fraction of each id's tail held out; 0: no validation
    patience: int = 5  # epochs without a better validation loss before stopping; 0: never
    clip: float | None = 1.0  # max gradient norm; None: no clipping
    seed: int = 0  # weights, order of sequences and windows
    device: str | None = None  # "cpu", "cuda", "cuda:1", ...; None: CPU

    def check(self) -> None:
        from statefulrnn import losses  # imports torch: only when a run starts

        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; received {self.mode!r}.")
        cells.get(self.cell)  # a ValueError naming the registered cells if unknown
        losses.get_loss(self.loss)
        if self.loss == "ce" and len(self.targets) != 1:
            raise ValueError(
                f"loss 'ce' takes one target column holding class indices 0..K-1; received "
                f"{len(self.targets)} ({', '.join(self.targets)})."
            )
        if not 0.0 <= self.val < 1.0:
            raise ValueError(f"val must be a fraction in [0, 1); received {self.val}.")
        if not self.targets:
            raise ValueError("name at least one target column (--targets).")
        for name in ("window", "batch_size", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; received {getattr(self, name)}.")
        if self.epochs < 0 or self.patience < 0 or self.horizon < 0:
            raise ValueError("epochs, patience and horizon must be >= 0.")


def defaults() -> dict[str, Any]:
    """Every option's default (those without one, `data` `out` `features` `targets`, left out)."""
    return {f.name: f.default for f in fields(TableTrainConfig) if f.default is not MISSING}
