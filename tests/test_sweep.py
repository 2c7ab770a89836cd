"""Sweeps: exactly N trials over several workers sharing one SQLite study; a killed worker's
trial is marked FAIL and the rerun reaches N; outputs that `statefulrnn train` reads."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from statefulrnn import records  # noqa: E402
from statefulrnn.experiments import space as spaces  # noqa: E402

# a tiny first-bit: 40 training series of 8 steps
TINY = [
    "--set=n_series=60",
    "--set=n_val=20",
    "--set=n_test=20",
    "--set=length=8",
    "--set=window=4",
]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _space(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(
        f"epochs = {epochs}\n"
        "hidden = { low = 2, high = 8 }\n"
        "layers = 1\n"
        'cell = "gru"\n'
        "batch_size = { low = 8, high = 40 }\n"
    )
    return path


def _command(out: Path, trials: int, space: Path) -> list[str]:
    code = "import sys; from statefulrnn.cli import main; sys.exit(main())"
    return (
        [sys.executable, "-c", code, "sweep", "first-bit", f"--trials={trials}"]
        + TINY
        + [
            f"--out={out}",
            f"--space={space}",
        ]
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as f:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )


def _ran(log: Path) -> set[int]:
    """Trial numbers this worker trained to an end (complete or pruned), from its log lines."""
    return {
        int(m.group(1))
        for m in re.finditer(r"^trial +(\d+)  (?:COMPLETE|PRUNED)", log.read_text(), re.M)
    }


def _trials(out: Path) -> list:
    study = optuna.load_study(study_name="first-bit", storage=f"sqlite:///{out / 'sweeps.db'}")
    return study.get_trials(deepcopy=False)


def _counted(trials) -> set[int]:
    return {t.number for t in trials if t.state.name in ("COMPLETE", "PRUNED")}


@pytest.mark.slow
def test_two_workers_run_exactly_the_requested_trials(tmp_path):
    out, n = tmp_path / "run", 6
    space = _space(tmp_path, epochs=6)
    logs = [tmp_path / "w0.log", tmp_path / "w1.log"]
    workers = [_start(_command(out, n, space), log) for log in logs]
    for w, log in zip(workers, logs):
        assert w.wait(timeout=80) == 0, log.read_text()[-3000:]
    trials = _trials(out)
    ran = [_ran(log) for log in logs]
    assert len(_counted(trials)) == n
    assert not ran[0] & ran[1], "a trial ran in both workers"
    assert ran[0] | ran[1] == _counted(trials), "a counted trial no worker ran, or the reverse"
    assert ran[0] and ran[1], "one worker ran nothing: the test did not exercise sharing"
    # a trial created after the budget was claimed is failed unrun, and is the only kind of FAIL
    for t in trials:
        if t.state.name == "FAIL":
            assert t.user_attrs["note"].startswith("not run"), t.user_attrs
        else:
            assert t.state.name in ("COMPLETE", "PRUNED")
    rows = (out / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(trials)


def _running_with_progress(db: Path) -> list[int]:
    """Numbers of RUNNING trials that reported at least one epoch (so: mid-trial)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return [
                r[0]
                for r in con.execute(
                    "SELECT t.number FROM trials t WHERE t.state = 'RUNNING' AND EXISTS "
                    "(SELECT 1 FROM trial_intermediate_values v WHERE v.trial_id = t.trial_id)"
                )
            ]
    except sqlite3.OperationalError:  # tables not made yet, or locked a moment
        return []


