"""One model, every entry point, the user's units (issue 14).

A model trained from a CSV with `statefulrnn train` (scaled inputs; an mse model with scaled
targets, and a bce classifier) answers the same rows through `statefulrnn predict`,
`statefulrnn stream`, a `StreamPool` made from its bundle, and onnxruntime on the bundle's
ONNX export: all equal within 1e-5, in the user's units (probabilities for bce). The oracle
for the units is computed here by hand from extra.json's numbers and the raw network.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import statefulrnn as sr
from statefulrnn.bundle import ModelBundle, load_bundle
from statefulrnn.data.scaling import Scaling

pd = pytest.importorskip("pandas")

from statefulrnn.cli import main  # noqa: E402
from statefulrnn.data.files import read_sequences, write_table  # noqa: E402

TOL = 1e-5
TINY = ["--hidden", "6", "--window", "8", "--batch-size", "4", "--epochs", "3", "--seed", "2"]


def plant(lengths=(40, 29, 33), seed=0) -> pd.DataFrame:
    """Three machines, rows interleaved by time; `power` (~ 3 kW) follows temp; `hot` is 0/1."""
    rng = np.random.default_rng(seed)
    frames = []
    for i, n in enumerate(lengths):
        t = np.arange(n)
        temp = 20 + 5 * np.sin(t / 5 + i) + rng.normal(0, 0.5, n)
        frames.append(
            pd.DataFrame(
                {
                    "machine": f"m{i}",
                    "ts": t,
                    "temp": temp,
                    "power": 3.0 + 0.2 * temp + rng.normal(0, 0.1, n),
                    "hot": (temp > 20).astype(float),
                }
            )
        )
    return pd.concat(frames).sort_values("ts", kind="stable").reset_index(drop=True)


def cli(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(table, csv path, {"mse": model dir, "bce": model dir})"""
    tmp = tmp_path_factory.mktemp("bundle")
    df = plant()
    data = write_table(df, tmp / "plant.csv")
    common = ["--id", "machine", "--time", "ts", "--features", "temp,power", "--horizon", "1"]
    dirs = {}
    for loss, target in (("mse", "power"), ("bce", "hot")):
        out = tmp / f"model_{loss}"
        code = cli("train", data, *common, "--targets", target, "--loss", loss, "--out", out, *TINY)
        assert code == 0
        dirs[loss] = out
    return df, data, dirs


def _by_predict(data, model_dir, tmp_path) -> np.ndarray:
    out = tmp_path / f"{model_dir.name}_preds.csv"
    assert cli("predict", model_dir, data, "-o", out) == 0
    return pd.read_csv(out).filter(like="_pred").to_numpy()[:, 0]


def _by_stream(df, model_dir, tmp_path, capsys) -> np.ndarray:
    lines = tmp_path / f"{model_dir.name}_steps.jsonl"
    lines.write_text(
        "".join(
            json.dumps({"id": r.machine, "x": [r.temp, r.power]}) + "\n" for r in df.itertuples()
        )
    )
    capsys.readouterr()
    assert cli("stream", model_dir, "--input", lines) == 0
    answers = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert [a["line"] for a in answers] == list(range(1, len(df) + 1))
    return np.array([a["y"][0] for a in answers])


def _by_pool(df, model_dir) -> np.ndarray:
    pool = load_bundle(model_dir).stream_pool()
    out = np.full(len(df), np.nan)
    for machine, rows in df.groupby("machine").groups.items():
        x = df.loc[rows, ["temp", "power"]].to_numpy()[None]  # one stream, all its steps at once
        out[rows] = pool.step([machine], x)[0, :, 0]
    return out


