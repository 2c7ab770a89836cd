"""statefulrnn against Keras 3 and bare PyTorch loops on issue 13's five workloads, quiet and busy.

    .venv/bin/python benchmarks/bench_vs_keras.py              # default: 3 rounds, both phases (~3-5 min)
    .venv/bin/python benchmarks/bench_vs_keras.py --quick      # small shapes, a smoke test (~1 min)
    .venv/bin/python benchmarks/bench_vs_keras.py --rounds 7 --phase busy --only seed000

Workloads (statefulrnn on its defaults: the user sets nothing, threads included):
  seed000       LSTM(64), 800 series x 1000 steps, 400 lanes, window 500, Adam, weighted MSE:
                seconds per epoch of `fit`, of a bare nn.LSTM + nn.Linear TBPTT loop, of Keras
                (stateful LSTM, train_on_batch per chunk, states reset per group of lanes).
  per_step      LSTM(10), window 1, batch 1, BCE, 100 sequences x 20 steps: seconds per 2,000
                updates of `fit`, of a bare per-step nn.LSTM loop, of Keras's train_on_batch.
  one_stream    LSTM(64), one stream, one step: microseconds per StreamPool.step, per bare
                nn.LSTMCell call, per Keras predict_on_batch (stateful, batch 1).
  many_streams  the same with 1,000 streams per call.
  streams_10k   the same with 10,000 streams per call (issue 13 wants >= 2M stream-steps/s;
                `stream_steps_per_s` in the JSON); one stream step <= 1.5x the best bare
                nn.LSTMCell call is wanted (`speedup_vs.best_bare` >= 1/1.5).

Wall seconds and CPU seconds (every thread of the side's process) are both recorded: on a
machine shared with other work the CPU figures move least. Every round runs every side once, alternating (statefulrnn, bare loop, Keras, ...), after one
warm-up round that is not counted; the figures are medians over the rounds. Two phases: "quiet"
(whatever else the machine runs: the load average is recorded beside every phase) and "busy",
with a competing busy process this benchmark starts (one bounded CPU loop) and stops itself:
by default a child in this benchmark's session, so the scheduler shares the cores per thread
between it and ours; `--busy-session new` starts it in a session of its own (setsid), a
separate scheduling group where Linux groups sessions, which then gets a group's share against
all of our threads together. The JSON's `busy_process` records which, and both groups.
The bare loops (training loops, nn.LSTMCell) run twice per round: at torch's default thread count (what a user
writing them gets; `_<n>t_default`) and at one thread (`_1t`); `speedup_vs.best_bare` is the
ratio to the faster of the two. (They share this process, so they also get the passive OpenMP
wait policy `import statefulrnn` sets, which only helps them under load.)

Keras is optional and never a dependency of statefulrnn: it runs in its own virtual
environment, in a subprocess (benchmarks/_keras_side.py), found at --keras-python (default
.venv-keras/bin/python). Install it with
    python3 -m venv .venv-keras && .venv-keras/bin/pip install tensorflow-cpu keras
Without it the Keras columns are skipped, with a message. Results: benchmarks/results/vs_keras.json.
"""

# ruff: noqa: I001  (statefulrnn is imported before torch on purpose, see below)
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import statefulrnn as sr  # first: it sets the OpenMP wait policy before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import _workloads as W  # noqa: E402
from statefulrnn import threads as thread_policy  # noqa: E402

HERE = Path(__file__).parent
# one epoch of 4 updates is what the seed-000 timing is; fit's advice about it is not news here
warnings.filterwarnings("ignore", message="each epoch has only")
RESULTS = HERE / "results" / "vs_keras.json"
KERAS_PYTHON = HERE.parent / ".venv-keras" / "bin" / "python"
BUSY_LIMIT_S = 1800  # the busy process ends by itself after this, whatever happens here


