"""StreamPool, its kernels, ONNX export and `statefulrnn stream`, held to stateful prediction.

The oracle is `sr.predict(model, seqs, mode="stateful")`, or the model's own forward on one
sequence: whatever the interleaving of streams, the split of each into k-step calls, the
batch size (which picks the numpy, exact-torch or sigmoid-tanh kernel), eviction, spill,
save and reload in a new process, threads or a SIGTERM in the middle of `statefulrnn stream`,
every stream's outputs are the ones that one pass over its whole sequence gives.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import make_rnn
from hypothesis import given, settings
from hypothesis import strategies as st

import statefulrnn as sr
from statefulrnn import threads as thread_policy
from statefulrnn.bundle import ModelBundle
from statefulrnn.cli import main
from statefulrnn.cli.stream import answer
from statefulrnn.data.scaling import Scaling, Standardizer
from statefulrnn.model import cells
from statefulrnn.streams import fused
from statefulrnn.streams.fused import NUMPY_MAX_ROWS, SIGMOID_TANH_MIN, FusedKernel
from statefulrnn.streams.kernels import ForwardKernel

TOL32 = 1e-5
TOL64 = 1e-12
F, H, OUT = 2, 8, 3  # features, hidden units, outputs
CELLS = list(cells.names())
FAST = [c for c in CELLS if cells.get(c).fast_stream]  # cells with a fused stream step
# Every cell runs every property, each with its share of the profile's examples.
PER_CELL = settings(max_examples=max(10, settings().max_examples // len(CELLS)))


def make_model(cell="lstm", layers=1, hidden=H, dtype=torch.float32, seed=0):
    return make_rnn(F, hidden, OUT, cell, seed=seed, eval=True, num_layers=layers, dtype=dtype)


def make_xs(lengths, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(t, F)).astype(np.float32) for t in lengths]


def stateful(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    seqs = sr.Sequences.from_arrays(xs, [np.zeros((len(x), OUT)) for x in xs])
    return sr.predict(model, seqs, mode="stateful")


@torch.no_grad()
def whole(model, x: np.ndarray) -> np.ndarray:
    """One forward over a stream's whole sequence (x [T, F]) from a zero state."""
    y, _ = model(torch.as_tensor(x, dtype=model.dtype)[None])
    return y[0].double().numpy()


class Feeder:
    """Feeds streams' sequences through a pool in pieces and collects each one's outputs."""

    def __init__(self, pool, xs: list[np.ndarray], ids=None):
        self.pool, self.xs = pool, xs
        self.ids = list(ids) if ids is not None else [f"s{i}" for i in range(len(xs))]
        self.pos = [0] * len(xs)
        self.out: list[list[np.ndarray]] = [[] for _ in xs]

    def left(self, i: int) -> int:
        return len(self.xs[i]) - self.pos[i]

    def call(self, streams: list[int], k: int) -> None:
        x = np.stack([self.xs[i][self.pos[i] : self.pos[i] + k] for i in streams])
        y = self.pool.step([self.ids[i] for i in streams], x)
        assert y.shape == (len(streams), k, self.pool.model.output_size)
        for i, yi in zip(streams, y):
            self.out[i].append(yi)
            self.pos[i] += k

    def round_robin(self, k: int = 1, width: int | None = None) -> None:
        """k steps for every stream with k left, `width` streams per call, until none has."""
        while True:
            streams = [i for i in range(len(self.xs)) if self.left(i) >= k]
            if not streams:
                break
            w = width or len(streams)
            for lo in range(0, len(streams), w):
                self.call(streams[lo : lo + w], k)
        for i in range(len(self.xs)):  # the remainders, one step at a time
            while self.left(i):
                self.call([i], 1)

    def outputs(self) -> list[np.ndarray]:
        return [np.concatenate(o) if o else np.zeros((0, OUT)) for o in self.out]


def assert_close(got: list[np.ndarray], want: list[np.ndarray], tol: float = TOL32) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=tol)


# ----------------------------------------------------------------- 1. any interleaving
MODELS = {(c, n): make_model(c, n, seed=n) for c in CELLS for n in (1, 2)}


