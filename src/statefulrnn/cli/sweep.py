"""`statefulrnn sweep TASK|DATA --trials N`: search window, state mode and size with Optuna."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from statefulrnn.cli import options as o
from statefulrnn.modes import PREDICT_MODES

# its line in `statefulrnn --help`
HELP = "search window, state mode and model size with Optuna (resumable, distributed)"
DESCRIPTION = """\
Search the training configuration of a built-in task or a CSV/Parquet file: state mode
(stateful, stateless, stateless + burn-in), window, batch size, cell, hidden units, layers and
learning rate. Each trial trains one configuration and is scored by its validation loss in the
prediction mode you will deploy (--predict); hopeless trials are stopped after an epoch
(Optuna's median pruner). Sampling is Optuna's TPE.

The study is kept in a database: by default sweeps.db in the run folder, so an interrupted
sweep resumes when you rerun the same command. Give every worker the same --storage URL
(SQLite on a shared disk, PostgreSQL, MySQL: any SQLAlchemy URL) and the same arguments to run
one study on several machines; --trials N counts complete and pruned trials over all workers,
exactly. A trial whose worker dies is marked FAIL (at once on the same machine, after a
60 s heartbeat grace period elsewhere) and replaced.

A DATA file is read and split as `statefulrnn train` does (same options, or its --config
file); the best configuration is written as best.toml, which `statefulrnn train --config`
reads and retrains to the trial's score. Train options the sweep does not search (--loss,
and from --config: optimizer, shuffle, stride, target, val_window, device) are kept fixed in
every trial and repeated in best.toml; backprop and monitor are refused (the window is
searched; --predict decides what selects the epoch). The search space has defaults per task; --space FILE.toml changes any option:

  epochs = 30                                  # fixed
  cell = ["lstm", "gru"]                       # one of these
  window = { low = 1, high = 50, log = true }  # an integer range
  lr = { low = 1e-4, high = 1e-2, log = true } # a float range
  mode = ["stateful"]                          # options: mode window burn_in batch_size cell
                                               #   hidden layers lr clip epochs patience
"""

EPILOG = """\
examples:
  statefulrnn sweep first-bit --trials 30
  statefulrnn sweep moving-average --trials 40 --predict windowed --out runs/ma-windowed
  statefulrnn sweep elec.csv --time Time --features Demand,Temperature --targets Demand \\
      --horizon 48 --trials 50 --timeout 3600
  statefulrnn sweep --config elec.toml --trials 50 --storage postgresql://me@db/sweeps  # each worker