# --------------------------------------------------------------------------- the Keras side
class Keras:
    """The Keras side, a long-lived subprocess in the Keras virtual environment."""

    def __init__(self, python: Path):
        self.proc = subprocess.Popen(
            [str(python), str(HERE / "_keras_side.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        ready = json.loads(self.proc.stdout.readline() or "{}")
        if not ready.get("ready"):
            self.close()
            raise RuntimeError("the Keras side did not start")
        self.version = ready["keras"]

    def time(self, workload: str, quick: bool) -> float:
        self.proc.stdin.write(json.dumps({"workload": workload, "quick": quick}) + "\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        if "error" in answer:
            raise RuntimeError(f"Keras side, {workload}: {answer['error']}")
        return answer["seconds"], answer["cpu_seconds"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_keras(python: Path) -> Keras | None:
    if not python.exists():
        print(
            f"Keras not found at {python}: the Keras columns are skipped. It is an optional, "
            "benchmark-only install: python3 -m venv .venv-keras && "
            ".venv-keras/bin/pip install tensorflow-cpu keras",
            flush=True,
        )
        return None
    try:
        return Keras(python)
    except (OSError, RuntimeError, json.JSONDecodeError) as err:
        print(f"Keras side failed to start ({err}): the Keras columns are skipped.", flush=True)
        return None


# --------------------------------------------------------------------------- bare loops
class BareTBPTT:
    """nn.LSTM + nn.Linear, lanes of series, chunks of `window` steps, state detached between
    chunks and dropped between groups of lanes: the loop a PyTorch user writes by hand."""

    def __init__(self, hidden: int):
        torch.manual_seed(0)
        self.lstm, self.head = nn.LSTM(1, hidden, batch_first=True), nn.Linear(hidden, 1)
        self.opt = torch.optim.Adam([*self.lstm.parameters(), *self.head.parameters()], lr=1e-3)
        self.epoch = 0

    def run(self, x, y, w, lanes: int, window: int) -> None:
        order = torch.from_numpy(W.group_order(x.shape[0], self.epoch))
        self.epoch += 1
        for g in range(0, x.shape[0], lanes):
            idx = order[g : g + lanes]
            xb, yb, wb = x[idx], y[idx], w[idx]
            state = None
            for a in range(0, x.shape[1], window):
                out, state = self.lstm(xb[:, a : a + window], state)
                err = (self.head(out) - yb[:, a : a + window]).square().mean(-1)
                wc = wb[:, a : a + window]
                loss = (err * wc).sum() / wc.sum()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                state = (state[0].detach(), state[1].detach())


class BarePerStep:
    """One sequence at a time, one update per step, state carried (detached), zeroed per
    sequence: seed 001's recipe in plain PyTorch."""

    def __init__(self, hidden: int):
        torch.manual_seed(0)
        self.lstm, self.head = nn.LSTM(1, hidden, batch_first=True), nn.Linear(hidden, 1)
        self.opt = torch.optim.Adam([*self.lstm.parameters(), *self.head.parameters()], lr=1e-3)

    def run(self, x, y) -> None:
        for i in range(x.shape[0]):
            state = None
            for t in range(x.shape[1]):
                out, state = self.lstm(x[i : i + 1, t : t + 1], state)
                loss = F.binary_cross_entropy_with_logits(self.head(out), y[i : i + 1, t : t + 1])
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                state = (state[0].detach(), state[1].detach())


# --------------------------------------------------------------------------- our sides
def sides_seed000(quick: bool):
    s = W.SEED000_QUICK if quick else W.SEED000
    x, y, w = W.lagged_product(s["series"], s["steps"])
    train = sr.Sequences.from_arrays(x, y, weights=w)
    torch.manual_seed(0)
    model = sr.StatefulRNN(1, s["hidden"], 1)
    epoch = [0]

    def fit():
        t0, c0 = time.perf_counter(), time.process_time()
        sr.fit(model, train, window=s["window"], batch_size=s["lanes"], epochs=1, lr=1e-3,
               seed=epoch[0], verbose=0)  # fmt: skip
        epoch[0] += 1
        return time.perf_counter() - t0, time.process_time() - c0

    xt, yt, wt = (torch.from_numpy(a) for a in (x, y, w))
    bares = {n: BareTBPTT(s["hidden"]) for n in bare_threads()}

    def loop(n: int):
        with thread_policy.using(n):
            t0, c0 = time.perf_counter(), time.process_time()
            bares[n].run(xt, yt, wt, s["lanes"], s["window"])
            return time.perf_counter() - t0, time.process_time() - c0

    return {"statefulrnn": fit, **bare_sides("bare_nn_lstm_tbptt", loop)}, s


def bare_threads() -> list[int]:
    """The bare loops run at torch's default thread count (what a user writing them gets) and
    at one thread; the faster of the two is the baseline (`best_bare`)."""
    return sorted({torch.get_num_threads(), 1}, reverse=True)


def bare_sides(name: str, loop) -> dict:
    default = torch.get_num_threads()
    return {f"{name}_{n}t" + ("_default" if n == default else ""): (lambda n=n: loop(n))
            for n in bare_threads()}  # fmt: skip


def sides_per_step(quick: bool):
    s = W.PER_STEP_QUICK if quick else W.PER_STEP
    x, y = W.first_bit(s["sequences"])
    train = sr.Sequences.from_arrays(x, y)
    torch.manual_seed(0)
    model = sr.StatefulRNN(1, s["hidden"], 1)

    def fit():
        t0, c0 = time.perf_counter(), time.process_time()
        sr.fit(model, train, window=1, batch_size=1, epochs=1, loss="bce", lr=1e-3, verbose=0,
               shuffle=False)  # fmt: skip
        return time.perf_counter() - t0, time.process_time() - c0

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    bares = {n: BarePerStep(s["hidden"]) for n in bare_threads()}

    def loop(n: int):
        with thread_policy.using(n):
            t0, c0 = time.perf_counter(), time.process_time()
            bares[n].run(xt, yt)
            return time.perf_counter() - t0, time.process_time() - c0

    return {"statefulrnn": fit, **bare_sides("bare_nn_lstm_per_step", loop)}, s


def sides_streams(n: int, calls: int):
    def make(quick: bool):
        torch.manual_seed(0)
        model = sr.StatefulRNN(1, W.STREAM_HIDDEN, 1).eval()
        pool = sr.StreamPool(model)
        ids = [f"s{i}" for i in range(n)]
        xs = np.random.default_rng(n).normal(size=(n, 1, 1)).astype(np.float32)
        cell = nn.LSTMCell(1, W.STREAM_HIDDEN).eval()
        xt, h = torch.from_numpy(xs[:, 0]), torch.zeros(n, W.STREAM_HIDDEN)
        for _ in range(20):
            pool.step(ids, xs)

        def step():
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(calls):
                pool.step(ids, xs)
            return (time.perf_counter() - t0) / calls, (time.process_time() - c0) / calls

        def bare(threads: int):
            with torch.no_grad(), thread_policy.using(threads):
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    cell(xt, (h, h))
                return (time.perf_counter() - t0) / calls, (time.process_time() - c0) / calls

        sides = {"statefulrnn": step, **bare_sides("bare_nn_lstmcell", bare)}
        return sides, {"streams": n, "calls": calls}

    return make


WORKLOADS = {
    "seed000": (sides_seed000, "s per epoch"),
    "per_step": (sides_per_step, "s per epoch"),
    "one_stream": (sides_streams(1, W.STREAM_CALLS), "s per call"),
    "many_streams": (sides_streams(W.MANY_STREAMS, W.MANY_CALLS), "s per call"),
    "streams_10k": (sides_streams(W.HUGE_STREAMS, W.HUGE_CALLS), "s per call"),
}


# --------------------------------------------------------------------------- the busy process
BUSY_CODE = f"import time\nend = time.time() + {BUSY_LIMIT_S}\nx = 0\nwhile time.time() < end:\n    x += 1\n"


def start_busy(session: str = "same") -> subprocess.Popen:
    """One bounded CPU loop (it ends by itself after BUSY_LIMIT_S); stopped by stop_busy.

    `session` "same": a child in this process's session, so (where Linux groups sessions,
    /proc/sys/kernel/sched_autogroup_enabled) the scheduler shares the cores between its thread
    and each of ours alike; "new": in a session of its own (setsid), as a program started from
    another terminal or service is, so it gets a group's share against all of our threads."""
    return subprocess.Popen([sys.executable, "-c", BUSY_CODE], start_new_session=session == "new")


def sched_group(pid: int | str = "self") -> str | None:
    """The scheduling group (autogroup) of a process, where Linux says: what decides whether
    the busy process competes with each of our threads or with all of them together."""
    try:
        return Path(f"/proc/{pid}/autogroup").read_text().strip()
    except OSError:
        return None


def stop_busy(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


# --------------------------------------------------------------------------- running
def run_phase(names, rounds: int, quick: bool, keras: Keras | None) -> dict:
    out = {"loadavg_start": os.getloadavg()}
    for name in names:
        make, unit = WORKLOADS[name]
        sides, shape = make(quick)
        if keras is not None:
            sides["keras"] = lambda name=name: keras.time(name, quick)
        times: dict[str, list[float]] = {k: [] for k in sides}
        cpu: dict[str, list[float]] = {k: [] for k in sides}
        t0 = time.perf_counter()
        for r in range(rounds + 1):  # round 0 warms up (Keras traces, torch allocates)
            for side, fn in sides.items():
                wall, cpu_s = fn()
                if r:
                    times[side].append(wall)
                    cpu[side].append(cpu_s)
        med = {k: statistics.median(v) for k, v in times.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        res = {"unit": unit, "shape": shape, "times": times, "median": med, "cpu_times": cpu,
               "median_cpu": med_cpu, "wall_s": time.perf_counter() - t0,
               "loadavg_after": os.getloadavg()}  # fmt: skip
        ours, ours_cpu = med["statefulrnn"], med_cpu["statefulrnn"]
        if "streams" in shape:
            res["stream_steps_per_s"] = shape["streams"] / ours  # >= 2M wanted at 10,000
        res["speedup_vs"] = {k: v / ours for k, v in med.items() if k != "statefulrnn"}
        bare = {k: v for k, v in med.items() if k.startswith("bare_")}
        if len(bare) > 1:  # the bare loop at torch's default threads and at one: the faster
            res["best_bare"] = min(bare, key=bare.__getitem__)
            res["speedup_vs"]["best_bare"] = bare[res["best_bare"]] / ours
        # CPU seconds (all threads of the process): what the machine's load disturbs least
        res["cpu_speedup_vs"] = {k: v / ours_cpu for k, v in med_cpu.items() if k != "statefulrnn"}
        out[name] = res
        print(f"  {name}: " + ", ".join(f"{k} {fmt(v, unit)} (cpu {fmt(med_cpu[k], unit)})"
                                       for k, v in med.items())
              + "; statefulrnn is " + ", ".join(f"{v:.2f}x {k}" for k, v in
                                                 res["speedup_vs"].items())
              + " (cpu: " + ", ".join(f"{v:.2f}x" for v in res["cpu_speedup_vs"].values())
              + f"; load {os.getloadavg()[0]:.1f})"
              + (f"; {res['stream_steps_per_s'] / 1e6:.2f}M stream-steps/s"
                 if "stream_steps_per_s" in res else ""), flush=True)  # fmt: skip
    out["loadavg_end"] = os.getloadavg()
    return out


def fmt(seconds: float, unit: str) -> str:
    return f"{seconds * 1e6:,.0f} us" if unit == "s per call" else f"{seconds:.3f} s"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small shapes, a smoke test")
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds per workload (3)")
    parser.add_argument("--phase", choices=["quiet", "busy", "both"], default="both")
    parser.add_argument("--only", choices=list(WORKLOADS), action="append",
                        help="run this workload only (repeatable)")  # fmt: skip
    parser.add_argument("--keras-python", type=Path, default=KERAS_PYTHON,
                        help="python of the Keras virtual environment")  # fmt: skip
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras side")
    parser.add_argument("--busy-session", choices=["same", "new"], default="same",
                        help="the busy process in this session (same, the default) or in a "
                        "session of its own (new: setsid)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON to write")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    names = args.only or list(WORKLOADS)
    keras = None if args.no_keras else start_keras(args.keras_python)
    result = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "keras": keras.version if keras else None,
        "rounds": args.rounds,
        "quick": args.quick,
        "phases": {},
    }
    phases = ["quiet", "busy"] if args.phase == "both" else [args.phase]
    try:
        for phase in phases:
            print(f"{phase} (load average {os.getloadavg()[0]:.1f}):", flush=True)
            busy = start_busy(args.busy_session) if phase == "busy" else None
            try:
                result["phases"][phase] = run_phase(names, args.rounds, args.quick, keras)
                if busy is not None:
                    result["phases"][phase]["busy_process"] = {
                        "session": args.busy_session,
                        "sched_group": sched_group(busy.pid),
                        "ours": sched_group(),
                    }
            finally:
                if busy is not None:
                    stop_busy(busy)
    finally:
        if keras is not None:
            keras.close()
    if len(result["phases"]) == 2:
        q, b = result["phases"]["quiet"], result["phases"]["busy"]
        result["busy_over_quiet_speed"] = {
            n: {s: q[n]["median"][s] / b[n]["median"][s] for s in q[n]["median"]} for n in names
        }
        print("busy speed / quiet speed (>= 0.75 wanted): " + "; ".join(
            f"{n} " + ", ".join(f"{s} {v:.2f}" for s, v in d.items())
            for n, d in result["busy_over_quiet_speed"].items()), flush=True)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
