"""StatefulRNN: a stack of recurrent layers of one registered cell and a per-step linear head.

The cell comes from the registry (model/cells/): PyTorch's fused kernels (`nn.RNN`,
`nn.LSTM`, `nn.GRU`) or a layer of ours with the same interface. One module per layer, so
every layer's per-step hidden states are at hand; whole chunks go through each layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from statefulrnn.model import cells
from statefulrnn.model.base import RecurrentModel, register
from statefulrnn.model.engine import run_layer
from statefulrnn.model.state import State


@register
class StatefulRNN(RecurrentModel):
    """`y, state = model(x, state=None, reset=None)`: x [B, T, F] -> y [B, T, O], any B.

    The state is returned, never kept: the caller carries it (that is what makes training or
    prediction stateful). `reset [B]` bool zeroes those lanes' state before the chunk.
    """

    kind = "StatefulRNN"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        cell: str = "lstm",
        num_layers: int = 1,
        dropout: float = 0.0,
        *,
        device=None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        spec = cells.get(cell)
        for name, v in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("output_size", output_size),
            ("num_layers", num_layers),
        ):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; received {v!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); received {dropout!r}.")
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self.cell, self.num_layers, self.dropout = cell, num_layers, dropout
        kw = {"device": device, "dtype": dtype}
        self.spec = spec
        self.layers = nn.ModuleList(
            spec.build_layer(input_size if i == 0 else hidden_size, hidden_size, **kw)
            for i in range(num_layers)
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, output_size, **kw)
        self._names = spec.state

    def config(self) -> dict[str, Any]:
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "output_size": self.output_size,
            "cell": self.cell,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
        }

    def state_spec(self):
        names = self.spec.state
        return [(self.num_layers, self.hidden_size)] * len(names), names

    def forward(
        self,
        x: Tensor,
        state: State | None = None,
        reset: Tensor | None = None,
        *,
        return_hidden: bool = False,
    ):
        """x [B, T, F], reset [B] bool -> y [B, T, O], next state (and, if asked, each
        layer's hidden output [B, T, H] at every step)."""
        self.check_input(x)
        if state is not None:
            state = self.start_state(state, reset, x.shape[0])
        out, hidden, next_parts = x, [], []
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0:
                out = self.drop(out)
            if state is None:
                hx = None  # the layer starts from zeros itself
            elif self.num_layers == 1:  # the state is this layer's: no slicing per chunk
                hx = _hx(state.tensors)
            else:
                hx = _hx(tuple(t[i : i + 1] for t in state.tensors))
            out, hn = run_layer(layer, out, hx)  # fused module or the CPU loop (engine.py)
            next_parts.append(hn if isinstance(hn, tuple) else (hn,))
            if return_hidden:
                hidden.append(out)
        if self.num_layers == 1:
            tensors = next_parts[0]
        else:
            tensors = tuple(torch.cat(ts, dim=0) for ts in zip(*next_parts))
        y = _head(self.head, out)
        new_state = State(tuple(tensors), self._names)
        return (y, new_state, hidden) if return_hidden else (y, new_state)

    def final_state(self, x: Tensor, lengths: Tensor) -> State:
        """State after `lengths[i]` steps of row i from zero, in one packed pass per layer
        (cells whose layer takes no packed sequence: one pass per distinct length)."""
        if not self.spec.packed:
            return super().final_state(x, lengths)
        self.check_input(x)
        empty = lengths == 0
        clamped = lengths.clamp(min=1).cpu()
        out = pack_padded_sequence(x, clamped, batch_first=True, enforce_sorted=False)
        parts = []
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout > 0 and self.training:
                padded, lens = pad_packed_sequence(out, batch_first=True)
                out = pack_padded_sequence(
                    self.drop(padded), lens, batch_first=True, enforce_sorted=False
                )
            out, hn = layer(out)
            parts.append(hn if isinstance(hn, tuple) else (hn,))
        tensors = tuple(torch.cat(ts, dim=0) for ts in zip(*parts))
        return State(tensors, self.state_spec()[1]).reset(empty.to(tensors[0].device))


def _hx(parts: tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    """A layer's initial state as PyTorch's modules take it: one tensor, or a tuple (LSTM)."""
    return parts if len(parts) > 1 else parts[0]


def _head(head: nn.Module, out: Tensor) -> Tensor:
    """head(out) -> [B, T, O]. On a [T, B, H]-major `out` (the CPU loop engine's), the head
    runs in that layout and the result is transposed back: no copy of `out` (at the seed-000
    shape, 400 x 500 x 64 floats, that copy and its gradient's took ~60 ms a chunk), and
    the gradient reaches the engine in the layout its backward steps through."""
    if out.dim() == 3 and not out.is_contiguous():
        tb = out.transpose(0, 1)  # [T, B, H]: rows of unit stride, one stride between rows?
        if tb.stride(2) == 1 and tb.stride(0) == tb.shape[1] * tb.stride(1):
            return head(tb).transpose(0, 1)
    return head(out)
