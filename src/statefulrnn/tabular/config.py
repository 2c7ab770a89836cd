"""The options of `statefulrnn train`: fit's TrainConfig plus the table's, and their defaults.

`TableTrainConfig` extends `train.config.TrainConfig`, so the training options (mode, window,
loss, batch_size, epochs, lr, clip, ...) are defined, defaulted and checked in one place and
reach `fit` as they are; this class adds the table's columns, the model's shape and the
validation split, and sets two defaults of its own (epochs 20, clip 1.0).

Kept apart from `tabular.train` and free of torch: the command line builds its parser, with
every default in its help, from this module without importing the model.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from typing import Any

from statefulrnn.model import cells
from statefulrnn.train.config import TrainConfig

# what `monitor` may name: the validation loss of stateful or of windowed prediction
MONITORS = ("val_loss", "val_loss_windowed")


@dataclass(frozen=True, kw_only=True)
class TableTrainConfig(TrainConfig):
    """Everything `statefulrnn train` takes; written resolved into MODEL_DIR/extra.json.

    The training options are TrainConfig's (checked when made); `check()` adds the table's."""

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
    epochs: int = 20  # at most; early stopping may end sooner
    clip: float | None = 1.0  # max gradient norm; None: no clipping
    cell: str = "lstm"  # a registered cell: model/cells/
    hidden: int = 64  # hidden units per layer
    layers: int = 1  # stacked recurrent layers
    val: float = 0.2  # fraction of each id's tail held out; 0: no validation
    patience: int = 5  # epochs without a better validation loss before stopping; 0: never
    # the validation loss that early stopping watches and the kept epoch is chosen by:
    # "val_loss" (stateful prediction) or "val_loss_windowed"; None: the training mode's
    monitor: str | None = None
    device: str | None = None  # "cpu", "cuda", "cuda:1", ...; None: CPU

    def check(self) -> None:
        cells.get(self.cell)  # a ValueError naming the registered cells if unknown
        if self.loss == "ce" and len(self.targets) != 1:
            raise ValueError(
                f"loss 'ce' takes one target column holding class indices 0..K-1; received "
                f"{len(self.targets)} ({', '.join(self.targets)})."
            )
        if not 0.0 <= self.val < 1.0:
            raise ValueError(f"val must be a fraction in [0, 1); received {self.val}.")
        if not self.targets:
            raise ValueError("name at least one target column (--targets).")
        for name in ("hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; received {getattr(self, name)}.")
        if self.monitor not in (None, *MONITORS):
            raise ValueError(f"monitor must be one of {MONITORS}; received {self.monitor!r}.")
        if self.patience < 0 or self.horizon < 0:
            raise ValueError("patience and horizon must be >= 0.")


def defaults() -> dict[str, Any]:
    """Every option's default (those without one, `data` `out` `features` `targets`, left out)."""
    return {f.name: f.default for f in fields(TableTrainConfig) if f.default is not MISSING}
