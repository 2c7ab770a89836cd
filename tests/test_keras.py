"""Keras interop (issue 6): real Keras files give Keras's numbers; crafted files cover the rest.

Oracles: Keras's own outputs in tests/fixtures/keras (every NAME.npz there is checked, with
every model file beside it), and `statefulrnn.keras.reference`, numpy written from Keras's
equations, for options no fixture has. Refusals are checked on small crafted files.
"""

from __future__ import annotations

import argparse
import json
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import statefulrnn as sr
from statefulrnn.cli import import_keras
from statefulrnn.keras import KerasImportError, KerasRNN, from_keras, read_keras
from statefulrnn.keras import reference as ref
from statefulrnn.keras.h5weights import snake_case
from statefulrnn.model.base import RecurrentModel

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "keras"  # written by Keras itself
FORMATS = (".keras", ".legacy.h5", ".weights.h5")
TOL = 1e-5


# ----------------------------------------------------------------------------- fixtures
def _fixture_names() -> list[str]:
    return sorted(p.name[: -len(".npz")] for p in FIXTURES.glob("*.npz"))


def _fixture_params():
    return [
        pytest.param(n, s, id=f"{n}{s}")
        for n in _fixture_names()
        for s in FORMATS
        if (FIXTURES / f"{n}{s}").is_file()
    ]


def _name_params():
    return _fixture_names()


def test_the_fixtures_are_in_the_repository():
    # they travel with the tests: a plain clone runs every Keras parity test, none skips
    assert _fixture_names() == ["gru_reset_after_true", "lstm", "simplernn", "stacked_lstm_td"]
    assert len(_fixture_params()) == 4 * len(FORMATS)


def _run_chunked(model, x: torch.Tensor, chunk: int):
    state, ys = None, []
    for t in range(0, x.shape[1], chunk):
        y, state = model(x[:, t : t + chunk], state)  # the state is carried chunk to chunk
        ys.append(y)
    return torch.cat(ys, dim=1), state


@pytest.mark.parametrize("name", _name_params())
def test_every_fixture_has_a_model_file(name):
    assert any((FIXTURES / f"{name}{s}").is_file() for s in FORMATS), name


@pytest.mark.parametrize("path_choice", ["auto", "step"])
@pytest.mark.parametrize(("name", "suffix"), _fixture_params())
def test_fixture_matches_keras(name, suffix, path_choice):
    data = np.load(FIXTURES / f"{name}.npz")
    model = from_keras(FIXTURES / f"{name}{suffix}", path_choice=path_choice)
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        y, state = model(x)
        assert np.abs(y.numpy() - data["full"]).max() <= TOL
        keras_states = sorted(
            (k for k in data.files if k.startswith("state_")), key=lambda k: int(k[6:])
        )
        ours = model.keras_states(state)
        assert len(ours) == len(keras_states)
        for t, k in zip(ours, keras_states):
            assert np.abs(t.numpy() - data[k]).max() <= TOL, k
        chunked = [k for k in data.files if re.fullmatch(r"chunked\d+", k)]
        assert chunked, "the fixture should hold a chunked output"
        for key in chunked:
            y_c, _ = _run_chunked(model, x, int(key[7:]))
            assert np.abs(y_c.numpy() - data[key]).max() <= TOL, key
    for spec in model.specs:
        if "path" in spec:
            assert spec["path"] == ("step" if path_choice == "step" else spec["path"])


@pytest.mark.parametrize(("name", "suffix"), _fixture_params())
def test_fixture_weights_are_read_in_keras_order(name, suffix):
    data = np.load(FIXTURES / f"{name}.npz")
    file = read_keras(FIXTURES / f"{name}{suffix}")
    arrays = [a for layer in file.layers for _, a in file.weights[layer.name]]
    expected = [data[f"w_{i}"] for i in range(sum(k.startswith("w_") for k in data.files))]
    assert len(arrays) == len(expected)
    for a, e in zip(arrays, expected):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("name", _name_params())
