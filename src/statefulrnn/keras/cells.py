"""Torch blocks that compute exactly what a Keras layer computes, fused where PyTorch can.

Knows Keras's cell equations and PyTorch's kernels; knows nothing about files. Each recurrent
block maps `x [B, T, F]` and its state parts (each `[1, B, U]`) to `y [B, T, U]` and new parts.

    fused  nn.RNN / nn.LSTM / nn.GRU with the Keras weights remapped; used when the layer's
           options match the kernel exactly (LSTM/GRU: tanh + sigmoid; GRU: reset_after=True;
           SimpleRNN: tanh or relu)
    step   a loop over time steps in torch, written from Keras's equations; any activation,
           and GRU reset_after=False (the reset gate before the recurrent product), which no
           PyTorch kernel has

Keras gate orders: LSTM i, f, c, o (the same as PyTorch's i, f, g, o); GRU z, r, h (PyTorch:
r, z, n). Keras has one bias per LSTM/SimpleRNN; it goes into `bias_ih`, `bias_hh` stays 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from statefulrnn.model import cells

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "linear": lambda a: a,
    # Keras 3: relu6(x + 3) / 6.  Keras 2: clip(0.2 x + 0.5, 0, 1). Same name, other slopes.
    "hard_sigmoid_keras3": lambda a: F.relu6(a + 3.0) / 6.0,
    "hard_sigmoid_keras2": lambda a: torch.clamp(0.2 * a + 0.5, 0.0, 1.0),
    "softmax": lambda a: torch.softmax(a, dim=-1),
}
# Keras class -> gate blocks in its kernel; the registry's cells that name a Keras class
GATES = {name: spec.gates for name, spec in cells.keras_classes().items()}
# Keras GRU blocks are z, r, h; PyTorch's are r, z, n: take Keras block 1, then 0, then 2.
GRU_TO_TORCH = [1, 0, 2]


def fused_reason(spec: dict) -> str | None:
    """None if the layer runs exactly on a fused PyTorch kernel, else why it cannot."""
    act, rec = spec["activation"], spec.get("recurrent_activation")
    if spec["type"] == "SimpleRNN":
        ok = act in ("tanh", "relu")
        return None if ok else f"activation={act!r} (nn.RNN has tanh and relu only)"
    reasons = []
    if act != "tanh":
        reasons.append(f"activation={act!r}")
    if rec != "sigmoid":
        reasons.append(f"recurrent_activation={rec!r}")
    if spec["type"] == "GRU" and not spec["reset_after"]:
        reasons.append("reset_after=False (nn.GRU applies the reset gate after the product)")
    if not reasons:
        return None
    return ", ".join(reasons) + f" (nn.{spec['type']} is fixed to tanh + sigmoid)"


def n_parts(spec: dict) -> int:
    """State tensors of a Keras recurrent layer: its registry cell's (LSTM: h and c)."""
    return len(cells.keras_classes()[spec["type"]].state)


def _tensor(a: np.ndarray, like: Tensor) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=like.dtype, device=like.device)


def _blocks(a: Tensor, order: list[int], n: int) -> Tensor:
    """Reorder the `n` gate blocks along dim 0."""
    return torch.cat([a.chunk(n, dim=0)[k] for k in order], dim=0)


