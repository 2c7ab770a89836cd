"""A collection of independent, variable-length sequences: inputs, targets, weights.

Knows arrays and their validation, not models or schedules. Every sequence `i` holds
`x[T_i, F]`, `y[T_i, O]` and `w[T_i]` (0 = step not scored); F and O are shared by all.
Arrays are stored as float64 numpy arrays; schedules cast them once when they lay out an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Item:
    """One sequence: x [T, F], y [T, O], w [T]."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray

    def __len__(self) -> int:
        return self.x.shape[0]


def _as_list(name: str, arrays) -> list[np.ndarray]:
    if isinstance(arrays, np.ndarray):
        if arrays.ndim == 3:
            return list(arrays)
        if arrays.ndim == 2:
            # [N, T] with one feature (or one target per step): univariate series.
            return [a[:, None] for a in arrays]
        raise ValueError(
            f"{name} as one array must be [N, T, F] (or [N, T] for one feature); "
            f"received shape {arrays.shape}."
        )
    if isinstance(arrays, (list, tuple)):
        return [np.asarray(a) for a in arrays]
    raise TypeError(
        f"{name} must be a list of arrays or one numpy array; received {type(arrays).__name__}."
    )


def _first_bad_step(a: np.ndarray) -> int:
    bad = ~np.isfinite(a.reshape(a.shape[0], -1)).all(axis=1)
    return int(np.argmax(bad))


class Sequences:
    """Independent sequences of possibly different lengths, validated once at construction.

    Build with `Sequences.from_arrays(xs, ys, weights=None)`. Indexing gives an `Item`
    (or a `Sequences` for a slice or an index list); iteration yields `Item`s.
    """

    _packed: Any = None  # data.schedule.pack's cache: every step back to back, built on first use

    def __init__(self, xs: list[np.ndarray], ys: list[np.ndarray], ws: list[np.ndarray]):
        self.xs, self.ys, self.ws = xs, ys, ws
        _validate(xs, ys, ws)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_arrays(cls, xs, ys, weights=None) -> Sequences:
        """Sequences from lists of `[T_i, F]` / `[T_i, O]` arrays or `[N, T, F]` arrays.

        `ys` may also be one target per sequence (`[N, O]` array, or a list of `[O]` /
        scalar values): each becomes a per-step target scored only at the sequence's last
        step (many-to-one). `weights` are per-step (`[T_i]` each); default 1 everywhere.
        """
        x_list = [_as_2d(a, "x", i) for i, a in enumerate(_as_list("xs", xs))]
        n = len(x_list)
        if isinstance(ys, (list, tuple, np.ndarray)) and len(ys) != n:
            # Checked first: a flat list of 2N targets must not pass as N targets of width 2.
            raise ValueError(
                f"got {n} input sequences but {len(ys)} targets; "
                "give one target array (or one per-sequence target) per sequence."
            )
        many_to_one = _is_per_sequence_target(ys, x_list)
        if many_to_one:
            y_rows = np.asarray(ys, dtype=np.float64).reshape(n, -1)
            y_list, w_list = [], []
            for x, row in zip(x_list, y_rows):
                y = np.zeros((x.shape[0], row.shape[0]))
                y[-1] = row
                w = np.zeros(x.shape[0])
                w[-1] = 1.0
                y_list.append(y)
                w_list.append(w)
            if weights is not None:
                raise ValueError(
                    "weights cannot be given with one target per sequence: "
                    "only the last step is scored. Pass per-step targets to weight steps."
                )
        else:
            y_list = [_as_2d(a, "y", i) for i, a in enumerate(_as_list("ys", ys))]
            if len(y_list) != n:
                raise ValueError(f"got {n} input sequences but {len(y_list)} target sequences.")
            if weights is None:
                w_list = [np.ones(x.shape[0]) for x in x_list]
            else:
                w_list = [np.asarray(w, dtype=np.float64) for w in _weights_list(weights)]
                if len(w_list) != n:
                    raise ValueError(f"got {n} input sequences but {len(w_list)} weight sequences.")
        return cls(x_list, y_list, w_list)

    # ---------------------------------------------------------------- container
    def __len__(self) -> int:
        return len(self.xs)

    def __iter__(self) -> Iterator[Item]:
        for i in range(len(self)):
            yield Item(self.xs[i], self.ys[i], self.ws[i])

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            i = int(key)
            return Item(self.xs[i], self.ys[i], self.ws[i])
        idx = range(len(self))[key] if isinstance(key, slice) else [int(i) for i in key]
        return self._subset(list(idx))

    def __repr__(self) -> str:
        lengths = self.lengths
        return (
            f"Sequences(n={len(self)}, features={self.num_features}, outputs={self.num_outputs}, "
            f"lengths {lengths.min()}..{lengths.max()}, scored steps={self.scored_steps})"
        )

    def _subset(self, idx: list[int]) -> Sequences:
        if not idx:
            raise ValueError("a subset of sequences must hold at least one sequence.")
        return Sequences(
            [self.xs[i] for i in idx], [self.ys[i] for i in idx], [self.ws[i] for i in idx]
        )

    # ---------------------------------------------------------------- facts
    @property
    def lengths(self) -> np.ndarray:
        return np.array([x.shape[0] for x in self.xs], dtype=np.int64)

    @property
    def num_features(self) -> int:
        return self.xs[0].shape[1]

    @property
    def num_outputs(self) -> int:
        return self.ys[0].shape[1]

    @property
    def scored_steps(self) -> int:
        """Steps with weight > 0, over all sequences."""
        return int(sum(int((w > 0).sum()) for w in self.ws))

    # ---------------------------------------------------------------- reshaping
    def split(self, fraction_or_indices, *, seed: int | None = None) -> tuple[Sequences, Sequences]:
        """Split into (first, second).

        A float `f` in (0, 1) puts the first `round(f·N)` sequences (in order, or shuffled with
        `seed`) in the first part; a list of indices names the first part exactly.
        """
        n = len(self)
        if isinstance(fraction_or_indices, float):
            f = fraction_or_indices
            if not 0.0 < f < 1.0:
                raise ValueError(f"split fraction must be in (0, 1); received {f}.")
            order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
            k = int(round(f * n))
            if k == 0 or k == n:
                raise ValueError(
                    f"split fraction {f} of {n} sequences leaves one part empty; "
                    "use more sequences, another fraction, or Sequences.cut() first."
                )
            first, second = sorted(order[:k].tolist()), sorted(order[k:].tolist())
        else:
            first = [int(i) for i in fraction_or_indices]
            bad = [i for i in first if not 0 <= i < n]
            if bad:
                raise IndexError(f"split index {bad[0]} is out of range for {n} sequences.")
            chosen = set(first)
            second = [i for i in range(n) if i not in chosen]
        return self._subset(first), self._subset(second)

    def cut(self, parts: int) -> Sequences:
        """Cut every sequence into `parts` contiguous pieces of near-equal length.

        Spreads one long series over several lanes. A sequence shorter than `parts` steps is
        an error, since a piece would be empty. A piece with no scored step is joined to the
        piece after it (or, at the end, before it), so no step is dropped.
        """
        if parts < 1:
            raise ValueError(f"parts must be >= 1; received {parts}.")
        xs, ys, ws = [], [], []
        for i, (x, y, w) in enumerate(zip(self.xs, self.ys, self.ws)):
            if x.shape[0] < parts:
                raise ValueError(
                    f"sequence {i} has {x.shape[0]} steps, fewer than the {parts} parts asked for."
                )
            for s, e in _scored_pieces(w, parts):
                xs.append(x[s:e])
                ys.append(y[s:e])
                ws.append(w[s:e])
        return Sequences(xs, ys, ws)

    def concat(self, other: Sequences) -> Sequences:
        return Sequences(self.xs + other.xs, self.ys + other.ys, self.ws + other.ws)


