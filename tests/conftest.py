"""Shared test set-up: a modest hypothesis profile (no deadline: torch's first call is slow)."""

from __future__ import annotations

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
