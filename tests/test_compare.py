"""compare writes a results.json that matches its documented schema and a self-contained report."""

from __future__ import annotations

import base64
import json
import re

import markupsafe
import pytest

from statefulrnn.cli import main
from statefulrnn.experiments.compare import check_results

TINY = {
    "first-bit": [
        "n_series=60",
        "n_val=20",
        "n_test=30",
        "epochs_stateless=1",
        "epochs_per_step=1",
        "epochs_recommended=2",
    ],
    "sine": ["cycles=30", "epochs=2", "epochs_recommended=2"],
    "moving-average": ["input_len=120", "epochs=1", "epochs_recommended=2"],
    "lagged-product": [
        "T=150",
        "D=20",
        "n_series=20",
        "n_test=6",
        "n_test_windowed=3",
        "epochs=1",
        "batch_size=8",
        "window=50",
        "hidden=8",
    ],
}


@pytest.mark.slow  # > 20 s on the shared 2-core machine
@pytest.mark.parametrize("task", sorted(TINY))
def test_compare_writes_schema_and_report(task, tmp_path, capsys):
    args = ["compare", task, "--quick", "--out", str(tmp_path), "-q"]
    for s in TINY[task]:
        args += ["--set", s]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    check_results(results)
    assert results["claims"], "every task checks at least one seed claim"
    for png in ("summary", "training_curves", "error_by_step", "examples", "windowed_vs_stateful"):
        assert (tmp_path / f"{png}.png").stat().st_size > 1000
    page = (tmp_path / "report.html").read_text()
    check_page(page)
    assert "statefulrnn compare " + task in page
    # the answer comes first, then the claims, then the evidence
    assert page.index('class="answer"') < page.index("Seed claims") < page.index("<img")
    assert results["answer"] and re.search(r"\d\.\d", results["answer"])
    out = capsys.readouterr().out
    assert f"== {task}" in out and "report.html" in out
    assert re.search(r"train [\d.]+ s, predict [\d.]+ s stateful \+ [\d.]+ s windowed", out)


def check_page(page: str, images: int = 5) -> None:
    """A report page as a reader gets it: one file, every plot embedded, settings as tables."""
    found = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)">', page)
    assert len(found) == images
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in found)
    assert 'src="http' not in page and "<script" not in page
    assert "{'" not in page and "{&#39;" not in page, "a raw Python dict reached the page"
    assert re.search(r'<p class="answer" id="answer">[^<]+</p>', page)


def test_quick_lagged_product_says_the_seed_recipes_need_the_full_run(tmp_path):
    args = ["compare", "lagged-product", "--quick", "--out", str(tmp_path), "-q"]
    assert main(args + sum((["--set", s] for s in TINY["lagged-product"]), [])) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    check_results(results)
    assert sorted(results["not_run"]) == ["stateful-recommended", "stateful-seed", "stateless-seed"]
    assert list(results["configs"]) == ["stateful-recommended-std"]
    grey = [c for c in results["claims"] if c["verdict"] == "needs the full run"]
    assert all(c["kind"] == "untested" and c["full_minutes"] for c in grey)
    # a tiny run cannot leave the plateau: its standardized claim is grey too, never red
    std = results["claims"][-1]
    assert std["claim"].startswith("statefulrnn's recipe (standardized)")
    assert std["verdict"] in ("better than seed", "needs the full run")
    assert not [c for c in results["claims"] if c["kind"] == "fails"]
    page = (tmp_path / "report.html").read_text()
    assert page.count('class="verdict untested">needs the full run (≈') == len(grey) >= 3
    # named in --only, a full-run recipe runs even under --quick
    only = tmp_path / "only"
    args = ["compare", "lagged-product", "--quick", "--out", str(only), "-q"]
    args += ["--only", "stateful-seed", *sum((["--set", s] for s in TINY["lagged-product"]), [])]
    assert main(args) == 0
    results = json.loads((only / "results.json").read_text())
    assert list(results["configs"]) == ["stateful-seed"] and results["not_run"] == {}
    assert results["claims"][0]["verdict"] != "needs the full run"


# one set of overrides that shrinks every task at once (--set applies where a task has the name)
TINY_ALL = [
    "n_series=60",
    "n_val=20",
    "n_test=20",
    "n_test_windowed=3",
    "epochs=1",
    "epochs_stateless=1",
    "epochs_per_step=1",
    "epochs_recommended=2",
    "epochs_burn_in=1",
    "epochs_lahead=1",
    "epochs_backprop=1",
    "cycles=30",
    "input_len=120",
    "T=150",
    "D=20",
    "batch_size=8",
    "hidden=8",
]


@pytest.mark.slow
def test_compare_all_writes_an_index_that_links_every_report(tmp_path, capsys):
    args = ["compare", "--all", "--quick", "--out", str(tmp_path), "-q"]
    assert main(args + sum((["--set", s] for s in TINY_ALL), [])) == 0
    index = (tmp_path / "index.html").read_text()
    links = re.findall(r'<a href="([^"]+)">', index)
    assert sorted(links) == sorted(f"{t}/report.html" for t in TINY)
    for link in links:
        results = json.loads((tmp_path / link).parent.joinpath("results.json").read_text())
        check_results(results)
        assert (
            str(markupsafe.escape(results["answer"])) in index
        )  # each task's answer, on the index
        page = (tmp_path / link).read_text()
        check_page(page)
        assert '<a href="../index.html">' in page
    assert f"index: {tmp_path / 'index.html'}" in capsys.readouterr().out


def test_check_results_names_the_broken_key(tmp_path):
    main(
        [
            "compare",
            "sine",
            "--quick",
            "--out",
            str(tmp_path),
            "-q",
            "--only",
            "stateless-seed",
            *sum((["--set", s] for s in TINY["sine"]), []),
        ]
    )
    results = json.loads((tmp_path / "results.json").read_text())
    del results["configs"]["stateless-seed"]["test"]
    with pytest.raises(ValueError, match="configs.stateless-seed: missing key 'test'"):
        check_results(results)


def test_compare_usage_errors(capsys):
    assert main(["compare"]) == 2
    assert "name one TASK or pass --all" in capsys.readouterr().err
    assert main(["compare", "sine", "--set", "epoch=3"]) == 2
    assert "Did you mean 'epochs" in capsys.readouterr().err
    assert main(["compare", "sine", "--only", "nope", "--set", "cycles=5"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no configuration 'nope'" in err


def test_seed_changes_the_model_not_only_the_data(tmp_path):
    """sine's data is the same for every --seed; another --seed must still train another model."""
    losses = []
    for seed in (0, 1):
        out = tmp_path / str(seed)
        args = ["compare", "sine", "--quick", "--out", str(out), "-q", "--seed", str(seed)]
        args += ["--only", "stateless-h4", *sum((["--set", s] for s in TINY["sine"]), [])]
        assert main(args) == 0
        results = json.loads((out / "results.json").read_text())
        assert results["configs"]["stateless-h4"]["settings"]["seed"] == seed
        losses.append(results["configs"]["stateless-h4"]["history"][0]["loss"])
    assert losses[0] != losses[1]
