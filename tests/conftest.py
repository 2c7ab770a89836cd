"""Shared test set-up: a modest hypothesis profile (no deadline: torch's first call is slow)."""

from __future__ import annotations

import math
import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "statefulrnn",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
# A longer hunt when asked: HYPOTHESIS_PROFILE=thorough pytest
settings.register_profile("thorough", parent=settings.get_profile("statefulrnn"), max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "statefulrnn"))

# One torch thread: the tests' models are tiny, and with the other core busy (CI, helpers)
# OpenMP threads spin and make each call many times slower.
import torch  # noqa: E402

torch.set_num_threads(1)


# ------------------------------------------------------------------ shared test helpers
# Imported by the test files (`from conftest import ...`; pytest puts tests/ on sys.path).
def expected_window_starts(length: int, window: int, stride: int) -> list[int]:
    """The stateless windows' starts, from their definition and by enumeration (not the
    library's `window_starts`): a window at every multiple of `stride` that fits whole; then,
    if none reaches the last step, one short window at the next multiple, if it starts inside
    the sequence. A sequence no longer than one window is one window at 0."""
    if length <= window:
        return [0]
    starts = [s for s in range(0, length, stride) if s + window <= length]
    if starts[-1] + window < length and starts[-1] + stride < length:
        starts.append(starts[-1] + stride)
    return starts


def make_rnn(input_size, hidden_size, output_size, cell="lstm", *, seed=0, eval=False, **kw):
    """The tests' one way to build a model: a StatefulRNN whose weights are those
    `torch.manual_seed(seed)` draws (same arguments, same model). `kw`: num_layers, dtype,
    dropout, device. `eval=True` returns it in eval mode."""
    from statefulrnn.model import StatefulRNN

    torch.manual_seed(seed)
    model = StatefulRNN(input_size, hidden_size, output_size, cell=cell, **kw)
    return model.eval() if eval else model


class PoisonAfter(torch.optim.SGD):
    """SGD that writes inf into a weight after `n` steps: the next chunk's loss is not finite."""

    def __init__(self, params, n):
        super().__init__(params, lr=1e-3)
        self.n, self.steps = n, 0

    @torch.no_grad()
    def step(self, closure=None):
        super().step(closure)
        self.steps += 1
        if self.steps == self.n:
            self.param_groups[0]["params"][0].fill_(math.inf)


class GradRecorder(torch.optim.Optimizer):
    """An optimizer that keeps every gradient it is given and never moves a parameter."""

    def __init__(self, params):
        super().__init__(params, {})
        self.grads: list[list[torch.Tensor]] = []

    @torch.no_grad()
    def step(self, closure=None):
        self.grads.append([p.grad.clone() for group in self.param_groups for p in group["params"]])


def recorded_grads(model, train, **kwargs) -> list[list[torch.Tensor]]:
    """The gradients of every update of one epoch of `sr.fit(model, train, **kwargs)`."""
    import statefulrnn as sr

    made = []

    def factory(params):
        made.append(GradRecorder(params))
        return made[0]

    sr.fit(model, train, optimizer=factory, epochs=1, verbose=0, **kwargs)
    return made[0].grads


def summed(grads: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Per parameter, the sum of its gradients over the updates."""
    return [torch.stack(gs).sum(0) for gs in zip(*grads)]


# a Keras Sequential([Input((5, 2)), LSTM(3)]) config, for files that hold one
KERAS_CONFIG = {
    "class_name": "Sequential",
    "config": {
        "name": "s",
        "layers": [
            {"class_name": "InputLayer", "config": {"batch_shape": [None, 5, 2], "name": "in"}},
            {"class_name": "LSTM", "config": {"name": "lstm", "units": 3}},
        ],
    },
}
