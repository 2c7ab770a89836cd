"""Chunk sources: the model's output for each chunk of an epoch, and the state each chunk hands on.

A source is iterated once per epoch and yields one `Pass` (y_hat, y, w) per chunk, in the
schedule's order. Before it yields a chunk's pass it stores, detached, what the next chunk
starts from: the caller's update on this chunk comes before it asks for the next one, and a
detached state keeps its values through that update while its graph stops at the chunk edge.
One kind per way a chunk gets its start state:

    StatefulChunks    the state its lanes' previous chunk ended with (zeroed where a lane resets)
    StatelessChunks   a zero state, or the state a `BurnIn` reaches before the window
    TBPTTChunks       (tbptt.py) the state k2 steps back, rerun with gradient

Knows schedules and a model's `forward(x, state)`; nothing of losses or optimizers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from statefulrnn.data.schedule import Chunk, Schedule, pack
from statefulrnn.data.sequences import Sequences
from statefulrnn.model.base import RecurrentModel
from statefulrnn.model.state import State


class Pass(NamedTuple):
    """One chunk's outputs and what scores them; y_hat is None for a chunk that makes no
    update (TBPTTChunks runs only what moves its stored state on)."""

    y_hat: Tensor | None  # [B, window, O]
    y: Tensor  # [B, window, O]
    w: Tensor  # [B, window]


ChunkSource = Iterable[Pass]


def chunk_sizes(schedule: Schedule) -> list[int]:
    """Rows (lanes or windows) in each chunk."""
    return np.diff(schedule.bounds).tolist()


def chunk_views(schedule: Schedule) -> Iterator[Chunk]:
    """Every chunk of the epoch as views, cut by one `split` per tensor: with one step per
    chunk (window 1, batch 1), slicing four tensors per chunk shows in the time per update."""
    sizes = chunk_sizes(schedule)
    parts = (t.split(sizes) for t in (schedule.x, schedule.y, schedule.w, schedule.reset))
    return map(Chunk, *parts, schedule.any_reset, schedule.all_reset)


class StatefulChunks:
    """Chunks in time order, each lane's state carried from one chunk to the next."""

    def __init__(self, model: RecurrentModel, schedule: Schedule):
        self.model, self.schedule = model, schedule
        self.state: State | None = None  # what the next chunk starts from (None: zeros)

    def __iter__(self) -> Iterator[Pass]:
        for c in chunk_views(self.schedule):
            state = self.state
            if c.all_reset:
                state = None
            elif c.any_reset and state is not None:
                state = state.reset(c.reset)  # new sequences start in these lanes
            y_hat, new_state = self.model(c.x, state)
            self.state = new_state.detach()  # keep the values, cut the graph at this chunk edge
            yield Pass(y_hat, c.y, c.w)


class BurnIn:
    """The steps before each window of a stateless schedule, run without gradient to give the
    window its start state: row r gets the (up to) `steps` steps of its sequence before it."""

    def __init__(self, train: Sequences, schedule: Schedule, steps: int, device: torch.device):
        packed = pack(train)
        x = np.concatenate([packed.x, np.zeros((1, packed.x.shape[1]))])  # + one padding row
        self.x = torch.from_numpy(x).to(device=device, dtype=schedule.x.dtype)
        self.index, self.lengths = _burn_in_index(schedule, packed.offsets, steps, len(x) - 1)
        self.bounds, self.device = schedule.bounds, device

    def state(self, model: RecurrentModel, k: int) -> State:
        """The start state of chunk k's windows: each run over its burn-in steps from zero."""
        r0, r1 = self.bounds[k], self.bounds[k + 1]
        with torch.no_grad():
            return model.final_state(
                self.x[self.index[r0:r1].to(self.device)], self.lengths[r0:r1].to(self.device)
            )


def _burn_in_index(schedule: Schedule, offsets: np.ndarray, burn_in: int, pad: int):
    """Per window row: packed indices of the burn-in steps before it, and how many there are."""
    first = schedule.source[:, 0]
    seq = np.searchsorted(offsets, first, side="right") - 1
    n = np.minimum(first - offsets[seq], burn_in)
    width = max(int(n.max()), 1)
    pos = np.arange(width)[None, :]
    idx = np.where(pos < n[:, None], first[:, None] - n[:, None] + pos, pad)
    return torch.from_numpy(idx), torch.from_numpy(n)


class StatelessChunks:
    """Windows that each start from a zero state, or from the state `burn_in` reaches."""

    def __init__(self, model: RecurrentModel, schedule: Schedule, burn_in: BurnIn | None = None):
        self.model, self.schedule, self.burn_in = model, schedule, burn_in

    def __iter__(self) -> Iterator[Pass]:
        for k, c in enumerate(chunk_views(self.schedule)):
            state = None if self.burn_in is None else self.burn_in.state(self.model, k)
            y_hat, _ = self.model(c.x, state)
            yield Pass(y_hat, c.y, c.w)
