"""StreamService: a StreamPool whose states are durable, stepped a micro-batch at a time.

The serving core shared by `statefulrnn stream` (lines) and `statefulrnn serve` (HTTP,
WebSocket). It takes a micro-batch of step requests, any streams, any order, and answers each:

    requests ─► validate each (shape, finite; an error answers that request alone)
             ─► seq: a retried step (seq already applied) gets its stored answer, not a 2nd step
             ─► rounds: round r holds each stream's r-th request, so a stream's steps stay in order
             ─► per round, per k: read the records of streams not held (store.load), then one
                StreamPool.step for all of them
             ─► one store.commit for the whole micro-batch (versions checked)
             ─► only then the answers go out: what a client saw is durable.

The pool is a cache of the store: with an `exclusive` store (SQLite, locked to this process;
memory) a held stream's record is current; with a shared store (Redis, several replicas) every
micro-batch re-reads the records' versions and reloads the streams another replica advanced.
A refused commit (another replica won the race) answers 409 and drops the cached state; a
failed commit answers 503 for the batch's steps and drops their cached states, so memory never
runs ahead of the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from statefulrnn.streams.durable import Record, StateStore, StoreError, Write, store_meta
from statefulrnn.streams.lines import DEFAULT_LIMITS
from statefulrnn.streams.pool import StreamPool

MAX_ID_CHARS = DEFAULT_LIMITS.max_id_chars  # the same bound as `stream`'s lines


@dataclass(slots=True)
class StepRequest:
    """One request's steps for one stream: x [k, F] (k >= 1) in the user's units.

    `seq`: optional client sequence number (strictly increasing per stream); a request whose
    seq is the stream's last applied one is answered from the store, not applied again.
    `start`: reset the stream to a zero state before these steps. `end`: drop it after them.
    `tag`: the client's label for the answer (echoed by `serve`, unused here).
    """

    sid: Hashable
    x: object
    seq: int | None = None
    start: bool = False
    end: bool = False
    tag: object = None


@dataclass(slots=True)
class StepResult:
    """y [k, O] or an error with an HTTP-like status (400 bad input, 409 conflict, 503 store)."""

    y: np.ndarray | None = None
    error: str | None = None
    status: int = 200
    replayed: bool = False
    version: int | None = None


@dataclass(slots=True)
class _Held:
    version: int  # the store's version of the state the pool holds (0: not in the store)
    seq: int | None
    answers: dict[int, np.ndarray] | None  # seq -> y of the last commit (for retries)
    used: float = field(default_factory=time.monotonic)


_NUMBER = (int, float)


def check_x(x, features: int) -> np.ndarray:
    """x as float64 [k, F]; ValueError naming the step/feature that is wrong.

    x: an array, or (from JSON) a list of k lists of F numbers; a list of numbers is read as k
    steps of a one-feature model. Strings and booleans are refused, not converted.
    """
    if isinstance(x, list):
        for k, row in enumerate(x):
            values = row if isinstance(row, list) else (row,)
            for j, v in enumerate(values):
                if type(v) not in _NUMBER and not (
                    isinstance(v, _NUMBER) and not isinstance(v, bool)
                ):
                    where = f"x[{k}][{j}]" if isinstance(row, list) else f"x[{k}]"
                    raise ValueError(
                        f"{where} = {_short(v)} is not a number; x must be a list of steps, "
                        f"each a list of {features} numbers"
                    )
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(
            f"x must be a list of steps, each a list of {features} numbers; received {_short(x)}"
        ) from None
    if a.ndim == 1 and features == 1 and a.size >= 1:
        a = a[:, None]  # [k] for a one-feature model
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(
            f"x must be a list of k >= 1 steps, each a list of {features} numbers; received "
            f"shape {list(a.shape)}"
        )
    if a.shape[1] != features:
        raise ValueError(
            f"x has {a.shape[1]} feature{'s' if a.shape[1] != 1 else ''} per step but the model "
            f"takes {features}"
        )
    if not np.isfinite(a).all():
        k, j = np.argwhere(~np.isfinite(a))[0].tolist()
        raise ValueError(
            f"x[{k}][{j}] = {a[k, j]} is not finite; it would spoil the stream's state"
        )
    return a


def one_step_rows(requests: list[StepRequest], features: int) -> np.ndarray | None:
    """Every request's x as [n, 1, F] when each is one step of F finite plain numbers (what
    a served micro-batch almost always is): one array for the batch instead of `check_x`
    per request (~1 us instead of ~10 us a request). None otherwise: then `check_x` checks
    each request and names what is wrong."""
    rows = []
    number = (float, int)
    for req in requests:
        x = req.x
        if type(x) is not list or len(x) != 1:
            return None
        row = x[0]
        if type(row) is not list or len(row) != features:
            return None
        for v in row:
            if type(v) not in number:  # bool, str, None...: check_x refuses them by name
                return None
        rows.append(row)
    if not rows:
        return None
    try:
        a = np.array(rows, dtype=np.float64)
    except OverflowError:  # an integer beyond float64: check_x says which
        return None
    if not np.isfinite(a).all():
        return None
    return a[:, None, :]


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class StreamService:
    """Durable streams: `step(requests)` -> results, one store commit per call (see module doc).

    `pool`: the StreamPool (its capacity bounds the states held in memory; the store holds the
    rest). `store`: a StateStore, or None for a pool alone (nothing durable, the pool's own
    spill/forget rules apply).
    """

    def __init__(self, pool: StreamPool, store: StateStore | None = None):
        if store is not None and pool.spill_dir is not None:
            raise ValueError(
                "a pool with a spill_dir and a state store: the store already keeps evicted "
                "streams; leave out the spill_dir."
            )
        self.pool, self.store = pool, store
        self.features = pool.model.input_size
        self.outputs = pool.model.output_size
        self._held: dict[Hashable, _Held] = {}
        self._lock = threading.Lock()
        self.commits = 0
        self.store_errors = 0
        if store is not None:
            store.open(store_meta(pool.model))

    # ------------------------------------------------------------- stepping
    def step(self, requests: list[StepRequest]) -> list[StepResult]:
        """Answer every request; a bad one fails alone. See the module docstring."""
        out: list[StepResult | None] = [None] * len(requests)
        xs: list[np.ndarray | None] = [None] * len(requests)
        rounds: list[list[int]] = []
        count: dict[Hashable, int] = {}
        one_step = one_step_rows(requests, self.features)
        for n, req in enumerate(requests):
            try:
                _check_id(req.sid)
                _check_seq(req.seq)
                xs[n] = one_step[n] if one_step is not None else check_x(req.x, self.features)
            except ValueError as err:
                out[n] = StepResult(error=str(err), status=400)
                continue
            r = count.get(req.sid, 0)
            count[req.sid] = r + 1
            if r == len(rounds):
                rounds.append([])
            rounds[r].append(n)
        with self._lock:
            self._step_rounds(requests, xs, rounds, out)
        return out  # type: ignore[return-value]

    def _step_rounds(self, requests, xs, rounds, out) -> None:
        pool, store = self.pool, self.store
        writes: dict[Hashable, Write] = {}
        deletes: set[Hashable] = set()
        answered: dict[Hashable, list[int]] = {}  # stream -> its requests stepped in this batch
        gone: dict[Hashable, int] = {}  # ended in this batch -> its stored version
        try:
            for members in rounds:
                if store is not None and not store.exclusive:
                    self._refresh(
                        [requests[n].sid for n in members if requests[n].sid not in answered]
                    )
                by_k: dict[int, list[int]] = {}
                for n in members:
                    held = self._held.get(requests[n].sid)
                    if held is not None and requests[n].sid in pool:
                        replay = self._replay(requests[n], held)
                        if replay is not None:
                            out[n] = replay
                            continue
                    by_k.setdefault(xs[n].shape[0], []).append(n)
                for group in by_k.values():
                    size = pool.capacity or len(group)
                    for lo in range(0, len(group), size):
                        chunk = self._admit(requests, group[lo : lo + size], out, writes, gone)
                        if chunk:
                            self._run(requests, xs, chunk, out, writes, deletes, answered, gone)
            if store is not None and (writes or deletes):
                self._commit(writes, deletes, answered, out)
            if store is not None and len(self._held) > 2 * max(pool.held, 1024):
                # streams the pool evicted: their records are in the store; forget them here
                self._held = {sid: h for sid, h in self._held.items() if sid in pool}
        except StoreError as err:
            self.store_errors += 1
            self._forget(list(answered))
            for ns in answered.values():
                for n in ns:
                    out[n] = StepResult(
                        error=f"state store error, step not applied: {err}", status=503
                    )
            for n, r in enumerate(out):
                if r is None:
                    out[n] = StepResult(error=f"state store error: {err}", status=503)

    def _admit(self, requests, chunk: list[int], out, writes, gone) -> list[int]:
        """Read the records of the chunk's streams not held; answer retried steps from them.

        A stream evicted earlier in this micro-batch comes back from its pending write (not
        the store, which does not have it yet); one ended earlier in it starts from zero.
        """
        if self.store is None:
            return chunk
        pool = self.pool
        ids = [requests[n].sid for n in chunk]
        missing = [sid for sid in ids if sid not in self._held or sid not in pool]
        if not missing:
            return chunk
        pending = [sid for sid in missing if sid in writes]
        if pending:
            pool.put(pending, np.stack([writes[sid].row for sid in pending]), keep=ids)
            for sid in pending:
                w = writes[sid]
                self._held[sid] = _Held(w.version, w.seq, w.answers)
        for sid in missing:
            if sid in gone:
                if sid in pool:
                    pool.drop(sid)
                self._held[sid] = _Held(gone[sid], None, None)
        stored = [sid for sid in missing if sid not in writes and sid not in gone]
        if stored:
            self._load(stored, keep=ids)
        missing_set = set(missing)
        keep = []
        for n in chunk:
            replay = None
            if requests[n].sid in missing_set:
                replay = self._replay(requests[n], self._held[requests[n].sid])
            if replay is not None:
                out[n] = replay
            else:
                keep.append(n)
        return keep

    def _replay(self, req: StepRequest, held: _Held) -> StepResult | None:
        if req.seq is None or held.seq is None or req.seq > held.seq:
            return None
        if held.answers and req.seq in held.answers:
            return StepResult(y=held.answers[req.seq], replayed=True, version=held.version)
        return StepResult(
            error=(
                f"stream {req.sid!r}: step seq {req.seq} was already applied (the last applied "
                f"seq is {held.seq}); seq must increase"
            ),
            status=409,
        )

    def _run(self, requests, xs, members, out, writes, deletes, answered, gone) -> None:
        pool = self.pool
        ids = [requests[n].sid for n in members]
        for n in members:
            if requests[n].start and requests[n].sid in pool:
                pool.reset(requests[n].sid)
        x = np.stack([xs[n] for n in members])
        y = pool.step(ids, x)
        y = np.asarray(y, dtype=np.float64)
        rows = pool.rows(ids).numpy() if self.store is not None else None
        now = time.monotonic()
        for j, n in enumerate(members):
            req = requests[n]
            sid = req.sid
            held = self._held.get(sid)
            if held is None:
                held = self._held[sid] = _Held(0, None, None)
            base = writes[sid].version if sid in writes else held.version
            held.seq = req.seq if req.seq is not None else held.seq
            if sid not in answered or held.answers is None:
                held.answers = {}  # the replies this commit will keep for retries
            if req.seq is not None:
                held.answers[req.seq] = y[j]
            held.used = now
            out[n] = StepResult(y=y[j], version=base + 1)
            answered.setdefault(sid, []).append(n)
            if req.end:
                deletes.add(sid)
                gone[sid] = base
                writes.pop(sid, None)
                pool.drop(sid)
                del self._held[sid]
            elif rows is not None:
                deletes.discard(sid)
                writes[sid] = Write(sid, base, held.seq, rows[j], dict(held.answers))

    @property
    def _store(self) -> StateStore:
        """The store, on the paths that run only with one."""
        if self.store is None:
            raise RuntimeError("this StreamService has no store")
        return self.store

    def _commit(self, writes, deletes, answered, out) -> None:
        conflicts = self._store.commit(list(writes.values()), deletes)
        self.commits += 1
        for sid, w in writes.items():
            if sid in conflicts:
                self._forget([sid])
                for n in answered.get(sid, []):
                    out[n] = StepResult(
                        error=(
                            f"stream {sid!r} was advanced by another replica while this step ran; "
                            "the step was not applied: retry it"
                        ),
                        status=409,
                    )
            elif sid in self._held:
                self._held[sid].version = w.version + 1

    def _load(self, ids: list, keep: list) -> None:
        """Hold `ids` with their stored records (a zero state for ids the store lacks)."""
        records = self._store.load(ids)
        found = [i for i in ids if i in records]
        if found:
            self.pool.put(found, np.stack([records[i].row for i in found]), keep=keep)
        for sid in ids:
            rec = records.get(sid)
            if rec is None:
                if sid in self.pool:
                    self.pool.drop(sid)  # a stale cached state of a stream the store dropped
                self._held[sid] = _Held(0, None, None)
            else:
                self._held[sid] = _Held(rec.version, rec.seq, rec.answers)

    def _refresh(self, ids: list) -> None:
        """Shared store: forget cached states whose stored version moved on (another replica)."""
        if not ids:
            return
        versions = self._store.versions(ids)
        for sid in ids:
            held = self._held.get(sid)
            if held is not None and versions.get(sid, 0) != held.version:
                self._forget([sid])

    def _forget(self, ids) -> None:
        for sid in ids:
            self._held.pop(sid, None)
            if sid in self.pool:
                self.pool.drop(sid)

    # ------------------------------------------------------------- one stream
    def reset(self, sid: Hashable) -> int:
        """Zero a stream's state (durably); KeyError if it is unknown. Returns the new version."""
        with self._lock:
            rec = self._record(sid)
            if self.store is None:
                self.pool.reset(sid)
                return 0
            zero = np.zeros_like(rec.row)
            conflicts = self.store.commit([Write(sid, rec.version, rec.seq, zero, None)])
            self._forget([sid])
            if conflicts:
                raise StoreError(f"stream {sid!r} was advanced by another replica; retry the reset")
            return rec.version + 1

    def drop(self, sid: Hashable) -> None:
        """Forget a stream everywhere; KeyError if it is unknown."""
        with self._lock:
            self._record(sid)
            if self.store is not None:
                self.store.commit([], [sid])
            self._forget([sid])

    def info(self, sid: Hashable) -> dict:
        """{"id", "version", "seq", "held"}; KeyError if unknown."""
        with self._lock:
            rec = self._record(sid)
            return {
                "id": sid,
                "version": rec.version,
                "seq": rec.seq,
                "held": sid in self.pool,
            }

    def _record(self, sid: Hashable) -> Record:
        held = self._held.get(sid)
        if self.store is None:
            if sid not in self.pool:
                raise KeyError(sid)
            row = self.pool.rows([sid]).numpy()[0]
            return Record(0, held.seq if held else None, row, held.answers if held else None)
        if held is not None and sid in self.pool and self.store.exclusive:
            return Record(held.version, held.seq, self.pool.rows([sid]).numpy()[0], held.answers)
        recs = self.store.load([sid])
        if sid not in recs:
            raise KeyError(sid)
        return recs[sid]

    # ------------------------------------------------------------- housekeeping
    def evict_idle(self, seconds: float) -> int:
        """Drop from memory the streams unused for `seconds` (their state stays in the store)."""
        if self.store is None:
            return 0
        with self._lock:
            now = time.monotonic()
            old = [sid for sid, h in self._held.items() if now - h.used > seconds]
            self._forget(old)
            return len(old)

    def ping(self) -> None:
        """Raise if the store cannot be reached (readiness)."""
        if self.store is not None:
            self.store.ping()

    def __len__(self) -> int:
        with self._lock:
            return len(self.store) if self.store is not None else len(self.pool)

    @property
    def held(self) -> int:
        return self.pool.held

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _check_id(sid) -> None:
    if isinstance(sid, bool) or not isinstance(sid, (str, int)):
        raise ValueError(f"a stream id must be a string or an integer; received {_short(sid)}")
    if isinstance(sid, str) and len(sid) > MAX_ID_CHARS:
        raise ValueError(
            f"a stream id may have at most {MAX_ID_CHARS} characters; this one has {len(sid)}"
        )


def _check_seq(seq) -> None:
    if seq is None:
        return
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or seq >= 2**63:
        raise ValueError(f"seq must be an integer >= 0; received {_short(seq)}")
