"""report.html: one self-contained page per compare run (images embedded as data URIs).

Built from results.json and the PNGs beside it; knows the results schema, not torch.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from statefulrnn import records
from statefulrnn.reports.plots import write_plots

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.reproduced, .better { color: #0a6b0a; font-weight: 600; }
.not, .worse, .stayed { color: #a40000; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; }
code, pre { background: #f6f6f6; padding: 2px 4px; }
"""


def _e(s: Any) -> str:
    return html.escape(str(s))


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else _e(v)


def _verdict_class(v: str) -> str:
    return v.split()[0].replace("better", "better").replace("worse", "worse")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def claims_table(results: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(c['claim'])}</td><td>{_e(c['seed_value'])}</td><td>{_e(c['ours'])}</td>"
        f"<td class='{_verdict_class(c['verdict'])}'>{_e(c['verdict'])}</td></tr>"
        for c in results["claims"]
    )
    return (
        "<table><tr><th>seed claim</th><th>seed's number</th><th>our measurement</th><th>verdict</th></tr>"
        f"{rows}</table>"
    )


def configs_table(results: dict[str, Any]) -> str:
    metric = results["metric"]
    extra = sorted(
        {
            k
            for r in results["configs"].values()
            for k in r["test"]["stateful"]
            if k.startswith(f"{metric} [")
        }
    )
    head = (
        f"<tr><th>configuration</th><th>origin</th><th>epochs</th><th>train s</th>"
        f"<th>stateful {metric}</th><th>windowed {metric}</th>"
        + "".join(f"<th>stateful {_e(k)}</th><th>windowed {_e(k)}</th>" for k in extra)
        + "<th>predict s (stateful / windowed)</th></tr>"
    )
    rows = []
    for r in results["configs"].values():
        t = r["test"]
        cells = [
            f"<td>{_e(r['label'])}</td><td>{_e(r['origin'])}</td><td class='num'>{r['epochs_run']}</td>",
            f"<td class='num'>{r['train_seconds']:.1f}</td>",
            f"<td class='num'>{_num(t['stateful'][metric])}</td><td class='num'>{_num(t['windowed'][metric])}</td>",
        ]
        cells += [
            f"<td class='num'>{_num(t['stateful'].get(k))}</td><td class='num'>{_num(t['windowed'].get(k))}</td>"
            for k in extra
        ]
        p = r["predict_seconds"]
        cells.append(f"<td class='num'>{p['stateful']:.2f} / {p['windowed']:.2f}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    base = "".join(f"<li>{_e(k)}: {_num(v)}</li>" for k, v in results.get("baseline", {}).items())
    return f"<table>{head}{''.join(rows)}</table><p>Baselines on the same test series:</p><ul>{base}</ul>"


def settings_table(results: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(r['label'])}</td><td><code>{_e(r['settings']['model'])}</code></td>"
        f"<td><code>{_e(r['settings']['fit'])}</code></td><td>{r['settings']['predict_window']}"
        f"{' + burn-in ' + str(r['settings']['predict_burn_in']) if r['settings']['predict_burn_in'] else ''}</td></tr>"
        for r in results["configs"].values()
    )
    return (
        "<table><tr><th>configuration</th><th>model</th><th>fit</th><th>windowed prediction window</th></tr>"
        f"{rows}</table>"
    )


def render(results: dict[str, Any], images: dict[str, Path], rerun: str) -> str:
    notes = "".join(f"<li>{_e(n)}</li>" for n in results.get("notes", []))
    env = results["environment"]
    d = results["data"]
    quick = (
        " (<b>--quick</b>: shrunken sizes and epochs; numbers are not the seed's settings)"
        if results["quick"]
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>statefulrnn compare: {_e(results["task"])}</title>
<style>{CSS}</style></head><body>
<h1>{_e(results["task"])}: does carrying state help?</h1>
<p>{_e(results["summary"])}. Seed document {_e(results["seed_file"])}. Run {_e(results["created"])}{quick}.</p>
<h2>Seed claims, checked</h2>
{claims_table(results)}
<h2>Every configuration, both prediction modes</h2>
<p><b>Stateful</b> prediction runs each test series once, carrying state (O(T)). <b>Windowed</b> prediction
reruns the model from a zero state over the window ending at each step, as a Keras stateless model does
(O(T·window)). Data: {d["train"]} train / {d["val"]} validation / {d["test"]} test series
({d["train_steps"]} train steps, {d["test_steps"]} test steps).</p>
{configs_table(results)}
{_img(images["summary"], "test metric per configuration")}
<h2>Windowed vs stateful error, and the cost</h2>
<p>One point per configuration: on the dotted diagonal, a model predicts as well statefully (O(T)) as
windowed (O(T·window)). Beside it, the seconds each took to train.</p>
{_img(images["windowed_vs_stateful"], "windowed vs stateful test metric per configuration, with train seconds")}
<h2>Training curves</h2>
{_img(images["training_curves"], "validation loss per epoch")}
<h2>Error by time step</h2>
<p>Where a model trained on windows fails: beyond its window, unless it carries state.</p>
{_img(images["error_by_step"], "error by time step")}
<h2>Example predictions</h2>
{_img(images["examples"], "example predictions against targets")}
<h2>Settings</h2>
{settings_table(results)}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Rerun</h2>
<pre>{_e(rerun)}</pre>
<p>statefulrnn {_e(env["statefulrnn"])}, torch {_e(env["torch"])}, Python {_e(env["python"])},
{_e(env["threads"])} threads, {_e(env["machine"])}.</p>
</body></html>
"""


def write_report(out_dir: Path, rerun: str) -> Path:
    """Read out_dir/results.json, write the PNGs and out_dir/report.html."""
    results = records.read_json(out_dir / "results.json")
    images = write_plots(results, out_dir)
    path = out_dir / "report.html"
    records.atomic_write_bytes(path, render(results, images, rerun).encode())
    return path


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The console summary: one line per claim, then per configuration."""
    metric = results["metric"]
    lines = [f"== {results['task']} (seed {results['seed_file']}) =="]
    for c in results["claims"]:
        lines.append(f"  [{c['verdict']}] {c['claim']}: ours {c['ours']} | seed {c['seed_value']}")
    width = max(len(r["label"]) for r in results["configs"].values())
    lines.append(
        f"  {'configuration'.ljust(width)}  {'stateful':>10}  {'windowed':>10}  {'train s':>8}"
    )
    for r in results["configs"].values():
        t = r["test"]
        lines.append(
            f"  {r['label'].ljust(width)}  {_num(t['stateful'][metric]):>10}  "
            f"{_num(t['windowed'][metric]):>10}  {r['train_seconds']:>8.1f}"
        )
    base = ", ".join(f"{k} {_num(v)}" for k, v in results.get("baseline", {}).items())
    lines.append(f"  baseline: {base}")
    return lines
