"""`statefulrnn train DATA ...`: train a model from a CSV or Parquet file (tabular.train_table)."""

from __future__ import annotations

from dataclasses import fields

from statefulrnn.cli import distributed
from statefulrnn.cli import options as o
from statefulrnn.model import cells
from statefulrnn.modes import TRAIN_MODES
from statefulrnn.tabular.config import MONITORS, TableTrainConfig, defaults
from statefulrnn.train.config import OPTIMIZER_NAMES

HELP = "train a model from a CSV or Parquet file"  # its line in `statefulrnn --help`
DESCRIPTION = """\
Train a stateful (or stateless) recurrent model on a CSV or Parquet file.

Rows with the same --id form one sequence, ordered by --time (no --id: the whole file is one
sequence). Targets are predicted --horizon rows ahead; the last rows of each id, which have no
row that far ahead, are kept as inputs but not scored. Gaps in time are reported, not filled.

Validation (--val 0.2) is the last 20% of every id's rows, not a random set of ids: with one
long series there is nothing else to split, and the model is judged on the future it has not
seen. Standardization is fitted on the training rows only and saved with the model, so
`statefulrnn predict` returns predictions in your units. Losses printed per epoch are the MSE
of standardized targets; the summary at the end is in your units, in both prediction modes.

A stateful model carries its state from window to window, so it can use history longer than
--window; a stateless one sees only the last --window rows. With fewer sequences than
--batch-size lanes, each training sequence is cut into contiguous pieces to fill the lanes.
"""

EPILOG = """\
examples:
  # one long series, predict demand 48 half-hours ahead, stateful, 1-day windows
  statefulrnn train elec.csv --time Time --features Demand,Temperature \\
      --targets Demand --horizon 48 --window 48 --out models/elec

  # many sensors in one file, stateless windows of 100 rows, early stop after 3 bad epochs
  statefulrnn train logs.parquet --id sensor --time ts --features temp,vib --targets fault \\
      --mode stateless --window 100 --patience 3 --out models/logs

  # everything in a config file, one flag overridden
  statefulrnn train --config elec.toml --epochs 5

config file (TOML; keys are the long flag names, here or under a [train] table):
  data = "elec.csv"
  time = "Time"
  features = ["Demand", "Temperature"]
  targets = "Demand"
  horizon = 48
  window = 48
  out = "models/elec"

MODEL_DIR gets the weights, extra.json (columns, scaling, options), history.json and
summary.json.
"""


