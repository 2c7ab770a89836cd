"""Stateful training over several processes (torch.distributed under torchrun), whole lanes per rank.

Knows process groups, DistributedDataParallel (DDP) and how to split an epoch's schedule among
ranks. Knows nothing about losses, optimizers or checkpoints: `fit` runs the same loop in one
process or many and asks a `Local` (one process: every hook is the identity) or a `Ranks`
(torchrun's processes) at the few points where they differ.

Why the result equals one process training on the same global batch:

- every rank lays out the same full epoch (the layout is a pure function of (seed, epoch)),
  so all ranks agree on every chunk's global weight sum without talking, and each keeps a
  contiguous block of whole lanes: a lane's state never leaves its rank;
- rank r's loss for chunk k is (r's weighted loss sum) / (chunk k's global weight sum), and
  DDP sums the ranks' gradients (a comm hook; its default would average), so the update is
  the gradient of the weighted mean over all scored steps of all ranks;
- every rank runs every chunk, idle lanes included (weight 0): the same collectives in the
  same order on every rank. A chunk no rank scores is skipped by all of them.

    # 5 lanes, 2 ranks (uneven is fine: 3 + 2), window 3; * = reset, . = weight 0
    #                     chunk 0       chunk 1       chunk 2
    # rank 0   lane 0:  *a1 a2 a3  |  a4 a5  .   |  *f1 f2 f3
    #          lane 1:  *b1 b2 b3  | *g1 g2 g3   |   g4  .  .
    #          lane 2:  *c1 c2  .  | *h1 h2 h3   |    .  .  .
    # rank 1   lane 3:  *d1 d2 d3  |  d4 d5 d6   |   d7  .  .
    #          lane 4:  *e1 e2  .  |   .  .  .   |    .  .  .    idle, still runs

Stateless windows have no state to keep together, so each chunk's windows are split by rows;
a rank left without a window in a chunk runs a copy of one with weight 0.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from statefulrnn.data.schedule import Schedule

if TYPE_CHECKING:
    from statefulrnn.model.base import RecurrentModel

# How long a rank waits at a collective for the others before failing. A killed process is
# noticed sooner (its sockets close, torchrun stops the rest); this bounds a hung one. Rank 0
# validates while the others wait, so it must exceed the longest validation pass.
DEFAULT_TIMEOUT_S = 600.0
TIMEOUT_ENV = "STATEFULRNN_DIST_TIMEOUT"  # seconds; overrides DEFAULT_TIMEOUT_S


class DistributedError(RuntimeError):
    """Another process of a distributed run failed, hung or left; this one stops too."""


# --------------------------------------------------------------------------- process group
def _timeout(timeout: float | timedelta | None) -> timedelta:
    if isinstance(timeout, timedelta):
        return timeout
    if timeout is None:
        timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    return timedelta(seconds=timeout)


def _launched_by_torchrun() -> bool:
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(backend: str | None = None, timeout: float | timedelta | None = None) -> bool:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT).

    Returns True when a group is initialised (now or before), False when the environment names
    none. `backend`: "nccl" when CUDA is available (one GPU per process, cuda:LOCAL_RANK),
    else "gloo". `timeout` (seconds): how long a collective waits for the others.
    """
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=_timeout(timeout))
    atexit.register(_leave)
    return True


def is_main_process() -> bool:
    """True in rank 0 (or when there is one process): the one that writes files and prints."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def join_world(distributed: bool | None, model: RecurrentModel) -> Local:
    """The processes `fit` trains with: `Local` (this one alone) or `Ranks` (a process group).

    `distributed=None` decides by itself: a group is used when one is initialised or torchrun
    set WORLD_SIZE > 1. `False`: this process trains alone whatever the environment.
    """
    if distributed is False or (
        distributed is None
        and not (dist.is_available() and (dist.is_initialized() or _launched_by_torchrun()))
    ):
        return Local(model)
    if not init_from_env():
        raise RuntimeError(
            "fit(distributed=True) needs a torch.distributed process group, but none is "
            "initialised and RANK/WORLD_SIZE are not set. Launch with "
            "`torchrun --standalone --nproc_per_node=2 train.py`, or call "
            "torch.distributed.init_process_group(...) before fit."
        )
    if dist.get_world_size() == 1:
        return Local(model)
    return Ranks(model)


# --------------------------------------------------------------------------- one process
class Local:
    """One process trains alone: all of the epoch is its own, and nothing is exchanged."""

    rank, size, is_main = 0, 1, True

    def __init__(self, model: RecurrentModel):
        self.model = model
        self.replica: torch.nn.Module = model  # what the training loop calls forward on

    def start(self, optimizer, history, start_epoch: int):
        """Where training starts: (history, first epoch); ranks take rank 0's."""
        return history, start_epoch

    def share_out(self, schedule: Schedule) -> Schedule:
        """This process's part of the epoch."""
        return schedule

    # run_epoch reads a chunk's loss with .item(); Ranks sums it over all ranks instead
    sum_loss: Callable[[torch.Tensor], float] | None = None

    def from_main(self, obj: Any) -> Any:
        """Rank 0's value of `obj`, on every rank."""
        return obj


