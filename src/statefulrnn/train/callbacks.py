"""Plain callback objects: called after every epoch with its record; return True to stop."""

from __future__ import annotations

import copy
import math
from typing import Any


class Callback:
    def on_train_begin(self, model, history) -> None:  # noqa: B027 - optional hook
        pass

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model) -> bool:
        """Return True to stop training after this epoch."""
        return False

    def on_train_end(self, model) -> None:  # noqa: B027 - optional hook
        pass


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs.

    With `restore_best=True` the model ends with the weights of its best epoch. `monitor`
    defaults (None) to what matches the training mode, set by `fit`: "val_loss_windowed" for
    stateless training (the model will be used windowed), "val_loss" for stateful, "loss"
    without validation data.
    """

    def __init__(
        self,
        monitor: str | None = None,
        patience: int = 10,
        min_delta: float = 0.0,
        mode: str = "min",
        restore_best: bool = True,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; received {mode!r}.")
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.mode, self.restore_best = mode, restore_best
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_weights = None
        self.waited = 0

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model) -> bool:
        if self.monitor is None:  # used outside fit: the stateful default
            self.monitor = "val_loss" if "val_loss" in record else "loss"
        if self.monitor not in record:
            hint = "pass val=... to fit, or monitor 'loss'"
            if self.monitor.endswith("_windowed") and "val_loss" in record:
                hint = "a stateful run scores its windowed validation only with val_window=N"
            raise KeyError(
                f"EarlyStopping monitors {self.monitor!r}, but the epoch record has only "
                f"{sorted(record)}; {hint}."
            )
        value = record[self.monitor]
        if value is None or not math.isfinite(value):
            self.waited += 1
        elif self._better(value):
            self.best, self.best_epoch, self.waited = value, epoch, 0
            if self.restore_best:
                self.best_weights = copy.deepcopy(model.state_dict())
        else:
            self.waited += 1
        return self.waited >= self.patience

    def on_train_end(self, model) -> None:
        if self.restore_best and self.best_weights is not None:
            model.load_state_dict(self.best_weights)
