"""How fast StreamPool serves streams: LSTM(64), 1 input, 1 output.

    .venv/bin/python benchmarks/bench_streams.py [--quick]

Measures, on 1 thread (the ratios) and on 2 threads beside:
- latency of one `step` for one stream, against a bare `nn.LSTMCell` call on one row, and
  against the same pool on `model.forward` (fused=False);
- stream-steps per second with 1,000 and 10,000 streams per call, k = 1 step each: the same
  ids every call ("in order") and a random half of twice as many streams ("random"), beside
  a bare `nn.LSTMCell` call on as many rows;
- the same predictions done the windowed way (window 100): a fresh forward over each
  stream's last 100 steps, from a zero state, for every new step.

Candidates are timed in interleaved rounds (every round runs each candidate once), so load
from other processes falls on all of them alike; the result is the median over all rounds,
with the fastest call beside it (what the code does when nothing else competes for the CPU).
Writes benchmarks/results/streams.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import statefulrnn as sr

HIDDEN, WINDOW = 64, 100
RESULTS = Path(__file__).parent / "results" / "streams.json"


BEST = {}  # fastest call of each candidate: what the code can do when nothing else runs


def interleaved(candidates: dict, rounds: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in interleaved rounds (the fastest
    call goes to BEST, under the same name)."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    BEST.update({name: min(t) for name, t in times.items()})
    return {name: statistics.median(t) for name, t in times.items()}


def lstm_cell_call(rows: int):
    cell = torch.nn.LSTMCell(1, HIDDEN).eval()
    x, h, c = torch.randn(rows, 1), torch.zeros(rows, HIDDEN), torch.zeros(rows, HIDDEN)

    def call():
        with torch.no_grad():
            return cell(x, (h, c))

    return call


def latency(model, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    fused, forward = sr.StreamPool(model), sr.StreamPool(model, fused=False)
    x = rng.normal(size=(1, 1, 1)).astype(np.float32)
    t = interleaved(
        {
            "lstm_cell": lstm_cell_call(1),
            "pool_step": lambda: fused.step(["sensor"], x),
            "pool_step_forward": lambda: forward.step(["sensor"], x),
        },
        rounds,
        warmup=200,
    )
    us = {k: v * 1e6 for k, v in t.items()}
    best = {k: BEST[k] * 1e6 for k in t}
    return {
        "best_lstm_cell_us": best["lstm_cell"],
        "best_pool_step_us": best["pool_step"],
        "best_ratio_vs_lstm_cell": best["pool_step"] / best["lstm_cell"],
        "lstm_cell_us": us["lstm_cell"],
        "pool_step_us": us["pool_step"],
        "pool_step_forward_us": us["pool_step_forward"],
        "ratio_vs_lstm_cell": us["pool_step"] / us["lstm_cell"],
    }


def throughput(model, streams: int, rounds: int) -> dict:
    rng = np.random.default_rng(streams)
    x = rng.normal(size=(streams, 1, 1)).astype(np.float32)
    ids = [f"s{i}" for i in range(streams)]
    pool = sr.StreamPool(model)
    pool.step(ids, x)
    many = [f"r{i}" for i in range(2 * streams)]
    scattered = sr.StreamPool(model)
    scattered.step(many, np.zeros((2 * streams, 1, 1), np.float32))
    subsets = [list(rng.choice(many, streams, replace=False)) for _ in range(8)]
    turn = iter(range(10**9))
    t = interleaved(
        {
            "lstm_cell": lstm_cell_call(streams),
            "pool_in_order": lambda: pool.step(ids, x),
            "pool_random": lambda: scattered.step(subsets[next(turn) % 8], x),
        },
        rounds,
    )
    return {
        **{f"{k}_steps_per_s": streams / v for k, v in t.items()},
        **{f"best_{k}_steps_per_s": streams / BEST[k] for k in t},
    }


def windowed(model, streams: int, rounds: int) -> dict:
    """A stateless server's cost per step of every stream: one forward over the last WINDOW."""
    x = torch.randn(streams, WINDOW, 1)

    def call():
        with torch.no_grad():
            return model(x)[0][:, -1]

    t = interleaved({"windowed": call}, rounds, warmup=1)["windowed"]
    return {"steps_per_s": streams / t, "seconds_per_call": t}


def run(threads: int, quick: bool) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = sr.StatefulRNN(1, HIDDEN, 1, cell="lstm").eval()
    r = 0.2 if quick else 1.0
    out = {"threads": threads, "latency_one_stream": latency(model, int(3000 * r))}
    for streams, rounds in ((1_000, 200), (10_000, 40)):
        out[f"streams_{streams}"] = throughput(model, streams, max(5, int(rounds * r)))
    out["windowed_window_100"] = {
        f"streams_{n}": windowed(model, n, max(3, int(k * r)))
        for n, k in ((1, 200), (1_000, 10), (10_000, 3))
    }
    return out


def report(res: dict) -> None:
    lat = res["latency_one_stream"]
    print(
        f"threads {res['threads']}: one stream, one step: pool {lat['pool_step_us']:.1f} us, "
        f"bare LSTMCell {lat['lstm_cell_us']:.1f} us (ratio {lat['ratio_vs_lstm_cell']:.2f}), "
        f"pool on model.forward {lat['pool_step_forward_us']:.1f} us; fastest call: pool "
        f"{lat['best_pool_step_us']:.1f} us, LSTMCell {lat['best_lstm_cell_us']:.1f} us"
    )
    for n in (1_000, 10_000):
        s = res[f"streams_{n}"]
        w = res["windowed_window_100"][f"streams_{n}"]
        print(
            f"  {n:>6} streams/call: pool {s['pool_in_order_steps_per_s'] / 1e6:.2f} M "
            f"stream-steps/s (random ids {s['pool_random_steps_per_s'] / 1e6:.2f} M), "
            f"bare LSTMCell {s['lstm_cell_steps_per_s'] / 1e6:.2f} M, "
            f"windowed(100) {w['steps_per_s'] / 1e6:.4f} M; fastest call: pool "
            f"{s['best_pool_in_order_steps_per_s'] / 1e6:.2f} M, LSTMCell "
            f"{s['best_lstm_cell_steps_per_s'] / 1e6:.2f} M"
        )
    w1 = res["windowed_window_100"]["streams_1"]
    print(f"  windowed(100), one stream: {w1['seconds_per_call'] * 1e6:.0f} us per step")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results = {
        "model": f"StatefulRNN lstm, input 1, hidden {HIDDEN}, output 1, float32",
        "runs": [run(1, args.quick), run(2, args.quick)],
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
    }
    for res in results["runs"]:
        report(res)
    print(f"load average before/after: {results['load_average_before_after']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS}")
    return results


if __name__ == "__main__":
    main()
