"""How fast `fit` trains, against minimal hand-written PyTorch loops run in the same process.

    .venv/bin/python benchmarks/bench_fit.py            # the full run (a few minutes)
    .venv/bin/python benchmarks/bench_fit.py --quick    # smaller, for a smoke test

(a) seed 000's shapes, stateful: LSTM(64), 800 sequences of 1000 steps, 400 lanes, window 500,
    Adam, weighted MSE; cell-steps/s of `fit` vs an nn.LSTM + nn.Linear TBPTT loop that
    detaches the state per chunk.
(b) seed 001's per-step schedule: window 1, batch 1, 1000 sequences of 20 steps, LSTM(10),
    binary cross-entropy; `fit` vs a per-step loop (one optimizer update per step, state
    carried and detached, zeroed per sequence, the loss read back each step as Keras's
    train_on_batch does), and the seed's Keras ~80 s per epoch.
(c) time to >= 0.99 validation accuracy on first-bit (1000 train / 200 val sequences of 20
    steps): the batched stateful settings statefulrnn recommends vs the per-step recipe.

Ratios are taken on one thread (`torch.set_num_threads(1)`); the same runs on two threads are
reported beside. Each side runs `REPEATS` times, interleaved (fit, loop, fit, loop, ...) so
that a machine shared with other work slows both alike; medians are reported, with the fastest
run and CPU seconds beside. Results go to benchmarks/results/fit.json.
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
import torch.nn.functional as F
from torch import nn

import statefulrnn as sr

RESULTS = Path(__file__).parent / "results" / "fit.json"
REPEATS = 5
KERAS_PER_STEP_EPOCH_S = 80.0  # seed 001's Keras recipe on this machine (seeds/README.md)


# --------------------------------------------------------------------------- data
def lagged_product(n: int, t_len: int = 1000, d: int = 100, seed: int = 0):
    """Seed 000: X_t = -(t/T) U cos(t / (1 + C)); Y_t = X_{t-2} X_{t-D} for t >= D, weight 0 before."""
    rng = np.random.default_rng(seed)
    t = np.arange(t_len)
    c = rng.integers(5, 100, size=(n, 1))
    u = rng.uniform(0, 1, size=(n, 1))
    x = -(t / t_len) * u * np.cos(t / (1 + c))
    y = np.zeros_like(x)
    y[:, d:] = x[:, d - 2 : t_len - 2] * x[:, : t_len - d]
    w = np.zeros_like(x)
    w[:, d:] = 1.0
    return x[..., None], y[..., None], w


def first_bit(n: int, seed: int, steps: int = 20):
    """Seed 001: zeros with x[i, 0] = 1 for a random half; the target is x[i, 0] at every step."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, steps, 1))
    x[:, 0, 0] = rng.permutation(n) < n // 2
    return x, np.repeat(x[:, :1, :], steps, axis=1)


# --------------------------------------------------------------------------- timing
def clock():
    return time.perf_counter(), time.process_time()


def since(start) -> tuple[float, float]:
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


