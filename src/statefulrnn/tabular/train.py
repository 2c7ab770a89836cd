"""Train a model from a CSV or Parquet file: read, split by time, scale, fit, save, summarize.

The library call behind `statefulrnn train`. Validation is the tail of every id (the last
`val` fraction of its target rows), never a random choice of ids: with one long series there
is nothing else to split, and the model is judged on a future it has not seen. Scaling is
fitted on the training rows only. A stateful model on fewer sequences than lanes gets each
training sequence cut into contiguous pieces, so all `batch_size` lanes have work.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from statefulrnn import records
from statefulrnn.bundle import ModelBundle
from statefulrnn.data.files import read_sequences
from statefulrnn.data.frames import TableWarning
from statefulrnn.data.scaling import Scaling
from statefulrnn.data.sequences import Sequences
from statefulrnn.model import StatefulRNN
from statefulrnn.tabular.bundle import Bundle, extra_for
from statefulrnn.tabular.config import TableTrainConfig
from statefulrnn.tabular.predict import Evaluation, evaluate_sequences
from statefulrnn.train import EarlyStopping, History, fit
from statefulrnn.train.distributed import is_main_process
from statefulrnn.train.fit import FewUpdatesWarning, default_monitor


@dataclass
class TrainResult:
    history: History
    evaluation: Evaluation  # on the validation tail (or the training data with val 0)
    out: Path
    best_epoch: int | None
    stopped_early: bool
    seconds: float
    notes: list[str]
    evaluated_on: str = "the validation tail"

    def summary(self) -> str:
        ran = len(self.history)
        lines = [f"model saved to {self.out}  ({ran} epochs, {self.seconds:.1f} s)"]
        if self.best_epoch is not None:
            why = "early stop" if self.stopped_early else "best of the run"
            lines.append(f"weights of epoch {self.best_epoch} kept ({why})")
        lines += [
            "",
            f"scored on {self.evaluated_on}, in the targets' units:",
            self.evaluation.table(),
        ]
        return "\n".join(lines)


def lanes_for(train: Sequences, cfg: TableTrainConfig) -> int:
    """Pieces to cut each training sequence into so `batch_size` lanes have work (stateful)."""
    if cfg.mode != "stateful" or len(train) >= cfg.batch_size:
        return 1
    want = -(-cfg.batch_size // len(train))
    # pieces of at least 4 windows, so truncated BPTT still sees state carried across chunks
    longest_fit = int(train.lengths.min()) // (4 * cfg.window)
    return max(1, min(want, longest_fit))


def output_size(train: Sequences, loss: str) -> int:
    """Outputs of the network: one per target, or one logit per class for ce (classes
    0..K-1, K = the largest index in the training targets + 1). `statefulrnn sweep` uses it
    too, so its trials build the network `train` builds."""
    if loss != "ce":
        return train.num_outputs
    scored = [y[w > 0, 0] for y, w in zip(train.ys, train.ws)]
    top = max((float(c.max()) for c in scored if len(c)), default=0.0)
    return max(2, int(top) + 1)


class _echo_warnings:
    """Warnings of reading and fitting (e.g. an id-like column, few updates per epoch) as
    `warning: ...` lines through `echo` when they happen, kept in `notes` too."""

    CATEGORIES = (TableWarning, FewUpdatesWarning)

    def __init__(self, echo: Callable[[str], None], notes: list[str]):
        self.echo, self.notes = echo, notes

    def __enter__(self):
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        for c in self.CATEGORIES:
            warnings.simplefilter("always", c)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, self.CATEGORIES):
                self.notes.append(f"warning: {message}")
                self.echo(self.notes[-1])
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        return False


def check_out(cfg: TableTrainConfig, *, force: bool = False) -> None:
    """Refuse, before any training, an --out that would destroy what we did not write: a
    folder holding other files (unless `force`), or one that holds the input data (always)."""
    records.check_replaceable(cfg.out, force=force)
    out = Path(cfg.out).resolve()
    data = Path(cfg.data).resolve()
    if data == out or out in data.parents:
        raise records.UsageError(
            f"--out {cfg.out} holds the input data {cfg.data}: saving the model there would "
            "delete it. Name a new folder for the model."
        )


def save_model(model, out: str, extra: dict[str, Any], epochs: int, *, force: bool) -> Path:
    """model.save, and if writing fails (a full disk, a folder gone), a second try in the
    system's temporary folder, so hours of training are not lost with the error."""
    try:
        return model.save(out, extra=extra, force=force)
    except OSError as err:
        try:
            rescue = Path(tempfile.mkdtemp(prefix="statefulrnn-unsaved-")) / "model"
            model.save(rescue, extra=extra)
            where = f"the trained model was written to {rescue} instead"
        except OSError as err2:
            where = f"writing it to the temporary folder failed too ({err2})"
        raise OSError(
            f"training finished ({epochs} epochs) but writing the model to {out} failed: "
            f"{err}; {where}. {out} was left as it was."
        ) from err


