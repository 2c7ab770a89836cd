"""Memory is bounded by what is declared and checked first (issue 18, Found 3).

Each bomb is a small crafted file (built here, never committed) that once reached gigabytes:
a 7.9 KB .h5 whose weight declares 30000 x 30000 (3.6 GB) against a config of 3 units; a
.keras archive whose weights entry unpacks to 600 MB; a model.json saying hidden_size 20000
(6.4 GB of LSTM weights) beside small weights; fit(batch_size=10**9) on 8 sequences. Each
runs in a child process that reports its own peak resident memory (VmHWM; ru_maxrss would
count the parent's peak, which Linux keeps across exec): every one
must stay under 500 MB (torch alone is ~250 MB) and end in a clear error (or, for fit, in
the same training as one lane per sequence).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import zipfile

import pytest
from conftest import KERAS_CONFIG

h5py = pytest.importorskip("h5py")

LIMIT_MB = 500

CHILD = """
import json, resource, sys
try:
    {body}
    outcome = "ok"
except Exception as err:
    outcome = f"{{type(err).__name__}}: {{err}}"
try:  # this process's own peak: ru_maxrss would include the parent's, kept across exec
    with open("/proc/self/status") as f:
        peak_mb = next(int(l.split()[1]) for l in f if l.startswith("VmHWM")) / 1024
except OSError:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"outcome": outcome, "peak_mb": peak_mb}}))
"""


def run_child(body: str, *args) -> dict:
    code = CHILD.format(body=body.strip().replace("\n", "\n    "))
    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{body.splitlines()[0][:60]}: {out} (children's max so far {children:.0f} MB)")
    return out


def h5_bomb(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/lstm/cell/vars/0", shape=(30000, 30000), dtype="f4")
    (path.parent / "bomb.json").write_text(json.dumps(KERAS_CONFIG))
    return path


def keras_bomb(path, megabytes=600):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("config.json", json.dumps(KERAS_CONFIG))
        with z.open("model.weights.h5", "w", force_zip64=True) as f:
            zeros = bytes(1 << 20)
            for _ in range(megabytes):
                f.write(zeros)
    return path


IMPORT = "from statefulrnn.keras import from_keras; from_keras(sys.argv[1])"


@pytest.mark.slow
def test_h5_bomb_is_refused_before_reading(tmp_path):
    path = h5_bomb(tmp_path / "bomb.weights.h5")
    assert path.stat().st_size < 20_000
    out = run_child(IMPORT, path)
    assert "declares shape [30000, 30000]" in out["outcome"] and "refused" in out["outcome"]
    assert out["peak_mb"] < LIMIT_MB


@pytest.mark.slow
def test_keras_zip_bomb_is_refused_before_unpacking(tmp_path):
    path = keras_bomb(tmp_path / "bomb.keras")
    assert path.stat().st_size < 5 << 20
    out = run_child(IMPORT, path)
    assert "unpacks to 629145600 bytes" in out["outcome"], out
    assert out["peak_mb"] < LIMIT_MB


@pytest.mark.slow
def test_model_json_bigger_than_its_weights_is_refused_before_allocating(tmp_path):
    import torch

    import statefulrnn as sr

    sr.StatefulRNN(2, 8, 1, cell="lstm").save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["config"]["hidden_size"] = 20000
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    out = run_child("import statefulrnn as sr; sr.load_model(sys.argv[1])", tmp_path / "m")
    assert "model.json implies" in out["outcome"], out
    assert out["peak_mb"] < LIMIT_MB
    del torch


@pytest.mark.slow
def test_fit_with_a_billion_lanes_on_8_sequences_stays_small():
    body = """
import numpy as np, torch, statefulrnn as sr
rng = np.random.default_rng(0)
seqs = sr.Sequences.from_arrays([rng.normal(size=(50, 2)) for _ in range(8)],
                                [rng.normal(size=(50, 1)) for _ in range(8)])
torch.manual_seed(0)
sr.fit(sr.StatefulRNN(2, 4, 1), seqs, window=10, batch_size=10**9, epochs=1, verbose=0)
"""
    out = run_child(body)
    assert out["outcome"] == "ok"
    assert out["peak_mb"] < LIMIT_MB
