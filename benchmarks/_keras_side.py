"""The Keras side of bench_vs_keras.py: run by the Keras virtual environment's python, one
request per line on stdin ({"workload": ..., "quick": ...}), one JSON answer per line on
stdout ({"seconds": ..., "cpu_seconds": ...} or {"error": ...}). Models are built once per workload and reused,
so every request times one more round of the same work (as the statefulrnn side does)."""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _workloads as W  # noqa: E402
import keras  # noqa: E402

_built: dict = {}


def _reset(model) -> None:
    for layer in model.layers:
        if hasattr(layer, "reset_states"):
            layer.reset_states()


def _lstm_model(batch, steps, hidden, lr=1e-3, loss="mse"):
    inp = keras.Input(batch_shape=(batch, steps, 1))
    h = keras.layers.LSTM(hidden, return_sequences=True, stateful=True)(inp)
    model = keras.Model(inp, keras.layers.Dense(1)(h))
    if loss is not None:
        loss_fn = keras.losses.MeanSquaredError() if loss == "mse" else (
            keras.losses.BinaryCrossentropy(from_logits=True))  # fmt: skip
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss_fn)
    return model


def seed000(quick: bool) -> float:
    s = W.SEED000_QUICK if quick else W.SEED000
    key = ("seed000", quick)
    if key not in _built:
        x, y, w = W.lagged_product(s["series"], s["steps"])
        _built[key] = (_lstm_model(s["lanes"], s["window"], s["hidden"]), x, y, w, [0])
    model, x, y, w, epoch = _built[key]
    order = W.group_order(s["series"], epoch[0])
    epoch[0] += 1
    t0, c0 = time.perf_counter(), time.process_time()
    for g in range(0, s["series"], s["lanes"]):
        idx = order[g : g + s["lanes"]]
        _reset(model)
        for a in range(0, s["steps"], s["window"]):
            sl = slice(a, a + s["window"])
            model.train_on_batch(x[idx, sl], y[idx, sl], sample_weight=w[idx, sl])
    return time.perf_counter() - t0, time.process_time() - c0


def per_step(quick: bool) -> float:
    s = W.PER_STEP_QUICK if quick else W.PER_STEP
    key = ("per_step", quick)
    if key not in _built:
        x, y = W.first_bit(s["sequences"])
        _built[key] = (_lstm_model(1, 1, s["hidden"], loss="bce"), x, y)
    model, x, y = _built[key]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(s["sequences"]):
        _reset(model)
        for t in range(s["steps"]):
            model.train_on_batch(x[i : i + 1, t : t + 1], y[i : i + 1, t : t + 1])
    return time.perf_counter() - t0, time.process_time() - c0


def streams(n: int, calls: int):
    def run(quick: bool) -> float:
        key = ("streams", n)
        if key not in _built:
            model = _lstm_model(n, 1, W.STREAM_HIDDEN, loss=None)
            xs = np.random.default_rng(n).normal(size=(n, 1, 1)).astype(np.float32)
            for _ in range(20):
                model.predict_on_batch(xs)  # warm up
            _built[key] = (model, xs)
        model, xs = _built[key]
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(calls):
            model.predict_on_batch(xs)
        return (time.perf_counter() - t0) / calls, (time.process_time() - c0) / calls

    return run


WORKLOADS = {
    "seed000": seed000,
    "per_step": per_step,
    "one_stream": streams(1, W.STREAM_CALLS),
    "many_streams": streams(W.MANY_STREAMS, W.MANY_CALLS),
    "streams_10k": streams(W.HUGE_STREAMS, W.HUGE_CALLS),
}


def main() -> None:
    print(json.dumps({"ready": True, "keras": keras.__version__}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            seconds, cpu = WORKLOADS[req["workload"]](bool(req.get("quick")))
            print(json.dumps({"seconds": seconds, "cpu_seconds": cpu}), flush=True)
        except Exception as err:  # reported to the benchmark, which records it
            print(json.dumps({"error": f"{type(err).__name__}: {err}"}), flush=True)


if __name__ == "__main__":
    main()
