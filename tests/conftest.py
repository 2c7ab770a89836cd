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
