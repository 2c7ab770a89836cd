"""StatefulRNN against itself: chunked == whole, reset == fresh start, lanes independent.

Plus the State object's operations, checkpoints (save/load round trip, corrupted files) and
the errors a bad argument or a bad input shape gives.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_rnn
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import statefulrnn as sr
from statefulrnn.data.schedule import pack
from statefulrnn.model import cells, load_extra

CELLS = list(cells.names())  # every invariant here holds for every registered cell
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
# Every cell runs every property, each with its share of the profile's examples.
PER_CELL = settings(max_examples=max(10, settings().max_examples // len(CELLS)))


def make_model(
    cell, num_layers=1, input_size=2, hidden_size=5, output_size=2, seed=0, dtype=torch.float64
):
    return make_rnn(
        input_size,
        hidden_size,
        output_size,
        cell,
        seed=seed,
        eval=True,
        num_layers=num_layers,
        dtype=dtype,
    )


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a - b).detach().abs().max()) if a.numel() else 0.0


def assert_states_close(a: sr.State, b: sr.State, tol: float) -> None:
    assert a.names == b.names
    for ta, tb in zip(a.tensors, b.tensors):
        assert max_diff(ta, tb) <= tol


# --------------------------------------------------------------------------- chunked == whole
model_st = st.fixed_dictionaries(
    {
        "num_layers": st.integers(1, 3),
        "input_size": st.integers(1, 3),
        "hidden_size": st.integers(1, 6),
        "output_size": st.integers(1, 2),
        "seed": st.integers(0, 2**16),
        "dtype": st.sampled_from([torch.float64, torch.float32]),
    }
)


@pytest.mark.parametrize("cell", CELLS)
@PER_CELL
@given(
    model_st,
    st.integers(1, 5),  # batch size
    st.integers(1, 40),  # steps
    st.integers(1, 50),  # window: 1, shorter and longer than the sequence
    st.booleans(),  # fixed window or random chunk edges
    st.data(),
)
def test_chunked_stateful_forward_equals_whole_forward(cell, m, batch, steps, window, ragged, data):
    model = make_model(cell, **m)
    gen = torch.Generator().manual_seed(m["seed"])
    x = torch.randn(batch, steps, m["input_size"], generator=gen, dtype=m["dtype"])
    with torch.no_grad():
        y_full, s_full = model(x)

        # random batch layout: the same sequences in a shuffled lane order
        perm = data.draw(st.permutations(range(batch)))
        xp = x[list(perm)]
        if ragged:
            sizes = data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=steps))
        else:
            sizes = [window]
        edges, at = [0], 0
        while at < steps:
            at = min(steps, at + sizes[(len(edges) - 1) % len(sizes)])
            edges.append(at)
        state, ys = None, []
        for s, e in zip(edges[:-1], edges[1:]):
            y, state = model(xp[:, s:e], state)
            state = state.detach()  # as the training loop does at a chunk edge
            ys.append(y)
        y_chunked = torch.cat(ys, dim=1)

    tol = TOL[m["dtype"]]
    assert max_diff(y_chunked, y_full[list(perm)]) <= tol
    assert_states_close(state, s_full.select(list(perm)), tol)


@pytest.mark.parametrize("cell", CELLS)
@PER_CELL
@given(
    st.integers(1, 3),
    st.lists(st.integers(1, 30), min_size=1, max_size=9),
    st.integers(1, 12),
    st.integers(1, 6),
    st.integers(0, 2**16),
)
def test_model_over_stateful_schedule_equals_per_sequence_forward(
    cell, num_layers, lengths, window, batch_size, seed
):
    """Carry state chunk to chunk, reset per the flags, map outputs back through `source`."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(t, 2)) for t in lengths]
    seqs = sr.Sequences.from_arrays(xs, [np.zeros((t, 1)) for t in lengths])
    model = make_model(cell, num_layers, seed=seed)
    sched = sr.stateful_schedule(
        seqs, window=window, batch_size=batch_size, seed=seed, dtype=torch.float64
    )
    out = np.full((pack(seqs).offsets[-1], model.output_size), np.nan)
    state = None
    with torch.no_grad():
        for k, chunk in enumerate(sched):
            y, state = model(chunk.x, state, chunk.reset)
            src = sched.source[sched.bounds[k] : sched.bounds[k + 1]]
            out[src[src >= 0]] = y.numpy()[src >= 0]
        assert not np.isnan(out).any()
        offsets = pack(seqs).offsets
        for i, x in enumerate(xs):
            y_seq, _ = model(torch.from_numpy(x)[None])
            assert np.abs(out[offsets[i] : offsets[i + 1]] - y_seq[0].numpy()).max() <= 1e-12


