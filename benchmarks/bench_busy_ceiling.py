"""What share of its quiet speed a CPU job can keep beside bench_vs_keras.py's busy process on
this machine: the ceiling for issue 13's busy criterion, measured, beside statefulrnn's own
seed000 and streams_10k.

    .venv/bin/python benchmarks/bench_busy_ceiling.py                      # busy child, our session
    .venv/bin/python benchmarks/bench_busy_ceiling.py --busy-session new   # busy in its own session
    .venv/bin/python benchmarks/bench_busy_ceiling.py --quick              # a smoke test (seconds)

Why: issue 13 wants every workload at >= 0.75x its quiet speed while one competing CPU loop
runs (bench_vs_keras.start_busy). How much of the machine the scheduler gives a job beside that
loop depends on the job's thread count, on how often its threads wait for each other, and on
whether the loop shares the job's scheduling group (a child in the same session) or not (a
session of its own, where Linux groups sessions: autogroup). This measures what jobs with
nothing to lose to synchronisation overhead actually get, so our figures can be read against
what any job could get here:

  ideal_free_<k>t     k threads, each 1/k of a fixed amount of work (GEMMs on its own tensors,
                      one intra-op thread each), meeting only at the end: as parallel as a job
                      can be.
  ideal_barrier_<k>t  the same work in STEPS steps; all k threads meet at a barrier after every
                      step (~0.7 ms of work on one core): lanes of a recurrent time loop cut into
                      groups that meet every step.
  ideal_omp_<k>t      one [384, 256] x [256, 256] GEMM per step in this thread at
                      torch.set_num_threads(k): torch's own OpenMP threads split it and meet at
                      its end, every step (torch's default threads on a fused nn.LSTM).
  seed000             bench_vs_keras.py's: one epoch of `fit`, statefulrnn's defaults.
  streams_10k         bench_vs_keras.py's: StreamPool.step on 10,000 streams, defaults (its 20
                      calls run STREAM_REPEAT times per measurement, so one lasts ~0.5 s).

Each job runs in a process of its own (this file with --job NAME; the busy process is a child of
this one, so "same" puts it in the jobs' session too), started and warmed up before any timing.
Job by job: one run not counted, then `--rounds` quiet runs and as many with the busy process
(started SETTLE_S before the run, stopped after it), alternating, quiet first in even rounds.
Medians over the rounds. Per job: `busy_over_quiet_speed` (quiet median / busy median; issue
13 wants >= 0.75), the cores it used (process CPU seconds / wall seconds) quiet and busy,
`spinner_cores` (the busy process's CPU share during each busy run), and for the ideal jobs
`busy_vs_best_quiet`: busy speed against the fastest quiet thread count of the same kind (more
threads can win a larger share under load, but only count if that does not cost quiet speed).
Run it under `flock -x /work/cpu.lock` (nothing else on the machine) and record `uptime`.
Results: benchmarks/results/busy_ceiling_<same|new>.json.
"""

# ruff: noqa: I001  (bench_vs_keras imports statefulrnn before torch on purpose)
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_vs_keras as vk  # first: statefulrnn sets the OpenMP wait policy before torch loads

import torch  # noqa: E402
from statefulrnn import threads as thread_policy  # noqa: E402

RESULTS = Path(__file__).parent / "results"
THREADS, THREADS_QUICK = (1, 2, 3, 4), (1, 2)
UNIT = (32, 256, 256)  # one GEMM unit: [32, 256] x [256, 256], ~50 us on one core here
UNITS_PER_STEP = 12  # split evenly over 1, 2, 3 or 4 threads
STEPS, STEPS_QUICK = 1200, 20  # ~0.8 s of work on one core
STREAM_REPEAT, STREAM_REPEAT_QUICK = 5, 1
SETTLE_S = 0.3  # after start_busy: the loop is spinning before the first job starts

Job = Callable[[], tuple[float, float]]  # runs once; (wall s, process CPU s)


