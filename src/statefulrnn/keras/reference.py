"""Keras's forward pass in plain numpy, one step at a time, written from Keras's equations.

The oracle for `statefulrnn.keras`: imported by tests, never by the package. It shares no
code with the torch blocks, works in float64 on the Keras-layout weights, and keeps Keras's
output semantics (a recurrent layer with `return_sequences=False` hands on its last step only,
and the Dense after it sees [B, U]).

    SimpleRNN  h = act(x K + h R + b)
    LSTM       [i, f, c~, o] = x K + h R + b;   c = ra(f) c + ra(i) act(c~);   h = ra(o) act(c)
    GRU        [xz, xr, xh] = x K + b_in
      reset_after=True : [hz, hr, hh] = h R + b_rec;  hh~ = act(xh + ra(xr + hr) * hh)
      reset_after=False: hz, hr = h R[:, :2U];        hh~ = act(xh + (ra(xr + hr) * h) R[:, 2U:])
                         z = ra(xz + hz);  h = z h + (1 - z) hh~
    Dense      y = act(x K + b)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACT: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "relu": lambda a: np.maximum(a, 0.0),
    "linear": lambda a: a,
    "hard_sigmoid_keras3": lambda a: np.clip(a + 3.0, 0.0, 6.0) / 6.0,
    "hard_sigmoid_keras2": lambda a: np.clip(0.2 * a + 0.5, 0.0, 1.0),
    "softmax": _softmax,
}


def _recurrent(spec, w, x, state):
    """x [B, T, F] -> outputs [B, T, U], final state list (h, or h and c)."""
    kind, u = spec["type"], spec["units"]
    act = ACT[spec["activation"]]
    ra = ACT[spec.get("recurrent_activation", "linear")]
    k, r = w["kernel"].astype(np.float64), w["recurrent_kernel"].astype(np.float64)
    b_raw = w.get("bias")
    b = None if b_raw is None else b_raw.astype(np.float64)
    h = state[0].copy()
    c = state[1].copy() if kind == "LSTM" else None
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        if kind == "SimpleRNN":
            h = act(xt @ k + h @ r + (0 if b is None else b))
        elif kind == "LSTM":
            z = xt @ k + h @ r + (0 if b is None else b)
            i, f, g, o = z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
            c = ra(f) * c + ra(i) * act(g)
            h = ra(o) * act(c)
        else:
            two = spec["reset_after"] and b is not None
            b_in = 0 if b is None else (b[0] if two else b)
            mx = xt @ k + b_in
            xz, xr, xh = mx[:, :u], mx[:, u : 2 * u], mx[:, 2 * u :]
            if spec["reset_after"]:
                mh = h @ r + (b[1] if two and b is not None else 0)
                z = ra(xz + mh[:, :u])
                rr = ra(xr + mh[:, u : 2 * u])
                hh = act(xh + rr * mh[:, 2 * u :])
            else:
                z = ra(xz + h @ r[:, :u])
                rr = ra(xr + h @ r[:, u : 2 * u])
                hh = act(xh + (rr * h) @ r[:, 2 * u :])
            h = z * h + (1.0 - z) * hh
        outs.append(h)
    return np.stack(outs, axis=1), ([h, c] if kind == "LSTM" else [h])


def forward(specs, weights, x, states=None):
    """Run x [B, T, F] through the layers as Keras would.

    `states`: per recurrent layer, its initial [h] or [h, c] ([B, U] each); zeros if None.
    Returns `(y, final_states)`: y [B, T, O], or [B, O] after `return_sequences=False`.
    """
    out = np.asarray(x, dtype=np.float64)
    finals, j = [], 0
    for spec, w in zip(specs, weights):
        kind = spec["type"]
        if kind in ("SimpleRNN", "LSTM", "GRU"):
            u = spec["units"]
            n = 2 if kind == "LSTM" else 1
            init = states[j] if states is not None else [np.zeros((out.shape[0], u))] * n
            seq, final = _recurrent(spec, w, out, [np.asarray(s, np.float64) for s in init])
            out = seq if spec["return_sequences"] else seq[:, -1]
            finals.append(final)
            j += 1
        elif kind == "Dense":
            out = out @ w["kernel"].astype(np.float64)
            if "bias" in w:
                out = out + w["bias"].astype(np.float64)
            out = ACT[spec["activation"]](out)
        elif kind == "Activation":
            out = ACT[spec["activation"]](out)
    return out, finals
