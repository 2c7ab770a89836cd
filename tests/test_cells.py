"""The cell registry: every place that lists cells reads it, and a cell the fast paths do not
know falls back instead of failing.

The invariant tests (chunked == whole, reset isolation, torch == numpy reference, streams ==
predict, save/load, training gradients) are parametrized over `cells.names()` in their own
files; this file checks the registry's own promises.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

import statefulrnn as sr
from statefulrnn import reference
from statefulrnn.cli import main
from statefulrnn.experiments import space
from statefulrnn.keras.convert import RECURRENT, convert
from statefulrnn.keras.reader import KerasFile, KerasImportError, KerasLayer
from statefulrnn.model import cells
from statefulrnn.streams import fused
from statefulrnn.streams.kernels import ForwardKernel


def test_the_registry_itself_imports_neither_torch_nor_numpy():
    """Listing cells (`--cell` choices, the sweep space) must not cost a torch import: the
    registry module, run on its own, leaves both out of sys.modules."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cells_alone', {cells.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['cells_alone'] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(','.join(module.names()), 'torch' in sys.modules, 'numpy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [",".join(cells.names()), "False", "False"]


def test_every_cell_has_a_numpy_reference_step_with_its_state():
    assert set(reference.STEPS) == set(cells.names())
    for name in cells.names():
        assert reference.STEPS[name][0] == len(cells.get(name).state), name


@pytest.mark.parametrize("cell", cells.names())
def test_model_layers_and_state_come_from_the_registry(cell):
    spec = cells.get(cell)
    model = sr.StatefulRNN(3, 4, 2, cell=cell, num_layers=2)
    assert all(type(layer) is spec.layer_class() for layer in model.layers)
    assert model.state_spec() == ([(2, 4)] * len(spec.state), spec.state)
    assert model.layers[0].weight_ih_l0.shape == (spec.gates * 4, 3)
    _, state = model(torch.zeros(5, 2, 3))
    assert state.names == spec.state and all(t.shape == (2, 5, 4) for t in state.tensors)


def test_fast_stream_cells_have_a_fused_step():
    assert {c for c in cells.names() if cells.get(c).fast_stream} <= set(fused.GATES)


def test_cli_and_sweep_space_offer_the_registered_cells(capsys):
    with pytest.raises(SystemExit):
        main(["train", "data.csv", "--cell", "elman"])
    offered = capsys.readouterr().err.split("choose from")[1]
    assert all(name in offered for name in cells.names())
    assert space.default_space(10)["cell"] == {"choices": cells.sweep_names()}
    for name in cells.names():
        assert space.normalize("cell", name, "test") == {"fixed": name}
    with pytest.raises(ValueError, match="cell 'elman' is not one of"):
        space.normalize("cell", "elman", "test")


def test_unknown_cell_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"cell must be one of .*'lstm'.*Did you mean 'gru'"):
        sr.StatefulRNN(1, 2, 1, cell="gur")
    with pytest.raises(ValueError, match="already registered"):
        cells.register(cells.get("lstm"))


def test_keras_mapping_comes_from_the_registry():
    with_keras = {s.keras: s.gates for s in cells.CELLS.values() if s.keras}
    assert with_keras == RECURRENT
    for name, spec in cells.keras_classes().items():
        assert cells.by_keras(name) is spec and spec.keras_class() == name
    assert cells.by_keras("Bidirectional") is None


# A registered cell the fast paths do not cover: PyTorch's GRU run as "our own" layer, with
# no packed-sequence support and no fused stream step. The model, burn-in, streams, export
# and the reference must all take their generic paths and agree.
SLOW_GRU = dataclasses.replace(
    cells.get("gru"), name="slow-gru", packed=False, fast_stream=False, keras=None, sweep=False
)


@pytest.fixture
def slow_gru(monkeypatch):
    monkeypatch.setitem(cells.CELLS, "slow-gru", SLOW_GRU)
    monkeypatch.setitem(reference.STEPS, "slow-gru", reference.STEPS["gru"])
    torch.manual_seed(0)
    return sr.StatefulRNN(2, 3, 1, cell="slow-gru", num_layers=2, dtype=torch.float64).eval()


def test_a_cell_without_fast_paths_falls_back(slow_gru, tmp_path):
    model = slow_gru
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(t, 2)) for t in (5, 9, 3)]
    seqs = sr.Sequences.from_arrays(xs, [np.zeros((len(x), 1)) for x in xs])
    stateful = sr.predict(model, seqs)
    for y, x in zip(stateful, xs):  # the numpy reference of the same equations
        trace = reference.forward(reference.weights_of(model), "slow-gru", x[None])
        assert np.abs(y - trace.y[0]).max() <= 1e-10
    # burn-in through the generic final_state (one pass per distinct length)
    windowed = sr.predict(model, seqs, mode="windowed", window=2, burn_in="all")
    assert max(np.abs(a - b).max() for a, b in zip(windowed, stateful)) <= 1e-12
    # streams: no fused step, so the pool runs model.forward
    pool = sr.StreamPool(model)
    assert isinstance(pool._kernel, ForwardKernel)
    y = pool.step([0], xs[0][None, :3])
    y = np.concatenate([y, pool.step([0], xs[0][None, 3:])], axis=1)
    assert np.abs(y[0] - stateful[0]).max() <= 1e-12
    loaded = sr.load_model(model.save(tmp_path / "m"))
    assert loaded.identity() == model.identity()


@pytest.mark.parametrize(
    "cell", ["slow-gru", *(c for c in cells.names() if cells.get(c).keras is None)]
)
def test_the_keras_importer_refuses_a_cell_keras_does_not_have(slow_gru, cell):
    with pytest.raises(ValueError, match=f"{cell!r} has no Keras counterpart"):
        cells.get(cell).keras_class()
    layers = [
        KerasLayer("InputLayer", "in", {"batch_shape": [None, None, 2]}),
        KerasLayer("LSTM", "lstm", {"units": 2, "return_sequences": True}),
        KerasLayer(cell.title(), "ours", {"units": 2}),  # e.g. a custom "Mingru" layer
    ]
    w = [
        ("kernel", np.zeros((2, 8))),
        ("recurrent_kernel", np.zeros((2, 8))),
        ("bias", np.zeros(8)),
    ]
    file = KerasFile(layers, {"lstm": w}, "3.0.0", "keras", "test.keras")
    with pytest.raises(KerasImportError, match=f"{cell!r} is a statefulrnn cell without a Keras"):
        convert(file)
