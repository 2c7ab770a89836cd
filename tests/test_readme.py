"""The README's Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow  # > 20 s on the shared 2-core machine
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has a Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    out = capsys.readouterr().out
    assert "accuracy" in out
    assert (tmp_path / "runs" / "first-bit-model" / "weights.safetensors").exists()
    stateful = namespace["sr"].evaluate(namespace["model"], namespace["val"], loss="bce")
    assert stateful["accuracy"] >= 0.99
