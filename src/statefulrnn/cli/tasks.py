"""`statefulrnn tasks`: list the built-in tasks, what they are, and their parameters."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tasks",
        help="list the built-in seed tasks and their parameters",
        description="List the built-in tasks (the seed experiments), with a one-line "
        "description and every parameter that `compare --set name=value` accepts.",
    )
    p.add_argument("task", nargs="?", help="show only this task")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from statefulrnn.tasks import TASKS, get_task

    tasks = [get_task(args.task)] if args.task else list(TASKS.values())
    for t in tasks:
        print(f"{t.name}  (seed {t.seed_file})  {t.summary}")
        width = max(len(k) for k in t.params)
        for k, p in t.params.items():
            print(f"    {k.ljust(width)}  default {p.default!s:>6}  quick {p.quick!s:>6}  {p.help}")
        print()
    return 0
