"""Models: state in, state out; no schedules, no training.

Names are imported on first use (`statefulrnn._lazy`): the cell registry (`model.cells`) is
torch-free, and the command line reads it to build `--cell` without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from statefulrnn._lazy import attach

_EXPORTS = {
    "CELLS": "statefulrnn.model.cells",
    "CellSpec": "statefulrnn.model.cells",
    "RecurrentModel": "statefulrnn.model.base",
    "load_extra": "statefulrnn.model.base",
    "load_model": "statefulrnn.model.base",
    "register": "statefulrnn.model.base",
    "StatefulRNN": "statefulrnn.model.rnn",
    "State": "statefulrnn.model.state",
}
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
__getattr__, __dir__ = attach(__name__, _EXPORTS)

if TYPE_CHECKING:
    from statefulrnn.model.base import RecurrentModel, load_extra, load_model, register
    from statefulrnn.model.cells import CELLS, CellSpec
    from statefulrnn.model.rnn import StatefulRNN
    from statefulrnn.model.state import State