@pytest.mark.slow
def test_killed_worker_trial_is_failed_and_the_rerun_reaches_the_count(tmp_path):
    out, n = tmp_path / "run", 2
    space = _space(tmp_path, epochs=15)  # trials of seconds: the kill lands mid-trial
    cmd = _command(out, n, space)
    worker = _start(cmd, tmp_path / "w0.log")
    deadline, killed = time.monotonic() + 60, None
    while time.monotonic() < deadline and worker.poll() is None:
        running = _running_with_progress(out / "sweeps.db")
        if running:
            os.kill(worker.pid, signal.SIGKILL)
            killed = running[0]
            break
        time.sleep(0.05)
    worker.wait(timeout=10)
    assert killed is not None, (tmp_path / "w0.log").read_text()[-3000:]
    states = {t.number: t.state.name for t in _trials(out)}
    assert states[killed] == "RUNNING"  # a dead worker leaves its trial RUNNING ...

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=80)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"trial {killed}: its worker (process {worker.pid}) is gone; marked FAIL" in rerun.stdout
    trials = _trials(out)
    assert {t.number: t.state.name for t in trials}[killed] == "FAIL"  # ... the rerun fails it
    assert len(_counted(trials)) == n
    assert _counted(trials) == _ran(tmp_path / "w0.log") | _ran_stdout(rerun.stdout)


def _ran_stdout(text: str) -> set[int]:
    return {int(m.group(1)) for m in re.finditer(r"^trial +(\d+)  (?:COMPLETE|PRUNED)", text, re.M)}


def test_rerun_resumes_and_best_config_is_read_by_train(tmp_path, capsys):
    import statefulrnn as sr

    out = tmp_path / "run"
    space = {"epochs": 2, "hidden": 3, "layers": 1, "batch_size": 16, "cell": "lstm"}
    params = {"n_series": 50, "n_val": 10, "n_test": 10, "length": 6, "window": 3}
    kw = dict(trials=2, out=out, space=space, params=params, log=lambda s: None)
    first = sr.sweep("first-bit", **kw)
    assert sum(first.counts.get(k, 0) for k in ("COMPLETE", "PRUNED")) == 2
    more = sr.sweep("first-bit", **{**kw, "trials": 3})  # same study resumed, extended to 3
    assert sum(more.counts.get(k, 0) for k in ("COMPLETE", "PRUNED")) == 3
    assert [r["number"] for r in more.trials[:2]] == [r["number"] for r in first.trials]

    with pytest.raises(ValueError, match="sweeps something else"):
        sr.sweep("first-bit", **{**kw, "space": {**space, "hidden": 4}})

    from statefulrnn.cli import options

    cfg = options.load_config(out / "best.toml", "train")
    best = more.best
    assert cfg["window"] == best["window"] and cfg["hidden"] == 3 and cfg["epochs"] == 2
    assert cfg["mode"] == ("stateful" if best["mode"] == "stateful" else "stateless")
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and '<img src="runs' not in html
    header = (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert {"number", "state", "value", "mode", "window", "val_accuracy"} <= set(header)


def test_space_overrides_and_errors(tmp_path):
    base = spaces.default_space(20, task="first-bit")
    assert base["epochs"] == {"fixed": 15} and base["window"]["high"] == 20
    path = tmp_path / "s.toml"
    path.write_text(
        'window = { low = 2, high = 9, log = true }\nnum_layers = 1\nmode = ["stateful"]\n'
    )
    s = spaces.override(base, path)
    assert s["window"] == {"low": 2, "high": 9, "log": True}
    assert s["layers"] == {"fixed": 1} and s["mode"] == {"fixed": "stateful"}
    with pytest.raises(ValueError, match="Did you mean 'window'"):
        spaces.override(base, {"windwo": 3})
    with pytest.raises(ValueError, match="low 9 is above high 2"):
        spaces.override(base, {"window": {"low": 9, "high": 2}})
    with pytest.raises(ValueError, match="not one of"):
        spaces.override(base, {"mode": ["stateful", "bidirectional"]})


def test_sweep_without_optuna_says_how_to_install(monkeypatch):
    import statefulrnn as sr

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install optuna"):
        sr.sweep("first-bit", trials=1)


def test_optuna_is_imported_only_inside_functions():
    """`import statefulrnn` (and every module) works without the optional Optuna."""
    import ast

    for path in Path(SRC, "statefulrnn").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "optuna" for n in names), path