class FusedRecurrent(nn.Module):
    """A Keras recurrent layer on nn.RNN / nn.LSTM / nn.GRU (one layer, batch first)."""

    def __init__(self, spec: dict, *, device=None, dtype=torch.float32):
        super().__init__()
        self.spec = spec
        kw = {"bias": spec["use_bias"], "device": device, "dtype": dtype}
        if spec["type"] == "SimpleRNN":
            kw["nonlinearity"] = spec["activation"]
        cell = cells.keras_classes()[spec["type"]]
        self.rnn = cell.build_layer(spec["input_size"], spec["units"], **kw)

    def forward(self, x: Tensor, parts: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        if self.spec["type"] == "LSTM":
            y, (h, c) = self.rnn(x, (parts[0], parts[1]))
            return y, (h, c)
        y, h = self.rnn(x, parts[0])
        return y, (h,)

    @torch.no_grad()
    def set_keras(self, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias=None) -> None:
        kind, n = self.spec["type"], GATES[self.spec["type"]]
        order = GRU_TO_TORCH if kind == "GRU" else list(range(n))
        p = dict(self.rnn.named_parameters())
        p["weight_ih_l0"].copy_(_blocks(_tensor(kernel.T, p["weight_ih_l0"]), order, n))
        p["weight_hh_l0"].copy_(_blocks(_tensor(recurrent_kernel.T, p["weight_hh_l0"]), order, n))
        if bias is None:
            return
        if kind == "GRU":  # reset_after=True: row 0 input bias, row 1 recurrent bias
            p["bias_ih_l0"].copy_(_blocks(_tensor(bias[0], p["bias_ih_l0"]), order, n))
            p["bias_hh_l0"].copy_(_blocks(_tensor(bias[1], p["bias_hh_l0"]), order, n))
        else:
            p["bias_ih_l0"].copy_(_tensor(bias, p["bias_ih_l0"]))
            p["bias_hh_l0"].zero_()

    def extra_repr(self) -> str:
        return f"{self.spec['name']!r}: fused nn.{self.rnn.__class__.__name__}"


class StepRecurrent(nn.Module):
    """A Keras recurrent layer run one step at a time from Keras's equations (weights in
    Keras's layout). The input projection is one product for all steps; only the recurrent
    part loops."""

    def __init__(self, spec: dict, *, device=None, dtype=torch.float32):
        super().__init__()
        self.spec = spec
        f, u, g = spec["input_size"], spec["units"], GATES[spec["type"]]
        kw = {"device": device, "dtype": dtype}
        self.kernel = nn.Parameter(torch.zeros(f, g * u, **kw))
        self.recurrent_kernel = nn.Parameter(torch.zeros(u, g * u, **kw))
        if spec["use_bias"]:
            two = spec["type"] == "GRU" and spec["reset_after"]
            self.bias = nn.Parameter(torch.zeros(*((2, 3 * u) if two else (g * u,)), **kw))
        else:
            self.register_parameter("bias", None)
        self.act = ACTIVATIONS[spec["activation"]]
        self.rec_act = ACTIVATIONS[spec.get("recurrent_activation", "linear")]

    @torch.no_grad()
    def set_keras(self, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias=None) -> None:
        self.kernel.copy_(_tensor(kernel, self.kernel))
        self.recurrent_kernel.copy_(_tensor(recurrent_kernel, self.recurrent_kernel))
        if self.bias is not None:
            self.bias.copy_(_tensor(bias, self.bias))

    def forward(self, x: Tensor, parts: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        kind, u = self.spec["type"], self.spec["units"]
        reset_after = kind == "GRU" and self.spec["reset_after"]
        xp = x @ self.kernel  # [B, T, G*U]: every step's input projection at once
        rec_bias = None
        if self.bias is not None:
            if reset_after:
                xp, rec_bias = xp + self.bias[0], self.bias[1]
            else:
                xp = xp + self.bias
        h = parts[0][0]
        c = parts[1][0] if kind == "LSTM" else None
        rk = self.recurrent_kernel
        outs = []
        for t in range(x.shape[1]):
            xt = xp[:, t]
            if kind == "SimpleRNN":
                h = self.act(xt + h @ rk)
            elif kind == "LSTM":
                assert c is not None  # LSTM's state has a cell part (for the type checker)
                i, f, g, o = (xt + h @ rk).chunk(4, dim=-1)
                c = self.rec_act(f) * c + self.rec_act(i) * self.act(g)
                h = self.rec_act(o) * self.act(c)
            elif reset_after:
                hp = h @ rk if rec_bias is None else h @ rk + rec_bias
                x_z, x_r, x_h = xt.chunk(3, dim=-1)
                h_z, h_r, h_h = hp.chunk(3, dim=-1)
                z, r = self.rec_act(x_z + h_z), self.rec_act(x_r + h_r)
                h = z * h + (1 - z) * self.act(x_h + r * h_h)
            else:  # GRU reset_after=False: the reset gate scales h before the product
                x_z, x_r, x_h = xt.chunk(3, dim=-1)
                h_zr = h @ rk[:, : 2 * u]
                z = self.rec_act(x_z + h_zr[:, :u])
                r = self.rec_act(x_r + h_zr[:, u:])
                h = z * h + (1 - z) * self.act(x_h + (r * h) @ rk[:, 2 * u :])
            outs.append(h)
        y = torch.stack(outs, dim=1) if outs else xp[..., :u] * 0
        new = (h.unsqueeze(0),) if c is None else (h.unsqueeze(0), c.unsqueeze(0))
        return y, new

    def extra_repr(self) -> str:
        why = fused_reason(self.spec) or "requested; fused would also be exact"
        return f"{self.spec['name']!r}: step-by-step {self.spec['type']} ({why})"


class DenseHead(nn.Module):
    """Keras Dense (or TimeDistributed(Dense)) on every step: act(x W + b)."""

    def __init__(self, spec: dict, *, device=None, dtype=torch.float32):
        super().__init__()
        self.spec = spec
        self.linear = nn.Linear(
            spec["input_size"], spec["units"], bias=spec["use_bias"], device=device, dtype=dtype
        )
        self.act = ACTIVATIONS[spec["activation"]]

    @torch.no_grad()
    def set_keras(self, kernel: np.ndarray, bias=None) -> None:
        self.linear.weight.copy_(_tensor(kernel.T, self.linear.weight))
        if bias is not None:
            self.linear.bias.copy_(_tensor(bias, self.linear.bias))

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.linear(x))

    def extra_repr(self) -> str:
        return f"{self.spec['name']!r}: per-step nn.Linear + {self.spec['activation']}"


class Elementwise(nn.Module):
    """Keras Activation (a function per element) or Dropout (nothing at inference)."""

    def __init__(self, spec: dict, **_):
        super().__init__()
        self.spec = spec
        self.act = ACTIVATIONS[spec.get("activation", "linear")]

    def set_keras(self) -> None:
        pass

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x)

    def extra_repr(self) -> str:
        return f"{self.spec['name']!r}: {self.spec['type']} {self.spec.get('activation', '(identity at inference)')}"
