"""The numpy reference against oracles of its own, then the torch model against the reference.

The reference is checked first against what does not come from this package: PyTorch's own
one-step cells (nn.RNNCell, nn.LSTMCell, nn.GRUCell, which share no code with our model or
with the fused sequence kernels it runs) with the same weights, and values worked out by hand
from the equations. Only then is the model held to the reference: it loops over time step by
step in numpy, so agreement to 1e-10 in float64 says the model computes the equations.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import statefulrnn as sr
from statefulrnn import reference
from statefulrnn.model import cells

CELLS = list(cells.names())
TOL = 1e-10
# Every cell runs every property, each with its share of the profile's examples.
PER_CELL = settings(max_examples=max(10, settings().max_examples // len(CELLS)))


def random_model(cell, num_layers, input_size, hidden_size, output_size, seed, scale):
    """A float64 model with weights drawn at `scale` (larger than the default init, so the
    gates saturate and cancel in ways the default small weights never show)."""
    torch.manual_seed(seed)
    model = sr.StatefulRNN(
        input_size, hidden_size, output_size, cell=cell, num_layers=num_layers, dtype=torch.float64
    ).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model


# ------------------------------------------------------- the reference against PyTorch's cells
TORCH_CELLS = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}
STEP = {"rnn": reference.rnn_step, "lstm": reference.lstm_step, "gru": reference.gru_step}


@given(
    st.sampled_from(sorted(TORCH_CELLS)),
    st.integers(1, 4),  # input size
    st.integers(1, 6),  # hidden size
    st.integers(1, 4),  # batch
    st.sampled_from([0.1, 0.5, 1.5]),  # weight scale (1.5: saturated gates)
    st.integers(0, 2**16),
)
def test_each_reference_step_equals_pytorchs_own_cell(cell, f, hidden, batch, scale, seed):
    torch.manual_seed(seed)
    torch_cell = TORCH_CELLS[cell](f, hidden, dtype=torch.float64)
    with torch.no_grad():
        for p in torch_cell.parameters():
            p.normal_(0.0, scale)
    w = [p.detach().numpy() for p in (torch_cell.weight_ih, torch_cell.weight_hh)]
    b = [p.detach().numpy() for p in (torch_cell.bias_ih, torch_cell.bias_hh)]
    rng = np.random.default_rng(seed)
    h, c = rng.normal(size=(batch, hidden)), rng.normal(size=(batch, hidden))
    for _ in range(5):  # a few steps, each from the state the last one reached
        x = rng.normal(size=(batch, f))
        with torch.no_grad():
            if cell == "lstm":
                h_t, c_t = torch_cell(
                    torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c))
                )
                h, c = reference.lstm_step(x, h, c, *w, *b)
                assert np.abs(c - c_t.numpy()).max() <= TOL
            else:
                h_t = torch_cell(torch.from_numpy(x), torch.from_numpy(h))
                h = STEP[cell](x, h, *w, *b)
        assert np.abs(h - h_t.numpy()).max() <= TOL
        h, c = h_t.numpy(), (c_t.numpy() if cell == "lstm" else c)


def test_every_registered_cell_has_an_independent_oracle():
    # the PyTorch cells above, or (cells PyTorch lacks) the equation tests in their own file
    assert set(CELLS) - set(TORCH_CELLS) <= {"mingru"}  # tests/test_mingru.py


# ------------------------------------------------------------ the torch model against it
@pytest.mark.parametrize("cell", CELLS)
@PER_CELL
@given(
    st.integers(1, 3),  # layers
    st.integers(1, 4),  # input size
    st.integers(1, 6),  # hidden size
    st.integers(1, 3),  # output size
    st.integers(1, 4),  # batch
    st.integers(1, 25),  # steps
    st.sampled_from([0.1, 0.5, 1.5]),  # weight scale
    st.booleans(),  # non-zero initial state
    st.integers(0, 2**16),
)
def test_torch_model_equals_numpy_reference(
    cell, num_layers, f, hidden, o, batch, steps, scale, warm_start, seed
):
    model = random_model(cell, num_layers, f, hidden, o, seed, scale)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, f))
    h0 = rng.normal(size=(num_layers, batch, hidden)) if warm_start else None
    two = len(cells.get(cell).state) == 2
    c0 = rng.normal(size=(num_layers, batch, hidden)) if warm_start and two else None

    state = None
    if warm_start:
        parts = (h0, c0) if two else (h0,)
        state = sr.State(tuple(torch.from_numpy(p) for p in parts), model.state_spec()[1])
    with torch.no_grad():
        y, final, hidden_states = model(torch.from_numpy(x), state, return_hidden=True)

    trace = reference.forward(reference.weights_of(model), cell, x, h0=h0, c0=c0)
    assert np.abs(y.numpy() - trace.y).max() <= TOL
    assert len(hidden_states) == num_layers == len(trace.h)
    for layer in range(num_layers):
        assert np.abs(hidden_states[layer].numpy() - trace.h[layer]).max() <= TOL
    assert np.abs(final.h.numpy() - trace.final_h).max() <= TOL
    if two:
        assert np.abs(final.c.numpy() - trace.final_c).max() <= TOL
        assert len(trace.c) == num_layers
        np.testing.assert_array_equal(trace.c[-1][:, -1], trace.final_c[-1])
    else:
        assert trace.c is None and trace.final_c is None


@pytest.mark.parametrize("cell", CELLS)
def test_reference_with_reset_lanes_matches_model(cell):
    """A reset lane in the model is a zero initial state in the reference."""
    model = random_model(cell, 2, 2, 3, 1, seed=7, scale=0.7)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 9, 2))
    h0 = rng.normal(size=(2, 3, 3))
    c0 = rng.normal(size=(2, 3, 3))
    names = model.state_spec()[1]
    state = sr.State(tuple(torch.from_numpy(a) for a in (h0, c0)[: len(names)]), names)
    reset = torch.tensor([False, True, False])
    with torch.no_grad():
        y, _ = model(torch.from_numpy(x), state, reset)
    h0[:, 1] = 0.0
    c0[:, 1] = 0.0
    trace = reference.forward(reference.weights_of(model), cell, x, h0=h0, c0=c0)
    assert np.abs(y.numpy() - trace.y).max() <= TOL


# --------------------------------------------------------------------------- the equations
def _weights(cell, hidden=1, f=1, value=0.0):
    gates = cells.get(cell).gates
    return {
        "layers.0.weight_ih_l0": np.full((gates * hidden, f), value),
        "layers.0.weight_hh_l0": np.full((gates * hidden, hidden), value),
        "layers.0.bias_ih_l0": np.full(gates * hidden, value),
        "layers.0.bias_hh_l0": np.full(gates * hidden, value),
        "head.weight": np.ones((1, hidden)),
        "head.bias": np.zeros(1),
    }


def test_rnn_equation_by_hand():
    w = _weights("rnn")
    w["layers.0.weight_ih_l0"][:] = 0.5
    w["layers.0.weight_hh_l0"][:] = -0.3
    w["layers.0.bias_ih_l0"][:] = 0.1
    x = np.array([1.0, -2.0, 0.5])
    h, expected = 0.0, []
    for xt in x:
        h = np.tanh(0.5 * xt + 0.1 - 0.3 * h)
        expected.append(h)
    trace = reference.forward(w, "rnn", x.reshape(1, 3, 1))
    np.testing.assert_allclose(trace.y[0, :, 0], expected, rtol=0, atol=1e-15)


def test_lstm_with_zero_weights_halves_the_cell():
    # every gate is sigmoid(0) = 1/2 and g = tanh(0) = 0: c_t = c_{t-1} / 2, h_t = tanh(c_t) / 2
    trace = reference.forward(
        _weights("lstm"),
        "lstm",
        np.ones((1, 3, 1)),
        h0=np.ones((1, 1, 1)),
        c0=np.full((1, 1, 1), 8.0),
    )
    c = 8.0 / 2 ** np.arange(1, 4)
    np.testing.assert_allclose(trace.c[0][0, :, 0], c, rtol=0, atol=1e-15)
    np.testing.assert_allclose(trace.h[0][0, :, 0], np.tanh(c) / 2, rtol=0, atol=1e-15)


def test_gru_with_zero_weights_halves_the_state():
    # r = z = 1/2, n = tanh(0) = 0: h_t = h_{t-1} / 2
    trace = reference.forward(
        _weights("gru"), "gru", np.ones((1, 4, 1)), h0=np.full((1, 1, 1), 3.0)
    )
    np.testing.assert_allclose(trace.h[0][0, :, 0], 3.0 / 2 ** np.arange(1, 5), rtol=0, atol=1e-15)


def test_unknown_cell():
    with pytest.raises(ValueError, match="unknown cell 'elman'"):
        reference.forward(_weights("rnn"), "elman", np.ones((1, 2, 1)))
