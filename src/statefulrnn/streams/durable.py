"""Durable stream states: one record per stream, versioned, committed a micro-batch at a time.

A `StateStore` keeps, for each stream id, the record below; `StreamService` (streams/service.py)
reads records of streams it does not hold, steps them, and commits every advanced record of a
micro-batch in one write before any of its answers is released. So what was acknowledged is
durable, and a process killed at any instant restarts with every acknowledged step applied.

    record(stream id) = version   int, +1 at each commit (optimistic concurrency: a commit
                                  names the version it replaces and fails if that moved on)
                        seq       the last applied client sequence number (None: none given)
                        row       the state as one row of numbers (streams/layout.py), [D]
                        answers   {seq: y [k, O]} of the steps with a seq in the commit that
                                  made `row` (a client that retries one gets it again; a
                                  crash between commit and reply loses at most one micro-batch
                                  of replies, never a state)

Stores (same interface; `exclusive` says whether this process is the only writer):

- `MemoryStore`: a dict. Not durable; what `serve` uses without `--state`/`--redis`.
- `SQLiteStore(path)`: an embedded SQLite database in WAL mode, one row per stream, one
  transaction per micro-batch. An exclusive `flock` on the database file means a second
  process refuses to open it (rather than both writing and the last one silently winning);
  the kernel drops the lock when the holder dies, even by SIGKILL. `SQLiteStore(path,
  shared=True)` is for the worker processes of one `serve --workers N`: each takes a shared
  `flock` (so a process that wants the file alone is refused, and the other way round), is not
  `exclusive`, and relies on the versioned commits (`BEGIN IMMEDIATE` serializes the writers)
  exactly as Redis replicas do. `synchronous=FULL` by
  default: a commit is on disk (WAL fsync'd) before the answer goes out, so neither kill -9
  nor a power cut loses an acknowledged step. `synchronous="NORMAL"` fsyncs only at WAL
  checkpoints: a kill -9 still loses nothing (the WAL is in the OS's page cache), a power cut
  may lose the last commits. Measured here (ext4 on a virtual disk, load average 11 on 2
  cores): one fsync ~4 ms; a 1-stream commit 4.2 ms FULL vs 0.03 ms NORMAL; a 1,000-stream
  commit 70 ms FULL vs 47 ms NORMAL wall (31 vs 19 ms CPU). The fsync is paid once per
  micro-batch, so FULL costs a few ms of latency and little throughput: it is the default.
- `RedisStore(url)` (streams/redis_store.py): one hash per stream; a Lua script compares each
  stream's version and sets it atomically, so two replicas never both advance one stream.

Every store records which model its states belong to (`open(meta)`): states mean nothing to
other weights, so a store made by another model is refused with a clear error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

FORMAT = "statefulrnn.StreamStore"
FORMAT_VERSION = 1
SQLITE_MAGIC = b"SQLite format 3\x00"
SYNC_MODES = ("FULL", "NORMAL")
BUSY_TIMEOUT_MS = 5000
# a stream's new record, written only over the version it replaces (UPDATE), or only if the
# stream is not stored yet (INSERT, for version 0): their row counts say which applied
UPDATE = "UPDATE streams SET version = ?, seq = ?, state = ?, y = ? WHERE id = ? AND version = ?"
INSERT = (
    "INSERT INTO streams (version, seq, state, y, id) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)


class StoreError(RuntimeError):
    """The state store failed (disk, connection): the micro-batch was not committed."""


@dataclass(slots=True)
class Record:
    """One stream's durable record (see the module docstring)."""

    version: int
    seq: int | None
    row: np.ndarray  # [D], the layout's row
    answers: dict[int, np.ndarray] | None  # seq -> y [k, O] of the last commit


@dataclass(slots=True)
class Write:
    """Commit `row` (and seq, answers) for `sid` if its stored version is still `version` (0: new)."""

    sid: Hashable
    version: int
    seq: int | None
    row: np.ndarray
    answers: dict[int, np.ndarray] | None


def key_of(sid: Hashable) -> str:
    """A stream id as stored: its JSON ("7" and 7 stay different ids)."""
    if type(sid) is str:  # json.dumps(sid) without its dispatch (the per-stream hot path)
        return _json_str(sid)
    return json.dumps(sid)


def id_of(key: str | bytes) -> Hashable:
    return json.loads(key)


_json_str = json.encoder.encode_basestring_ascii  # what json.dumps does for a str
_HEADS: dict[tuple, bytes] = {}


