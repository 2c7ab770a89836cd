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
from matplotlib.ticker import MaxNLocator  # noqa: E402

from statefulrnn.modes import PREDICT_MODES  # noqa: E402

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def _finite(values) -> list[float]:
    return [v if isinstance(v, (int, float)) and math.isfinite(v) else float("nan") for v in values]


def _baselines(ax, results: dict[str, Any], axis: str = "y") -> None:
    """Dotted grey lines at each baseline, named in the legend (a label on the axes can clip)."""
    styles = [":", "-.", (0, (1, 3))]
    for k, (name, value) in enumerate(results.get("baseline", {}).items()):
        line = ax.axhline if axis == "y" else ax.axvline
        line(value, color="grey", ls=styles[k % len(styles)], lw=1.2, label=f"{name}: {value:.3g}")


def training_curves(results: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(results["configs"].values()):
        hist = r["history"]
        epochs = [h["epoch"] for h in hist]  # numbered from 1
        if hist and "val_loss" in hist[0]:
            ax.plot(
                epochs,
                _finite(h.get("val_loss") for h in hist),
                color=_color(i),
                marker="." if len(hist) < 15 else None,
                label=f"{i + 1}. {r['label']}: stateful val",
            )
        if hist and "val_loss_windowed" in hist[0]:
            ax.plot(
                epochs,
                _finite(h.get("val_loss_windowed") for h in hist),
                color=_color(i),
                ls="--",
                label=f"{i + 1}. {r['label']}: windowed val",
            )
    if results["loss"] == "mse":
        _baselines(ax, results)
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation loss ({results['loss']})")
    ax.set_title(f"{results['task']}: validation loss per epoch")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    return fig


def bin_steps(values: list[float], bins: int) -> tuple[list[float], list[float]]:
    """(centres, means): `values` averaged over about `bins` equal runs of steps (NaNs, the
    unscored steps, ignored), so a long per-step curve reads as a level, not as noise."""
    n = len(values)
    width = max(1, math.ceil(n / bins))
    centres, means = [], []
    for a in range(0, n, width):
        chunk = [v for v in values[a : a + width] if v == v]
        centres.append(a + (min(a + width, n) - a - 1) / 2)
        means.append(sum(chunk) / len(chunk) if chunk else float("nan"))
    return centres, means


ERROR_BINS = 50  # at most this many points per error-by-step curve


def error_by_step(results: dict[str, Any]) -> Figure:
    """Two panels (stateful, windowed prediction), one line per configuration: the mean loss at
    each step of a test series, averaged over bins of steps when the series are long."""
    fig = Figure(figsize=(12, 5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    configs = list(results["configs"].values())
    width = 1
    seen = []
    for ax, mode in zip(axes, PREDICT_MODES):
        for i, r in enumerate(configs):
            e = _finite(r["error_by_step"][mode])
            x, y = bin_steps(e, ERROR_BINS)
            width = max(1, math.ceil(len(e) / ERROR_BINS))
            seen += [v for v in y if v == v and v > 0]
            ax.plot(
                x,
                y,
                color=_color(i),
                lw=1.4,
                marker="." if len(x) <= 30 else None,
                label=f"{i + 1}. {r['label']}",
            )
        windows = sorted({r["settings"]["predict_window"] for r in configs})
        for k, w in enumerate(windows):
            ax.axvline(
                w - 0.5,
                color="grey",
                ls=":",
                lw=1,
                label="windowed prediction's window" if k == 0 else None,
            )
        ax.set_title(f"{mode} prediction", fontsize=11)
        ax.set_xlabel(
            "time step t within a test series"
            + (f" (mean over bins of {width} steps)" if width > 1 else "")
        )
    if results["loss"] == "mse" and seen:
        axes[0].set_yscale("log")
        top = max(seen)
        # a curve far under the rest (a near-perfect fit) should not squash every other one
        floor = sorted(seen)[len(seen) // 20]
        axes[0].set_ylim(max(floor / 3, top * 1e-6), top * 3)
    axes[0].set_ylabel(f"mean {results['loss']} at step t (lower is better)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=3)
    fig.suptitle(f"{results['task']}: error by time step")
    return fig


def examples(results: dict[str, Any]) -> Figure:
    """One row per configuration, one column per example series: target, stateful and windowed
    predictions over the task's excerpt; grey: steps that are not scored."""
    configs = list(results["configs"].values())
    cols = max([len(r["examples"]) for r in configs] + [1])
    cols = min(cols, 2)
    fig = Figure(figsize=(12, 1.9 * len(configs) + 1.0), layout="constrained")
    axes = fig.subplots(len(configs), cols, squeeze=False, sharex="col")
    bce = results["loss"] == "bce"
    for row, r in zip(axes, configs):
        for j, ax in enumerate(row):
            if j >= len(r["examples"]):
                ax.set_visible(False)
                continue
            ex = r["examples"][j]
            start = ex.get("start", 0)
            t = [start + k for k in range(len(ex["y"]))]
            for k, w in enumerate(ex["w"]):
                if w == 0:
                    ax.axvspan(t[k] - 0.5, t[k] + 0.5, color="#eeeeee", lw=0)
            ax.plot(t, ex["y"], color="black", lw=1.6, label="target")
            ax.plot(t, ex["stateful"], color=_color(0), lw=1.2, label="stateful prediction")
            ax.plot(
                t, ex["windowed"], color=_color(1), lw=1.2, ls="--", label="windowed prediction"
            )
            w = r["settings"]["predict_window"]
            if start < w - 0.5 < t[-1]:
                ax.axvline(w - 0.5, color="grey", ls=":", lw=1)
            if bce:
                ax.set_ylim(-0.08, 1.08)
            which = f"series {ex.get('series', j)}"
            if bce:
                which += f", first bit {ex['y'][0]:.0f}" if start == 0 else ""
            ax.set_title(f"{r['label']} - {which}", fontsize=9, loc="left")
    for ax in axes[-1]:
        ax.set_xlabel("time step (grey: not scored; dotted: the prediction window)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=9, loc="outside upper center", ncol=3)
    return fig


def summary_bars(results: dict[str, Any]) -> Figure:
    metric = results["metric"]
    configs = list(results["configs"].values())
    fig = Figure(figsize=(12, 0.5 * len(configs) + 2.0), layout="constrained")
    ax = fig.subplots()
    y = range(len(configs))
    for k, (mode, off) in enumerate(zip(PREDICT_MODES, (-0.2, 0.2))):
        vals = _finite(r["test"][mode][metric] for r in configs)
        ax.barh(
            [i + off for i in y], vals, height=0.38, color=_color(k), label=f"{mode} prediction"
        )
    ax.set_yticks(list(y), [f"{i + 1}. {r['label']}" for i, r in enumerate(configs)], fontsize=9)
    ax.invert_yaxis()
    if metric == "loss":
        ax.set_xscale("log")
        _baselines(ax, results, axis="x")
    else:
        ax.set_xlim(0, 1.05)
        ax.axvline(0.5, color="grey", ls=":", lw=1.2, label="chance: 0.5")
    ax.set_xlabel(f"test {'MSE (lower is better)' if metric == 'loss' else metric}")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside right upper")
    ax.set_title(f"{results['task']}: test {metric}, stateful vs windowed prediction")
    return fig


def windowed_vs_stateful(results: dict[str, Any]) -> Figure:
    """Left: each configuration's windowed vs stateful test metric (numbered points; on the
    diagonal, both prediction modes agree). Right: what it cost to train, same numbers."""
    metric = results["metric"]
    configs = list(results["configs"].values())
    fig = Figure(figsize=(12, 0.25 * len(configs) + 4.2), layout="constrained")
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
