"""Durable stream state (issue 18 item 5, issue 15's store): SQLite store, StreamService, and
`statefulrnn stream --state` surviving kill -9.

Oracles: a StreamPool alone (no store) on the same steps, and one forward pass over each
stream's whole sequence. What a kill may lose: nothing acknowledged (an answer is written only
after its state is committed), checked over 20 random SIGKILLs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_rnn
from hypothesis import given, settings
from hypothesis import strategies as st

from statefulrnn.cli import main
from statefulrnn.streams import StreamPool
from statefulrnn.streams.durable import (
    MemoryStore,
    SQLiteStore,
    StoreError,
    Write,
    decode_array,
    encode_array,
    encode_arrays,
    store_meta,
)
from statefulrnn.streams.service import StepRequest, StreamService

F, H, OUT = 2, 6, 2
TOL32 = 1e-5
HERE = Path(__file__).parent


def make_model(seed=0, cell="lstm"):
    return make_rnn(F, H, OUT, cell, seed=seed, eval=True)


@torch.no_grad()
def whole(model, x: np.ndarray) -> np.ndarray:
    y, _ = model(torch.as_tensor(x, dtype=model.dtype)[None])
    return y[0].double().numpy()


# ----------------------------------------------------------------- the SQLite store
def test_sqlite_store_versions_refuse_a_stale_write(tmp_path):
    model = make_model()
    store = SQLiteStore(tmp_path / "s.db")
    store.open(store_meta(model))
    row = np.arange(2 * H, dtype=np.float32)
    assert store.commit([Write("a", 0, 1, row, None), Write(7, 0, None, row + 1, None)]) == set()
    recs = store.load(["a", 7, "7", "missing"])
    assert set(recs) == {"a", 7}  # ids keep their JSON type: 7 and "7" differ
    assert recs["a"].version == 1 and recs["a"].seq == 1
    np.testing.assert_array_equal(recs[7].row, row + 1)
    # a write naming an old version (another writer moved on) is refused, the rest applied
    conflicts = store.commit([Write("a", 0, 2, row * 2, None), Write(7, 1, 3, row * 3, None)])
    assert conflicts == {"a"}
    assert store.load(["a"])["a"].version == 1 and store.load([7])[7].version == 2
    store.commit([], deletes=["a"])
    assert store.ids() == [7] and len(store) == 1
    store.commit([Write("b", 0, None, row, None), Write("c", 3, None, row, None)], ["gone"])
    assert len(store) == 2  # the kept count: +1 new, stale and missing ones change nothing
    store.close()
    reopened = SQLiteStore(tmp_path / "s.db")  # counted once at open
    assert len(reopened) == 2 == len(reopened.ids())
    reopened.close()


def test_a_batch_of_rows_encodes_as_each_row_alone():
    rows = np.random.default_rng(0).normal(size=(5, 2 * H)).astype(np.float32)
    assert encode_arrays(list(rows)) == [encode_array(r) for r in rows]
    mixed = [rows[0], rows[1].astype(np.float64), np.zeros((0,))]
    assert encode_arrays(mixed) == [encode_array(a) for a in mixed]
    np.testing.assert_array_equal(decode_array(encode_arrays(list(rows))[3]), rows[3])


def _open_in_another_process(path) -> str:
    """Open the store in a forked process (no torch work there); its error, or "ok"."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            SQLiteStore(path).close()
            msg = "ok"
        except BaseException as err:
            msg = str(err)
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        return f.read().decode()


