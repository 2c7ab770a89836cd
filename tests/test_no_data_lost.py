"""Nothing the user wrote is destroyed, nothing non-finite is saved as good (issue 18).

Found 1: output folders replaced without a check (a folder holding the input CSV, an unrelated
sibling NAME.old/, predict -o over its own input). Found 4: a NaN model kept as the last good
checkpoint, `train --lr inf` exiting 0, non-finite scaling. Found 8: orphaned temp folders
from killed saves, `--out /`, spreadsheet formulas in ids. Every case runs in a temp dir.
"""

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
from conftest import make_rnn

import statefulrnn as sr
from statefulrnn import records
from statefulrnn.cli import main
from statefulrnn.data.scaling import Standardizer

pd = pytest.importorskip("pandas")

TINY = ["--hidden", "3", "--window", "5", "--batch-size", "2", "--epochs", "1", "--val", "0"]


def make_model(seed=0):
    return make_rnn(2, 4, 1, "gru", seed=seed)


def table(path: Path, n=30, ids=("a", "b"), scale=1.0) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for sid in ids:
        x = rng.normal(size=n)
        rows += [{"id": sid, "t": t, "x": x[t], "y": scale * x[t - 1]} for t in range(n)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def train_argv(data, out, *extra):
    return ["train", str(data), "--id", "id", "--time", "t", "--features", "x", "--targets",
            "y", "--out", str(out), *TINY, *extra]  # fmt: skip


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------- folders we did not write
def test_train_out_refuses_the_folder_that_holds_its_input_even_with_force(tmp_path, capsys):
    proj = tmp_path / "proj"
    proj.mkdir()
    data = table(proj / "d.csv")
    before = tree(proj)
    assert main(train_argv(data, proj)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did not write (d.csv)" in err and str(proj) in err
    assert main(train_argv(data, proj, "--force")) == 2
    assert "holds the input data" in capsys.readouterr().err
    assert tree(proj) == before


def test_model_folders_refuse_what_we_did_not_write(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    with pytest.raises(
        records.FolderNotOurs, match=r"holds files statefulrnn did not write \(notes.txt, sub\)"
    ):
        make_model().save(out)
    assert (out / "notes.txt").read_text() == "mine"
    data = table(tmp_path / "d.csv")
    assert main(train_argv(data, out)) == 2  # refused before training
    err = capsys.readouterr().err
    assert "notes.txt" in err and "--force" in err and "Traceback" not in err
    # import-keras refuses before reading the Keras file (which does not even exist here)
    assert main(["import-keras", str(tmp_path / "missing.keras"), str(out)]) == 2
    assert (out / "notes.txt").read_text() == "mine"
    # --force / force=True replace it
    make_model().save(out, force=True)
    assert not (out / "notes.txt").exists() and sr.load_model(out) is not None


def test_our_folders_are_replaced_and_keep_only_our_files(tmp_path):
    out = tmp_path / "m"
    make_model(0).save(out)
    make_model(1).save(out)  # ours: replaced
    assert sr.load_model(out).identity() == make_model(1).identity()
    (out / "d.csv").write_text("a,b\n")  # a user's file dropped into our folder
    with pytest.raises(records.FolderNotOurs, match="d.csv"):
        make_model(2).save(out)
    (out / "d.csv").unlink()
    # an empty folder, and a folder from before the marker (only files a save writes)
    (tmp_path / "empty").mkdir()
    make_model().save(tmp_path / "empty")
    (out / records.MARKER).unlink()
    make_model(3).save(out)
    assert sr.load_model(out).identity() == make_model(3).identity()


def test_a_sibling_named_old_is_never_touched(tmp_path):
    sibling = tmp_path / "m.old"
    sibling.mkdir()
    (sibling / "precious.txt").write_text("keep me")
    for seed in range(3):
        make_model(seed).save(tmp_path / "m")
    assert (sibling / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.old"]


def test_checkpoint_folder_is_checked_before_training(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "data.csv").write_text("x\n")
    seqs = sr.Sequences.from_arrays([np.zeros((6, 2))], [np.zeros((6, 1))])
    with pytest.raises(records.FolderNotOurs, match="data.csv"):
        sr.fit(make_model(), seqs, window=3, epochs=1, checkpoint=ckpt, verbose=0)
    assert (ckpt / "data.csv").read_text() == "x\n"


@pytest.mark.parametrize("where", ["/", ".", ".."])
def test_out_root_or_current_folder_is_refused(where, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    data = table(tmp_path / "d.csv")
    assert main(train_argv(data, where, "--force")) == 2
    assert "refusing" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "work"]
    assert not [p for p in os.listdir("/") if p.endswith(".tmp")]


@pytest.mark.slow  # > 20 s on the shared 2-core machine
def test_orphaned_temp_folders_of_killed_saves_are_removed_by_the_next(tmp_path):
    """A save killed mid-write (a real SIGKILL, in a child) leaves its temp folder; the next
    save of that folder removes it, and leaves a live writer's temp folder alone."""
    code = (
        "import os, sys, torch, statefulrnn as sr\n"
        "from statefulrnn import records\n"
        "def die(tmp):\n"
        "    (tmp / 'weights.safetensors').write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), 9)\n"
        "records.replace_dir(sys.argv[1], die)\n"
    )
    for _ in range(3):
        r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], timeout=120)
        assert r.returncode == -9
        orphans = sorted(p.name for p in tmp_path.iterdir())  # each save removes the last one's
        assert len(orphans) == 1 and orphans[0].startswith(".m.") and orphans[0].endswith(".tmp")
    live = tmp_path / ".m.live.tmp"
    live.mkdir()
    (live / records.MARKER).write_text(
        json.dumps({"written_by": "statefulrnn", "pid": os.getppid()})
    )
    foreign = tmp_path / ".m.theirs.tmp"  # not ours (no marker): left alone
    foreign.mkdir()
    make_model().save(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.live.tmp", ".m.theirs.tmp", "m"]


# ----------------------------------------------------------------- predict -o
def test_predict_never_writes_over_its_input_and_escapes_formulas(tmp_path, capsys):
    data = table(tmp_path / "d.csv", ids=("=cmd|' /C calc'!A0", "+1", "-x", "@SUM(A1)", "ok"))
    assert main(train_argv(data, tmp_path / "m")) == 0
    before = data.read_bytes()
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m"), str(data), "-o", str(data)]) == 2
    err = capsys.readouterr().err
    assert "is the input file" in err and err.count("\n") == 1
    assert data.read_bytes() == before
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    assert main(["predict", str(tmp_path / "m"), str(data), "-o", str(link)]) == 2
    assert data.read_bytes() == before

    out = tmp_path / "p.csv"
    assert main(["predict", str(tmp_path / "m"), str(data), "-o", str(out)]) == 0
    ids = set(pd.read_csv(out)["id"])
    assert ids == {"'=cmd|' /C calc'!A0", "'+1", "'-x", "'@SUM(A1)", "ok"}
    assert (
        main(["predict", str(tmp_path / "m"), str(data), "--no-escape-formulas", "-o", str(out)])
        == 0
    )
    assert set(pd.read_csv(out)["id"]) == {"=cmd|' /C calc'!A0", "+1", "-x", "@SUM(A1)", "ok"}
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m"), str(data)]) == 0  # standard output too
    assert "'=cmd" in capsys.readouterr().out


# ----------------------------------------------------------------- nothing non-finite saved
def test_fit_lr_inf_never_keeps_a_nan_checkpoint(tmp_path):
    """Found 4: fit(lr=inf, epochs=3, checkpoint=...) said the good checkpoint was kept, but it
    and the model were NaN. One chunk per epoch: the loss check before each update never
    sees the NaN the last update made."""
    seqs = sr.Sequences.from_arrays(
        [np.random.default_rng(0).normal(size=(6, 2))], [np.ones((6, 1))]
    )
    model = make_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(sr.TrainingDiverged, match=r"epoch 0: weight '.*' is not finite"):
        sr.fit(model, seqs, window=6, epochs=3, lr=float("inf"), optimizer="sgd",
               checkpoint=tmp_path / "ckpt", verbose=0)  # fmt: skip
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k]), k  # restored to the epoch's start
    assert not (tmp_path / "ckpt").exists()  # nothing saved as good

    # a later divergence keeps the earlier, finite checkpoint
    model = make_model()
    sr.fit(model, seqs, window=6, epochs=1, lr=1e-3, checkpoint=tmp_path / "c2", verbose=0)
    with pytest.raises(sr.TrainingDiverged, match="last good checkpoint"):
        sr.fit(model, seqs, window=6, epochs=3, lr=float("inf"), optimizer="sgd",
               checkpoint=tmp_path / "c2", verbose=0)  # fmt: skip
    saved = sr.load_model(tmp_path / "c2")
    assert all(torch.isfinite(v).all() for v in saved.state_dict().values())


def test_a_nan_model_is_never_saved(tmp_path):
    model = make_model()
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(ValueError, match=r"refusing to save .*non-finite value"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_train_lr_inf_exits_nonzero_without_a_model(tmp_path, capsys):
    data = table(tmp_path / "d.csv")
    # one chunk per epoch (window 40 > 30 rows): only the check after the update can see it
    assert main(train_argv(data, tmp_path / "m", "--lr", "inf", "--window", "40")) == 1
    err = capsys.readouterr().err
    assert "not finite" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_targets_near_1e300_train_and_predict_finite_or_refuse(tmp_path, capsys):
    """Found 4: targets near 1e300 overflowed the scaling (saved as null) and `train` exited 0
    with a model whose predictions were empty. Now the scaling is computed without overflow;
    what is saved is finite and predictions come back in the targets' units."""
    data = table(tmp_path / "d.csv", scale=1e300)
    assert main(train_argv(data, tmp_path / "m")) == 0
    extra = json.loads((tmp_path / "m" / "extra.json").read_text())
    assert None not in extra["scaling"]["y"]["std"] + extra["scaling"]["y"]["mean"]
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "m"), str(data), "-o", str(tmp_path / "p.csv")]) == 0
    preds = pd.read_csv(tmp_path / "p.csv")["y_pred"]
    assert preds.notna().sum() > 0 and np.isfinite(preds.dropna()).all()
    assert 1e298 < preds.abs().max() < 1e303
    # a scale that cannot be finite (an inf in the rows) is refused, naming the column
    rows = np.array([[1.0, 2.0], [np.inf, 3.0]])
    with pytest.raises(ValueError, match="cannot standardize target column 'load'"):
        Standardizer.fit(rows, ("load", "temp"), "target column")


