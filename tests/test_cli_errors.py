"""One error boundary per command (issue 18, Found 6 and 7): bad inputs through
`statefulrnn.cli.main` end in one line on stderr naming the file or argument, exit 2 for a
usage error and 1 for a failure, never a traceback (`--debug` prints it)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import KERAS_CONFIG

import statefulrnn as sr
from statefulrnn import records
from statefulrnn.cli import main

pd = pytest.importorskip("pandas")
h5py = pytest.importorskip("h5py")

TINY = ["--hidden", "3", "--window", "5", "--batch-size", "2", "--epochs", "1", "--val", "0"]


def table(path: Path, n=24) -> Path:
    rng = np.random.default_rng(0)
    rows = [{"id": s, "t": t, "x": rng.normal(), "y": rng.normal()} for s in "ab" for t in range(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def train_argv(data, out, *extra):
    return ["train", str(data), "--id", "id", "--time", "t", "--features", "x", "--targets",
            "y", "--out", str(out), *TINY, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    data = table(root / "d.csv")
    assert main(train_argv(data, root / "model")) == 0
    return root


def model_copy(trained, tmp_path) -> Path:
    shutil.copytree(trained / "model", tmp_path / "m")
    return tmp_path / "m"




# ----------------------------------------------------------------- each case: argv, exit, words
def corrupt_weights(trained, tmp_path):
    m = model_copy(trained, tmp_path)
    (m / "weights.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage}")
    return ["predict", m, trained / "d.csv"], 1, "weights.safetensors"


def truncated_weights(trained, tmp_path):
    m = model_copy(trained, tmp_path)
    w = m / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-40])
    return ["predict", m, trained / "d.csv"], 1, "truncated"


def shape_mismatch(trained, tmp_path):
    m = model_copy(trained, tmp_path)
    meta = json.loads((m / "model.json").read_text())
    meta["config"]["hidden_size"] = 20000  # 6.3 GB of LSTM weights if allocated first
    (m / "model.json").write_text(json.dumps(meta))
    return ["predict", m, trained / "d.csv"], 1, "model.json implies"


def deep_model_json(trained, tmp_path):
    m = model_copy(trained, tmp_path)
    (m / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    return ["predict", m, trained / "d.csv"], 1, "model.json"


def bad_config_in_model_json(trained, tmp_path):
    m = model_copy(trained, tmp_path)
    meta = json.loads((m / "model.json").read_text())
    meta["config"]["colour"] = "blue"
    (m / "model.json").write_text(json.dumps(meta))
    return ["predict", m, trained / "d.csv"], 1, "model.json"


def fifo_weights(trained, tmp_path):
    m = model_copy(trained, tmp_path)
    (m / "weights.safetensors").unlink()
    os.mkfifo(m / "weights.safetensors")
    return ["predict", m, trained / "d.csv"], 1, "not a regular file"


def fifo_data(trained, tmp_path):
    os.mkfifo(tmp_path / "d.csv")
    return ["predict", trained / "model", tmp_path / "d.csv"], 1, "not a regular file"


def corrupt_zip(trained, tmp_path):
    p = tmp_path / "m.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("config.json", json.dumps(KERAS_CONFIG))
        z.writestr("model.weights.h5", b"x" * 1000)
    data = bytearray(p.read_bytes())
    data[200:260] = b"\xff" * 60  # inside the entries
    p.write_bytes(bytes(data))
    return ["import-keras", p, tmp_path / "out"], 1, "m.keras"


def corrupt_h5(trained, tmp_path):
    p = tmp_path / "m.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    return ["import-keras", p, tmp_path / "out"], 1, "m.h5"


def h5_link_loop(trained, tmp_path):
    p = tmp_path / "m.weights.h5"
    with h5py.File(p, "w") as f:
        g = f.create_group("layers/lstm/cell/vars")
        g["loop"] = f["layers/lstm"]  # a hard link back up: the tree is a cycle
    (tmp_path / "m.json").write_text(json.dumps(KERAS_CONFIG))
    return ["import-keras", p, tmp_path / "out"], 1, "m.weights.h5"


def inf_in_time(trained, tmp_path):
    df = pd.read_csv(trained / "d.csv")
    df["t"] = df["t"].astype(float)
    df.loc[5, "t"] = np.inf
    df.to_csv(tmp_path / "d.csv", index=False)
    return train_argv(tmp_path / "d.csv", tmp_path / "m"), 1, "not a finite number"


def toml_features_5(trained, tmp_path):
    (tmp_path / "c.toml").write_text("features = 5\n")
    return ["train", trained / "d.csv", "--config", tmp_path / "c.toml"], 2, "c.toml"


def bad_storage_url(trained, tmp_path):
    return (
        ["sweep", "sine", "--trials", "1", "--storage", "nope://x", "--out", tmp_path],
        2,
        ("--storage"),
    )


def sweep_timeout_before_first_trial(trained, tmp_path):
    return ["sweep", "sine", "--quick", "--trials", "2", "--timeout", "0.001", "--out",
            tmp_path], 1, "no trial finished within --timeout"  # fmt: skip


def predict_over_its_input(trained, tmp_path):
    shutil.copy(trained / "d.csv", tmp_path / "d.csv")
    return (
        ["predict", trained / "model", tmp_path / "d.csv", "-o", tmp_path / "d.csv"],
        2,
        ("is the input file"),
    )


def out_is_root(trained, tmp_path):
    return train_argv(trained / "d.csv", "/", "--force"), 2, "refusing"


CASES = [
    corrupt_weights, truncated_weights, shape_mismatch, deep_model_json,
    bad_config_in_model_json, fifo_weights, fifo_data, corrupt_zip, corrupt_h5, h5_link_loop,
    inf_in_time, toml_features_5, bad_storage_url, sweep_timeout_before_first_trial,
    predict_over_its_input, out_is_root,
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_line_and_an_exit_status(case, trained, tmp_path, capsys):
    argv, status, words = case(trained, tmp_path)
    argv = [str(a) for a in argv]
    capsys.readouterr()
    if "fifo" in case.__name__:  # a regression would block for ever: a child with a timeout
        r = subprocess.run(
            [sys.executable, "-c", "import sys; from statefulrnn.cli import main; "
             "sys.exit(main(sys.argv[1:]))", *argv],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        code, err = r.returncode, r.stderr
    else:
        code, err = main(argv), capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert code == status, err
    assert len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in err
    assert "run with --debug" not in lines[0], err  # a message of ours, not a raw exception


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_a_task_parameter_without_a_value_is_a_usage_error(command, tmp_path, capsys):
    argv = [command, "sine", "--quick", "--set", "epochs", "--out", str(tmp_path / "o")]
    assert main(argv + (["--trials", "1"] if command == "sweep" else [])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"statefulrnn {command}: ") and "--set needs NAME=VALUE" in err, err
    assert not (tmp_path / "o").exists()  # refused before any work


def test_debug_prints_the_traceback_and_unknown_errors_are_named(trained, tmp_path, capsys):
    m = model_copy(trained, tmp_path)
    (m / "weights.safetensors").write_bytes(b"junk")
    argv = ["predict", str(m), str(trained / "d.csv")]
    assert main(["--debug", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("statefulrnn predict")

    from statefulrnn.cli import predict as predict_cli

    def boom(args):
        raise ZeroDivisionError("division by zero")

    mp = pytest.MonkeyPatch()
    mp.setattr(predict_cli, "run", boom)
    try:
        assert main(argv) == 1
    finally:
        mp.undo()
    err = capsys.readouterr().err
    assert err == (
        "statefulrnn predict: error: ZeroDivisionError: division by zero "
        "(run with --debug for the traceback)\n"
    )


def test_a_full_disk_after_training_keeps_the_model(trained, tmp_path, capsys, monkeypatch):
    """Found 7: a full disk after training lost the trained model. The error says where the
    save failed and where the model went instead."""
    real = records.replace_dir
    calls = []

    def full(final, write, **kw):
        calls.append(final)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(final))
        return real(final, write, **kw)

    monkeypatch.setattr(records, "replace_dir", full)
    assert main(train_argv(trained / "d.csv", tmp_path / "m")) == 1
    err = capsys.readouterr().err.strip()
    assert "training finished (1 epochs) but writing the model to" in err
    assert "No space left on device" in err and "instead" in err
    rescue = Path(calls[1])
    assert sr.load_model(rescue).input_size == 1
    shutil.rmtree(rescue.parent)


def test_a_locked_sweep_database_is_a_clear_error_not_a_hang(tmp_path, capsys, monkeypatch):
    from statefulrnn.experiments import sweep as sweep_mod

    monkeypatch.setattr(sweep_mod, "SQLITE_BUSY_S", 1)
    db = tmp_path / "sweeps.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE x (a)")
    con.commit()
    con.execute("BEGIN EXCLUSIVE")  # another process holding the study
    try:
        code = main(["sweep", "sine", "--quick", "--trials", "1", "--out", str(tmp_path)])
    finally:
        con.rollback()
        con.close()
    err = capsys.readouterr().err
    assert code == 1
    assert "stayed locked for 1 s" in err and "sweeps.db" in err


def test_stream_pool_refuses_nonfinite_input_without_touching_the_state():
    model = sr.StatefulRNN(2, 4, 1, cell="gru")
    pool = sr.StreamPool(model)
    pool.step(["a", "b"], np.ones((2, 1, 2), np.float32))
    before = pool.state("a") if hasattr(pool, "state") else None
    x = np.ones((2, 1, 2), np.float32)
    x[1, 0, 1] = np.nan
    with pytest.raises(ValueError, match="x for stream 'b' .* holds NaN or inf"):
        pool.step(["a", "b"], x)
    with pytest.raises(ValueError, match="stream 'c'"):
        pool.step(["c"], np.full((1, 1, 2), 1e300))  # beyond float32: inf
    assert "c" not in pool
    # the refused call changed nothing: a and b continue as if it never happened
    twin = sr.StreamPool(model)
    twin.step(["a", "b"], np.ones((2, 1, 2), np.float32))
    y = pool.step(["a", "b"], np.full((2, 1, 2), 0.5, np.float32))
    np.testing.assert_array_equal(y, twin.step(["a", "b"], np.full((2, 1, 2), 0.5, np.float32)))
    del before
    lax = sr.StreamPool(model, allow_nonfinite=True)
    assert np.isnan(lax.step(["a"], np.full((1, 1, 2), np.nan, np.float32))).all()


def test_integer_nanosecond_times_above_2_53_are_exact(tmp_path):
    """Found 8: int64 nanosecond stamps above 2**53 were refused as duplicates (float64)."""
    base = 1_700_000_000_000_000_000  # 2023 in ns, > 2**53
    df = pd.DataFrame({"t": [base + i for i in range(6)], "x": np.arange(6.0), "y": np.ones(6)})
    df.to_csv(tmp_path / "d.csv", index=False)
    seqs = sr.read_sequences(tmp_path / "d.csv", time="t", features=["x"], targets=["y"])
    assert len(seqs) == 1 and len(seqs.xs[0]) == 6
    np.testing.assert_array_equal(seqs.xs[0][:, 0], np.arange(6.0))
