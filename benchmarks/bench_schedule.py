"""How long laying out one epoch takes: 10,000 sequences of random length 1-2,000.

    .venv/bin/python benchmarks/bench_schedule.py

Times `stateful_schedule` (window 50, 256 lanes) and `stateless_schedule` (window 50,
stride 50, batches of 256) on one thread, 5 repetitions each, and writes the medians to
benchmarks/results/schedule.json. Each repetition uses a new seed (a new epoch's shuffle);
the sequences are packed once beforehand, as they are for every epoch after the first.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import statefulrnn as sr
from statefulrnn.data.schedule import pack

N, MAX_LEN, WINDOW, BATCH_SIZE, REPEATS = 10_000, 2_000, 50, 256, 5
RESULTS = Path(__file__).parent / "results" / "schedule.json"


def make_sequences(seed: int = 0) -> sr.Sequences:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, MAX_LEN + 1, size=N)
    xs = [rng.normal(size=(t, 1)) for t in lengths]
    ys = [rng.normal(size=(t, 1)) for t in lengths]
    return sr.Sequences.from_arrays(xs, ys)


def timed(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for r in range(repeats):
        start = time.perf_counter()
        out = fn(r)
        times.append(time.perf_counter() - start)
    return times, out


def main() -> dict:
    torch.set_num_threads(1)
    seqs = make_sequences()
    start = time.perf_counter()
    pack(seqs)
    pack_s = time.perf_counter() - start

    stateful_times, stateful = timed(
        lambda r: sr.stateful_schedule(seqs, window=WINDOW, batch_size=BATCH_SIZE, seed=r),
        REPEATS,
    )
    stateless_times, stateless = timed(
        lambda r: sr.stateless_schedule(seqs, window=WINDOW, batch_size=BATCH_SIZE, seed=r),
        REPEATS,
    )
    steps = int(seqs.lengths.sum())
    result = {
        "sequences": N,
        "steps": steps,
        "window": WINDOW,
        "batch_size": BATCH_SIZE,
        "threads": torch.get_num_threads(),
        "repeats": REPEATS,
        "pack_s": pack_s,
        "stateful": {
            "median_s": statistics.median(stateful_times),
            "times_s": stateful_times,
            "chunks": len(stateful),
            "slots": int(stateful.w.numel()),
            "fill": steps / stateful.w.numel(),  # fraction of slots holding a real step
        },
        "stateless": {
            "median_s": statistics.median(stateless_times),
            "times_s": stateless_times,
            "chunks": len(stateless),
            "windows": int(stateless.x.shape[0]),
            "fill": steps / stateless.w.numel(),
        },
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{N} sequences, {steps} steps, window {WINDOW}, batch_size {BATCH_SIZE}, 1 thread\n"
        f"  pack (once):          {pack_s:.3f} s\n"
        f"  stateful schedule:    median {result['stateful']['median_s']:.3f} s "
        f"of {REPEATS} ({len(stateful)} chunks, {result['stateful']['fill']:.1%} slots filled)\n"
        f"  stateless schedule:   median {result['stateless']['median_s']:.3f} s "
        f"of {REPEATS} ({len(stateless)} chunks, {result['stateless']['fill']:.1%} slots filled)\n"
        f"  written to {RESULTS}"
    )
    return result


if __name__ == "__main__":
    main()
