"""Turn a Keras file's layers into statefulrnn layer specs, or refuse with a reason.

Knows Keras's layer configs and weight shapes; knows nothing about torch. A spec is a small
JSON dict (it goes into the checkpoint's model.json), and the weights stay in Keras's layout
(`kernel [F, G*U]`, `recurrent_kernel [U, G*U]`, `bias`) until the model maps them.

Every check names the layer and says expected vs received; anything not understood exactly
is refused rather than approximated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from statefulrnn.keras.reader import KerasFile, KerasImportError, KerasLayer
from statefulrnn.model import cells

# Keras recurrent class -> gates stacked in its kernel: the cells whose registry entry names
# a Keras class (SimpleRNN, LSTM, GRU), in Keras's gate count (the same as PyTorch's).
RECURRENT = {name: spec.gates for name, spec in cells.keras_classes().items()}
# Keras activations these layers may use; "hard_sigmoid" resolves by Keras version (below).
ACTIVATIONS = {"tanh", "sigmoid", "hard_sigmoid", "relu", "linear"}
HEAD_ACTIVATIONS = ACTIVATIONS | {"softmax"}
# Options that only matter while training (or only to speed): safe to ignore at inference.
IGNORED = (
    "unroll",
    "stateful",
    "dropout",
    "recurrent_dropout",
    "implementation",
    "use_cudnn",
    "unit_forget_bias",
    "zero_output_for_mask",
)


def keras_major(version: str | None) -> int | None:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return None


def _looks_keras3(file: KerasFile) -> bool | None:
    # Keras 3 writes InputLayer(batch_shape=...), Keras 2 wrote batch_input_shape.
    for layer in file.layers:
        if "batch_shape" in layer.config:
            return True
        if "batch_input_shape" in layer.config:
            return False
    return None


def _activation(
    layer: KerasLayer, key: str, keras3: bool | None, allowed: set[str], default: str = "linear"
) -> str:
    value = layer.config.get(key, default)  # absent: Keras's default for that layer
    if isinstance(value, dict) and isinstance(value.get("config"), str):
        value = value["config"]  # {"class_name": "function", "config": "tanh", ...}
    if value is None:
        value = "linear"
    if not isinstance(value, str) or value not in allowed:
        raise KerasImportError(
            f"layer {layer.name!r} ({layer.class_name}): {key}={value!r} is not supported; "
            f"supported: {sorted(allowed)}."
        )
    if value == "hard_sigmoid":
        # Keras 2: clip(0.2x + 0.5, 0, 1); Keras 3: relu6(x + 3) / 6. Same name, other numbers.
        if keras3 is None:
            raise KerasImportError(
                f"layer {layer.name!r} ({layer.class_name}) uses hard_sigmoid, whose definition "
                "changed in Keras 3, and the file does not say which Keras wrote it; pass "
                "keras_version='2' or '3'."
            )
        return "hard_sigmoid_keras3" if keras3 else "hard_sigmoid_keras2"
    return value


def _refuse(layer: KerasLayer, reason: str):
    raise KerasImportError(f"layer {layer.name!r} ({layer.class_name}): {reason}")


def _roles(layer: KerasLayer, arrays: list[tuple[str, np.ndarray]], roles: list[str]) -> dict:
    """Name a layer's arrays: by their saved names when they have them, else by Keras's order."""
    if len(arrays) != len(roles):
        _refuse(
            layer,
            f"expected {len(roles)} weight arrays ({', '.join(roles)}), found {len(arrays)} "
            f"({[label for label, _ in arrays]}).",
        )
    named = {label.split("/")[-1].split(":")[0]: a for label, a in arrays}
    if set(named) == set(roles):
        return named
    return {role: a for role, (_, a) in zip(roles, arrays)}


def _check_shape(layer: KerasLayer, role: str, array: np.ndarray, expected: tuple, why: str):
    if tuple(array.shape) != expected:
        _refuse(
            layer,
            f"weight {role!r} has shape {tuple(array.shape)}, expected {expected} ({why}).",
        )


def _recurrent(layer, arrays, features, keras3, is_last_recurrent):
    cfg = layer.config
    cls = layer.class_name
    for opt in ("go_backwards", "return_state", "time_major"):
        if cfg.get(opt):
            _refuse(layer, f"{opt}=True is not supported (statefulrnn runs forward in time).")
    units = cfg.get("units")
    if not isinstance(units, int) or units < 1:
        _refuse(layer, f"units must be a positive integer; received {units!r}.")
    use_bias = bool(cfg.get("use_bias", True))
    return_sequences = bool(cfg.get("return_sequences", False))
    spec: dict[str, Any] = {
        "type": cls,
        "name": layer.name,
        "input_size": features,
        "units": units,
        "activation": _activation(layer, "activation", keras3, ACTIVATIONS, "tanh"),
        "use_bias": use_bias,
        "return_sequences": return_sequences,
    }
    gates = RECURRENT[cls]
    roles = ["kernel", "recurrent_kernel"] + (["bias"] if use_bias else [])
    w = _roles(layer, arrays, roles)
    if cls != "SimpleRNN":
        spec["recurrent_activation"] = _activation(
            layer, "recurrent_activation", keras3, ACTIVATIONS, "sigmoid"
        )
    if cls == "GRU":
        reset_after = cfg.get("reset_after")
        if reset_after is None:  # old configs leave it out: the bias shape says which it is
            reset_after = bool(use_bias and w["bias"].ndim == 2)
        spec["reset_after"] = bool(reset_after)
    if features is None:
        features = int(w["kernel"].shape[0])
        spec["input_size"] = features
    _check_shape(
        layer,
        "kernel",
        w["kernel"],
        (features, gates * units),
        f"{features} input features x {gates} gate(s) of {units} units",
    )
    _check_shape(
        layer,
        "recurrent_kernel",
        w["recurrent_kernel"],
        (units, gates * units),
        f"{units} units x {gates} gate(s) of {units} units",
    )
    if use_bias:
        shape: tuple[int, ...]
        if cls == "GRU" and spec["reset_after"]:
            shape, why = (2, 3 * units), "GRU reset_after=True: input and recurrent biases"
        else:
            shape, why = (gates * units,), f"{gates} gate(s) of {units} units"
        _check_shape(layer, "bias", w["bias"], shape, why)
    if not return_sequences and not is_last_recurrent:
        _refuse(
            layer,
            "return_sequences=False before another recurrent layer is not supported; the next "
            "recurrent layer would see one step, not a sequence.",
        )
    return spec, w


def _dense(layer, inner, arrays, features, keras3, time_distributed):
    cfg = inner.config
    units = cfg.get("units")
    if not isinstance(units, int) or units < 1:
        _refuse(layer, f"units must be a positive integer; received {units!r}.")
    if cfg.get("lora_rank"):
        _refuse(layer, "LoRA-adapted Dense layers are not supported.")
    use_bias = bool(cfg.get("use_bias", True))
    w = _roles(layer, arrays, ["kernel"] + (["bias"] if use_bias else []))
    if features is None:
        features = int(w["kernel"].shape[0])
    _check_shape(
        layer,
        "kernel",
        w["kernel"],
        (features, units),
        f"{features} input features x {units} units",
    )
    if use_bias:
        _check_shape(layer, "bias", w["bias"], (units,), f"{units} units")
    spec = {
        "type": "Dense",
        "name": layer.name,
        "input_size": features,
        "units": units,
        "activation": _activation(inner, "activation", keras3, HEAD_ACTIVATIONS),
        "use_bias": use_bias,
        "time_distributed": time_distributed,
    }
    return spec, w


def _input_features(layer: KerasLayer) -> int | None:
    shape = layer.config.get("batch_shape") or layer.config.get("batch_input_shape")
    if shape is None and layer.config.get("input_shape") is not None:
        shape = [None, *layer.config["input_shape"]]
    if shape is None:
        return None
    if len(shape) != 3:
        _refuse(layer, f"input shape {shape} is not (batch, steps, features).")
    return shape[-1]


def convert(
    file: KerasFile, keras_version: str | None = None
) -> tuple[int, list[dict[str, Any]], list[dict[str, np.ndarray]]]:
    """`(input_size, specs, weights)`: one spec and one Keras-layout weight dict per layer."""
    major = keras_major(keras_version or file.keras_version)
    keras3 = (major >= 3) if major is not None else _looks_keras3(file)
    recurrent_at = [i for i, lay in enumerate(file.layers) if lay.class_name in RECURRENT]
    if not recurrent_at:
        raise KerasImportError(
            f"{file.source}: the model has no {' or '.join(RECURRENT)} layer; nothing to run "
            f"statefully (layers: {[lay.class_name for lay in file.layers]})."
        )
    input_size: int | None = None
    features: int | None = None
    sequence = True  # still one output per step (no return_sequences=False yet)
    specs, weights = [], []
    for i, layer in enumerate(file.layers):
        cls = layer.class_name
        arrays = file.weights.get(layer.name, [])
        if cls == "InputLayer":
            if i != 0:
                _refuse(layer, "an InputLayer inside the chain is not supported.")
            features = input_size = _input_features(layer)
            continue
        if cls == "Lambda":
            _refuse(
                layer,
                "Lambda layers hold Python code, and statefulrnn never runs code "
                "from a file; rebuild that step in PyTorch instead.",
            )
        if cls in RECURRENT:
            if not sequence:
                _refuse(layer, "follows a layer that returned one step (return_sequences=False).")
            spec, w = _recurrent(layer, arrays, features, keras3, i == recurrent_at[-1])
            sequence = spec["return_sequences"]
        elif cls == "Dense":
            spec, w = _dense(layer, layer, arrays, features, keras3, False)
        elif cls == "TimeDistributed":
            inner_d = layer.config.get("layer")
            inner_d = inner_d if isinstance(inner_d, dict) else {}
            inner = KerasLayer(
                inner_d.get("class_name", "?"), layer.name, inner_d.get("config") or {}
            )
            if inner.class_name != "Dense":
                _refuse(
                    layer,
                    f"TimeDistributed({inner.class_name}) is not supported; only "
                    "TimeDistributed(Dense) is.",
                )
            if not sequence:
                _refuse(layer, "TimeDistributed after return_sequences=False has no time axis.")
            spec, w = _dense(layer, inner, arrays, features, keras3, True)
        elif cls in ("Dropout", "Activation"):
            if arrays:
                _refuse(layer, f"expected no weights, found {[label for label, _ in arrays]}.")
            spec, w = {"type": cls, "name": layer.name}, {}
            if cls == "Activation":
                spec["activation"] = _activation(layer, "activation", keras3, HEAD_ACTIVATIONS)
        elif (ours := cells.CELLS.get(cls.lower())) is not None and ours.keras is None:
            _refuse(
                layer,
                f"{ours.name!r} is a statefulrnn cell without a Keras counterpart; "
                "build it with sr.StatefulRNN(..., cell=...) instead of importing it.",
            )
        else:
            hint = {
                "Bidirectional": " (it reads the future, so it cannot run step by step)",
                "Sequential": " (nested models are not supported)",
                "Functional": " (nested models are not supported)",
            }.get(cls, "")
            _refuse(
                layer,
                f"layer class {cls!r} is not supported{hint}; supported: InputLayer, "
                f"{', '.join(RECURRENT)}, Dense, TimeDistributed(Dense), Dropout, Activation.",
            )
        if input_size is None:
            input_size = spec.get("input_size")
        if "units" in spec:
            features = spec["units"]
        specs.append(spec)
        weights.append(w)
    assert input_size is not None  # the first recurrent or dense layer fixed it
    return input_size, specs, weights
