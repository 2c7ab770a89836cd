"""Throughput of stateful training with 1 and 2 processes of one thread each (torchrun, gloo).

    .venv/bin/python benchmarks/bench_distributed.py [--repeats 3] [--epochs 3]

The seed-000 shapes (lagged-product): LSTM(64) + per-step linear head, 800 sequences of
1,000 steps, 400 lanes, window 500, rmsprop, float32. Each repetition launches
`torchrun --standalone --nproc_per_node=N` with OMP_NUM_THREADS=1; the first epoch is a
warm-up, the others are timed from fit's history (seconds per epoch: the schedule, every
chunk's forward, backward, gradient all-reduce and update; no validation). Throughput is in
cell-steps per second: sequence steps trained (800 × 1,000 per epoch) / seconds. Writes the
medians over repetitions to benchmarks/results/distributed.json.

Two processes on two cores only pay off when both cores are free: the result records the
load average before and after, since other work on the machine skews the numbers, and also
rank 0's CPU seconds per epoch, which other work does not inflate (cell-steps per CPU-second:
the rate with a free core per process, if no rank were ever kept waiting).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, N_SERIES, T, LANES, WINDOW = 64, 800, 1000, 400, 500
RESULTS = Path(__file__).parent / "results" / "distributed.json"


def worker(out: Path, epochs: int) -> None:
    """One torchrun process: train the seed-000 shapes; rank 0 writes the epoch seconds."""
    import numpy as np
    import torch

    import statefulrnn as sr
    from statefulrnn.tasks.lagged_product import PARAMS, make_series

    class CpuClock(sr.Callback):
        """This process's CPU seconds per epoch: what it would take with a free core of its own."""

        def __init__(self):
            self.last, self.seconds = time.process_time(), []

        def on_epoch_end(self, epoch, record, model) -> bool:
            now = time.process_time()
            self.seconds.append(now - self.last)
            self.last = now
            return False

    clock = CpuClock()
    p = {k: v.default for k, v in PARAMS.items()} | {"T": T}
    train = make_series(N_SERIES, p, np.random.default_rng(0))
    torch.manual_seed(0)
    model = sr.StatefulRNN(1, HIDDEN, 1, cell="lstm")
    history = sr.fit(
        model,
        train,
        mode="stateful",
        window=WINDOW,
        batch_size=LANES,
        epochs=epochs,
        optimizer="rmsprop",
        lr=1e-3,
        verbose=0,
        callbacks=[clock],
    )
    if int(os.environ.get("RANK", "0")) == 0:
        out.write_text(
            json.dumps(
                {
                    "seconds": history.column("seconds"),
                    "cpu_seconds": clock.seconds,
                    "steps_per_epoch": int(train.lengths.sum()),
                    "threads": torch.get_num_threads(),
                    "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                }
            )
        )


def launch(nproc: int, epochs: int) -> dict:
    torchrun = Path(sys.executable).with_name("torchrun")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        cmd = [str(torchrun), "--standalone", f"--nproc_per_node={nproc}", __file__]
        subprocess.run(cmd + ["--worker", str(out), "--epochs", str(epochs)], env=env, check=True)
        run = json.loads(out.read_text())
    timed = run["seconds"][1:]  # the first epoch warms up
    run["cell_steps_per_s"] = run["steps_per_epoch"] * len(timed) / sum(timed)
    cpu = run["cpu_seconds"][1:]
    run["cell_steps_per_cpu_s"] = run["steps_per_epoch"] * len(cpu) / sum(cpu)
    return run


def main(repeats: int, epochs: int) -> dict:
    load_before = os.getloadavg()
    result: dict = {
        "model": f"LSTM({HIDDEN}) + linear head, float32",
        "data": f"{N_SERIES} sequences x {T} steps (lagged-product, seed 000)",
        "lanes": LANES,
        "window": WINDOW,
        "epochs": epochs,
        "timed_epochs": epochs - 1,
        "repeats": repeats,
        "threads_per_process": 1,
        "backend": "gloo",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "processes": {},
    }
    for nproc in (1, 2):
        runs = []
        for _ in range(repeats):
            runs.append(launch(nproc, epochs))
            r = runs[-1]
            print(
                f"{nproc} process(es): {r['cell_steps_per_s']:,.0f} cell-steps/s, "
                f"{r['cell_steps_per_cpu_s']:,.0f} per CPU-second",
                flush=True,
            )
        rates = [r["cell_steps_per_s"] for r in runs]
        cpu_rates = [r["cell_steps_per_cpu_s"] for r in runs]
        result["processes"][str(nproc)] = {
            "median_cell_steps_per_s": statistics.median(rates),
            "cell_steps_per_s": rates,
            # wall time per epoch (rank 0), and rank 0's CPU time per epoch: the rate it
            # would reach with a free core per process, were no rank ever kept waiting
            "median_cell_steps_per_cpu_s": statistics.median(cpu_rates),
            "cell_steps_per_cpu_s": cpu_rates,
            "epoch_seconds": [r["seconds"] for r in runs],
            "epoch_cpu_seconds": [r["cpu_seconds"] for r in runs],
            "threads": runs[0]["threads"],
        }
    one, two = (result["processes"][k]["median_cell_steps_per_s"] for k in ("1", "2"))
    result["speedup_2_over_1"] = two / one
    one, two = (result["processes"][k]["median_cell_steps_per_cpu_s"] for k in ("1", "2"))
    result["speedup_2_over_1_cpu_time"] = two / one
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is a warm-up")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.epochs)
    else:
        r = main(args.repeats, args.epochs)
        keys = ("speedup_2_over_1", "speedup_2_over_1_cpu_time", "load_average")
        print(json.dumps({k: r[k] for k in keys}, indent=2))
