"""fit's options, defined once (TrainConfig), and the chunk sources that run an epoch.

A config and the same options as keywords train the same model bit for bit; an option that is
not a field is refused by name; the table command's config is a TrainConfig with two defaults
of its own. Each chunk source is held to the model's own passes over the same steps: carried
chunks equal one full-sequence pass, burnt-in windows equal a pass over burn-in + window.
"""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pytest
import torch
from conftest import make_rnn

import statefulrnn as sr
from statefulrnn.data.schedule import stateful_schedule, stateless_schedule
from statefulrnn.tabular.config import TableTrainConfig
from statefulrnn.train.chunks import BurnIn, StatefulChunks, StatelessChunks
from statefulrnn.train.config import TrainConfig, option_names, resolve
from statefulrnn.train.tbptt import TBPTTChunks


def data(lengths=(13, 9, 11), seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(t, 2)) for t in lengths]
    ys = [rng.normal(size=(t, 1)) for t in lengths]
    return sr.Sequences.from_arrays(xs, ys)


def trained(**kw):
    model = make_rnn(2, 3, 1, "gru", dtype=torch.float64)
    history = sr.fit(model, data(), verbose=0, **kw)
    return history.column("loss"), model.state_dict()


# --------------------------------------------------------------------------- the options
@pytest.mark.parametrize(
    "options",
    [
        {"window": 4, "batch_size": 2, "epochs": 2, "backprop": 6, "lr": 0.01},
        {"mode": "stateless", "window": 3, "batch_size": 4, "epochs": 2, "burn_in": 2, "stride": 2},
    ],
)
def test_a_config_trains_as_the_same_options_given_as_keywords(options):
    loss_kw, weights_kw = trained(**options)
    loss_cfg, weights_cfg = trained(config=sr.TrainConfig(**options))
    assert loss_cfg == loss_kw
    for k, v in weights_kw.items():
        assert torch.equal(v, weights_cfg[k]), k


def test_an_option_replaces_the_configs_field():
    base = sr.TrainConfig(window=4, batch_size=2, epochs=2, lr=0.5)
    loss_kw, _ = trained(window=4, batch_size=2, epochs=2, lr=0.01)
    loss_mixed, _ = trained(config=base, lr=0.01)
    assert loss_mixed == loss_kw
    assert base.lr == 0.5  # the caller's config is not changed


def test_an_unknown_option_is_a_type_error_naming_it_and_the_valid_ones():
    model = make_rnn(2, 3, 1)
    before = model.identity()
    with pytest.raises(TypeError) as err:
        sr.fit(model, data(), windw=4, verbose=0)
    message = str(err.value)
    assert "unknown option 'windw'" in message and "Did you mean 'window'?" in message
    for name in option_names() + ["callbacks", "checkpoint", "threads"]:
        assert name in message.split("Valid options:")[1], name
    assert model.identity() == before


def test_config_must_be_a_train_config():
    with pytest.raises(TypeError, match="config must be a statefulrnn.TrainConfig; received dict"):
        sr.fit(make_rnn(2, 3, 1), data(), None, {"window": 4})


def test_a_config_checks_itself_when_made():
    with pytest.raises(ValueError, match="window must be an integer >= 1; received 0"):
        sr.TrainConfig(window=0)
    with pytest.raises(ValueError, match="burn_in applies to mode='stateless'"):
        sr.TrainConfig(burn_in=3)
    assert sr.TrainConfig(window=np.int64(3)).window == 3  # numpy integers are integers
    assert sr.TrainConfig(metrics=["accuracy"], loss="bce").metrics == ("accuracy",)


def test_every_optimizer_the_config_names_is_one_fit_makes():
    from statefulrnn.train.config import OPTIMIZER_NAMES
    from statefulrnn.train.fit import OPTIMIZERS

    assert set(OPTIMIZERS) == set(OPTIMIZER_NAMES)
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'; choose one of"):
        sr.TrainConfig(optimizer="adagrad")  # refused when made, before any training


def test_a_checkpoint_records_a_factory_optimizer_by_name():
    def my_adam(params):
        return torch.optim.Adam(params)

    record = sr.TrainConfig(optimizer=my_adam).record()
    assert record["optimizer"] == "my_adam"
    assert json.loads(json.dumps(record))["window"] == 50  # plain data


def test_the_table_config_is_a_train_config_with_two_defaults_of_its_own():
    table = {f.name: f.default for f in fields(TableTrainConfig)}
    own = {f.name: f.default for f in fields(TrainConfig)}
    differ = {k for k in own if table[k] != own[k]}
    assert differ == {"epochs", "clip"}  # at most 20 epochs (early stopping), clip 1.0
    cfg = TableTrainConfig(data="d.csv", out="m", features=("a",), targets=("b",), window=7)
    plain = resolve(cfg, {})
    assert type(plain) is TrainConfig and plain.window == 7 and plain.clip == 1.0
    with pytest.raises(ValueError, match="unknown mode 'windowed'"):  # checked when made
        TableTrainConfig(data="d.csv", out="m", features=("a",), targets=("b",), mode="windowed")