def test_any_batch_size_and_zero_state_default():
    model = make_model("lstm", 2)
    x = torch.randn(7, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        y, state = model(x)
        y0, state0 = model(x, model.zero_state(7))
        y1, _ = model(x[3:4])
    assert y.shape == (7, 4, 2) and state.h.shape == (2, 7, 5) and state.c.shape == (2, 7, 5)
    assert torch.equal(y, y0)
    assert_states_close(state, state0, 0.0)
    assert max_diff(y1[0], y[3]) <= 1e-12


# --------------------------------------------------------------------------- reset
@pytest.mark.parametrize("cell", CELLS)
@PER_CELL
@given(
    st.integers(1, 3),
    st.lists(st.booleans(), min_size=1, max_size=6),
    st.integers(0, 2**16),
)
def test_reset_zeroes_only_its_lanes_and_equals_a_fresh_start(cell, num_layers, mask, seed):
    model = make_model(cell, num_layers, seed=seed)
    batch = len(mask)
    gen = torch.Generator().manual_seed(seed)
    warm = torch.randn(batch, 6, 2, generator=gen, dtype=torch.float64)
    x = torch.randn(batch, 5, 2, generator=gen, dtype=torch.float64)
    reset = torch.tensor(mask)
    with torch.no_grad():
        _, state = model(warm)  # a non-zero state in every lane
        y, after = model(x, state, reset)
        y_keep, after_keep = model(x, state)
        for i in range(batch):
            if mask[i]:  # reset == fresh start
                y_fresh, s_fresh = model(x[i : i + 1])
            else:  # the other lanes run on as if nothing had happened
                y_fresh, s_fresh = model(x[i : i + 1], state.select([i]))
                assert max_diff(y[i], y_keep[i]) <= 1e-12
                assert_states_close(after.select([i]), after_keep.select([i]), 1e-12)
            assert max_diff(y[i : i + 1], y_fresh) <= 1e-12
            assert_states_close(after.select([i]), s_fresh, 1e-12)


def test_reset_clears_a_diverged_lane_without_leaking():
    model = make_model("lstm", 2)
    x = torch.randn(3, 4, 2, dtype=torch.float64)
    with torch.no_grad():
        _, state = model(x)
        bad = sr.State(tuple(t.clone() for t in state.tensors), state.names)
        bad.h[:, 1] = float("nan")
        bad.c[:, 1] = float("inf")
        y, _ = model(x, bad, torch.tensor([False, True, False]))
        y_fresh, _ = model(x[1:2])
        y_ref, _ = model(x, state)
    assert torch.isfinite(y).all()
    assert max_diff(y[1:2], y_fresh) <= 1e-12
    assert max_diff(y[[0, 2]], y_ref[[0, 2]]) <= 1e-12


def test_all_false_reset_changes_nothing():
    model = make_model("gru", 2)
    x = torch.randn(4, 3, 2, dtype=torch.float64)
    with torch.no_grad():
        _, state = model(x)
        y_a, s_a = model(x, state, torch.zeros(4, dtype=torch.bool))
        y_b, s_b = model(x, state)
    assert torch.equal(y_a, y_b)
    assert_states_close(s_a, s_b, 0.0)


# --------------------------------------------------------------------------- hidden states
@pytest.mark.parametrize("cell", CELLS)
def test_return_hidden_gives_each_layers_states(cell):
    model = make_model(cell, 3)
    x = torch.randn(2, 6, 2, dtype=torch.float64)
    with torch.no_grad():
        y, state, hidden = model(x, return_hidden=True)
        y2, _ = model(x)
    assert len(hidden) == 3 and all(h.shape == (2, 6, 5) for h in hidden)
    assert torch.equal(y, y2)
    for layer in range(3):  # the last step of each layer's output is that layer's final h
        assert max_diff(hidden[layer][:, -1], state.h[layer]) <= 1e-12
    assert max_diff(model.head(hidden[-1]), y) <= 1e-12


def test_gradient_flows_within_a_chunk_and_stops_at_detach():
    model = make_model("lstm", 2)
    x = torch.randn(2, 4, 2, dtype=torch.float64)
    _, state = model(x)
    assert state.h.requires_grad
    cut = state.detach()
    assert not cut.h.requires_grad and not cut.c.requires_grad
    assert torch.equal(cut.h, state.h)
    y, _ = model(x, cut)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_dropout_is_off_in_eval_mode():
    torch.manual_seed(0)
    model = sr.StatefulRNN(2, 4, 1, cell="gru", num_layers=2, dropout=0.5, dtype=torch.float64)
    x = torch.randn(3, 5, 2, dtype=torch.float64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x)[0], model(x)[0])
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x)[0], model(x)[0])