def interleaved(sides: dict, repeats: int) -> dict:
    """Run each side `repeats` times, alternating; each call returns (wall, cpu, extra)."""
    runs: dict[str, list] = {name: [] for name in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            runs[name].append(fn())
    out = {}
    for name, rs in runs.items():
        walls = [r[0] for r in rs]
        cpus = [r[1] for r in rs]
        out[name] = {
            "median_s": statistics.median(walls),
            "min_s": min(walls),  # the least disturbed run, beside the median
            "median_cpu_s": statistics.median(cpus),
            "times_s": walls,
            "cpu_s": cpus,
            "extra": [r[2] for r in rs],
        }
    return out


# --------------------------------------------------------------------------- (a)
class HandTBPTT:
    """The minimal loop: nn.LSTM + nn.Linear, lanes of `batch` sequences, chunks of `window`
    steps, the state detached between chunks of a group and dropped between groups."""

    def __init__(self, hidden: int, lr: float, seed: int = 0):
        torch.manual_seed(seed)
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        params = list(self.lstm.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(params, lr=lr)

    def epoch(self, x, y, w, batch: int, window: int, gen: torch.Generator) -> float:
        n, t_len = x.shape[:2]
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for g in range(0, n, batch):
            idx = order[g : g + batch]
            xb, yb, wb = x[idx], y[idx], w[idx]
            state = None
            for a in range(0, t_len, window):
                out, state = self.lstm(xb[:, a : a + window], state)
                err = (self.head(out) - yb[:, a : a + window]).square().mean(-1)
                wc = wb[:, a : a + window]
                loss = (err * wc).sum() / wc.sum()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                state = (state[0].detach(), state[1].detach())  # cut the graph at the edge
                total += loss.item()
        return total


def bench_a(quick: bool, repeats: int) -> dict:
    n, t_len, batch, window, hidden, epochs = 800, 1000, 400, 500, 64, 1
    if quick:
        n, t_len, batch, window = 80, 200, 40, 100
    x, y, w = lagged_product(n, t_len)
    train = sr.Sequences.from_arrays(x, y, weights=w)
    xt, yt, wt = (torch.from_numpy(a).float() for a in (x, y, w))
    steps = n * t_len * epochs

    def run_fit():
        torch.manual_seed(0)
        model = sr.StatefulRNN(1, hidden, 1)
        start = clock()
        h = sr.fit(
            model, train, mode="stateful", window=window, batch_size=batch, epochs=epochs,
            loss="mse", optimizer="adam", lr=1e-3, seed=0, verbose=0,
        )  # fmt: skip
        wall, cpu = since(start)
        return wall, cpu, h.last["loss"]

    def run_loop():
        loop = HandTBPTT(hidden, 1e-3)
        gen = torch.Generator().manual_seed(0)
        start = clock()
        for _ in range(epochs):
            loop.epoch(xt, yt, wt, batch, window, gen)
        wall, cpu = since(start)
        return wall, cpu, None

    res = interleaved({"fit": run_fit, "loop": run_loop}, repeats)
    for side in res.values():
        side["cell_steps_per_s"] = steps / side["median_s"]
    return {
        "shapes": dict(sequences=n, steps=t_len, lanes=batch, window=window, hidden=hidden),
        "cell_steps_per_epoch": steps // epochs,
        **res,
        "ratio": res["fit"]["cell_steps_per_s"] / res["loop"]["cell_steps_per_s"],
        "ratio_cpu": res["loop"]["median_cpu_s"] / res["fit"]["median_cpu_s"],
        "ratio_min": res["loop"]["min_s"] / res["fit"]["min_s"],
    }


# --------------------------------------------------------------------------- (b)
class HandPerStep:
    """Seed 001's recipe by hand: one sequence at a time, one update per step, state carried
    (detached) from step to step and dropped at the end of each sequence."""

    def __init__(self, hidden: int, lr: float = 1e-3, seed: int = 0):
        torch.manual_seed(seed)
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        params = list(self.lstm.parameters()) + list(self.head.parameters())
        self.opt = torch.optim.Adam(params, lr=lr)

    def epoch(self, x, y, gen: torch.Generator) -> float:
        n, t_len = x.shape[:2]
        total = 0.0
        for i in torch.randperm(n, generator=gen).tolist():
            state = None
            for t in range(t_len):
                out, state = self.lstm(x[i : i + 1, t : t + 1], state)
                loss = F.binary_cross_entropy_with_logits(self.head(out), y[i : i + 1, t : t + 1])
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                state = (state[0].detach(), state[1].detach())
                total += loss.item()  # the epoch's loss, as fit and Keras report it
        return total / (n * t_len)

    @torch.no_grad()
    def accuracy(self, x, y) -> float:
        out, _ = self.lstm(x)
        return float(((self.head(out) > 0) == (y > 0.5)).double().mean())


def bench_b(quick: bool, repeats: int) -> dict:
    n, hidden = (100 if quick else 1000), 10
    x, y = first_bit(n, seed=1)
    train = sr.Sequences.from_arrays(x, y)
    xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    updates = n * 20

    def run_fit():
        torch.manual_seed(0)
        model = sr.StatefulRNN(1, hidden, 1)
        start = clock()
        sr.fit(model, train, mode="stateful", window=1, batch_size=1, epochs=1, loss="bce",
               optimizer="adam", lr=1e-3, seed=0, verbose=0)  # fmt: skip
        wall, cpu = since(start)
        return wall, cpu, None

    def run_loop():
        loop = HandPerStep(hidden)
        gen = torch.Generator().manual_seed(0)
        start = clock()
        loop.epoch(xt, yt, gen)
        wall, cpu = since(start)
        return wall, cpu, None

    res = interleaved({"fit": run_fit, "loop": run_loop}, repeats)
    for side in res.values():
        side["updates_per_s"] = updates / side["median_s"]
        side["seconds_per_1000_sequences"] = side["median_s"] * 1000 / n
    return {
        "shapes": dict(sequences=n, steps=20, window=1, lanes=1, hidden=hidden),
        "updates_per_epoch": updates,
        **res,
        "ratio": res["loop"]["median_s"] / res["fit"]["median_s"],
        "ratio_cpu": res["loop"]["median_cpu_s"] / res["fit"]["median_cpu_s"],
        "ratio_min": res["loop"]["min_s"] / res["fit"]["min_s"],
        "keras_s_per_epoch": KERAS_PER_STEP_EPOCH_S,
        "keras_over_fit": KERAS_PER_STEP_EPOCH_S / res["fit"]["seconds_per_1000_sequences"],
    }


# --------------------------------------------------------------------------- (c)
class ReachedAccuracy(sr.Callback):
    def __init__(self, target: float, start):
        self.target, self.start, self.at = target, start, None

    def on_epoch_end(self, epoch, record, model) -> bool:
        if record["val_accuracy"] >= self.target:
            self.at = (*since(self.start), epoch + 1)
            return True
        return False


# batched stateful: 50 lanes, window 5 (80 chunks an epoch); the seed's recipe: one step a time
RECOMMENDED = dict(mode="stateful", window=5, batch_size=50, lr=1e-2)
PER_STEP = dict(mode="stateful", window=1, batch_size=1, lr=1e-3)


def bench_c(quick: bool, repeats: int) -> dict:
    n_train, n_val, hidden, max_epochs = (200, 50, 10, 20) if quick else (1000, 200, 10, 30)
    xt, yt = first_bit(n_train, seed=1)
    xv, yv = first_bit(n_val, seed=2)
    train, val = sr.Sequences.from_arrays(xt, yt), sr.Sequences.from_arrays(xv, yv)

    def runner(settings, epochs):
        def run():
            torch.manual_seed(0)
            model = sr.StatefulRNN(1, hidden, 1)
            start = clock()
            reached = ReachedAccuracy(0.99, start)
            h = sr.fit(model, train, val, epochs=epochs, loss="bce", optimizer="adam", seed=0,
                       verbose=0, callbacks=[reached], **settings)  # fmt: skip
            info = {"reached": reached.at is not None, "val_accuracy": h.column("val_accuracy")}
            if reached.at is None:  # never got there: report the whole run, flagged
                wall, cpu = since(start)
                return wall, cpu, {**info, "epochs": len(h)}
            wall, cpu, epochs_needed = reached.at
            return wall, cpu, {**info, "epochs": epochs_needed}

        return run

    res = interleaved(
        {"recommended": runner(RECOMMENDED, max_epochs), "per_step": runner(PER_STEP, 3)},
        repeats,
    )
    return {
        "data": dict(train=n_train, val=n_val, steps=20, hidden=hidden),
        "recommended_settings": RECOMMENDED,
        "per_step_settings": PER_STEP,
        **res,
        "speedup": res["per_step"]["median_s"] / res["recommended"]["median_s"],
        "keras_per_step_s": KERAS_PER_STEP_EPOCH_S,
    }


# --------------------------------------------------------------------------- main
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, a smoke test")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--only", choices=["a", "b", "c"], action="append")
    args = parser.parse_args(argv)
    only = set(args.only or ["a", "b", "c"])
    result: dict = {
        "machine": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "repeats": args.repeats,
        "quick": args.quick,
        # a machine shared with other work slows both sides; the load says how much
        "loadavg_start": os.getloadavg(),
    }
    benches = {"a": ("a_lagged_product_stateful", bench_a), "b": ("b_per_step", bench_b),
               "c": ("c_first_bit_time_to_099", bench_c)}  # fmt: skip
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for key in sorted(only):
            name, fn = benches[key]
            if key == "c" and threads == 2:
                continue  # time-to-accuracy: one thread is enough to make the point
            t0 = time.perf_counter()
            r = fn(args.quick, args.repeats)
            r["bench_wall_s"] = time.perf_counter() - t0
            result.setdefault(f"threads_{threads}", {})[name] = r
            print(f"[{threads} thread(s)] {name}: {summary(key, r)}", flush=True)
    result["loadavg_end"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return result


def summary(key: str, r: dict) -> str:
    if key == "a":
        return (
            f"fit {r['fit']['cell_steps_per_s']:,.0f} cell-steps/s ({r['fit']['median_s']:.2f} s), "
            f"loop {r['loop']['cell_steps_per_s']:,.0f} ({r['loop']['median_s']:.2f} s), "
            f"ratio {r['ratio']:.3f} (cpu {r['ratio_cpu']:.3f}, min {r['ratio_min']:.3f})"
        )
    if key == "b":
        return (
            f"fit {r['fit']['median_s']:.2f} s/epoch ({r['fit']['updates_per_s']:,.0f} updates/s), "
            f"loop {r['loop']['median_s']:.2f} s, ratio {r['ratio']:.3f} "
            f"(cpu {r['ratio_cpu']:.3f}, min {r['ratio_min']:.3f}); "
            f"Keras ~{r['keras_s_per_epoch']:.0f} s/epoch is {r['keras_over_fit']:.1f}x slower"
        )
    rec, per = r["recommended"], r["per_step"]
    return (
        f"recommended {rec['median_s']:.2f} s (epochs {[e['epochs'] for e in rec['extra']]}, "
        f"reached {[e['reached'] for e in rec['extra']]}), per-step {per['median_s']:.2f} s "
        f"(epochs {[e['epochs'] for e in per['extra']]}), speedup {r['speedup']:.1f}x"
    )


if __name__ == "__main__":
    main()
