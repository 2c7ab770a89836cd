"""Ask OpenMP to sleep, not spin, while it waits: set before torch is first imported.

With the default (active) wait policy, torch's OpenMP threads spin between parallel regions;
on a machine where other processes want the cores, the spinning threads and the waiting ones
take turns and small recurrent steps run many times slower (issue 13: 25-40 s per epoch
instead of 4.5-5.5 s). libgomp reads OMP_WAIT_POLICY once, when torch loads it, so this must
run before the first `import torch`; it sets nothing the user set, and nothing once torch is
loaded. Imports nothing but the standard library on purpose; runs on import.
"""

from __future__ import annotations

import os
import sys


def prefer_passive_wait() -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE if unset and torch is not loaded yet; True if it did."""
    if "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


prefer_passive_wait()  # on import: `statefulrnn/__init__.py` imports this module first
