"""StreamPool: many open-ended sequences (streams), stepped together, one state per stream id.

Knows models only through the RecurrentModel interface (and, for speed, the fused kernels in
streams/kernels.py); knows nothing about training or schedules. Every state lives in one
preallocated slab, a row per stream, so a call is gather -> one batched run -> scatter:

    # slab [rows, D]: row = one stream's whole state (LSTM, 1 layer: | h (H) | c (H) |)
    #   slot 0: "a"   slot 1: "b"   slot 2: free   slot 3: "c"     grows by doubling
    # step(["c", "a"], x [2, k, F]):
    #   gather rows [3, 0] -> run k steps for both in one call -> scatter rows back to [3, 0]

How a call runs, by size (CPU, fused kernel): a few streams with numpy x go through numpy
alone, no torch call (a one-stream step is mostly call overhead); a middling batch is one
torch step; a large one (streams/fused.py: 2 x BLOCK_ROWS and more) runs in blocks shared out
to worker threads, as many as the thread policy gives the call. The rows of a long id list
are remembered, so stepping the same 10,000 streams again costs one list comparison.

Unknown ids start from a zero state. With a capacity, the least recently used streams are
evicted when a call needs room: written to `spill_dir` (and read back transparently when they
return) or, without one, forgotten (they restart from zero). One lock guards every call.

Given a `ModelBundle` instead of a bare model (`StreamPool(bundle)`, `bundle.stream_pool()`,
`StreamPool.load(path, bundle)`), the pool takes inputs and returns outputs in the user's
units: x is scaled as in training and y goes through the loss's link and the target scaling.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from statefulrnn.bundle import ModelBundle
from statefulrnn.model.base import RecurrentModel
from statefulrnn.model.state import State
from statefulrnn.streams import store
from statefulrnn.streams.kernels import make_kernel
from statefulrnn.streams.layout import Layout
from statefulrnn.threads import check as check_threads
from statefulrnn.threads import choose as choose_threads
from statefulrnn.threads import get_default as get_default_threads
from statefulrnn.threads import step_work

FREE = np.iinfo(np.int64).max  # last-use tick of a free slot: never the least recent
FIRST_ROWS = 16
MEMO_MIN = 64  # id lists at least this long have their rows remembered (see _slots)
_SAVED = object()
_NUMPY = {
    torch.float32: np.dtype(np.float32),
    torch.float64: np.dtype(np.float64),
}  # StreamPool.load: use the capacity stored in the file


class StreamPool:
    """One recurrent state per stream id; `step(ids, x)` advances those streams together.

    `pool.step(ids, x)`: x `[len(ids), k, F]` (numpy or tensor, k >= 1 steps per stream) ->
    y `[len(ids), k, O]` of the same kind, every stream's state carried to the next call.
    All streams of one call go through one batched recurrent run; an id may appear once per
    call. `capacity`: at most that many states in memory (least recently used evicted first);
    `spill_dir`: where evicted states go and come back from. Runs the model in eval mode
    without gradients; `fused=False` always calls `model.forward` (the fused path gives the
    same numbers, faster, for StatefulRNN). With a `ModelBundle` for `model`, x and y are in
    the user's units (`self.bundle`); with a bare model, in the network's.
    `threads`: CPU threads per call (None: one while a call's recurrent step is small,
    see statefulrnn/threads.py; a large call's blocks go to that many worker threads, each on
    one intra-op thread, see streams/fused.py).
    """

    def __init__(
        self,
        model: RecurrentModel | ModelBundle,
        capacity: int | None = None,
        spill_dir: str | Path | None = None,
        *,
        fused: bool = True,
        threads: int | None = None,
        allow_nonfinite: bool = False,
    ):
        self.bundle: ModelBundle | None = None
        # a NaN or inf input would stay in its stream's state for good: refused unless allowed
        self.allow_nonfinite = allow_nonfinite
        if isinstance(model, ModelBundle):
            self.bundle, model = model, model.model
        if not isinstance(model, RecurrentModel):
            raise TypeError(
                "StreamPool needs a statefulrnn RecurrentModel or ModelBundle; received "
                f"{type(model).__name__}."
            )
        if capacity is not None and (
            isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1
        ):
            raise ValueError(f"capacity must be None or an integer >= 1; received {capacity!r}.")
        check_threads(threads)
        self.model, self.capacity, self.threads = model, capacity, threads
        self._work_per_row = step_work(model, 1)
        self._thread_choices: dict[tuple, int | None] = {}
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        if self.spill_dir is not None:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._layout = Layout(model)
        self._kernel = make_kernel(model, self._layout, fused)
        self._lock = threading.RLock()
        self._slot: dict[Hashable, int] = {}  # held stream id -> slab row
        self._owner: list[Hashable | None] = []  # slab row -> stream id (None: free)
        self._free: list[int] = []
        self._last = np.zeros(0, dtype=np.int64)  # slab row -> tick of its last use
        self._tick = 0
        self._spilled: dict[Hashable, Path | None] = {}  # evicted to disk (None: zero state)
        self._memo: tuple[list, np.ndarray] | None = None  # the last long id list, its rows
        device, dtype = self._kernel_target()
        self._slab = torch.zeros(0, self._layout.width, device=device, dtype=dtype)
        self.evictions = 0  # streams evicted so far (spilled or forgotten)

    # ------------------------------------------------------------- the public calls
    def step(self, ids: Iterable[Hashable], x) -> Any:
        """Advance streams `ids` by x [len(ids), k, F]; return y [len(ids), k, O].

        Non-finite x is a ValueError naming the stream, and no stream is stepped (unless the
        pool was made with `allow_nonfinite=True`)."""
        ids = ids if isinstance(ids, list) else list(ids)
        as_numpy = not isinstance(x, Tensor)
        with self._lock:
            device, dtype = self._kernel_target()
            if type(x) is np.ndarray and self._lean(ids, x):
                return self._step_numpy(ids, x)
            xt = self._as_input(x, len(ids), device, dtype)
            if not self.allow_nonfinite:
                self._check_finite(ids, xt)  # before any state is touched
            if self.bundle is not None:
                xt = self.bundle.to_model(xt)
            if not ids:
                y = xt.new_zeros(0, xt.shape[1], self.model.output_size)
            else:
                slots = self._slots(ids)
                idx = torch.from_numpy(slots)
                if idx.device != device:
                    idx = idx.to(device)
                y = self._run(idx, xt, device)
            if self.bundle is not None:
                y = self.bundle.to_user(y)
        if not as_numpy:
            return y
        return (
            y.numpy()
            if y.device.type == "cpu" and not y.requires_grad
            else y.detach().cpu().numpy()
        )

    def _lean(self, ids: list, x: np.ndarray) -> bool:
        """Whether this call takes the numpy path: a few streams, x of the model's dtype and of
        the right shape, on the CPU (no torch call at all: a one-stream step is call overhead)."""
        takes = getattr(self._kernel, "takes_numpy", None)
        n, shape = len(ids), x.shape
        return (
            takes is not None
            and n > 0
            and len(shape) == 3
            and shape[0] == n
            and shape[1] >= 1
            and shape[2] == self.model.input_size
            and takes(n, x)
        )

    def _step_numpy(self, ids: list, x: np.ndarray) -> np.ndarray:
        """`step` on the numpy path: the same cast, checks, scaling and state, numpy in and out."""
        dtype = self._kernel.np_dtype
        if x.dtype != dtype:
            with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
                x = x.astype(dtype)
        if not self.allow_nonfinite and not np.isfinite(x).all():
            self._check_finite(ids, torch.from_numpy(np.array(x)))  # raises, naming the stream
        if self.bundle is not None:
            x = self.bundle.to_model(x)
        slots = self._slots(ids)  # first: admitting a stream may grow (replace) the slab
        y = self._kernel.step_numpy(self._slab.numpy(), slots, x)
        return y if self.bundle is None else self.bundle.to_user(y)

    def _run(self, idx: Tensor, xt: Tensor, device: torch.device) -> Tensor:
        """The kernel's step on the threads the policy picks for this many rows (the choice
        is cached per row count: a call of one stream costs ~20 us, the policy must not show).
        A call the kernel splits into blocks gets the chosen count as worker threads, each on
        one intra-op thread (statefulrnn/streams/fused.py says why)."""
        key = (len(idx), self.threads, get_default_threads(), device)
        if key in self._thread_choices:
            n = self._thread_choices[key]
        else:
            n = choose_threads(self.threads, self._work_per_row * len(idx), device)
            if len(self._thread_choices) > 64:
                self._thread_choices.clear()
            self._thread_choices[key] = n
        before = torch.get_num_threads()
        splits = getattr(self._kernel, "splits", None)
        if splits is not None and splits(len(idx)):
            workers, n = (n or before), 1
            if n == before:
                return self._kernel.step(self._slab, idx, xt, workers)
            torch.set_num_threads(n)
            try:
                return self._kernel.step(self._slab, idx, xt, workers)
            finally:
                torch.set_num_threads(before)
        if n is None or n == before:
            return self._kernel.step(self._slab, idx, xt)
        torch.set_num_threads(n)
        try:
            return self._kernel.step(self._slab, idx, xt)
        finally:
            torch.set_num_threads(before)

    def reset(self, stream_id: Hashable) -> None:
        """Zero one stream's state: it starts a new sequence at its next step."""
        with self._lock:
            if stream_id in self._slot:
                self._slab[self._slot[stream_id]].zero_()
            elif stream_id in self._spilled:
                self._unlink(self._spilled[stream_id])
                self._spilled[stream_id] = None
            else:
                raise KeyError(self._unknown(stream_id))

    def drop(self, stream_id: Hashable) -> None:
        """Forget one stream (its state, in memory or spilled)."""
        with self._lock:
            if stream_id in self._slot:
                self._release(self._slot[stream_id])
            elif stream_id in self._spilled:
                self._unlink(self._spilled.pop(stream_id))
            else:
                raise KeyError(self._unknown(stream_id))

    def ids(self) -> list[Hashable]:
        """Every stream the pool knows, held or spilled, least recently used first."""
        with self._lock:
            held = sorted(self._slot, key=lambda i: self._last[self._slot[i]])
            return [*self._spilled, *held]

    def __len__(self) -> int:
        with self._lock:
            return len(self._slot) + len(self._spilled)

    def __contains__(self, stream_id: Hashable) -> bool:
        with self._lock:
            return stream_id in self._slot or stream_id in self._spilled

    @property
    def held(self) -> int:
        """Streams whose state is in memory (the rest are spilled)."""
        return len(self._slot)

    def state(self, stream_id: Hashable) -> State:
        """A copy of one stream's state (a State with one lane)."""
        with self._lock:
            return self._layout.to_state(self._rows([stream_id]))

    def rows(self, ids: list[Hashable]) -> Tensor:
        """Copies of the state rows of `ids` `[len(ids), D]` (held or spilled), on the CPU."""
        with self._lock:
            return self._rows(list(ids))

    def put(self, ids: list[Hashable], rows, keep: Iterable[Hashable] = ()) -> None:
        """Hold streams `ids` with these state rows `[len(ids), D]` (a durable store's copy).

        Streams in `keep` that are held stay held (they are about to be stepped with `ids`);
        room is made by evicting the least recently used others.
        """
        ids = list(ids)
        with self._lock:
            self._tick += 1
            held = [self._slot[i] for i in keep if i in self._slot]
            self._last[held] = self._tick
            for sid in ids:
                if sid in self._spilled:
                    self._unlink(self._spilled.pop(sid))
            slots = self._slots(ids)
            slab = self._slab
            rows = torch.as_tensor(np.asarray(rows)).to(device=slab.device, dtype=slab.dtype)
            slab.index_copy_(0, torch.as_tensor(slots, device=slab.device), rows)

    def close(self) -> None:
        """Delete this pool's spill files (their states are lost): call it when the pool ends."""
        with self._lock:
            for sid, path in list(self._spilled.items()):
                self._unlink(path)
                self._spilled[sid] = None

    def __repr__(self) -> str:
        cap = "" if self.capacity is None else f", capacity={self.capacity}"
        return (
            f"StreamPool({type(self.model).__name__}, {len(self)} streams, "
            f"{self.held} held{cap}, kernel={type(self._kernel).__name__})"
        )

    # ------------------------------------------------------------- save and load
    def save(self, path: str | Path) -> Path:
        """Write every stream's state, the ids and the model's identity to one safetensors
        file (JSON in its metadata), atomically."""
        with self._lock:
            ids = self.ids()
            state = self._layout.to_state(self._rows(ids))
            meta = {
                "model_identity": self.model.identity(),
                "model_kind": self.model.kind,
                "ids": ids,
                "names": list(self._layout.names),
                "shapes": [list(s) for s in self._layout.shapes],
                "capacity": self.capacity,
            }
            store.write_pool(path, dict(zip(self._layout.names, state.tensors)), meta)
        return Path(path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        model: RecurrentModel | ModelBundle,
        *,
        capacity: Any = _SAVED,
        spill_dir: str | Path | None = None,
        fused: bool = True,
    ) -> StreamPool:
        """A pool with the streams saved at `path`; `model` must be the one that made them.

        `capacity` defaults to the saved pool's; if it holds more streams than that, the least
        recently used go to `spill_dir` (which is then required).
        """
        meta, tensors = store.read_pool(path)
        net = model.model if isinstance(model, ModelBundle) else model
        identity = net.identity()
        if meta.get("model_identity") != identity:
            raise ValueError(
                f"{path} holds stream states of model {str(meta.get('model_identity'))[:12]} "
                f"({meta.get('model_kind')}), but this model is {identity[:12]} "
                f"({net.kind}): a state means nothing to other weights. Load the model "
                "checkpoint that served these streams."
            )
        pool = cls(
            model, meta.get("capacity") if capacity is _SAVED else capacity, spill_dir, fused=fused
        )
        layout = pool._layout
        if meta.get("names") != list(layout.names) or meta.get("shapes") != [
            list(s) for s in layout.shapes
        ]:
            raise ValueError(
                f"{path}: saved state names/shapes {meta.get('names')} {meta.get('shapes')} "
                f"differ from the model's {list(layout.names)} {layout.shapes}."
            )
        ids = meta["ids"]
        device, dtype = pool._slab.device, pool._slab.dtype
        rows = layout.to_rows(State(tuple(tensors[n] for n in layout.names), layout.names))
        rows = rows.to(device=device, dtype=dtype)
        keep = len(ids) if pool.capacity is None else min(len(ids), pool.capacity)
        spill = len(ids) - keep
        if spill and pool.spill_dir is None:
            raise ValueError(
                f"{path} holds {len(ids)} streams but capacity is {pool.capacity}; "
                "give a spill_dir for the rest, or a larger capacity."
            )
        with pool._lock:
            for i in range(spill):  # the least recently used, straight to disk
                assert pool.spill_dir is not None  # checked above (for the type checker)
                pool._spilled[ids[i]] = store.write_spill(pool.spill_dir, ids[i], rows[i])
            if keep:
                pool._tick += 1
                slots = pool._take(keep)
                for n, (sid, slot) in enumerate(zip(ids[spill:], slots)):
                    pool._slot[sid] = slot
                    pool._owner[slot] = sid
                    pool._last[slot] = pool._tick + n  # keeps the saved recency order
                pool._tick += keep
                idx = torch.as_tensor(slots, dtype=torch.long, device=device)
                pool._slab.index_copy_(0, idx, rows[spill:])
        return pool

    # ------------------------------------------------------------- internals
    def _kernel_target(self) -> tuple[torch.device, torch.dtype]:
        """The model's current device and dtype; the slab follows the model if it moved."""
        device, dtype = self._kernel.target()
        slab = getattr(self, "_slab", None)
        if slab is not None and (slab.device != device or slab.dtype != dtype):
            self._slab = slab.to(device=device, dtype=dtype)
        return device, dtype

    def _as_input(self, x, n: int, device, dtype) -> Tensor:
        if isinstance(x, Tensor):
            xt = x.detach().to(device=device, dtype=dtype)
        elif (
            isinstance(x, np.ndarray)
            and x.dtype == _NUMPY.get(dtype)
            and x.flags.writeable
            and device.type == "cpu"
            and all(st >= 0 for st in x.strides)
        ):
            xt = torch.from_numpy(x)  # no copy: the kernel reads it once, before returning
        else:
            a = np.asarray(x)
            # pandas' copy-on-write arrays, reversed views (x[::-1]): torch wants a copy
            if not a.flags.writeable or any(st < 0 for st in a.strides):
                a = a.copy()
            xt = torch.as_tensor(a, dtype=dtype, device=device)
        f = self.model.input_size
        if xt.dim() != 3 or xt.shape[0] != n or xt.shape[2] != f or xt.shape[1] < 1:
            raise ValueError(
                f"expected x of shape [{n}, k, {f}] (one row per id, k >= 1 steps, {f} "
                f"features); received {tuple(xt.shape)}. For one step per stream use x[:, None]."
            )
        return xt

    def _check_finite(self, ids: list, xt: Tensor) -> None:
        # on the CPU numpy's test costs ~2 us; five torch calls cost ~25 us, as much as a step
        cpu = xt.device.type == "cpu" and xt.dtype in (torch.float32, torch.float64)
        if cpu and np.isfinite(xt.numpy()).all():
            return
        finite = torch.isfinite(xt).flatten(1).all(1)
        if not bool(finite.all()):
            i = int((~finite).nonzero()[0])
            raise ValueError(
                f"x for stream {ids[i]!r} (row {i}) holds NaN or inf (or a value beyond "
                f"{str(xt.dtype).replace('torch.', '')}'s range); it would spoil the stream's "
                "state for good, so no stream was stepped. StreamPool(..., "
                "allow_nonfinite=True) lets it through."
            )

    def _slots(self, ids: list) -> np.ndarray:
        """Slab rows of `ids` (admitting new, spilled and evicting as needed); marks them used.

        The rows of a long id list are remembered until a stream is admitted or released: a
        caller that steps the same 10,000 streams every call compares two lists (~30 us)
        instead of looking up 10,000 ids (~400 us)."""
        self._tick += 1
        memo = self._memo
        if memo is not None and len(ids) == len(memo[0]) and _same(ids, memo[0]):
            slots = memo[1]
        else:
            try:  # the common case: every stream is held
                slots = np.fromiter(
                    map(self._slot.__getitem__, ids), dtype=np.int64, count=len(ids)
                )
            except (KeyError, TypeError):
                slots = self._admit(ids)
            else:
                if len(ids) > 1 and np.bincount(slots).max() > 1:
                    self._duplicates(ids)
            if len(ids) >= MEMO_MIN:
                self._memo = (list(ids), slots)
        self._last[slots] = self._tick
        return slots

    def _admit(self, ids: list) -> np.ndarray:
        self._memo = None
        for sid in ids:
            if sid not in self._slot:
                _check_id(sid)
        if len(set(ids)) != len(ids):
            self._duplicates(ids)
        if self.capacity is not None and len(ids) > self.capacity:
            raise ValueError(
                f"one call steps {len(ids)} streams but the pool's capacity is {self.capacity}; "
                "split the call or raise the capacity."
            )
        held = [self._slot[i] for i in ids if i in self._slot]
        self._last[held] = self._tick  # this call's streams are the most recent: never evicted
        new = [_normal_id(i) for i in ids if i not in self._slot]
        slots_new = self._take(len(new))
        fresh, back, rows = [], [], []
        for sid, slot in zip(new, slots_new):
            self._slot[sid] = slot
            self._owner[slot] = sid
            if sid in self._spilled:  # it returns: read its state back
                path = self._spilled.pop(sid)
                if path is None:
                    fresh.append(slot)
                else:
                    back.append(slot)
                    rows.append(store.read_spill(path))
                    self._unlink(path)
            else:
                fresh.append(slot)
        slab = self._slab
        if fresh:
            slab.index_fill_(0, torch.as_tensor(fresh, device=slab.device), 0.0)
        if back:
            row_t = torch.stack(rows).to(device=slab.device, dtype=slab.dtype)
            slab.index_copy_(0, torch.as_tensor(back, device=slab.device), row_t)
        return np.fromiter((self._slot[i] for i in ids), dtype=np.int64, count=len(ids))

    def _take(self, n: int) -> list[int]:
        """n free slab rows: free ones first, then by growing, then by evicting the LRU."""
        short = n - len(self._free)
        if short > 0:
            rows = self._slab.shape[0]
            limit = self.capacity if self.capacity is not None else rows + short
            if rows < limit:
                self._grow(min(limit, max(2 * rows, rows + short, FIRST_ROWS)))
            short = n - len(self._free)
        if short > 0:
            for slot in np.argpartition(self._last, short - 1)[:short].tolist():
                self._evict(slot)
        return [self._free.pop() for _ in range(n)]

    def _grow(self, rows: int) -> None:
        old = self._slab
        slab = torch.zeros(rows, old.shape[1], device=old.device, dtype=old.dtype)
        slab[: old.shape[0]] = old
        self._slab = slab
        self._last = np.concatenate([self._last, np.full(rows - len(self._last), FREE)])
        self._owner.extend([None] * (rows - len(self._owner)))
        self._free.extend(range(rows - 1, old.shape[0] - 1, -1))  # pop() gives low rows first

    def _evict(self, slot: int) -> None:
        sid = self._owner[slot]
        if self.spill_dir is not None:
            self._spilled[sid] = store.write_spill(self.spill_dir, sid, self._slab[slot])
        self._release(slot)
        self.evictions += 1

    def _release(self, slot: int) -> None:
        self._memo = None
        del self._slot[self._owner[slot]]
        self._owner[slot] = None
        self._last[slot] = FREE
        self._free.append(slot)

    def _rows(self, ids: list) -> Tensor:
        """Copies of the state rows of `ids` (held or spilled), without admitting them."""
        out = torch.zeros(len(ids), self._layout.width, dtype=self._slab.dtype)
        at, slots = [], []
        for n, sid in enumerate(ids):
            if sid in self._slot:
                at.append(n)
                slots.append(self._slot[sid])
            elif sid in self._spilled:
                path = self._spilled[sid]
                if path is not None:
                    out[n] = store.read_spill(path)
            else:
                raise KeyError(self._unknown(sid))
        if at:
            held = self._slab.index_select(0, torch.as_tensor(slots, device=self._slab.device))
            out.index_copy_(0, torch.as_tensor(at), held.cpu())
        return out

    @staticmethod
    def _unlink(path: Path | None) -> None:
        if path is not None:
            path.unlink(missing_ok=True)

    def _unknown(self, stream_id) -> str:
        return f"no stream {stream_id!r} in this pool ({len(self)} streams)."

    @staticmethod
    def _duplicates(ids: list) -> None:
        seen, dup = set(), []
        for i in ids:
            if i in seen and i not in dup:
                dup.append(i)
            seen.add(i)
        raise ValueError(
            f"stream ids {dup[:5]} appear more than once in one step call; a call advances each "
            "stream once by k steps. Put a stream's consecutive steps in x[:, k] instead."
        )


def _check_id(sid) -> None:
    if isinstance(sid, bool) or not isinstance(sid, (str, int, np.integer, np.str_)):
        raise TypeError(
            f"stream ids must be str or int (they are saved as JSON); received {sid!r} "
            f"({type(sid).__name__})."
        )


def _same(a: list, b: list) -> bool:
    try:
        return bool(a == b)
    except Exception:  # an id whose == is not a plain bool (refused later, by _check_id)
        return False


def _normal_id(sid):
    """numpy scalars as plain Python values, so ids save as JSON."""
    if isinstance(sid, np.integer):
        return int(sid)
    if isinstance(sid, np.str_):
        return str(sid)
    return sid