def test_sqlite_store_is_locked_to_one_process(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    assert "in use by another process" in _open_in_another_process(path)
    store.close()
    assert _open_in_another_process(path) == "ok"  # the lock goes with its holder


def test_sqlite_store_refuses_another_model_and_other_files(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    store.open(store_meta(make_model(0)))
    store.close()
    store = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(ValueError, match="a state means nothing to other weights"):
        store.open(store_meta(make_model(1)))
    store.close()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="is not a stream state database"):
        SQLiteStore(tmp_path / "notes.txt")
    pool = StreamPool(make_model())
    pool.step(["a"], np.zeros((1, 1, F), np.float32))
    pool.save(tmp_path / "old.safetensors")
    with pytest.raises(ValueError, match="StreamPool.save file"):
        SQLiteStore(tmp_path / "old.safetensors")
    with pytest.raises(OSError, match="cannot open --state"):
        SQLiteStore(tmp_path / "notes.txt" / "s.db")  # a folder that is a file


# ----------------------------------------------------------------- the service
@settings(max_examples=25)
@given(data=st.data())
def test_service_with_a_store_equals_the_pool_alone(data, tmp_path_factory):
    """Any interleaving, k per call, capacity and restarts: the same numbers as one pass."""
    model = make_model()
    folder = tmp_path_factory.mktemp("svc")
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    lengths = data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=5))
    xs = [rng.normal(size=(t, F)).astype(np.float32) for t in lengths]
    capacity = data.draw(st.sampled_from([None, 1, 2, 3]))
    use_sqlite = data.draw(st.booleans())
    memory = MemoryStore()

    def fresh():
        store = SQLiteStore(folder / "s.db") if use_sqlite else memory
        return StreamService(StreamPool(model, capacity=capacity), store)

    svc = fresh()
    pos = [0] * len(xs)
    got: list[list[np.ndarray]] = [[] for _ in xs]
    while any(p < len(x) for p, x in zip(pos, xs)):
        open_ = [i for i, x in enumerate(xs) if pos[i] < len(x)]
        batch = data.draw(st.lists(st.sampled_from(open_), min_size=1, max_size=6))
        requests, who = [], []
        planned = list(pos)
        for i in batch:
            if planned[i] >= len(xs[i]):
                continue
            k = data.draw(st.integers(1, len(xs[i]) - planned[i]))
            requests.append(StepRequest(f"s{i}", xs[i][planned[i] : planned[i] + k]))
            who.append(i)
            planned[i] += k
        for i, r in zip(who, svc.step(requests)):
            assert r.error is None, r.error
            got[i].append(r.y)
        pos = planned
        if data.draw(st.booleans()):  # a restart: a new pool reads the store
            svc.close()
            svc = fresh()
    svc.close()
    for i, x in enumerate(xs):
        np.testing.assert_allclose(np.concatenate(got[i]), whole(model, x), atol=TOL32)


def test_service_bad_requests_fail_alone_and_retries_replay(tmp_path):
    model = make_model()
    svc = StreamService(StreamPool(model), SQLiteStore(tmp_path / "s.db"))
    x = np.random.default_rng(0).normal(size=(3, F)).astype(np.float32)
    res = svc.step(
        [
            StepRequest("a", x[:1], seq=0),
            StepRequest("b", [[1.0, float("nan")]]),
            StepRequest("c", [[1.0, 2.0, 3.0]]),
            StepRequest("d", "zz"),
            StepRequest("a", x[1:2], seq=1),  # a's second step, in the same batch
        ]
    )
    assert [r.status for r in res] == [200, 400, 400, 400, 200]
    assert "x[0][1] = nan is not finite" in res[1].error
    assert "x has 3 features per step but the model takes 2" in res[2].error
    assert set(svc.store.ids()) == {"a"}  # nothing of the bad requests was stored
    # a retry of a step of the last commit gets its answer again, not a second step
    again = svc.step([StepRequest("a", x[1:2], seq=1)])[0]
    assert again.replayed and np.array_equal(again.y, res[4].y)
    r = svc.step([StepRequest("a", x[2:3], seq=2)])[0]
    old = svc.step([StepRequest("a", x[:1], seq=0)])[0]  # older than the last commit
    assert old.status == 409 and "already applied" in old.error
    np.testing.assert_allclose(
        np.concatenate([res[0].y, res[4].y, r.y]), whole(model, x), atol=TOL32
    )
    assert svc.info("a")["version"] == 2 and svc.info("a")["seq"] == 2
    with pytest.raises(KeyError):
        svc.info("b")
    svc.close()


