"""Options of the table commands (train, predict, evaluate): flags over a TOML config file.

    resolved = defaults  <  config file (top level, then its [train] / [predict] / [evaluate]
                            table)  <  flags given on the command line

Every flag is declared with default None, so "given" and "not given" stay apart. A config key
is the flag's long name, with dashes or underscores (`batch-size` or `batch_size`); lists may
be TOML arrays or comma-separated strings. An unknown key is an error that names the file.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from statefulrnn import threads
from statefulrnn.cli import errors
from statefulrnn.cli.errors import OptionError  # defined beside the exit statuses it maps to
from statefulrnn.tabular.config import TableTrainConfig

COMMANDS = ("train", "predict", "evaluate")


def names(value) -> tuple[str, ...]:
    """Column names from `a,b` or a list."""
    if not isinstance(value, (str, list, tuple)):
        raise OptionError(f"expected comma-separated column names; received {value!r}.")
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(str(v).strip() for v in items)
    if not out or any(not v for v in out):
        raise OptionError(f"expected comma-separated column names; received {value!r}.")
    return out


def ints(value) -> tuple[int, ...]:
    items = (
        value.split(",")
        if isinstance(value, str)
        else (value if isinstance(value, list) else [value])
    )
    try:
        return tuple(int(v) for v in items)
    except (TypeError, ValueError):
        raise OptionError(f"expected comma-separated integers; received {value!r}.") from None


def name_values(items: list[str]) -> dict[str, str]:
    """`--set NAME=VALUE ...` (a task's parameters) as {name: value}, both stripped."""
    out = {}
    for item in items:
        if "=" not in item:
            raise OptionError(f"--set needs NAME=VALUE; received {item!r}.")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _number(kind):
    def convert(value):
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise OptionError(f"expected {kind.__name__}; received {value!r}.")
        try:
            return kind(value)
        except (TypeError, ValueError):
            raise OptionError(f"expected {kind.__name__}; received {value!r}.") from None

    convert.__name__ = kind.__name__
    return convert


integer, number = _number(int), _number(float)


def _text(value) -> str:
    if not isinstance(value, (str, Path)):
        raise OptionError(f"expected text; received {value!r}.")
    return str(value)


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise OptionError(f"expected true or false; received {value!r}.")
    return value


class _NoneGiven:
    """`--clip none` on the command line: None asked for, which argparse's None ("flag not
    given") would lose to a config file's or the default's value (clip's default is 1.0).
    `resolve` and `load_config` turn it into None once the sources are merged."""

    def __repr__(self) -> str:
        return "none"


NONE = _NoneGiven()


def _optional_number(value):
    if isinstance(value, str) and value.lower() in ("none", "off"):
        return NONE
    return number(value)


def _optional_int(value):
    if isinstance(value, str) and value.lower() in ("none", "off"):
        return NONE
    return integer(value)


def _burn_in(value):
    """An integer number of steps, "all", or "none"."""
    if isinstance(value, str) and value.lower() == "all":
        return "all"
    return _optional_int(value)


def _plain(value):
    return None if value is NONE else value


# a training option's converter follows its TableTrainConfig field's type (its one definition)
BY_TYPE: dict[str, Any] = {
    "str": _text,
    "str | None": _text,
    "str | OptimizerFactory": _text,  # by name on the command line; a factory is Python's
    "int": integer,
    "int | None": _optional_int,
    "int | str | None": _burn_in,  # burn_in: N or "all"
    "float": number,
    "float | None": _optional_number,
    "bool": _flag,
    "tuple[str, ...]": names,
}
PYTHON_ONLY = ("metrics",)  # fit options the table commands do not take (set by the loss)
# option -> converter, for every option of every table command (a config file may hold all)
CONVERT: dict[str, Any] = {
    **{f.name: BY_TYPE[str(f.type)] for f in fields(TableTrainConfig) if f.name not in PYTHON_ONLY},
    "model": _text,
    "force": _flag,
    "output": _text,
    "tail": number,
    "season": ints,
    "plot": _text,
    "no_plot": _flag,
    "json": _text,
    "escape_formulas": _flag,
    "threads": integer,
}


def load_config(path: str | Path, command: str) -> dict[str, Any]:
    """The options a config file gives `command`: its top level, then its [command] table."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise OptionError(f"{path}: not a regular file (a folder, FIFO or device).")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise OptionError(f"{path}: no such config file.") from None
    except tomllib.TOMLDecodeError as err:
        raise OptionError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise OptionError(f"{path}: not a text (UTF-8) TOML file.") from None
    except RecursionError:
        raise OptionError(f"{path}: TOML nested too deeply.") from None
    flat = {k: v for k, v in raw.items() if not (k in COMMANDS and isinstance(v, dict))}
    flat.update(raw.get(command, {}) if isinstance(raw.get(command), dict) else {})
    out = {}
    for key, value in flat.items():
        k = key.replace("-", "_")
        if k not in CONVERT:
            close = difflib.get_close_matches(k, list(CONVERT), n=1)
            hint = f" Did you mean {close[0].replace('_', '-')!r}?" if close else ""
            raise OptionError(f"{path}: unknown option {key!r}.{hint}")
        try:
            out[k] = _plain(CONVERT[k](value))
        except OptionError as err:
            raise OptionError(f"{path}: option {key!r}: {err}") from None
    return out


def resolve(args, command: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """defaults < config file < flags; only the options this command's parser declares.
    A `threads` option (flag or config key) becomes the process default of `threads=None`."""
    given = {k: v for k, v in vars(args).items() if k not in ("run", "command", "config")}
    resolved = {k: defaults.get(k) for k in given}
    if getattr(args, "config", None):
        resolved.update({k: v for k, v in load_config(args.config, command).items() if k in given})
    resolved.update({k: v for k, v in given.items() if v is not None})
    resolved = {k: _plain(v) for k, v in resolved.items()}
    if "threads" in resolved:  # the process default every library call of the command reads
        threads.set_default(resolved["threads"])  # (cli.main restores the caller's afterwards)
    return resolved


def require(opts: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if opts.get(k) in (None, (), "")]
    if missing:
        flags = ", ".join(_flag_name(k) for k in missing)
        it = "it" if len(missing) == 1 else "them"
        raise OptionError(f"missing {flags}: give {it} on the command line or in the config file.")


def _flag_name(key: str) -> str:
    positional = {"data": "DATA", "model": "MODEL_DIR"}
    return positional.get(key, "--" + key.replace("_", "-"))


def stdout_gone() -> int:
    """The reader of standard output went away (`statefulrnn predict ... | head`): stop
    quietly with status 0, as Unix tools do, with no BrokenPipeError traceback (stdout is
    pointed at /dev/null so the interpreter's final flush has nowhere to fail)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def fail(command: str, err: BaseException) -> int:
    """Print a library error as one clear line (no traceback); return its exit status
    (2: a usage error, 1: a failure; cli/errors.py)."""
    return errors.report(command, err)


def add_command(subparsers, name: str, help: str, description: str, epilog: str):
    """The subcommand's parser: its one-line help, and its description and examples as written."""
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_config(parser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE.toml",
        help="read options from a TOML file; flags given here override it",
    )


def add_model_and_data(parser) -> None:
    """MODEL_DIR DATA (positional, optional: a config file may name them) and --config."""
    parser.add_argument(
        "model", nargs="?", metavar="MODEL_DIR", help="folder from statefulrnn train"
    )
    parser.add_argument("data", nargs="?", metavar="DATA", help="CSV (.csv, .tsv) or Parquet file")
    add_config(parser)


def add_window(parser) -> None:
    """--window N: the rows of each fresh pass of windowed prediction."""
    parser.add_argument(
        "--window",
        type=integer,
        metavar="N",
        help="rows per fresh pass in windowed mode (default: the training window)",
    )


def add_read_options(parser, defaults: dict[str, Any] | None = None) -> None:
    """--fill, --drop, --sort: how missing values and unsorted rows are handled."""
    g = parser.add_argument_group("reading the table")
    g.add_argument(
        "--fill",
        choices=["forward"],
        default=None,
        help="fill a missing value with the id's last value (default: missing values are errors)",
    )
    g.add_argument(
        "--drop",
        action="store_true",
        default=None,
        help="drop rows with missing values; the report counts them",
    )
    g.add_argument(
        "--sort",
        action="store_true",
        default=None,
        help="sort each id by time (default: rows out of time order are an error)",
    )


def add_threads(parser) -> None:
    """--threads N: CPU threads for the command's recurrent work (default: the policy of
    statefulrnn/threads.py, one thread while a step's GEMM is small)."""
    parser.add_argument(
        "--threads",
        type=integer,
        metavar="N",
        default=None,
        help="CPU threads for the recurrent work (default: one while the recurrent step is "
        "small, torch's setting above that; see statefulrnn/threads.py)",
    )
