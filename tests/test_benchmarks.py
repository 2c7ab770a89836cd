"""The speed benchmarks run and skip cleanly: Keras absent, CUDA absent (numbers are never asserted)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).parent.parent / "benchmarks"


def load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the benchmark runs for real")
def test_gpu_benchmark_says_cuda_is_absent_and_exits_cleanly(capsys, tmp_path):
    out = tmp_path / "gpu.json"
    assert load("bench_gpu").main(["--out", str(out)]) == 0
    assert "CUDA is not available" in capsys.readouterr().out
    assert not out.exists()


def test_keras_benchmark_skips_keras_cleanly_and_writes_its_json(capsys, tmp_path):
    before = torch.get_num_threads()
    out = tmp_path / "vs_keras.json"
    bench = load("bench_vs_keras")
    result = bench.main(["--quick", "--rounds", "1", "--phase", "busy", "--only", "one_stream",
                         "--keras-python", str(tmp_path / "no-python"), "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "Keras not found" in printed and "tensorflow-cpu keras" in printed
    saved = json.loads(out.read_text())
    assert saved["keras"] is None and result["keras"] is None
    one = saved["phases"]["busy"]["one_stream"]
    sides = one["median"]
    n = torch.get_num_threads()  # the bare cell at torch's default threads, and at one
    bare = {f"bare_nn_lstmcell_{n}t_default"} | ({"bare_nn_lstmcell_1t"} if n > 1 else set())
    assert set(sides) == {"statefulrnn", *bare}
    assert all(v > 0 for v in sides.values())
    assert one["stream_steps_per_s"] == 1 / sides["statefulrnn"]
    assert saved["phases"]["busy"]["busy_process"]["session"] == "same"
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("session", ["same", "new"])
def test_the_busy_process_runs_in_this_session_or_its_own(session):
    """--busy-session: a child in the benchmark's session (its scheduling group, where Linux
    groups sessions), or one in a session of its own; stopped either way."""
    bench = load("bench_vs_keras")
    busy = bench.start_busy(session)
    try:
        own = os.getsid(busy.pid) == busy.pid
        assert own == (session == "new")
        group, ours = bench.sched_group(busy.pid), bench.sched_group()
        if group is not None and ours is not None:  # Linux with autogroups
            assert (group == ours) == (session == "same")
    finally:
        bench.stop_busy(busy)
    assert busy.poll() is not None


def test_keras_benchmark_times_the_bare_loop_at_default_and_one_thread(tmp_path):
    """The bare training loop at torch's default threads and at one; the faster is the
    baseline (`best_bare`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a user's default on this 2-core machine (the suite runs at 1)
    try:
        bench = load("bench_vs_keras")
        result = bench.main(["--quick", "--rounds", "1", "--phase", "quiet", "--only", "per_step",
                             "--no-keras", "--out", str(tmp_path / "vs.json")])  # fmt: skip
    finally:
        torch.set_num_threads(before)
    res = result["phases"]["quiet"]["per_step"]
    assert set(res["median"]) == {
        "statefulrnn", "bare_nn_lstm_per_step_2t_default", "bare_nn_lstm_per_step_1t"
    }  # fmt: skip
    bare = {k: v for k, v in res["median"].items() if k.startswith("bare_")}
    assert res["best_bare"] == min(bare, key=bare.__getitem__)
    assert res["speedup_vs"]["best_bare"] == bare[res["best_bare"]] / res["median"]["statefulrnn"]


@pytest.mark.slow
def test_serve_benchmark_runs_end_to_end_and_writes_its_json(tmp_path):
    """bench_serve.py starts `statefulrnn serve`, drives it with serve_client.py processes and
    writes its JSON (a short run: two loads, the embedded store on both servers; numbers are
    not asserted)."""
    pytest.importorskip("uvicorn")
    pytest.importorskip("granian")
    out = tmp_path / "serve.json"
    result = load("bench_serve").main(
        ["--seconds", "0.3", "--streams", "20", "--no-redis", "--out", str(out),
         "--loads", "single_stream_http,many_websocket", "--server", "granian,uvicorn"]
    )  # fmt: skip
    saved = json.loads(out.read_text())
    runs = {"sqlite_granian", "sqlite_uvicorn"}
    assert saved["stores"].keys() == runs == result["stores"].keys()
    for name, run in [
        (name, run) for name in ("single_stream_http", "many_websocket") for run in runs
    ]:
        load_result = saved["stores"][run][name]
        assert "errors" not in load_result, load_result
        assert load_result["stream_steps_per_s"] > 0 and load_result["p50_ms"] > 0
        assert load_result["server_cpu_us_per_step"] is not None
    assert saved["in_process_streampool"]["stream_steps_per_s"] > 0


def test_busy_ceiling_benchmark_writes_quiet_and_busy_figures_per_job(tmp_path):
    """bench_busy_ceiling.py --quick: every job in its own process, quiet and with
    bench_vs_keras's busy process; the JSON's structure (never its timings)."""
    out = tmp_path / "ceiling.json"
    bench = load("bench_busy_ceiling")
    result = bench.main(["--quick", "--only", "ideal_free", "--only", "seed000",
                         "--out", str(out)])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["jobs"].keys() == result["jobs"].keys()
    assert list(saved["jobs"]) == ["ideal_free_1t", "ideal_free_2t", "seed000"]
    assert saved["busy_session"] == "same" and saved["rounds"] == 1 and saved["quick"]
    for name, job in saved["jobs"].items():
        for phase in ("quiet", "busy"):
            assert len(job[phase]) == len(job[f"{phase}_cpu"]) == 1
            assert job[f"median_{phase}"] == job[phase][0] > 0
        assert job["busy_over_quiet_speed"] == job["median_quiet"] / job["median_busy"]
        assert len(job["spinner_cores"]) == 1
        if job["sched_groups"]["busy"] is not None:  # Linux with autogroups: one group
            assert job["sched_groups"]["busy"] == job["sched_groups"]["job"]
        assert ("busy_vs_best_quiet" in job) == name.startswith("ideal_")
    free = saved["jobs"]["ideal_free_1t"], saved["jobs"]["ideal_free_2t"]
    best = min(j["median_quiet"] for j in free)
    assert free[1]["busy_vs_best_quiet"] == best / free[1]["median_busy"]
    assert saved["jobs"]["seed000"]["unit"] == "s per epoch"