@overload
def encode_array(a: np.ndarray) -> bytes: ...
@overload
def encode_array(a: None) -> None: ...
def encode_array(a: np.ndarray | None) -> bytes | None:
    """[..] float array -> bytes: dtype string (4 bytes), ndim, shape (int32 each), the data."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    key = (a.dtype.str, a.shape)
    head = _HEADS.get(key)
    if head is None:
        shape = np.array([a.ndim, *a.shape], dtype="<i4").tobytes()
        head = _HEADS.setdefault(key, a.dtype.str.encode().ljust(4) + shape)
    return head + a.tobytes()


@overload
def decode_array(b: bytes) -> np.ndarray: ...
@overload
def decode_array(b: None) -> None: ...
def decode_array(b: bytes | None) -> np.ndarray | None:
    if b is None:
        return None
    dtype = np.dtype(b[:4].decode().strip())
    ndim = int(np.frombuffer(b[4:8], "<i4")[0])
    shape = tuple(np.frombuffer(b[8 : 8 + 4 * ndim], "<i4").tolist())
    return np.frombuffer(b[8 + 4 * ndim :], dtype).reshape(shape).copy()


def encode_arrays(arrays: list[np.ndarray]) -> list[bytes]:
    """`encode_array` of each, done once for a micro-batch's rows when they share a dtype and
    shape (they do: one model's states): one header, one copy, then slices."""
    if not arrays:
        return []
    first = arrays[0]
    if any(a.shape != first.shape or a.dtype != first.dtype for a in arrays):
        return [encode_array(a) for a in arrays]
    head = encode_array(first)[: -first.nbytes or None]
    data, size = np.stack(arrays).tobytes(), first.nbytes
    return [head + data[i * size : (i + 1) * size] for i in range(len(arrays))]


def encode_answers(answers: dict[int, np.ndarray] | None) -> bytes | None:
    """{seq: y [k, O]} -> bytes: a JSON line [[seq, k], ...], then the ys stacked."""
    if not answers:
        return None
    head = json.dumps([[seq, len(y)] for seq, y in answers.items()]).encode()
    return head + b"\n" + encode_array(np.concatenate(list(answers.values())))


def decode_answers(b: bytes | None) -> dict[int, np.ndarray] | None:
    if not b:
        return None
    cut = b.index(b"\n")
    ys, at, out = decode_array(b[cut + 1 :]), 0, {}
    for seq, k in json.loads(b[:cut]):
        out[seq] = ys[at : at + k]
        at += k
    return out


def check_meta(where: str, saved: dict[str, Any], meta: dict[str, Any]) -> None:
    """Refuse a store made for another model (identity, state names/shapes, dtype)."""
    if saved.get("format") != FORMAT:
        raise ValueError(
            f"{where} is not a statefulrnn stream store (format {saved.get('format')!r})."
        )
    if saved.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{where} has stream store format version {saved.get('version')}; this statefulrnn "
            f"reads version {FORMAT_VERSION}."
        )
    if saved.get("model_identity") != meta["model_identity"]:
        raise ValueError(
            f"{where} holds stream states of model {str(saved.get('model_identity'))[:12]} "
            f"({saved.get('model_kind')}), but this model is {meta['model_identity'][:12]} "
            f"({meta['model_kind']}): a state means nothing to other weights. Serve the model "
            "that made these streams, or give a new store."
        )
    for name in ("names", "shapes", "dtype"):
        if saved.get(name) != meta[name]:
            raise ValueError(
                f"{where}: saved state {name} {saved.get(name)} differ from the model's {meta[name]}."
            )


class StateStore:
    """The interface every store implements (see the module docstring)."""

    exclusive = True  # only this process writes: records held in memory stay current
    where = "state store"

    def open(self, meta: dict[str, Any]) -> None:
        """Bind the store to a model (record `meta` if new, else check it matches)."""
        raise NotImplementedError

    def load(self, ids: Iterable[Hashable]) -> dict[Hashable, Record]:
        """The records of those ids that exist."""
        raise NotImplementedError

    def commit(self, writes: list[Write], deletes: Iterable[Hashable] = ()) -> set[Hashable]:
        """Apply every write whose version still matches, and the deletes, durably and at once.

        Returns the ids whose write was refused (another writer advanced them). Raises
        StoreError if nothing could be committed.
        """
        raise NotImplementedError

    def versions(self, ids: list[Hashable]) -> dict[Hashable, int]:
        """The stored version of each id that exists (a shared store answers this cheaply)."""
        return {sid: rec.version for sid, rec in self.load(ids).items()}

    def ids(self) -> list[Hashable]:
        raise NotImplementedError

    def __len__(self) -> int:
        """How many streams the store holds: a count it keeps, not a scan (metrics read it)."""
        return len(self.ids())

    def close(self) -> None:
        """Release the store (locks, connections); idempotent."""

    def ping(self) -> None:
        """Raise StoreError if the store cannot be used now."""
        self.versions([])


