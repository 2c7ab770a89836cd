"""The error-by-step figure: mean squared error at each step since a sequence's start.

numpy in, a matplotlib Figure out (Agg backend, one Figure per plot, nothing global). Long
series are averaged over bins so the curve stays readable; the y axis is logarithmic, since a
stateful model's error falls by orders of magnitude as its state warms up.
"""

from __future__ import annotations

import numpy as np


def binned(curve: np.ndarray, max_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(step, mean) over equal bins of steps, NaNs ignored; at most `max_points` bins."""
    n = len(curve)
    size = max(1, -(-n // max_points))
    starts = np.arange(0, n, size)
    means = []
    for s in starts:
        part = curve[s : s + size]
        part = part[np.isfinite(part)]
        means.append(part.mean() if len(part) else np.nan)
    return starts + (size - 1) / 2, np.asarray(means)


def error_by_step_figure(curves: dict[str, np.ndarray], *, title: str = "error by step"):
    """One line per curve (name -> per-step MSE, NaN where nothing is scored)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("plots need matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(8, 4.2))
    ax = fig.add_subplot()
    for name, curve in curves.items():
        x, y = binned(np.asarray(curve, dtype=np.float64))
        ok = np.isfinite(y)
        if ok.any():
            ax.plot(x[ok], y[ok], label=name, lw=1.4)
    ax.set_yscale("log")
    ax.set_xlabel("step since the sequence's start")
    ax.set_ylabel("mean squared error (target units²)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return fig
