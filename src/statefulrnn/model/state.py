"""The recurrent state carried between chunks: a small typed object, never stored in a layer.

Every tensor of a state has its lanes (the batch) on dim 1, `[layers, B, H]` as PyTorch's
recurrent modules use, so detaching, resetting, selecting and scattering lanes work the
same whatever the cell: `(h,)` for RNN and GRU, `(h, c)` for LSTM, and any per-layer tuple
for models whose layers differ in size (e.g. imported Keras stacks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class State:
    """Per-lane recurrent state: `tensors[i]` is `[L, B, H_i]`; `names[i]` says what it is."""

    tensors: tuple[Tensor, ...]
    names: tuple[str, ...] = ("h",)

    # ------------------------------------------------------------- named parts
    @property
    def h(self) -> Tensor:
        return self.tensors[self.names.index("h")]

    @property
    def c(self) -> Tensor | None:
        return self.tensors[self.names.index("c")] if "c" in self.names else None

    @property
    def batch_size(self) -> int:
        return self.tensors[0].shape[1]

    def _map(self, fn) -> State:
        return State(tuple(fn(t) for t in self.tensors), self.names)

    # ------------------------------------------------------------- operations
    def detach(self) -> State:
        """The same values with the graph cut: gradients stop at this chunk edge."""
        return self._map(Tensor.detach)

    def reset(self, mask: Tensor) -> State:
        """Zero the lanes where `mask [B]` is True; other lanes are untouched."""
        # masked_fill, not h * (1 - mask): 0 * inf is NaN, and a diverged lane must not leak.
        m = mask.view(1, -1, 1)
        return self._map(lambda t: t.masked_fill(m, 0.0))

    def select(self, lanes: Tensor | list[int] | slice) -> State:
        """The state of some lanes only (a new batch made of those lanes, in that order)."""
        if isinstance(lanes, slice):
            return self._map(lambda t: t[:, lanes])
        idx = torch.as_tensor(lanes, dtype=torch.long, device=self.tensors[0].device)
        return self._map(lambda t: t.index_select(1, idx))

    def put(self, lanes: Tensor | list[int], part: State) -> State:
        """A copy of this state with `lanes` replaced by the lanes of `part`."""
        idx = torch.as_tensor(lanes, dtype=torch.long, device=self.tensors[0].device)
        return State(
            tuple(t.index_copy(1, idx, p) for t, p in zip(self.tensors, part.tensors)), self.names
        )

    def to(self, device=None, dtype: torch.dtype | None = None) -> State:
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    @staticmethod
    def cat(states: list[State]) -> State:
        """Lanes of several states side by side (same names and sizes)."""
        names = states[0].names
        return State(tuple(torch.cat(ts, dim=1) for ts in zip(*(s.tensors for s in states))), names)

    @staticmethod
    def zeros(
        shapes: list[tuple[int, int]],
        names: tuple[str, ...],
        batch_size: int,
        *,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> State:
        """A zero state: one `[L, batch_size, H]` tensor per `(L, H)` in `shapes`."""
        return State(
            tuple(
                torch.zeros(layers, batch_size, h, device=device, dtype=dtype)
                for layers, h in shapes
            ),
            names,
        )
