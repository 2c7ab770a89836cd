"""What a sweep leaves in its run folder: trials.csv, best.toml, sweep.json, report.html.

Rows are read back from the study (every worker's trials), so whichever worker finishes last
writes the complete files. best.toml holds `statefulrnn train`'s option names under [train],
so `statefulrnn train --config best.toml` reads it as it is (a task sweep has no table file:
add data, features, targets and out first).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import platform
from pathlib import Path
from typing import Any

from statefulrnn import __version__, records
from statefulrnn import threads as thread_policy
from statefulrnn.modes import STATELESS_BURN_IN, training_mode

SCHEMA = "statefulrnn.sweep/1"
CONFIG: tuple[str, ...] = ("mode", "window", "burn_in", "batch_size", "cell", "hidden", "layers", "lr", "clip")
CONFIG += ("epochs", "patience")
# [train] keys of best.toml, in `statefulrnn train --help` order: every option the space can
# vary is one `statefulrnn train` takes (burn_in only for the "stateless+burn-in" mode)
TRAIN_KEYS: tuple[str, ...] = ("mode", "window", "burn_in", "batch_size", "epochs", "cell", "hidden", "layers")
TRAIN_KEYS += ("lr", "clip", "patience", "monitor", "val_window", "seed")


def rows(study) -> list[dict[str, Any]]:
    """One flat dict per trial of the study, by trial number."""
    out = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        a = t.user_attrs
        cfg = a.get("config", t.params)
        curve = [t.intermediate_values[k] for k in sorted(t.intermediate_values)]
        row: dict[str, Any] = {"number": t.number, "state": t.state.name, "value": t.value}
        row["last_value"] = t.value if t.value is not None else (curve[-1] if curve else None)
        row.update({k: cfg.get(k) for k in CONFIG})
        row["lanes"] = a.get("lanes")  # batch_size after `statefulrnn train`'s lane rule
        row["epochs_run"] = a.get("epochs_run")
        row["best_epoch"] = a.get("best_epoch")
        row["seconds"] = a.get("seconds")
        for part in ("val", "test"):
            for k, v in (a.get(part) or {}).items():
                row[f"{part}_{k}"] = v
        row["worker"] = a.get("worker")
        row["note"] = a.get("note", "")
        row["started"] = _iso(t.datetime_start)
        row["finished"] = _iso(t.datetime_complete)
        row["curve"] = curve
        out.append(row)
    return out


def _iso(d) -> str | None:
    return d.isoformat(timespec="seconds") if d is not None else None


def best_row(all_rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [r for r in all_rows if r["state"] == "COMPLETE" and r["value"] is not None]
    return min(done, key=lambda r: (r["value"], r["number"])) if done else None


def columns(all_rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in all_rows:
        cols += [k for k in r if k not in cols and k != "curve"]
    return cols


def trials_csv(all_rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=columns(all_rows), extrasaction="ignore", lineterminator="\n"
    )
    w.writeheader()
    for r in all_rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table_lines(all_rows: list[dict[str, Any]], best: dict[str, Any] | None) -> list[str]:
    """The console table: one line per trial, the best marked with *."""
    cols = ["number", "state", "value", "mode", "window", "burn_in", "batch_size", "lanes"]
    cols += ["cell", "hidden", "layers", "lr", "epochs_run", "seconds"]
    cols += sorted({k for r in all_rows for k in r if k.startswith(("val_", "test_"))})
    cells = [[_fmt(r.get(c)) for c in cols] for r in all_rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    lines = ["  " + "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    for r, row in zip(all_rows, cells):
        mark = "* " if best is not None and r["number"] == best["number"] else "  "
        lines.append(mark + "  ".join(c.rjust(w) for c, w in zip(row, widths)))
    return lines


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v))  # a TOML basic string: JSON's escapes are TOML's


def best_toml(best: dict[str, Any], result, target, seed: int, predict: str) -> str:
    """best.toml: the winning configuration under [train], with `statefulrnn train`'s keys."""
    metric = "".join(
        f", {k[4:]} {best[k]:.4g}" for k in best if k.startswith("val_") and k != "val_loss"
    )
    lines = [
        f"# Best of sweep {result.study!r} ({result.storage}): trial {best['number']}, validation "
        f"{target.loss} {best['value']:.6g} with {predict} prediction{metric}.",
    ]
    if target.kind == "table":
        lines.append("# Train it:  statefulrnn train --config best.toml")
    else:
        lines.append(
            "# Train it:  statefulrnn train --config best.toml, after adding data, features, "
            "targets and out (this sweep ran on "
            + (
                f"the built-in task {target.name!r})"
                if target.kind == "task"
                else "sequences in memory)"
            )
        )
    if best["mode"] == STATELESS_BURN_IN:
        lines.append(
            f"# burn_in = {best['burn_in']}: stateless windows start from the state after "
            f"{best['burn_in']} earlier steps (in Python: sr.fit(..., mode='stateless', "
            f"burn_in={best['burn_in']}))."
        )
    selection = _selection(best, predict, target.table or {})
    if selection:
        other = "stateful" if predict == "stateful" else "windowed"
        lines.append(
            f"# monitor = {selection['monitor']!r}: train keeps the epoch whose {predict}-"
            f"prediction validation loss is best, as this sweep scored it (by default it "
            f"would use the {training_mode(best['mode'])} model's own); predict it with "
            f"`statefulrnn predict --mode {other}`."
        )
    lines.append("")
    lines.append("[train]")
    values = {k: best.get(k) for k in TRAIN_KEYS}
    values["mode"] = training_mode(best["mode"])
    if best["mode"] != STATELESS_BURN_IN:
        values["burn_in"] = None  # drawn only for that mode; `train` refuses it otherwise
    values.update(selection)
    values["seed"] = seed
    if target.kind == "table":
        table = dict(target.table)
        table["out"] = str(result.out / "best-model")
        # the table's options (read, split, and those every trial kept fixed), then the
        # trial's; a trial's None (not drawn) never hides a fixed option
        values = {**table, **{k: v for k, v in values.items() if v is not None or k == "clip"}}
    for k, v in values.items():
        if v is None and k == "clip":
            v = "none"  # the train option's spelling of "no clipping"
        if v is not None:
            lines.append(f"{k} = {_toml(v)}")
    return "\n".join(lines) + "\n"


