"""The on-disk formats of runs and checkpoints: atomic writes, JSON, folder swaps.

Standard library only. A write goes to a temporary name and is renamed into place, so a crash
mid-write never leaves a file (or a checkpoint folder) that reads wrong.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename. The
    temporary name holds the writer's pid, so one left by a killed writer is removed by the
    next write of `path` (`clean_orphan_files`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_orphan_files(path)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def clean_orphan_files(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writes of `path` left beside it (their pid in
    the name, that process gone). Returns what was removed."""
    path = Path(path)
    removed: list[Path] = []
    prefix = f".{path.name}."
    for tmp in path.parent.glob(f"{glob_escape(prefix)}*.tmp"):
        pid = tmp.name[len(prefix) :].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)) or not tmp.is_file() or tmp.is_symlink():
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:  # another writer removed it first
            pass
    return removed


def glob_escape(name: str) -> str:
    """`name` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def usual_mode(path: str | os.PathLike) -> None:
    """Give a file written by a library that makes it 0600 (safetensors) the usual mode: 0644
    under umask 022, so a service running as another user can read a model folder."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _clean(obj: Any) -> Any:
    """JSON has no NaN or inf: write them as null so every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _clean(obj.item())
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(_clean(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, dumps(obj).encode())


MAX_JSON_BYTES = 64 << 20  # a bigger JSON file of ours is not one we wrote


def check_regular_file(path: str | os.PathLike) -> None:
    """Refuse what is not a regular file (a FIFO would block a read forever, a device never
    end); a missing file is FileNotFoundError."""
    import stat

    st = os.stat(path)  # FileNotFoundError as usual
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a FIFO or device)"
        raise ValueError(f"{path} is {kind}; expected a file.")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file we wrote; errors name the file (not JSON, nested too deep, too big)."""
    check_regular_file(path)
    if os.path.getsize(path) > MAX_JSON_BYTES:
        raise ValueError(f"{path}: {os.path.getsize(path)} bytes, too big for a JSON file of ours.")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text (UTF-8) JSON file.") from None
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})."
        ) from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply to be one of ours.") from None


# ----------------------------------------------------------------- folders we write whole
# A model or checkpoint folder is written whole into a temporary folder and swapped in. The
# swap replaces what was there, so it is done only to a folder that is ours: one holding the
# marker file this module writes (and nothing else but files a save writes), an empty one, or
# one holding only the files a save writes (folders from before the marker). Anything else is
# refused with FolderNotOurs, naming the folder and what is in it; `force=True` overrides.
#
#   parent/
#     NAME/                       the folder (MARKER inside)
#     .NAME.XXXXXXXX.tmp/         a save in progress; MARKER (with its pid) written first,
#                                 so one left by a killed process is removed by the next save
#     .NAME.statefulrnn-old/      the previous NAME during the swap; never a sibling's name
MARKER = ".statefulrnn"
OUR_FILES = frozenset(
    {
        MARKER,
        "model.json",
        "weights.safetensors",
        "extra.json",
        "optimizer.safetensors",
        "optimizer.json",
        "trainer.json",
        "history.json",
        "summary.json",
    }
)


class UsageError(ValueError):
    """The arguments ask for something harmful (write over an input, replace `/`): fix them."""


class FolderNotOurs(FileExistsError):
    """A folder to be replaced holds files statefulrnn did not write."""


def _aside(final: Path) -> Path:
    return final.with_name(f".{final.name}.statefulrnn-old")


def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        meta = read_json(folder / MARKER)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("written_by") == "statefulrnn" else None


def foreign_entries(folder: str | os.PathLike) -> list[str]:
    """The entries of `folder` a statefulrnn save did not write ([] for one of ours)."""
    folder = Path(folder)
    names = sorted(p.name for p in folder.iterdir())
    marker = _marker(folder)
    known = OUR_FILES | set(marker.get("files", [])) if marker else OUR_FILES
    return [n for n in names if n not in known]


def check_replaceable(final: str | os.PathLike, *, force: bool = False) -> Path:
    """`final` as a Path if a save may replace it; FolderNotOurs (or ValueError) otherwise."""
    final = Path(final)
    resolved = final.resolve()
    if final.name in ("", ".", "..") or resolved == resolved.parent:
        raise UsageError(
            f"refusing to write a folder at {str(final)!r}: name a new folder inside it, "
            f"e.g. {str(final / 'model')!r}."
        )
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise UsageError(
            f"refusing to replace {final}: it holds the current folder; name a new folder."
        )
    if not final.exists():
        return final
    if not final.is_dir():
        raise FolderNotOurs(f"{final} is a file, not a folder; name a folder to write.")
    if force:
        return final
    foreign = foreign_entries(final)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise FolderNotOurs(
            f"{final} already exists and holds files statefulrnn did not write ({shown}); "
            "refusing to replace it. Name a new folder, or pass --force (force=True) to "
            "replace it and everything in it."
        )
    return final


def clean_orphans(final: str | os.PathLike) -> list[Path]:
    """Remove temporary folders that killed saves of `final` left beside it (ours, by their
    marker, and their writer's process gone). Returns what was removed."""
    final = Path(final)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    for tmp in final.parent.glob(f"{glob_escape('.' + final.name)}.*.tmp"):
        meta = _marker(tmp) if tmp.is_dir() and not tmp.is_symlink() else None
        if meta is None or _alive(meta.get("pid")):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid == os.getpid():
        return isinstance(pid, int)  # our own: another thread's save in progress
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_marker(folder: Path, files: list[str] | None = None) -> None:
    meta = {
        "written_by": "statefulrnn",
        "note": "statefulrnn replaces this folder whole when it saves here again",
        "pid": os.getpid(),
    }
    if files is not None:
        meta["files"] = files
    (folder / MARKER).write_text(json.dumps(meta) + "\n")


def replace_dir(final: str | os.PathLike, write, *, force: bool = False) -> None:
    """Fill a fresh temporary folder with `write(tmp_dir)`, then swap it in for `final`.

    `final` must be ours to replace (check_replaceable; `force` overrides). The old folder is
    moved aside before the new one is renamed in and removed after, so at every moment either
    `final` or its aside copy holds a complete checkpoint (`resolve_dir`). Temporary folders
    that killed saves left beside `final` are removed first.
    """
    final = check_replaceable(final, force=force)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(final)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    # mkdtemp makes 0700: give the folder the usual mode (0755 under umask 022), so a service
    # running as another user can read the model it holds
    os.chmod(tmp, 0o777 & ~_umask())
    old = _aside(final)
    try:
        _write_marker(tmp)  # first: a killed save's folder is then recognisably ours
        write(tmp)
        _write_marker(tmp, sorted(p.name for p in tmp.iterdir()))
        if final.exists():
            if old.exists():
                _remove_aside(old)
            os.replace(final, old)
        # (no `final`: a crash mid-swap left `old` as the only complete copy; keep it until
        # the new folder is in place)
        os.replace(tmp, final)
        if old.exists():
            _remove_aside(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _remove_aside(old: Path) -> None:
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()


def resolve_dir(path: str | os.PathLike) -> Path:
    """`path`, or the complete copy a save that crashed mid-swap left beside it."""
    path = Path(path)
    if path.exists():
        return path
    for old in (_aside(path), path.with_name(path.name + ".old")):  # .old: earlier versions
        if old.is_dir() and (old / "model.json").exists():
            return old
    raise FileNotFoundError(f"no checkpoint at {path}.")
