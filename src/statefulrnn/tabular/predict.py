"""Predict and evaluate a table-trained model on a CSV or Parquet file, in the user's units.

Everything goes through the model's bundle (statefulrnn.bundle): inputs are scaled with the
training statistics saved in the model folder; outputs go through the loss's link
(probabilities for bce/ce) and are scaled back before anything is written or scored. Evaluation runs both prediction modes (stateful:
one pass carrying state; windowed: a fresh pass over the last `window` steps, as a stateless
model is used) and, if asked, a seasonal-naive baseline on the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from statefulrnn.data.files import check_output, read_sequences, write_table
from statefulrnn.data.frames import TableSequences
from statefulrnn.modes import PREDICT_MODES
from statefulrnn.predict import error_by_step, outputs_in_model_units, score
from statefulrnn.tabular.baseline import seasonal_lag, seasonal_naive
from statefulrnn.tabular.bundle import Bundle, load_bundle


def _read(bundle: Bundle, data, *, targets: bool, **read) -> TableSequences:
    spec = bundle.spec
    opts = {k: bundle.read.get(k) for k in ("fill", "drop", "sort")}
    opts.update({k: v for k, v in read.items() if v is not None})
    return read_sequences(
        data,
        id=spec.id,
        time=spec.time,
        features=spec.features,
        targets=spec.targets if targets else (),
        weight=spec.weight if targets else None,
        horizon=spec.horizon,
        fill=opts["fill"],
        drop=bool(opts["drop"]),
        sort=bool(opts["sort"]),
    )


def outputs(
    bundle: Bundle, seqs, mode: str | None = None, window: int | None = None, burn_in=None
) -> list[np.ndarray]:
    """Per-sequence outputs [T_i, O] in the targets' units (probabilities for bce/ce); `mode`
    defaults to the one the model was trained for, `burn_in` (windowed) to the training one."""
    if mode is not None and mode not in PREDICT_MODES:
        raise ValueError(f"unknown prediction mode {mode!r}; choose one of {PREDICT_MODES}.")
    return bundle.core.predict(seqs, mode=mode, window=window or bundle.window, burn_in=burn_in)


def pred_columns(bundle: Bundle) -> list[str]:
    """`<target>_pred` per target; for ce, `<target>_pred` (the likeliest class) then
    `<target>_p<k>`, the probability of class k."""
    if bundle.loss == "ce":
        t = bundle.spec.targets[0]
        return [f"{t}_pred", *(f"{t}_p{k}" for k in range(bundle.model.output_size))]
    return [f"{t}_pred" for t in bundle.spec.targets]


def user_columns(bundle: Bundle, preds: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs as the columns of `pred_columns` (ce: the class, then its probabilities)."""
    if bundle.loss != "ce":
        return preds
    return [np.concatenate([p.argmax(-1)[:, None].astype(float), p], axis=1) for p in preds]


def predict_table(
    model_dir,
    data,
    *,
    mode: str | None = None,
    window: int | None = None,
    burn_in: int | str | None = None,
    out=None,
    escape_formulas: bool = True,
    **read,
):
    """A DataFrame with one row per row of `data`: its id and time columns, then
    `<target>_pred` = the prediction made at that row (for the target `horizon` rows later).
    `mode` defaults to the one the model was trained for (windowed for stateless).
    Written to `out` (.csv/.tsv/.parquet) when given, never over `data`; CSV text cells that
    a spreadsheet would run as formulas are escaped unless `escape_formulas=False`.
    Returns (frame, read report)."""
    if out is not None:
        check_output(out, data)  # before the work, not after it
    bundle = load_bundle(model_dir)
    seqs = _read(bundle, data, targets=False, **read)
    preds = user_columns(bundle, outputs(bundle, seqs, mode, window, burn_in))
    frame = seqs.frame(preds, pred_columns(bundle))
    if out is not None:
        write_table(frame, out, escape_formulas=escape_formulas)
    return frame, seqs.report


# --------------------------------------------------------------------------- evaluation
@dataclass
class Evaluation:
    """Metrics per column ("stateful", "windowed", "seasonal naive s=..."), in target units."""

    targets: list[str]
    columns: dict[str, dict[str, float]] = field(default_factory=dict)
    by_step: dict[str, np.ndarray] = field(default_factory=dict)  # mean squared error per step
    report: Any = None

    def table(self) -> str:
        names = list(self.columns)
        keys = list(dict.fromkeys(k for c in self.columns.values() for k in c))
        width = max(len(k) for k in keys) + 2
        cw = [max(12, len(n)) for n in names]
        lines = [" " * width + "  ".join(n.rjust(w) for n, w in zip(names, cw))]
        for k in keys:
            cells = [_fmt(self.columns[n].get(k)) for n in names]
            lines.append(k.ljust(width) + "  ".join(c.rjust(w) for c, w in zip(cells, cw)))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"targets": self.targets, "columns": self.columns}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if isinstance(v, int):
        return str(v)
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.4e}"


