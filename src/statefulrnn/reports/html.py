"""report.html: one self-contained page per compare run (images embedded as data URIs), and
index.html for `compare --all`, each opening with its answer.

Built from results.json and the PNGs beside it with the Jinja2 templates in templates/
(autoescaped); knows the results schema, not torch.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jinja2

from statefulrnn import records
from statefulrnn.modes import PREDICT_MODES
from statefulrnn.reports.plots import write_plots

KINDS = (
    ("holds", "hold"),
    ("partly", "hold in part"),
    ("fails", "fail"),
    ("untested", "need the full run"),
)


def _num(v: Any) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def data_uri(path: Path) -> str:
    """A PNG as a data: URI, so the page is one self-contained file."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt key fails the render, not the reader
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    return env


def _tally(claims: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """(kind, count, words) per verdict kind present, e.g. ("holds", 4, "hold")."""
    out = []
    for kind, word in KINDS:
        n = sum(c["kind"] == kind for c in claims)
        if n:
            out.append((kind, n, word))
    return out


def _metric_columns(results: dict[str, Any]) -> list[str]:
    metric = results["metric"]
    extra = sorted(
        {
            k
            for r in results["configs"].values()
            for k in r["test"]["stateful"]
            if k.startswith(f"{metric} [")
        }
    )
    return [metric, *extra]


def _metric_name(results: dict[str, Any], key: str) -> str:
    """'loss [steps t >= 10]' as a reader says it: 'MSE (steps t >= 10)'."""
    if key.startswith("loss"):
        key = results["loss"].upper() + key[4:]
    return key.replace("[", "(").replace("]", ")")


def _settings_rows(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per setting (model, then fit, then prediction), one value per configuration."""
    rows: list[dict[str, Any]] = []

    def add(name: str, get) -> None:
        rows.append({"name": name, "values": [_num(get(r["settings"])) for r in configs]})

    for group in ("model", "fit"):
        keys: list[str] = []
        for r in configs:
            keys += [k for k in r["settings"][group] if k not in keys]
        for k in keys:
            add(k, lambda s, g=group, k=k: s[g].get(k))
    add("windowed prediction: window", lambda s: s["predict_window"])
    add("windowed prediction: burn-in", lambda s: s["predict_burn_in"])
    add("parameters", lambda s: s["parameters"])
    add("seed", lambda s: s["seed"])
    return rows


def context(
    results: dict[str, Any], images: dict[str, Path], rerun: str, index_link: str = ""
) -> dict[str, Any]:
    """What compare.html shows, from results.json: plain values, no markup."""
    columns = _metric_columns(results)
    configs = []
    for name, r in results["configs"].items():
        t = r["test"]
        metrics = [t[mode].get(k) for k in columns for mode in PREDICT_MODES]
        configs.append({**r, "name": name, "metrics": metrics})
    tally = _tally(results["claims"])
    return {
        **{k: results[k] for k in ("task", "summary", "seed_file", "created", "seed", "quick")},
        "answer": results["answer"],
        "claims": results["claims"],
        "tally": ", ".join(f"{n} claim(s) {word}" for _, n, word in tally) or "no claims",
        "metric_columns": [_metric_name(results, k) for k in columns],
        "configs": configs,
        "not_run": list(results["not_run"].values()),
        "baseline": list(results.get("baseline", {}).items()),
        "data": results["data"],
        "images": {k: data_uri(p) for k, p in images.items()},
        "settings": _settings_rows(configs),
        "params": [(k, _num(v)) for k, v in results["params"].items()],
        "notes": results.get("notes", []),
        "rerun": rerun,
        "env": results["environment"],
        "index_link": index_link,
    }


def render(
    results: dict[str, Any], images: dict[str, Path], rerun: str, index_link: str = ""
) -> str:
    return (
        environment()
        .get_template("compare.html")
        .render(context(results, images, rerun, index_link))
    )


def write_report(out_dir: Path, rerun: str, index_link: str = "") -> Path:
    """Read out_dir/results.json, write the PNGs and out_dir/report.html."""
    results = records.read_json(out_dir / "results.json")
    images = write_plots(results, out_dir)
    path = out_dir / "report.html"
    records.atomic_write_bytes(path, render(results, images, rerun, index_link).encode())
    return path


def write_index(root: Path, reports: list[Path], seconds: float) -> Path:
    """root/index.html: each task's answer and verdict counts, linked to its report.html."""
    tasks, quick, created = [], False, ""
    for report in reports:
        results = records.read_json(report.parent / "results.json")
        quick, created = quick or results["quick"], created or results["created"]
        tasks.append(
            {
                "task": results["task"],
                "seed_file": results["seed_file"],
                "answer": results["answer"],
                "href": report.relative_to(root).as_posix(),
                "counts": _tally(results["claims"]),
            }
        )
    page = (
        environment()
        .get_template("index.html")
        .render(tasks=tasks, quick=quick, created=created, seconds=seconds)
    )
    path = root / "index.html"
    records.atomic_write_bytes(path, page.encode())
    return path


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The console summary: the answer, one line per claim, then per configuration."""
    metric = results["metric"]
    lines = [f"== {results['task']} (seed {results['seed_file']}) =="]
    if results.get("answer"):
        lines.append(f"  {results['answer']}")
    for c in results["claims"]:
        lines.append(f"  [{c['verdict']}] {c['claim']}: ours {c['ours']} | seed {c['seed_value']}")
    width = max([len(r["label"]) for r in results["configs"].values()] + [13])
    lines.append(
        f"  {'configuration'.ljust(width)}  {'stateful':>10}  {'windowed':>10}  {'train s':>8}"
        f"  {'predict s':>9}"
    )
    for r in results["configs"].values():
        t, p = r["test"], r["predict_seconds"]
        lines.append(
            f"  {r['label'].ljust(width)}  {_num(t['stateful'][metric]):>10}  "
            f"{_num(t['windowed'][metric]):>10}  {r['train_seconds']:>8.1f}"
            f"  {p['stateful'] + p['windowed']:>9.1f}"
        )
    for r in results.get("not_run", {}).values():
        lines.append(f"  {r['label'].ljust(width)}  (needs the full run; not run by --quick)")
    base = ", ".join(f"{k} {_num(v)}" for k, v in results.get("baseline", {}).items())
    lines.append(f"  baseline: {base}")
    return lines
