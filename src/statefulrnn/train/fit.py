"""fit: train a model on a stateful schedule (truncated BPTT) or on stateless windows.

Joins data (schedules) and model (state in, state out). Stateful and stateless training
differ only in the schedule and in where a chunk's state comes from:

- stateful: from the previous chunk of the same lane, detached (gradients stop at the chunk
  edge), zeroed in lanes that start a new sequence; with `backprop=k2 > window`, the gradient
  of each chunk reaches k2 steps back (TBPTT(k1, k2), see `tbptt.py`);
- stateless: zero, or the state reached by `burn_in` steps before the window, run without
  gradient.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from statefulrnn import losses, records
from statefulrnn.bundle import ModelBundle
from statefulrnn.data.scaling import Scaling
from statefulrnn.data.schedule import Schedule, stateful_schedule, stateless_schedule
from statefulrnn.data.sequences import Sequences
from statefulrnn.model.base import RecurrentModel
from statefulrnn.outputs import score, stateful_outputs, windowed_outputs
from statefulrnn.threads import check as check_threads
from statefulrnn.threads import for_model as threads_for
from statefulrnn.train.callbacks import Callback, EarlyStopping
from statefulrnn.train.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from statefulrnn.train.chunks import (
    BurnIn,
    ChunkSource,
    StatefulChunks,
    StatelessChunks,
    chunk_sizes,
)
from statefulrnn.train.config import OptimizerFactory, TrainConfig, resolve
from statefulrnn.train.distributed import Local, join_world
from statefulrnn.train.history import History
from statefulrnn.train.progress import Progress
from statefulrnn.train.tbptt import TBPTTChunks

SYNC_EVERY = 64  # chunks between reads of the losses kept on a CUDA (non-CPU) device
# the optimizers TrainConfig names (config.OPTIMIZER_NAMES), made here where torch is
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    # Keras's RMSprop defaults (rho 0.9, epsilon 1e-7), to rerun the seeds' recipes as written
    "keras-rmsprop": functools.partial(torch.optim.RMSprop, alpha=0.9, eps=1e-7),
    "sgd": torch.optim.SGD,
}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and chunk."""


class FewUpdatesWarning(UserWarning):
    """An epoch holds so few optimizer updates that the run will likely under-train."""


# below this many optimizer updates per epoch, and this many in the whole run, fit warns
FEW_UPDATES_PER_EPOCH = 10
FEW_UPDATES_IN_RUN = 500


# built-in optimizers with a fused kernel in torch (one call updates every parameter), used
# where the parameters allow it (fusable). Per-step training (LSTM(10), 6 parameters), one
# Adam step: 157 us as a loop over the parameters in Python, 47 us fused (2-core AMD EPYC,
# torch 2.13 CPU); the same update up to float rounding (its ops are ordered differently).
FUSED = frozenset({"adam", "adamw", "sgd"})
# ... and those without one, run by torch's foreach kernels (one call per operation for all
# parameters, not one per parameter): one RMSprop step for LSTM(10) 113 -> 93 us; the same
# numbers as its loop over the parameters
FOREACH = frozenset({"rmsprop", "keras-rmsprop"})
_FUSED_DEVICES = ("cpu", "cuda")
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def make_optimizer(
    name_or_factory: str | OptimizerFactory, params, lr: float
) -> torch.optim.Optimizer:
    """A built-in optimizer by name (TrainConfig checked the name), fused (or foreach) where
    torch has the kernel and the parameters allow it, or the factory's optimizer as the
    factory makes it."""
    if callable(name_or_factory):
        return name_or_factory(params)
    params = list(params)
    options = {}
    if fusable(params) and name_or_factory in FUSED | FOREACH:
        options = {"fused" if name_or_factory in FUSED else "foreach": True}
    return OPTIMIZERS[name_or_factory](params, lr=lr, **options)


def fusable(params: Sequence[torch.Tensor]) -> bool:
    """Whether torch's fused (and foreach) optimizer kernels take these parameters (CPU or
    CUDA, floating)."""
    return bool(params) and all(
        p.device.type in _FUSED_DEVICES and p.dtype in _FUSED_DTYPES for p in params
    )


def _check_data(model: RecurrentModel, seqs: Sequences, cfg: TrainConfig, what: str) -> None:
    if not isinstance(seqs, Sequences):
        raise TypeError(
            f"{what} must be a statefulrnn.Sequences; received {type(seqs).__name__}. "
            "Build one with Sequences.from_arrays(xs, ys)."
        )
    if seqs.num_features != model.input_size:
        raise ValueError(
            f"{what} has {seqs.num_features} features per step but the model expects "
            f"{model.input_size} (its input_size)."
        )
    losses.check_targets(cfg.loss, seqs.ys, seqs.ws, model.output_size, what)