@pytest.mark.parametrize(
    "mode, predict, lr, apart",
    [
        ("stateful", "stateful", 0.05, False),
        ("stateful", "windowed", 0.02, True),
        ("stateless", "windowed", 0.05, False),
        ("stateless", "stateful", 0.05, True),
        ("stateless+burn-in", "stateful", 0.05, False),
    ],
)
def test_best_toml_retrains_to_the_sweep_trials_score_exactly(
    mode, predict, lr, apart, tmp_path, capsys
):
    """DATA sweeps prepare the file as `statefulrnn train` does, and best.toml makes `train`
    keep the epoch the sweep scored (`monitor`, when the sweep scored the other prediction
    mode than the model's own): retraining gives the trial's validation loss bit for bit
    (training is deterministic: same seed, same data order, same threads policy). Before
    `monitor`, a stateless winner of a `--predict stateful` sweep (the default) was
    early-stopped on its windowed loss and reported windowed first: another epoch could be
    kept, and the number `train` showed was the other mode's (last session's 0.90503 against
    the sweep's 0.90499 is a gap of that size). `apart`: cases whose lr makes the two losses
    pick different epochs, so they fail without `monitor`."""
    pd = pytest.importorskip("pandas")
    import numpy as np

    from statefulrnn.cli import main

    csv = _moving_average_csv(tmp_path, pd, np)
    space = (
        f'epochs = 8\npatience = 2\nhidden = 4\nlayers = 1\ncell = "lstm"\nmode = "{mode}"\n'
        f"window = 3\nbatch_size = 8\nlr = {lr}\nburn_in = 4\n"
    )
    (tmp_path / "space.toml").write_text(space)
    out = tmp_path / "run"
    args = [str(csv), "--id=sensor", "--time=t", "--features=x", "--targets=y", "--trials=1"]
    args += [f"--out={out}", f"--space={tmp_path / 'space.toml'}", f"--predict={predict}"]
    assert main(["sweep", *args]) == 0
    best = records.read_json(out / "sweep.json")["best"]
    capsys.readouterr()
    assert main(["train", "--config", str(out / "best.toml")]) == 0
    history = records.read_json(out / "best-model" / "history.json")
    summary = records.read_json(out / "best-model" / "summary.json")
    monitor = "val_loss" if predict == "stateful" else "val_loss_windowed"
    assert summary["best_epoch"] == best["best_epoch"]
    kept = history[best["best_epoch"] - 1]
    assert kept["epoch"] == best["best_epoch"]
    assert kept[monitor] == best["value"]  # exactly: the same computation on the same weights
    assert best["python"]["monitor"] == monitor
    own = "val_loss_windowed" if mode.startswith("stateless") else "val_loss"
    if apart:  # the model's own loss would keep another epoch: the case tests the selection
        assert int(np.argmin([h[own] for h in history])) + 1 != best["best_epoch"]


def _moving_average_csv(tmp_path, pd, np):
    rng = np.random.default_rng(0)
    frames = []
    for sensor in range(3):
        x = rng.uniform(-1, 1, 120)
        y = np.convolve(x, [0.5, 0.5])[:120]  # mean of the last two inputs
        frames.append(pd.DataFrame({"sensor": sensor, "t": range(120), "x": x, "y": y}))
    csv = tmp_path / "ma.csv"
    pd.concat(frames).to_csv(csv, index=False)
    return csv


