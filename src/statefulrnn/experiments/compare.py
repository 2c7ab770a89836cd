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
from statefulrnn import threads as thread_policy
from statefulrnn.data.scaling import Scaling
from statefulrnn.data.schedule import pack
from statefulrnn.data.sequences import Sequences
from statefulrnn.model.rnn import StatefulRNN
from statefulrnn.modes import PREDICT_MODES
from statefulrnn.outputs import score, stateful_outputs, windowed_outputs
from statefulrnn.predict import error_by_step
from statefulrnn.tasks import Task, TaskData
from statefulrnn.tasks.base import Config
from statefulrnn.train.fit import fit

SCHEMA = "statefulrnn.compare/2"
EXAMPLES = 3  # test series whose predictions are kept for plots
EXAMPLE_STEPS = 1000  # at most this many steps kept per example (the task picks an excerpt)
# --quick predicts windowed on as many test series as fit this many cell steps
# (series length × (window + burn-in) each): windowed prediction costs O(T·window) per series
QUICK_WINDOWED_CELL_STEPS = 3_000_000


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


def _example_indices(test: Sequences, loss: str, count: int) -> list[int]:
    """Which test series the report shows: for a classification task, both classes (a first
    bit of 1 and one of 0) in turn; otherwise the first few."""
    if loss != "bce":
        return list(range(min(count, len(test))))
    first = [float(y[0, 0]) >= 0.5 for y in test.ys]
    ones = [i for i, f in enumerate(first) if f]
    zeros = [i for i, f in enumerate(first) if not f]
    out: list[int] = []
    while len(out) < min(count, len(test)) and (ones or zeros):
        for group in (ones, zeros):
            if group and len(out) < count:
                out.append(group.pop(0))
    return out


def _examples(
    packed_st: np.ndarray,
    packed_win: np.ndarray,
    test: Sequences,
    loss: str,
    excerpt: tuple[int, int],
) -> list[dict]:
    offsets = pack(test).offsets
    conv = (
        (lambda a: losses.to_probabilities(torch.from_numpy(a), loss).numpy())
        if loss != "mse"
        else (lambda a: a)
    )
    out = []
    for i in _example_indices(test, loss, EXAMPLES):
        n = int(offsets[i + 1] - offsets[i])
        a, b = min(excerpt[0], n), min(excerpt[1], n, excerpt[0] + EXAMPLE_STEPS)
        s, e = offsets[i] + a, offsets[i] + b
        out.append(
            {
                "series": i,
                "start": a,
                "x": test.xs[i][a:b, 0].tolist(),
                "y": test.ys[i][a:b, 0].tolist(),
                "w": test.ws[i][a:b].tolist(),
                "stateful": conv(packed_st[s:e])[:, 0].tolist(),
                "windowed": conv(packed_win[s:e])[:, 0].tolist(),
            }
        )
    return out


def _windowed_test(data: TaskData, limit: int | None) -> Sequences:
    if limit is None or limit >= len(data.test):
        return data.test
    return data.test[list(range(limit))]