# --------------------------------------------------------------------------- epochs
def build_schedule(train: Sequences, cfg: TrainConfig, epoch: int, dtype: torch.dtype) -> Schedule:
    """The epoch's schedule; its order depends only on (seed, epoch), so a resumed run matches."""
    seed = [cfg.seed, epoch]
    if cfg.mode == "stateful":
        return stateful_schedule(
            train,
            window=cfg.window,
            batch_size=cfg.batch_size,
            seed=seed,
            shuffle=cfg.shuffle,
            dtype=dtype,
        )
    return stateless_schedule(
        train,
        window=cfg.window,
        batch_size=cfg.batch_size,
        stride=cfg.stride,
        target=cfg.target,
        seed=seed,
        shuffle=cfg.shuffle,
        dtype=dtype,
    )


def chunk_norms(schedule: Schedule) -> list[float]:
    """Each chunk's weight sum: its loss is the weighted mean over the steps it scores."""
    sums = torch.stack([w.sum() for w in schedule.w.split(chunk_sizes(schedule))])
    return sums.tolist()


class _Step:
    """One optimizer update from a chunk's weighted loss sum."""

    def __init__(self, model, optimizer, loss_fn, clip):
        self.model, self.optimizer, self.loss_fn, self.clip = model, optimizer, loss_fn, clip
        self.params = [p for p in model.parameters() if p.requires_grad]

    def __call__(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()


def run_epoch(
    model,
    schedule: Schedule,
    cfg: TrainConfig,
    step: _Step,
    *,
    epoch: int,
    progress: Progress,
    train: Sequences,
    norms: Sequence[float] | None = None,
    reduce: Callable[[torch.Tensor], float] | None = None,
) -> tuple[float, int]:
    """Train on every chunk of one epoch; return (weighted mean loss, scored steps).

    Distributed (see `distributed.py`): `norms` are the chunks' weight sums over all ranks and
    `reduce` sums a chunk's loss over all ranks, so every rank sees the global value.
    """
    norms = chunk_norms(schedule) if norms is None else norms
    # the weighted sum of `step.loss_fn` without its weight sum: `norms` hold those already
    step_loss = losses.STEP_LOSSES[cfg.loss]
    total, weight, steps_done = 0.0, 0.0, 0
    chunks = chunk_source(model, schedule, cfg, train, norms)
    # off the CPU, the losses stay on the device and are read back every SYNC_EVERY chunks (and
    # at the end) in one transfer: no host sync per update. The sums, the order of addition
    # and the divergence message (epoch, chunk) are those of the per-chunk path.
    pending: list[tuple[int, torch.Tensor, float, int]] | None = (
        [] if defer_sync(schedule, reduce) else None
    )

    def settle() -> None:
        nonlocal total, weight
        if not pending:
            return
        values = torch.stack([p[1] for p in pending]).tolist()  # one transfer
        for (k, _, norm, done), value in zip(pending, values):
            _check_finite(value, epoch, k, len(schedule))
            total += value
            weight += norm
            progress.update(k + 1, loss=total / max(weight, 1e-30), steps=done)
        pending.clear()

    for k, (y_hat, y, w) in enumerate(chunks):
        norm = norms[k]
        if norm == 0:  # nothing scored in this chunk: the state has moved on, no update
            continue
        assert y_hat is not None  # only a chunk with nothing to score may come without outputs
        if reduce is None and norm == 1.0 and w.numel() == 1:
            # one step of weight 1 (per-step training): its loss is the weighted mean as it
            # is, bit for bit; the identity ops (x * 1, a sum of one value) cost a fifth of
            # the update's overhead
            s = step_loss(y_hat, y).reshape(())
        else:
            s = (step_loss(y_hat, y) * w).sum()
        steps_done += int(schedule.bounds[k + 1] - schedule.bounds[k]) * schedule.window
        if pending is not None:
            pending.append((k, s.detach(), norm, steps_done))
            try:
                step(s if norm == 1.0 else s / norm)
            except RuntimeError:
                settle()  # a loss that was not finite is the reason to report, if there is one
                raise
            if len(pending) >= SYNC_EVERY:
                settle()
            continue
        value = s.item() if reduce is None else reduce(s)
        _check_finite(value, epoch, k, len(schedule))
        step(s if norm == 1.0 else s / norm)  # (x / 1 is x: one op fewer per update)
        total += value
        weight += norm
        progress.update(k + 1, loss=total / max(weight, 1e-30), steps=steps_done)
    if pending:
        settle()
    return total / max(weight, 1e-30), schedule.scored_steps


def defer_sync(schedule: Schedule, reduce) -> bool:
    """Whether the epoch's losses stay on the device between reads (not on the CPU, where a
    read costs nothing, nor when `reduce` sums them over ranks, which reads them anyway)."""
    return reduce is None and schedule.x.device.type != "cpu"


def _check_finite(value: float, epoch: int, k: int, chunks: int) -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"the loss became {value} at epoch {epoch}, chunk {k} of {chunks}; "
            "lower lr, set clip=1.0, or check the inputs' scale."
        )