# the kernel a call takes, forced whatever the batch size:
# (NUMPY_MAX_ROWS, SIGMOID_TANH_MIN, BLOCK_ROWS); "blocks": calls of 2+ streams go in blocks of
# one row, shared out to two worker threads (threads=2)
BIG = 10**9
PATHS = {
    "numpy": (BIG, BIG, BIG),
    "torch": (0, BIG, BIG),
    "torch-sigmoid-tanh": (0, 0, BIG),
    "blocks": (0, 0, 1),
}


def forced(path: str, block: int = 1):
    """Patches that make every call take `path`'s kernel ("blocks": of `block` rows)."""
    rows, tanh_min, block_rows = PATHS.get(path, (0, 0, BIG))
    return (
        mock.patch.object(fused, "NUMPY_MAX_ROWS", rows),
        mock.patch.object(fused, "SIGMOID_TANH_MIN", tanh_min),
        mock.patch.object(fused, "BLOCK_ROWS", block if block_rows == 1 else block_rows),
    )


@pytest.mark.parametrize("cell", CELLS)
@PER_CELL
@given(data=st.data())
def test_any_interleaving_and_split_equals_stateful_prediction(cell, data):
    layers = data.draw(st.sampled_from([1, 2]), label="layers")
    path = data.draw(st.sampled_from(["forward", *PATHS]), label="path")
    lengths = data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=5), label="lengths")
    model = MODELS[(cell, layers)]
    xs = make_xs(lengths, seed=len(lengths))
    a, b, c = forced(path)
    with a, b, c:
        threads = 2 if path == "blocks" else None
        feed = Feeder(sr.StreamPool(model, fused=path != "forward", threads=threads), xs)
        while any(feed.left(i) for i in range(len(xs))):
            open_ = [i for i in range(len(xs)) if feed.left(i)]
            streams = data.draw(st.lists(st.sampled_from(open_), min_size=1, unique=True))
            k = data.draw(st.integers(1, min(feed.left(i) for i in streams)))
            feed.call(data.draw(st.permutations(streams)), k)
    assert_close(feed.outputs(), stateful(model, xs))


@pytest.mark.parametrize("cell", FAST)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_kernels_equal_forward_at_every_batch_size(cell, layers, dtype):
    """Batch sizes that pick each kernel: numpy, exact torch, torch with sigmoid for tanh."""
    hidden = 16
    model = make_model(cell, layers, hidden=hidden, dtype=dtype)
    big = SIGMOID_TANH_MIN // hidden + 3
    tol = TOL32 if dtype == torch.float32 else TOL64
    blocks = 2 * 64 + 5  # split in blocks of 64 rows, the last one short, on two threads
    for batch in (1, NUMPY_MAX_ROWS, NUMPY_MAX_ROWS + 1, big, blocks):
        xs = make_xs([7] * batch, seed=batch)
        pool = sr.StreamPool(model, threads=2 if batch == blocks else None)
        assert isinstance(pool._kernel, FusedKernel)
        feed = Feeder(pool, xs)
        with mock.patch.object(fused, "BLOCK_ROWS", 64 if batch == blocks else fused.BLOCK_ROWS):
            assert pool._kernel.splits(batch) == (batch == blocks)
            feed.call(list(range(batch)), 1)
            feed.call(list(range(batch)), 4)
            feed.round_robin(2)
        assert_close(feed.outputs(), [whole(model, x) for x in xs], tol)


