"""Reproducible training: same seed, same bits; interrupted-and-resumed == uninterrupted;
checkpoint folders that a crash mid-save never leaves unloadable."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_rnn

import statefulrnn as sr
from statefulrnn import records
from statefulrnn.train import checkpoint as ckpt_module


def make_model(layers=2, dropout=0.3, cell="lstm", seed=0):
    return make_rnn(2, 6, 1, cell, seed=seed, num_layers=layers, dropout=dropout)


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 30, size=12)
    xs = [rng.normal(size=(t, 2)) for t in lengths]
    ys = [np.cumsum(x[:, :1], 0) * 0.1 for x in xs]
    return sr.Sequences.from_arrays(xs, ys)


SETTINGS = {
    "stateful": dict(mode="stateful", window=4, batch_size=3),
    "stateful_k2": dict(mode="stateful", window=3, backprop=7, batch_size=3, clip=0.5),
    "stateless_burn_in": dict(mode="stateless", window=4, burn_in=3, stride=2, batch_size=5),
}


def strip_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def train(settings, epochs, seed=0, model=None, **kwargs):
    model = model or make_model()
    h = sr.fit(
        model, make_data(), make_data(seed=1), epochs=epochs, seed=seed, optimizer="rmsprop",
        lr=1e-2, verbose=0, **settings, **kwargs,
    )  # fmt: skip
    return model, h


# --------------------------------------------------------------------------- same seed
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_same_seed_same_history_and_weights_bit_for_bit(name):
    m1, h1 = train(SETTINGS[name], 3)
    m2, h2 = train(SETTINGS[name], 3)
    assert strip_seconds(h1) == strip_seconds(h2)
    assert_same_weights(m1, m2)
    # and the seed matters (shuffling, dropout): another seed, another run
    m3, h3 = train(SETTINGS[name], 3, seed=1)
    assert strip_seconds(h3) != strip_seconds(h1)


def test_seed_is_set_by_fit_not_by_the_caller():
    """Dropout draws come from fit's seed: the global RNG before the call does not matter."""
    m1 = make_model()
    torch.manual_seed(123)
    _, h1 = train(SETTINGS["stateful"], 2, model=m1)
    m2 = make_model()
    torch.manual_seed(456)
    _, h2 = train(SETTINGS["stateful"], 2, model=m2)
    assert strip_seconds(h1) == strip_seconds(h2)
    assert_same_weights(m1, m2)


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, name):
    settings = SETTINGS[name]
    full_model, full = train(settings, 4)

    folder = tmp_path / "ckpt"
    train(settings, 2, checkpoint=folder)
    # a new process would build a new model (other initial weights) and call fit again
    resumed_model = make_model(seed=99)
    _, resumed = train(settings, 4, model=resumed_model, checkpoint=folder, resume=True)

    assert strip_seconds(resumed) == strip_seconds(full)
    assert_same_weights(resumed_model, full_model)
    # the last checkpoint is the final model, loadable on its own
    assert_same_weights(sr.load_model(folder), full_model)


def test_resume_after_a_crash_inside_an_epoch(tmp_path):
    """The run dies in epoch 2 (not between epochs): resuming redoes epoch 2 from the
    checkpoint of epoch 1 and still ends bit for bit where an uninterrupted run ends."""
    settings = SETTINGS["stateful"]
    full_model, full = train(settings, 4)

    class Boom(sr.Callback):
        def on_epoch_end(self, epoch, record, model):
            if epoch == 2:
                raise KeyboardInterrupt
            return False

    folder = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        train(settings, 4, checkpoint=folder, callbacks=[Boom()])
    model = make_model(seed=5)
    _, resumed = train(settings, 4, model=model, checkpoint=folder, resume=True)
    assert strip_seconds(resumed) == strip_seconds(full)
    assert_same_weights(model, full_model)


def test_resume_with_nothing_saved_starts_fresh_and_finished_runs_stay_finished(tmp_path):
    settings = SETTINGS["stateful"]
    full_model, full = train(settings, 2)
    folder = tmp_path / "new"
    model, h = train(settings, 2, checkpoint=folder, resume=True)
    assert strip_seconds(h) == strip_seconds(full)
    assert_same_weights(model, full_model)
    # resuming a finished run trains no more and hands back its history
    again = make_model(seed=7)
    _, h2 = train(settings, 2, model=again, checkpoint=folder, resume=True)
    assert strip_seconds(h2) == strip_seconds(full)
    assert_same_weights(again, full_model)


