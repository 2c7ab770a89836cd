"""Beyond truncation: TBPTT(k1, k2) and burn-in gradients against independent oracles.

The oracles use plain torch autograd on the model's own forward, one sequence at a time, with
no schedule: for TBPTT the loss on a chunk's k1 steps back-propagated through exactly the k2
steps that end at the chunk's edge (never past the start of the sequence), for burn-in the
loss on a window that starts from the state of a no-grad run over the b steps before it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import expected_window_starts, make_rnn, recorded_grads, summed

import statefulrnn as sr
from statefulrnn.model import cells

GRAD_TOL = 1e-10


def make_model(cell="lstm", layers=1, seed=0):
    return make_rnn(2, 4, 2, cell, seed=seed, num_layers=layers, dtype=torch.float64)


def make_sequences(lengths, seed=0, weights="random"):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(t, 2)) for t in lengths]
    ys = [rng.normal(size=(t, 2)) for t in lengths]
    if weights == "random":
        ws = [rng.choice([0.0, 0.5, 1.0, 2.0], size=t) for t in lengths]
        for w in ws:
            w[-1] = 1.0  # every sequence scores something
    else:  # by time only: every chunk layout gives the same chunk weights
        ws = [np.where(np.arange(t) < 1, 0.0, 1.0 + (np.arange(t) % 2)) for t in lengths]
    return sr.Sequences.from_arrays(xs, ys, weights=ws)


def max_diff(xs, ys) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(xs, ys))


def piece_grad(model, x, y, w, start, a, b, state_from=0):
    """d/dθ of the weighted mse on steps a..b-1, with gradient from step `start` on; the state
    at `start` comes from a no-grad run over steps state_from..start-1 (zero if none)."""
    params = list(model.parameters())
    state = None
    if start > state_from:
        with torch.no_grad():
            _, state = model(x[None, state_from:start])
    y_hat, _ = model(x[None, start:b], state)
    err = ((y_hat[0, a - start :] - y[a:b]) ** 2).mean(-1)
    loss = (err * w[a:b]).sum()
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def tbptt_oracle(model, seqs, k1, k2, lanes=1):
    """Sum over chunks of the chunk's loss gradient (k2 steps back), over the chunk's weight.

    A sequence starts at a chunk edge, so its piece j covers its steps j·k1 .. j·k1+k1-1
    and the chunk ends k1·(j+1) steps into the sequence: k2 steps back from there is
    j·k1 + k1 - k2, cut at the sequence's start (a reset: the lane's previous sequence
    never gets gradient from this one). `lanes` > 1 assumes weights by time only and equal
    lengths, so every chunk holds `lanes` pieces with the same weight.
    """
    total = None
    for item in seqs:
        x, y, w = (torch.from_numpy(a) for a in (item.x, item.y, item.w))
        for a in range(0, len(x), k1):
            b = min(a + k1, len(x))
            norm = w[a:b].sum() * lanes
            if norm == 0:
                continue
            start = max(0, a + k1 - k2)
            g = [gi / norm for gi in piece_grad(model, x, y, w, start, a, b)]
            total = g if total is None else [t + gi for t, gi in zip(total, g)]
    return total


# --------------------------------------------------------------------------- TBPTT(k1, k2)
@pytest.mark.parametrize(
    "k1,k2",
    [(2, 2), (2, 3), (2, 5), (3, 7), (1, 4), (2, 100)],
)
@pytest.mark.parametrize("cell,layers", [(c, 1 + i % 2) for i, c in enumerate(cells.names())])
def test_tbptt_gradient_reaches_exactly_k2_steps_back(k1, k2, cell, layers):
    """One lane running four sequences back to back: every sequence after the first starts
    with a reset that lies inside the k2 history of its first chunks; lengths that are not
    multiples of k1 leave padded last chunks."""
    seqs = make_sequences([7, 4, 9, 3])
    model = make_model(cell, layers)
    grads = recorded_grads(model, seqs, mode="stateful", window=k1, backprop=k2, batch_size=1)
    oracle = tbptt_oracle(model, seqs, k1, k2)
    assert max_diff(summed(grads), oracle) <= GRAD_TOL
    scored_pieces = sum(
        sum(1 for a in range(0, len(w), k1) if w[a : a + k1].sum() > 0) for w in seqs.ws
    )
    assert len(grads) == scored_pieces


def test_tbptt_reset_inside_history_cuts_it_in_one_lane_only():
    """Two lanes, four equal sequences: lane 0 and lane 1 each run two; when the second
    sequence starts, the k2 history reaches back into the first, and the reset cuts it."""
    seqs = make_sequences([6, 6, 6, 6], weights="by_time")
    model = make_model("lstm")
    grads = recorded_grads(
        model, seqs, mode="stateful", window=2, backprop=5, batch_size=2, shuffle=False
    )
    assert max_diff(summed(grads), tbptt_oracle(model, seqs, 2, 5, lanes=2)) <= GRAD_TOL
    # in order, lane 0 runs sequences 0 then 2, lane 1 runs 1 then 3; had the reset been
    # ignored, each lane would be one sequence of 12 steps, with another gradient
    joined = sr.Sequences.from_arrays(
        [np.concatenate([seqs.xs[i], seqs.xs[i + 2]]) for i in (0, 1)],
        [np.concatenate([seqs.ys[i], seqs.ys[i + 2]]) for i in (0, 1)],
        weights=[np.concatenate([seqs.ws[i], seqs.ws[i + 2]]) for i in (0, 1)],
    )
    assert max_diff(summed(grads), tbptt_oracle(model, joined, 2, 5, lanes=2)) > 1e-6


def test_tbptt_one_lane_with_a_reset_mid_history_per_chunk():
    """The exact per-update gradients, chunk by chunk, for one lane holding sequences of 3 and
    5 steps with k1=2, k2=5: chunk 2 (the second sequence's first) must not reach chunk 1."""
    seqs = make_sequences([3, 5])
    # force the lane order: no shuffle, so sequence 0 then sequence 1
    model = make_model("lstm")
    grads = recorded_grads(
        model, seqs, mode="stateful", window=2, backprop=5, batch_size=1, shuffle=False
    )
    (x0, y0, w0), (x1, y1, w1) = (
        tuple(torch.from_numpy(a) for a in (it.x, it.y, it.w)) for it in seqs
    )
    expected = []
    for x, y, w in ((x0, y0, w0), (x1, y1, w1)):
        for a in range(0, len(x), 2):
            b = min(a + 2, len(x))
            if w[a:b].sum() > 0:
                g = piece_grad(model, x, y, w, max(0, a + 2 - 5), a, b)
                expected.append([gi / w[a:b].sum() for gi in g])
    assert len(grads) == len(expected)
    for got, want in zip(grads, expected):
        assert max_diff(got, want) <= GRAD_TOL


def test_backprop_equal_to_window_is_plain_truncation_bit_for_bit():
    seqs = make_sequences([7, 4, 9, 3])
    a, b = make_model(), make_model()
    ha = sr.fit(a, seqs, window=3, batch_size=2, epochs=2, verbose=0)
    hb = sr.fit(b, seqs, window=3, batch_size=2, epochs=2, backprop=3, verbose=0)
    assert ha.column("loss") == hb.column("loss")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_tbptt_trains_with_the_same_forward_outputs():
    """The epoch loss of TBPTT(k1, k2) is the loss of the chunks' forward outputs, which do
    not depend on k2: before any update (lr tiny) it equals plain truncation's."""
    seqs = make_sequences([8, 8, 8])
    a, b = make_model(), make_model()
    opt = dict(optimizer="sgd", lr=1e-300, window=2, batch_size=3, epochs=1, verbose=0)
    la = sr.fit(a, seqs, **opt).last["loss"]
    lb = sr.fit(b, seqs, backprop=6, **opt).last["loss"]
    assert la == pytest.approx(lb, rel=1e-12)


# --------------------------------------------------------------------------- burn-in
def burn_in_oracle(model, seqs, window, burn_in, stride=None, target="all"):
    """Sum over windows (one per chunk) of d(window loss / window weight); each window starts
    from a no-grad run over its `burn_in` steps before (all of them for "all")."""
    stride = stride or window
    total = None
    for item in seqs:
        x, y, w = (torch.from_numpy(a) for a in (item.x, item.y, item.w))
        for s in expected_window_starts(len(x), window, stride):
            e = min(s + window, len(x))
            ww = w.clone()
            if target == "last":
                ww[:] = 0
                ww[e - 1] = w[e - 1]
            norm = ww[s:e].sum()
            if norm == 0:
                continue
            b0 = 0 if burn_in == "all" else max(0, s - burn_in)
            g = [gi / norm for gi in piece_grad(model, x, y, ww, s, s, e, state_from=b0)]
            total = g if total is None else [t + gi for t, gi in zip(total, g)]
    return total


@pytest.mark.parametrize(
    "window,burn_in,stride,target",
    [
        (3, 0, None, "all"),
        (3, 2, None, "all"),
        (3, 5, None, "all"),
        (4, "all", None, "all"),
        (3, 4, 1, "last"),
        (2, "all", 3, "all"),
    ],
)
@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("rnn", 1)])
def test_burn_in_gradient_equals_no_grad_burn_in_then_window(
    window, burn_in, stride, target, cell, layers
):
    seqs = make_sequences([7, 2, 10, 5])
    model = make_model(cell, layers)
    grads = recorded_grads(
        model, seqs, mode="stateless", window=window, burn_in=burn_in, stride=stride,
        target=target, batch_size=1,
    )  # fmt: skip
    oracle = burn_in_oracle(model, seqs, window, burn_in, stride, target)
    assert max_diff(summed(grads), oracle) <= GRAD_TOL


