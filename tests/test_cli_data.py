"""The table commands (issue 7): CSV -> train -> predict through the real CLI, scaling without
leakage, predictions in the user's units, config files, and clear errors for bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from statefulrnn.cli import main  # noqa: E402
from statefulrnn.data.files import write_table  # noqa: E402
from statefulrnn.predict import predict  # noqa: E402
from statefulrnn.tabular.bundle import load_bundle  # noqa: E402

TINY = ["--hidden", "4", "--window", "8", "--batch-size", "4", "--epochs", "2", "--seed", "1"]


def sensors(lengths=(60, 45, 80), seed=0, offset=500.0) -> pd.DataFrame:
    """Ids of different lengths, rows interleaved by time; load (in kW, ~500) follows temp."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, n in enumerate(lengths):
        t = np.arange(n)
        temp = 20 + 5 * np.sin(t / 6 + i) + rng.normal(0, 0.3, n)
        frames.append(
            pd.DataFrame(
                {"sensor": f"s{i}", "ts": t * 60, "temp": temp, "load": offset + 10 * temp}
            )
        )
    return pd.concat(frames).sort_values("ts", kind="stable").reset_index(drop=True)


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def train_args(data, out, *extra):
    return ["train", data, "--id", "sensor", "--time", "ts", "--features", "temp,load",
            "--targets", "load", "--horizon", "2", "--out", out, *TINY, *extra]  # fmt: skip


