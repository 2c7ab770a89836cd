"""compare: train every configuration a task defines, evaluate each both ways, write results.json.

For each configuration: build the model, `fit` it, then predict the test series statefully
(one O(T) pass) and windowed (a fresh pass per step), and score both, plus error by time
step and a few example predictions. The seed's claims are then checked against the numbers.
Plots and the HTML report are made from results.json by `statefulrnn.reports`.
"""

from __future__ import annotations

import datetime as dt
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from statefulrnn import __version__, losses, records
from statefulrnn.data.scaling import Scaling
from statefulrnn.data.schedule import pack
from statefulrnn.data.sequences import Sequences
from statefulrnn.model.rnn import StatefulRNN
from statefulrnn.outputs import score, stateful_outputs, windowed_outputs
from statefulrnn.predict import error_by_step
from statefulrnn.tasks import Task, TaskData
from statefulrnn.tasks.base import Config
from statefulrnn.train.fit import fit

SCHEMA = "statefulrnn.compare/1"
EXAMPLES = 3  # test series whose predictions are kept for plots
EXAMPLE_STEPS = 400  # steps kept per example


def _metrics(data: TaskData) -> list[str]:
    return losses.default_metrics(data.loss)


def _evaluate(model, packed_out: np.ndarray, data: TaskData, test: Sequences) -> dict[str, float]:
    metrics = _metrics(data)
    out = score(packed_out, test, data.loss, metrics)
    for focus_name, focus in data.focus.items():
        if focus is test or len(focus) == len(test):
            for k, v in score(packed_out, focus, data.loss, metrics).items():
                out[f"{k} [{focus_name}]"] = v
    return out


def _examples(
    packed_st: np.ndarray, packed_win: np.ndarray, test: Sequences, loss: str
) -> list[dict]:
    offsets = pack(test).offsets
    out = []
    for i in range(min(EXAMPLES, len(test))):
        s, e = offsets[i], min(offsets[i + 1], offsets[i] + EXAMPLE_STEPS)
        conv = (
            (lambda a: losses.to_probabilities(torch.from_numpy(a), loss).numpy())
            if loss != "mse"
            else (lambda a: a)
        )
        out.append(
            {
                "x": test.xs[i][: e - s, 0].tolist(),
                "y": test.ys[i][: e - s, 0].tolist(),
                "w": test.ws[i][: e - s].tolist(),
                "stateful": conv(packed_st[s:e])[:, 0].tolist(),
                "windowed": conv(packed_win[s:e])[:, 0].tolist(),
            }
        )
    return out


def _windowed_test(data: TaskData, limit: int | None) -> Sequences:
    if limit is None or limit >= len(data.test):
        return data.test
    return data.test[list(range(limit))]


def _history_to_target_units(history, variance: float) -> None:
    """MSE values of a standardized run, multiplied back into the targets' units."""
    for row in history:
        for k in ("loss", "val_loss", "val_loss_windowed"):
            if isinstance(row.get(k), float):
                row[k] *= variance