Writes to --out (default runs/sweep-NAME/): sweeps.db, trials.csv, best.toml, sweep.json,
report.html (self-contained) and its PNG plots.
"""

SWEPT_FROM_CONFIG = ("val", "epochs", "patience", "clip")  # the space's defaults, from train's
# train options a sweep cannot keep: it decides them itself (window is searched, so a fixed
# backprop >= window cannot hold; --predict decides what early stopping watches)
REFUSED = {
    "backprop": "the window is searched, and backprop must be >= it; sweep stateless or "
    "stateful without it, then add it to best.toml",
    "monitor": "the sweep's --predict decides which validation loss selects the epoch",
}
NOT_USED = ("data", "out", "force", "seed", "threads")  # the sweep's own (DATA, --out, ...)


def add_parser(sub) -> None:
    p = o.add_command(sub, "sweep", HELP, DESCRIPTION, EPILOG)
    p.add_argument("target", nargs="?", metavar="TASK|DATA", help="task name or CSV/Parquet file")
    p.add_argument("--trials", type=int, required=True, metavar="N", help="trials in all workers")
    p.add_argument("--timeout", type=float, metavar="S", help="start no trial after S seconds")
    p.add_argument("--storage", metavar="URL", help="study database (default: OUT/sweeps.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the task or file name)")
    p.add_argument("--space", metavar="FILE.toml", help="changes to the default search space")
    p.add_argument(
        "--predict",
        choices=PREDICT_MODES,
        default="stateful",
        help="prediction mode the objective scores (default: stateful)",
    )
    p.add_argument("--epochs", type=int, metavar="E", help="epochs per trial (fixed)")
    p.add_argument("--out", type=Path, metavar="DIR", help="run folder (default runs/sweep-NAME)")
    p.add_argument("--seed", type=int, default=0, help="data and training seed (default 0)")
    o.add_threads(p)
    t = p.add_argument_group("a built-in task")
    t.add_argument("--quick", action="store_true", help="the task's small sizes, fewer epochs")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a task parameter (see `statefulrnn tasks`); repeatable",
    )
    d = p.add_argument_group("a CSV or Parquet file (as `statefulrnn train`)")
    o.add_config(d)
    d.add_argument("--id", metavar="COL", help="column naming the sequence of each row")
    d.add_argument("--time", metavar="COL", help="column ordering rows within a sequence")
    d.add_argument("--features", metavar="A,B", type=o.names, help="input columns")
    d.add_argument("--targets", metavar="Y", type=o.names, help="target columns")
    d.add_argument("--weight", metavar="COL", help="per-row weight of the target (0: not scored)")
    d.add_argument("--horizon", type=o.integer, metavar="H", help="predict H rows ahead")
    d.add_argument("--val", type=o.number, metavar="F", help="validation tail (default 0.2)")
    d.add_argument(
        "--loss",
        choices=["mse", "bce", "ce"],
        help="as `statefulrnn train --loss` (default mse); --config may also fix optimizer, "
        "shuffle, stride, target, val_window and device, which every trial then uses",
    )
    o.add_read_options(p)
    p.set_defaults(run=run)


def _table_options(args) -> tuple[str | None, dict]:
    """The DATA file and its read options: the config file's, then the flags given here."""
    from statefulrnn.experiments.space import OPTIONS as SEARCHED
    from statefulrnn.experiments.targets import FIXED_OPTIONS, TABLE_OPTIONS

    keys = (*TABLE_OPTIONS, *SWEPT_FROM_CONFIG, *FIXED_OPTIONS)
    opts = {}
    data = args.target
    if args.config:
        cfg = o.load_config(args.config, "train")
        opts = {k: v for k, v in cfg.items() if k in keys}
        refused = [k for k in cfg if k in REFUSED and cfg[k] is not None]
        if refused:
            k = refused[0]
            raise o.OptionError(f"{args.config}: a sweep cannot keep {k!r} fixed: {REFUSED[k]}.")
        searched = [k for k in cfg if k in SEARCHED and k not in keys]
        if searched:
            print(
                f"note: {args.config} sets {', '.join(searched)}; a sweep searches these "
                "(fix one with --space)",
                file=sys.stderr,
            )
        unused = [k for k in cfg if k in NOT_USED and k != "data"]
        if unused:
            print(
                f"note: {args.config} sets {', '.join(unused)}; the sweep's own options "
                "(--out, --seed, --threads) decide these",
                file=sys.stderr,
            )
        data = data or cfg.get("data")
    for k in (*TABLE_OPTIONS, *SWEPT_FROM_CONFIG, "loss"):  # the flags this command has
        v = getattr(args, k, None)
        if v is not None:
            opts[k] = v
    return data, opts


def run(args: argparse.Namespace) -> int:
    from statefulrnn.experiments import sweep_files
    from statefulrnn.experiments.sweep import sweep
    from statefulrnn.tasks import TASKS

    t0 = time.perf_counter()
    try:
        is_task = args.target in TASKS
        data, table = (args.target, None) if is_task else _table_options(args)
        if data is None:
            raise ValueError(
                "name a TASK (" + ", ".join(TASKS) + ") or a DATA file, here or in --config."
            )
        space = args.space  # a TOML file, or (with --epochs) its options plus epochs
        if args.epochs is not None:
            from statefulrnn.experiments.space import load_toml

            space = {**(load_toml(args.space) if args.space else {}), "epochs": args.epochs}
        result = sweep(
            data,
            trials=args.trials,
            timeout=args.timeout,
            storage=args.storage,
            study=args.study,
            space=space or None,
            predict=args.predict,
            seed=args.seed,
            out=args.out,
            quick=args.quick,
            params=o.name_values(args.set) if is_task else None,
            table=table,
        )
    except (ValueError, OSError, ImportError) as err:
        return o.fail("sweep", err)
    print()
    print("\n".join(sweep_files.table_lines(result.trials, result.best)))
    print()
    counted = sum(n for k, n in result.counts.items() if k in ("COMPLETE", "PRUNED"))
    print(f"{counted} of {result.requested} trials counted; states: {result.counts}")
    if result.best is None:
        why = f" within --timeout {args.timeout:g} s" if args.timeout is not None else ""
        print(
            f"statefulrnn sweep: error: no trial finished{why}; nothing to recommend "
            f"(the study is kept in {result.storage}: rerun to continue it)",
            file=sys.stderr,
        )
        return 1
    if result.best is not None:
        b = result.best
        print(
            f"best: trial {b['number']}, validation loss {b['value']:.4g}: {b['mode']}, "
            f"window {b['window']}, batch {b['batch_size']}, {b['cell']} {b['hidden']}x"
            f"{b['layers']}, lr {b['lr']:.3g}"
        )
    for name, path in result.files.items():
        print(f"{name}: {path}")
    print(f"done in {time.perf_counter() - t0:.0f} s")
    return 0
