"""Defaults and papercuts users met (issue 14), each with the check that it is fixed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import statefulrnn as sr
from statefulrnn.train.fit import FewUpdatesWarning

ROOT = Path(__file__).parents[1]


def seqs(n=4, t=24, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(t, 1)) for _ in range(n)]
    return sr.Sequences.from_arrays(xs, [np.cumsum(x, 0) * 0.1 for x in xs])


# ---------------------------------------------------------------- defaults
@pytest.mark.slow
def test_few_updates_per_epoch_warn_naming_the_numbers():
    model = sr.StatefulRNN(1, 3, 1)
    with pytest.warns(FewUpdatesWarning, match=r"only 1 optimizer updates .* 3 epochs give 3"):
        sr.fit(model, seqs(), mode="stateful", window=50, batch_size=32, epochs=3, verbose=0)
    with pytest.warns(FewUpdatesWarning, match=r"stride < window"):
        sr.fit(model, seqs(), mode="stateless", window=8, batch_size=32, epochs=2, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewUpdatesWarning)  # enough updates: no warning
        sr.fit(
            model, seqs(), mode="stateless", window=4, batch_size=2, stride=1, epochs=1, verbose=0
        )


@pytest.mark.parametrize(
    "mode, monitor", [("stateless", "val_loss_windowed"), ("stateful", "val_loss")]
)
def test_early_stopping_watches_the_loss_of_the_training_mode(mode, monitor):
    stop = sr.EarlyStopping(patience=2)
    train, val = seqs(), seqs(2, seed=1)
    model = sr.StatefulRNN(1, 3, 1)
    sr.fit(
        model, train, val, mode=mode, window=6, batch_size=2, epochs=1, callbacks=[stop], verbose=0
    )
    assert stop.monitor == monitor
    assert sr.EarlyStopping(monitor="loss").monitor == "loss"  # a given monitor is kept


def test_predict_defaults_to_the_mode_the_model_was_trained_for():
    train = seqs()
    model = sr.StatefulRNN(1, 3, 1)
    sr.fit(model, train, mode="stateless", window=5, batch_size=4, epochs=1, verbose=0)
    windowed = sr.predict(model, train, mode="windowed", window=5)
    stateful = sr.predict(model, train, mode="stateful")
    default = sr.predict(model, train)
    assert all(np.array_equal(a, b) for a, b in zip(default, windowed))
    assert not all(np.allclose(a, b) for a, b in zip(default, stateful))


# ---------------------------------------------------------------- papercuts
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_fit_on_cuda_without_cuda_is_a_clear_error_and_the_model_stays_usable():
    model = sr.StatefulRNN(1, 3, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"sees no CUDA GPU.*device='cpu'"):
        sr.fit(model, seqs(), window=6, batch_size=2, epochs=1, verbose=0, device="cuda")
    assert model.device.type == "cpu"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    sr.fit(model, seqs(), window=6, batch_size=2, epochs=1, verbose=0)  # still trains
    assert np.isfinite(np.concatenate(sr.predict(model, seqs()))).all()


@pytest.mark.parametrize("umask, folder, file", [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_model_folders_get_the_umasks_modes(tmp_path, umask, folder, file):
    old = os.umask(umask)
    try:
        path = sr.StatefulRNN(1, 3, 1).save(tmp_path / "m")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == folder
    for f in path.iterdir():
        assert f.stat().st_mode & 0o777 == file, f.name


pd = pytest.importorskip("pandas")


def _table(tmp_path, rows_per_id=40):
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame({"unit": f"u{i}", "t": range(rows_per_id), "x": rng.normal(size=rows_per_id)})
        for i in range(3)
    ]
    df = pd.concat(frames).sort_values("t", kind="stable").reset_index(drop=True)
    df["y"] = df["x"].cumsum()
    path = tmp_path / "units.csv"
    df.to_csv(path, index=False)
    return path


def test_a_multi_id_file_without_id_says_so(tmp_path, capsys):
    from statefulrnn.cli import main

    data = _table(tmp_path)
    args = ["train", str(data), "--features", "x", "--targets", "y", "--out", str(tmp_path / "m")]
    assert main([*args, "--epochs", "1", "--hidden", "3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"warning: .*ONE sequence, but column 'unit' has 3 distinct values", out)
    assert "--id unit" in out


def test_epochs_are_numbered_alike_on_console_history_and_summary(tmp_path, capsys):
    from statefulrnn.cli import main

    data = _table(tmp_path)
    out_dir = tmp_path / "m"
    args = ["train", str(data), "--id", "unit", "--time", "t", "--features", "x", "--targets", "y"]
    assert (
        main([*args, "--epochs", "3", "--hidden", "3", "--window", "5", "--out", str(out_dir)]) == 0
    )
    console = capsys.readouterr().out
    printed = [int(m) for m in re.findall(r"^epoch (\d+)/3", console, flags=re.M)]
    history = [r["epoch"] for r in json.loads((out_dir / "history.json").read_text())]
    assert printed == history == [1, 2, 3]
    best = json.loads((out_dir / "summary.json").read_text())["best_epoch"]
    assert f"weights of epoch {best} kept" in console and best in history


@pytest.mark.slow
def test_predict_into_a_closed_pipe_exits_quietly(tmp_path):
    from statefulrnn.cli import main

    data = _table(tmp_path, rows_per_id=3000)  # ~9,000 rows: more than a pipe holds
    model = tmp_path / "m"
    args = ["train", str(data), "--id", "unit", "--time", "t", "--features", "x", "--targets", "y"]
    assert main([*args, "--epochs", "1", "--hidden", "2", "--out", str(model)]) == 0
    env = os.environ | {"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "statefulrnn", "predict", str(model), str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    first = proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0, err
    assert first.startswith(b"unit,t,y_pred")
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_install_hints_work_outside_the_repository():
    """statefulrnn is not published, so `pip install 'statefulrnn[x]'` only works from this
    folder; hints name the packages themselves. The README's commands install what they use."""
    for path in (ROOT / "src" / "statefulrnn").rglob("*.py"):
        assert "statefulrnn[" not in path.read_text(), path
    readme = (ROOT / "README.md").read_text()
    main_command = next(line for line in readme.splitlines() if "compare --all" in line)
    assert "data" in main_command and "report" in main_command
    own = readme.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    assert "[data]" in own or "pip install pandas pyarrow" in own


