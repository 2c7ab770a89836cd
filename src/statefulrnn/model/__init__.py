"""Models: state in, state out; no schedules, no training."""

from statefulrnn.model.base import RecurrentModel, load_extra, load_model, register
from statefulrnn.model.cells import CELLS, CellSpec
from statefulrnn.model.rnn import StatefulRNN
from statefulrnn.model.state import State

__all__ = [
    "CELLS",
    "CellSpec",
    "RecurrentModel",
    "State",
    "StatefulRNN",
    "load_extra",
    "load_model",
    "register",
]
