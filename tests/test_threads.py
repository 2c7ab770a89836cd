"""The thread policy (statefulrnn/threads.py) and fit's losses kept on the device (no sync per update)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PoisonAfter

import statefulrnn as sr
from statefulrnn import threads
from statefulrnn.cli import main as cli_main
from statefulrnn.streams.fused import NUMPY_MAX_ROWS

fit_module = importlib.import_module("statefulrnn.train.fit")  # the module, not sr.fit


@pytest.fixture
def two_threads():
    """torch at 2 threads for the test (the suite runs at 1), the caller's setting restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
    threads.set_default(None)


def seqs(n=6, t=12, f=2, o=1, seed=0):
    rng = np.random.default_rng(seed)
    return sr.Sequences.from_arrays(rng.normal(size=(n, t, f)), rng.normal(size=(n, t, o)))


class SeenThreads(sr.Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, epoch, record, model) -> bool:
        self.seen.append(torch.get_num_threads())
        return False


# --------------------------------------------------------------------------- the policy
def test_small_steps_get_one_thread_large_ones_keep_torchs_setting():
    model = sr.StatefulRNN(1, 64, 1)
    small = threads.step_work(model, 400)  # the seed-000 shape: 400 x 256 x 65
    assert small == 400 * 256 * 65
    assert threads.choose(None, small) == 1
    assert threads.choose(None, threads.SMALL_STEP) is None
    assert threads.choose(3, small) == 3  # an explicit count always wins
    assert threads.choose(None, small, device="meta") is None  # not the CPU: left alone


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_thread_counts_are_named(bad):
    with pytest.raises(ValueError, match=r"threads must be None \(automatic\) or an integer >= 1"):
        threads.check(bad)
    with pytest.raises(ValueError, match="threads"):
        sr.fit(sr.StatefulRNN(2, 4, 1), seqs(), epochs=1, verbose=0, threads=bad)
    with pytest.raises(ValueError, match="threads"):
        sr.StreamPool(sr.StatefulRNN(2, 4, 1), threads=bad)


def test_fit_predict_and_evaluate_use_the_policy_and_restore_the_callers_setting(
    two_threads, monkeypatch
):
    model, data = sr.StatefulRNN(2, 4, 1), seqs()
    seen = SeenThreads()
    sr.fit(model, data, epochs=2, window=4, batch_size=3, verbose=0, callbacks=[seen])
    assert seen.seen == [1, 1] and torch.get_num_threads() == 2
    seen = SeenThreads()
    sr.fit(model, data, epochs=1, window=4, batch_size=3, verbose=0, callbacks=[seen], threads=2)
    assert seen.seen == [2]

    calls = []
    predict_module = importlib.import_module("statefulrnn.outputs")
    real = predict_module.stateful_outputs

    def spy(*args, **kwargs):
        calls.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_module, "stateful_outputs", spy)
    sr.predict(model, data)
    sr.evaluate(model, data, threads=2)
    assert calls == [1, 2] and torch.get_num_threads() == 2


def test_the_same_run_on_one_or_two_threads_gives_close_losses(two_threads):
    data = seqs()
    runs = []
    for n in (1, 2):
        torch.manual_seed(0)
        model = sr.StatefulRNN(2, 4, 1)
        runs.append(sr.fit(model, data, epochs=2, window=4, batch_size=3, verbose=0, threads=n))
    np.testing.assert_allclose(runs[0].column("loss"), runs[1].column("loss"), rtol=1e-5)


def test_stream_pool_steps_on_the_policys_threads(two_threads):
    model = sr.StatefulRNN(1, 8, 1).eval()
    seen = []
    pool = sr.StreamPool(model)
    real = pool._kernel.step

    def spy(*args):
        seen.append(torch.get_num_threads())
        return real(*args)

    pool._kernel.step = spy
    ids = [f"s{i}" for i in range(NUMPY_MAX_ROWS + 1)]  # a torch step (a few rows: numpy's)
    x = np.zeros((len(ids), 1, 1), np.float32)
    pool.step(ids, x)
    pool.threads = 2
    pool.step(ids, x)
    assert seen == [1, 2] and torch.get_num_threads() == 2


def test_cli_threads_flag_sets_the_process_default(two_threads, tmp_path, monkeypatch):
    for command in ("train", "predict", "evaluate", "stream", "compare", "sweep"):
        with pytest.raises(SystemExit):
            cli_main([command, "--help"])
    got = {}

    def fake_run(args):
        got["choice"] = threads.choose(None, 1)
        return 0

    import statefulrnn.cli.tasks as tasks_cli

    monkeypatch.setattr(tasks_cli, "run", fake_run)
    # `tasks` declares no --threads: the policy stays the default
    assert cli_main(["tasks"]) == 0 and got["choice"] == 1


def test_cli_threads_reach_the_library_for_the_command_only(two_threads, monkeypatch):
    import statefulrnn.cli.predict as predict_cli

    got = {}

    def fake_run(args):
        got["choice"] = threads.choose(None, 1)
        return 0

    monkeypatch.setattr(predict_cli, "run", fake_run)
    assert cli_main(["predict", "m", "d.csv", "--threads", "2"]) == 0
    assert got["choice"] == 2  # what threads=None means while the command runs
    assert threads.get_default() is None and threads.choose(None, 1) == 1  # restored after


