"""Plots of a compare run, rebuilt from its results.json alone (matplotlib, Agg, a Figure each).

Knows the results schema, not torch or models.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _finite(values) -> list[float]:
    return [v if isinstance(v, (int, float)) and math.isfinite(v) else float("nan") for v in values]


def training_curves(results: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(results["configs"].values()):
        hist = r["history"]
        epochs = [h["epoch"] for h in hist]  # numbered from 1
        if hist and "val_loss" in hist[0]:
            ax.plot(
                epochs,
                _finite(h.get("val_loss") for h in hist),
                color=_color(i),
                label=f"{r['label']}: stateful val",
            )
        if hist and "val_loss_windowed" in hist[0]:
            ax.plot(
                epochs,
                _finite(h.get("val_loss_windowed") for h in hist),
                color=_color(i),
                ls="--",
                label=f"{r['label']}: windowed val",
            )
    for name, value in results.get("baseline", {}).items():
        if results["loss"] == "mse":
            ax.axhline(value, color="grey", ls=":", lw=1)
            ax.annotate(
                name, (0, value), xycoords=("axes fraction", "data"), fontsize=7, color="grey"
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation loss ({results['loss']})")
    if results["loss"] == "mse":
        ax.set_yscale("log")
    ax.set_title(f"{results['task']}: validation loss per epoch")
    ax.legend(fontsize=7)
    return fig


def _smooth(values: list[float], k: int) -> list[float]:
    """Mean over the k steps ending at each t (NaNs ignored), so long curves stay readable."""
    if k <= 1:
        return values
    out = []
    for t in range(len(values)):
        window = [v for v in values[max(0, t - k + 1) : t + 1] if v == v]
        out.append(sum(window) / len(window) if window else float("nan"))
    return out


def error_by_step(results: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(8, 5.2), layout="constrained")
    ax = fig.subplots()
    smooth = 1
    for i, r in enumerate(results["configs"].values()):
        for mode, ls in (("stateful", "-"), ("windowed", "--")):
            e = _finite(r["error_by_step"][mode])
            smooth = max(1, len(e) // 100) if len(e) > 200 else 1
            ax.plot(
                range(len(e)),
                _smooth(e, smooth),
                color=_color(i),
                ls=ls,
                lw=1,
                label=f"{r['label']}: {mode}",
            )
    windows = sorted({r["settings"]["predict_window"] for r in results["configs"].values()})
    for w in windows:
        ax.axvline(w - 1, color="grey", ls=":", lw=1)
    ax.set_xlabel(
        "time step t within a test series (dotted: prediction window)"
        + (f"; mean over the last {smooth} steps" if smooth > 1 else "")
    )
    ax.set_ylabel(f"mean {results['loss']} at step t")
    if results["loss"] == "mse":
        ax.set_yscale("log")
    ax.set_title(
        f"{results['task']}: error by time step (solid: stateful, dashed: windowed prediction)"
    )
    fig.legend(fontsize=7, loc="outside lower center", ncol=2)
    return fig


def examples(results: dict[str, Any]) -> Figure:
    configs = list(results["configs"].values())
    fig = Figure(figsize=(9, 1.9 * len(configs) + 0.6), layout="constrained")
    axes = fig.subplots(len(configs), 1, squeeze=False)[:, 0]
    for ax, r in zip(axes, configs):
        if not r["examples"]:
            continue
        ex = r["examples"][0]
        t = range(len(ex["y"]))
        ax.plot(t, ex["y"], color="black", lw=1.2, label="target")
        ax.plot(t, ex["stateful"], color=_color(0), lw=1, label="stateful prediction")
        ax.plot(t, ex["windowed"], color=_color(1), lw=1, ls="--", label="windowed prediction")
        ax.set_title(r["label"], fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("time step")
    return fig


def summary_bars(results: dict[str, Any]) -> Figure:
    metric = results["metric"]
    configs = list(results["configs"].values())
    fig = Figure(figsize=(8, 0.5 * len(configs) + 1.8), layout="constrained")
    ax = fig.subplots()
    y = range(len(configs))
    for k, (mode, off) in enumerate((("stateful", -0.2), ("windowed", 0.2))):
        vals = _finite(r["test"][mode][metric] for r in configs)
        ax.barh(
            [i + off for i in y], vals, height=0.38, color=_color(k), label=f"{mode} prediction"
        )
    ax.set_yticks(list(y), [r["label"] for r in configs], fontsize=8)
    ax.invert_yaxis()
    if metric == "loss":
        ax.set_xscale("log")
        for name, value in results.get("baseline", {}).items():
            ax.axvline(value, color="grey", ls=":", lw=1)
            ax.annotate(
                name,
                (value, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                color="grey",
                rotation=90,
                va="top",
            )
    ax.set_xlabel(f"test {'MSE' if metric == 'loss' else metric}")
    ax.legend(fontsize=8)
    ax.set_title(f"{results['task']}: test {metric}, stateful vs windowed prediction")
    return fig


def windowed_vs_stateful(results: dict[str, Any]) -> Figure:
    """Left: each configuration's windowed vs stateful test metric (numbered points; on the
    diagonal, both prediction modes agree). Right: what it cost to train, same numbers."""
    metric = results["metric"]
    configs = list(results["configs"].values())
    fig = Figure(figsize=(10, 0.25 * len(configs) + 4), layout="constrained")
    ax, cost = fig.subplots(1, 2, width_ratios=[1.1, 1])
    win = _finite(r["test"]["windowed"][metric] for r in configs)
    st = _finite(r["test"]["stateful"][metric] for r in configs)
    at: dict[tuple[str, str], list[int]] = {}  # points that coincide share one label
    for i, (x, y) in enumerate(zip(win, st)):
        ax.scatter([x], [y], color=_color(i), s=40, zorder=3)
        at.setdefault((f"{x:.2g}", f"{y:.2g}"), []).append(i)
    for numbers in at.values():
        x, y = win[numbers[0]], st[numbers[0]]
        text = ", ".join(str(i + 1) for i in numbers)
        ax.annotate(text, (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8)
    seen = [v for v in win + st if v == v]
    if seen:
        lo, hi = min(seen), max(seen)
        if metric == "loss":
            lo, hi = lo / 2, hi * 2
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            lo, hi = min(lo, 0.5) - 0.03, max(hi, 1.0) + 0.03
        ax.plot([lo, hi], [lo, hi], color="grey", ls=":", lw=1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    name = "MSE" if metric == "loss" else metric
    better = "lower" if metric == "loss" else "higher"
    ax.set_xlabel(f"windowed prediction: test {name}")
    ax.set_ylabel(f"stateful prediction: test {name}")
    ax.set_title(
        f"{results['task']}: windowed vs stateful ({better} is better;\ndotted: both modes equal)",
        fontsize=10,
    )
    rows = range(len(configs))
    seconds = [r["train_seconds"] for r in configs]
    cost.barh(list(rows), seconds, color=[_color(i) for i in rows])
    for i, v in enumerate(seconds):
        cost.annotate(f" {v:.1f} s", (v, i), va="center", fontsize=7)
    cost.set_yticks(
        list(rows), [f"{i + 1}. {r['label']}" for i, r in enumerate(configs)], fontsize=7
    )
    cost.invert_yaxis()
    cost.set_xlim(0, max(seconds, default=1) * 1.25)
    cost.set_xlabel("train seconds")
    cost.set_title("cost", fontsize=10)
    return fig


PLOTS = {
    "summary": summary_bars,
    "training_curves": training_curves,
    "error_by_step": error_by_step,
    "examples": examples,
    "windowed_vs_stateful": windowed_vs_stateful,
}


def write_plots(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Render every plot to PNG in out_dir; return {name: path}."""
    paths = {}
    for name, make in PLOTS.items():
        fig = make(results)
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        paths[name] = path
    return paths