@pytest.mark.parametrize("cell", FAST)
@PER_CELL
@given(data=st.data())
def test_streams_added_dropped_and_reset_between_calls_keep_their_own_state(cell, data):
    """The same long id list again and again (its rows remembered), with streams added,
    dropped and reset between calls, in blocks of uneven size on two threads or not: each
    stream's outputs are one forward over what it was fed since it (re)started, float64."""
    model = make_model(cell, data.draw(st.sampled_from([1, 2]), label="layers"),
                       dtype=torch.float64)  # fmt: skip
    path = data.draw(st.sampled_from(["numpy", "torch", "blocks"]), label="path")
    block = data.draw(st.integers(1, 4), label="block rows")
    rng = np.random.default_rng(data.draw(st.integers(0, 99), label="seed"))
    a, b, c = forced(path, block)
    with a, b, c, mock.patch("statefulrnn.streams.pool.MEMO_MIN", 2):
        pool = sr.StreamPool(model, threads=2 if path == "blocks" else None)
        fed: dict[str, list[np.ndarray]] = {f"s{i}": [] for i in range(6)}
        ids, made = list(fed), 6
        for _ in range(data.draw(st.integers(2, 8), label="calls")):
            what = data.draw(st.sampled_from(["same", "add", "drop", "reset"]))
            if what == "add":
                ids.append(f"s{made}")
                fed[ids[-1]] = []
                made += 1
            elif what in ("drop", "reset") and len(ids) > 1:
                sid = ids[data.draw(st.integers(0, len(ids) - 1))]
                if sid in pool:
                    getattr(pool, what)(sid)
                fed[sid] = []
                if what == "drop":
                    ids.remove(sid)
            k = data.draw(st.integers(1, 3))
            x = rng.normal(size=(len(ids), k, F))
            y = pool.step(ids, x)
            for sid, xi, yi in zip(ids, x, y):
                fed[sid].append(xi)
                want = whole(model, np.concatenate(fed[sid]))[-k:]
                np.testing.assert_allclose(yi, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("link", ["mse", "bce"])
def test_numpy_path_equals_the_tensor_path_for_any_float_input_through_a_bundle(link):
    """A few streams, numpy in: cast, checked, scaled, stepped and unscaled in numpy; the same
    numbers as the same call with a tensor (torch's cast and scaling), float64 x included."""
    model = make_model()
    rng = np.random.default_rng(3)
    scale = Standardizer(rng.normal(size=F) * 5, rng.uniform(0.5, 2, size=F))
    out = Standardizer(rng.normal(size=OUT), rng.uniform(0.5, 2, size=OUT))
    bundle = ModelBundle(model, Scaling(scale, out if link == "mse" else None), loss=link)
    lean, tensor = sr.StreamPool(bundle), sr.StreamPool(bundle)
    ids = ["a", "b", "c"]
    for k in (1, 3):
        x = rng.normal(size=(3, k, F)) * 7  # float64
        y = lean.step(ids, x)
        assert isinstance(y, np.ndarray) and y.dtype == np.float32
        np.testing.assert_array_equal(y, tensor.step(ids, torch.from_numpy(x)).numpy())


class Subclassed(sr.StatefulRNN):
    """Not a plain StatefulRNN: the pool must not assume its insides."""

    kind = "test-subclassed"

    def forward(self, x, state=None, reset=None):
        y, new = super().forward(x, state, reset)
        return y + 1.0, new


@pytest.mark.parametrize("cell", CELLS)
def test_the_registry_says_which_cells_take_the_fused_path(cell):
    kernel = sr.StreamPool(make_model(cell))._kernel
    assert isinstance(kernel, FusedKernel if cells.get(cell).fast_stream else ForwardKernel)


def test_models_the_fused_path_does_not_cover_go_through_forward():
    torch.manual_seed(0)
    model = Subclassed(F, H, OUT).eval()
    pool = sr.StreamPool(model)
    assert isinstance(pool._kernel, ForwardKernel)
    xs = make_xs([5, 3])
    feed = Feeder(pool, xs)
    feed.round_robin(2)
    assert_close(feed.outputs(), [whole(model, x) for x in xs])


KERAS_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "keras"


@pytest.mark.parametrize("name", ["lstm", "stacked_lstm_td"])
def test_keras_imported_models_stream_through_forward(name, tmp_path):
    """Any RecurrentModel streams: an imported Keras stack with per-layer state names."""
    path = KERAS_FIXTURES / f"{name}.keras"
    model = sr.from_keras(path)
    xs = [x[:, :1].repeat(model.input_size, 1) for x in make_xs([6, 4], seed=1)]
    pool = sr.StreamPool(model)
    feed = Feeder(pool, xs)
    feed.call([1, 0], 2)
    pool.save(tmp_path / "pool.safetensors")
    feed.pool = sr.StreamPool.load(tmp_path / "pool.safetensors", model)
    feed.round_robin(1)
    assert_close(feed.outputs(), [whole(model, x) for x in xs])


# ----------------------------------------------------------------- the pool's own contract
def test_reset_is_a_fresh_start_and_drop_forgets():
    model = make_model()
    pool = sr.StreamPool(model)
    x = make_xs([6])[0][None]
    pool.step(["a", "b"], np.concatenate([x[:, :3], x[:, :3]]))
    pool.reset("a")
    y = pool.step(["a", "b"], np.concatenate([x[:, 3:], x[:, 3:]]))
    np.testing.assert_allclose(y[0], whole(model, x[0, 3:]), atol=TOL32)
    np.testing.assert_allclose(y[1], whole(model, x[0])[3:], atol=TOL32)
    assert len(pool) == 2 and set(pool.ids()) == {"a", "b"} and "a" in pool
    pool.drop("a")
    assert pool.ids() == ["b"] and "a" not in pool
    with pytest.raises(KeyError, match="no stream 'a'"):
        pool.drop("a")
    with pytest.raises(KeyError, match="no stream 'zz'"):
        pool.reset("zz")


def test_bad_calls_are_errors_that_change_nothing():
    pool = sr.StreamPool(make_model())
    pool.step(["a"], np.zeros((1, 1, F)))
    before = pool.state("a").h.clone()
    with pytest.raises(ValueError, match="more than once"):
        pool.step(["a", "b", "a"], np.zeros((3, 1, F)))
    with pytest.raises(ValueError, match="more than once"):
        pool.step(["c", "c"], np.zeros((2, 1, F)))
    with pytest.raises(ValueError, match=r"expected x of shape \[2, k, 2\]"):
        pool.step(["a", "b"], np.zeros((2, F)))
    with pytest.raises(TypeError, match="str or int"):
        pool.step([1.5], np.zeros((1, 1, F)))
    assert pool.ids() == ["a"]
    assert torch.equal(pool.state("a").h, before)
    assert pool.step([], np.zeros((0, 3, F))).shape == (0, 3, OUT)


def test_tensor_in_tensor_out_and_the_pool_follows_the_model():
    model = make_model()
    pool = sr.StreamPool(model)
    x = torch.as_tensor(make_xs([4])[0])[None]
    y = pool.step([7], x[:, :2])
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    with torch.no_grad():
        model.head.bias.add_(1.0)  # an in-place update (as an optimizer makes): seen
    model.double()  # and a new dtype: the states follow
    y2 = pool.step([7], x[:, 2:].double())
    assert y2.dtype == torch.float64
    np.testing.assert_allclose(y2[0].numpy(), whole(model, x[0].numpy())[2:], atol=TOL32)


# ----------------------------------------------------------------- 2. eviction, spill, save
def test_eviction_spills_and_returns_transparently(tmp_path):
    model = make_model("lstm", 2)
    xs = make_xs([9, 7, 8, 5, 6], seed=3)
    spill = tmp_path / "spill"
    pool = sr.StreamPool(model, capacity=2, spill_dir=spill)
    feed = Feeder(pool, xs)
    feed.round_robin(2, width=2)  # 5 streams through 2 slots: most calls evict
    assert_close(feed.outputs(), stateful(model, xs))
    assert pool.held == 2 and len(pool) == 5 and pool.evictions > 5
    assert len(list(spill.iterdir())) == 3  # the three not held; returned ones are deleted
    with pytest.raises(ValueError, match="capacity is 2"):
        pool.step(["s0", "s1", "s2"], np.zeros((3, 1, F)))


def test_eviction_without_spill_forgets_the_least_recently_used():
    model = make_model()
    pool = sr.StreamPool(model, capacity=2)
    x = make_xs([4])[0]
    pool.step(["a"], x[None, :2])
    pool.step(["b"], x[None, :2])
    pool.step(["a"], x[None, 2:3])  # "a" is now more recent than "b"
    pool.step(["c"], x[None, :1])  # evicts "b"
    assert set(pool.ids()) == {"a", "c"}
    y = pool.step(["b"], x[None, 2:])  # "b" starts again from zero
    np.testing.assert_allclose(y[0], whole(model, x[2:]), atol=TOL32)


CONTINUE = """
import sys, numpy as np, statefulrnn as sr
model = sr.load_model(sys.argv[1])
pool = sr.StreamPool.load(sys.argv[2], model, spill_dir=sys.argv[4])
data = np.load(sys.argv[3])
ids, x = [str(i) for i in data["ids"]], data["x"]
y = np.concatenate([pool.step(ids[:3], x[:3]), pool.step(ids[3:], x[3:])])
np.save(sys.argv[3] + ".out.npy", y)
"""


def test_save_then_a_new_process_loads_and_continues_every_stream(tmp_path):
    model = make_model("gru", 2)
    model.save(tmp_path / "model")
    xs = make_xs([10] * 6, seed=5)
    ids = [str(i) for i in range(6)]
    pool = sr.StreamPool(model, capacity=4, spill_dir=tmp_path / "spill")
    feed = Feeder(pool, [x[:6] for x in xs], ids)
    feed.round_robin(3, width=4)  # two streams end up spilled
    assert pool.held == 4 and len(pool) == 6
    pool.save(tmp_path / "pool.safetensors")
    rest = np.stack([x[6:] for x in xs])
    np.savez(tmp_path / "rest.npz", ids=np.array(ids), x=rest)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [tmp_path / "model", tmp_path / "pool.safetensors", tmp_path / "rest.npz"]
    subprocess.run(
        [sys.executable, "-c", CONTINUE, *map(str, argv), str(tmp_path / "spill2")],
        check=True,
        env=env,
        timeout=120,
    )
    got = np.load(tmp_path / "rest.npz.out.npy")
    # the original pool, continued in this process; 3 streams per call (capacity 4)
    want = np.concatenate([pool.step(ids[:3], rest[:3]), pool.step(ids[3:], rest[3:])])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert_close(list(got), [whole(model, x)[6:] for x in xs])


def test_load_refuses_another_model_and_other_files(tmp_path):
    pool = sr.StreamPool(make_model(seed=0))
    pool.step(["a", "b"], np.zeros((2, 1, F)))
    pool.save(tmp_path / "pool.safetensors")
    with pytest.raises(ValueError, match="Load the model checkpoint that served"):
        sr.StreamPool.load(tmp_path / "pool.safetensors", make_model(seed=1))
    with pytest.raises(ValueError, match="give a spill_dir"):
        sr.StreamPool.load(tmp_path / "pool.safetensors", make_model(seed=0), capacity=1)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a saved stream pool"):
        sr.StreamPool.load(tmp_path / "junk.safetensors", make_model(seed=0))


def test_saved_ids_keep_their_types_and_recency(tmp_path):
    model = make_model()
    pool = sr.StreamPool(model)
    pool.step([3, "3", np.int64(4)], np.ones((3, 1, F)))
    pool.step(["3"], np.ones((1, 1, F)))
    assert pool.ids() == [3, 4, "3"]  # least recently used first
    pool.save(tmp_path / "p.safetensors")
    back = sr.StreamPool.load(tmp_path / "p.safetensors", model, capacity=2, spill_dir=tmp_path)
    assert back.ids() == [3, 4, "3"] and back.held == 2  # 3, the oldest, went to disk
    for sid in (3, 4, "3"):
        assert torch.equal(back.state(sid).c, pool.state(sid).c)


# ----------------------------------------------------------------- threads
def test_threads_stepping_their_own_streams_get_the_same_numbers():
    model = make_model("lstm", 2)
    pool = sr.StreamPool(model)
    xs = make_xs([40] * 12, seed=9)
    groups = [list(range(t, 12, 4)) for t in range(4)]
    feeds = [Feeder(pool, [xs[i] for i in g], [f"s{i}" for i in g]) for g in groups]
    errors = []

    def work(feed: Feeder, k: int):
        try:
            feed.round_robin(k)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(f, k)) for f, k in zip(feeds, (1, 2, 3, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for g, feed in zip(groups, feeds):
        assert_close(feed.outputs(), [whole(model, xs[i]) for i in g])


def test_an_error_in_a_block_reaches_the_caller_and_the_pool_steps_on():
    model = make_model()
    x = np.stack(make_xs([2] * 8, seed=6))
    a, b, c = forced("blocks", 1)
    with a, b, c:
        pool = sr.StreamPool(model, threads=2)
        calls = []

        def boom(*args, **kwargs):
            calls.append(threading.current_thread().name)
            raise RuntimeError("boom in a block")

        with (
            mock.patch.object(FusedKernel, "_run_torch", boom),
            pytest.raises(RuntimeError, match="boom in a block"),
        ):
            pool.step(list(range(8)), x)
        assert 1 <= len(calls) <= 2  # one per thread at most: no block is taken after an error
        fresh = [f"n{i}" for i in range(8)]  # the pool steps on, in blocks, as a new one does
        want = sr.StreamPool(model, threads=2).step(fresh, x)
        np.testing.assert_array_equal(pool.step(fresh, x), want)


@pytest.mark.parametrize("cell", FAST)
@pytest.mark.parametrize("path", ["torch", "blocks"])
def test_streams_in_slab_order_step_in_place_with_the_same_numbers(cell, path):
    """Ids stepped in the order they were admitted sit in consecutive slab rows: the step runs
    on the slab itself (no gather or scatter). Against the same streams stepped in reverse
    order (gathered), and one forward per stream, float64."""
    model = make_model(cell, 2, dtype=torch.float64)
    xs = make_xs([5] * 9, seed=7)
    ids = [f"s{i}" for i in range(9)]
    a, b, c = forced(path, 2)
    with a, b, c:
        in_order, reverse = sr.StreamPool(model, threads=2), sr.StreamPool(model, threads=2)
        in_order.step(ids, np.zeros((9, 1, F)))  # admitted in order: rows 0..8
        reverse.step(ids, np.zeros((9, 1, F)))
        x = np.stack(xs)
        with mock.patch.object(fused, "scatter", wraps=fused.scatter) as scatter:
            got = np.concatenate([in_order.step(ids, x[:, :1]), in_order.step(ids, x[:, 1:])], 1)
            assert scatter.call_count == 0  # in place
            back = [reverse.step(ids[::-1], x[::-1, :1]), reverse.step(ids[::-1], x[::-1, 1:])]
            assert scatter.call_count >= 2  # gathered and scattered
    want = np.concatenate(back, 1)[::-1]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    for i in range(9):  # each stream: the zero step of the first call, then its x
        full = whole(model, np.concatenate([np.zeros((1, F)), xs[i]]))[1:]
        np.testing.assert_allclose(got[i], full, rtol=0, atol=1e-10)


def test_blocked_steps_work_in_a_forked_child():
    """Worker threads do not survive fork: the child makes its own and gets the same numbers."""
    model = make_model("lstm", 1)
    xs = make_xs([3] * 6, seed=4)
    x = np.stack(xs)
    a, b, c = forced("blocks", 2)
    with a, b, c:
        pool = sr.StreamPool(model, threads=2)
        want = pool.step(list(range(6)), x)  # the parent's worker threads exist now
        assert thread_policy._helpers  # the parent's helper threads
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: step a fresh pool, send the outputs, leave at once
            try:
                got = sr.StreamPool(model, threads=2).step(list(range(6)), x)
                os.write(write, got.astype(np.float32).tobytes())
            finally:
                os._exit(0)
        os.close(write)
        data, deadline = b"", time.monotonic() + 60
        while time.monotonic() < deadline and select.select([read], [], [], 1)[0]:
            if not (chunk := os.read(read, 1 << 16)):
                break
            data += chunk
        os.close(read)
        done, status = os.waitpid(pid, os.WNOHANG)
        while not done and time.monotonic() < deadline:
            time.sleep(0.05)
            done, status = os.waitpid(pid, os.WNOHANG)
        if not done:  # hung: the test fails, the child does not outlive it
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert done and status == 0, "the forked child hung or failed"
    np.testing.assert_array_equal(np.frombuffer(data, np.float32).reshape(want.shape), want)


# ----------------------------------------------------------------- ONNX
@pytest.mark.parametrize("cell", CELLS)
def test_onnx_step_equals_pool_step(tmp_path, cell):
    ort = pytest.importorskip("onnxruntime")
    model = make_model(cell, 2)
    path = model.export_onnx(tmp_path / "step.onnx")  # exported at batch 2, run at 5
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = model.state_spec()[1]
    assert [i.name for i in session.get_inputs()] == ["x", *names]
    pool = sr.StreamPool(model)
    ids = list(range(5))
    state = {n: np.zeros((2, 5, H), np.float32) for n in names}
    for x in np.stack(make_xs([6] * 5, seed=2), axis=1):  # [T, B, F]: one step at a time
        y, *new = session.run(None, {"x": x, **state})
        np.testing.assert_allclose(y, pool.step(ids, x[:, None])[:, 0], atol=TOL32)
        state = dict(zip(names, new))


# ----------------------------------------------------------------- 3. statefulrnn stream
def lines_for(xs: list[np.ndarray]) -> list[str]:
    """Interleaved input lines, JSON and CSV mixed, with two malformed ones."""
    out = []
    for t in range(max(len(x) for x in xs)):
        for i, x in enumerate(xs):
            if t < len(x):
                values = [float(v) for v in x[t]]
                if (t + i) % 2:
                    out.append(json.dumps({"id": f"s{i}", "x": values}))
                else:
                    out.append(",".join([f"s{i}", *map(repr, values)]))
        if t == 2:
            out.append('{"id": "s0", "x": [1.0]}')  # one value, the model takes two
            out.append("{not json")
    return out


def test_answer_batches_repeated_ids_in_order():
    model = make_model()
    xs = make_xs([4, 2])
    lines = list(enumerate(lines_for(xs), start=1))
    out = answer(sr.StreamPool(model), lines, "auto")
    assert [o["line"] for o in out] == [n for n, _ in lines]
    errors = [o for o in out if "error" in o]
    assert [e["error"] for e in errors] == [
        f"line {errors[0]['line']}: x has 1 value but the model takes 2 features",
        f"line {errors[1]['line']}: not valid JSON (Expecting property name enclosed in "
        "double quotes at column 2)",
    ]
    for i, x in enumerate(xs):
        got = np.array([o["y"] for o in out if o.get("id") == f"s{i}"])
        np.testing.assert_allclose(got, whole(model, x), atol=TOL32)


CLI = "import sys; from statefulrnn.cli import main; sys.exit(main())"


def _stream(model_dir, state, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CLI, "stream", str(model_dir), "--state", str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


@pytest.mark.slow  # > 20 s on the shared 2-core machine
def test_stream_cli_survives_sigterm_with_state(tmp_path):
    model = make_model("lstm", 2)
    model.save(tmp_path / "model")
    lines = lines_for(make_xs([12, 9, 11], seed=4))
    half = len(lines) // 2

    procs = []
    try:
        whole_run = _stream(tmp_path / "model", tmp_path / "once.db")  # uninterrupted
        first = _stream(tmp_path / "model", tmp_path / "state.db")  # starts alongside
        procs += [whole_run, first]
        for line in lines[:half]:
            first.stdin.write(line + "\n")
        first.stdin.flush()  # stdin stays open: the process waits for more, like a server
        got = [first.stdout.readline() for _ in range(half)]
        first.send_signal(signal.SIGTERM)
        rest, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        assert rest == "" and "stopped by signal" in err
        assert (tmp_path / "state.db").exists()

        second = _stream(tmp_path / "model", tmp_path / "state.db")
        procs.append(second)
        out, err = second.communicate("\n".join(lines[half:]) + "\n", timeout=120)
        assert second.returncode == 0, err
        assert "3 streams in" in err
        got += out.splitlines(keepends=True)
        want, err = whole_run.communicate("\n".join(lines) + "\n", timeout=120)
        assert whole_run.returncode == 0, err

        want = [json.loads(s) for s in want.splitlines()]
        got = [json.loads(s) for s in got]
        assert len(got) == len(want) == len(lines)
        for g, w in zip(got, want):
            if "error" in w:
                assert g["error"].split(":", 1)[1] == w["error"].split(":", 1)[1]
            else:
                assert g["id"] == w["id"]
                np.testing.assert_allclose(g["y"], w["y"], rtol=0, atol=TOL32)
    finally:
        for p in procs:  # a failed assertion must not leave servers behind
            if p.poll() is None:
                p.kill()
                p.communicate()


def test_stream_cli_reads_a_file_and_refuses_a_state_from_another_model(tmp_path, capsys):
    model = make_model()
    model.save(tmp_path / "model")
    xs = make_xs([3, 2])
    (tmp_path / "in.csv").write_text("id,x1,x2\n" + "\n".join(lines_for(xs)[:5]))
    state = tmp_path / "state.db"
    assert (
        main(
            [
                "stream",
                str(tmp_path / "model"),
                "--input",
                str(tmp_path / "in.csv"),
                "--state",
                str(state),
            ]
        )
        == 0
    )
    out = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [o["line"] for o in out] == [2, 3, 4, 5, 6]  # line 1, the header, has no answer
    np.testing.assert_allclose(
        [o["y"] for o in out if o["id"] == "s0"], whole(model, xs[0]), atol=TOL32
    )
    make_model(seed=1).save(tmp_path / "other")
    assert main(["stream", str(tmp_path / "other"), "--state", str(state)]) == 2
    assert "a state means nothing to other weights" in capsys.readouterr().err