def train_table(
    cfg: TableTrainConfig, *, echo: Callable[[str], None] = print, force: bool = False
) -> TrainResult:
    """Read, split, scale, fit, save to cfg.out (replacing one of our folders only, unless
    `force`), evaluate."""
    cfg.check()
    check_out(cfg, force=force)
    t0 = time.perf_counter()
    read: dict[str, Any] = {"fill": cfg.fill, "drop": cfg.drop, "sort": cfg.sort}
    notes: list[str] = []
    with _echo_warnings(echo, notes):
        seqs = read_sequences(
            cfg.data,
            id=cfg.id,
            time=cfg.time,
            features=cfg.features,
            targets=cfg.targets,
            weight=cfg.weight,
            horizon=cfg.horizon,
            **read,
        )
    for line in seqs.report.lines():
        echo(line)
    if cfg.val > 0:
        train, val = seqs.tail_split(cfg.val)
        echo(
            f"validation: the last {cfg.val:.0%} of each id's rows ({val.scored_steps} scored "
            f"steps); training: the rows before ({train.scored_steps} scored steps)"
        )
    else:
        train, val = seqs, None
    # training rows only: the tail never shapes the scale; 0/1 and class targets never scaled
    scaling = Scaling.for_loss(
        train, cfg.loss, feature_names=cfg.features, target_names=cfg.targets
    )
    train_s = scaling.apply(train)
    val_s = scaling.apply(val) if val is not None else None
    parts = lanes_for(train_s, cfg)
    if parts > 1:
        train_s = train_s.cut(parts)
        notes.append(
            f"stateful: each training sequence cut into {parts} pieces to fill "
            f"{cfg.batch_size} lanes ({len(train_s)} pieces; state starts at zero in each)"
        )
        echo(notes[-1])

    if cfg.mode == "stateful" and len(train_s) < cfg.batch_size:  # fit lowers the lanes
        notes.append(f"stateful: {len(train_s)} lanes, one per training sequence")
        echo(notes[-1])

    torch.manual_seed(cfg.seed)
    main = is_main_process()  # under torchrun, rank 0 alone writes the model folder
    model = StatefulRNN(
        len(cfg.features), cfg.hidden, output_size(train, cfg.loss), cell=cfg.cell, num_layers=cfg.layers
    )
    monitor = cfg.monitor or default_monitor(cfg.mode)
    if monitor == "val_loss_windowed" and cfg.val_window is None:
        cfg = replace(cfg, val_window=cfg.window)  # a stateful run scores it only when given
    stopper = None
    if val_s is not None and cfg.patience > 0:
        stopper = EarlyStopping(monitor=monitor, patience=cfg.patience, restore_best=True)
    with _echo_warnings(echo, notes):
        history = fit(
            model,
            train_s,
            val_s,
            cfg,  # its training options (TrainConfig's fields) are fit's
            callbacks=[stopper] if stopper else [],
            verbose=1,
            device=cfg.device,
        )
    train_dict = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    core = ModelBundle(
        model,
        scaling,
        cfg.loss,
        features=seqs.spec.features,
        targets=seqs.spec.targets,
        mode=cfg.mode,
        window=cfg.window,
        fit=dict(ModelBundle.of(model).fit),
    )
    core.attach()
    extra = extra_for(seqs.spec, core, read, train_dict)
    out = save_model(model, cfg.out, extra, len(history), force=force) if main else Path(cfg.out)
    bundle = Bundle(core, seqs.spec, read, train_dict)
    evaluation = evaluate_sequences(bundle, val if val is not None else seqs, window=cfg.window)
    best = history.best(monitor) if val_s is not None else None
    result = TrainResult(
        history=history,
        evaluation=evaluation,
        out=out,
        best_epoch=best["epoch"] if best else None,
        stopped_early=len(history) < cfg.epochs,
        seconds=time.perf_counter() - t0,
        notes=notes,
        evaluated_on="the validation tail" if val is not None else "the training data (no --val)",
    )
    if main:
        history.save(out / "history.json")
        records.atomic_write_json(
            out / "summary.json",
            {
                "evaluated_on": result.evaluated_on,
                "best_epoch": result.best_epoch,
                "epochs_run": len(history),
                "seconds": result.seconds,
                **evaluation.to_dict(),
            },
        )
    return result
