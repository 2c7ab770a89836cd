"""The `statefulrnn` command: one module per subcommand, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

from statefulrnn.cli import errors

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
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the full traceback too (may be given anywhere)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, module in COMMANDS.items():
        importlib.import_module(f"statefulrnn.cli.{module}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. The one error boundary: whatever a command raises becomes one line on
    stderr, `statefulrnn COMMAND: error: ...`, and exit status 2 (a usage error: fix the
    command line) or 1 (a failure: a bad file, a failed run). `--debug`, anywhere on the
    command line, prints the traceback too."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index("--")] if "--" in argv else "--debug" in argv
    if debug:
        argv.remove("--debug")
    errors.DEBUG = debug
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error: argparse's message, SystemExit(2)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from statefulrnn import threads

    before = threads.get_default()
    try:
        # --threads: every library call of this command uses it (they pass threads=None)
        threads.set_default(getattr(args, "threads", None))
        with _plain_warnings(args.command):
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): nothing left to say to it
        _silence_stdout()
        return 1
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    except Exception as err:  # noqa: BLE001 - the boundary: nothing escapes as a traceback
        return errors.report(args.command, err)

    finally:
        threads.set_default(before)


@contextlib.contextmanager
def _plain_warnings(command: str):
    """statefulrnn's own warnings (an id-like column, few updates per epoch) as one line,
    `statefulrnn COMMAND: warning: ...`, not Python's `file:line: Category: ...` and source."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.split(".")[0] == "statefulrnn":
            print(f"statefulrnn {command}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is quiet
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
