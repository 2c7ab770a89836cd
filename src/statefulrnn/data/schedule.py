"""Turn sequences into an epoch's schedule: lanes, chunks, reset flags, weights.

Knows nothing about models or training; works on lengths and arrays. An epoch is laid out
once, by one scatter from the sequences' packed steps into a few contiguous tensors; a chunk
is then a view, so the training loop does no per-chunk copying.

Stateful schedule: `batch_size` lanes advance in time order, `window` steps per chunk. Each
sequence starts at a chunk edge in the lane that becomes free first, with `reset=True`
for that lane; its last chunk and a lane's idle chunks are padded with weight 0.

    # sequences a (5 steps), b (3), c (3); 2 lanes; window 3
    # * = reset before this step, . = padding (weight 0); c goes to the lane that frees first
    #           chunk 0        chunk 1
    # lane 0:  *a1 a2 a3  |   a4 a5  .
    # lane 1:  *b1 b2 b3  |  *c1 c2 c3

Stateless schedule: windows of `window` steps cut every `stride` steps, shuffled into batches
of `batch_size`, each window starting from a zero state (reset all True). `target="all"`
scores every step of a window; `target="last"` only its last real step.

Where a sequence's windows sit. With `target="all"` and several scored steps, windows start
at 0, stride, 2·stride, ... (a last, padded one reaches the end). With `target="last"`, or a
sequence with one scored step (many-to-one), they are anchored at the end instead: the last
window ends at the last scored step, the others `stride`, 2·`stride`, ... before it, so the
window that scores a target is exactly the one windowed prediction feeds for it, whatever
the stride:

    # 17 steps, one target at step 16, window 10, stride 10
    # from the start:  [0..9] [10..16 + 3 padding]   scores 16 after 7 steps: misaligned
    # anchored:        [7..16]                        scores 16 after 10 steps, as
    #                                                 predict(mode="windowed", window=10)
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from statefulrnn.data.sequences import Sequences

TARGETS = ("all", "last")


class Chunk(NamedTuple):
    """One optimizer step's worth: x [B, W, F], y [B, W, O], w [B, W], reset [B] bool."""

    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    reset: torch.Tensor
    any_reset: bool  # False: no lane starts a new sequence, the state passes through as is
    all_reset: bool  # True: every lane starts afresh, so the state can simply be zeros


@dataclass
class Schedule:
    """The ordered chunks of one epoch, stored as contiguous tensors.

    `x [R, W, F]`, `y [R, W, O]`, `w [R, W]`, `reset [R]` hold every row of every chunk;
    chunk k is rows `bounds[k]:bounds[k+1]`. `source [R, W]` is the index of each step in
    `Sequences`' packed order (-1 for padding), so results can be mapped back to sequences.
    """

    mode: str  # "stateful" or "stateless"
    window: int
    batch_size: int
    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    reset: torch.Tensor
    source: np.ndarray
    bounds: list[int]
    any_reset: list[bool]
    all_reset: list[bool]

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def chunk(self, k: int) -> Chunk:
        s, e = self.bounds[k], self.bounds[k + 1]
        return Chunk(
            self.x[s:e],
            self.y[s:e],
            self.w[s:e],
            self.reset[s:e],
            self.any_reset[k],
            self.all_reset[k],
        )

    def __iter__(self):
        for k in range(len(self)):
            yield self.chunk(k)

    @property
    def scored_steps(self) -> int:
        """Steps with weight > 0 in the whole epoch (a step scored twice counts twice)."""
        return int((self.w > 0).sum())

    @property
    def total_weight(self) -> float:
        return float(self.w.sum())

    def to(self, device=None, dtype: torch.dtype | None = None) -> Schedule:
        """The same schedule with its tensors on `device` (one transfer for the whole epoch)."""
        return Schedule(
            self.mode,
            self.window,
            self.batch_size,
            self.x.to(device, dtype=dtype),  # dtype None: kept
            self.y.to(device, dtype=dtype),
            self.w.to(device, dtype=dtype),
            self.reset.to(device),
            self.source,
            self.bounds,
            self.any_reset,
            self.all_reset,
        )

    def lanes(self, select: slice | list[int]) -> Schedule:
        """The sub-schedule of some lanes (stateful only): each lane keeps its whole history."""
        if self.mode != "stateful":
            raise ValueError("lanes() applies to stateful schedules, whose rows are lanes.")
        c, b = len(self), self.batch_size
        idx = np.arange(b)[select]
        n = len(idx)

        def pick(t):
            return t.reshape(c, b, *t.shape[1:])[:, idx].reshape(c * n, *t.shape[1:])

        reset = pick(self.reset)
        r = reset.view(c, n)
        return Schedule(
            self.mode,
            self.window,
            n,
            pick(self.x),
            pick(self.y),
            pick(self.w),
            reset,
            self.source.reshape(c, b, -1)[:, idx].reshape(c * n, -1),
            [k * n for k in range(c + 1)],
            r.any(1).tolist(),
            r.all(1).tolist(),
        )