def test_reference_matches_keras_fixture(name):
    """The numpy oracle itself agrees with Keras, so it can stand in where no fixture exists."""
    data = np.load(FIXTURES / f"{name}.npz")
    model = from_keras(FIXTURES / f"{name}.keras")
    weights = _keras_weights_of(model)
    y, _ = ref.forward(model.specs, weights, data["x"])
    assert np.abs(y - data["full"]).max() <= TOL


def test_fixture_paths_and_describe():
    model = from_keras(FIXTURES / "stacked_lstm_td.keras")
    paths = model.paths()
    assert [p["path"] for p in paths[:2]] == ["fused nn.LSTM", "fused nn.LSTM"]
    assert "TimeDistributed(Dense(3" in paths[2]["layer"]
    assert model.state_spec() == ([(1, 6), (1, 6), (1, 4), (1, 4)], ("h0", "c0", "h1", "c1"))
    assert "fused nn.LSTM" in model.describe() and "fused nn.LSTM" in repr(model)


@pytest.mark.parametrize("name", _name_params())
def test_save_load_round_trip(name, tmp_path):
    model = from_keras(FIXTURES / f"{name}.keras")
    model.save(tmp_path / "ckpt")
    back = RecurrentModel.load(tmp_path / "ckpt")
    assert isinstance(back, KerasRNN)
    assert back.identity() == model.identity()
    assert back.paths() == model.paths()
    x = torch.from_numpy(np.load(FIXTURES / f"{name}.npz")["x"])
    with torch.no_grad():
        assert torch.equal(back(x)[0], model(x)[0])


def test_predict_and_reset_work_on_imported_model():
    data = np.load(FIXTURES / "lstm.npz")
    model = from_keras(FIXTURES / "lstm.keras")
    xs = list(data["x"].astype(np.float64))
    seqs = sr.Sequences.from_arrays(xs, [np.zeros((len(x), model.output_size)) for x in xs])
    y_hat = sr.predict(model, seqs, mode="stateful")
    assert max(np.abs(y - k).max() for y, k in zip(y_hat, data["full"])) <= TOL
    # reset lane 1 midway: it continues as if it started there from zero
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        _, state = model(x[:, :20])
        y, _ = model(x[:, 20:], state, reset=torch.tensor([False, True, False]))
        fresh, _ = model(x[1:2, 20:])
        carried, _ = model(x[:, 20:], state)
    assert torch.allclose(y[1], fresh[0], atol=1e-6)
    assert torch.equal(y[0], carried[0])


# ----------------------------------------------------------------------------- crafting files
def _layer_cfg(cls, name, **cfg):
    return {"class_name": cls, "name": name, "config": {"name": name, **cfg}}


def _weights_for(rng, cls, cfg, features):
    """Random Keras-layout weights (× 0.4, as the fixtures) for one layer."""
    u = cfg.get("units")
    gates = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}.get(cls)
    if gates is None:  # Dense
        ws = [rng.normal(size=(features, u))]
        if cfg.get("use_bias", True):
            ws.append(rng.normal(size=(u,)))
    else:
        ws = [rng.normal(size=(features, gates * u)), rng.normal(size=(u, gates * u))]
        if cfg.get("use_bias", True):
            two = cls == "GRU" and cfg.get("reset_after", True)
            ws.append(rng.normal(size=(2, 3 * u) if two else (gates * u,)))
    return [(0.4 * w).astype(np.float32) for w in ws]


