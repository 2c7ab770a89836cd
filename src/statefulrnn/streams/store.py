"""Stream states on disk: spill files for evicted streams, and a saved pool.

Both are safetensors (tensors) with JSON in the file's metadata (ids, model identity), so one
file is one consistent record. A saved pool is written atomically (temporary file + rename);
spill files are scratch that only this pool reads back, and are deleted when read.

    saved pool  = one .safetensors file
        tensors:   one per state name, [L, N, H] (lane n = the n-th id)      e.g. "h", "c"
        metadata:  {"statefulrnn": JSON {"format", "model_identity", "ids", "names", ...}}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import Tensor

from statefulrnn import records

FORMAT = "statefulrnn.StreamPool"
FORMAT_VERSION = 1
META_KEY = "statefulrnn"


def spill_path(folder: Path, stream_id: Any) -> Path:
    """The spill file of a stream id: a hash of its JSON, so any id makes a safe file name."""
    digest = hashlib.sha256(json.dumps(stream_id).encode()).hexdigest()[:40]
    return folder / f"{digest}.safetensors"


def write_spill(folder: Path, stream_id: Any, row: Tensor) -> Path:
    path = spill_path(folder, stream_id)
    data = save({"row": row.detach().cpu().contiguous()}, {META_KEY: json.dumps({"id": stream_id})})
    path.write_bytes(data)
    return path


def read_spill(path: Path) -> Tensor:
    return load(path.read_bytes())["row"]


def write_pool(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write a saved pool atomically: a crash mid-write leaves the previous file intact."""
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **meta}
    cpu = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    records.atomic_write_bytes(path, save(cpu, {META_KEY: json.dumps(meta)}))


def read_pool(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(metadata, tensors) of a saved pool; a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no saved stream pool at {path}.")
    data = path.read_bytes()
    try:
        tensors = load(data)
        meta_json = _metadata(data).get(META_KEY)
        meta = json.loads(meta_json) if meta_json else {}
    except (SafetensorError, ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a saved stream pool ({err}).") from None
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a saved stream pool: its metadata has no format {FORMAT!r}. "
            "Write one with StreamPool.save(path)."
        )
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has stream pool format version {meta.get('version')}; "
            f"this statefulrnn reads version {FORMAT_VERSION}."
        )
    return meta, tensors


def _metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: 8-byte little-endian header length, then the JSON header
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return header.get("__metadata__", {}) or {}