# --------------------------------------------------------------------------- packing
class Packed(NamedTuple):
    """All steps of all sequences, back to back: x [S, F], y [S, O], w [S]; offsets [N+1]."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    offsets: np.ndarray


def pack(seqs: Sequences) -> Packed:
    """Concatenate the sequences once; cached on the Sequences object for later epochs."""
    cached = getattr(seqs, "_packed", None)
    if cached is not None:
        return cached
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(seqs.lengths, out=offsets[1:])
    packed = Packed(
        np.concatenate(seqs.xs), np.concatenate(seqs.ys), np.concatenate(seqs.ws), offsets
    )
    seqs._packed = packed
    return packed


def _scatter(
    packed: Packed, dest: np.ndarray, src: np.ndarray, rows: int, window: int, dtype
) -> tuple:
    """Place packed steps `src` at flat positions `dest` of [rows, window] zero tensors."""
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    f, o = packed.x.shape[1], packed.y.shape[1]
    x = np.zeros((rows * window, f), dtype=np_dtype)
    y = np.zeros((rows * window, o), dtype=np_dtype)
    w = np.zeros(rows * window, dtype=np_dtype)
    x[dest] = packed.x[src]
    y[dest] = packed.y[src]
    w[dest] = packed.w[src]
    source = np.full(rows * window, -1, dtype=np.int64)
    source[dest] = src
    return (
        torch.from_numpy(x).view(rows, window, f),
        torch.from_numpy(y).view(rows, window, o),
        torch.from_numpy(w).view(rows, window),
        source.reshape(rows, window),
    )


def _check(window: int, batch_size: int) -> None:
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be an integer >= 1; received {window!r}.")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; received {batch_size!r}.")


# --------------------------------------------------------------------------- stateful
def assign_lanes(chunks_per_seq: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Give each sequence (in the given order) to the lane that becomes free first.

    Returns (lane, first_chunk) per sequence and the epoch's chunk count. Ties go to the
    lowest lane, so the layout is a pure function of the order.
    """
    n = len(chunks_per_seq)
    lane = np.empty(n, dtype=np.int64)
    start = np.empty(n, dtype=np.int64)
    free = [(0, b) for b in range(batch_size)]  # (chunk at which the lane is free, lane)
    for i, k in enumerate(chunks_per_seq.tolist()):
        at, b = heapq.heappop(free)
        lane[i], start[i] = b, at
        heapq.heappush(free, (at + k, b))
    return lane, start, max(at for at, _ in free)


