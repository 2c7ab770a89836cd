"""statefulrnn: recurrent models that remember more than one training window.

Sequences become stateful schedules (lanes, chunks, resets, weights) or stateless windows;
models carry state across chunks through PyTorch's fused kernels; prediction is stateful
(one O(T) pass) or windowed; streams serve many sequences step by step.
"""

from statefulrnn.bundle import ModelBundle, load_bundle
from statefulrnn.data import Chunk, Schedule, Sequences, stateful_schedule, stateless_schedule
from statefulrnn.data.files import read_sequences
from statefulrnn.keras import from_keras
from statefulrnn.model import RecurrentModel, State, StatefulRNN, load_model
from statefulrnn.predict import evaluate, predict
from statefulrnn.streams import StreamPool
from statefulrnn.train import Callback, EarlyStopping, History, TrainConfig, TrainingDiverged, fit

__version__ = "0.1.0"


def __getattr__(name: str):
    # sr.sweep on first use: Optuna is an optional extra, and `import statefulrnn` must not need it
    if name == "sweep":
        from statefulrnn.experiments.sweep import sweep

        return sweep
    raise AttributeError(f"module 'statefulrnn' has no attribute {name!r}")


__all__ = [
    "Callback",
    "EarlyStopping",
    "ModelBundle",
    "load_bundle",
    "History",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "predict",
    "Chunk",
    "RecurrentModel",
    "Schedule",
    "Sequences",
    "State",
    "StreamPool",
    "StatefulRNN",
    "from_keras",
    "load_model",
    "read_sequences",
    "stateful_schedule",
    "stateless_schedule",
    "sweep",
]
