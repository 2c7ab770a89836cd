"""How the `statefulrnn` command reports an error: one line, and an exit status.

Exit 2: a usage error, fixed by changing the command line (a bad option value, an output
folder that is not ours to replace, an output that would overwrite an input). Exit 1: any
other failure (a bad or unreadable file, a run that failed). The message is the exception's
own, on one line; an exception that is not one of the library's deliberate errors is named
by its type, with a pointer to `--debug`.
"""

from __future__ import annotations

import errno
import sys
import traceback

from statefulrnn.records import FolderNotOurs, UsageError


class OptionError(ValueError):
    """A bad option value or config file; the message names the option (and file)."""


USAGE = (OptionError, FolderNotOurs, UsageError)
# the library raises these on purpose, with a message that stands alone
DELIBERATE = (ValueError, OSError, KeyError, TypeError, ImportError, RuntimeError)
MAX_CHARS = 2000
DEBUG = False  # set by `statefulrnn --debug`: errors caught inside a command print tracebacks


def report(command: str, err: BaseException) -> int:
    """Print `err` as one line (and its traceback under --debug); return the exit status."""
    if DEBUG:
        traceback.print_exception(type(err), err, err.__traceback__)
    print(f"statefulrnn {command}: error: {one_line(err)}", file=sys.stderr)
    return exit_status(err)


def exit_status(err: BaseException) -> int:
    return 2 if isinstance(err, USAGE) else 1


def one_line(err: BaseException) -> str:
    """The error as one line of text, naming its kind where the message alone would not."""
    msg = str(err)
    if isinstance(err, KeyError) and err.args:
        msg = str(err.args[0])
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        msg = f"no space left on the disk: {msg}" if "space" not in msg else msg
    msg = " ".join(msg.split())  # one line, whatever the message held
    if len(msg) > MAX_CHARS:
        msg = msg[: MAX_CHARS - 3] + "..."
    ours = type(err).__module__.startswith("statefulrnn")
    builtin = type(err).__module__ == "builtins" and not isinstance(err, RecursionError)
    if ours or (builtin and isinstance(err, DELIBERATE)):
        return msg or type(err).__name__
    hint = " (run with --debug for the traceback)"
    return f"{type(err).__name__}: {msg}{hint}" if msg else f"{type(err).__name__}{hint}"