def stateful_schedule(
    seqs: Sequences,
    *,
    window: int,
    batch_size: int,
    seed: int | Sequence[int] | None = 0,
    shuffle: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Schedule:
    """Lay out one stateful epoch: sequences packed into `batch_size` lanes, time-ordered chunks.

    `seed` shuffles the sequence order (a different `seed` per epoch gives a new layout);
    `shuffle=False` keeps the given order.
    """
    _check(window, batch_size)
    packed = pack(seqs)
    n = len(seqs)
    lengths = np.diff(packed.offsets)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    chunks_per_seq = -(-lengths // window)
    lane_o, start_o, n_chunks = assign_lanes(chunks_per_seq[order], batch_size)
    lane = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    lane[order], first[order] = lane_o, start_o

    # Every packed step s of sequence i at time t lands at chunk first[i] + t // window,
    # row lane[i] of that chunk, position t % window.
    seq_of = np.repeat(np.arange(n), lengths)
    t = np.arange(packed.offsets[-1]) - packed.offsets[seq_of]
    row = (first[seq_of] + t // window) * batch_size + lane[seq_of]
    dest = row * window + t % window
    rows = n_chunks * batch_size
    x, y, w, source = _scatter(packed, dest, np.arange(packed.offsets[-1]), rows, window, dtype)

    reset = np.zeros(rows, dtype=bool)
    reset[first * batch_size + lane] = True
    reset_t = torch.from_numpy(reset)
    r = reset_t.view(n_chunks, batch_size)
    return Schedule(
        "stateful",
        window,
        batch_size,
        x,
        y,
        w,
        reset_t,
        source,
        list(range(0, rows + 1, batch_size)),
        r.any(1).tolist(),
        r.all(1).tolist(),
    )


# --------------------------------------------------------------------------- stateless
def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start of every window of a sequence: 0, stride, ... while the window fits, plus one
    (padded) window more if the last one stops short of the end, so every step is covered."""
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, stride, dtype=np.int64)
    # (with stride > window the next start can lie past the end: that window would be empty)
    if starts[-1] + window < length and starts[-1] + stride < length:
        starts = np.append(starts, starts[-1] + stride)
    return starts


def window_spans(
    length: int, window: int, stride: int, anchor: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of a sequence's windows, steps [start, stop) each.

    `anchor=None`: from the start (`window_starts`), the last window clipped at the end.
    `anchor=t`: anchored at step t: windows end at t, t - stride, ... (full windows only; one
    window [0, t] if t < window), so the last window ends exactly at t.
    """
    if anchor is None:
        starts = window_starts(length, window, stride)
        return starts, np.minimum(starts + window, length)
    end = anchor + 1
    if end <= window:
        return np.zeros(1, dtype=np.int64), np.full(1, end, dtype=np.int64)
    stops = np.arange(end, window - 1, -stride, dtype=np.int64)[::-1]
    return stops - window, stops


def stateless_schedule(
    seqs: Sequences,
    *,
    window: int,
    batch_size: int,
    stride: int | None = None,
    target: str = "all",
    seed: int | Sequence[int] | None = 0,
    shuffle: bool = True,
    dtype: torch.dtype = torch.float32,
) -> Schedule:
    """Lay out one stateless epoch: windows (`stride` apart, default `window`) in batches.

    With `target="last"`, and for a sequence with one scored step, windows are anchored at
    the sequence's last scored step (see the module docstring). Windows that score nothing (all weights zero, or a zero weight at the last step with
    `target="last"`) carry no loss and are left out; no scored step is lost by that.
    """
    _check(window, batch_size)
    stride = window if stride is None else stride
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1; received {stride!r}.")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; received {target!r}.")
    packed = pack(seqs)
    lengths = np.diff(packed.offsets)

    # One row per window: [start, stop) of its sequence, stop - start <= window.
    spans = []
    for i, t in enumerate(lengths.tolist()):
        scored = np.flatnonzero(packed.w[packed.offsets[i] : packed.offsets[i + 1]] > 0)
        anchored = len(scored) > 0 and (target == "last" or len(scored) == 1)
        spans.append(window_spans(t, window, stride, int(scored[-1]) if anchored else None))
    seq_of_win = np.repeat(np.arange(len(seqs)), [len(a) for a, _ in spans])
    start = np.concatenate([a for a, _ in spans])
    stop = np.concatenate([b for _, b in spans])
    pos = start[:, None] + np.arange(window)[None, :]  # [Nw, W] time within the sequence
    real = pos < stop[:, None]
    src = np.where(real, packed.offsets[seq_of_win][:, None] + pos, -1)

    w_src = np.where(real, packed.w[np.where(real, src, 0)], 0.0)
    if target == "last":
        last = real.sum(1) - 1  # last real step of each window
        keep_w = np.zeros_like(w_src)
        keep_w[np.arange(len(start)), last] = w_src[np.arange(len(start)), last]
        w_src = keep_w
    keep = (w_src > 0).any(1)
    src, w_src = src[keep], w_src[keep]

    n_win = src.shape[0]
    order = np.random.default_rng(seed).permutation(n_win) if shuffle else np.arange(n_win)
    src, w_src = src[order], w_src[order]
    flat = src.reshape(-1)
    dest = np.flatnonzero(flat >= 0)
    x, y, _, source = _scatter(packed, dest, flat[dest], n_win, window, dtype)
    w = torch.from_numpy(w_src.astype(x.numpy().dtype))

    bounds = list(range(0, n_win, batch_size)) + [n_win]
    n_chunks = len(bounds) - 1
    return Schedule(
        "stateless",
        window,
        batch_size,
        x,
        y,
        w,
        torch.ones(n_win, dtype=torch.bool),
        source,
        bounds,
        [True] * n_chunks,
        [True] * n_chunks,
    )