def timed(fn: Callable[[], None]) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def ideal_threads(k: int, steps: int, barrier: bool) -> Job:
    """k threads, each UNITS_PER_STEP / k GEMM units per step on its own tensors; with
    `barrier`, all meet after every step."""
    units = UNITS_PER_STEP // k
    m, n, p = UNIT
    tensors = [(torch.randn(m, n), torch.randn(n, p), torch.empty(m, p)) for _ in range(k)]

    def run() -> None:
        meet = threading.Barrier(k) if barrier else None

        def work(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
            torch.set_num_threads(1)  # each thread is one worker: no OpenMP team of its own
            for _ in range(steps):
                for _ in range(units):
                    torch.mm(a, b, out=out)
                if meet is not None:
                    meet.wait()

        workers = [threading.Thread(target=work, args=t) for t in tensors]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def job() -> tuple[float, float]:
        with thread_policy.using(1):  # restores this thread's (and torch's global) count after
            return timed(run)

    return job


def ideal_omp(k: int, steps: int) -> Job:
    """One GEMM of the step's whole work per step in this thread, at k intra-op threads."""
    m, n, p = UNIT
    a, b, out = (
        torch.randn(m * UNITS_PER_STEP, n),
        torch.randn(n, p),
        torch.empty(m * UNITS_PER_STEP, p),
    )

    def run() -> None:
        for _ in range(steps):
            torch.mm(a, b, out=out)

    def job() -> tuple[float, float]:
        with thread_policy.using(k):
            return timed(run)

    return job


def ours(name: str, quick: bool) -> Job:
    """bench_vs_keras.py's statefulrnn side of seed000 or streams_10k, as it is there."""
    if name == "seed000":
        return vk.sides_seed000(quick)[0]["statefulrnn"]
    step = vk.WORKLOADS["streams_10k"][0](quick)[0]["statefulrnn"]
    repeat = STREAM_REPEAT_QUICK if quick else STREAM_REPEAT

    def streams() -> tuple[float, float]:  # seconds per call, over `repeat` x 20 calls
        runs = [step() for _ in range(repeat)]
        return sum(r[0] for r in runs) / repeat, sum(r[1] for r in runs) / repeat

    return streams


OURS = {"seed000": "s per epoch", "streams_10k": "s per call"}


def job_names(threads: tuple[int, ...]) -> list[str]:
    ideal = [f"ideal_{kind}_{k}t" for kind in ("free", "barrier", "omp") for k in threads]
    return [*ideal, *OURS]


def make_job(name: str, quick: bool) -> Job:
    if name in OURS:
        return ours(name, quick)
    _, kind, k = name.split("_")
    steps = STEPS_QUICK if quick else STEPS
    if kind == "omp":
        return ideal_omp(int(k[:-1]), steps)
    return ideal_threads(int(k[:-1]), steps, barrier=kind == "barrier")


class Side:
    """One job in a process of its own (this file with --job NAME), timed on request: one
    job's thread settings, OpenMP teams and memory cannot change another's figures, and each
    job is a program as a user starts it. The process warms its job up twice before `ready`."""

    def __init__(self, name: str, quick: bool):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--job", name]
        self.name, self.unit = name, OURS.get(name, "s per run")
        self.proc = subprocess.Popen(
            [*cmd, *(["--quick"] if quick else [])], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    def ready(self) -> None:
        if json.loads(self.proc.stdout.readline() or "{}").get("ready") is not True:
            raise RuntimeError(f"the process of job {self.name} did not start")

    def __call__(self) -> tuple[float, float]:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the process of job {self.name} ended")
        wall, cpu = json.loads(line)
        return wall, cpu

    def close(self) -> None:
        self.proc.stdin.close()  # the child's loop ends at end of input
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def serve_job(name: str, quick: bool) -> None:
    """The child's side of Side: build, warm up, then one timed run per line read."""
    job = make_job(name, quick)
    for _ in range(2):  # seed000: TorchScript compiles, then its profiling executor optimises
        job()
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        print(json.dumps(job()), flush=True)


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) of process `pid` so far, where Linux says."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def once(side: Side, session: str | None) -> dict:
    """One timed run of `side`; with the busy process running throughout when `session` is
    given (started SETTLE_S before, stopped after)."""
    busy = vk.start_busy(session) if session else None
    try:
        if busy is not None:
            time.sleep(SETTLE_S)
            spin0, t0 = process_cpu(busy.pid), time.perf_counter()
        wall, cpu = side()
        run: dict = {"wall": wall, "cpu": cpu}
        if busy is not None:
            spin1, spun = process_cpu(busy.pid), time.perf_counter() - t0
            run["spinner_cores"] = None if None in (spin0, spin1) else (spin1 - spin0) / spun
            run["sched_groups"] = {
                "busy": vk.sched_group(busy.pid),
                "job": vk.sched_group(side.proc.pid),
            }
        return run
    finally:
        if busy is not None:
            vk.stop_busy(busy)


def measure(side: Side, session: str, rounds: int) -> dict[str, list[dict]]:
    """`rounds` quiet and `rounds` busy runs of one job, alternating (quiet first in even
    rounds), after one run that is not counted. A job's runs follow each other: a process that
    sat idle for seconds, or whose neighbour ran in between, pays extra system time on its
    next run here (seed000: up to ~0.9 s more per epoch, docs/busy.md), which runs of other
    jobs in between would add to some of its figures and not others."""
    side()
    runs: dict[str, list[dict]] = {"quiet": [], "busy": []}
    for r in range(rounds):
        for phase in ("quiet", "busy") if r % 2 == 0 else ("busy", "quiet"):
            runs[phase].append(once(side, session if phase == "busy" else None))
    return runs


def summarise(unit: str, runs: dict[str, list[dict]]) -> dict:
    res: dict = {"unit": unit}
    for phase in ("quiet", "busy"):
        walls, cpus = [r["wall"] for r in runs[phase]], [r["cpu"] for r in runs[phase]]
        res[phase], res[f"{phase}_cpu"] = walls, cpus
        res[f"median_{phase}"] = statistics.median(walls)
        res[f"cores_{phase}"] = statistics.median(c / w for c, w in zip(cpus, walls))
    res["busy_over_quiet_speed"] = res["median_quiet"] / res["median_busy"]
    res["spinner_cores"] = [r["spinner_cores"] for r in runs["busy"]]
    res["sched_groups"] = runs["busy"][0]["sched_groups"]
    return res


def best_quiet(summary: dict) -> None:
    """busy_vs_best_quiet for the ideal jobs: busy speed against the fastest quiet thread
    count of the same kind."""
    for name, res in summary.items():
        if name.startswith("ideal_"):
            kind = name.rsplit("_", 1)[0]
            best = min(r["median_quiet"] for n, r in summary.items() if n.rsplit("_", 1)[0] == kind)
            res["busy_vs_best_quiet"] = best / res["median_busy"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small shapes, 1 and 2 threads")
    parser.add_argument("--rounds", type=int, help="counted rounds (default 5, 1 with --quick)")
    parser.add_argument("--busy-session", choices=["same", "new"], default="same",
                        help="the busy process in this session (same) or its own (new: setsid)")  # fmt: skip
    parser.add_argument("--only", action="append", metavar="PREFIX",
                        help="run the jobs whose names start with this (repeatable)")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, help="the JSON (default results/busy_ceiling_<session>.json)"
    )
    parser.add_argument("--job", help=argparse.SUPPRESS)  # a child: serve_job
    args = parser.parse_args(argv)
    if args.job:
        serve_job(args.job, args.quick)
        return {}
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    if rounds < 1:
        parser.error("--rounds must be >= 1")
    out = args.out or RESULTS / f"busy_ceiling_{args.busy_session}.json"
    threads = THREADS_QUICK if args.quick else THREADS
    names = job_names(threads)
    if args.only:
        names = [n for n in names if n.startswith(tuple(args.only))]
        if not names:
            parser.error(f"--only {args.only} matches none of the jobs")
    result: dict = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "autogroup": _read("/proc/sys/kernel/sched_autogroup_enabled"),
        "busy_session": args.busy_session,
        "rounds": rounds,
        "quick": args.quick,
        "threads": list(threads),
        "steps": STEPS_QUICK if args.quick else STEPS,
        "unit_gemm": list(UNIT),
        "units_per_step": UNITS_PER_STEP,
        "loadavg_start": os.getloadavg(),
    }
    print(
        f"busy session {args.busy_session}, {rounds} rounds, load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    todo = {name: Side(name, args.quick) for name in names}  # they start and warm up at once
    summary: dict = {}
    try:
        for side in todo.values():
            side.ready()
        for name, side in todo.items():
            summary[name] = summarise(side.unit, measure(side, args.busy_session, rounds))
            print(f"  {name}: busy/quiet {summary[name]['busy_over_quiet_speed']:.2f}, "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    finally:
        for side in todo.values():
            side.close()
    best_quiet(summary)
    result["loadavg_end"] = os.getloadavg()
    result["jobs"] = summary
    print(table(result["jobs"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def table(summary: dict) -> str:
    lines = [f"{'job':<20} {'quiet':>10} {'busy':>10} {'busy/quiet':>10} {'cores q/b':>10}"]
    for name, r in summary.items():
        scale, unit = (1e6, "us") if r["unit"] == "s per call" else (1.0, "s")
        lines.append(
            f"{name:<20} {r['median_quiet'] * scale:>8.3f}{unit:>2} {r['median_busy'] * scale:>8.3f}"
            f"{unit:>2} {r['busy_over_quiet_speed']:>10.2f} {r['cores_quiet']:>4.2f}/{r['cores_busy']:.2f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
