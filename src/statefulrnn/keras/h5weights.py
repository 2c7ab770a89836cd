"""Keras weight arrays out of HDF5, safely: hard links only, float data only.

Knows the two weight layouts Keras writes (Keras 3: `layers/<class>/.../vars/<i>`; Keras 2:
`<layer name>/` groups with a `weight_names` attribute); knows nothing about torch. A soft or
external link (which could reach another file), a virtual or external dataset, or a
non-float array is refused.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from statefulrnn.keras.chain import KerasImportError, KerasLayer


def h5py_module():
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is in the `keras` extra
        raise ImportError("reading Keras files needs h5py: pip install h5py") from e
    return h5py


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value.item())
    return str(value)


def text_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [text(v) for v in np.asarray(value).ravel().tolist()]


def _child(group, key: str, where: str):
    """`group[key]` through a hard link only: soft and external links could reach other files."""
    h5py = h5py_module()
    link = group.get(key, getlink=True)
    if link is None:
        raise KerasImportError(f"{where}: no entry {key!r} in the weights file.")
    if not isinstance(link, h5py.HardLink):
        raise KerasImportError(
            f"{where}: {key!r} is a {type(link).__name__}, not stored in the file itself; "
            "statefulrnn only reads data held in the file."
        )
    return group[key]


MIN_LIMIT = 1 << 22


def max_weight_elements(layers: list[KerasLayer]) -> int | None:
    """The most numbers one weight array of these layers can hold, from their configs: every
    kernel, recurrent kernel and bias is at most [D, 4·D] with D the largest width the
    config names (units, input features), doubled for slack, and at least MIN_LIMIT. None
    when no width is given."""
    dims = [0]

    def widths(obj) -> None:  # nested too: TimeDistributed(Dense) keeps units inside "layer"
        if isinstance(obj, dict):
            for key, v in obj.items():
                if key in ("units", "input_dim") and isinstance(v, int):
                    dims.append(v)
                elif key in ("batch_input_shape", "batch_shape", "input_shape") and (
                    isinstance(v, list) and v and isinstance(v[-1], int)
                ):
                    dims.append(v[-1])
                else:
                    widths(v)
        elif isinstance(obj, list):
            for v in obj:
                widths(v)

    for layer in layers:
        widths(layer.config or {})
    d = max(dims)
    # at least 4M numbers (16 MB): a config that omits its input width still imports
    return None if d == 0 else max(2 * (4 * d * d + 8 * d), MIN_LIMIT)


def _array(ds, where: str, limit: int | None = None) -> np.ndarray:
    h5py = h5py_module()
    if not isinstance(ds, h5py.Dataset):
        raise KerasImportError(f"{where}: expected a weight array, found a group.")
    if ds.is_virtual or ds.external:
        raise KerasImportError(f"{where}: the weight's data lives outside the file; refused.")
    if ds.dtype.kind != "f":
        raise KerasImportError(
            f"{where}: weight has dtype {ds.dtype}, expected floating point numbers."
        )
    if limit is not None and ds.size > limit:
        raise KerasImportError(
            f"{where}: weight declares shape {list(ds.shape)} ({ds.size} numbers), more than "
            f"the layers' config allows ({limit}); refused before reading it."
        )
    return np.asarray(ds[()])


def _walk(group, prefix: str, where: str, limit: int | None) -> list[tuple[str, np.ndarray]]:
    """Every array under `group`, hard links only, as `(relative path, array)`."""
    h5py = h5py_module()
    out: list[tuple[str, np.ndarray]] = []
    for key in group:
        obj = _child(group, key, where)
        path = f"{prefix}{key}"
        if isinstance(obj, h5py.Group):
            out += _walk(obj, path + "/", where, limit)
        else:
            out.append((path, _array(obj, f"{where}/{path}", limit)))
    return out


def _var_order(label: str) -> tuple:
    # "cell/vars/10" sorts after "cell/vars/2": Keras numbers a layer's variables in order
    parent, _, last = label.rpartition("/")
    return (parent, int(last)) if last.isdigit() else (parent, 1 << 30, last)


def snake_case(name: str) -> str:
    """Keras 3's group names in weights files: `SimpleRNN` -> `simple_rnn`, `LSTM` -> `lstm`."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _read_v3_weights(root, layers: list[KerasLayer], where: str, limit=None) -> dict[str, list]:
    """Keras 3 layout: `layers/<snake_case class>[_k]/.../vars/<i>`, one group per layer."""
    h5py = h5py_module()
    if "layers" not in root:
        raise KerasImportError(f"{where}: no 'layers' group; not a Keras weights file.")
    top = _child(root, "layers", where)
    # Recent Keras writes each layer's name beside its variables; older files are matched the
    # way Keras itself matches them: class name in snake case, numbered in layer order.
    by_name: dict[str, str] = {}
    for key in top:
        g = _child(top, key, where)
        if isinstance(g, h5py.Group) and "vars" in g:
            name = g["vars"].attrs.get("name")
            if name is not None:
                by_name[text(name)] = key
    used: dict[str, int] = {}
    out: dict[str, list] = {}
    for layer in layers:
        base = snake_case(layer.class_name)
        used[base] = used.get(base, -1) + 1
        key = base if used[base] == 0 else f"{base}_{used[base]}"
        key = by_name.get(layer.name, key)
        if key not in top:
            out[layer.name] = []
            continue
        arrays = _walk(_child(top, key, where), "", f"{where}/layers/{key}", limit)
        out[layer.name] = sorted(arrays, key=lambda kv: _var_order(kv[0]))
    return out


def _read_legacy_weights(
    group, layers: list[KerasLayer], where: str, limit=None
) -> dict[str, list]:
    """Keras 2 layout: `<layer name>/` with a `weight_names` attribute listing its arrays."""
    names = set(text_list(group.attrs.get("layer_names")))
    out: dict[str, list] = {}
    for layer in layers:
        if layer.name not in names:
            out[layer.name] = []
            continue
        g = _child(group, layer.name, where)
        arrays = []
        for wn in text_list(g.attrs.get("weight_names")):
            obj = g
            for part in wn.split("/"):
                obj = _child(obj, part, f"{where}/{layer.name}")
            arrays.append((wn, _array(obj, f"{where}/{layer.name}/{wn}", limit)))
        out[layer.name] = arrays
    return out


def read_weights(f, layers: list[KerasLayer], where: str) -> dict[str, list]:
    """Every layer's arrays; an array larger than the configs allow is refused unread."""
    limit = max_weight_elements(layers)
    if "model_weights" in f:
        return _read_legacy_weights(_child(f, "model_weights", where), layers, where, limit)
    if "layer_names" in f.attrs:
        return _read_legacy_weights(f, layers, where, limit)
    return _read_v3_weights(f, layers, where, limit)
