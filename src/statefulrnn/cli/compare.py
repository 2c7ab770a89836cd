"""`statefulrnn compare TASK`: stateful vs stateless on a seed task, with an honest report."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from statefulrnn.cli import distributed
from statefulrnn.cli import options as o

# its line in `statefulrnn --help`
HELP = "train a seed task stateful and stateless, compare both prediction modes"
DESCRIPTION = (
    "Run the configurations a seed experiment compares (the seed's stateless recipe, its "
    "stateful recipe, and statefulrnn's recommended one), evaluate each with stateful and "
    "windowed prediction, check the seed's claims, and write a report."
)

EPILOG = """examples:
  statefulrnn compare first-bit --quick           a small run in well under a minute
  statefulrnn compare --all --quick               every task, about 2 minutes on 2 quiet cores
  statefulrnn compare sine --set epochs=200       change a task parameter (see `statefulrnn tasks`)
  statefulrnn compare moving-average --only stateful-seed,stateless-seed

Writes results.json, report.html (self-contained) and PNG plots to --out
(default runs/TASK-<timestamp>/; with --all, one subfolder per task).
"""


def add_parser(sub) -> None:
    p = o.add_command(sub, "compare", HELP, DESCRIPTION, EPILOG)
    p.add_argument("task", nargs="?", help="task name (see `statefulrnn tasks`)")
    p.add_argument("--all", action="store_true", help="run every built-in task")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes and fewer epochs, calibrated so each claim checked comes out as "
        "at full settings; recipes only the full settings can show are skipped (about 3 min for --all)",
    )
    p.add_argument("--out", type=Path, help="output folder (default runs/TASK-<timestamp>)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a task parameter; repeatable",
    )
    p.add_argument("--only", help="comma-separated configuration names to run (default: all)")
    p.add_argument(
        "--seed", type=int, default=0, help="data, initialisation and order seed (default 0)"
    )
    o.add_threads(p)
    p.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")
    distributed.add_flag(p, "compare")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from statefulrnn.experiments.compare import default_out, run_task, write_results
    from statefulrnn.reports.html import summary_lines, write_index, write_report
    from statefulrnn.tasks import TASKS, get_task

    if args.all == bool(args.task):
        print(
            "statefulrnn compare: name one TASK or pass --all. Tasks: " + ", ".join(TASKS),
            file=sys.stderr,
        )
        return 2
    names = list(TASKS) if args.all else [args.task]
    try:
        main = distributed.join(args, "compare")  # under torchrun: rank 0 prints and writes
        tasks = [get_task(n) for n in names]
        overrides = o.name_values(args.set)
        params = {
            t.name: t.resolve(
                args.quick, {k: v for k, v in overrides.items() if k in t.params or not args.all}
            )
            for t in tasks
        }
    except ValueError as err:
        print(f"statefulrnn compare: {err}", file=sys.stderr)
        return 2
    root = args.out or default_out("compare" if args.all else names[0])
    only = args.only.split(",") if args.only else None
    t0 = time.perf_counter()
    reports, all_lines = [], []
    for t in tasks:
        out_dir = root / t.name if args.all else root
        results = run_task(
            t,
            params[t.name],
            quick=args.quick,
            seed=args.seed,
            only=only,
            verbose=0 if args.quiet or not main else 1,
            device=args.device,
            log=print if main else distributed.silent,
        )
        if not main:  # the other ranks trained alongside; rank 0 has the same results
            continue
        write_results(results, out_dir)
        rerun = "statefulrnn compare " + shlex.join(
            [t.name]
            + (["--quick"] if args.quick else [])
            + [f"--set={k}={v}" for k, v in overrides.items() if k in t.params]
            + [f"--seed={args.seed}"]
        )
        reports.append(write_report(out_dir, rerun, "../index.html" if args.all else ""))
        lines = summary_lines(results)
        all_lines += lines
        print("\n".join(lines), flush=True)
    if not main:
        return 0
    print()
    print("\n".join(all_lines) if args.all else "")
    seconds = time.perf_counter() - t0
    if args.all:
        print(f"index: {write_index(root, reports, seconds)}")
    for r in reports:
        print(f"report: {r}")
    print(f"done in {seconds:.0f} s")
    if args.quick:
        print(
            "note: --quick sizes are calibrated so that each claim checked comes out as at the "
            "seeds' settings; claims marked 'needs the full run' were not trained (run without "
            "--quick)."
        )
    return 0
