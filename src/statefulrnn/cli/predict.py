"""`statefulrnn predict MODEL_DIR DATA -o preds.csv`: predictions joined to the input's rows."""

from __future__ import annotations

import sys

from statefulrnn.cli import options as o
from statefulrnn.modes import PREDICT_MODES

HELP = "predict a CSV or Parquet file with a trained model"  # its line in `statefulrnn --help`
DESCRIPTION = """\
Predict every row of a CSV or Parquet file with a model from `statefulrnn train`.

The file needs the model's id, time and feature columns (targets are not needed). Inputs are
standardized with the training statistics saved in MODEL_DIR and predictions scaled back, so
they are in your units. The output has one row per input row, in the input's order: the id and
time columns as read, then <target>_pred, the prediction made at that row for the target
--horizon rows later (the horizon the model was trained with). Rows dropped for missing values
(--drop) get empty predictions. It never overwrites DATA. In CSV output, a text cell that a
spreadsheet would run as a formula (starting with = + - @, tab or CR) gets a leading '
(--no-escape-formulas writes it as it is).

stateful: one pass over each sequence carrying state, O(T); the model uses all the history
before each row. windowed: for every row a fresh pass over the --window rows ending there,
from a zero state (or after --burn-in rows), O(T·window): what a stateless (Keras-style)
model does. The default is the mode the model was trained for: windowed (with the training
window and burn-in) for a stateless model, stateful otherwise. A bce model's predictions are
probabilities; a ce model gives the likeliest class and one probability column per class.
"""

EPILOG = """\
examples:
  statefulrnn predict models/elec elec_2015.csv -o preds.csv
  statefulrnn predict models/elec elec_2015.parquet --mode windowed --window 48 -o preds.parquet
  statefulrnn predict models/elec new.csv > preds.csv        # no -o: CSV on standard output
"""

DEFAULTS: dict = {}  # mode, window, burn-in: the model's own (its training settings)


def add_parser(subparsers) -> None:
    p = o.add_command(subparsers, "predict", HELP, DESCRIPTION, EPILOG)
    o.add_model_and_data(p)
    p.add_argument(
        "--mode",
        choices=PREDICT_MODES,
        help="prediction mode (default: the one the model was trained for)",
    )
    o.add_window(p)
    p.add_argument(
        "--burn-in",
        type=o._burn_in,
        metavar="N|all",
        help="windowed mode: start each pass from the state after N earlier rows (or all of "
        "them) instead of zero (default: the training burn-in)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="PREDS",
        help="write .csv, .tsv or .parquet (default: CSV on standard output)",
    )
    p.add_argument(
        "--no-escape-formulas",
        dest="escape_formulas",
        action="store_false",
        default=None,
        help="write text cells as they are; by default a CSV cell starting with = + - @ tab "
        "or CR gets a leading ' so a spreadsheet shows it as text instead of running it",
    )
    o.add_read_options(p)
    o.add_threads(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from statefulrnn.data.files import spreadsheet_safe  # torch: imported when a run starts
    from statefulrnn.tabular.predict import predict_table

    try:
        opts = o.resolve(args, "predict", DEFAULTS)
        o.require(opts, "model", "data")
        frame, report = predict_table(
            opts["model"],
            opts["data"],
            mode=opts["mode"],
            window=opts["window"],
            burn_in=opts["burn_in"],
            out=opts["output"],
            escape_formulas=opts["escape_formulas"] is not False,
            fill=opts["fill"],
            drop=opts["drop"],
            sort=opts["sort"],
        )
    except (ValueError, OSError, ImportError) as err:
        return o.fail("predict", err)
    for line in report.lines():
        print(line, file=sys.stderr)
    if opts["output"] is None:
        if opts["escape_formulas"] is not False:
            frame = spreadsheet_safe(frame)
        try:
            frame.to_csv(sys.stdout, index=False)
            sys.stdout.flush()
        except BrokenPipeError:
            return o.stdout_gone()
    else:
        print(f"wrote {len(frame)} rows to {opts['output']}", file=sys.stderr)
    return 0