def chunk_source(
    model, schedule: Schedule, cfg: TrainConfig, train: Sequences, norms: Sequence[float]
) -> ChunkSource:
    """Where each chunk's start state comes from (chunks.py): the previous chunk (stateful),
    k2 steps back (TBPTT, backprop > window), zero or a burn-in (stateless)."""
    if cfg.mode == "stateful":
        if cfg.backprop is not None and cfg.backprop > cfg.window:
            return TBPTTChunks(model, schedule, cfg.backprop, scored=[v > 0 for v in norms])
        return StatefulChunks(model, schedule)
    if not cfg.burn_in:
        return StatelessChunks(model, schedule)
    steps = int(train.lengths.max()) if cfg.burn_in == "all" else int(cfg.burn_in)
    return StatelessChunks(model, schedule, BurnIn(train, schedule, steps, model.device))


# --------------------------------------------------------------------------- validation
def validate(
    model: RecurrentModel, val: Sequences, cfg: TrainConfig, windowed: bool
) -> dict[str, float]:
    """Stateful validation always; windowed too when `windowed` (stateless training, or a
    val_window given)."""
    metrics = list(cfg.metrics or ())
    out = {}
    for key, value in score(stateful_outputs(model, val), val, cfg.loss, metrics).items():
        out[f"val_{key}"] = value
    if windowed:
        w = cfg.val_window or cfg.window
        packed = windowed_outputs(model, val, window=w, burn_in=cfg.burn_in)
        for key, value in score(packed, val, cfg.loss, metrics).items():
            out[f"val_{key}_windowed"] = value
    return out


# --------------------------------------------------------------------------- fit
def fit(
    model: RecurrentModel,
    train: Sequences,
    val: Sequences | None = None,
    config: TrainConfig | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint: str | Path | None = None,
    resume: bool = False,
    verbose: int = 1,
    device: torch.device | str | None = None,
    distributed: bool | None = None,
    standardize: bool = False,
    threads: int | None = None,
    **options: Any,
) -> History:
    """Train `model` on `train`; validate on `val` after every epoch; return the History.

    What decides the result is a `TrainConfig` (train/config.py: mode, window, batch_size,
    epochs, loss, optimizer, lr, clip, seed, stride, target, backprop, burn_in, shuffle,
    val_window, metrics, each with its default and meaning): pass one as `config`, its fields
    as keyword `options`, or both (an option replaces the config's field). An option that is
    not a field is a TypeError naming the valid ones. The other keywords say how to run it.

    `mode="stateful"`: lanes carry state from chunk to chunk (truncated BPTT over `window`
    steps, or `backprop` steps). `mode="stateless"`: windows cut every `stride` steps start
    from zero state (or after `burn_in` steps). A stateful run uses at most one lane per
    training sequence: a larger `batch_size` is lowered to len(train), as extra lanes would
    hold only padding. With `checkpoint=dir` a checkpoint is written after every epoch
    (`dir` must be new, empty or a statefulrnn folder); `resume=True` continues from it to
    the same result as an uninterrupted run. Weights that are not finite after an epoch
    raise TrainingDiverged with the model restored to the epoch's start; they are never
    saved.

    Under torchrun (or with `distributed=True`) the lanes are split among the processes and
    the result equals one process's; rank 0 alone validates, prints and writes checkpoints.
    `distributed=False` trains in this process alone. See docs/distributed.md.

    `standardize=True` fits per-column standardization on `train` (inputs; targets only for
    "mse", never bce's 0/1 or ce's class indices) and trains on the scaled data. Either way
    the model records a `ModelBundle` (scaling, loss link, mode, window): `sr.predict`,
    `StreamPool(sr.ModelBundle.of(model))`, ONNX export and `model.save` then answer in
    the user's units (probabilities for bce/ce), and predict in the training mode.

    `threads`: CPU threads for the run (None: one for small recurrent steps, see
    statefulrnn/threads.py); the caller's torch setting is restored afterwards.
    """
    check_threads(threads)
    cfg = resolve(config, options, others=_RUN_KEYWORDS)
    if cfg.metrics is None:
        cfg = replace(cfg, metrics=tuple(losses.default_metrics(cfg.loss)))
    _check_data(model, train, cfg, "train")
    if val is not None:
        _check_data(model, val, cfg, "val")
    scaling = Scaling.for_loss(train, cfg.loss) if standardize else None
    if scaling is not None:
        train = scaling.apply(train)
        val = scaling.apply(val) if val is not None else None
    if cfg.mode == "stateful" and cfg.batch_size > len(train):
        # more lanes than sequences: each sequence already has a lane of its own, and the
        # extra lanes would hold only padding (weight 0) yet cost memory per lane
        # (batch_size=10**9 on 8 sequences ran out of memory at 21.6 GB)
        cfg = replace(cfg, batch_size=len(train))
    if checkpoint is not None:
        records.check_replaceable(checkpoint)  # before training, not after the first epoch
    if device is not None:
        _move(model, device)
    for cb in callbacks:
        if isinstance(cb, EarlyStopping) and cb.monitor is None:
            cb.monitor = default_monitor(cfg.mode, val is not None)
    world = join_world(distributed, model)  # Local: this process alone; Ranks: torchrun's
    with threads_for(threads, model, cfg.batch_size):
        history = _train(model, train, val, cfg, callbacks, checkpoint, resume, verbose, world)
    fit_options = {
        k: getattr(cfg, k) for k in ("stride", "target", "burn_in", "backprop", "val_window")
    }
    ModelBundle(
        model, scaling, cfg.loss, mode=cfg.mode, window=cfg.window, fit=fit_options
    ).attach()
    return history