# --------------------------------------------------------------------------- many processes
class _Replica(DistributedDataParallel):
    """DDP that still answers like the model it wraps (`device`, `dtype`, `final_state`)."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def _sum_gradients(group, bucket):  # (None, dist.GradBucket) -> Future[Tensor]
    """DDP comm hook: sum a gradient bucket over ranks (DDP's default hook averages).

    Each rank's loss is already its share of the global weighted mean, so the sum is the
    gradient of that mean. (No annotations: DDP checks them, and this module's are strings.)
    """
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


class Ranks(Local):
    """The processes of a torch.distributed group, each training whole lanes of every chunk."""

    def __init__(self, model: RecurrentModel):
        super().__init__(model)
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0
        if dist.get_backend() == "nccl" and model.device.type != "cuda":
            model.to(torch.device("cuda", torch.cuda.current_device()))

    def start(self, optimizer, history, start_epoch: int):
        """Every rank continues from rank 0's weights, optimizer state, history and epoch
        (rank 0 alone reads a checkpoint, so the folder need not be shared)."""
        cuda = self.model.device.type == "cuda"
        replica = _Replica(
            self.model,  # DDP copies rank 0's weights to every rank here
            device_ids=[self.model.device.index] if cuda else None,
            find_unused_parameters=False,  # outputs (y, State) pass through DDP untouched
        )
        replica.register_comm_hook(None, _sum_gradients)
        self.replica = replica
        start = [(optimizer.state_dict(), list(history), start_epoch)]
        dist.broadcast_object_list(start, src=0)
        opt_state, rows, start_epoch = start[0]
        if not self.is_main:
            optimizer.load_state_dict(opt_state)
            history = type(history)(rows)
            # fit seeded every rank alike: without this, dropout would draw the same masks
            # for the lanes of every rank
            torch.manual_seed(torch.initial_seed() + self.rank)
        return history, start_epoch

    def share_out(self, schedule: Schedule) -> Schedule:
        """This rank's lanes (stateful) or windows (stateless) of the whole epoch's schedule."""
        self._check_same_epoch(schedule)
        return share(schedule, self.rank, self.size)

    def _check_same_epoch(self, schedule: Schedule) -> None:
        # Every rank must be handed the same full data: a rank given its own shard would lay
        # out a different epoch, and the collectives would stop matching.
        mine = (len(schedule), int(schedule.w.shape[0]), schedule.scored_steps)
        every = [None] * self.size
        dist.all_gather_object(every, mine)
        if any(e != every[0] for e in every):
            raise ValueError(
                f"the ranks laid out different epochs (chunks, rows, scored steps): {every}. "
                "Pass every process the same full `train` Sequences; fit splits the lanes itself."
            )

    def sum_loss(self, s: torch.Tensor) -> float:
        """A chunk's weighted loss summed over all ranks: the same number on every rank, so
        all of them stop together if it is not finite."""
        total = s.detach().clone()
        try:
            dist.all_reduce(total)
        except RuntimeError as err:
            raise DistributedError(
                f"rank {self.rank} of {self.size}: another process stopped answering while the "
                "ranks summed a chunk's loss; it failed, was killed or hung (its own error is in "
                "the launcher's log), so this one stops too. Restart the run with resume=True to "
                f"continue from the last checkpoint. ({type(err).__name__}: {err})"
            ) from err
        return total.item()

    def from_main(self, obj: Any) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def share(schedule: Schedule, rank: int, size: int) -> Schedule:
    """Rank `rank` of `size`'s part of an epoch: a contiguous block of whole lanes (stateful),
    or of every chunk's windows (stateless). Every part has the schedule's chunk count."""
    if schedule.mode == "stateful":
        lanes = schedule.batch_size
        if lanes < size:
            raise ValueError(
                f"batch_size {lanes} gives fewer lanes than the {size} processes; every process "
                f"needs at least one lane. Use batch_size >= {size}, or fewer processes."
            )
        return schedule.lanes(slice(lanes * rank // size, lanes * (rank + 1) // size))
    return _split_rows(schedule, rank, size)


def _split_rows(schedule: Schedule, rank: int, size: int) -> Schedule:
    """Rank `rank`'s share of every chunk's rows (stateless windows), in contiguous blocks."""
    rows: list[int] = []
    stand_in: list[bool] = []
    bounds = [0]
    for k in range(len(schedule)):
        a, b = schedule.bounds[k], schedule.bounds[k + 1]
        lo, hi = a + (b - a) * rank // size, a + (b - a) * (rank + 1) // size
        if hi > lo:
            rows += range(lo, hi)
            stand_in += [False] * (hi - lo)
        else:  # no window left for this rank: one with weight 0 keeps it in step with the rest
            rows.append(a)
            stand_in.append(True)
        bounds.append(len(rows))
    idx = torch.tensor(rows)
    w = schedule.w[idx].masked_fill(torch.tensor(stand_in).view(-1, 1), 0.0)
    return Schedule(
        schedule.mode,
        schedule.window,
        -(-schedule.batch_size // size),
        schedule.x[idx],
        schedule.y[idx],
        w,
        schedule.reset[idx],
        schedule.source[np.asarray(rows)],
        bounds,
        schedule.any_reset,
        schedule.all_reset,
    )
