"""The search space of a sweep: which training options vary, over what, and each task's defaults.

A space maps the option names of `statefulrnn train` (mode, window, batch_size, cell, hidden,
layers, lr, clip, epochs, patience), plus `burn_in`, to a fixed value, a list of choices, or a
range. A `--space` TOML file overrides the defaults one option at a time:

    epochs = 30                                      # fixed
    cell = ["lstm", "gru"]                           # one of these
    window = { low = 1, high = 20, log = true }      # integers 1..20, log-uniform
    lr = { low = 1e-4, high = 1e-2, log = true }     # a float range (float bounds)

`mode` chooses among "stateful", "stateless" and "stateless+burn-in"; `burn_in` (steps run
without gradient before each stateless window) is drawn only when the mode asks for it.

Knows Optuna only through `trial.suggest_*`, and the cells by name from their registry
(model/cells/, which imports no torch); nothing else of models or data.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

from statefulrnn.model import cells
from statefulrnn.modes import STATELESS_BURN_IN, SWEEP_MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

# option -> type of its values; `statefulrnn train`'s names, so a best config needs no renaming
OPTIONS: dict[str, type] = {
    "mode": str,
    "window": int,
    "burn_in": int,
    "batch_size": int,
    "cell": str,
    "hidden": int,
    "layers": int,
    "lr": float,
    "clip": float,
    "epochs": int,
    "patience": int,
}
ALIASES = {"hidden_size": "hidden", "num_layers": "layers"}  # sr.StatefulRNN's names

Space = dict[
    str, dict[str, Any]
]  # option -> {"fixed": v} | {"choices": [...]} | {"low", "high", "log"}

# Per-task changes to the defaults below: epochs (full, --quick) and any option's range.
TASK_SPACES: dict[str, dict[str, Any]] = {
    "first-bit": {"epochs": (15, 6), "batch_size": {"low": 16, "high": 256, "log": True}},
    # one training series, cut into `batch_size` pieces for stateful lanes
    "moving-average": {
        "epochs": (80, 30),
        "window": {"low": 1, "high": 50, "log": True},
        "batch_size": {"low": 4, "high": 32, "log": True},
    },
    "sine": {"epochs": (150, 40), "hidden": {"low": 2, "high": 32, "log": True}},
    "lagged-product": {"epochs": (30, 4), "window": {"low": 20, "high": 500, "log": True}},
}


def default_space(
    max_length: int,
    *,
    task: str | None = None,
    quick: bool = False,
    epochs: int = 20,
    patience: int = 0,
) -> Space:
    """The defaults: every mode, windows up to the longest sequence, small to mid-size models."""
    space: Space = {
        "mode": {"choices": list(SWEEP_MODES)},
        "window": {"low": 1, "high": max(1, min(max_length, 256)), "log": True},
        "burn_in": {"low": 1, "high": max(1, min(max_length, 1024)), "log": True},
        "batch_size": {"low": 4, "high": 128, "log": True},
        "cell": {"choices": cells.sweep_names()},
        "hidden": {"low": 4, "high": 64, "log": True},
        "layers": {"low": 1, "high": 2, "log": False},
        "lr": {"low": 1e-4, "high": 3e-2, "log": True},
        "clip": {"fixed": 1.0},
        "epochs": {"fixed": epochs},
        "patience": {"fixed": patience},
    }
    for name, value in TASK_SPACES.get(task or "", {}).items():
        if name == "epochs":
            value = value[1] if quick else value[0]
        space[name] = normalize(name, value, "the task defaults")
    return space


def normalize(name: str, value: Any, where: str) -> dict[str, Any]:
    """One option's entry as {"fixed"} / {"choices"} / {"low", "high", "log"}, checked."""
    kind = OPTIONS[name]
    if isinstance(value, dict) and set(value) <= {"fixed"}:
        value = value.get("fixed")
    if isinstance(value, dict) and set(value) <= {"choices"}:
        value = value.get("choices")
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log"}
        if unknown or not {"low", "high"} <= set(value):
            raise ValueError(
                f"{where}: {name} = {value!r}: a range needs low and high (and optionally log); "
                f"received keys {sorted(value)}."
            )
        if kind is str:
            raise ValueError(f"{where}: {name} takes a value or a list of values, not a range.")
        low, high, log = value["low"], value["high"], bool(value.get("log", False))
        for v in (low, high):
            _check_value(name, v, where)
        if kind is float:
            low, high = float(low), float(high)
        if not low <= high:
            raise ValueError(f"{where}: {name}: low {low} is above high {high}.")
        if log and low <= 0:
            raise ValueError(f"{where}: {name}: a log range needs low > 0; received {low}.")
        return {"low": low, "high": high, "log": log}
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"{where}: {name}: an empty list of choices.")
        choices = [_check_value(name, v, where) for v in value]
        return {"choices": choices} if len(choices) > 1 else {"fixed": choices[0]}
    return {"fixed": _check_value(name, value, where)}


