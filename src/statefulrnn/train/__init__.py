"""Training: fit on stateful or stateless schedules, with history, callbacks and checkpoints."""

from statefulrnn.train.callbacks import Callback, EarlyStopping
from statefulrnn.train.fit import TrainConfig, TrainingDiverged, fit
from statefulrnn.train.history import History

__all__ = ["Callback", "EarlyStopping", "History", "TrainConfig", "TrainingDiverged", "fit"]