# --------------------------------------------------------------------------- chunk sources
def test_stateful_chunks_carry_state_as_one_full_pass_does():
    seqs = data(lengths=(12,))
    model = make_rnn(2, 3, 1, "lstm", dtype=torch.float64)
    schedule = stateful_schedule(seqs, window=5, batch_size=1, dtype=torch.float64)
    source = StatefulChunks(model, schedule)
    y_hat = torch.cat([p.y_hat for p in source], dim=1)[:, :12]
    full, state = model(torch.from_numpy(seqs.xs[0])[None], None)
    torch.testing.assert_close(y_hat, full, rtol=0, atol=1e-12)
    assert source.state is not None and not source.state.h.requires_grad  # cut at the edge


def test_tbptt_chunks_with_k2_equal_to_the_window_are_stateful_chunks():
    seqs = data()
    model = make_rnn(2, 3, 1, "gru", dtype=torch.float64)
    schedule = stateful_schedule(seqs, window=4, batch_size=2, dtype=torch.float64)
    plain = [p.y_hat for p in StatefulChunks(model, schedule)]
    tbptt = [p.y_hat for p in TBPTTChunks(model, schedule, k2=4)]
    for a, b in zip(plain, tbptt, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_burnt_in_windows_equal_a_pass_over_burn_in_and_window():
    seqs = data(lengths=(10,))
    model = make_rnn(2, 3, 1, "rnn", dtype=torch.float64)
    schedule = stateless_schedule(
        seqs, window=3, batch_size=8, stride=3, shuffle=False, dtype=torch.float64
    )
    source = StatelessChunks(model, schedule, BurnIn(seqs, schedule, 4, model.device))
    y_hat = torch.cat([p.y_hat for p in source])
    x = torch.from_numpy(seqs.xs[0])
    for row, steps in enumerate(schedule.source):
        start, n = steps[0], int((steps >= 0).sum())  # the last window holds padding
        expect, _ = model(x[None, max(0, start - 4) : start + n], None)
        torch.testing.assert_close(y_hat[row, :n], expect[0, -n:], rtol=0, atol=1e-12)


def test_every_training_option_is_a_config_file_key_read_by_its_fields_type(tmp_path):
    from statefulrnn.cli.errors import OptionError
    from statefulrnn.cli.options import load_config

    (tmp_path / "c.toml").write_text(
        'mode = "stateless"\nwindow = 7\nbatch-size = 3\nepochs = 2\nloss = "bce"\n'
        'optimizer = "sgd"\nlr = 0.5\nclip = "none"\nseed = 4\nstride = "off"\ntarget = "last"\n'
        'backprop = 9\nburn-in = "all"\nshuffle = false\nval_window = 5\n'
    )
    got = load_config(tmp_path / "c.toml", "train")
    want = {"mode": "stateless", "window": 7, "batch_size": 3, "epochs": 2, "loss": "bce",
            "optimizer": "sgd", "lr": 0.5, "clip": None, "seed": 4, "stride": None,
            "target": "last", "backprop": 9, "burn_in": "all", "shuffle": False, "val_window": 5}  # fmt: skip
    assert got == want and type(got["lr"]) is float
    assert set(want) == set(option_names()) - {"metrics"}  # every option fit takes but one
    (tmp_path / "m.toml").write_text('metrics = ["accuracy"]\n')  # set by the loss, not here
    with pytest.raises(OptionError, match="unknown option 'metrics'"):
        load_config(tmp_path / "m.toml", "train")


# --------------------------------------------------------------------------- modes
def test_the_mode_names_are_listed_in_modes_py_alone():
    """No module spells its own list of modes again: a tuple or list of two or more mode names
    outside statefulrnn/modes.py fails, naming the file and line."""
    import ast
    from pathlib import Path

    from statefulrnn import modes

    names = set(modes.SWEEP_MODES) | set(modes.PREDICT_MODES)
    src = Path(modes.__file__).parent
    found = []
    for path in sorted(src.rglob("*.py")):
        if path.name == "modes.py" and path.parent == src:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 2:
                values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
                if len(values) == len(node.elts) and set(values) <= names:
                    found.append(f"{path.relative_to(src)}:{node.lineno}")
    assert found == [], f"mode names listed outside modes.py: {found}"
    assert modes.training_mode(modes.STATELESS_BURN_IN) == "stateless"
    assert [modes.training_mode(m) for m in modes.TRAIN_MODES] == list(modes.TRAIN_MODES)
