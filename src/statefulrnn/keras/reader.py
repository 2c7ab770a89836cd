"""Read Keras model files as data: the architecture (JSON) and the weight arrays (HDF5).

Knows the three forms Keras writes a model in, and nothing about torch:

    NAME.keras          zip: config.json, metadata.json, model.weights.h5 (Keras 3, and 2.12+)
    NAME.h5             legacy full model: a `model_config` attribute + a `model_weights` group
    NAME.weights.h5     weights only; the architecture comes from a .keras or .json beside it

Only zipfile, json and h5py touch the file. Nothing in it is executed or unpickled: layers are
plain JSON dicts here, and every weight is read as a float array through hard links only. A zip
entry that points outside the archive, an HDF5 link to another file, or a non-float weight is
refused with a `KerasImportError`.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from statefulrnn.keras.chain import KerasImportError, KerasLayer, chain_of, parse_json
from statefulrnn.keras.h5weights import h5py_module, max_weight_elements, read_weights, text
from statefulrnn.records import check_regular_file

__all__ = ["KerasFile", "KerasImportError", "KerasLayer", "read_keras"]

MAX_ENTRY_BYTES = 1 << 30  # a bigger zip entry is refused rather than read into memory
MAX_JSON_ENTRY_BYTES = 16 << 20  # config.json, metadata.json


@dataclass
class KerasFile:
    """What a Keras file holds, as data: the layers in input-to-output order and their weights.

    `weights[name]` lists `(label, array)` in Keras's own order (`layer.get_weights()`);
    labels are the HDF5 paths inside the layer's group (`cell/vars/0`, `lstm/lstm_cell/kernel:0`).
    """

    layers: list[KerasLayer]
    weights: dict[str, list[tuple[str, np.ndarray]]]
    keras_version: str | None  # from the file; None when it does not say
    file_format: str  # "keras", "legacy_h5" or "weights_h5"
    source: str
    config_source: str | None = None  # where the architecture came from, if not the file itself
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- zip archives
def _check_member(info: zipfile.ZipInfo, where: str) -> None:
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
        raise KerasImportError(
            f"{where}: zip entry {info.filename!r} points outside the archive (absolute path or "
            "'..'); refusing to read this file."
        )
    if info.file_size > MAX_ENTRY_BYTES:
        raise KerasImportError(
            f"{where}: zip entry {info.filename!r} unpacks to {info.file_size} bytes, more than "
            f"the {MAX_ENTRY_BYTES} allowed."
        )


def _open_archive(path: Path) -> tuple[dict[str, Any], str | None, zipfile.ZipFile]:
    z = zipfile.ZipFile(path)
    infos = z.infolist()
    for info in infos:
        _check_member(info, str(path))
    names = [i.filename for i in infos]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise KerasImportError(f"{path}: zip entries {dupes} appear more than once; refused.")
    if "config.json" not in names:
        raise KerasImportError(f"{path}: a .keras archive needs config.json; found {names}.")
    config = parse_json(
        _read_member(z, "config.json", MAX_JSON_ENTRY_BYTES, path), f"{path}:config.json"
    )
    version = None
    if "metadata.json" in names:
        try:
            meta = _read_member(z, "metadata.json", MAX_JSON_ENTRY_BYTES, path)
            version = json.loads(meta).get("keras_version")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, RecursionError):
            version = None
    return config, version, z


def _read_member(z: zipfile.ZipFile, name: str, cap: int, path: Path) -> bytes:
    """A zip entry's bytes, refused if it declares or unpacks to more than `cap` (read in
    pieces, so a lying header cannot make it allocate more)."""
    info = z.getinfo(name)
    if info.file_size > cap:
        raise KerasImportError(
            f"{path}: zip entry {name!r} unpacks to {info.file_size} bytes, more than the "
            f"{cap} its layers' config allows; refused before unpacking it."
        )
    out = bytearray()
    try:
        with z.open(info) as f:
            while piece := f.read(1 << 20):
                out += piece
                if len(out) > cap:
                    raise KerasImportError(
                        f"{path}: zip entry {name!r} unpacks to more than {cap} bytes; refused."
                    )
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise KerasImportError(f"{path}: zip entry {name!r} is corrupt ({err}).") from None
    return bytes(out)


def _read_keras_archive(path: Path) -> KerasFile:
    config, version, z = _open_archive(path)
    with z:
        if "model.weights.h5" not in z.namelist():
            raise KerasImportError(
                f"{path}: no model.weights.h5 in the archive (found {z.namelist()}); only "
                "HDF5 weights are supported."
            )
        layers = chain_of(config)
        # the weights file holds ~3 arrays per layer, each at most `limit` numbers of 8 bytes
        limit = max_weight_elements(layers)
        cap = MAX_ENTRY_BYTES if limit is None else 8 * 3 * len(layers) * limit + (1 << 20)
        cap = min(cap, MAX_ENTRY_BYTES)
        data = io.BytesIO(_read_member(z, "model.weights.h5", cap, path))
    with h5py_module().File(data, "r") as f:
        weights = read_weights(f, layers, f"{path}:model.weights.h5")
    return KerasFile(layers, weights, version, "keras", str(path))


def _legacy_config(f, where: str) -> dict[str, Any]:
    raw = f.attrs.get("model_config")
    if raw is None:
        raise KerasImportError(f"{where}: no model_config attribute.")
    return parse_json(text(raw).encode(), f"{where}: model_config")


def _read_config(path: Path) -> tuple[dict[str, Any], str | None]:
    """An architecture from a .keras archive, a JSON file, or a legacy full-model .h5."""
    if zipfile.is_zipfile(path):
        config, version, z = _open_archive(path)
        z.close()
        return config, version
    h5py = h5py_module()
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version")
            return _legacy_config(f, str(path)), None if version is None else text(version)
    check_regular_file(path)
    return parse_json(path.read_bytes(), str(path)), None


def config_candidates(path: Path) -> list[Path]:
    """Where a `.weights.h5` file's architecture may sit: `NAME.keras`, `NAME.json`, ..."""
    stem = path.name
    for suffix in (".weights.h5", ".h5", ".hdf5"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    d = path.parent
    return [d / f"{stem}.keras", d / f"{stem}.json", d / f"{stem}.config.json", d / "config.json"]


def read_keras(path: str | Path, config: str | Path | dict | None = None) -> KerasFile:
    """`_read_keras`, with the errors of a corrupt file (h5py's, zipfile's, a link loop's
    recursion) as one KerasImportError naming it."""
    try:
        return _read_keras(path, config)
    except KerasImportError:
        raise
    except FileNotFoundError:
        raise
    except RecursionError:
        raise KerasImportError(f"{path}: nested too deeply (a link loop?); refused.") from None
    except (OSError, KeyError, RuntimeError, ValueError, TypeError, zipfile.BadZipFile) as err:
        msg = " ".join(str(err).split()) or type(err).__name__
        raise KerasImportError(f"{path}: cannot be read as a Keras file ({msg}).") from None


def _read_keras(path: str | Path, config: str | Path | dict | None = None) -> KerasFile:
    """Read a `.keras` archive, a legacy `.h5` model, or a `.weights.h5` with its config.

    `config`: for weights-only files, the architecture: a `.keras` archive, a JSON file
    (`model.to_json()` or a `.keras` archive's config.json), a legacy `.h5`, or the dict itself.
    If None, `NAME.keras`, `NAME.json`, `NAME.config.json` and `config.json` beside the
    weights are tried in that order.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file.")
    check_regular_file(path)  # a FIFO would block the read forever
    if zipfile.is_zipfile(path):
        return _read_keras_archive(path)
    h5py = h5py_module()
    if not h5py.is_hdf5(path):
        raise KerasImportError(
            f"{path}: neither a .keras zip archive nor an HDF5 (.h5) file; cannot import it."
        )
    with h5py.File(path, "r") as f:
        version = f.attrs.get("keras_version")
        version = None if version is None else text(version)
        if "model_config" in f.attrs and config is None:
            layers = chain_of(_legacy_config(f, str(path)))
            return KerasFile(
                layers, read_weights(f, layers, str(path)), version, "legacy_h5", str(path)
            )
        config_source = None
        if isinstance(config, dict):
            cfg, cfg_version, config_source = config, None, "dict"
        else:
            if config is None:
                found = [p for p in config_candidates(path) if p.is_file()]
                if not found:
                    raise KerasImportError(
                        f"{path} holds weights only and no architecture was found beside it "
                        f"(looked for {[p.name for p in config_candidates(path)]}); pass "
                        "config=PATH to the model's .keras archive or its JSON config."
                    )
                config = found[0]
            cfg, cfg_version = _read_config(Path(config))
            config_source = str(config)
        layers = chain_of(cfg)
        weights = read_weights(f, layers, str(path))
        return KerasFile(
            layers, weights, version or cfg_version, "weights_h5", str(path), config_source
        )
