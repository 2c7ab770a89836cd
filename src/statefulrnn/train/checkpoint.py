"""Training checkpoints: model, optimizer, history and RNG in one folder, swapped in atomically.

A checkpoint is a model checkpoint (loadable by `load_model`) plus `optimizer.safetensors`,
`optimizer.json`, `trainer.json` and `history.json`, so an interrupted `fit` resumes to
exactly the weights and history of an uninterrupted one. No pickle anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from statefulrnn import records
from statefulrnn.model.base import RecurrentModel
from statefulrnn.train.history import History

OPTIMIZER_TENSORS = "optimizer.safetensors"
OPTIMIZER_JSON = "optimizer.json"
TRAINER_JSON = "trainer.json"
HISTORY_JSON = "history.json"


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        plain["state"][str(pid)] = {}
        for name, v in entries.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{pid}.{name}"] = v.detach().cpu().contiguous()
                plain["state"][str(pid)][name] = {"tensor": f"{pid}.{name}"}
            else:
                plain["state"][str(pid)][name] = {"value": v}
    return tensors, plain


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict, device) -> dict:
    state = {}
    for pid, entries in plain["state"].items():
        state[int(pid)] = {
            name: tensors[e["tensor"]].to(device) if "tensor" in e else e["value"]
            for name, e in entries.items()
        }
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(
    path: str | Path,
    model: RecurrentModel,
    optimizer: torch.optim.Optimizer,
    history: History,
    trainer: dict[str, Any],
) -> None:
    """Write model + optimizer + history + `trainer` (epoch, config) + torch RNG state.

    Refuses non-finite weights (the last good checkpoint stays) and a folder that a
    statefulrnn save did not write (records.FolderNotOurs)."""
    model.check_finite(f"refusing to write checkpoint {path}")
    opt_tensors, opt_plain = _split_optimizer(optimizer.state_dict())
    opt_tensors["__torch_rng__"] = torch.get_rng_state()

    def write(tmp: Path) -> None:
        model.write_files(tmp, extra={"train_config": trainer.get("config", {})})
        save_file(opt_tensors, str(tmp / OPTIMIZER_TENSORS))
        records.usual_mode(tmp / OPTIMIZER_TENSORS)
        records.atomic_write_json(tmp / OPTIMIZER_JSON, opt_plain)
        records.atomic_write_json(tmp / TRAINER_JSON, trainer)
        history.save(tmp / HISTORY_JSON)

    records.replace_dir(path, write)


def has_checkpoint(path: str | Path) -> bool:
    try:
        return (records.resolve_dir(path) / TRAINER_JSON).exists()
    except FileNotFoundError:
        return False


def load_checkpoint(
    path: str | Path, model: RecurrentModel, optimizer: torch.optim.Optimizer
) -> tuple[History, dict[str, Any]]:
    """Restore weights, optimizer state and RNG in place; return (history, trainer dict)."""
    folder = records.resolve_dir(path)
    saved = RecurrentModel.load(folder)
    if saved.config() != model.config() or saved.kind != model.kind:
        raise ValueError(
            f"checkpoint {folder} holds a {saved.kind} {saved.config()}, but fit was given a "
            f"{model.kind} {model.config()}; resume with the same architecture or a new folder."
        )
    model.load_state_dict(saved.state_dict())
    tensors = load_file(str(folder / OPTIMIZER_TENSORS))
    torch.set_rng_state(tensors.pop("__torch_rng__"))
    plain = records.read_json(folder / OPTIMIZER_JSON)
    optimizer.load_state_dict(_join_optimizer(tensors, plain, model.device))
    return History.load(folder / HISTORY_JSON), records.read_json(folder / TRAINER_JSON)