def test_resume_refuses_other_settings_or_architecture(tmp_path):
    folder = tmp_path / "ckpt"
    train(SETTINGS["stateful"], 1, checkpoint=folder)
    with pytest.raises(ValueError, match=r"trained with window=4, this call has window=5"):
        train({**SETTINGS["stateful"], "window": 5}, 2, checkpoint=folder, resume=True)
    with pytest.raises(ValueError, match=r"resume with the same architecture"):
        train(SETTINGS["stateful"], 2, model=make_model(layers=1), checkpoint=folder, resume=True)


def test_checkpoint_holds_data_not_pickles(tmp_path):
    folder = tmp_path / "ckpt"
    train(SETTINGS["stateful"], 1, checkpoint=folder)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        ".statefulrnn", "extra.json", "history.json", "model.json", "optimizer.json",
        "optimizer.safetensors", "trainer.json", "weights.safetensors",
    ]  # fmt: skip
    trainer = records.read_json(folder / "trainer.json")
    assert trainer["epoch"] == 0 and trainer["config"]["window"] == 4
    assert sr.History.load(folder / "history.json")[0]["epoch"] == 1  # numbered from 1


# --------------------------------------------------------------------------- atomic saves
def saved_epoch(folder) -> int:
    return records.read_json(records.resolve_dir(folder) / "trainer.json")["epoch"]


def test_a_save_that_crashes_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    settings = SETTINGS["stateful"]
    folder = tmp_path / "ckpt"
    model, _ = train(settings, 1, checkpoint=folder)
    good = {k: v.clone() for k, v in model.state_dict().items()}

    def half_written(tensors, path, *args, **kwargs):
        Path(path).write_bytes(b"\x00garbage")  # a partial file, then the process dies
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module, "save_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        train(settings, 2, model=model, checkpoint=folder, resume=True)
    monkeypatch.undo()

    assert saved_epoch(folder) == 0
    loaded = sr.load_model(folder)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, good[k]), k
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # no litter left
    # and resuming from it still gives the uninterrupted result
    full_model, full = train(settings, 2)
    m = make_model(seed=3)
    _, h = train(settings, 2, model=m, checkpoint=folder, resume=True)
    assert strip_seconds(h) == strip_seconds(full)
    assert_same_weights(m, full_model)


def crash_on_swap(monkeypatch, times=1):
    """Make the rename of a finished temporary checkpoint folder into place fail `times`."""
    real = os.replace
    left = [times]

    def replace(src, dst):
        if left[0] > 0 and Path(src).name.endswith(".tmp") and Path(src).is_dir():
            left[0] -= 1
            raise OSError("killed mid-swap")
        return real(src, dst)

    monkeypatch.setattr(records.os, "replace", replace)


def test_crashes_during_the_folder_swap_leave_a_loadable_checkpoint(tmp_path, monkeypatch):
    settings = SETTINGS["stateful"]
    folder = tmp_path / "ckpt"
    model, _ = train(settings, 1, checkpoint=folder)
    good = {k: v.clone() for k, v in model.state_dict().items()}

    # crash after the old folder was moved aside, before the new one is in place
    crash_on_swap(monkeypatch)
    with pytest.raises(OSError, match="killed mid-swap"):
        train(settings, 2, model=model, checkpoint=folder, resume=True)
    assert saved_epoch(folder) == 0
    assert_same_weights(sr.load_model(folder), _with(good))

    # and again, from that half-swapped state: the one complete checkpoint must survive
    monkeypatch.undo()
    crash_on_swap(monkeypatch)
    with pytest.raises(OSError, match="killed mid-swap"):
        train(settings, 2, model=make_model(seed=4), checkpoint=folder, resume=True)
    assert saved_epoch(folder) == 0
    assert_same_weights(sr.load_model(folder), _with(good))

    # a save that completes cleans up: one folder, the new one
    monkeypatch.undo()
    full_model, full = train(settings, 2)
    m = make_model(seed=4)
    _, h = train(settings, 2, model=m, checkpoint=folder, resume=True)
    assert strip_seconds(h) == strip_seconds(full)
    assert_same_weights(m, full_model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def _with(state_dict):
    model = make_model()
    model.load_state_dict(state_dict)
    return model


def test_model_save_is_atomic_too(tmp_path, monkeypatch):
    model = make_model()
    model.save(tmp_path / "m")
    other = make_model(seed=1)

    def boom(*args, **kwargs):
        raise OSError("killed while writing weights")

    monkeypatch.setattr("statefulrnn.model.base.save_file", boom)
    with pytest.raises(OSError):
        other.save(tmp_path / "m")
    monkeypatch.undo()
    assert sr.load_model(tmp_path / "m").identity() == model.identity()
