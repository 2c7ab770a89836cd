"""The five workloads of issue 13, as numpy data and shapes (no torch, no Keras: both sides of
benchmarks/bench_vs_keras.py import this, the Keras side from its own virtual environment)."""

from __future__ import annotations

import numpy as np

# (a) seed 000's shape: LSTM(64), 800 series x 1000 steps, 400 lanes, chunks of 500 steps
SEED000 = dict(series=800, steps=1000, lanes=400, window=500, hidden=64)
SEED000_QUICK = dict(series=80, steps=200, lanes=40, window=100, hidden=64)
# (b) seed 001's per-step schedule: LSTM(10), window 1, batch 1; 100 sequences x 20 steps
PER_STEP = dict(sequences=100, steps=20, hidden=10)  # 2,000 updates
PER_STEP_QUICK = dict(sequences=10, steps=20, hidden=10)
# (c), (d): streams, LSTM(64), 1 input, 1 output, one step per call
STREAM_HIDDEN = 64
STREAM_CALLS = 300  # calls timed per round (one stream)
MANY_STREAMS, MANY_CALLS = 1000, 50
HUGE_STREAMS, HUGE_CALLS = 10000, 20  # (e) 10,000 streams per call: >= 2M stream-steps/s wanted


def lagged_product(n: int, t_len: int, d: int = 100, seed: int = 0):
    """Seed 000: X_t = -(t/T) U cos(t / (1 + C)); Y_t = X_{t-2} X_{t-D} for t >= D, weight 0 before."""
    rng = np.random.default_rng(seed)
    t = np.arange(t_len)
    c = rng.integers(5, 100, size=(n, 1))
    u = rng.uniform(0, 1, size=(n, 1))
    x = -(t / t_len) * u * np.cos(t / (1 + c))
    y = np.zeros_like(x)
    d = min(d, t_len // 2)
    y[:, d:] = x[:, d - 2 : t_len - 2] * x[:, : t_len - d]
    w = np.zeros_like(x)
    w[:, d:] = 1.0
    return x[..., None].astype(np.float32), y[..., None].astype(np.float32), w.astype(np.float32)


def first_bit(n: int, seed: int = 1, steps: int = 20):
    """Seed 001: zeros with x[i, 0] = 1 for a random half; the target is x[i, 0] at every step."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, steps, 1), np.float32)
    x[:, 0, 0] = rng.permutation(n) < n // 2
    return x, np.repeat(x[:, :1, :], steps, axis=1)


def group_order(n: int, epoch: int, seed: int = 0) -> np.ndarray:
    """The order in which series fill lanes in an epoch (both sides use the same)."""
    return np.random.default_rng([seed, epoch]).permutation(n)