def _by_onnx(df, model_dir, tmp_path) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    bundle = load_bundle(model_dir)
    path = bundle.export_onnx(tmp_path / f"{model_dir.name}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shapes, names = bundle.model.state_spec()
    out = np.full(len(df), np.nan)
    for _, rows in df.groupby("machine").groups.items():
        state = {n: np.zeros((layers, 1, h), np.float32) for (layers, h), n in zip(shapes, names)}
        for r in rows:
            x = df.loc[[r], ["temp", "power"]].to_numpy(np.float32)
            y, *new = session.run(None, {"x": x, **state})
            state = dict(zip(names, new))
            out[r] = y[0, 0]
    return out


def _by_hand(df, data, model_dir) -> np.ndarray:
    """The oracle for the units: extra.json's numbers and the bare network's outputs."""
    extra = json.loads((model_dir / "extra.json").read_text())
    scaling, loss = extra["bundle"]["scaling"], extra["bundle"]["loss"]
    mean, std = np.array(scaling["x"]["mean"]), np.array(scaling["x"]["std"])
    seqs = read_sequences(data, id="machine", time="ts", features=["temp", "power"])
    scaled = sr.Sequences([(x - mean) / std for x in seqs.xs], list(seqs.ys), list(seqs.ws))
    model = sr.load_model(model_dir)
    raw = sr.predict(model, scaled, mode="stateful", raw=True)
    out = np.full(len(df), np.nan)
    for rows, r in zip(seqs.rows, raw):
        if loss == "bce":
            out[rows] = 1 / (1 + np.exp(-r[:, 0]))
        else:
            out[rows] = r[:, 0] * scaling["y"]["std"][0] + scaling["y"]["mean"][0]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_every_entry_point_gives_the_same_rows_in_the_users_units(trained, loss, tmp_path, capsys):
    df, data, dirs = trained
    model_dir = dirs[loss]
    expect = _by_hand(df, data, model_dir)
    got = {
        "predict": _by_predict(data, model_dir, tmp_path),
        "stream": _by_stream(df, model_dir, tmp_path, capsys),
        "StreamPool": _by_pool(df, model_dir),
        "onnxruntime": _by_onnx(df, model_dir, tmp_path),
        "sr.predict": np.full(len(df), np.nan),
    }
    seqs = read_sequences(data, id="machine", time="ts", features=["temp", "power"])
    for rows, p in zip(seqs.rows, sr.predict(sr.load_model(model_dir), seqs)):
        got["sr.predict"][rows] = p[:, 0]
    for door, values in got.items():
        assert np.isfinite(values).all(), door
        assert np.max(np.abs(values - expect)) <= TOL, door
    if loss == "bce":
        assert ((expect > 0) & (expect < 1)).all()  # probabilities, not logits
    else:  # user units (~3 + 0.2 * temp), not standardized outputs (~0)
        assert abs(expect.mean() - df["power"].mean()) < 3 * df["power"].std()
        assert abs(expect.mean()) > 2.0


# ---------------------------------------------------------------- the bundle from sr.fit
def _series(n=6, t=30, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(50.0, 10.0, (t, 2)) for _ in range(n)]
    ys = [x[:, :1] * 3.0 + 1000.0 for x in xs]
    cls = [np.floor(np.clip((x[:, :1] - 30) / 15, 0, 2)) for x in xs]  # class indices 0, 1, 2
    return xs, ys, cls


def test_fit_standardize_records_a_bundle_that_saves_and_loads(tmp_path):
    xs, ys, _ = _series()
    train = sr.Sequences.from_arrays(xs, ys)
    torch.manual_seed(0)
    model = sr.StatefulRNN(2, 5, 1)
    sr.fit(model, train, window=10, batch_size=3, epochs=2, verbose=0, standardize=True)
    bundle = ModelBundle.of(model)
    assert bundle.loss == "mse" and bundle.mode == "stateful" and bundle.window == 10
    scaling = Scaling.fit(train)  # the oracle: fitted on the same training steps
    np.testing.assert_allclose(bundle.scaling.x.mean, scaling.x.mean)
    np.testing.assert_allclose(bundle.scaling.y.std, scaling.y.std)
    # sr.predict answers in user units: raw outputs by hand, then unscaled
    scaled = scaling.apply(train, targets=False)
    raw = sr.predict(model, scaled, raw=True)
    user = sr.predict(model, train)
    for r, u in zip(raw, user):
        np.testing.assert_allclose(u, r * scaling.y.std + scaling.y.mean, rtol=1e-6)
    # saved and loaded, the folder answers the same, through every door
    model.save(tmp_path / "m")
    again = sr.load_bundle(tmp_path / "m")
    for a, b in zip(again.predict(train), user):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    pool = sr.StreamPool(again)
    y = pool.step(list(range(len(xs))), np.stack(xs))
    np.testing.assert_allclose(y, np.stack(user), rtol=1e-5)


def test_class_indices_are_never_scaled():
    xs, _, cls = _series()
    train = sr.Sequences.from_arrays(xs, cls)
    torch.manual_seed(0)
    model = sr.StatefulRNN(2, 5, 3)
    sr.fit(model, train, window=10, batch_size=3, epochs=1, loss="ce", verbose=0, standardize=True)
    bundle = ModelBundle.of(model)
    assert bundle.scaling.y is None and bundle.link == "softmax"
    probs = sr.predict(model, train)
    for p in probs:
        assert p.shape[1] == 3
        np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="never scaled"):
        ModelBundle(model, Scaling.fit(train), loss="ce")


def test_a_bare_model_folder_is_the_identity_bundle(tmp_path):
    model = sr.StatefulRNN(2, 4, 1)
    model.save(tmp_path / "bare")
    bundle = sr.load_bundle(tmp_path / "bare")
    assert bundle.scaling is None and bundle.link == "identity"
    x = np.ones((1, 3, 2), np.float32)
    np.testing.assert_array_equal(bundle.to_model(x), x)
