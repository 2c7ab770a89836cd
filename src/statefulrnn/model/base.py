"""What every statefulrnn model is: state in, state out, any batch size; saved as data.

Knows tensors and state, not schedules or training. A model never stores its state, so the
same model serves training lanes, prediction batches and streams of any size. Checkpoints
are folders: weights in safetensors (no pickle), architecture in JSON.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from statefulrnn import records
from statefulrnn.model.state import State

WEIGHTS = "weights.safetensors"
MODEL_JSON = "model.json"
EXTRA_JSON = "extra.json"
FORMAT_VERSION = 1

_KINDS: dict[str, type[RecurrentModel]] = {}
# the package's own kinds and the module that registers each: a checkpoint of one loads even
# when nothing has imported that module yet (the package imports its names on first use)
BUILT_IN_KINDS = {"StatefulRNN": "statefulrnn.model.rnn", "KerasRNN": "statefulrnn.keras.model"}


def register(cls: type[RecurrentModel]) -> type[RecurrentModel]:
    """Make a model class loadable from checkpoints by its `kind`."""
    _KINDS[cls.kind] = cls
    return cls


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class RecurrentModel(nn.Module):
    """Base of all models: `y, state = model(x, state=None, reset=None)` with x [B, T, F]."""

    kind: ClassVar[str] = "abstract"
    input_size: int
    output_size: int
    # How the user's units map to this network's (scaling, output link, names, training mode):
    # the JSON of a statefulrnn.bundle.ModelBundle, set by `sr.fit` or by loading a folder that
    # has one; `save` writes it to extra.json["bundle"]. None: a bare network.
    bundle_info: dict[str, Any] | None = None

    # ------------------------------------------------------------- to implement
    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this architecture (JSON-able)."""
        raise NotImplementedError

    def state_spec(self) -> tuple[list[tuple[int, int]], tuple[str, ...]]:
        """`([(layers, hidden), ...], names)` of the state tensors."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None, reset: Tensor | None = None):
        raise NotImplementedError

    # ------------------------------------------------------------- shared
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def zero_state(self, batch_size: int) -> State:
        shapes, names = self.state_spec()
        return State.zeros(shapes, names, batch_size, device=self.device, dtype=self.dtype)

    def start_state(self, state: State | None, reset: Tensor | None, batch_size: int) -> State:
        """The state a chunk starts from: zeros if none, with `reset` lanes zeroed."""
        if state is None:
            return self.zero_state(batch_size)
        if state.batch_size != batch_size:
            raise ValueError(
                f"state holds {state.batch_size} lanes but x has batch size {batch_size}; "
                "select the matching lanes with state.select(...)."
            )
        if reset is not None:
            state = state.reset(reset)  # new sequences start in these lanes
        return state

    def final_state(self, x: Tensor, lengths: Tensor) -> State:
        """The state after running row i of x [B, L, F] for its first `lengths[i]` steps from
        zero (0 steps: zero state). Used for burn-in; no gradient is needed or kept.

        This generic version runs each distinct length as its own batch; models with packed
        sequence support override it with one call.
        """
        batch = x.shape[0]
        state = self.zero_state(batch)
        for n in torch.unique(lengths).tolist():
            if n == 0:
                continue
            rows = torch.nonzero(lengths == n).flatten()
            _, part = self(x.index_select(0, rows)[:, :n])
            state = state.put(rows, part)
        return state

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"expected x of shape [B, T, {self.input_size}] (batch, steps, features); "
                f"received {tuple(x.shape)}."
            )

    def export_onnx(self, path: str | Path, **kwargs: Any) -> Path:
        """Write the single-step function to ONNX, state as explicit inputs and outputs
        (statefulrnn.export; needs the `onnx` extra)."""
        from statefulrnn.export import export_onnx  # optional dependency: imported on use

        return export_onnx(self, path, **kwargs)

    # ------------------------------------------------------------- identity and files
    def identity(self) -> str:
        """A hash of the architecture and every weight: two models with equal identity compute the same."""
        h = hashlib.sha256(
            json.dumps({"kind": self.kind, "config": self.config()}, sort_keys=True).encode()
        )
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def save(
        self, path: str | Path, extra: dict[str, Any] | None = None, *, force: bool = False
    ) -> Path:
        """Write a checkpoint folder atomically: weights.safetensors, model.json, extra.json
        (with `bundle_info` under "bundle" unless `extra` has its own).

        An existing `path` is replaced only if a statefulrnn save wrote it (or it is empty);
        a folder holding anything else is refused (records.FolderNotOurs) unless `force=True`.
        Non-finite weights are refused: a NaN model is never saved as good.
        """
        self.check_finite(f"refusing to save {path}")
        if self.bundle_info and "bundle" not in (extra or {}):
            extra = {**(extra or {}), "bundle": self.bundle_info}
        records.replace_dir(path, lambda tmp: self.write_files(tmp, extra), force=force)
        return Path(path)

    def check_finite(self, context: str) -> None:
        """ValueError naming the first weight with NaN or inf values, prefixed by `context`."""
        for name, t in self.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ValueError(
                    f"{context}: weight {name!r} has {bad} non-finite value"
                    f"{'s' if bad != 1 else ''} (NaN or inf) of {t.numel()}; training "
                    "diverged. Lower the learning rate or clip gradients (clip=...)."
                )

    def write_files(self, folder: Path, extra: dict[str, Any] | None = None) -> None:
        """Write this model's files into an existing (temporary) folder."""
        self.check_finite(f"refusing to write {folder}")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {
            "format": FORMAT_VERSION,
            "kind": self.kind,
            "config": self.config(),
            "dtype": _dtype_name(self.dtype),
            "identity": self.identity(),
        }
        save_file(tensors, str(folder / WEIGHTS))
        records.usual_mode(folder / WEIGHTS)
        records.atomic_write_json(folder / MODEL_JSON, meta)
        if extra is not None:
            records.atomic_write_json(folder / EXTRA_JSON, extra)

    @classmethod
    def load(cls, path: str | Path, *, device=None) -> RecurrentModel:
        """Rebuild a saved model (of whatever kind) with its weights; checks its identity."""
        folder = records.resolve_dir(path)
        meta_path = folder / MODEL_JSON
        if not meta_path.exists():
            raise FileNotFoundError(
                f"{folder} is not a statefulrnn checkpoint: it has no {MODEL_JSON}."
            )
        meta = records.read_json(meta_path)
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
            raise ValueError(f"{meta_path}: not a statefulrnn model.json (no config object).")
        kind = meta.get("kind")
        if kind not in _KINDS and kind in BUILT_IN_KINDS:
            importlib.import_module(BUILT_IN_KINDS[kind])  # registers it
        if kind not in _KINDS:
            raise ValueError(f"{meta_path}: unknown model kind {kind!r}; known: {sorted(_KINDS)}.")
        model_cls = _KINDS[kind]
        dtype_name = meta.get("dtype", "float32")
        dtype = getattr(torch, dtype_name, None) if isinstance(dtype_name, str) else None
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"{meta_path}: dtype {dtype_name!r} is not a floating point dtype.")
        weights_path = folder / WEIGHTS
        declared = safetensors_shapes(weights_path)
        try:
            with torch.device("meta"):  # shapes only: nothing allocated before they are checked
                shell = model_cls(**meta["config"], dtype=dtype)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{meta_path}: its config does not build a {kind}: {err}") from None
        expected = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
        if expected != declared:
            raise ValueError(
                f"{folder}: {WEIGHTS} does not hold the weights model.json describes: "
                f"{_shape_difference(expected, declared)}."
            )
        model = model_cls(**meta["config"], dtype=dtype)
        records.check_regular_file(weights_path)
        try:
            weights = load_file(str(weights_path))
        except Exception as err:  # safetensors' own error types: a corrupt or truncated file
            raise ValueError(f"{weights_path}: not a readable safetensors file ({err}).") from None
        model.load_state_dict(weights)
        if meta.get("identity") and model.identity() != meta["identity"]:
            raise ValueError(
                f"{folder}: the weights do not match model.json (identity hash differs)."
            )
        extra = load_extra(folder)
        if isinstance(extra.get("bundle"), dict):
            model.bundle_info = extra["bundle"]
        return model.to(device) if device is not None else model


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header alone (nothing else read), with
    a clear error for a file that is not one, is truncated, or declares more than it holds."""
    records.check_regular_file(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > min(size - 8, 100 << 20):
            raise ValueError(f"{path}: not a safetensors file (bad header length).")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ValueError(f"{path}: not a safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (its header is not an object).")
    shapes, end = {}, 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            shapes[name] = tuple(int(d) for d in info["shape"])
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, ValueError, IndexError):
            raise ValueError(f"{path}: not a safetensors file (entry {name!r}).") from None
    if 8 + n + end > size:
        raise ValueError(
            f"{path}: truncated: its header describes {8 + n + end} bytes, the file has {size}."
        )
    return shapes


def _shape_difference(expected: dict, declared: dict) -> str:
    missing = sorted(set(expected) - set(declared))
    extra = sorted(set(declared) - set(expected))
    if missing:
        return f"no {missing[0]!r} (expected shape {list(expected[missing[0]])})"
    if extra:
        return f"an unexpected {extra[0]!r}"
    name = next(k for k in sorted(expected) if expected[k] != declared[k])
    return f"{name!r} has shape {list(declared[name])}, model.json implies {list(expected[name])}"


def load_extra(path: str | Path) -> dict[str, Any]:
    """The `extra` dict saved beside a checkpoint's weights ({} if none)."""
    p = records.resolve_dir(path) / EXTRA_JSON
    return records.read_json(p) if p.exists() else {}


def load_model(path: str | Path, *, device=None) -> RecurrentModel:
    """Load any saved statefulrnn model."""
    return RecurrentModel.load(path, device=device)