@pytest.mark.slow
def test_a_stateless_burn_in_best_config_trains_with_its_burn_in(tmp_path, capsys):
    """The sweep's space never leaves what `train` builds: a stateless+burn-in winner's
    best.toml trains (burn_in included) to the validation loss the sweep measured."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("statefulrnn.cli.train")
    import numpy as np

    from statefulrnn.cli import main
    from statefulrnn.model import load_extra

    csv = _moving_average_csv(tmp_path, pd, np)
    space = (
        'epochs = 2\nhidden = 4\nlayers = 1\ncell = "lstm"\nmode = "stateless+burn-in"\n'
        "window = 3\nburn_in = 5\n"
    )
    (tmp_path / "space.toml").write_text(space)
    out = tmp_path / "run"
    args = [str(csv), "--id=sensor", "--time=t", "--features=x", "--targets=y", "--trials=1"]
    assert main(["sweep", *args, f"--out={out}", f"--space={tmp_path / 'space.toml'}"]) == 0
    best = records.read_json(out / "sweep.json")["best"]
    assert "burn_in = 5" in (out / "best.toml").read_text()
    capsys.readouterr()
    assert main(["train", "--config", str(out / "best.toml")]) == 0
    extra = load_extra(out / "best-model")
    assert extra["train"]["burn_in"] == 5 and extra["bundle"]["fit"]["burn_in"] == 5
    assert extra["train"]["mode"] == "stateless" and extra["train"]["window"] == best["window"]


def test_every_search_option_is_a_train_option():
    """The space varies only what `statefulrnn train` takes (its mode names mapped to train's)."""
    from dataclasses import fields

    from statefulrnn.modes import SWEEP_MODES, TRAIN_MODES, training_mode
    from statefulrnn.tabular.config import TableTrainConfig

    train_options = {f.name for f in fields(TableTrainConfig)}
    assert set(spaces.OPTIONS) <= train_options
    assert {training_mode(m) for m in SWEEP_MODES} == set(TRAIN_MODES)


class _Draw:
    """A stand-in for an Optuna trial: draws from hypothesis instead of a sampler."""

    def __init__(self, data):
        self.data = data

    def suggest_categorical(self, name, choices):
        from hypothesis import strategies as st

        return self.data.draw(st.sampled_from(choices), label=name)

    def suggest_int(self, name, low, high, log=False):
        from hypothesis import strategies as st

        return self.data.draw(st.integers(low, high), label=name)

    def suggest_float(self, name, low, high, log=False):
        from hypothesis import strategies as st

        return self.data.draw(st.floats(low, high), label=name)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=150)
@given(
    data=st.data(),
    max_length=st.integers(1, 5000),
    task=st.sampled_from([None, *spaces.TASK_SPACES]),
    predict=st.sampled_from(["stateful", "windowed"]),
    clip=st.sampled_from([None, 1.0]),
)
def test_any_configuration_the_space_draws_is_one_train_builds(
    data, max_length, task, predict, clip
):
    """Whatever the default space of any task (or table) draws, best.toml's [train] table
    reads as `statefulrnn train` options that make a valid TableTrainConfig (train's own
    checks and fit's) with the drawn values, nothing dropped."""
    from types import SimpleNamespace

    from statefulrnn.cli import options
    from statefulrnn.experiments.sweep_files import best_toml
    from statefulrnn.modes import training_mode
    from statefulrnn.tabular.config import TableTrainConfig

    space = spaces.default_space(max_length, task=task, patience=data.draw(st.integers(0, 3)))
    space["clip"] = {"fixed": clip}
    cfg = spaces.suggest(_Draw(data), space)
    best = {"number": 0, "value": 0.5, **cfg}
    best.setdefault("burn_in", None)
    table = {"data": "d.csv", "features": ("x",), "targets": ("y",), "val": 0.2, "loss": "mse"}
    target = SimpleNamespace(kind="table", loss="mse", table=table, fixed={}, name="d")
    result = SimpleNamespace(study="d", storage="sqlite://", out=Path("run"))
    text = best_toml(best, result, target, seed=3, predict=predict)
    path = Path(f"/tmp/statefulrnn-test-best-{os.getpid()}.toml")
    path.write_text(text)
    try:
        got = options.load_config(path, "train")
    finally:
        path.unlink()
    made = TableTrainConfig(**got)
    made.check()
    for name in ("window", "batch_size", "cell", "hidden", "layers", "lr", "clip", "epochs"):
        assert getattr(made, name) == cfg[name], name
    assert made.patience == cfg["patience"] and made.seed == 3
    assert made.mode == training_mode(cfg["mode"])
    assert made.burn_in == (cfg["burn_in"] if cfg["mode"] == "stateless+burn-in" else None)


def _classes_csv(tmp_path, pd, np):
    rng = np.random.default_rng(1)
    frames = []
    for sensor in range(3):
        x = rng.normal(size=120)
        y = (np.convolve(x, [0.5, 0.5])[:120] > 0).astype(float)  # sign of a moving sum
        frames.append(pd.DataFrame({"sensor": sensor, "t": range(120), "x": x, "y": y}))
    csv = tmp_path / "cls.csv"
    pd.concat(frames).to_csv(csv, index=False)
    return csv