# --------------------------------------------------------------------------- State
def _state(batch=4, lstm=True):
    gen = torch.Generator().manual_seed(1)
    names = ("h", "c") if lstm else ("h",)
    return sr.State(tuple(torch.randn(2, batch, 3, generator=gen) for _ in names), names)


def test_state_named_parts_and_zeros():
    s = _state()
    assert s.batch_size == 4
    assert s.h is s.tensors[0] and s.c is s.tensors[1]
    assert _state(lstm=False).c is None
    z = sr.State.zeros([(2, 3), (1, 5)], ("h", "c"), 6, dtype=torch.float64)
    assert z.h.shape == (2, 6, 3) and z.c.shape == (1, 6, 5)
    assert z.h.dtype == torch.float64 and not z.h.any()
    m = make_model("lstm", 3, hidden_size=4)
    zs = m.zero_state(2)
    assert zs.names == ("h", "c") and zs.h.shape == (3, 2, 4) and zs.h.dtype == torch.float64
    assert make_model("gru").zero_state(1).names == ("h",)


def test_state_reset_zeroes_masked_lanes_only():
    s = _state()
    mask = torch.tensor([True, False, True, False])
    r = s.reset(mask)
    for t, t0 in zip(r.tensors, s.tensors):
        assert not t[:, mask].any()
        assert torch.equal(t[:, ~mask], t0[:, ~mask])
    assert s.h[:, 0].any(), "reset returns a new state; the old one is untouched"


def test_state_select_put_and_cat():
    s = _state()
    picked = s.select([2, 0])
    assert picked.batch_size == 2
    assert torch.equal(picked.h[:, 0], s.h[:, 2]) and torch.equal(picked.c[:, 1], s.c[:, 0])
    assert torch.equal(s.select(slice(1, 3)).h, s.h[:, 1:3])
    assert torch.equal(s.select(torch.tensor([3])).c, s.c[:, 3:4])

    other = _state(batch=2)
    other = sr.State(tuple(t + 100 for t in other.tensors), other.names)
    put = s.put([3, 1], other)
    assert torch.equal(put.h[:, 3], other.h[:, 0]) and torch.equal(put.c[:, 1], other.c[:, 1])
    assert torch.equal(put.h[:, [0, 2]], s.h[:, [0, 2]])
    assert not torch.equal(put.h, s.h) and torch.equal(s.h, _state().h)  # s unchanged

    both = sr.State.cat([s.select([0, 1]), s.select([2, 3])])
    assert both.names == s.names
    for a, b in zip(both.tensors, s.tensors):
        assert torch.equal(a, b)