class MemoryStore(StateStore):
    """Records in a dict: the interface without durability (tests, `serve` without a store)."""

    where = "memory"

    def __init__(self) -> None:
        self._records: dict[Hashable, Record] = {}

    def open(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def load(self, ids):
        return {i: self._records[i] for i in ids if i in self._records}

    def commit(self, writes, deletes=()):
        conflicts = set()
        for w in writes:
            old = self._records.get(w.sid)
            if (old.version if old is not None else 0) != w.version:
                conflicts.add(w.sid)
                continue
            self._records[w.sid] = Record(w.version + 1, w.seq, w.row.copy(), w.answers)
        for sid in deletes:
            self._records.pop(sid, None)
        return conflicts

    def ids(self):
        return list(self._records)

    def __len__(self) -> int:
        return len(self._records)


class SQLiteStore(StateStore):
    """Stream records in an SQLite database (WAL), locked to one process or shared by the
    workers of one `serve --workers` (see module docstring)."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", shared: bool = False):
        self.path = Path(path)
        self.exclusive = not shared
        self.where = str(self.path)
        synchronous = synchronous.upper()
        if synchronous not in SYNC_MODES:
            raise ValueError(f"synchronous must be one of {SYNC_MODES}; received {synchronous!r}.")
        self._lock_fd: int | None = None
        self._db: sqlite3.Connection | None = None
        if self.path.exists():
            if not self.path.is_file():
                raise ValueError(f"--state {self.path} is not a regular file.")
            with open(self.path, "rb") as f:
                head = f.read(16)
            if head and head != SQLITE_MAGIC:
                hint = (
                    " It looks like a StreamPool.save file (safetensors) from an older "
                    "statefulrnn: load it with StreamPool.load, or give a new path."
                    if len(head) >= 8 and head[8:9] == b"{"
                    else ""
                )
                raise ValueError(f"{self.path} is not a stream state database.{hint}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise OSError(f"cannot open --state {self.path} for writing: {err.strerror}.") from None
        try:
            fcntl.flock(self._lock_fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            holder = (
                "a process that holds it alone (a `serve` without --workers, or `stream`)"
                if shared
                else "another process (a `serve`, `serve --workers` or `stream` holds its lock)"
            )
            raise OSError(
                f"{self.path} is in use by {holder}; writers that do not know of each other "
                "would overwrite each other's streams. Stop the other one, or give another --state."
            ) from None
        try:
            # autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise OSError(f"SQLite could not use WAL mode on {self.path} (got {mode}).")
            db.execute(f"PRAGMA synchronous = {synchronous}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS streams (id TEXT PRIMARY KEY, version INTEGER NOT NULL,"
                " seq INTEGER, state BLOB NOT NULL, y BLOB)"
            )
            # the number of streams, counted once here and then kept by commit when this
            # process is the only writer, so /metrics never scans the table (shared: __len__)
            self._count = db.execute("SELECT COUNT(*) FROM streams").fetchone()[0]
            self._db = db
        except (sqlite3.Error, OSError) as err:
            self.close()
            raise OSError(f"cannot use --state {self.path} as a state database: {err}") from None

    @property
    def _conn(self) -> sqlite3.Connection:
        """The open connection; StoreError once the store is closed."""
        if self._db is None:
            raise StoreError(f"{self.path} is closed")
        return self._db

    def open(self, meta: dict[str, Any]) -> None:
        full = {"format": FORMAT, "version": FORMAT_VERSION, **meta}
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'pool'").fetchone()
        if row is None:
            try:  # OR IGNORE: a worker that started at the same instant may have written it
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('pool', ?)",
                    (json.dumps(full),),
                )
                row = self._conn.execute("SELECT value FROM meta WHERE key = 'pool'").fetchone()
            except sqlite3.Error as err:
                raise OSError(f"cannot write to --state {self.path}: {err}") from None
        check_meta(str(self.path), json.loads(row[0]), full)

    def load(self, ids):
        keys = [key_of(i) for i in ids]
        out: dict[Hashable, Record] = {}
        for lo in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            part = keys[lo : lo + 500]
            marks = ",".join("?" * len(part))
            try:
                rows = self._conn.execute(
                    f"SELECT id, version, seq, state, y FROM streams WHERE id IN ({marks})", part
                ).fetchall()
            except sqlite3.Error as err:
                raise StoreError(f"reading {self.path}: {err}") from None
            for key, version, seq, state, y in rows:
                out[id_of(key)] = Record(version, seq, decode_array(state), decode_answers(y))
        return out

    def commit(self, writes, deletes=()):
        """One transaction: each write applies only if the stored version is still the one it
        replaces (`UPDATE ... WHERE version = ?`; a new stream's `INSERT` only if absent), so
        the usual commit reads nothing first; if any did not apply, the transaction is redone
        with the stale writes left out (they are returned)."""
        db = self._conn
        deletes = [(key_of(i),) for i in deletes]
        states = encode_arrays([w.row for w in writes])
        rows = [
            (w.version + 1, w.seq, state, encode_answers(w.answers), key_of(w.sid), w.version)
            for w, state in zip(writes, states)
        ]
        conflicts: set[Hashable] = set()
        try:
            db.execute("BEGIN IMMEDIATE")  # the write lock first: versions stay as read
            try:
                applied = self._write(rows)
                if applied != len(rows):  # another version is stored for some: redo without them
                    db.execute("ROLLBACK")
                    db.execute("BEGIN IMMEDIATE")
                    have = self._versions([w.sid for w in writes])
                    conflicts = {w.sid for w in writes if have.get(w.sid, 0) != w.version}
                    self._write([r for w, r in zip(writes, rows) if w.sid not in conflicts])
                gone = 0
                if deletes:
                    gone = db.executemany("DELETE FROM streams WHERE id = ?", deletes).rowcount
                db.execute("COMMIT")
                self._count += sum(w.version == 0 and w.sid not in conflicts for w in writes) - gone
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise StoreError(f"committing to {self.path}: {err}") from None
        return conflicts

    def _write(self, rows: list[tuple]) -> int:
        """Updates (version > 0) and inserts (version 0) of `commit`; how many applied."""
        db = self._conn
        updates = [r for r in rows if r[5]]
        inserts = [r[:5] for r in rows if not r[5]]
        applied = db.executemany(UPDATE, updates).rowcount if updates else 0
        return applied + (db.executemany(INSERT, inserts).rowcount if inserts else 0)

    def _versions(self, ids: list[Hashable]) -> dict[Hashable, int]:
        out: dict[Hashable, int] = {}
        by_key = {key_of(i): i for i in ids}
        keys = list(by_key)
        for lo in range(0, len(keys), 500):
            part = keys[lo : lo + 500]
            rows = self._conn.execute(
                f"SELECT id, version FROM streams WHERE id IN ({','.join('?' * len(part))})", part
            ).fetchall()
            out.update((by_key[k], v) for k, v in rows)
        return out

    def versions(self, ids):
        if self._db is None:
            raise StoreError(f"{self.path} is closed")
        try:
            return self._versions(list(ids))
        except sqlite3.Error as err:
            raise StoreError(f"reading {self.path}: {err}") from None

    def ids(self):
        return [id_of(k) for (k,) in self._conn.execute("SELECT id FROM streams ORDER BY rowid")]

    def __len__(self) -> int:
        if self.exclusive:
            return self._count
        try:  # other workers insert and delete too: count (a scan, only when metrics ask)
            return self._conn.execute("SELECT COUNT(*) FROM streams").fetchone()[0]
        except sqlite3.Error as err:
            raise StoreError(f"reading {self.path}: {err}") from None

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self._lock_fd is not None:  # after SQLite let go of the file (POSIX lock caveat)
            os.close(self._lock_fd)
            self._lock_fd = None


def store_meta(model) -> dict[str, Any]:
    """What a store records about the model whose states it holds."""
    from statefulrnn.streams.layout import Layout

    layout = Layout(model)
    return {
        "model_identity": model.identity(),
        "model_kind": model.kind,
        "names": list(layout.names),
        "shapes": [list(s) for s in layout.shapes],
        "dtype": str(model.dtype).replace("torch.", ""),
    }