def run_config(
    cfg: Config, data: TaskData, *, verbose: int, windowed_limit: int | None, device=None
) -> dict[str, Any]:
    """Train one configuration and evaluate it in both prediction modes."""
    torch.manual_seed(cfg.seed)
    model = StatefulRNN(
        input_size=data.train.num_features,
        output_size=data.train.num_outputs,
        device=device,
        **cfg.model,
    )
    fit_args = dict(cfg.fit)
    train = data.train
    if "cut" in fit_args:
        train = train.cut(fit_args.pop("cut"))  # one long series spread over several lanes
    fit_args.setdefault("loss", data.loss)
    win_test = _windowed_test(data, windowed_limit)  # scored in the targets' own units
    val, test_in, win_in = data.val, data.test, win_test  # what the model is fed
    scaling = None
    if fit_args.pop("standardize", False):
        # inputs and targets standardized on the training steps; predictions scored in target units
        scaling = Scaling.fit(train)
        train, val = scaling.apply(train), scaling.apply(val)
        test_in, win_in = (
            scaling.apply(test_in, targets=False),
            scaling.apply(win_in, targets=False),
        )
    t0 = time.perf_counter()
    history = fit(model, train, val, seed=cfg.seed, verbose=verbose, **fit_args)
    train_seconds = time.perf_counter() - t0
    if scaling is not None:
        _history_to_target_units(history, float(np.mean(scaling.y.std**2)))

    t0 = time.perf_counter()
    st = stateful_outputs(model, test_in)
    st_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    win = windowed_outputs(model, win_in, window=cfg.predict_window, burn_in=cfg.predict_burn_in)
    win_seconds = time.perf_counter() - t0
    if scaling is not None:
        st, win = scaling.y.invert(st), scaling.y.invert(win)
    st_on_win = st[: pack(win_test).offsets[-1]]
    return {
        "label": cfg.label,
        "origin": cfg.origin,
        "settings": {
            "model": cfg.model,
            "fit": cfg.fit,
            "predict_window": cfg.predict_window,
            "predict_burn_in": cfg.predict_burn_in,
            "seed": cfg.seed,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "history": list(history),
        "epochs_run": len(history),
        "train_seconds": train_seconds,
        "predict_seconds": {"stateful": st_seconds, "windowed": win_seconds},
        "test_series": {"stateful": len(data.test), "windowed": len(win_test)},
        "test": {
            "stateful": _evaluate(model, st, data, data.test),
            "windowed": _evaluate(model, win, data, win_test),
        },
        "error_by_step": {
            "stateful": error_by_step(st_on_win, win_test, data.loss).tolist(),
            "windowed": error_by_step(win, win_test, data.loss).tolist(),
        },
        "examples": _examples(st_on_win, win, win_test, data.loss),
    }


def run_task(
    task: Task,
    params: dict[str, Any],
    *,
    quick: bool,
    seed: int = 0,
    only: list[str] | None = None,
    verbose: int = 1,
    device=None,
    log=print,
) -> dict[str, Any]:
    """Run every configuration of `task` (or those named in `only`) and check the seed's claims."""
    data = task.generate(params, seed)
    configs = task.configs(params)
    if only:
        unknown = sorted(set(only) - {c.name for c in configs})
        if unknown:
            raise ValueError(
                f"task {task.name} has no configuration {unknown[0]!r}; "
                f"it has {', '.join(c.name for c in configs)}."
            )
        configs = [c for c in configs if c.name in only]
    windowed_limit = params.get("n_test_windowed")
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "task": task.name,
        "seed_file": task.seed_file,
        "summary": task.summary,
        "params": params,
        "quick": quick,
        "seed": seed,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": {
            "statefulrnn": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
        },
        "loss": data.loss,
        "metric": data.metric,
        "baseline": data.baseline,
        "notes": data.notes,
        "data": {
            "train": len(data.train),
            "val": len(data.val),
            "test": len(data.test),
            "train_steps": int(data.train.lengths.sum()),
            "test_steps": int(data.test.lengths.sum()),
        },
        "configs": {},
    }
    for i, cfg in enumerate(configs):
        log(f"[{task.name}] {i + 1}/{len(configs)} {cfg.label}")
        results["configs"][cfg.name] = run_config(
            cfg, data, verbose=verbose, windowed_limit=windowed_limit, device=device
        )
        r = results["configs"][cfg.name]
        key = data.metric
        log(
            f"[{task.name}]   test {key}: stateful {r['test']['stateful'][key]:.4g}, "
            f"windowed {r['test']['windowed'][key]:.4g}; trained in {r['train_seconds']:.1f} s"
        )
    results["claims"] = [vars(c) for c in task.claims(params, results)]
    return results


def write_results(results: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    records.atomic_write_json(path, results)
    return path


def default_out(name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


# The documented shape of results.json (docs/results.md): key -> type, and per configuration.
RESULTS_KEYS = {
    "schema": str,
    "task": str,
    "seed_file": str,
    "summary": str,
    "params": dict,
    "quick": bool,
    "seed": int,
    "created": str,
    "environment": dict,
    "loss": str,
    "metric": str,
    "baseline": dict,
    "notes": list,
    "data": dict,
    "configs": dict,
    "claims": list,
}
CONFIG_KEYS = {
    "label": str,
    "origin": str,
    "settings": dict,
    "history": list,
    "epochs_run": int,
    "train_seconds": float,
    "predict_seconds": dict,
    "test_series": dict,
    "test": dict,
    "error_by_step": dict,
    "examples": list,
}
CLAIM_KEYS = {"claim": str, "seed_value": str, "ours": str, "verdict": str}
VERDICTS = (
    "reproduced",
    "not reproduced",
    "better than seed",
    "worse than seed",
    "left the plateau",
    "stayed on the plateau",
    "n/a",
)


def check_results(results: dict[str, Any]) -> None:
    """Raise ValueError naming the first key of results.json that breaks the documented schema."""

    def need(obj: dict, keys: dict, where: str) -> None:
        for k, t in keys.items():
            if k not in obj:
                raise ValueError(f"{where}: missing key {k!r}")
            ok = isinstance(obj[k], (int, float)) if t is float else isinstance(obj[k], t)
            if not ok:
                raise ValueError(
                    f"{where}.{k}: expected {t.__name__}, found {type(obj[k]).__name__}"
                )

    need(results, RESULTS_KEYS, "results")
    if results["schema"] != SCHEMA:
        raise ValueError(f"results.schema: expected {SCHEMA!r}, found {results['schema']!r}")
    for name, cfg in results["configs"].items():
        need(cfg, CONFIG_KEYS, f"configs.{name}")
        for mode in ("stateful", "windowed"):
            if results["metric"] not in cfg["test"][mode]:
                raise ValueError(f"configs.{name}.test.{mode}: missing {results['metric']!r}")
            if mode not in cfg["error_by_step"] or mode not in cfg["predict_seconds"]:
                raise ValueError(
                    f"configs.{name}: missing {mode!r} error_by_step or predict_seconds"
                )
    for i, claim in enumerate(results["claims"]):
        need(claim, CLAIM_KEYS, f"claims[{i}]")
        if claim["verdict"] not in VERDICTS:
            raise ValueError(f"claims[{i}].verdict: {claim['verdict']!r} is not one of {VERDICTS}")
