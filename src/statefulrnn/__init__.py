"""statefulrnn: recurrent models that remember more than one training window.

Sequences become stateful schedules (lanes, chunks, resets, weights) or stateless windows;
models carry state across chunks through PyTorch's fused kernels; prediction is stateful
(one O(T) pass) or windowed; streams serve many sequences step by step.

The public names below are imported on first use (`statefulrnn._lazy`): `import statefulrnn`
and the command line's `--help` do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import statefulrnn._openmp  # noqa: F401  (first: OpenMP threads sleep, not spin, when they wait)
from statefulrnn._lazy import attach

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "ModelBundle": "statefulrnn.bundle",
    "load_bundle": "statefulrnn.bundle",
    "Callback": "statefulrnn.train.callbacks",
    "EarlyStopping": "statefulrnn.train.callbacks",
    "History": "statefulrnn.train.history",
    "TrainConfig": "statefulrnn.train.config",
    "TrainingDiverged": "statefulrnn.train.fit",
    "fit": "statefulrnn.train.fit",
    "evaluate": "statefulrnn.predict",
    "predict": "statefulrnn.predict",
    "Chunk": "statefulrnn.data.schedule",
    "Schedule": "statefulrnn.data.schedule",
    "stateful_schedule": "statefulrnn.data.schedule",
    "stateless_schedule": "statefulrnn.data.schedule",
    "Sequences": "statefulrnn.data.sequences",
    "read_sequences": "statefulrnn.data.files",
    "RecurrentModel": "statefulrnn.model.base",
    "load_model": "statefulrnn.model.base",
    "State": "statefulrnn.model.state",
    "StatefulRNN": "statefulrnn.model.rnn",
    "StreamPool": "statefulrnn.streams.pool",
    "from_keras": "statefulrnn.keras",
    "sweep": "statefulrnn.experiments.sweep",  # needs Optuna (the `sweep` extra) when read
}
__all__ = [
    "Callback",
    "EarlyStopping",
    "ModelBundle",
    "load_bundle",
    "History",
    "TrainConfig",
    "TrainingDiverged",
    "fit",
    "evaluate",
    "predict",
    "Chunk",
    "Schedule",
    "stateful_schedule",
    "stateless_schedule",
    "Sequences",
    "read_sequences",
    "RecurrentModel",
    "load_model",
    "State",
    "StatefulRNN",
    "StreamPool",
    "from_keras",
    "sweep",
]

__getattr__, __dir__ = attach(__name__, _EXPORTS)


if TYPE_CHECKING:  # the names as the type checker and editors see them
    from statefulrnn.bundle import ModelBundle, load_bundle
    from statefulrnn.data.files import read_sequences
    from statefulrnn.data.schedule import Chunk, Schedule, stateful_schedule, stateless_schedule
    from statefulrnn.data.sequences import Sequences
    from statefulrnn.experiments.sweep import sweep
    from statefulrnn.keras import from_keras
    from statefulrnn.model.base import RecurrentModel, load_model
    from statefulrnn.model.rnn import StatefulRNN
    from statefulrnn.model.state import State
    from statefulrnn.predict import evaluate, predict
    from statefulrnn.streams.pool import StreamPool
    from statefulrnn.train.callbacks import Callback, EarlyStopping
    from statefulrnn.train.config import TrainConfig
    from statefulrnn.train.fit import TrainingDiverged, fit
    from statefulrnn.train.history import History
