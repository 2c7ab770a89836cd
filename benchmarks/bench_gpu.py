"""statefulrnn on CUDA: cuDNN (the engine chooser's pick there) against the other engines, on
issue 13's shapes; exits cleanly with a message where CUDA is absent.

    .venv/bin/python benchmarks/bench_gpu.py            # 3 rounds (a minute or two on a GPU)
    .venv/bin/python benchmarks/bench_gpu.py --quick    # small shapes, a smoke test

Measures, interleaved rounds, medians, torch.cuda.synchronize() around every timing:
  chunk         one chunk of the seed-000 shape (LSTM(64), 400 lanes, 500 steps), forward and
                backward: the fused module (cuDNN) vs the CPU engine's loop (engine.lstm_loop)
                run on the GPU, to show why the chooser keeps cuDNN there;
  seed000       `fit`, one epoch of the seed-000 shape (800 x 1000, window 500) vs a bare
                nn.LSTM TBPTT loop that reads the loss back every chunk (`.item()`);
  per_step      `fit` on seed 001's per-step schedule (LSTM(10), window 1, batch 1), 2,000
                updates, vs the bare per-step loop;
  host syncs    how many synchronizing calls one epoch of `fit` makes
                (torch.cuda.set_sync_debug_mode): a handful per epoch, none per update.
Writes benchmarks/results/gpu.json.
"""

# ruff: noqa: I001  (statefulrnn is imported before torch on purpose: its OpenMP setting)
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import statefulrnn as sr

import torch

sys.path.insert(0, str(Path(__file__).parent))
import _workloads as W  # noqa: E402
from bench_vs_keras import BarePerStep, BareTBPTT  # noqa: E402

from statefulrnn.model import engine  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "gpu.json"


def timed(fn) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def interleaved(sides: dict, rounds: int) -> dict:
    for fn in sides.values():
        timed(fn)  # warm-up: cuDNN plans, allocator
    times = {k: [] for k in sides}
    for _ in range(rounds):
        for k, fn in sides.items():
            times[k].append(timed(fn))
    return {k: {"median_s": statistics.median(v), "times_s": v} for k, v in times.items()}


def bench_chunk(dev, quick: bool, rounds: int) -> dict:
    s = W.SEED000_QUICK if quick else W.SEED000
    torch.manual_seed(0)
    layer = torch.nn.LSTM(1, s["hidden"], batch_first=True, device=dev)
    x = torch.randn(s["lanes"], s["window"], 1, device=dev)

    def run(fn):
        def go():
            out, _ = fn(x)
            out.square().mean().backward()

        return go

    assert engine.choose(layer, x) == "fused"  # the chooser keeps cuDNN on CUDA
    return interleaved(
        {"cudnn": run(lambda v: layer(v)), "loop": run(lambda v: engine.lstm_loop(layer, v, None))},
        rounds,
    )


def bench_fit(dev, quick: bool, rounds: int) -> dict:
    s = W.SEED000_QUICK if quick else W.SEED000
    x, y, w = W.lagged_product(s["series"], s["steps"])
    train = sr.Sequences.from_arrays(x, y, weights=w)
    model = sr.StatefulRNN(1, s["hidden"], 1, device=dev)
    bare = BareTBPTT(s["hidden"])
    bare.lstm.to(dev), bare.head.to(dev)
    bare.opt = torch.optim.Adam([*bare.lstm.parameters(), *bare.head.parameters()], lr=1e-3)
    xt, yt, wt = (torch.from_numpy(a).to(dev) for a in (x, y, w))
    return interleaved(
        {
            "fit": lambda: sr.fit(model, train, window=s["window"], batch_size=s["lanes"],
                                  epochs=1, verbose=0),  # fmt: skip
            "bare_nn_lstm_tbptt": lambda: bare.run(xt, yt, wt, s["lanes"], s["window"]),
        },
        rounds,
    )


def bench_per_step(dev, quick: bool, rounds: int) -> dict:
    s = W.PER_STEP_QUICK if quick else W.PER_STEP
    x, y = W.first_bit(s["sequences"])
    train = sr.Sequences.from_arrays(x, y)
    model = sr.StatefulRNN(1, s["hidden"], 1, device=dev)
    bare = BarePerStep(s["hidden"])
    bare.lstm.to(dev), bare.head.to(dev)
    bare.opt = torch.optim.Adam([*bare.lstm.parameters(), *bare.head.parameters()], lr=1e-3)
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    return interleaved(
        {
            "fit": lambda: sr.fit(model, train, window=1, batch_size=1, epochs=1, loss="bce",
                                  verbose=0),  # fmt: skip
            "bare_nn_lstm_per_step": lambda: bare.run(xt, yt),
        },
        rounds,
    )


def count_syncs(dev, quick: bool) -> dict:
    s = W.SEED000_QUICK if quick else W.SEED000
    x, y, w = W.lagged_product(s["series"], s["steps"])
    train = sr.Sequences.from_arrays(x, y, weights=w)
    model = sr.StatefulRNN(1, s["hidden"], 1, device=dev)
    chunks = (s["series"] // s["lanes"]) * (s["steps"] // s["window"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            sr.fit(model, train, window=s["window"], batch_size=s["lanes"], epochs=1, verbose=0)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    syncs = [str(c.message).splitlines()[0] for c in caught if "synchroniz" in str(c.message)]
    return {"chunks_per_epoch": chunks, "synchronizing_calls": len(syncs), "first": syncs[:5]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small shapes, a smoke test")
    parser.add_argument("--rounds", type=int, default=3, help="counted rounds (3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON to write")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: CUDA is not available here (torch " + torch.__version__
              + "); nothing to measure. Run it on a machine with a CUDA GPU.")  # fmt: skip
        return 0
    dev = torch.device("cuda")
    result = {"device": torch.cuda.get_device_name(dev), "torch": torch.__version__,
              "cudnn": torch.backends.cudnn.version(), "quick": args.quick,
              "rounds": args.rounds}  # fmt: skip
    for name, fn in (("chunk", bench_chunk), ("seed000", bench_fit), ("per_step", bench_per_step)):
        result[name] = fn(dev, args.quick, args.rounds)
        print(f"{name}: " + ", ".join(f"{k} {v['median_s']:.4f} s" for k, v in result[name].items()),
              flush=True)  # fmt: skip
    result["host_syncs"] = count_syncs(dev, args.quick)
    print(f"host syncs in one epoch of fit: {result['host_syncs']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
