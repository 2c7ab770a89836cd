"""Training: fit on stateful or stateless schedules, with history, callbacks and checkpoints.

Names are imported on first use (`statefulrnn._lazy`), so `train.config` (what the command
line reads to build its parser) stays torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from statefulrnn._lazy import attach

_EXPORTS = {
    "Callback": "statefulrnn.train.callbacks",
    "EarlyStopping": "statefulrnn.train.callbacks",
    "History": "statefulrnn.train.history",
    "TrainConfig": "statefulrnn.train.config",
    "TrainingDiverged": "statefulrnn.train.fit",
    "fit": "statefulrnn.train.fit",
}
__all__ = ["Callback", "EarlyStopping", "History", "TrainConfig", "TrainingDiverged", "fit"]
__getattr__, __dir__ = attach(__name__, _EXPORTS)

if TYPE_CHECKING:
    from statefulrnn.train.callbacks import Callback, EarlyStopping
    from statefulrnn.train.config import TrainConfig
    from statefulrnn.train.fit import TrainingDiverged, fit
    from statefulrnn.train.history import History
