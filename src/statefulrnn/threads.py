"""How many CPU threads a recurrent call uses: the policy behind every `threads=` argument.

`threads=None` (the default of `fit`, `predict`, `evaluate`, `StreamPool` and of every
command's `--threads`) means: on the CPU, one intra-op thread when the recurrent step's GEMM is
small (rows x gates x (inputs + hidden) below SMALL_STEP multiply-adds), torch's own setting
otherwise; on other devices nothing is changed. An integer uses that many threads. The
caller's setting is restored afterwards. The decision is made once per call from the shapes,
never from the machine's load, so the same call gives the same numbers on a busy machine.

Threads of a second kind, lane workers (`workers()`): where the CPU loop engine trains a chunk
(model/engine.py), it cuts the chunk's lanes into groups and steps each group in its own
thread, each thread at one intra-op thread. `threads=None`: one group per CPU this process
may use (`cpus()`), fewer when a group would be narrow (engine.MIN_GROUP_WIDTH);
`threads=n`: at most n groups; `threads=1`: one group, no second thread. Unlike OpenMP's
threads, which meet at every op of every step (a few hundred times per step), the groups
meet twice per chunk (end of forward, end of backward): a group whose core is taken by
another process is slowed alone, and a waiting group sleeps; it does not spin.

Measured (seed-000 shape; lane groups vs one group, interleaved in one process):

    fit, one epoch, both cores free (process at real-time priority, load 7.8 from other
    sessions):  threads=None (2 groups) 1.05, 1.07 s;  threads=1: 1.91, 1.93 s
    one chunk fwd + bwd, 200 steps, machine shared (load 5.7-6.0, ~1 core ours):
    2 groups 716-878 ms wall, 212-249 ms CPU;  1 group 834-1,023 ms wall, 202-236 ms CPU

So where a second core is free the groups use it (1.8x), and where it is not they cost ~4%
more CPU and still finish first; hence one group per CPU by default.

More groups or workers than CPUs, to win a larger per-thread share against a busy process,
were measured and rejected (2026-12-04; kernel 6.18, sessions grouped by autogroup; busy: one
Python CPU loop; medians of 4-7 interleaved rounds, load 1.2-1.8 from this run alone):

    seed-000 fit, s per epoch (CPU s)   2 groups      3             4             6
    quiet                               1.016 (1.87)  1.262 (2.11)  1.288 (2.22)  1.246 (2.29)
    busy, a child in our session        1.500 (1.87)  1.464 (2.00)  1.463 (2.07)  1.469 (2.29)
    busy, in a session of its own       2.113 (2.09)  (2 groups)

    10,000 streams, us per call         2 workers     3             4
    quiet                               4,580         4,206         4,523
    busy, a child in our session        6,262         6,672         6,768

- Three runnable threads on two cores is a balanced state to Linux's load balancer: no task is
  moved to even out per-thread shares. With the busy loop beside our two groups we got 1.1-1.15
  cores (fit: 1.93 CPU s in 1.71 s), not 4/3; groups re-split every chunk by each one's
  measured speed gained nothing (1.796 -> 1.749 s): both groups ran at similar rates.
- Every group pays ~30 fixed-cost calls per step, so 100-lane groups cost 15-19% more CPU than
  200-lane ones: 4 groups reach 1.4 cores under load but are 25% slower quiet (and 3 groups
  on 2 cores leave one core shared by two of them: 24% slower quiet).
- A call on 10,000 streams lasts ~4 ms, about one scheduler slice. Workers sleep between calls
  and are woken onto the waking thread's core: traced under load, 4 workers ran their blocks
  one after another on one core; with workers pinned one per core, the block held by the
  worker that shares its core with the busy loop was preempted for ~4 ms while the other had
  finished. The block step compiled without the GIL (TorchScript) gained nothing there.
- A busy process in a session of its own is a scheduling group of its own: it gets a group's
  share against all our threads together (our two groups were both on one core, fit 0.48x
  quiet); no thread count changes that.
So the busy-machine ratio of issue 13 (>= 0.75x quiet) holds for calls on one thread (per-step
training, one stream, 1,000 streams) and not for lane groups or stream blocks on 2 cores.
What jobs with no synchronisation overhead keep of the best quiet speed beside the same busy
loop: in our session 0.61-0.64 at 2 threads, 0.53-0.56 meeting every step, 0.71-0.74 at 4
threads that never meet; in another session ~0.5 (docs/busy.md, bench_busy_ceiling.py).

Why (2-core AMD EPYC, torch 2.13 CPU; seed-000 shape: LSTM(64), 400 lanes, chunks of 500
steps, forward + backward of one chunk, interleaved repeats, medians, machine shared with other
work, load average beside each figure):

    fused nn.LSTM, OpenMP's default (active) wait policy, load 7.4 (1 thread) and 13.0 (2):
    threads   wall ms   CPU ms
    1         2,599     881
    2         18,681    6,027      7x the wall time, 7x the CPU: the threads spin and wait

    the loop engine (model/engine.py), 1 and 2 threads alternating in one process:
                            1 thread: wall, CPU      2 threads: wall, CPU
    OMP_WAIT_POLICY=PASSIVE  1,317, 891 ms (load 8.4)   1,622, 1,090 ms
    OMP_WAIT_POLICY=ACTIVE   2,978, 1,842 ms (load 6.7)  9,730, 6,775 ms

A step of this shape is one [400, 65] x [65, 256] GEMM (6.7M multiply-adds, ~150 us on one
core) and a few elementwise calls on 25,600 values (below ATen's 32,768-element grain, so
they run on one thread whatever the setting). A second thread can at best halve the GEMM
part, and it costs a synchronisation per step; when any other process wants a core, the
thread that waits for it stalls the step. The issue's measurements (`fit`, seed-000 shape,
load 4-8): 25-40 s per epoch on torch's default threads, 4.5-5.5 s on one. Larger steps
(windowed prediction: 4096 rows) keep torch's setting, where the GEMM is worth splitting.
The passive wait policy takes most of the harm out of a second thread (1.23x instead of 3.3x
slower under load), one thread is still the faster under load, and on a quiet machine a
second thread can at most halve the GEMMs; so the default stays one thread for small steps.
Beside this, `import statefulrnn` sets OMP_WAIT_POLICY=PASSIVE when nothing set it and torch
is not loaded yet (`_openmp.py`), so OpenMP threads sleep instead of spinning when they wait.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

SMALL_STEP = 1 << 24  # multiply-adds per recurrent step below which one thread is used
_default: list[int | None] = [None]  # set_default: what threads=None means in this process
_workers: list[int | None] = [None]  # the lane workers of the call running now (for_model)
_helpers: dict[str, ThreadPoolExecutor] = {}  # "pool": worker_pool's threads, this process
_helpers_lock = [threading.Lock()]


def get_default() -> int | None:
    """What `threads=None` means in this process now (None: the policy)."""
    return _default[0]


def set_default(threads: int | None) -> None:
    """Make `threads=None` mean `threads` in this process (the CLI's --threads); None: the policy."""
    check(threads)
    _default[0] = threads


def check(threads: int | None, what: str = "threads") -> None:
    """Raise a clear error unless `threads` is None or an integer >= 1."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"{what} must be None (automatic) or an integer >= 1; received {threads!r}.")


def step_work(model: torch.nn.Module, rows: int) -> int:
    """Multiply-adds of the largest per-step recurrent GEMM of `model` over `rows` lanes."""
    sizes = []
    for layer in getattr(model, "layers", ()):
        w = getattr(layer, "weight_hh_l0", None)
        w_in = getattr(layer, "weight_ih_l0", None)
        if w is not None:
            sizes.append(w.shape[0] * (w.shape[1] + (w_in.shape[1] if w_in is not None else 0)))
    if not sizes:  # a model of another kind: judge by its parameter count
        sizes.append(sum(p.numel() for p in model.parameters()))
    return int(rows) * max(sizes)


def choose(threads: int | None, work: int, device: torch.device | str | None = "cpu") -> int | None:
    """The thread count to set for a call, or None to leave torch's setting alone."""
    import torch  # here, not at the top: `statefulrnn --help` must not load torch

    check(threads)
    if threads is None:
        threads = _default[0]
    if threads is not None:
        return threads
    if torch.device(device if device is not None else "cpu").type != "cpu":
        return None
    return 1 if work < SMALL_STEP else None


def cpus() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def workers() -> int:
    """Threads the CPU loop engine (model/engine.py) may cut a chunk's lanes over, now: the
    running call's `threads=` (set by `for_model`), else `set_default`'s, else the CPUs this
    process may use."""
    for n in (_workers[0], _default[0]):
        if n is not None:
            return n
    return cpus()


@contextlib.contextmanager
def using_workers(n: int | None) -> Iterator[None]:
    """Run the block with `workers()` answering `n` (None: the policy); restore afterwards."""
    check(n, "workers")
    before = _workers[0]
    _workers[0] = n
    try:
        yield
    finally:
        _workers[0] = before


@contextlib.contextmanager
def using(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` intra-op threads (None: unchanged); restore afterwards."""
    import torch

    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def for_model(threads: int | None, model: torch.nn.Module, rows: int) -> Iterator[None]:
    """`using(...)` with the policy's choice for `model` stepping `rows` lanes, and
    `using_workers(threads)` for the loop engine's lane groups."""
    device = next(model.parameters()).device if any(True for _ in model.parameters()) else "cpu"
    with using(choose(threads, step_work(model, rows), device)), using_workers(threads):
        yield


def worker_pool(helpers: int) -> ThreadPoolExecutor:
    """The process's helper threads for work cut into parts that run at once (the loop
    engine's lane groups, StreamPool's blocks of streams): at least `helpers` of them, each at
    one intra-op thread, started before this returns.

    torch.set_num_threads in a new thread also sets the count threads started later begin
    with; the caller's count is set again once the helpers have set theirs, so threads the
    user starts later are not left at one. A forked child makes its own (`_forget_helpers`):
    the parent's threads do not exist there."""
    import torch

    with _helpers_lock[0]:
        pool = _helpers.get("pool")
        if pool is not None and pool._max_workers >= helpers:
            return pool
        before = torch.get_num_threads()
        started = threading.Barrier(helpers + 1)
        new = ThreadPoolExecutor(
            helpers,
            thread_name_prefix="statefulrnn-worker",
            initializer=torch.set_num_threads,
            initargs=(1,),
        )
        for _ in range(helpers):  # each waits for all: every thread is started and set
            new.submit(started.wait)
        started.wait()
        torch.set_num_threads(before)
        if pool is not None:
            pool.shutdown(wait=False)  # work it holds still runs; new work goes to `new`
        _helpers["pool"] = new
        return new


def _forget_helpers() -> None:
    """In a forked child: no helper threads (they stayed in the parent), a fresh lock."""
    _helpers.clear()
    _helpers_lock[0] = threading.Lock()


os.register_at_fork(after_in_child=_forget_helpers)
