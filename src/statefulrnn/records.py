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
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def replace_dir(final: str | os.PathLike, write) -> None:
    """Fill a fresh temporary folder with `write(tmp_dir)`, then swap it in for `final`.

    The old folder is moved aside before the new one is renamed in and removed after, so at
    every moment either `final` or `final.old` holds a complete checkpoint (`resolve_dir`).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    # mkdtemp makes 0700: give the folder the usual mode (0755 under umask 022), so a service
    # running as another user can read the model it holds
    os.chmod(tmp, 0o777 & ~_umask())
    old = final.with_name(final.name + ".old")
    try:
        write(tmp)
        if final.exists():
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        # (no `final`: a crash mid-swap left `old` as the only complete copy; keep it until
        # the new folder is in place)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_dir(path: str | os.PathLike) -> Path:
    """`path`, or the complete `path.old` left by a save that crashed mid-swap."""
    path = Path(path)
    if path.exists():
        return path
    old = path.with_name(path.name + ".old")
    if old.exists():
        return old
    raise FileNotFoundError(f"no checkpoint at {path}.")