# fit's keywords that say how to run, not what to train (named in the unknown-option error)
_RUN_KEYWORDS = tuple(
    name for name, p in inspect.signature(fit).parameters.items() if p.kind is p.KEYWORD_ONLY
)


def _train(model, train, val, cfg: TrainConfig, callbacks, checkpoint, resume, verbose,
           world: Local) -> History:  # fmt: skip
    """The epochs of `fit` (its checks done): optimizer, resume, callbacks, checkpoints."""
    epochs = cfg.epochs
    torch.manual_seed(cfg.seed)
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr)
    step = _Step(model, opt, losses.get_loss(cfg.loss), cfg.clip)

    history, start_epoch = History(), 0
    if checkpoint is not None and resume and world.is_main and has_checkpoint(checkpoint):
        history, trainer = load_checkpoint(checkpoint, model, opt)
        _check_resumable(trainer.get("config", {}), cfg, checkpoint)
        start_epoch = int(trainer["epoch"]) + 1
    history, start_epoch = world.start(opt, history, start_epoch)  # every rank from rank 0's

    for cb in callbacks:
        cb.on_train_begin(model, history)
    for epoch in range(start_epoch, epochs):
        record = _train_one_epoch(model, train, val, cfg, step, epoch, verbose, checkpoint, world)
        history.append(record)
        stop = any(cb.on_epoch_end(epoch, record, model) for cb in list(callbacks))
        stop = world.from_main(stop)
        if checkpoint is not None and world.is_main:
            save_checkpoint(
                checkpoint, model, opt, history, {"epoch": epoch, "config": cfg.record()}
            )
        if verbose and world.is_main:
            _print_epoch(record, epochs)
        if stop:
            break
    for cb in callbacks:
        cb.on_train_end(model)
    return history


def default_monitor(mode: str, has_val: bool = True) -> str:
    """What early stopping watches by default: the validation loss of the prediction mode
    that matches training (windowed for stateless), or the training loss without val."""
    if not has_val:
        return "loss"
    return "val_loss_windowed" if mode == "stateless" else "val_loss"


