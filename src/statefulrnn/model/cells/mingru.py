"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gates see only the input.

    z_t = σ(W_z x_t + b_z)                      update gate, from x_t alone
    h̃_t = W_h x_t + b_h                         candidate: linear, no tanh
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t

Weights: `weight_ih_l0 [2H, F]` (rows [z; h̃], as nn.GRU stacks its gates) and `bias_ih_l0 [2H]`;
no recurrent weights. This is the paper's minGRU in its sequential form with the plain linear
candidate. The paper's g() (x + 0.5 for x >= 0, else σ(x)) only keeps h̃ positive for its
log-space scan; the scan here needs no logarithm, so it is not used.

Because h_t is linear in h_{t-1}, `h_t = a_t h_{t-1} + b_t` with `a_t = 1 - z_t` and
`b_t = z_t h̃_t`, and a chunk of T steps runs as a blocked scan: about 2 sqrt(T) small steps
over wide tensors instead of T small steps over narrow ones (tests hold it to the loop):

    # T = 10 steps cut into blocks of K = 4 (the last one padded with a = 1, b = 0)
    #   block 0: s0 s1 s2 s3 | block 1: s4 s5 s6 s7 | block 2: s8 s9 .  .
    # 1. inside every block at once, from zero: local h and the running product P of a
    #    (K steps over [B, blocks, H])
    # 2. across blocks: carry_j = state entering block j = local h at the end of block j-1
    #    + P at the end of block j-1 * carry_{j-1}                    (blocks - 1 steps)
    # 3. every step at once: h_t = local h_t + P_t * carry of its block

Numerics: a_t = σ(-k_t) is computed directly, not as 1 - σ(k_t) (which rounds to 0 for large
k_t). Only products of factors in (0, 1) and sums of the loop's own terms are formed: no
division, no log/exp round trip, so nothing overflows and no clamp is needed; products can
only underflow toward 0, which is the right limit (the old state is forgotten). Scan and loop
agree to rounding (float64: ~1e-15). The state a chunk starts from (zeros for lanes reset at
chunk start) enters as a_0 h_{-1} + b_0, so resets need nothing else.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MIN_BLOCK = 8  # steps per block at least (blocks of ~sqrt(T) for long chunks)


def linear_scan(a: Tensor, b: Tensor) -> Tensor:
    """h [B, T, H] with h_t = a_t h_{t-1} + b_t and h_{-1} = 0, over dim 1 (a, b [B, T, H])."""
    batch, steps, hidden = a.shape
    k = min(steps, max(MIN_BLOCK, math.isqrt(steps)))
    blocks = -(-steps // k)
    pad = blocks * k - steps
    if pad:  # a = 1, b = 0: padded steps change nothing and are cut off at the end
        a = torch.cat([a, a.new_ones(batch, pad, hidden)], 1)
        b = torch.cat([b, b.new_zeros(batch, pad, hidden)], 1)
    a4, b4 = a.view(batch, blocks, k, hidden), b.view(batch, blocks, k, hidden)
    h, p = b4[:, :, 0], a4[:, :, 0]  # 1. within every block, from zero
    hs, ps = [h], [p]
    for i in range(1, k):
        h = torch.addcmul(b4[:, :, i], a4[:, :, i], h)
        hs.append(h)
        if blocks > 1:  # one block: no carry, so no products needed
            p = p * a4[:, :, i]
            ps.append(p)
    local = torch.stack(hs, 2)
    if blocks == 1:
        return local.view(batch, k, hidden)[:, :steps]
    carry = [a.new_zeros(batch, hidden)]  # 2. the state entering each block
    for j in range(blocks - 1):
        carry.append(torch.addcmul(hs[-1][:, j], ps[-1][:, j], carry[-1]))
    # 3. every step: local h + (product of a since the block began) * carry
    out = torch.addcmul(local, torch.stack(ps, 2), torch.stack(carry, 1).unsqueeze(2))
    return out.view(batch, blocks * k, hidden)[:, :steps]


class MinGRU(nn.Module):
    """One minGRU layer with nn.GRU's interface (batch first): `out, hn = layer(x, hx)`,
    x [B, T, F], hx [1, B, H] or None (zeros) -> out [B, T, H], hn [1, B, H]."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        batch_first: bool = True,
        *,
        device=None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if not batch_first:
            raise ValueError("MinGRU is batch first only (x [B, T, F]).")
        self.input_size, self.hidden_size = input_size, hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih_l0 = nn.Parameter(torch.empty(2 * hidden_size, input_size, **kw))
        self.bias_ih_l0 = nn.Parameter(torch.empty(2 * hidden_size, **kw))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in ±1/sqrt(H), as PyTorch initializes its recurrent layers."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _coefficients(self, x: Tensor, hx: Tensor | None) -> tuple[Tensor, Tensor]:
        """a = 1 - z, b = z h̃ per step [B, T, H], with the initial state folded into b_0."""
        k, cand = F.linear(x, self.weight_ih_l0, self.bias_ih_l0).chunk(2, dim=-1)
        a, b = torch.sigmoid(-k), torch.sigmoid(k) * cand
        if hx is not None:
            b = torch.cat([torch.addcmul(b[:, :1], a[:, :1], hx[0].unsqueeze(1)), b[:, 1:]], 1)
        return a, b

    def forward(self, x: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if x.shape[1] == 0:
            h0 = hx if hx is not None else x.new_zeros(1, x.shape[0], self.hidden_size)
            return x.new_zeros(x.shape[0], 0, self.hidden_size), h0
        a, b = self._coefficients(x, hx)
        out = linear_scan(a, b)
        return out, out[:, -1].unsqueeze(0)

    def loop(self, x: Tensor, hx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The same layer stepped one time step at a time (the scan's check and baseline)."""
        a, b = self._coefficients(x, None)
        h = hx[0] if hx is not None else x.new_zeros(x.shape[0], self.hidden_size)
        outs = []
        for t in range(x.shape[1]):
            h = a[:, t] * h + b[:, t]
            outs.append(h)
        out = torch.stack(outs, dim=1)
        return out, h.unsqueeze(0)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, batch_first=True"
