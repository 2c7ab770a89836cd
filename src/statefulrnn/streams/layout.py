"""A stream's state as one row of numbers, and back: the slab's layout.

Knows State and the RecurrentModel's `state_spec`; nothing about ids, files or kernels.
A row holds each state tensor `[L, H_i]` flattened layer-major, in `state_spec` order:

    # LSTM, 2 layers, H hidden:   | h0 (H) | h1 (H) | c0 (H) | c1 (H) |      D = 4H numbers
    # GRU / RNN, 2 layers:        | h0 (H) | h1 (H) |                      D = 2H
"""

from __future__ import annotations

import torch
from torch import Tensor

from statefulrnn.model.base import RecurrentModel
from statefulrnn.model.state import State


class Layout:
    """Where each state tensor lives in a stream's row, and the conversions to/from State."""

    def __init__(self, model: RecurrentModel):
        shapes, names = model.state_spec()
        self.shapes = [(int(layers), int(h)) for layers, h in shapes]
        self.names = tuple(names)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"state names must differ; the model's state_spec gives {names}.")
        self.offsets = [0]
        for layers, h in self.shapes:
            self.offsets.append(self.offsets[-1] + layers * h)
        self.width = self.offsets[-1]  # D

    def to_state(self, rows: Tensor) -> State:
        """rows [B, D] -> State of `[L, B, H_i]` tensors (copies)."""
        b = rows.shape[0]
        return State(
            tuple(
                rows[:, lo:hi].reshape(b, layers, h).transpose(0, 1).contiguous()
                for (layers, h), lo, hi in zip(self.shapes, self.offsets, self.offsets[1:])
            ),
            self.names,
        )

    def to_rows(self, state: State) -> Tensor:
        """State of `[L, B, H_i]` tensors -> rows [B, D]."""
        b = state.batch_size
        return torch.cat([t.transpose(0, 1).reshape(b, -1) for t in state.tensors], dim=1)

    def check(self, state: State) -> None:
        got = [(t.shape[0], t.shape[2]) for t in state.tensors]
        if tuple(state.names) != self.names or got != self.shapes:
            raise ValueError(
                f"the model returned a state with names {state.names} and [L, H] sizes {got}, "
                f"but its state_spec() says {self.names} and {self.shapes}."
            )