def _move(model: RecurrentModel, device: torch.device | str) -> None:
    """model.to(device), refused up front (model untouched) if this torch cannot reach it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={device!r} is not a torch device: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r}, but this torch ({torch.__version__}) sees no CUDA GPU "
            f"(torch.cuda.is_available() is False). Train on device='cpu', or install a CUDA "
            "build of torch on a machine with a GPU. The model is unchanged."
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r}, but MPS is not available here; use device='cpu'.")
    before = model.device
    try:
        model.to(dev)
    except (RuntimeError, AssertionError) as err:
        model.to(before)  # never leave the weights split between devices
        raise ValueError(f"could not move the model to {device!r}: {err}") from None


def _warn_few_updates(cfg: TrainConfig, schedule: Schedule, train: Sequences) -> None:
    updates = len(schedule)
    if updates >= FEW_UPDATES_PER_EPOCH or updates * cfg.epochs >= FEW_UPDATES_IN_RUN:
        return
    rows = schedule.bounds[-1]
    if cfg.mode == "stateful":
        what = (
            f"{len(train)} sequence(s) of {int(train.lengths.max())} steps at most, in "
            f"{cfg.batch_size} lanes of window {cfg.window}"
        )
        fix = (
            "a smaller window, fewer lanes (batch_size), or cut long series into more "
            "sequences (Sequences.cut)"
        )
    else:
        what = f"{rows} windows of {cfg.window} steps, {cfg.batch_size} per batch"
        fix = "a smaller batch_size, or overlapping windows (stride < window, e.g. stride=1)"
    warnings.warn(
        f"each epoch has only {updates} optimizer updates ({what}): {cfg.epochs} "
        f"epochs give {updates * cfg.epochs} updates in all, which likely under-trains. Use "
        f"{fix}, or more epochs.",
        FewUpdatesWarning,
        stacklevel=4,
    )


def _train_one_epoch(
    model, train, val, cfg, step, epoch, verbose, checkpoint, world: Local
) -> dict[str, Any]:
    t0 = time.perf_counter()
    schedule = build_schedule(train, cfg, epoch, model.dtype)
    if epoch == 0 and world.is_main:
        _warn_few_updates(cfg, schedule, train)
    scored, norms = schedule.scored_steps, chunk_norms(schedule)  # of all ranks' lanes
    schedule = world.share_out(schedule).to(model.device)  # this rank's lanes (all, alone)
    progress = Progress(
        len(schedule), f"epoch {epoch + 1}/{cfg.epochs}", enabled=verbose > 0 and world.is_main
    )
    good = copy.deepcopy(model.state_dict())
    model.train()
    try:
        train_loss, _ = run_epoch(
            world.replica,
            schedule,
            cfg,
            step,
            epoch=epoch,
            progress=progress,
            train=train,
            norms=norms,
            reduce=world.sum_loss,
        )
    except TrainingDiverged as err:
        model.load_state_dict(good)  # back to the weights that gave finite losses
        kept = f" The last good checkpoint in {checkpoint} is kept." if checkpoint else ""
        raise TrainingDiverged(
            f"{err} The model is restored to its weights at the start of epoch {epoch}.{kept}"
        ) from None
    finally:
        progress.close()
    bad = _nonfinite_weight(model)  # the loss is checked before each update, not after the last
    if bad is not None:
        model.load_state_dict(good)
        kept = f" The last good checkpoint in {checkpoint} is kept." if checkpoint else ""
        raise TrainingDiverged(
            f"epoch {epoch}: weight {bad!r} is not finite (NaN or inf) after the epoch's last "
            f"update; lower the learning rate (lr={cfg.lr}) or clip gradients. The model is "
            f"restored to its weights at the start of epoch {epoch}.{kept}"
        )
    seconds = time.perf_counter() - t0
    # numbered from 1, as the console shows it (`epoch` inside fit counts from 0)
    record: dict[str, Any] = {"epoch": epoch + 1, "loss": train_loss}
    if val is not None and world.is_main:
        windowed = cfg.mode == "stateless" or cfg.val_window is not None
        record.update(validate(model, val, cfg, windowed=windowed))
    record["seconds"] = seconds
    record["scored_steps"] = scored
    return world.from_main(record)


def _nonfinite_weight(model) -> str | None:
    """The name of the first parameter holding NaN or inf (one device sync per epoch)."""
    params = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
    if not params:
        return None
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in params])
    if bool(finite.all()):
        return None
    return params[int((~finite).nonzero()[0])][0]


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, path) -> None:
    now = cfg.record()
    differ = [k for k in now if k != "epochs" and k in saved and _norm(saved[k]) != _norm(now[k])]
    if differ:
        k = differ[0]
        raise ValueError(
            f"cannot resume from {path}: it was trained with {k}={saved[k]!r}, "
            f"this call has {k}={now[k]!r}. Use the same settings or a new checkpoint folder."
        )


def _norm(v):
    return list(v) if isinstance(v, tuple) else v


def _print_epoch(record: dict[str, Any], epochs: int) -> None:
    parts = [f"epoch {record['epoch']}/{epochs}"]
    for k, v in record.items():
        if k in ("epoch",):
            continue
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    print("  ".join(parts), flush=True)