def test_state_to_and_detach():
    s = _state()
    d = s.to(dtype=torch.float64)
    assert d.h.dtype == torch.float64 and d.names == s.names
    g = sr.State((s.h.clone().requires_grad_(),), ("h",))
    assert not g.detach().h.requires_grad


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("cell", CELLS)
def test_save_load_round_trip(tmp_path, cell):
    model = make_model(cell, 2, input_size=3, hidden_size=4, output_size=2, seed=5)
    path = model.save(tmp_path / "ckpt", extra={"epoch": 3})
    loaded = sr.load_model(path)
    assert type(loaded) is sr.StatefulRNN
    assert loaded.config() == model.config()
    assert loaded.dtype == torch.float64
    assert loaded.identity() == model.identity()
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert load_extra(path) == {"epoch": 3}
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(model(x)[0], loaded(x)[0])


def test_save_overwrites_and_identity_tracks_weights(tmp_path):
    model = make_model("gru", seed=1)
    model.save(tmp_path / "m")
    other = make_model("gru", seed=2)
    assert other.identity() != model.identity()
    other.save(tmp_path / "m")
    assert sr.load_model(tmp_path / "m").identity() == other.identity()
    assert load_extra(tmp_path / "m") == {}


def test_load_errors(tmp_path):
    model = make_model("lstm", 2)
    path = model.save(tmp_path / "m")

    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        sr.load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no model.json"):
        sr.load_model(tmp_path / "empty")

    meta_path = path / "model.json"
    meta = json.loads(meta_path.read_text())

    meta_path.write_text("{ not json")
    with pytest.raises(ValueError):
        sr.load_model(path)

    meta_path.write_text(json.dumps({**meta, "kind": "Transformer"}))
    with pytest.raises(ValueError, match="unknown model kind 'Transformer'"):
        sr.load_model(path)

    # model.json describes another architecture than the weights hold
    meta_path.write_text(json.dumps({**meta, "config": {**meta["config"], "hidden_size": 7}}))
    with pytest.raises(
        ValueError,
        match=r"does not hold the weights model.json describes: "
        r"'head.weight' has shape \[2, 5\], model.json implies \[2, 7\]",
    ):
        sr.load_model(path)

    # same shapes, changed values: the identity hash catches it
    meta_path.write_text(json.dumps(meta))
    weights = load_file(str(path / "weights.safetensors"))
    weights["head.bias"] = weights["head.bias"] + 1.0
    save_file(weights, str(path / "weights.safetensors"))
    with pytest.raises(ValueError, match="identity hash differs"):
        sr.load_model(path)


# --------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "transformer"}, "cell must be one of"),
        ({"input_size": 0}, "input_size must be an integer >= 1; received 0"),
        ({"hidden_size": 2.5}, "hidden_size must be an integer >= 1; received 2.5"),
        ({"output_size": -1}, "output_size must be an integer >= 1; received -1"),
        ({"num_layers": 0}, "num_layers must be an integer >= 1; received 0"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\); received 1.0"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"input_size": 2, "hidden_size": 3, "output_size": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        sr.StatefulRNN(**args)


@pytest.mark.parametrize("shape", [(4, 2), (2, 4, 3), (2, 4, 1), (1, 2, 4, 2)])
def test_bad_input_shape(shape):
    model = make_model("lstm")
    with pytest.raises(ValueError, match=r"expected x of shape \[B, T, 2\].*received"):
        model(torch.zeros(shape, dtype=torch.float64))


def test_state_with_wrong_batch_size():
    model = make_model("gru")
    _, state = model(torch.zeros(3, 2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="state holds 3 lanes but x has batch size 2"):
        model(torch.zeros(2, 2, 2, dtype=torch.float64), state)
