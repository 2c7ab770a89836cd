"""RedisStore: stream records in Redis, shared by several serving replicas.

One hash per stream, `{prefix}:s:{json id}` = {v: version, seq, state: row bytes, ans: replies
of the last commit}, and `{prefix}:meta` = the model the states belong to. A micro-batch's
commit is one Lua script (atomic on the server): for each stream it compares the stored
version with the one the replica read, writes the new record only if they are equal, and
returns the streams it refused. So when two replicas step the same stream at once, exactly one
advances it; the other answers 409 and re-reads the state on its next step.

Not `exclusive`: another replica may advance any stream, so StreamService re-reads the
versions of a micro-batch's streams (one pipelined round trip) and reloads the ones that
moved. What "durable" means is Redis's own setting: an acknowledged step is in the server's
memory (and replicated/fsync'd as its `appendonly`/`appendfsync` say; use `appendfsync
always` to survive a Redis crash too). A replica killed at any instant loses nothing
acknowledged.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Hashable
from typing import Any

from statefulrnn.streams.durable import (
    FORMAT,
    FORMAT_VERSION,
    Record,
    StateStore,
    StoreError,
    check_meta,
    decode_answers,
    decode_array,
    encode_answers,
    encode_arrays,
    id_of,
    key_of,
)

# KEYS: the written streams' keys, then the deleted ones, then the stream counter. ARGV: number
# of writes, then per write: expected version, seq ("" for none), state, answers ("" for none).
# The counter `{prefix}:n` (+1 for a stream written for the first time, -1 for one deleted)
# answers "how many streams" without a scan of the keys.
COMMIT = """
local COUNT = KEYS[#KEYS]
local n = tonumber(ARGV[1])
local refused = {}
for i = 1, n do
  local at = 2 + (i - 1) * 4
  local want = tonumber(ARGV[at])
  local have = tonumber(redis.call('HGET', KEYS[i], 'v') or '0')
  if have ~= want then
    table.insert(refused, i)
  else
    if have == 0 then
      redis.call('INCR', COUNT)
    end
    redis.call('HSET', KEYS[i], 'v', want + 1, 'state', ARGV[at + 2], 'ans', ARGV[at + 3])
    if ARGV[at + 1] == '' then
      redis.call('HDEL', KEYS[i], 'seq')
    else
      redis.call('HSET', KEYS[i], 'seq', ARGV[at + 1])
    end
  end
end
for i = n + 1, #KEYS - 1 do
  if redis.call('DEL', KEYS[i]) == 1 then
    redis.call('DECR', COUNT)
  end
end
return refused
"""


# One call for a micro-batch's reads (a pipeline of one command per stream costs redis-py
# ~10 us of Python per command to pack and parse): KEYS: the streams' keys.
VERSIONS = """
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('HGET', KEYS[i], 'v') or ''
end
return out
"""
LOAD = """
local out = {}
for i = 1, #KEYS do
  local r = redis.call('HMGET', KEYS[i], 'v', 'seq', 'state', 'ans')
  local at = (i - 1) * 4
  for j = 1, 4 do
    out[at + j] = r[j] or ''
  end
end
return out
"""


class RedisStore(StateStore):
    """Stream records in Redis at `url` under `prefix` (see the module docstring)."""

    exclusive = False

    def __init__(self, url: str, *, prefix: str = "statefulrnn", timeout: float = 5.0):
        try:
            import redis
        except ImportError:
            raise ImportError(
                "--redis needs the redis package: pip install redis"
            ) from None
        self._redis_errors = (redis.RedisError, OSError)
        self.where = f"{url} (prefix {prefix!r})"
        self.prefix = prefix
        try:
            self.client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            self.client.ping()
        except ValueError as err:
            raise ValueError(f"--redis {url!r} is not a Redis URL ({err}).") from None
        except self._redis_errors as err:
            raise OSError(f"cannot reach Redis at {url}: {err}") from None
        self._commit = self.client.register_script(COMMIT)
        self._versions = self.client.register_script(VERSIONS)
        self._load = self.client.register_script(LOAD)
        self._count_key = f"{prefix}:n"

    def _key(self, sid: Hashable) -> str:
        return f"{self.prefix}:s:{key_of(sid)}"

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except self._redis_errors as err:
            raise StoreError(f"Redis {self.where}, {what}: {err}") from None

    def open(self, meta: dict[str, Any]) -> None:
        full = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **meta})
        key = f"{self.prefix}:meta"
        self._call("write", self.client.set, key, full, None, None, True)  # NX
        saved = self._call("read", self.client.get, key)
        check_meta(f"Redis {self.where}", json.loads(saved), json.loads(full))
        if self._call("read", self.client.get, self._count_key) is None:
            # a store written before the counter existed: count its streams once
            self._call("write", self.client.set, self._count_key, len(self.ids()), None, None, True)

    def __len__(self) -> int:
        return int(self._call("read", self.client.get, self._count_key) or 0)

    def load(self, ids):
        ids = list(ids)
        if not ids:
            return {}
        flat = self._call("read", self._load, [self._key(sid) for sid in ids])
        out = {}
        for n, sid in enumerate(ids):
            v, seq, state, ans = flat[4 * n : 4 * n + 4]
            if v:
                out[sid] = Record(
                    int(v),
                    int(seq) if seq else None,
                    decode_array(state),
                    decode_answers(ans or None),
                )
        return out

    def versions(self, ids):
        ids = list(ids)
        if not ids:
            return {}
        found = self._call("read", self._versions, [self._key(sid) for sid in ids])
        return {sid: int(v) for sid, v in zip(ids, found) if v}

    def commit(self, writes, deletes=()):
        keys = [self._key(w.sid) for w in writes] + [self._key(i) for i in deletes]
        if not keys:
            return set()
        keys.append(self._count_key)
        args: list = [len(writes)]
        for w, state in zip(writes, encode_arrays([w.row for w in writes])):
            args += [
                w.version,
                "" if w.seq is None else str(w.seq),
                state,
                encode_answers(w.answers) or b"",
            ]
        refused = self._call("commit", self._commit, keys, args)
        return {writes[int(i) - 1].sid for i in refused}

    def ids(self):
        cut = len(self.prefix) + 3
        keys = self._call("scan", lambda: list(self.client.scan_iter(f"{self.prefix}:s:*", 1000)))
        return [id_of(k[cut:]) for k in keys]

    def ping(self) -> None:
        self._call("ping", self.client.ping)

    def close(self) -> None:
        with contextlib.suppress(*self._redis_errors):
            self.client.close()