def _windowed_series(cfg: Config, data: TaskData, limit: int | None, quick: bool) -> int | None:
    """Test series to predict windowed: the task's limit, and under --quick at most as many as
    QUICK_WINDOWED_CELL_STEPS allow at this configuration's window (at least one)."""
    if not quick:
        return limit
    steps = float(np.mean(data.test.lengths))
    per_series = steps * min(cfg.predict_window + (cfg.predict_burn_in or 0), steps)
    budget = max(1, int(QUICK_WINDOWED_CELL_STEPS // max(per_series, 1.0)))
    return budget if limit is None else min(limit, budget)


def _history_to_target_units(history, variance: float) -> None:
    """MSE values of a standardized run, multiplied back into the targets' units."""
    for row in history:
        for k in ("loss", "val_loss", "val_loss_windowed"):
            if isinstance(row.get(k), float):
                row[k] *= variance


def run_config(
    cfg: Config,
    data: TaskData,
    *,
    verbose: int,
    windowed_limit: int | None,
    device=None,
    run_seed: int = 0,
) -> dict[str, Any]:
    """Train one configuration and evaluate it in both prediction modes.

    `run_seed` (compare's --seed) shifts the configuration's initialisation and order seed as
    it shifts the data's, so another --seed is another run, not the same model on new data.
    """
    seed = cfg.seed + run_seed
    torch.manual_seed(seed)
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
    t0, c0 = time.perf_counter(), time.process_time()
    history = fit(model, train, val, seed=seed, verbose=verbose, **fit_args)
    train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    y_scale = None if scaling is None else scaling.y  # the targets' standardizer
    if y_scale is not None:
        _history_to_target_units(history, float(np.mean(y_scale.std**2)))

    c0 = time.process_time()
    t0 = time.perf_counter()
    st = stateful_outputs(model, test_in)
    st_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    win = windowed_outputs(model, win_in, window=cfg.predict_window, burn_in=cfg.predict_burn_in)
    win_seconds = time.perf_counter() - t0
    predict_cpu = time.process_time() - c0
    if y_scale is not None:
        st, win = y_scale.invert(st), y_scale.invert(win)
    st_on_win = st[: pack(win_test).offsets[-1]]
    return {
        "label": cfg.label,
        "origin": cfg.origin,
        "settings": {
            "model": cfg.model,
            "fit": cfg.fit,
            "predict_window": cfg.predict_window,
            "predict_burn_in": cfg.predict_burn_in,
            "seed": seed,
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "history": list(history),
        "epochs_run": len(history),
        "train_seconds": train_seconds,
        "predict_seconds": {"stateful": st_seconds, "windowed": win_seconds},
        # CPU seconds of this process: on a busy machine, what a quiet one's wall time would be
        "cpu_seconds": {"train": train_cpu, "predict": predict_cpu},
        "test_series": {"stateful": len(data.test), "windowed": len(win_test)},
        "test": {
            "stateful": _evaluate(model, st, data, data.test),
            "windowed": _evaluate(model, win, data, win_test),
        },
        "error_by_step": {
            "stateful": error_by_step(st_on_win, win_test, data.loss).tolist(),
            "windowed": error_by_step(win, win_test, data.loss).tolist(),
        },
        "examples": _examples(st_on_win, win, win_test, data.loss, data.excerpt),
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
    # --quick leaves out what no quick budget can show; naming it in --only runs it anyway
    not_run = [c for c in configs if quick and c.full_only and not only]
    configs = [c for c in configs if c not in not_run]
    limit = params.get("n_test_windowed")
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
            "threads": thread_policy.get_default() or "auto",  # --threads; auto: threads.py
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
        "not_run": {
            c.name: {"label": c.label, "full_minutes": c.full_minutes, "reason": "full_only"}
            for c in not_run
        },
    }
    for c in not_run:
        log(f"[{task.name}] not run by --quick (needs the full run): {c.label}")
    for i, cfg in enumerate(configs):
        log(f"[{task.name}] {i + 1}/{len(configs)} {cfg.label}")
        results["configs"][cfg.name] = run_config(
            cfg,
            data,
            verbose=verbose,
            windowed_limit=_windowed_series(cfg, data, limit, quick),
            device=device,
            run_seed=seed,
        )
        log(f"[{task.name}]   {config_line(results['configs'][cfg.name], data.metric)}")
    results["claims"] = [
        {**vars(c), "kind": VERDICT_KIND.get(c.verdict, "untested")}
        for c in task.claims(params, results)
    ]
    results["answer"] = task.answer(params, results) if task.answer else ""
    return results


def config_line(r: dict[str, Any], metric: str) -> str:
    """One configuration's test numbers and where its seconds went, for the console."""
    n, p, cpu = r["test_series"], r["predict_seconds"], r["cpu_seconds"]
    return (
        f"test {metric}: stateful {r['test']['stateful'][metric]:.4g} ({n['stateful']} series), "
        f"windowed {r['test']['windowed'][metric]:.4g} ({n['windowed']} series); "
        f"train {r['train_seconds']:.1f} s, predict {p['stateful']:.1f} s stateful "
        f"+ {p['windowed']:.1f} s windowed (CPU: {cpu['train']:.1f} s + {cpu['predict']:.1f} s)"
    )


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
    "not_run": dict,
    "claims": list,
    "answer": str,
}
CONFIG_KEYS = {
    "label": str,
    "origin": str,
    "settings": dict,
    "history": list,
    "epochs_run": int,
    "train_seconds": float,
    "predict_seconds": dict,
    "cpu_seconds": dict,
    "test_series": dict,
    "test": dict,
    "error_by_step": dict,
    "examples": list,
}
CLAIM_KEYS = {"claim": str, "seed_value": str, "ours": str, "verdict": str, "kind": str}
# every verdict a claim may have, and how a report colours it: the claim holds (green), holds
# in part (amber), fails (red), or this run cannot tell (grey: "needs the full run" when
# --quick left the recipe out)
VERDICT_KIND = {
    "reproduced": "holds",
    "better than seed": "holds",
    "left the plateau": "partly",  # left the zero predictor, short of the seed's number
    "not reproduced": "fails",
    "worse than seed": "fails",
    "stayed on the plateau": "fails",
    "needs the full run": "untested",
    "n/a": "untested",
}
VERDICTS = tuple(VERDICT_KIND)


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
        for mode in PREDICT_MODES:
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
        if claim["kind"] != VERDICT_KIND[claim["verdict"]]:
            raise ValueError(
                f"claims[{i}].kind: {claim['kind']!r} does not match verdict {claim['verdict']!r}"
            )
