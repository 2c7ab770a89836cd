"""KerasRNN: an imported Keras chain of layers, used exactly like a StatefulRNN.

`y, state = model(x, state=None, reset=None)` with x [B, T, F] and y [B, T, O]: one output
per step, always. A Keras model whose last recurrent layer has `return_sequences=False`
returns one output per sequence instead; that output is the last step here, `y[:, -1]`.

The state is one tensor per recurrent part, lanes on dim 1. When every recurrent layer has
the same kind and size, it is laid out as a StatefulRNN's, `("h",)` or `("h", "c")` each
[L, B, U]; otherwise each layer gets its own tensors, `("h0", "c0", "h1", ...)` each [1, B, U_l].
Knows tensors and layer specs (plain JSON, saved in model.json); reading files is `reader`'s job.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from statefulrnn.keras.cells import (
    DenseHead,
    Elementwise,
    FusedRecurrent,
    StepRecurrent,
    fused_reason,
    n_parts,
)
from statefulrnn.model import cells
from statefulrnn.model.base import RecurrentModel, register
from statefulrnn.model.state import State

RECURRENT_TYPES = tuple(cells.keras_classes())  # SimpleRNN, LSTM, GRU: from the registry


def _block(spec: dict, kw: dict) -> nn.Module:
    if spec["type"] in RECURRENT_TYPES:
        return (FusedRecurrent if spec["path"] == "fused" else StepRecurrent)(spec, **kw)
    if spec["type"] == "Dense":
        return DenseHead(spec, **kw)
    if spec["type"] in ("Activation", "Dropout"):
        return Elementwise(spec)
    raise ValueError(f"unknown layer type {spec['type']!r} in KerasRNN layers.")


@register
class KerasRNN(RecurrentModel):
    """A Keras recurrent model (SimpleRNN/LSTM/GRU stack + per-step heads) in PyTorch.

    Build it with `statefulrnn.from_keras(path)`; `layers` are the specs that records
    architecture (each recurrent spec's `path` is "fused" or "step", see `paths()`).
    """

    kind = "KerasRNN"
    source: dict[str, Any] | None = None  # where from_keras read it (not saved in checkpoints)

    def __init__(
        self,
        input_size: int,
        layers: list[dict[str, Any]],
        *,
        device=None,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.input_size = int(input_size)
        self.specs = [dict(s) for s in layers]
        kw = {"device": device, "dtype": dtype}
        self.blocks = nn.ModuleList(_block(s, kw) for s in self.specs)
        sizes = [s["units"] for s in self.specs if "units" in s]
        self.output_size = sizes[-1] if sizes else self.input_size
        self.recurrent = [i for i, s in enumerate(self.specs) if s["type"] in RECURRENT_TYPES]
        if not self.recurrent:
            raise ValueError("KerasRNN needs at least one SimpleRNN, LSTM or GRU layer.")
        self._layout()

    # ------------------------------------------------------------- state layout
    def _layout(self) -> None:
        rec = [self.specs[i] for i in self.recurrent]
        part_names: list[tuple[str, ...]] = [
            ("h", "c") if n_parts(s) == 2 else ("h",) for s in rec
        ]
        self._names: tuple[str, ...]
        self._shapes: list[tuple[int, int]]
        self._slots: list[list[tuple[int, int]]]
        self.stacked = len({(p, s["units"]) for p, s in zip(part_names, rec)}) == 1
        if self.stacked:  # like StatefulRNN: one [L, B, U] tensor per part
            self._names = part_names[0]
            self._shapes = [(len(rec), rec[0]["units"])] * len(self._names)
            self._slots = [[(k, j) for k in range(len(self._names))] for j in range(len(rec))]
        else:  # one [1, B, U_l] tensor per layer and part
            self._names, self._shapes, self._slots = (), [], []
            for j, (parts, s) in enumerate(zip(part_names, rec)):
                start = len(self._names)
                self._names += tuple(f"{p}{j}" for p in parts)
                self._shapes += [(1, s["units"])] * len(parts)
                self._slots.append([(start + k, 0) for k in range(len(parts))])

    def state_spec(self):
        return list(self._shapes), self._names

    def config(self) -> dict[str, Any]:
        return {"input_size": self.input_size, "layers": [dict(s) for s in self.specs]}

    # ------------------------------------------------------------- running
    def forward(self, x: Tensor, state: State | None = None, reset: Tensor | None = None):
        """x [B, T, F], reset [B] bool -> y [B, T, O], next state."""
        self.check_input(x)
        state = self.start_state(state, reset, x.shape[0])
        out = x
        new_parts: list[tuple[Tensor, ...]] = []
        for i, block in enumerate(self.blocks):
            if i in self.recurrent:
                slots = self._slots[len(new_parts)]
                parts = tuple(state.tensors[k][row : row + 1] for k, row in slots)
                out, parts = block(out, parts)
                new_parts.append(parts)
            else:
                out = block(out)
        if self.stacked:
            tensors = tuple(torch.cat(ts, dim=0) for ts in zip(*new_parts))
        else:
            tensors = tuple(t for parts in new_parts for t in parts)
        return out, State(tensors, state.names)

    def keras_states(self, state: State) -> list[Tensor]:
        """The state as Keras lists it: per recurrent layer, h (then c for LSTM), each [B, U]."""
        return [state.tensors[k][row] for slots in self._slots for k, row in slots]

    # ------------------------------------------------------------- weights and description
    def load_keras_weights(self, weights: list[dict[str, np.ndarray]]) -> KerasRNN:
        """Copy Keras-layout arrays (one dict per layer: kernel, recurrent_kernel, bias) in."""
        for block, w in zip(self.blocks, weights):
            assert isinstance(block, (FusedRecurrent, StepRecurrent, DenseHead, Elementwise))
            block.set_keras(**w)
        return self

    def paths(self) -> list[dict[str, str]]:
        """For each layer: its Keras name, what it is, and how it runs here."""
        rows = []
        for spec in self.specs:
            t = spec["type"]
            if t in RECURRENT_TYPES:
                what = f"{t}({spec['units']})"
                if spec["path"] == "fused":
                    how = f"fused nn.{cells.keras_classes()[t].layer_class().__name__}"
                else:
                    reason = fused_reason(spec) or "requested (fused would also be exact)"
                    how = f"step-by-step torch loop: {reason}"
                if not spec["return_sequences"]:
                    how += "; return_sequences=False: Keras's one output is y[:, -1]"
            elif t == "Dense":
                what = f"Dense({spec['units']}, {spec['activation']})"
                if spec["time_distributed"]:
                    what = f"TimeDistributed({what})"
                how = "per-step nn.Linear"
            elif t == "Dropout":
                what, how = "Dropout", "identity (dropout is off at inference)"
            else:
                what, how = f"Activation({spec['activation']})", "elementwise"
            rows.append({"name": spec["name"], "layer": what, "path": how})
        return rows

    def describe(self) -> str:
        rows = self.paths()
        w1 = max(len(r["name"]) for r in rows)
        w2 = max(len(r["layer"]) for r in rows)
        return "\n".join(f"{r['name']:<{w1}}  {r['layer']:<{w2}}  {r['path']}" for r in rows)

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, output_size={self.output_size}, state={self._names}"
