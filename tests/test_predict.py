"""predict and evaluate against the model's own forward: stateful, windowed, burn-in.

Oracles run the model on one sequence (or one slice of it) at a time, from a zero state, with
no schedule: stateful prediction is one full forward; windowed prediction at step t is the
last output of a fresh forward over the window ending at t; with burn-in b, that window
starts from the state of a run over the b steps before it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_rnn

import statefulrnn as sr
from statefulrnn.model import cells
from statefulrnn.outputs import windowed_outputs

TOL64 = 1e-12


def make_model(cell="lstm", layers=1, dtype=torch.float64, seed=0, dropout=0.0):
    return make_rnn(2, 5, 3, cell, seed=seed, num_layers=layers, dtype=dtype, dropout=dropout)


def make_sequences(lengths, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(t, 2)) for t in lengths]
    ys = [rng.normal(size=(t, 3)) for t in lengths]
    ws = [rng.choice([0.0, 1.0, 2.0], size=t) for t in lengths]
    for w in ws:
        w[-1] = 1.0  # every sequence scores something
    return sr.Sequences.from_arrays(xs, ys, weights=ws)


LENGTHS = [1, 9, 23, 4, 600, 17]  # 600 > one stateful prediction chunk (512 steps)


@torch.no_grad()
def forward(model, x: np.ndarray, state=None):
    y, state = model(torch.from_numpy(x).to(model.dtype)[None], state)
    return y[0].double().numpy(), state


@torch.no_grad()
def windowed_oracle(model, x, window, burn_in=None):
    """Output at every t: the last output of a fresh pass over x[t-window+1 .. t]."""
    out = []
    for t in range(len(x)):
        s = max(0, t - window + 1)
        state = None
        if burn_in is not None:
            b0 = 0 if burn_in == "all" else max(0, s - burn_in)
            if s > b0:
                _, state = forward(model, x[b0:s])
        y, _ = forward(model, x[s : t + 1], state)
        out.append(y[-1])
    return np.stack(out)


def max_abs(a_list, b_list) -> float:
    assert len(a_list) == len(b_list)
    return max(float(np.abs(a - b).max()) for a, b in zip(a_list, b_list))


# --------------------------------------------------------------------------- stateful
@pytest.mark.parametrize("cell,layers", [(c, 1 + i % 3) for i, c in enumerate(cells.names())])
def test_stateful_prediction_is_the_full_sequence_forward(cell, layers):
    seqs = make_sequences(LENGTHS)
    model = make_model(cell, layers)
    got = sr.predict(model, seqs, mode="stateful")
    assert [g.shape for g in got] == [(t, 3) for t in LENGTHS]
    assert max_abs(got, [forward(model, x)[0] for x in seqs.xs]) <= TOL64
    # any number of lanes gives the same (lanes are recycled as sequences end)
    for lanes in (1, 2, 5):
        assert max_abs(sr.predict(model, seqs, batch_size=lanes), got) <= TOL64


def test_prediction_leaves_the_model_as_it_was():
    model = make_model(dropout=0.5, layers=2)
    model.train()
    seqs = make_sequences([6, 8])
    a = sr.predict(model, seqs)
    b = sr.predict(model, seqs, mode="windowed", window=3)
    assert model.training  # back in training mode
    assert max_abs(a, sr.predict(model, seqs)) == 0.0  # dropout off while predicting
    assert max_abs(b, sr.predict(model, seqs, mode="windowed", window=3)) == 0.0
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- windowed
@pytest.mark.parametrize("cell,layers", [(c, 2 - i % 2) for i, c in enumerate(cells.names())])
def test_windowed_with_window_T_is_stateful(cell, layers):
    seqs = make_sequences(LENGTHS)
    model = make_model(cell, layers)
    stateful = sr.predict(model, seqs, mode="stateful")
    windowed = sr.predict(model, seqs, mode="windowed", window=max(LENGTHS))
    assert max_abs(windowed, stateful) <= TOL64


@pytest.mark.parametrize("window", [1, 2, 5, 30])
def test_windowed_step_t_is_a_fresh_pass_over_the_window_ending_there(window):
    seqs = make_sequences([1, 9, 23, 4, 40])
    model = make_model("lstm", 2)
    got = sr.predict(model, seqs, mode="windowed", window=window)
    want = [windowed_oracle(model, x, window) for x in seqs.xs]
    assert max_abs(got, want) <= TOL64
    if window < 23:  # a short window really forgets: not the stateful prediction
        assert max_abs(got, sr.predict(model, seqs)) > 1e-6


@pytest.mark.parametrize("rows", [1, 7, 4096])
def test_windowed_batches_of_rows_agree(rows):
    seqs = make_sequences([9, 23, 4])
    model = make_model("gru")
    want = windowed_outputs(model, seqs, window=4, burn_in=3, batch_size=10**6)
    got = windowed_outputs(model, seqs, window=4, burn_in=3, batch_size=rows)
    assert np.abs(got - want).max() <= TOL64


# --------------------------------------------------------------------------- burn-in
@pytest.mark.parametrize("dtype,tol", [(torch.float64, TOL64), (torch.float32, 1e-5)])
@pytest.mark.parametrize("cell", cells.names())
def test_windowed_with_burn_in_all_is_stateful(cell, dtype, tol):
    seqs = make_sequences([1, 9, 23, 4, 40])
    model = make_model(cell, 2, dtype=dtype)
    stateful = sr.predict(model, seqs, mode="stateful")
    for window in (1, 3, 8):
        windowed = sr.predict(model, seqs, mode="windowed", window=window, burn_in="all")
        assert max_abs(windowed, stateful) <= tol


@pytest.mark.parametrize("window,burn_in", [(1, 1), (2, 3), (4, 2), (3, 0), (5, 50)])
def test_windowed_with_burn_in_b_runs_b_steps_then_the_window(window, burn_in):
    seqs = make_sequences([1, 9, 23, 4, 40])
    model = make_model("lstm", 2)
    got = sr.predict(model, seqs, mode="windowed", window=window, burn_in=burn_in)
    want = [windowed_oracle(model, x, window, burn_in) for x in seqs.xs]
    assert max_abs(got, want) <= TOL64
    if burn_in == 0:
        assert max_abs(got, sr.predict(model, seqs, mode="windowed", window=window)) == 0.0


# --------------------------------------------------------------------------- evaluate
def test_evaluate_is_the_weighted_mean_over_scored_steps():
    seqs = make_sequences([9, 23, 4])
    model = make_model()
    for mode, kw in (
        ("stateful", {}),
        ("windowed", {"window": 3}),
        ("windowed", {"window": 3, "burn_in": 2}),
    ):
        out = sr.predict(model, seqs, mode=mode, **kw)
        num = sum((((o - y) ** 2).mean(-1) * w).sum() for o, y, w in zip(out, seqs.ys, seqs.ws))
        den = sum(w.sum() for w in seqs.ws)
        got = sr.evaluate(model, seqs, mode=mode, **kw)
        assert got == {"loss": pytest.approx(num / den, rel=1e-12)}


def test_evaluate_classification_metrics_and_probabilities():
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(t, 2)) for t in (5, 8)]
    ys_bce = [rng.integers(0, 2, size=(t, 3)).astype(float) for t in (5, 8)]
    ys_ce = [rng.integers(0, 3, size=(t, 1)).astype(float) for t in (5, 8)]
    model = make_model()
    logits = sr.predict(model, sr.Sequences.from_arrays(xs, ys_bce))

    bce = sr.Sequences.from_arrays(xs, ys_bce)
    probs = sr.predict(model, bce, loss="bce")
    assert max_abs(probs, [1 / (1 + np.exp(-z)) for z in logits]) <= 1e-12
    right = np.concatenate([((z > 0) == (y > 0.5)).all(-1) for z, y in zip(logits, ys_bce)])
    assert sr.evaluate(model, bce, loss="bce")["accuracy"] == pytest.approx(right.mean())

    ce = sr.Sequences.from_arrays(xs, ys_ce)
    soft = sr.predict(model, ce, loss="ce")
    assert max_abs([s.sum(-1) for s in soft], [np.ones(len(s)) for s in soft]) <= 1e-12
    right = np.concatenate([z.argmax(-1) == y[:, 0] for z, y in zip(logits, ys_ce)])
    result = sr.evaluate(model, ce, loss="ce", mode="windowed", window=100)
    assert result["accuracy"] == pytest.approx(right.mean())


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"mode": "stateles"}, "unknown prediction mode 'stateles'"),
        ({"mode": "windowed"}, "windowed prediction needs a window"),
        ({"mode": "windowed", "window": 0}, "windowed prediction needs window >= 1; received 0"),
        ({"mode": "stateful", "burn_in": 3}, "burn_in applies to windowed prediction"),
        ({"mode": "windowed", "window": 2, "burn_in": -2}, "burn_in must be an integer >= 0"),
        ({"mode": "windowed", "window": 2, "burn_in": "some"}, "burn_in must be an integer >= 0"),
    ],
)
def test_bad_prediction_calls(kwargs, message):
    model = make_model()
    seqs = make_sequences([5, 3])
    with pytest.raises(ValueError) as err:
        sr.predict(model, seqs, **kwargs)
    assert message in str(err.value)
    with pytest.raises(ValueError) as err:
        sr.evaluate(model, seqs, **kwargs)
    assert message in str(err.value)


def test_prediction_checks_features_and_loss():
    model = make_model()
    three = sr.Sequences.from_arrays([np.zeros((4, 3))], [np.zeros((4, 3))])
    with pytest.raises(ValueError, match="have 3 features per step but the model expects 2"):
        sr.predict(model, three)
    with pytest.raises(TypeError, match="must be a statefulrnn.Sequences"):
        sr.predict(model, [np.zeros((4, 2))])
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        sr.evaluate(model, make_sequences([4]), loss="l1")
