"""Settings torch reads once, so set as early as possible: OpenMP threads that sleep, not
spin, while they wait (read when torch loads); huge pages for large CPU tensors (read at
torch's first CPU allocation, so also set when torch is loaded already).

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


def set_before_torch(name: str, value: str, *, torch_loaded_too: bool = False) -> bool:
    """Set the environment variable `name` to `value` unless the user set it, or torch is
    loaded already and reads it only when it loads (not `torch_loaded_too`); True if it did."""
    if name in os.environ or ("torch" in sys.modules and not torch_loaded_too):
        return False
    os.environ[name] = value
    return True


# OpenMP threads sleep, not spin, while they wait (libgomp reads this when torch loads it)
set_before_torch("OMP_WAIT_POLICY", "PASSIVE")
# torch's CPU allocator asks for transparent huge pages (2 MB) for large tensors. A training
# chunk allocates tens of MB that the OS hands back and maps again every chunk (seed-000 shape:
# [501, 400, 65] + [501, 400, 64] floats, and the head's gradient): with 4 kB pages each chunk
# took ~13,000 page faults. Measured on the 2-core machine (both cores free, one epoch of the
# seed-000 shape): 1.27 s without, 1.05 s with. Where the kernel has huge pages off, torch's
# request is ignored and nothing changes. torch reads this at its first CPU allocation, not
# when it loads, so `import torch` before `import statefulrnn` (the usual order) still gets it:
# measured 2026-12-04 (15:40 UTC, load ~1, seed-000 shape, torch imported first, epochs 3-6 of
# two processes each): 155,800 faults, 0.30-0.41 s system time, median 1.45 s an epoch
# without; 11,400-13,000 faults, 0.08-0.14 s, median 1.11 s with; peak RSS 567 MiB both.
# Again through this line (15:45, `import torch` then `import statefulrnn`, two pairs):
# 12,200-13,500 faults, median 1.23 s; with THP_MEM_ALLOC_ENABLE=0, 154,200-156,600 and 1.42 s.
set_before_torch("THP_MEM_ALLOC_ENABLE", "1", torch_loaded_too=True)
