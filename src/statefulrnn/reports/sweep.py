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

from statefulrnn import records  # noqa: E402
from statefulrnn.reports.html import CSS, _e, _img, _num  # noqa: E402
from statefulrnn.reports.plots import _color  # noqa: E402

MODES = ("stateful", "stateless", "stateless+burn-in")


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


def objective_vs_window(results: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(8, 4.4), layout="constrained")
    ax = fig.subplots()
    trials = _scored(results)
    for i, mode in enumerate(MODES):
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
    _log_y(ax, [r["last_value"] for r in trials])
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"validation {results['loss']}")
    ax.set_title(f"{results['target']['name']}: optimisation history")
    ax.legend(fontsize=7)
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
        color = "lightgrey" if r["state"] == "PRUNED" else _color(MODES.index(r["mode"]))
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
    for i, mode in enumerate(MODES):
        ax.plot([], [], color=_color(i), label=mode)
    ax.plot([], [], color="lightgrey", label="pruned")
    _log_y(ax, values)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {results['loss']}")
    ax.set_title(f"{results['target']['name']}: every trial's validation curve")
    ax.legend(fontsize=7)
    return fig


PLOTS = {"objective_vs_window": objective_vs_window, "history": history, "curves": curves}


def _best_section(results: dict[str, Any], out_dir: Path) -> str:
    best = results.get("best")
    if not best:
        return "<p>No trial has completed yet.</p>"
    keys = ["mode", "window", "burn_in", "batch_size", "lanes", "cell", "hidden", "layers", "lr"]
    keys += ["clip"]
    keys += ["epochs", "patience", "epochs_run", "seconds"]
    keys += [k for k in best if k.startswith(("val_", "test_"))]
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td class='num'>{_num(best.get(k))}</td></tr>" for k in keys
    )
    toml = out_dir / "best.toml"
    text = toml.read_text() if toml.exists() else ""
    return (
        f"<p>Trial {best['number']}: validation {_e(results['loss'])} "
        f"<b>{_num(best['value'])}</b> with {_e(results['predict'])} prediction.</p>"
        f"<table>{rows}</table><p>best.toml (for <code>statefulrnn train --config</code>):</p>"
        f"<pre>{_e(text)}</pre>"
    )


def _trials_table(results: dict[str, Any]) -> str:
    cols = ["number", "state", "value", "mode", "window", "burn_in", "batch_size", "lanes", "cell"]
    cols += ["hidden", "layers", "lr", "epochs_run", "seconds"]
    cols += sorted({k for r in results["trials"] for k in r if k.startswith(("val_", "test_"))})
    cols += ["worker", "note"]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td class='num'>{_num(r.get(c))}</td>" for c in cols) + "</tr>"
        for r in results["trials"]
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render(results: dict[str, Any], images: dict[str, Path], out_dir: Path) -> str:
    t = results["target"]
    counts = ", ".join(f"{n} {k.lower()}" for k, n in sorted(results["counts"].items()))
    sec = results["seconds"]
    wall = (
        f"{sec['wall']:.0f} s from the first trial's start to the last one's end, "
        if sec["wall"]
        else ""
    )
    space = "".join(f"<li><code>{_e(k)}</code>: {_e(v)}</li>" for k, v in results["space"].items())
    base = "".join(f"<li>{_e(k)}: {_num(v)}</li>" for k, v in results.get("baseline", {}).items())
    env = results["environment"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>statefulrnn sweep: {_e(t["name"])}</title>
<style>{CSS}</style></head><body>
<h1>{_e(t["name"])}: which window, state mode and size?</h1>
<p>Study <code>{_e(results["study"])}</code> in <code>{_e(results["storage"])}</code>:
{results["counted"]} of {results["requested"]} trials counted (complete + pruned); {_e(counts)}.
{wall}{sec["trials"]:.0f} s of training summed over workers. Objective: validation
{_e(results["loss"])} with <b>{_e(results["predict"])}</b> prediction. Run {_e(results["created"])}.</p>
<h2>Best configuration</h2>
{_best_section(results, out_dir)}
{"<p>Baselines: </p><ul>" + base + "</ul>" if base else ""}
<h2>Objective against window, by mode</h2>
{_img(images["objective_vs_window"], "objective against window")}
<h2>Optimisation history</h2>
{_img(images["history"], "optimisation history")}
<h2>Validation curves (pruning)</h2>
{_img(images["curves"], "validation curves")}
<h2>Every trial</h2>
<p>FAIL: the trial's worker died (or it found the budget spent and did not run); failed trials do
not count, and the sweep replaces them.</p>
{_trials_table(results)}
<h2>Search space</h2><ul>{space}</ul>
<p>Rerun the same command to resume the study or, with a larger --trials, extend it.
statefulrnn {_e(env["statefulrnn"])}, torch {_e(env["torch"])}, Python {_e(env["python"])},
{_e(env["threads"])} threads, {_e(env["machine"])}.</p>
</body></html>
"""


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