# ---------------------------------------------------------------- the real command line
@pytest.mark.slow  # > 20 s on the shared 2-core machine
def test_csv_train_predict_round_trip_through_the_real_cli(tmp_path):
    df = sensors()
    data = write_table(df, tmp_path / "sensors.csv")
    src = str(Path(__file__).parents[1] / "src")
    # one torch thread, as in-process tests (conftest): tiny models, and the other core is busy
    env = os.environ | {"PYTHONPATH": src, "OMP_NUM_THREADS": "1"}

    def run(*argv):
        r = subprocess.run(
            [sys.executable, "-m", "statefulrnn", *map(str, argv)],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r

    r = run(*train_args(data, tmp_path / "model"))
    assert "epoch 1/2" in r.stdout and "epoch 2/2" in r.stdout  # progress per epoch
    assert "stateful" in r.stdout and "windowed 8" in r.stdout and "rmse load" in r.stdout
    for name in ("history.json", "summary.json", "extra.json", "weights.safetensors"):
        assert (tmp_path / "model" / name).exists()
    assert len(json.loads((tmp_path / "model" / "history.json").read_text())) == 2

    run("predict", tmp_path / "model", data, "-o", tmp_path / "preds.csv")
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == len(df)  # one row per input row
    assert list(preds.columns) == ["sensor", "ts", "load_pred"]
    assert preds["sensor"].tolist() == df["sensor"].tolist()
    assert preds["ts"].tolist() == df["ts"].tolist()
    assert preds["load_pred"].notna().all()


# ---------------------------------------------------------------- in process
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained on a file whose tails jump by +1000: any leak shows in the scaling."""
    tmp = tmp_path_factory.mktemp("cli")
    df = sensors()
    n = df.groupby("sensor")["ts"].transform("size")
    head = df["ts"] // 60 < np.floor(0.75 * n)
    df.loc[~head, "temp"] += 1000.0
    df.loc[~head, "load"] += 1000.0
    data = write_table(df, tmp / "sensors.parquet")
    assert cli(*train_args(data, tmp / "model", "--val", "0.25")) == 0
    return df, head, data, tmp / "model"


def test_scaling_is_fitted_on_the_training_rows_only(trained):
    df, head, _, model = trained
    x = json.loads((model / "extra.json").read_text())["scaling"]["x"]
    assert x["columns"] == ["temp", "load"]
    np.testing.assert_allclose(x["mean"], df.loc[head, ["temp", "load"]].mean().to_numpy())
    np.testing.assert_allclose(x["std"], df.loc[head, ["temp", "load"]].std(ddof=0).to_numpy())


def test_predictions_are_the_model_outputs_in_the_users_units(trained, tmp_path):
    df, _, data, model = trained
    assert cli("predict", model, data, "-o", tmp_path / "p.parquet") == 0
    preds = pd.read_parquet(tmp_path / "p.parquet")
    b = load_bundle(model)
    from statefulrnn import read_sequences

    seqs = read_sequences(data, id="sensor", time="ts", features=["temp", "load"])
    raw = predict(b.model, b.scaling.apply(seqs, targets=False), raw=True)  # standardized outputs
    for rows, out in zip(seqs.rows, raw):
        expect = out[:, 0] * b.scaling.y.std[0] + b.scaling.y.mean[0]
        np.testing.assert_allclose(preds["load_pred"].to_numpy()[rows], expect, rtol=1e-5)
    assert b.scaling.y.mean[0] > 400  # the targets' own units, not standardized ones


def test_windowed_predict_and_stdout(trained, capsys):
    df, _, data, model = trained
    assert cli("predict", model, data, "--mode", "windowed", "--window", "5") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "sensor,ts,load_pred" and len(out.splitlines()) == len(df) + 1


def test_evaluate_reports_both_modes_a_baseline_and_a_plot(trained, tmp_path, capsys):
    _, _, data, model = trained
    plot, js = tmp_path / "err.png", tmp_path / "scores.json"
    rc = cli(
        "evaluate", model, data, "--tail", "0.25", "--season", "12", "--plot", plot, "--json", js
    )
    assert rc == 0
    out = capsys.readouterr().out
    for word in ("stateful", "windowed 8", "naive s=12", "rmse load", "mae load", "loss"):
        assert word in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    cols = json.loads(js.read_text())["columns"]
    assert cols["stateful"]["scored steps"] == cols["windowed 8"]["scored steps"] > 0


def test_config_file_holds_options_and_flags_override_it(tmp_path):
    data = write_table(sensors(), tmp_path / "d.csv")
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'data = "{data.as_posix()}"\nid = "sensor"\ntime = "ts"\nfeatures = ["temp", "load"]\n'
        'targets = "load"\nhorizon = 1\nhidden = 4\nwindow = 8\nepochs = 7\n'
        f'[train]\nout = "{(tmp_path / "m").as_posix()}"\nbatch-size = 3\npatience = 0\n'
    )
    assert cli("train", "--config", cfg, "--epochs", "1") == 0
    extra = json.loads((tmp_path / "m" / "extra.json").read_text())
    assert extra["train"]["epochs"] == 1 and extra["train"]["batch_size"] == 3
    assert extra["train"]["hidden"] == 4 and extra["table"]["horizon"] == 1
    assert len(json.loads((tmp_path / "m" / "history.json").read_text())) == 1


def test_config_file_unknown_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("epohcs = 3\n")
    assert cli("train", "x.csv", "--config", cfg) == 2  # a usage error
    err = capsys.readouterr().err
    assert "bad.toml: unknown option 'epohcs'" in err and "Did you mean 'epochs'" in err


def test_missing_required_option_says_where_to_give_it(tmp_path, capsys):
    assert cli("train", tmp_path / "d.csv", "--features", "a") == 2  # a usage error
    assert "missing --targets, --out" in capsys.readouterr().err


# ---------------------------------------------------------------- bad files, through the CLI
def broken(kind: str, tmp_path: Path) -> Path:
    df = sensors()
    if kind == "missing column":
        df = df.drop(columns=["temp"])
    elif kind == "non-numeric":
        df["temp"] = df["temp"].astype(object)
        df.loc[7, "temp"] = "hot"
    elif kind == "unsorted":
        df = df.iloc[::-1]
    elif kind == "duplicate":
        df = pd.concat([df, df.iloc[[-1]]])
    elif kind == "short id":
        df = pd.concat(
            [
                df,
                pd.DataFrame(
                    {"sensor": ["s9"] * 2, "ts": [0, 60], "temp": [1.0, 2.0], "load": [3.0, 4.0]}
                ),
            ]
        )
    elif kind == "missing value":
        df.loc[11, "load"] = np.nan
    return write_table(df.reset_index(drop=True), tmp_path / "bad.csv")


@pytest.mark.parametrize(
    "kind, expected",
    [
        (
            "missing column",
            r"bad\.csv: no feature column 'temp'; the columns are \['sensor', 'ts', 'load'\]",
        ),
        ("non-numeric", r"bad\.csv line 9 \(row 7\), column 'temp': 'hot' is not a number"),
        ("unsorted", r"bad\.csv line \d+ \(row \d+\): id 's\d' is not sorted by time"),
        (
            "duplicate",
            r"bad\.csv line 187 \(row 185\): id 's2' has time 4740 twice \(also at line 186 \(row 184\)\)",
        ),
        (
            "short id",
            r"bad\.csv: id 's9' has 2 rows \(line 187 \(row 185\) to line 188 \(row 186\)\), fewer than the 3 needed",
        ),
        ("missing value", r"bad\.csv line 13 \(row 11\), column 'load': the value is missing"),
    ],
)
def test_bad_files_give_one_clear_error_line(kind, expected, tmp_path, capsys):
    data = broken(kind, tmp_path)
    assert cli(*train_args(data, tmp_path / "m")) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("statefulrnn train: error: ") and "\n" not in err and "Traceback" not in err
    )
    import re

    assert re.search(expected, err), err


def test_an_id_too_short_for_the_validation_split_is_named(tmp_path, capsys):
    df = pd.concat(
        [
            sensors(),
            pd.DataFrame({"sensor": ["s9"] * 3, "ts": [0, 60, 120], "temp": 1.0, "load": 2.0}),
        ]
    )
    data = write_table(df, tmp_path / "d.csv")
    assert cli(*train_args(data, tmp_path / "m", "--val", "0.2")) == 1
    assert "d.csv: id 's9' has 3 rows, too few to hold out the last 20%" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["data.xlsx", "data.json"])
def test_a_file_that_is_not_csv_or_parquet(tmp_path, capsys, name):
    p = tmp_path / name
    p.write_text("{}")
    assert cli(*train_args(p, tmp_path / "m")) == 1
    assert f"{name}: not a CSV or Parquet file" in capsys.readouterr().err


def test_predict_names_a_missing_feature_column(trained, tmp_path, capsys):
    df, _, _, model = trained
    data = write_table(df.drop(columns=["temp"]), tmp_path / "new.csv")
    assert cli("predict", model, data, "-o", tmp_path / "p.csv") == 1
    assert "new.csv: no feature column 'temp'" in capsys.readouterr().err


def test_predict_refuses_a_model_not_trained_from_a_table(tmp_path, capsys):
    from statefulrnn import StatefulRNN

    StatefulRNN(2, 3, 1).save(tmp_path / "plain")
    data = write_table(sensors(), tmp_path / "d.csv")
    assert cli("predict", tmp_path / "plain", data) == 1
    assert "not trained from a table" in capsys.readouterr().err