def _as_2d(a, what: str, i: int) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"sequence {i}: {what} must be numeric; received dtype {a.dtype}.")
    a = a.astype(np.float64, copy=False)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(
            f"sequence {i}: {what} must be 2-D [T, width] or 1-D [T]; received shape {a.shape}."
        )
    return a


def _scored_pieces(w: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """(start, end) of `parts` near-equal pieces, each joined with neighbours until scored."""
    bounds = np.linspace(0, w.shape[0], parts + 1).round().astype(int)
    pieces: list[tuple[int, int]] = []
    start = 0
    for e in bounds[1:]:
        if (w[start:e] > 0).any():
            pieces.append((start, int(e)))
            start = int(e)
    if start < w.shape[0]:  # an unscored tail joins the last scored piece
        s0, _ = pieces.pop()
        pieces.append((s0, w.shape[0]))
    return pieces


def _weights_list(weights) -> list:
    if isinstance(weights, np.ndarray) and weights.ndim == 2:
        return list(weights)
    return list(weights)


def _is_per_sequence_target(ys, x_list: list[np.ndarray]) -> bool:
    """True when ys holds one target per sequence rather than one per step."""
    if isinstance(ys, np.ndarray):
        if ys.ndim == 1:
            return len(ys) == len(x_list) and not all(x.shape[0] == 1 for x in x_list)
        if ys.ndim == 2:
            # [N, O] vs [N, T] (univariate per-step targets): per-step when every T matches.
            if all(x.shape[0] == ys.shape[1] for x in x_list) and ys.shape[1] > 1:
                return False
            return ys.shape[0] == len(x_list)
        return False
    if isinstance(ys, (list, tuple)) and ys:
        first = np.asarray(ys[0])
        return first.ndim == 0 or (first.ndim == 1 and x_list[0].shape[0] != first.shape[0])
    return False


def _validate(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], ws: Sequence[np.ndarray]) -> None:
    if len(xs) == 0:
        raise ValueError("no sequences given: need at least one.")
    f, o = xs[0].shape[1], ys[0].shape[1]
    for i, (x, y, w) in enumerate(zip(xs, ys, ws)):
        t = x.shape[0]
        if t == 0:
            raise ValueError(
                f"sequence {i} is empty (0 steps); every sequence needs at least one step."
            )
        if x.shape[1] != f:
            raise ValueError(
                f"sequence {i} has {x.shape[1]} features, but sequence 0 has {f}. "
                "All sequences need the same feature count."
            )
        if y.shape[1] != o:
            raise ValueError(
                f"sequence {i} has {y.shape[1]} targets per step, but sequence 0 has {o}. "
                "All sequences need the same target count."
            )
        if y.shape[0] != t:
            raise ValueError(
                f"sequence {i} has {t} input steps but {y.shape[0]} target steps; they must match."
            )
        if w.ndim != 1 or w.shape[0] != t:
            raise ValueError(
                f"sequence {i} has {t} steps but its weights have shape {w.shape}; expected ({t},)."
            )
        for what, a in (("x", x), ("y", y), ("weights", w)):
            if not np.isfinite(a).all():
                step = _first_bad_step(a)
                raise ValueError(
                    f"sequence {i} has a non-finite {what} value (NaN or inf) at step {step}."
                )
        if (w < 0).any():
            step = int(np.argmax(w < 0))
            raise ValueError(
                f"sequence {i} has a negative weight at step {step}; weights must be >= 0."
            )
        if not (w > 0).any():
            raise ValueError(
                f"sequence {i} has every weight zero: none of its {t} steps would be scored. "
                "Give it a positive weight somewhere, or leave it out."
            )