def test_service_start_end_reset_drop(tmp_path):
    model = make_model()
    svc = StreamService(StreamPool(model, capacity=2), SQLiteStore(tmp_path / "s.db"))
    x = np.random.default_rng(1).normal(size=(4, F)).astype(np.float32)
    svc.step([StepRequest("a", x[:2])])
    r = svc.step([StepRequest("a", x[2:], start=True)])[0]  # a new sequence
    np.testing.assert_allclose(r.y, whole(model, x[2:]), atol=TOL32)
    svc.reset("a")
    r = svc.step([StepRequest("a", x[:1], end=True)])[0]
    np.testing.assert_allclose(r.y, whole(model, x[:1]), atol=TOL32)
    assert "a" not in svc.store.ids()
    with pytest.raises(KeyError):
        svc.drop("a")
    svc.close()


def test_a_failed_commit_answers_503_and_keeps_memory_at_the_store(tmp_path):
    model = make_model()
    store = MemoryStore()
    svc = StreamService(StreamPool(model), store)
    x = np.random.default_rng(2).normal(size=(2, F)).astype(np.float32)
    first = svc.step([StepRequest("a", x[:1])])[0]

    def broken(writes, deletes=()):
        raise StoreError("disk full")

    good_commit, store.commit = store.commit, broken
    r = svc.step([StepRequest("a", x[1:])])[0]
    assert r.status == 503 and "disk full" in r.error and svc.store_errors == 1
    store.commit = good_commit
    r = svc.step([StepRequest("a", x[1:])])[0]  # the failed step was not applied
    np.testing.assert_allclose(np.concatenate([first.y, r.y]), whole(model, x), atol=TOL32)


# ----------------------------------------------------------------- statefulrnn stream --state
def test_stream_refuses_unsafe_option_combinations(tmp_path, capsys):
    make_model().save(tmp_path / "model")
    m = str(tmp_path / "model")
    assert main(["stream", m, "--capacity", "10"]) == 2
    assert "evicted streams would be forgotten" in capsys.readouterr().err
    assert main(["stream", m, "--state", str(tmp_path / "s.db"), "--spill-dir", "x"]) == 2
    assert "--spill-dir is for runs without --state" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(["stream", m, "--state", str(tmp_path / "file" / "s.db")]) == 2
    assert "cannot open --state" in capsys.readouterr().err


def test_spill_files_are_removed_when_the_pool_closes(tmp_path):
    pool = StreamPool(make_model(), capacity=1, spill_dir=tmp_path / "spill")
    for sid in "abc":
        pool.step([sid], np.zeros((1, 1, F), np.float32))
    assert len(list((tmp_path / "spill").iterdir())) == 2
    pool.step(["a"], np.zeros((1, 1, F), np.float32))  # read back: its file goes
    assert len(list((tmp_path / "spill").iterdir())) == 2  # a back, b spilled, c spilled
    pool.close()
    assert list((tmp_path / "spill").iterdir()) == []


@pytest.mark.slow
def test_stream_state_survives_20_random_sigkills(tmp_path):
    """kill -9 at random moments, restart, resend what was not acknowledged: every answer
    equals an uninterrupted run's, and nothing acknowledged is lost (issue 18, must-show 4)."""
    model = make_model(cell="gru")
    model.save(tmp_path / "model")
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(100, F)).astype(np.float32) for _ in range(4)]
    lines, where = [], []
    for t in range(100):
        for i in rng.permutation(4).tolist():
            lines.append(json.dumps({"id": f"s{i}", "x": xs[i][t].tolist(), "seq": t}))
            where.append((i, t))
    (tmp_path / "lines.jsonl").write_text("\n".join(lines) + "\n")
    r = subprocess.run(
        [
            sys.executable,
            str(HERE / "stream_kill_driver.py"),
            str(tmp_path / "model"),
            str(tmp_path / "state.db"),
            str(tmp_path / "lines.jsonl"),
            "11",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert result["kills"] == 20
    answers = result["answers"]
    assert [a[0] for a in answers] == list(range(len(lines)))  # each line answered once, in order
    assert all(a[3] is None for a in answers), [a for a in answers if a[3]][:3]
    want = [whole(model, x) for x in xs]
    for n, y, _, _ in answers:
        i, t = where[n]
        np.testing.assert_allclose(y, want[i][t], atol=TOL32, err_msg=f"line {n}")
