"""A sweep's plots and report.html, rebuilt from its sweep.json alone (images embedded).

Knows the sweep.json schema (`experiments/sweep_files.py`), not torch or Optuna.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from statefulrnn import records  # noqa: E402
from statefulrnn.modes import SWEEP_MODES  # noqa: E402
from statefulrnn.reports.html import _num, data_uri, environment  # noqa: E402
from statefulrnn.reports.plots import _color  # noqa: E402


def _ok(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _scored(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Counted trials with a number to plot: a complete one's value, a pruned one's last."""
    return [
        r
        for r in results["trials"]
        if r["state"] in ("COMPLETE", "PRUNED") and _ok(r.get("last_value"))
    ]


def _log_y(ax, values) -> None:
    if values and min(values) > 0:
        ax.set_yscale("log")


def _by_epoch_or_trial(ax, results: dict[str, Any], values, xlabel: str, title: str) -> None:
    """The labels of a plot over whole numbers (trials, epochs) of the validation loss."""
    _log_y(ax, values)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation {results['loss']}")
    ax.set_title(f"{results['target']['name']}: {title}")
    ax.legend(fontsize=7)


def objective_vs_window(results: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(8, 4.4), layout="constrained")
    ax = fig.subplots()
    trials = _scored(results)
    for i, mode in enumerate(SWEEP_MODES):
        for state, face in (("COMPLETE", None), ("PRUNED", "none")):
            pts = [r for r in trials if r["mode"] == mode and r["state"] == state]
            if pts:
                ax.scatter(
                    [r["window"] for r in pts],
                    [r["last_value"] for r in pts],
                    color=_color(i),
                    facecolors=face,
                    label=f"{mode}{' (pruned: last value)' if face else ''}",
                )
    best = results.get("best")
    if best:
        ax.scatter(
            [best["window"]],
            [best["value"]],
            marker="*",
            s=260,
            color="gold",
            edgecolors="black",
            zorder=5,
            label=f"best (trial {best['number']})",
        )
    ax.set_xscale("log")
    _log_y(ax, [r["last_value"] for r in trials])
    ax.set_xlabel("window (steps)")
    ax.set_ylabel(f"validation {results['loss']} ({results['predict']} prediction)")
    ax.set_title(f"{results['target']['name']}: objective against window, by mode")
    if ax.get_legend_handles_labels()[0]:  # no trial finished: nothing to label
        ax.legend(fontsize=7)
    return fig


def history(results: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    trials = _scored(results)
    done = [r for r in trials if r["state"] == "COMPLETE"]
    pruned = [r for r in trials if r["state"] == "PRUNED"]
    ax.scatter(
        [r["number"] for r in done], [r["value"] for r in done], color=_color(0), label="complete"
    )
    ax.scatter(
        [r["number"] for r in pruned],
        [r["last_value"] for r in pruned],
        color="grey",
        marker="x",
        label="pruned (last reported value)",
    )
    xs, ys, best = [], [], math.inf
    for r in sorted(done, key=lambda r: r["number"]):
        best = min(best, r["value"])
        xs.append(r["number"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color=_color(1), label="best so far")
    values = [r["last_value"] for r in trials]
    _by_epoch_or_trial(ax, results, values, "trial number", "optimisation history")
    return fig


def curves(results: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    values = []
    best = (results.get("best") or {}).get("number")
    for r in _scored(results):
        c = [v for v in r["curve"] if _ok(v)]
        values += c
        if r["number"] == best:
            continue
        color = "lightgrey" if r["state"] == "PRUNED" else _color(SWEEP_MODES.index(r["mode"]))
        ax.plot(range(1, len(c) + 1), c, color=color, lw=1)
    for r in results["trials"]:
        if r["number"] == best:
            ax.plot(
                range(1, len(r["curve"]) + 1),
                r["curve"],
                color="black",
                lw=2,
                label=f"best (trial {best})",
            )
    for i, mode in enumerate(SWEEP_MODES):
        ax.plot([], [], color=_color(i), label=mode)
    ax.plot([], [], color="lightgrey", label="pruned")
    _by_epoch_or_trial(ax, results, values, "epoch", "every trial's validation curve")
    return fig


PLOTS = {"objective_vs_window": objective_vs_window, "history": history, "curves": curves}


def _space_text(spec: Any) -> str:
    """A search-space entry as a reader says it: '1e-04 .. 0.01 (log)', 'one of 8, 16'."""
    if not isinstance(spec, dict):
        return _num(spec)
    if "choices" in spec:
        return "one of " + ", ".join(_num(c) for c in spec["choices"])
    if "fixed" in spec:
        return f"fixed: {_num(spec['fixed'])}"
    if "low" in spec:
        return f"{_num(spec['low'])} .. {_num(spec['high'])}" + (
            " (log)" if spec.get("log") else ""
        )
    return ", ".join(f"{k} {_num(v)}" for k, v in spec.items())


BEST_KEYS = ["mode", "window", "burn_in", "batch_size", "lanes", "cell", "hidden", "layers", "lr"]
BEST_KEYS += ["clip", "epochs", "patience", "epochs_run", "seconds"]
TRIAL_COLUMNS = ["number", "state", "value", "mode", "window", "burn_in", "batch_size", "lanes"]
TRIAL_COLUMNS += ["cell", "hidden", "layers", "lr", "epochs_run", "seconds"]


def context(results: dict[str, Any], images: dict[str, Path], out_dir: Path) -> dict[str, Any]:
    """What sweep.html shows, from sweep.json: plain values, no markup."""
    best = results.get("best")
    best_rows = []
    if best:
        keys = BEST_KEYS + [k for k in best if k.startswith(("val_", "test_"))]
        best_rows = [(k, _num(best.get(k))) for k in keys]
    trials = results["trials"]
    columns = TRIAL_COLUMNS + sorted(
        {k for r in trials for k in r if k.startswith(("val_", "test_"))}
    )
    columns += ["worker", "note"]
    toml = out_dir / "best.toml"
    sec = results["seconds"]
    return {
        "target": results["target"],
        "best": best,
        "best_rows": best_rows,
        "best_toml": toml.read_text() if toml.exists() else "",
        "loss": results["loss"],
        "predict": results["predict"],
        "study": results["study"],
        "storage": results["storage"],
        "counted": results["counted"],
        "requested": results["requested"],
        "counts": ", ".join(f"{n} {k.lower()}" for k, n in sorted(results["counts"].items())),
        "wall": sec["wall"],
        "trial_seconds": sec["trials"],
        "created": results["created"],
        "baseline": list(results.get("baseline", {}).items()),
        "images": {k: data_uri(p) for k, p in images.items()},
        "columns": columns,
        "trials": [[_num(r.get(c)) for c in columns] for r in trials],
        "space": [(k, _space_text(v)) for k, v in results["space"].items()],
        "env": results["environment"],
    }


def render(results: dict[str, Any], images: dict[str, Path], out_dir: Path) -> str:
    page = environment().get_template("sweep.html")
    return page.render(context(results, images, out_dir))


def write_report(out_dir: Path) -> Path:
    """Read out_dir/sweep.json, write the PNGs and out_dir/report.html."""
    results = records.read_json(out_dir / "sweep.json")
    images = {}
    for name, make in PLOTS.items():
        buf = io.BytesIO()
        make(results).savefig(buf, format="png", dpi=100)
        path = out_dir / f"{name}.png"
        records.atomic_write_bytes(path, buf.getvalue())  # workers may finish together
        images[name] = path
    path = out_dir / "report.html"
    records.atomic_write_bytes(path, render(results, images, out_dir).encode())
    return path