def test_options_fixed_in_the_config_reach_every_trial_and_best_toml(tmp_path, capsys):
    """A table sweep keeps train's options it does not search (here loss bce, optimizer
    rmsprop, stride 1, no shuffle, from --config): every trial trains with them, best.toml
    repeats them, and `train --config best.toml` reproduces the trial's score exactly (it
    could not if a trial had trained with other options). Options a sweep cannot keep fixed
    are refused by name."""
    pd = pytest.importorskip("pandas")
    import numpy as np

    from statefulrnn.cli import main
    from statefulrnn.model import load_extra

    csv = _classes_csv(tmp_path, pd, np)
    config = tmp_path / "train.toml"
    config.write_text(
        f'data = "{csv}"\nid = "sensor"\ntime = "t"\nfeatures = "x"\ntargets = "y"\n'
        'loss = "bce"\noptimizer = "rmsprop"\nstride = 1\nshuffle = false\n'
    )
    space = tmp_path / "space.toml"
    space.write_text(
        'epochs = 3\npatience = 1\nhidden = 4\nlayers = 1\ncell = "gru"\nmode = "stateless"\n'
        "window = 4\nbatch_size = 16\nlr = 0.01\n"
    )
    out = tmp_path / "run"
    argv = ["sweep", "--config", str(config), "--trials=1", f"--out={out}", f"--space={space}"]
    assert main([*argv, "--predict=windowed"]) == 0
    best = records.read_json(out / "sweep.json")["best"]
    text = (out / "best.toml").read_text()
    for line in ('loss = "bce"', 'optimizer = "rmsprop"', "stride = 1", "shuffle = false"):
        assert line in text
    assert "val_accuracy" in best and 0.0 <= best["val_accuracy"] <= 1.0
    capsys.readouterr()
    assert main(["train", "--config", str(out / "best.toml")]) == 0
    history = records.read_json(out / "best-model" / "history.json")
    assert history[best["best_epoch"] - 1]["val_loss_windowed"] == best["value"]
    extra = load_extra(out / "best-model")
    assert extra["train"]["loss"] == "bce" and extra["bundle"]["fit"]["stride"] == 1

    config.write_text(config.read_text() + "backprop = 8\n")
    capsys.readouterr()
    assert main([*argv[:-2], f"--out={tmp_path / 'run2'}", f"--space={space}"]) == 2
    assert "cannot keep 'backprop' fixed" in capsys.readouterr().err


def test_a_default_spelled_out_resumes_the_study_and_a_real_change_is_refused(tmp_path, capsys):
    """`--loss mse` is what a table sweep trains with anyway: giving it (or the default
    optimizer in --config) resumes the study; `--loss bce` is another study, refused by name."""
    pd = pytest.importorskip("pandas")
    import numpy as np

    from statefulrnn.cli import main

    csv = _moving_average_csv(tmp_path, pd, np)
    (tmp_path / "space.toml").write_text(
        'epochs = 1\nhidden = 3\nlayers = 1\ncell = "gru"\nmode = "stateless"\nwindow = 3\n'
    )
    config = tmp_path / "train.toml"
    config.write_text('optimizer = "adam"\n')
    out = tmp_path / "run"
    args = [str(csv), "--id=sensor", "--time=t", "--features=x", "--targets=y"]
    args += [f"--out={out}", f"--space={tmp_path / 'space.toml'}"]
    assert main(["sweep", *args, "--trials=1"]) == 0
    assert main(["sweep", *args, "--trials=2", "--loss=mse", f"--config={config}"]) == 0
    assert len(records.read_json(out / "sweep.json")["trials"]) == 2  # resumed, not restarted
    capsys.readouterr()
    assert main(["sweep", *args, "--trials=3", "--loss=bce"]) == 1
    err = capsys.readouterr().err
    assert "sweeps something else: its target's loss is 'mse', this command's is 'bce'" in err