def _random_weights(layers, features, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for lay in layers:
        cls, cfg = lay["class_name"], lay["config"]
        if cls == "TimeDistributed":
            cls, cfg = "Dense", cfg["layer"]["config"]
        if cls in ("SimpleRNN", "LSTM", "GRU", "Dense"):
            out.append(_weights_for(rng, cls, cfg, features))
            features = cfg["units"]
        else:
            out.append([])
    return out


def _inbound3(prev):
    tensor = {"class_name": "__keras_tensor__", "config": {"keras_history": [prev, 0, 0]}}
    return [{"args": [tensor], "kwargs": {"training": False, "mask": None}}]


def _model_config(layers, features, functional):
    inp = _layer_cfg("InputLayer", "x", batch_shape=[None, None, features], dtype="float32")
    if not functional:
        return {"class_name": "Sequential", "config": {"name": "seq", "layers": [inp, *layers]}}
    chain, prev = [dict(inp, inbound_nodes=[])], "x"
    for lay in layers:
        chain.append(dict(lay, inbound_nodes=_inbound3(prev)))
        prev = lay["name"]
    cfg = {
        "name": "fn",
        "layers": chain,
        "input_layers": ["x", 0, 0],
        "output_layers": [prev, 0, 0],
    }
    return {"class_name": "Functional", "config": cfg}


def _write_v3_weights(f, layers, weights):
    """Keras 3 layout: layers/<snake_case class>[_k]/{cell,layer,}/vars/<i>."""
    used = {}
    for lay, ws in zip(layers, weights):
        base = snake_case(lay["class_name"])
        used[base] = used.get(base, -1) + 1
        key = base if used[base] == 0 else f"{base}_{used[base]}"
        sub = {"TimeDistributed": "layer/", "SimpleRNN": "cell/", "LSTM": "cell/", "GRU": "cell/"}
        g = f.create_group(f"layers/{key}/{sub.get(lay['class_name'], '')}vars")
        for i, w in enumerate(ws):
            g.create_dataset(str(i), data=w)


def write_keras(
    path, layers, features=2, *, functional=False, weights=None, version="3.15.1", extra_entries=()
):
    """A .keras archive as Keras 3 writes it (config.json, metadata.json, model.weights.h5)."""
    weights = _random_weights(layers, features) if weights is None else weights
    h5_path = Path(str(path) + ".tmp.h5")
    with h5py.File(h5_path, "w") as f:
        _write_v3_weights(f, layers, weights)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": version}))
        z.writestr("config.json", json.dumps(_model_config(layers, features, functional)))
        z.write(h5_path, "model.weights.h5")
        for name, data in extra_entries:
            z.writestr(name, data)
    h5_path.unlink()
    return path, weights


def write_legacy_h5(path, layers, features=2, *, version="2.15.0", weights=None):
    """A legacy full-model .h5 as Keras 2 wrote it (weight names with ':0', bytes attrs)."""
    weights = _random_weights(layers, features) if weights is None else weights
    inp = _layer_cfg("InputLayer", "input_1", batch_input_shape=[None, None, features])
    config = {"class_name": "Sequential", "config": {"name": "seq", "layers": [inp, *layers]}}
    roles = {"Dense": ["kernel", "bias"], "TimeDistributed": ["kernel", "bias"]}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = version.encode()
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        mw = f.create_group("model_weights")
        mw.attrs["layer_names"] = np.array([lay["name"].encode() for lay in layers])
        for lay, ws in zip(layers, weights):
            g = mw.create_group(lay["name"])
            names = roles.get(lay["class_name"], ["kernel", "recurrent_kernel", "bias"])
            cell = f"{lay['name']}/{snake_case(lay['class_name'])}_cell"
            paths = [f"{cell}/{r}:0" for r in names[: len(ws)]]
            g.attrs["weight_names"] = np.array([p.encode() for p in paths])
            for p, w in zip(paths, ws):
                g.create_dataset(p, data=w)
    return path, weights


def _keras_weights_of(model: KerasRNN) -> list[dict[str, np.ndarray]]:
    """Keras-layout weights back out of a model (fused blocks mapped back), for the oracle."""
    out = []
    for spec, block in zip(model.specs, model.blocks):
        if spec["type"] == "Dense":
            w = {"kernel": block.linear.weight.detach().double().numpy().T}
            if spec["use_bias"]:
                w["bias"] = block.linear.bias.detach().double().numpy()
        elif spec.get("path") == "step":
            w = {k: v.detach().double().numpy() for k, v in block.named_parameters()}
        elif "path" in spec:
            r, n = block.rnn, {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}[spec["type"]]
            order = [1, 0, 2] if spec["type"] == "GRU" else list(range(n))

            def back(t, order=order, n=n):
                blocks = np.split(t.detach().double().numpy(), n, axis=0)
                return np.concatenate([blocks[order.index(k)] for k in range(n)], axis=0)

            w = {"kernel": back(r.weight_ih_l0).T, "recurrent_kernel": back(r.weight_hh_l0).T}
            if spec["use_bias"]:
                if spec["type"] == "GRU":
                    w["bias"] = np.stack([back(r.bias_ih_l0), back(r.bias_hh_l0)])
                else:
                    w["bias"] = back(r.bias_ih_l0) + back(r.bias_hh_l0)
        else:
            w = {}
        out.append(w)
    return out


def _as_dicts(layers, weights):
    """The crafted arrays as the oracle's per-layer dicts, straight from what was written."""
    out = []
    for lay, ws in zip(layers, weights):
        cls = lay["class_name"]
        roles = (
            ["kernel", "bias"]
            if cls in ("Dense", "TimeDistributed")
            else ["kernel", "recurrent_kernel", "bias"]
        )
        out.append(dict(zip(roles, ws)))
    return out


def _check_against_reference(model, layers, weights, features=2, t_len=23, chunk=5):
    x = np.random.default_rng(1).normal(size=(3, t_len, features)).astype(np.float32)
    y_ref, finals = ref.forward(model.specs, _as_dicts(layers, weights), x)
    with torch.no_grad():
        y, state = model(torch.from_numpy(x))
        y_c, state_c = _run_chunked(model, torch.from_numpy(x), chunk)
    y, y_c = y.double().numpy(), y_c.double().numpy()
    if y_ref.ndim == 2:  # Keras gave one output per sequence: our last step
        y, y_c = y[:, -1], y_c[:, -1]
    assert np.abs(y - y_ref).max() <= TOL
    assert np.abs(y_c - y_ref).max() <= TOL
    flat = [s for layer_state in finals for s in layer_state]
    for ours, theirs in zip(model.keras_states(state_c), flat):
        assert np.abs(ours.double().numpy() - theirs).max() <= TOL
    return y_ref


def _rnn(cls, name, units, **cfg):
    cfg.setdefault("return_sequences", True)
    return _layer_cfg(cls, name, units=units, **cfg)


def _dense(name, units, activation="linear", use_bias=True, td=False):
    d = _layer_cfg("Dense", name, units=units, activation=activation, use_bias=use_bias)
    if td:
        return _layer_cfg(
            "TimeDistributed", name, layer={"class_name": "Dense", "config": d["config"]}
        )
    return d


# ----------------------------------------------------------------------------- options
OPTIONS = [
    # (class, options, expected path)
    ("SimpleRNN", {"activation": "tanh"}, "fused"),
    ("SimpleRNN", {"activation": "relu"}, "fused"),
    ("SimpleRNN", {"activation": "relu", "use_bias": False}, "fused"),
    ("SimpleRNN", {"activation": "linear"}, "step"),
    ("SimpleRNN", {"activation": "sigmoid"}, "step"),
    ("SimpleRNN", {"activation": "hard_sigmoid", "use_bias": False}, "step"),
    ("LSTM", {"activation": "tanh", "recurrent_activation": "sigmoid"}, "fused"),
    ("LSTM", {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": False}, "fused"),
    ("LSTM", {"activation": "tanh", "recurrent_activation": "hard_sigmoid"}, "step"),
    ("LSTM", {"activation": "relu", "recurrent_activation": "sigmoid"}, "step"),
    ("LSTM", {"activation": "linear", "recurrent_activation": "linear", "use_bias": False}, "step"),
    ("GRU", {"reset_after": True}, "fused"),
    ("GRU", {"reset_after": True, "use_bias": False}, "fused"),
    ("GRU", {"reset_after": False}, "step"),
    ("GRU", {"reset_after": False, "use_bias": False}, "step"),
    ("GRU", {"reset_after": True, "recurrent_activation": "hard_sigmoid"}, "step"),
    (
        "GRU",
        {"reset_after": False, "activation": "relu", "recurrent_activation": "sigmoid"},
        "step",
    ),
    ("GRU", {"reset_after": True, "activation": "linear", "recurrent_activation": "relu"}, "step"),
]


@pytest.mark.parametrize(("cls", "opts", "path"), OPTIONS, ids=lambda v: str(v))
def test_options_match_reference(cls, opts, path, tmp_path):
    opts = {"activation": "tanh", "recurrent_activation": "sigmoid", **opts}
    if cls == "SimpleRNN":
        opts.pop("recurrent_activation")
    layers = [_rnn(cls, "rnn", 4, **opts), _dense("head", 2, activation="tanh")]
    file, weights = write_keras(tmp_path / "m.keras", layers)
    model = from_keras(file)
    assert model.specs[0]["path"] == path
    assert model.paths()[0]["path"].startswith("fused" if path == "fused" else "step-by-step")
    _check_against_reference(model, layers, weights)
    if path == "fused":  # the step path computes the same thing
        _check_against_reference(from_keras(file, path_choice="step"), layers, weights)


@pytest.mark.parametrize("functional", [False, True])
def test_mixed_stack_with_last_step_output(functional, tmp_path):
    """GRU(reset_after=False) -> LSTM -> SimpleRNN(return_sequences=False) -> Dense -> Dense:
    Keras's one output per sequence is our last step."""
    layers = [
        _rnn("GRU", "g", 3, activation="tanh", recurrent_activation="sigmoid", reset_after=False),
        _layer_cfg("Dropout", "drop", rate=0.5),
        _rnn("LSTM", "l", 5, activation="tanh", recurrent_activation="hard_sigmoid"),
        _rnn("SimpleRNN", "s", 4, activation="relu", return_sequences=False),
        _dense("d1", 3, activation="relu", use_bias=False),
        _layer_cfg("Activation", "act", activation="tanh"),
        _dense("d2", 2, activation="sigmoid"),
    ]
    file, weights = write_keras(tmp_path / "m.keras", layers, features=3, functional=functional)
    model = from_keras(file)
    assert [s.get("path") for s in model.specs] == ["step", None, "step", "fused", None, None, None]
    assert model.state_spec()[1] == ("h0", "h1", "c1", "h2")
    assert "y[:, -1]" in model.paths()[3]["path"]
    y_ref = _check_against_reference(model, layers, weights, features=3)
    assert y_ref.shape == (3, 2)


def test_same_size_stack_uses_statefulrnn_layout(tmp_path):
    layers = [_rnn("LSTM", "a", 4), _rnn("LSTM", "b", 4), _dense("head", 1, td=True)]
    file, weights = write_keras(tmp_path / "m.keras", layers)
    model = from_keras(file)
    assert model.state_spec() == ([(2, 4), (2, 4)], ("h", "c"))
    _check_against_reference(model, layers, weights)


@pytest.mark.parametrize(("version", "variant"), [("2.15.0", "keras2"), ("3.4.1", "keras3")])
def test_hard_sigmoid_follows_the_keras_version(version, variant, tmp_path):
    layers = [
        _rnn("GRU", "g", 4, recurrent_activation="hard_sigmoid", reset_after=False),
        _dense("head", 2),
    ]
    if variant == "keras2":
        file, weights = write_legacy_h5(tmp_path / "m.h5", layers, version=version)
    else:
        file, weights = write_keras(tmp_path / "m.keras", layers, version=version)
    model = from_keras(file)
    assert model.specs[0]["recurrent_activation"] == f"hard_sigmoid_{variant}"
    y_ref = _check_against_reference(model, layers, weights)
    # the other definition gives visibly other numbers, so the check above has teeth
    other = dict(
        model.specs[0],
        recurrent_activation="hard_sigmoid_keras3"
        if variant == "keras2"
        else "hard_sigmoid_keras2",
    )
    x = np.random.default_rng(1).normal(size=(3, 23, 2))
    y_other, _ = ref.forward([other, model.specs[1]], _as_dicts(layers, weights), x)
    assert np.abs(y_other - y_ref).max() > 1e-3


def test_legacy_keras2_h5_and_weights_only_with_config(tmp_path):
    layers = [_rnn("LSTM", "lstm", 3), _rnn("GRU", "gru", 2), _dense("out", 1)]
    file, weights = write_legacy_h5(tmp_path / "m.h5", layers)
    model = from_keras(file)
    _check_against_reference(model, layers, weights)
    # the same weights with the architecture given separately, as model.to_json() writes it
    with h5py.File(file) as f:
        config = json.loads(f.attrs["model_config"])
    wfile = tmp_path / "w.weights.h5"
    with h5py.File(file) as src, h5py.File(wfile, "w") as dst:
        for k in src["model_weights"]:
            src.copy(src["model_weights"][k], dst, name=k)
        dst.attrs["layer_names"] = src["model_weights"].attrs["layer_names"]
    (tmp_path / "w.json").write_text(json.dumps(config))
    both = from_keras(wfile, keras_version="2.15.0")  # finds w.json beside it
    x = torch.randn(2, 9, 2)
    with torch.no_grad():
        assert torch.equal(both(x)[0], model(x)[0])
    assert from_keras(wfile, config=config).identity() == both.identity()


def test_step_model_round_trip(tmp_path):
    layers = [
        _rnn("GRU", "g", 3, reset_after=False, use_bias=False),
        _dense("h", 2, use_bias=False),
    ]
    file, _ = write_keras(tmp_path / "m.keras", layers)
    model = from_keras(file)
    back = sr.load_model(model.save(tmp_path / "ckpt"))
    x = torch.randn(2, 7, 2)
    with torch.no_grad():
        assert torch.equal(back(x)[0], model(x)[0])
    assert back.paths() == model.paths()


# ----------------------------------------------------------------------------- refusals
def _refused(path, *patterns, **kw):
    with pytest.raises(KerasImportError) as info:
        from_keras(path, **kw)
    for p in patterns:
        assert re.search(p, str(info.value)), (p, str(info.value))


def test_refuses_lambda(tmp_path):
    layers = [_rnn("LSTM", "l", 3), _layer_cfg("Lambda", "my_lambda", function="gASV...")]
    _refused(write_keras(tmp_path / "m.keras", layers)[0], "my_lambda", "Lambda", "never runs code")


@pytest.mark.parametrize(
    ("layer", "patterns"),
    [
        (_layer_cfg("Bidirectional", "bi", layer={}), ["'bi'", "Bidirectional"]),
        (_layer_cfg("Conv1D", "conv", filters=2), ["'conv'", "Conv1D", "not supported"]),
        (_rnn("LSTM", "back", 3, go_backwards=True), ["'back'", "go_backwards"]),
        (_rnn("GRU", "st", 3, return_state=True), ["'st'", "return_state"]),
        (_rnn("LSTM", "act", 3, activation="selu"), ["'act'", "activation='selu'"]),
        (
            _layer_cfg("TimeDistributed", "tdc", layer={"class_name": "Conv1D", "config": {}}),
            ["'tdc'", r"TimeDistributed\(Conv1D\)"],
        ),
    ],
)
def test_refuses_unsupported_layers_and_options(layer, patterns, tmp_path):
    layers = [_rnn("SimpleRNN", "first", 3), layer]
    weights = [_random_weights(layers[:1], 2)[0], []]
    _refused(write_keras(tmp_path / "m.keras", layers, weights=weights)[0], *patterns)


def test_refuses_return_sequences_false_before_recurrent(tmp_path):
    layers = [_rnn("LSTM", "early", 3, return_sequences=False), _rnn("LSTM", "late", 2)]
    _refused(write_keras(tmp_path / "m.keras", layers)[0], "'early'", "return_sequences=False")


@pytest.mark.parametrize("entry", ["../evil.txt", "/etc/evil.txt", "assets/../../evil.txt"])
def test_refuses_zip_entries_outside_the_archive(entry, tmp_path):
    layers = [_rnn("LSTM", "l", 3)]
    path, _ = write_keras(tmp_path / "m.keras", layers, extra_entries=[(entry, "x")])
    _refused(path, re.escape(repr(entry)), "outside the archive")


def test_refuses_unexpected_weight_shapes(tmp_path):
    layers = [_rnn("LSTM", "lstm_a", 3), _dense("head", 2)]
    weights = _random_weights(layers, 2)
    weights[0][1] = weights[0][1][:, :8]  # recurrent kernel cut short
    _refused(
        write_keras(tmp_path / "m.keras", layers, weights=weights)[0],
        "'lstm_a'",
        "recurrent_kernel",
        r"\(3, 8\)",
        r"expected \(3, 12\)",
    )
    weights = _random_weights(layers, 2)
    weights[1][0] = weights[1][0].T  # Dense kernel transposed
    _refused(
        write_legacy_h5(tmp_path / "m.h5", layers, weights=weights)[0],
        "'head'",
        "kernel",
        r"expected \(3, 2\)",
    )
    weights = _random_weights(layers, 2)
    weights[0] = weights[0][:2]  # bias missing
    _refused(
        write_keras(tmp_path / "n.keras", layers, weights=weights)[0],
        "'lstm_a'",
        "expected 3 weight arrays",
    )


def test_refuses_models_that_are_not_one_chain(tmp_path):
    layers = [_rnn("LSTM", "a", 3), _rnn("LSTM", "b", 3)]
    path, _ = write_keras(tmp_path / "m.keras", layers, functional=True)
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
        h5 = z.read("model.weights.h5")
    b = config["config"]["layers"][2]
    b["inbound_nodes"][0]["args"].append(b["inbound_nodes"][0]["args"][0])  # b(x, a)
    with zipfile.ZipFile(tmp_path / "branch.keras", "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", h5)
    _refused(tmp_path / "branch.keras", "'b'", "single-chain")
    config["class_name"] = "MyModel"
    with zipfile.ZipFile(tmp_path / "sub.keras", "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", h5)
    _refused(tmp_path / "sub.keras", "'MyModel'", "not supported")


def test_refuses_links_out_of_the_file_and_lone_weights(tmp_path):
    layers = [_rnn("SimpleRNN", "s", 3)]
    weights = _random_weights(layers, 2)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("k", data=weights[0][0])
    with h5py.File(tmp_path / "m.weights.h5", "w") as f:
        _write_v3_weights(f, layers, weights)
        del f["layers/simple_rnn/cell/vars/0"]
        f["layers/simple_rnn/cell/vars/0"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "k")
    _refused(tmp_path / "m.weights.h5", "weights only", "config=")
    config = _model_config(layers, 2, functional=False)
    _refused(tmp_path / "m.weights.h5", "ExternalLink", config=config)


# ----------------------------------------------------------------------------- CLI
def _cli(argv):
    parser = argparse.ArgumentParser(prog="statefulrnn")
    import_keras.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_import_keras(tmp_path, capsys):
    layers = [_rnn("LSTM", "enc", 4, recurrent_activation="hard_sigmoid"), _dense("out", 1)]
    file, _ = write_keras(tmp_path / "m.keras", layers)
    assert _cli(["import-keras", str(file), str(tmp_path / "ckpt")]) == 0
    out = capsys.readouterr().out
    assert "enc" in out and "step-by-step" in out and "hard_sigmoid" in out and "wrote" in out
    back = sr.load_model(tmp_path / "ckpt")
    x = torch.randn(1, 6, 2)
    with torch.no_grad():
        assert torch.equal(back(x)[0], from_keras(file)(x)[0])
    bad = write_keras(tmp_path / "bad.keras", [_rnn("LSTM", "l", 2, go_backwards=True)])[0]
    assert _cli(["import-keras", str(bad), str(tmp_path / "ckpt2")]) == 1
    assert "go_backwards" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        _cli(["import-keras", "--help"])
    assert info.value.code == 0
    assert "fused PyTorch kernel" in capsys.readouterr().out
