"""A plain numpy forward pass of every cell, written from the equations: the "by hand" model.

Seed 004 rebuilt Keras's hidden states by hand to see exactly how a prediction is computed;
this module is that, for statefulrnn's models. It imports numpy only and loops over time
step by step, so it shares no code with the fused PyTorch kernels it checks.

Weights use PyTorch's layout (for layer l, `layers.{l}.weight_ih_l0` etc.):

    RNN :  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    LSTM:  [i, f, g, o] = split(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, 4)
           c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g);   h_t = σ(o) ⊙ tanh(c_t)
    GRU :  [r_x, z_x, n_x] = split(W_ih x_t + b_ih, 3);  [r_h, z_h, n_h] = split(W_hh h_{t-1} + b_hh, 3)
           r = σ(r_x + r_h);  z = σ(z_x + z_h);  n = tanh(n_x + r ⊙ n_h)
           h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
    minGRU: [k, h̃] = split(W_ih x_t + b_ih, 2);  z = σ(k)       (no recurrent weights)
           h_t = (1 - z) ⊙ h_{t-1} + z ⊙ h̃
    head:  y_t = W h_t + b   (from the last layer's h_t)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def rnn_step(x, h, w_ih, w_hh, b_ih, b_hh):
    return np.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    return h, c


def gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    r_x, z_x, n_x = np.split(x @ w_ih.T + b_ih, 3, axis=-1)
    r_h, z_h, n_h = np.split(h @ w_hh.T + b_hh, 3, axis=-1)
    r = sigmoid(r_x + r_h)
    z = sigmoid(z_x + z_h)
    n = np.tanh(n_x + r * n_h)
    return (1.0 - z) * n + z * h


def mingru_step(x, h, w_ih, b_ih):
    k, cand = np.split(x @ w_ih.T + b_ih, 2, axis=-1)
    z = sigmoid(k)
    return (1.0 - z) * h + z * cand


# cell -> (number of state parts, step(x_t, state parts, layer weights) -> new state parts).
# The cells are the registry's (model/cells/); this module imports nothing from the package,
# so it keeps its own table, and tests/test_cells.py checks that the two name the same cells.
Step = Callable[[np.ndarray, tuple[np.ndarray, ...], dict[str, np.ndarray]], tuple[np.ndarray, ...]]
STEPS: dict[str, tuple[int, Step]] = {
    "rnn": (1, lambda x, s, p: (rnn_step(x, s[0], *_recurrent(p)),)),
    "lstm": (2, lambda x, s, p: lstm_step(x, *s, *_recurrent(p))),
    "gru": (1, lambda x, s, p: (gru_step(x, s[0], *_recurrent(p)),)),
    "mingru": (1, lambda x, s, p: (mingru_step(x, s[0], p["weight_ih_l0"], p["bias_ih_l0"]),)),
}


def _recurrent(p: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"]


@dataclass
class Trace:
    """Everything the reference computed: y [B, T, O]; per layer h [B, T, H] (and c for LSTM)."""

    y: np.ndarray
    h: list[np.ndarray]
    c: list[np.ndarray] | None
    final_h: np.ndarray  # [L, B, H]
    final_c: np.ndarray | None


def weights_of(model) -> dict[str, np.ndarray]:
    """A StatefulRNN's weights as float64 numpy arrays (works without importing torch here)."""
    return {k: v.detach().cpu().double().numpy() for k, v in model.state_dict().items()}


def forward(weights: dict[str, np.ndarray], cell: str, x: np.ndarray, h0=None, c0=None) -> Trace:
    """Run x [B, T, F] through the layers and head in `weights`, one step at a time.

    `h0`, `c0`: initial state [L, B, H] (zeros if None; c only for cells with two state
    parts). `cell` is a key of STEPS: "rnn", "lstm", "gru", ...
    """
    if cell not in STEPS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {sorted(STEPS)}.")
    n_parts, step = STEPS[cell]
    x = np.asarray(x, dtype=np.float64)
    n_layers = len({k.split(".")[1] for k in weights if k.startswith("layers.")})
    hidden = weights["head.weight"].shape[1]  # every layer has the head's input size
    b, t_len, _ = x.shape
    inp = x
    hs, cs, final_h, final_c = [], [], [], []
    for layer in range(n_layers):
        p = {k.split(".")[-1]: v for k, v in weights.items() if k.startswith(f"layers.{layer}.")}
        starts = (h0, c0)[:n_parts]
        state = tuple(
            np.zeros((b, hidden)) if s is None else np.array(s[layer], dtype=np.float64)
            for s in starts
        )
        out = [np.zeros((b, t_len, hidden)) for _ in range(n_parts)]
        for t in range(t_len):
            state = step(inp[:, t], state, p)
            for o, part in zip(out, state):
                o[:, t] = part
        hs.append(out[0])
        final_h.append(state[0])
        if n_parts > 1:
            cs.append(out[1])
            final_c.append(state[1])
        inp = out[0]
    y = inp @ weights["head.weight"].T + weights["head.bias"]
    two = n_parts > 1
    return Trace(y, hs, cs if two else None, np.stack(final_h), np.stack(final_c) if two else None)
