"""minGRU, the cell added through the registry alone: its chunk scan against its own step loop
(values and gradients), its numerics at saturated gates, and that it trains, predicts,
streams, exports and sweeps (the Keras importer's refusal of it: tests/test_cells.py).

The shared invariants (chunked == whole, reset == fresh start, torch == numpy reference in
float64, streams == predict, ONNX, save/load, TBPTT gradients) run over every registered cell
in their own files, minGRU included.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import statefulrnn as sr
from statefulrnn import reference
from statefulrnn.cli import main
from statefulrnn.experiments import space
from statefulrnn.model.cells.mingru import MinGRU, linear_scan

TOL = 1e-10


def layer(f=3, h=4, seed=0, scale=1.0, dtype=torch.float64) -> MinGRU:
    torch.manual_seed(seed)
    m = MinGRU(f, h, dtype=dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, scale)
    return m


@given(
    st.integers(1, 70),  # steps: around powers of two, where the scan's rounds change
    st.integers(1, 3),  # batch
    st.booleans(),  # initial state
    st.sampled_from([0.3, 1.0, 4.0]),  # weight scale (4: saturated gates)
    st.integers(0, 2**16),
)
def test_scan_equals_the_step_loop_in_values_and_gradients(steps, batch, warm, scale, seed):
    m = layer(seed=seed, scale=scale)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, 3, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, batch, 4, generator=g, dtype=torch.float64, requires_grad=True)
    hx = h0 if warm else None
    weights = torch.randn(batch, steps, 4, generator=g, dtype=torch.float64)

    out, hn = m(x, hx)
    out_loop, hn_loop = m.loop(x, hx)  # the oracle: autograd through a plain loop
    assert (out - out_loop).abs().max() <= TOL and (hn - hn_loop).abs().max() <= TOL
    wrt = [x, *m.parameters(), *([h0] if warm else [])]
    grads = torch.autograd.grad((out * weights).sum() + hn.sum(), wrt)
    grads_loop = torch.autograd.grad((out_loop * weights).sum() + hn_loop.sum(), wrt)
    for a, b in zip(grads, grads_loop):
        assert (a - b).abs().max() <= TOL * max(1.0, float(b.abs().max()))


def test_scan_is_the_recurrence_written_out():
    a = torch.tensor([[[0.5], [0.25], [2.0], [1.0], [0.1]]], dtype=torch.float64)
    b = torch.tensor([[[1.0], [2.0], [-1.0], [3.0], [0.0]]], dtype=torch.float64)
    h, want = 0.0, []
    for at, bt in zip(a[0, :, 0].tolist(), b[0, :, 0].tolist()):
        h = at * h + bt
        want.append(h)
    assert linear_scan(a, b)[0, :, 0].tolist() == pytest.approx(want, abs=1e-15)


@torch.no_grad()
def test_saturated_gates_stay_finite_and_exact():
    """Pre-activations of ±1000: z is exactly 0 or 1 (a = σ(-k) is taken directly, so no
    1 - 1 = 0 cancellation), products of a underflow to 0, and nothing becomes NaN."""
    m = layer(f=1, h=2)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.tensor([[1000.0], [-1000.0], [1.0], [1.0]]))
        m.bias_ih_l0.zero_()
    x = torch.tensor([[[1.0], [-1.0], [2.0], [-3.0]] * 300], dtype=torch.float64)
    hx = torch.tensor([[[5.0, 7.0]]], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        mm = m.to(dtype)
        out, hn = mm(x.to(dtype), hx.to(dtype))
        out_loop, _ = mm.loop(x.to(dtype), hx.to(dtype))
        assert torch.isfinite(out).all()
        assert torch.equal(out, out_loop)
        # unit 0: z = 1 when x > 0 (h = x), else z = 0 (h kept); unit 1 the opposite
        assert out[0, :4, 0].tolist() == [1.0, 1.0, 2.0, 2.0]
        assert out[0, :4, 1].tolist() == [7.0, -1.0, -1.0, -3.0]


@torch.no_grad()
def test_a_long_float32_chunk_matches_float64():
    m = layer(f=2, h=8, scale=1.0)
    x = torch.randn(4, 2048, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    want, _ = m.loop(x)
    got, _ = m.to(torch.float32)(x.float())
    assert torch.isfinite(got).all()
    assert (got.double() - want).abs().max() <= 1e-4 * max(1.0, float(want.abs().max()))


def test_reference_step_is_the_paper_equation():
    """z = σ(W_z x + b_z), h̃ = W_h x + b_h, h = (1 - z) h + z h̃, by hand for one unit."""
    w = {
        "layers.0.weight_ih_l0": np.array([[2.0], [0.5]]),
        "layers.0.bias_ih_l0": np.array([-1.0, 0.25]),
        "head.weight": np.ones((1, 1)),
        "head.bias": np.zeros(1),
    }
    x = np.array([1.0, -2.0, 0.5])
    h, want = 3.0, []
    for xt in x:
        z = 1.0 / (1.0 + np.exp(-(2.0 * xt - 1.0)))
        h = (1.0 - z) * h + z * (0.5 * xt + 0.25)
        want.append(h)
    trace = reference.forward(w, "mingru", x.reshape(1, 3, 1), h0=np.full((1, 1, 1), 3.0))
    np.testing.assert_allclose(trace.y[0, :, 0], want, rtol=0, atol=1e-15)


# ------------------------------------------------------------------ through the library
def ema_sequences(n: int, length: int, seed: int) -> sr.Sequences:
    """y_t = 0.9 y_{t-1} + 0.1 x_t: a memory longer than the training window."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(n):
        x = rng.normal(size=(length, 1))
        y = np.zeros_like(x)
        for t in range(length):
            y[t] = 0.9 * (y[t - 1] if t else 0.0) + 0.1 * x[t]
        xs.append(x)
        ys.append(y)
    return sr.Sequences.from_arrays(xs, ys)


@pytest.mark.slow  # > 20 s on the shared 2-core machine
def test_trains_statefully_and_predicts_both_ways():
    torch.manual_seed(0)
    model = sr.StatefulRNN(1, 8, 1, cell="mingru")
    train, val = ema_sequences(16, 60, seed=0), ema_sequences(4, 60, seed=1)
    history = sr.fit(
        model, train, val=val, mode="stateful", window=5, batch_size=8, epochs=40,
        lr=0.02, verbose=0,
    )  # fmt: skip
    first, last = history[0]["val_loss"], history[-1]["val_loss"]
    assert last < first / 10, (first, last)
    stateful = sr.evaluate(model, val, mode="stateful")
    windowed = sr.evaluate(model, val, mode="windowed", window=5)
    # the EMA remembers ~10 steps, so a 5-step window loses what the carried state keeps
    assert stateful["loss"] < windowed["loss"]


def test_cli_trains_a_mingru_model(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    rows = ["t,x,y"] + [f"{t},{x[t]},{x[t - 1] if t else 0.0}" for t in range(200)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    args = ["train", str(tmp_path / "d.csv"), "--time", "t", "--features", "x", "--targets", "y"]
    out = tmp_path / "m"
    code = main([*args, "--cell", "mingru", "--epochs", "2", "--window", "10", f"--out={out}"])
    assert code == 0
    assert sr.load_model(out).config()["cell"] == "mingru"


def test_in_the_sweep_space():
    assert "mingru" in space.default_space(10)["cell"]["choices"]
    assert space.override(space.default_space(10), {"cell": "mingru"})["cell"] == {
        "fixed": "mingru"
    }