def _rms(err: np.ndarray, w: np.ndarray) -> float:
    """Weighted root mean square, without overflow for errors near 1e300."""
    big = float(np.abs(err).max(initial=0.0))
    if not np.isfinite(big) or big == 0.0 or big < 1e150:
        return float(np.sqrt(w @ err**2 / w.sum()))
    return big * float(np.sqrt(w @ (err / big) ** 2 / w.sum()))


def metrics(preds, seqs, ws, targets, y_std) -> dict[str, float]:
    """Weighted over scored steps: loss (MSE of standardized targets, what training
    minimizes), then rmse and mae per target in its own units, and the step count."""
    p = np.concatenate(preds)
    y = np.concatenate(seqs.ys)
    w = np.concatenate(ws)
    keep = w > 0
    p, y, w = p[keep], y[keep], w[keep]
    err = p - y
    out: dict[str, Any] = {"loss": float((w @ (err / y_std) ** 2).sum() / w.sum() / len(targets))}
    for j, t in enumerate(targets):
        out[f"rmse {t}"] = _rms(err[:, j], w)
        out[f"mae {t}"] = float(w @ np.abs(err[:, j]) / w.sum())
    out["scored steps"] = int(keep.sum())
    return out


def classifier_metrics(bundle: Bundle, seqs, mode: str, window: int) -> tuple[dict, np.ndarray]:
    """bce/ce: the training loss (on the network's logits) and accuracy over scored steps,
    and the loss by step."""
    scaled = bundle.core.to_model_sequences(seqs, targets=False)
    burn_in = bundle.core.fit.get("burn_in") if mode == "windowed" else None
    w = window if mode == "windowed" else None
    logits = outputs_in_model_units(bundle.model, scaled, mode, w, burn_in, 256)
    out: dict[str, Any] = score(logits, seqs, bundle.loss, ["accuracy"])
    out["scored steps"] = int(sum(int((x > 0).sum()) for x in seqs.ws))
    return out, error_by_step(logits, seqs, bundle.loss)


def evaluate_sequences(
    bundle: Bundle, seqs: TableSequences, *, window: int | None = None, seasons=()
) -> Evaluation:
    """Both prediction modes (and seasonal-naive baselines) scored on `seqs`' weights."""
    targets = list(bundle.spec.targets)
    ev = Evaluation(targets, report=seqs.report)
    window = window or bundle.window
    if bundle.loss != "mse":
        if seasons:
            raise ValueError("seasonal-naive baselines score real-valued targets (loss mse).")
        for mode in PREDICT_MODES:
            name = "stateful" if mode == "stateful" else f"windowed {window}"
            ev.columns[name], ev.by_step[name] = classifier_metrics(bundle, seqs, mode, window)
        return ev
    y_std = bundle.scaling.y.std if bundle.scaling and bundle.scaling.y else np.ones(len(targets))
    for mode in PREDICT_MODES:
        preds = outputs(bundle, seqs, mode, window)
        name = "stateful" if mode == "stateful" else f"windowed {window}"
        ev.columns[name] = metrics(preds, seqs, seqs.ws, targets, y_std)
        ev.by_step[name] = error_by_step(np.concatenate(preds), seqs, "mse")
    for s in seasons:
        preds, avail = seasonal_naive(seqs, s, bundle.spec.horizon)
        ws = [w * a for w, a in zip(seqs.ws, avail)]
        name = f"naive s={s}"
        if not any((w > 0).any() for w in ws):
            raise ValueError(
                f"no scored step has a value {seasonal_lag(s, bundle.spec.horizon)} rows "
                f"earlier for the seasonal-naive baseline with season {s}; use a shorter season."
            )
        ev.columns[name] = metrics([np.nan_to_num(p) for p in preds], seqs, ws, targets, y_std)
        only = seqs.with_weights(ws)
        ev.by_step[name] = error_by_step(np.nan_to_num(np.concatenate(preds)), only, "mse")
    return ev


def evaluate_table(
    model_dir,
    data,
    *,
    window: int | None = None,
    tail: float | None = None,
    seasons=(),
    plot: str | Path | None = None,
    **read,
) -> Evaluation:
    """Score a model on a file with targets. `tail=f` scores only the last fraction f of each
    id's target rows (the validation part of `statefulrnn train --val f`), while the stateful
    pass still runs through the whole history. `plot` writes the error-by-step PNG."""
    bundle = load_bundle(model_dir)
    seqs = _read(bundle, data, targets=True, **read)
    if tail:
        _, seqs = seqs.tail_split(tail)
    ev = evaluate_sequences(bundle, seqs, window=window, seasons=seasons)
    if plot is not None:
        from statefulrnn.tabular.plot import error_by_step_figure

        fig = error_by_step_figure(ev.by_step, title=f"{Path(str(data)).name}: error by step")
        fig.savefig(plot, dpi=110)
    return ev
