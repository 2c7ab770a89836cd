"""What a sweep tunes on: a built-in task, a CSV/Parquet file, or sequences in memory.

Each becomes a `Target`: train and validation sequences (a test set for tasks), the loss, and
a JSON description that names the data exactly, so a resumed study can tell whether it is
being asked about the same data. A table file is prepared exactly as `statefulrnn train`
prepares it (tail split, scaling fitted on the training rows), so the best configuration
found here is the one `statefulrnn train --config best.toml` then trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statefulrnn import losses
from statefulrnn.data.sequences import Sequences

# the options of `statefulrnn train` that say how to read a table into sequences
TABLE_OPTIONS = ("id", "time", "features", "targets", "weight", "horizon", "fill", "drop", "sort")
# `statefulrnn train` options a table sweep keeps as given (from --config or flags): every
# trial trains with them and best.toml repeats them, so `train` builds what the trials built
FIXED_OPTIONS = ("loss", "optimizer", "shuffle", "stride", "target", "val_window", "device")


@dataclass
class Target:
    name: str  # task name, file stem, or "sequences"
    kind: str  # "task", "table" or "sequences"
    train: Sequences
    val: Sequences
    test: Sequences | None  # tasks only: scored for the report, never for the choice
    loss: str  # "mse", "bce" or "ce"
    about: dict[str, Any]  # names the data: task + params, or file + read options
    epochs: int = 20  # the space's default epochs
    patience: int = 0  # the space's default patience (0: keep the last epoch's weights)
    clip: float | None = 1.0  # the space's default gradient clip
    baseline: dict[str, float] = field(default_factory=dict)
    table: dict[str, Any] | None = None  # table files: train's options that read the file
    fixed: dict[str, Any] = field(default_factory=dict)  # FIXED_OPTIONS given, but loss
    outputs: int | None = None  # the network's outputs (None: one per target column)

    @property
    def metrics(self) -> list[str]:
        return losses.default_metrics(self.loss)

    @property
    def max_length(self) -> int:
        return int(self.train.lengths.max())


def task_target(name: str, *, quick: bool, params: dict[str, Any] | None, seed: int) -> Target:
    from statefulrnn.experiments.space import TASK_SPACES
    from statefulrnn.tasks import get_task

    task = get_task(name)
    p = task.resolve(quick, {k: str(v) for k, v in (params or {}).items()})
    data = task.generate(p, seed)
    epochs = TASK_SPACES.get(name, {}).get("epochs", (20, 8))[1 if quick else 0]
    return Target(
        name=name,
        kind="task",
        train=data.train,
        val=data.val,
        test=data.test,
        loss=data.loss,
        about={"task": name, "quick": quick, "params": p, "seed": seed},
        epochs=epochs,
        baseline=dict(data.baseline),
    )


def table_target(path: str | Path, options: dict[str, Any]) -> Target:
    """A CSV/Parquet file read and split as `statefulrnn train` does, with its defaults."""
    from statefulrnn.data.files import read_sequences
    from statefulrnn.data.scaling import Scaling
    from statefulrnn.tabular.config import defaults
    from statefulrnn.tabular.train import output_size

    opts = {**defaults(), **{k: v for k, v in options.items() if v is not None}}
    for key in ("features", "targets"):
        if not opts.get(key):
            raise ValueError(
                f"sweeping {path} needs --{key} (the {key[:-1]} columns), on the command line "
                "or in the --config file."
            )
    if not 0.0 < opts["val"] < 1.0:
        raise ValueError(
            f"a sweep scores each trial on a validation tail, so val must be in (0, 1); "
            f"received {opts['val']}."
        )
    read: dict[str, Any] = {k: opts.get(k) for k in TABLE_OPTIONS}
    read["features"], read["targets"] = tuple(read["features"]), tuple(read["targets"])
    read["drop"], read["sort"] = bool(read["drop"]), bool(read["sort"])
    seqs = read_sequences(path, **read)
    train, val = seqs.tail_split(opts["val"])
    loss = opts["loss"]
    # training rows only, 0/1 and class targets never scaled: as `statefulrnn train` does
    scaling = Scaling.for_loss(
        train, loss, feature_names=read["features"], target_names=read["targets"]
    )
    fixed = {k: options[k] for k in FIXED_OPTIONS if options.get(k) is not None}
    table = {**read, "val": opts["val"], **fixed}
    # the study's identity: what trains, so `--loss mse` (the default) spelled out or left out
    # resumes the same study; options at their default are left out of it
    given = {k: v for k, v in fixed.items() if k != "loss" and v != defaults().get(k)}
    identity = {**read, "val": opts["val"], "loss": loss, **given}
    return Target(
        name=Path(path).name.split(".")[0],
        kind="table",
        train=scaling.apply(train),
        val=scaling.apply(val),
        test=None,
        loss=loss,
        about={"data": str(path), **{k: _plain(v) for k, v in identity.items()}},
        epochs=opts["epochs"],
        patience=opts["patience"],
        clip=opts["clip"],
        table={"data": str(path), **table},
        fixed={k: v for k, v in fixed.items() if k != "loss"},
        outputs=output_size(train, loss),
    )



def sequences_target(train: Sequences, val: Sequences, loss: str) -> Target:
    losses.get_loss(loss)
    return Target(
        name="sequences",
        kind="sequences",
        train=train,
        val=val,
        test=None,
        loss=loss,
        about={
            "sequences": {
                "train": [len(train), int(train.lengths.sum())],
                "val": [len(val), int(val.lengths.sum())],
            },
            "loss": loss,
        },
    )


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def resolve(
    task_or_data: Any,
    *,
    quick: bool = False,
    params: dict[str, Any] | None = None,
    table: dict[str, Any] | None = None,
    loss: str = "mse",
    seed: int = 0,
) -> Target:
    """A task name, a table file's path, a `(train, val)` pair of Sequences, or a TaskData."""
    from statefulrnn.tasks import TASKS, TaskData

    if isinstance(task_or_data, TaskData):
        t = sequences_target(task_or_data.train, task_or_data.val, task_or_data.loss)
        t.test, t.baseline = task_or_data.test, dict(task_or_data.baseline)
        return t
    if isinstance(task_or_data, tuple) and len(task_or_data) == 2:
        return sequences_target(*task_or_data, loss=loss)
    if isinstance(task_or_data, str) and task_or_data in TASKS:
        return task_target(task_or_data, quick=quick, params=params, seed=seed)
    if isinstance(task_or_data, (str, Path)):
        path = Path(task_or_data)
        if path.exists() or path.suffix:
            return table_target(path, table or {})
        from statefulrnn.tasks import get_task

        try:
            get_task(str(task_or_data))
        except ValueError as err:
            raise ValueError(f"{err} Or give a CSV or Parquet file to sweep on.") from None
    raise TypeError(
        f"sweep needs a task name, a CSV/Parquet path, a (train, val) pair of Sequences or a "
        f"TaskData; received {type(task_or_data).__name__}."
    )