def test_a_stateful_run_scores_its_windowed_validation_when_given_val_window():
    """What `train --monitor val_loss_windowed` (and a best.toml of a sweep scored windowed)
    needs for a stateful model: fit's val_loss_windowed, equal to an independent windowed
    evaluation of the final weights; without val_window a stateful run does not compute it."""
    train, val = seqs(), seqs(2, seed=1)
    model = sr.StatefulRNN(1, 3, 1)
    kw = dict(mode="stateful", window=6, batch_size=2, epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewUpdatesWarning)
        assert "val_loss_windowed" not in sr.fit(model, train, val, **kw).last
        record = sr.fit(model, train, val, val_window=4, **kw).last
    again = sr.evaluate(model, val, mode="windowed", window=4)
    assert record["val_loss_windowed"] == pytest.approx(again["loss"], rel=1e-12)


def test_predict_and_evaluate_print_library_warnings_as_one_line(tmp_path, capsys):
    """A TableWarning (an id-like column, no --id) reads as `statefulrnn predict: warning:
    ...`, as train prints it, not as Python's `file:line: TableWarning:` and a source line."""
    pd = pytest.importorskip("pandas")
    from statefulrnn.cli import main

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"site": np.repeat(list("abcdefgh"), 6), "x": rng.normal(size=48)})
    df["y"] = df.x.cumsum()
    csv = tmp_path / "d.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "m"
    assert main(["train", str(csv), "--features=x", "--targets=y", "--epochs=1", f"--out={out}"]) == 0
    capsys.readouterr()
    for command in (["predict", str(out), str(csv), "-o", str(tmp_path / "p.csv")],
                    ["evaluate", str(out), str(csv), "--no-plot"]):  # fmt: skip
        # a process of its own: pytest records warnings instead of showing them
        run = subprocess.run(
            [sys.executable, "-m", "statefulrnn", *command], capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        assert f"statefulrnn {command[0]}: warning: " in run.stderr and "'site'" in run.stderr
        assert "TableWarning" not in run.stderr and "read_sequences(" not in run.stderr


def test_real_data_doc_reports_rows_that_selection_never_saw():
    """docs/real-data.md (issue 14, item 6): every model trains on the head file (the first
    80% of rows, whose own last 20% early-stops), and every score is on the full file's
    last 20%: the reported rows never chose an epoch. The stateless runs use overlapping
    windows (--stride 1)."""
    doc = (ROOT / "docs" / "real-data.md").read_text()
    assert "df.iloc[: int(len(df) * 0.8)]" in doc
    trains = [line for line in doc.splitlines() if line.startswith("statefulrnn train ")]
    evaluates = [line for line in doc.splitlines() if line.startswith("statefulrnn evaluate ")]
    assert len(trains) == len(evaluates) == 4
    for line in trains:
        assert line.split()[2].endswith("_head.csv") and "--val" not in line  # default 0.2
        assert "--mode stateful " in line or "--stride 1 " in line
    for line in evaluates:
        assert "_head" not in line and "--tail 0.2" in line and "--season 48,336" in line
