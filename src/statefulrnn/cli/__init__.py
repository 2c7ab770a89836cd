"""The `statefulrnn` command: one module per subcommand, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module under statefulrnn.cli; each module has add_parser(subparsers) and run(args) -> int
COMMANDS = {
    "tasks": "tasks",
    "compare": "compare",
    "import-keras": "import_keras",
    "stream": "stream",
    "serve": "serve",
    "train": "train",
    "predict": "predict",
    "evaluate": "evaluate",
    "sweep": "sweep",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statefulrnn",
        description="Stateful recurrent models: train, compare stateful vs stateless, predict, stream.",
    )
    parser.add_argument("--version", action="version", version="statefulrnn 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module in COMMANDS.items():
        importlib.import_module(f"statefulrnn.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