def add_parser(subparsers) -> None:
    d = defaults()
    p = o.add_command(subparsers, "train", HELP, DESCRIPTION, EPILOG)
    p.add_argument("data", nargs="?", metavar="DATA", help="CSV (.csv, .tsv) or Parquet file")
    o.add_config(p)
    t = p.add_argument_group("the table")
    t.add_argument("--id", metavar="COL", help="column naming the sequence of each row")
    t.add_argument("--time", metavar="COL", help="column ordering rows within a sequence")
    t.add_argument("--features", metavar="A,B", type=o.names, help="input columns (required)")
    t.add_argument("--targets", metavar="Y", type=o.names, help="target columns (required)")
    t.add_argument("--weight", metavar="COL", help="per-row weight of the target (0: not scored)")
    t.add_argument(
        "--horizon",
        type=o.integer,
        metavar="H",
        help=f"predict the targets H rows ahead (default: {d['horizon']})",
    )
    o.add_read_options(p)
    m = p.add_argument_group("model and training")
    m.add_argument(
        "--mode",
        choices=TRAIN_MODES,
        help=f"stateful: state carried across windows; stateless: each window starts from zero "
        f"(default: {d['mode']})",
    )
    m.add_argument(
        "--window", type=o.integer, metavar="N", help=f"steps per window (default: {d['window']})"
    )
    m.add_argument(
        "--loss",
        choices=["mse", "bce", "ce"],
        help="mse: real-valued targets (standardized); bce: 0/1 targets, predictions are "
        "probabilities; ce: one target column of class indices 0..K-1, predictions are one "
        f"probability per class (default: {d['loss']})",
    )
    m.add_argument(
        "--stride",
        type=o._optional_int,
        metavar="S",
        help="stateless: steps between window starts; 1 = every window (default: --window)",
    )
    m.add_argument(
        "--target",
        choices=["all", "last"],
        help="stateless: score every step of a window, or only its last (default: all)",
    )
    m.add_argument(
        "--burn-in",
        type=o._burn_in,
        metavar="N|all",
        help="stateless: run N steps (or all history) before each window, without gradient",
    )
    m.add_argument(
        "--backprop",
        type=o._optional_int,
        metavar="K2",
        help="stateful: backpropagate K2 >= --window steps per chunk (TBPTT(window, K2))",
    )
    m.add_argument(
        "--batch-size",
        type=o.integer,
        metavar="B",
        help=f"lanes (stateful) or windows (stateless) per step (default: {d['batch_size']})",
    )
    m.add_argument(
        "--epochs", type=o.integer, metavar="E", help=f"at most E epochs (default: {d['epochs']})"
    )
    m.add_argument("--cell", choices=cells.names(), help=f"recurrent cell (default: {d['cell']})")
    m.add_argument(
        "--hidden", type=o.integer, metavar="H", help=f"hidden units (default: {d['hidden']})"
    )
    m.add_argument(
        "--layers", type=o.integer, metavar="L", help=f"stacked layers (default: {d['layers']})"
    )
    m.add_argument(
        "--optimizer",
        choices=OPTIMIZER_NAMES,
        help=f"optimizer (default: {d['optimizer']})",
    )
    m.add_argument("--lr", type=o.number, help=f"learning rate (default: {d['lr']})")
    m.add_argument(
        "--no-shuffle",
        dest="shuffle",
        action="store_false",
        default=None,
        help="keep the sequence/window order in every epoch (TOML: shuffle = false)",
    )
    m.add_argument(
        "--clip",
        type=o._optional_number,
        metavar="NORM",
        help=f"max gradient norm, or 'none' (default: {d['clip']})",
    )
    m.add_argument("--seed", type=o.integer, help=f"random seed (default: {d['seed']})")
    m.add_argument(
        "--device", metavar="DEV", help="torch device to train on: cpu, cuda, cuda:1 (default: cpu)"
    )
    v = p.add_argument_group("validation and output")
    v.add_argument(
        "--val",
        type=o.number,
        metavar="F",
        help=f"hold out the last fraction F of each id's rows; 0: none (default: {d['val']})",
    )
    v.add_argument(
        "--patience",
        type=o.integer,
        metavar="P",
        help=f"stop after P epochs without a better validation loss; 0: never (default: {d['patience']})",
    )
    v.add_argument(
        "--monitor",
        choices=list(MONITORS),
        help="the validation loss early stopping watches and the kept epoch is chosen by: "
        "val_loss (stateful prediction) or val_loss_windowed (default: the training mode's, "
        "windowed for stateless)",
    )
    v.add_argument(
        "--val-window",
        type=o._optional_int,
        metavar="N",
        help="stateless: window of the windowed validation loss (default: --window)",
    )
    v.add_argument("--out", metavar="MODEL_DIR", help="model folder to write (required)")
    v.add_argument(
        "--force",
        action="store_true",
        default=None,
        help="replace --out even if it holds files statefulrnn did not write (default: refuse)",
    )
    distributed.add_flag(p, "train")
    o.add_threads(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from statefulrnn.tabular.train import train_table  # torch: imported when a run starts
    from statefulrnn.train import TrainingDiverged

    try:
        main = distributed.join(args, "train")  # under torchrun: rank 0 prints and writes
        opts = o.resolve(args, "train", defaults())
        o.require(opts, "data", "features", "targets", "out")
        cfg = TableTrainConfig(
            **{f.name: opts[f.name] for f in fields(TableTrainConfig) if f.name in opts}
        )
        result = train_table(
            cfg, echo=print if main else distributed.silent, force=bool(opts.get("force"))
        )
    except (ValueError, OSError, ImportError, TrainingDiverged) as err:
        return o.fail("train", err)
    if not main:
        return 0
    print()
    print(result.history.table())
    print()
    print(result.summary())
    return 0
