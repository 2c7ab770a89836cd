"""compare writes a results.json that matches its documented schema and a self-contained report."""

from __future__ import annotations

import base64
import json
import re

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
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)">', page)
    assert len(images) == 5 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert 'src="http' not in page and "statefulrnn compare " + task in page
    out = capsys.readouterr().out
    assert f"== {task}" in out and "report.html" in out


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