def test_fit_lowers_lanes_beyond_the_data(tmp_path):
    """Found 3: fit(batch_size=10**9) on 8 sequences was OOM-killed. A stateful run uses one
    lane per sequence at most; the result equals batch_size=8 exactly."""
    rng = np.random.default_rng(1)
    seqs = sr.Sequences.from_arrays(
        [rng.normal(size=(n, 2)) for n in range(5, 13)],
        [rng.normal(size=(n, 1)) for n in range(5, 13)],
    )
    a, b = make_model(), make_model()
    ha = sr.fit(a, seqs, window=4, batch_size=10**9, epochs=2, verbose=0)
    hb = sr.fit(b, seqs, window=4, batch_size=8, epochs=2, verbose=0)
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_a_scale_beyond_float32_unscales_float32_outputs_in_float64_and_overflow_is_said():
    """Found 5: the un-scaling cast a std of 1e299 to the outputs' float32 (inf), so every
    prediction of such a model was inf; and a prediction that overflows float64 in the
    targets' units came back inf without a word."""
    from statefulrnn.bundle import ModelBundle
    from statefulrnn.data.scaling import Scaling

    model = make_model()
    f = model.input_size
    x_scale = Standardizer(np.zeros(f), np.ones(f))
    huge = Scaling(x_scale, Standardizer(np.array([1e300]), np.array([1e299])))
    bundle = ModelBundle(model, huge, targets=("load",))
    z = np.array([[0.5], [-2.0]], dtype=np.float32)
    want = z.astype(np.float64) * 1e299 + 1e300  # the oracle, in float64
    np.testing.assert_allclose(bundle.to_user(z), want, rtol=1e-7)
    got = bundle.to_user(torch.from_numpy(z))
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-7)

    edge = Scaling(x_scale, Standardizer(np.array([1e308]), np.array([5e307])))
    bundle = ModelBundle(model, edge, targets=("load",))
    with pytest.warns(RuntimeWarning, match=r"1 prediction\(s\) of target 'load' overflow"):
        out = bundle.to_user(np.array([[0.0], [3.0]], dtype=np.float32))
    assert out[0, 0] == 1e308 and np.isinf(out[1, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in range: no warning at all, numpy's included
        bundle.to_user(np.array([[0.0], [1.0]], dtype=np.float32))


def test_temp_files_of_killed_single_file_writes_are_removed_by_the_next(tmp_path):
    """Found 6: a writer killed between writing its temporary file and the rename (history.json,
    a CSV of predictions) left `.NAME.XXXX.tmp` beside it for good. Now the name holds the
    writer's pid, and the next write of that file removes those whose writer is gone, never a
    live writer's nor another file's."""
    target = tmp_path / "h[1].json"  # glob characters in the name are taken literally
    code = (
        "import os, sys, time\n"
        "from statefulrnn import records\n"
        "os.replace = lambda *a: (print('written', flush=True), time.sleep(60))\n"
        f"records.atomic_write_bytes({str(target)!r}, b'half')\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "written"  # its temp file is complete, not renamed
    child.kill()
    child.wait()
    child.stdout.close()
    left = [p.name for p in tmp_path.iterdir()]  # what a kill leaves:
    assert len(left) == 1 and re.fullmatch(rf"\.h\[1\]\.json\.{child.pid}\.\w+\.tmp", left[0])
    live = tmp_path / f".h[1].json.{os.getpid()}.abcd.tmp"  # a write in progress (ours)
    other = tmp_path / f".h2.json.{child.pid}.abcd.tmp"  # another file's
    live.write_bytes(b"")
    other.write_bytes(b"")
    records.atomic_write_bytes(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, live.name, other.name])