def test_burn_in_batched_equals_one_window_per_chunk():
    """Many windows per chunk: the burn-in is one padded no-grad pass for the whole batch.
    Weighted by time only and cut into equal batches, so the chunk weights are known."""
    seqs = make_sequences([9, 9, 9, 9], weights="by_time")
    model = make_model("gru", 2)
    one = summed(recorded_grads(model, seqs, mode="stateless", window=3, burn_in=4, batch_size=1))
    # all 12 windows (starts 0, 3, 6 of each sequence) in one chunk: one weighted mean
    whole = summed(
        recorded_grads(model, seqs, mode="stateless", window=3, burn_in=4, batch_size=12)
    )
    total_weight = float(sum(w.sum() for w in seqs.ws))
    oracle_sum = None
    for item in seqs:
        x, y, w = (torch.from_numpy(a) for a in (item.x, item.y, item.w))
        for s in (0, 3, 6):
            g = piece_grad(model, x, y, w, s, s, s + 3, state_from=max(0, s - 4))
            oracle_sum = g if oracle_sum is None else [o + gi for o, gi in zip(oracle_sum, g)]
    assert max_diff(whole, [o / total_weight for o in oracle_sum]) <= GRAD_TOL
    assert max_diff(one, whole) > 1e-6  # per-window means differ from one batch mean


def test_burn_in_all_predicts_windowed_as_stateful():
    """A model trained with burn_in="all" and predicted windowed with burn_in="all" is exactly
    the stateful prediction (float32, <= 1e-5)."""
    seqs = make_sequences([30, 17, 25])
    torch.manual_seed(0)
    model = sr.StatefulRNN(2, 8, 2)
    sr.fit(model, seqs, mode="stateless", window=4, burn_in="all", epochs=2, verbose=0)
    stateful = sr.predict(model, seqs, mode="stateful")
    windowed = sr.predict(model, seqs, mode="windowed", window=4, burn_in="all")
    for a, b in zip(stateful, windowed):
        assert np.abs(a - b).max() <= 1e-5
