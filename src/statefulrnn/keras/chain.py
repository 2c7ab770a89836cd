"""A Keras model config as data: its layers, and the one chain from input to output.

Knows Keras's JSON (Sequential, functional `inbound_nodes` in the Keras 2 and Keras 3 forms);
knows nothing about weights or torch. A layer stays a plain dict: nothing is deserialized,
so nothing in a config can run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class KerasImportError(ValueError):
    """A Keras file that statefulrnn will not import; the message names the layer and reason."""


@dataclass
class KerasLayer:
    """One layer of the chain as Keras saved it: its class, name and config (plain JSON)."""

    class_name: str
    name: str
    config: dict[str, Any]


def _tensor_sources(obj: Any) -> list[str]:
    """Layer names feeding a Keras 3 inbound node: every `__keras_tensor__`'s history."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return [obj["config"]["keras_history"][0]]
        return [s for v in obj.values() for s in _tensor_sources(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _tensor_sources(v)]
    return []


def _inbound(layer: dict[str, Any]) -> list[list[str]]:
    """Each call of a functional layer as the list of layer names it takes tensors from."""
    calls = []
    for node in layer.get("inbound_nodes") or []:
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            kwargs = {k: v for k, v in (node.get("kwargs") or {}).items() if v is not None}
            kwargs.pop("training", None)
            if kwargs:
                raise KerasImportError(
                    f"layer {layer.get('name')!r} is called with {sorted(kwargs)}; only a "
                    "plain call on the previous layer's output is supported."
                )
            calls.append(_tensor_sources(node.get("args", [])))
        else:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
            srcs = []
            for t in node:
                kwargs = {k: v for k, v in (t[3] if len(t) > 3 else {}).items() if v is not None}
                kwargs.pop("training", None)
                if kwargs:
                    raise KerasImportError(
                        f"layer {layer.get('name')!r} is called with {sorted(kwargs)}; only a "
                        "plain call on the previous layer's output is supported."
                    )
                srcs.append(t[0])
            calls.append(srcs)
    return calls


def _endpoint(value: Any, what: str) -> str:
    # ["x", 0, 0] (one tensor) or [["x", 0, 0]] (a list of them)
    if value and isinstance(value[0], str):
        return value[0]
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        return value[0][0]
    raise KerasImportError(
        f"the model has {len(value or [])} {what}s; only single-chain models (one input, one "
        "output) are supported."
    )


def _layer(d: dict[str, Any]) -> KerasLayer:
    cfg = d.get("config") or {}
    name = d.get("name") or cfg.get("name") or d.get("class_name", "?")
    return KerasLayer(class_name=d.get("class_name", "?"), name=name, config=cfg)


def chain_of(model_config: dict[str, Any]) -> list[KerasLayer]:
    """The model's layers in input-to-output order; refuses anything but one simple chain."""
    try:
        layers = _chain_of(model_config)
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise KerasImportError(
            f"the model config is not in a form Keras writes ({type(e).__name__}: {e})."
        ) from e
    for layer in layers:
        if not isinstance(layer.config, dict):
            raise KerasImportError(f"layer {layer.name!r}: its config is not a JSON object.")
    return layers


def _chain_of(model_config: dict[str, Any]) -> list[KerasLayer]:
    cls = model_config.get("class_name")
    cfg = model_config.get("config")
    if cls == "Sequential":
        layers = cfg if isinstance(cfg, list) else (cfg or {}).get("layers", [])
        return [_layer(d) for d in layers]
    if cls not in ("Functional", "Model"):
        raise KerasImportError(
            f"model class {cls!r} is not supported: only Sequential and single-chain functional "
            "models are (a subclassed model's forward pass is Python code, which is never run)."
        )
    if not isinstance(cfg, dict):
        raise KerasImportError(f"the {cls} model's config is not a JSON object.")
    layers = {(_layer(d)).name: d for d in cfg.get("layers", [])}
    first = _endpoint(cfg.get("input_layers"), "input")
    last = _endpoint(cfg.get("output_layers"), "output")
    order, name, seen = [], last, set()
    while True:
        if name not in layers or name in seen:
            raise KerasImportError(f"layer {name!r} is missing from the model config.")
        seen.add(name)
        order.append(name)
        if name == first:
            break
        calls = _inbound(layers[name])
        if len(calls) != 1 or len(calls[0]) != 1:
            srcs = [s for c in calls for s in c]
            raise KerasImportError(
                f"layer {name!r} takes {len(srcs)} input tensor(s) over {len(calls)} call(s) "
                f"({srcs}); only single-chain models, each layer called once on the one before, "
                "are supported."
            )
        name = calls[0][0]
    extra = sorted(set(layers) - seen)
    if extra:
        raise KerasImportError(
            f"layers {extra} are not on the single path from input {first!r} to output "
            f"{last!r}; only single-chain models are supported."
        )
    return [_layer(layers[n]) for n in reversed(order)]


def parse_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise KerasImportError(f"{where}: not valid JSON ({e}).") from e
    except RecursionError:
        raise KerasImportError(f"{where}: JSON nested too deeply; refused.") from None
    if not isinstance(obj, dict) or "class_name" not in obj:
        raise KerasImportError(f"{where}: not a Keras model config (no 'class_name').")
    return obj
