"""Run k steps for a batch of streams whose states are rows of the pool's slab.

Knows the RecurrentModel interface (forward, state_spec, device, dtype); nothing about
stream ids, eviction or files. Two kernels, one contract:

    kernel.target()                 -> (device, dtype) the slab must have, now
    kernel.step(slab, idx, x)       gather rows idx, run x [B, k, F], scatter back -> y [B, k, O]

`ForwardKernel` calls `model.forward` and serves any RecurrentModel; `FusedKernel`
(streams/fused.py) computes StatefulRNN's steps itself, faster, with the same numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from statefulrnn.model.base import RecurrentModel
from statefulrnn.streams.fused import fused_kernel, scatter
from statefulrnn.streams.layout import Layout


class ForwardKernel:
    """Any RecurrentModel: gather rows -> State -> model.forward -> rows. The reference path."""

    def __init__(self, model: RecurrentModel, layout: Layout):
        self.model, self.layout = model, layout

    def target(self) -> tuple[torch.device, torch.dtype]:
        return self.model.device, self.model.dtype

    def step(self, slab: Tensor, idx: Tensor, x: Tensor) -> Tensor:
        model = self.model
        state = self.layout.to_state(slab.index_select(0, idx))
        was_training = model.training
        if was_training:
            model.eval()  # serving: no dropout
        try:
            with torch.no_grad():
                y, new = model(x, state)
        finally:
            if was_training:
                model.train()
        self.layout.check(new)
        scatter(slab, idx, self.layout.to_rows(new).to(slab.dtype))
        return y


def make_kernel(model: RecurrentModel, layout: Layout, fused: bool = True):
    """The fastest kernel that covers this model: fused for StatefulRNN, else model.forward."""
    kernel = fused_kernel(model, layout) if fused else None
    return kernel if kernel is not None else ForwardKernel(model, layout)