def _selection(best: dict[str, Any], predict: str, table: dict[str, Any]) -> dict[str, Any]:
    """The train options that make `train` select the epoch as the sweep did: nothing when
    the sweep scored the training mode's own prediction (what `train` watches by default),
    else `monitor` (and, for a stateful model scored windowed, `val_window`, as a stateful
    run scores its windowed loss only when given one)."""
    own = "windowed" if training_mode(best["mode"]) == "stateless" else "stateful"
    if predict == own:
        return {}
    if predict == "stateful":
        return {"monitor": "val_loss"}
    if table.get("val_window") is not None:  # fixed by the user: the trials used it
        return {"monitor": "val_loss_windowed"}
    return {"monitor": "val_loss_windowed", "val_window": best["window"]}


def python_args(best: dict[str, Any], predict: str, target) -> dict[str, Any]:
    """The same configuration as sr.StatefulRNN and sr.fit arguments (the table's fixed
    options included), with the EarlyStopping(patience, monitor) that keeps the epoch the
    sweep scored."""
    fit = {k: best[k] for k in ("window", "batch_size", "epochs", "lr", "clip")}
    fit["mode"] = "stateful" if best["mode"] == "stateful" else "stateless"
    if best["mode"] == STATELESS_BURN_IN:
        fit["burn_in"] = best["burn_in"]
    fit["loss"] = target.loss
    fit.update(target.fixed)
    selection = _selection(best, predict, target.table or {})
    if "val_window" in selection:
        fit["val_window"] = selection["val_window"]
    model = {"cell": best["cell"], "hidden_size": best["hidden"], "num_layers": best["layers"]}
    own = "val_loss_windowed" if fit["mode"] == "stateless" else "val_loss"
    monitor = selection.get("monitor", own)
    return {"model": model, "fit": fit, "patience": best["patience"], "monitor": monitor}


def results(result, target, space, about) -> dict[str, Any]:
    import torch

    done = [r for r in result.trials if r["state"] in ("COMPLETE", "PRUNED")]
    starts = [r["started"] for r in done if r["started"]]
    ends = [r["finished"] for r in done if r["finished"]]
    wall = None
    if starts and ends:
        span = dt.datetime.fromisoformat(max(ends)) - dt.datetime.fromisoformat(min(starts))
        wall = span.total_seconds()
    best = result.best
    return {
        "schema": SCHEMA,
        "study": result.study,
        "storage": result.storage,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "target": {"kind": target.kind, "name": target.name, **target.about},
        "loss": target.loss,
        "metrics": target.metrics,
        "baseline": target.baseline,
        "predict": about["predict"],
        "seed": about["seed"],
        "requested": result.requested,
        "counts": result.counts,
        "counted": len(done),
        "space": space,
        "best": None if best is None else {**best, "python": python_args(best, about["predict"], target)},
        "seconds": {
            "trials": sum(r["seconds"] or 0.0 for r in done),  # summed over workers
            "wall": wall,  # first counted trial's start to the last one's end
            "this_worker": result.seconds,
        },
        "trials": result.trials,
        "environment": {
            "statefulrnn": __version__,
            "torch": torch.__version__,
            "threads": thread_policy.get_default() or "auto",  # --threads; auto: threads.py
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
    }


def write_all(result, target, space, about) -> dict[str, Path]:
    """Write every file of the run folder; return {name: path}."""
    from statefulrnn.reports.sweep import write_report

    out = result.out
    files = {"trials.csv": out / "trials.csv", "sweep.json": out / "sweep.json"}
    records.atomic_write_bytes(files["trials.csv"], trials_csv(result.trials).encode())
    res = results(result, target, space, about)
    records.atomic_write_json(files["sweep.json"], res)
    if result.best is not None:
        files["best.toml"] = out / "best.toml"
        text = best_toml(result.best, result, target, about["seed"], about["predict"])
        records.atomic_write_bytes(files["best.toml"], text.encode())
    files["report.html"] = write_report(out)
    return files
