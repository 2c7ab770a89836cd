"""`statefulrnn evaluate MODEL_DIR DATA`: losses and metrics in both prediction modes, and a plot."""

from __future__ import annotations

from pathlib import Path

from statefulrnn import records
from statefulrnn.cli import options as o

HELP = "score a trained model on a file, stateful vs windowed"  # its line in `statefulrnn --help`
DESCRIPTION = """\
Score a model from `statefulrnn train` on a CSV or Parquet file that has the target columns.

Both prediction modes are scored on the same rows: stateful (one pass carrying state through
each whole sequence) and windowed (a fresh pass over the --window rows before each row, as a
stateless model is used). Metrics are in your units: rmse and mae per target; `loss` is the MSE
of standardized targets, the number training minimized. --season adds a seasonal-naive
baseline: the target's value one season (or whole seasons) earlier.

--tail F scores only the last fraction F of each id's rows: the held-out part of a training
file trained with --val F. The stateful pass still runs through all the history before it.

An error-by-step plot (mean squared error against the step since a sequence's start, one line
per mode) is written to MODEL_DIR/error_by_step.png unless --plot or --no-plot says otherwise.
"""

EPILOG = """\
examples:
  statefulrnn evaluate models/elec elec_2015.csv
  statefulrnn evaluate models/elec elec.csv --tail 0.2 --season 48,336 --json scores.json
  statefulrnn evaluate models/elec test.parquet --window 96 --plot err.png
"""

DEFAULTS = {"season": ()}


def add_parser(subparsers) -> None:
    p = o.add_command(subparsers, "evaluate", HELP, DESCRIPTION, EPILOG)
    o.add_model_and_data(p)
    o.add_window(p)
    p.add_argument(
        "--tail",
        type=o.number,
        metavar="F",
        help="score only the last fraction F of each id's rows (default: every row)",
    )
    p.add_argument(
        "--season",
        type=o.ints,
        metavar="S,...",
        help="add a seasonal-naive baseline for each season S (in rows)",
    )
    p.add_argument("--plot", metavar="PNG", help="where to write the error-by-step plot")
    p.add_argument("--no-plot", action="store_true", default=None, help="write no plot")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    o.add_read_options(p)
    o.add_threads(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from statefulrnn.tabular.predict import evaluate_table  # torch: imported when a run starts

    try:
        opts = o.resolve(args, "evaluate", DEFAULTS)
        o.require(opts, "model", "data")
        plot = None
        if not opts["no_plot"]:
            plot = opts["plot"] or str(Path(opts["model"]) / "error_by_step.png")
        ev = evaluate_table(
            opts["model"],
            opts["data"],
            window=opts["window"],
            tail=opts["tail"],
            seasons=opts["season"],
            plot=plot,
            fill=opts["fill"],
            drop=opts["drop"],
            sort=opts["sort"],
        )
    except (ValueError, OSError, ImportError) as err:
        return o.fail("evaluate", err)
    for line in ev.report.lines():
        print(line)
    print()
    print(ev.table())
    if plot:
        print(f"\nerror-by-step plot: {plot}")
    if opts["json"]:
        records.atomic_write_json(opts["json"], ev.to_dict())
    return 0