@pytest.mark.parametrize(
    "name, value, after_torch",
    [("OMP_WAIT_POLICY", "PASSIVE", "None"), ("THP_MEM_ALLOC_ENABLE", "1", "1")],
)
def test_import_sets_what_torch_reads_once_unless_the_user_chose_or_it_is_too_late(
    name, value, after_torch
):
    """A passive OpenMP wait policy and huge pages, set by `import statefulrnn` (_openmp.py).
    torch reads the wait policy when it loads (too late once it is loaded) and the huge-page
    switch at its first CPU allocation (so it is set after `import torch` too)."""

    def seen(code: str, env: dict[str, str]) -> str:
        code = f"import os, {code}; print(os.environ.get({name!r}))"
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    env = {k: v for k, v in os.environ.items() if k != name}
    assert seen("statefulrnn", env) == value
    assert seen("statefulrnn", {**env, name: "other"}) == "other"  # the user's choice stays
    assert seen("torch, statefulrnn", env) == after_torch


HUGE_PAGE_CYCLES = """
import resource, torch, statefulrnn
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    t = torch.ones(16 << 20)  # 64 MiB, written, freed: glibc maps it afresh each time
    del t
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "absent"
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else "absent"


@pytest.mark.skipif(thp_mode() != "madvise", reason="huge pages on request only ('madvise')")
def test_import_after_torch_still_gets_huge_pages_for_large_tensors():
    """The oracle is the kernel's count of minor page faults: ten 64 MiB tensors written and
    freed after `import torch, statefulrnn` fault 2 MB pages (hundreds of faults each), not
    4 kB ones (16,384 each) as with THP_MEM_ALLOC_ENABLE=0, the user's choice, kept."""

    def faults(env: dict[str, str]) -> int:
        out = subprocess.run(
            [sys.executable, "-c", HUGE_PAGE_CYCLES],
            env={**env, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        return int(out.stdout.split()[-1])

    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    pages = 10 * (64 << 20) // 4096
    assert faults({**env, "THP_MEM_ALLOC_ENABLE": "0"}) > 0.9 * pages
    assert faults(env) < pages / 10


# --------------------------------------------------------------------------- no sync per update
@pytest.fixture
def deferred(monkeypatch):
    """Run the device path (losses kept on the device, read every SYNC_EVERY chunks) on the CPU."""
    monkeypatch.setattr(fit_module, "defer_sync", lambda schedule, reduce: reduce is None)
    monkeypatch.setattr(fit_module, "SYNC_EVERY", 4)


def _history(**kw):
    torch.manual_seed(0)
    model = sr.StatefulRNN(2, 4, 1)
    h = sr.fit(model, seqs(n=8, t=20), epochs=2, window=3, batch_size=3, verbose=0, **kw)
    return h.column("loss"), model.state_dict()


def test_losses_kept_on_the_device_give_the_same_history_bit_for_bit(monkeypatch):
    loss_now, weights_now = _history()
    monkeypatch.setattr(fit_module, "defer_sync", lambda schedule, reduce: reduce is None)
    for every in (1, 4, 1000):
        monkeypatch.setattr(fit_module, "SYNC_EVERY", every)
        loss_later, weights_later = _history()
        assert loss_later == loss_now
        for k, v in weights_now.items():
            assert torch.equal(v, weights_later[k]), k


def test_deferred_losses_are_read_once_per_sync_not_per_update(deferred, monkeypatch):
    reads = []
    real_stack = torch.stack

    def counting_stack(tensors, *a, **kw):
        out = real_stack(tensors, *a, **kw)
        if sys._getframe(1).f_code.co_name == "settle":  # fit's reads of the kept losses
            reads.append(len(tensors))
        return out

    monkeypatch.setattr(fit_module.torch, "stack", counting_stack)
    items = []
    real_item = torch.Tensor.item
    def counting_item(t):  # fit's own reads only (the optimizer reads its step counter)
        if sys._getframe(1).f_code.co_filename == fit_module.__file__:
            items.append(1)
        return real_item(t)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    data = seqs(n=6, t=24)  # 2 groups of 3 lanes x 8 chunks of 3 steps: 16 chunks per epoch
    sr.fit(sr.StatefulRNN(2, 4, 1), data, epochs=1, window=3, batch_size=3, verbose=0)
    assert items == []  # no loss read back per chunk
    assert reads == [4, 4, 4, 4]  # 16 chunks, read 4 at a time


def test_deferred_divergence_still_names_epoch_and_chunk(deferred):
    model = sr.StatefulRNN(2, 4, 1)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    data = seqs(n=6, t=24)  # 16 chunks per epoch, read 4 at a time
    with pytest.raises(sr.TrainingDiverged, match=r"at epoch 0, chunk 6 of 16") as err:
        sr.fit(model, data, window=3, batch_size=3, epochs=2, verbose=0,
               optimizer=lambda p: PoisonAfter(p, 6))  # fmt: skip
    assert "restored to its weights at the start of epoch 0" in str(err.value)
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k]), k


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_compare_and_sweep_follow_the_policy_unless_threads_is_given(two_threads, monkeypatch, command):
    """They pinned torch's process-wide count to 1; now their --threads means what train's does."""
    import importlib

    module = importlib.import_module(f"statefulrnn.cli.{command}")
    got = []

    def fake_run(args):
        got.append((threads.choose(None, 1), threads.choose(None, threads.SMALL_STEP)))
        return 0

    monkeypatch.setattr(module, "run", fake_run)
    args = ["sine"] if command == "compare" else ["sine", "--trials", "1"]
    assert cli_main([command, *args]) == 0
    assert cli_main([command, *args, "--threads", "2"]) == 0
    assert got == [(1, None), (2, 2)]  # small steps on one thread, large on torch's; or 2
    assert torch.get_num_threads() == 2 and threads.get_default() is None
