"""Models: state in, state out; no schedules, no training."""

from statefulrnn.model.base import RecurrentModel, load_extra, load_model, register
from statefulrnn.model.rnn import CELLS, StatefulRNN
from statefulrnn.model.state import State

__all__ = [
    "CELLS",
    "RecurrentModel",
    "State",
    "StatefulRNN",
    "load_extra",
    "load_model",
    "register",
]