def _check_value(name: str, v: Any, where: str) -> Any:
    kind = OPTIONS[name]
    if name == "clip" and isinstance(v, str) and v.lower() == "none":
        return None
    if kind is str:
        ok = isinstance(v, str)
    elif kind is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    else:
        ok = isinstance(v, int) and not isinstance(v, bool)
    if not ok:
        raise ValueError(f"{where}: {name}: expected {kind.__name__} values; received {v!r}.")
    if name == "mode" and v not in SWEEP_MODES:
        raise ValueError(f"{where}: mode {v!r} is not one of {SWEEP_MODES}.")
    if name == "cell" and v not in cells.CELLS:
        raise ValueError(f"{where}: cell {v!r} is not one of {cells.names()}.")
    if kind is int and v < (0 if name == "patience" else 1):
        raise ValueError(f"{where}: {name} must be >= 1; received {v}.")
    if kind is float and not v > 0:
        raise ValueError(f"{where}: {name} must be > 0; received {v}.")
    return float(v) if kind is float else v


def override(space: Space, changes: dict[str, Any] | str | Path | None, where: str = "") -> Space:
    """`space` with each option in `changes` (a dict, or a TOML file's path) replaced."""
    if changes is None:
        return dict(space)
    if isinstance(changes, (str, Path)):
        where = str(changes)
        changes = load_toml(changes)
    out = dict(space)
    for key, value in changes.items():
        name = ALIASES.get(key.replace("-", "_"), key.replace("-", "_"))
        if name not in OPTIONS:
            close = difflib.get_close_matches(name, list(OPTIONS), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{where or 'space'}: unknown option {key!r}.{hint} Options: {', '.join(OPTIONS)}."
            )
        out[name] = normalize(name, value, where or "space")
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such space file.") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None


def suggest(trial, space: Space) -> dict[str, Any]:
    """One configuration: fixed options as given, the others drawn through `trial.suggest_*`."""
    out = {name: _draw(trial, name, dim) for name, dim in space.items() if name != "burn_in"}
    if out["mode"] == STATELESS_BURN_IN:
        out["burn_in"] = _draw(trial, "burn_in", space["burn_in"])
    return out


def _draw(trial, name: str, dim: dict[str, Any]) -> Any:
    if "fixed" in dim:
        return dim["fixed"]
    if "choices" in dim:
        return trial.suggest_categorical(name, dim["choices"])
    if OPTIONS[name] is int:
        return trial.suggest_int(name, dim["low"], dim["high"], log=dim["log"])
    return trial.suggest_float(name, dim["low"], dim["high"], log=dim["log"])


def searched(space: Space) -> list[str]:
    """The options that vary (not fixed), in the space's order."""
    return [name for name, dim in space.items() if "fixed" not in dim]


def describe(space: Space) -> list[str]:
    """One line per option, for the console and the report."""
    lines = []
    for name, dim in space.items():
        if "fixed" in dim:
            lines.append(f"{name} = {dim['fixed']!r}")
        elif "choices" in dim:
            lines.append(f"{name} in {dim['choices']}")
        else:
            lines.append(f"{name} in [{dim['low']}, {dim['high']}]{' (log)' if dim['log'] else ''}")
    return lines
