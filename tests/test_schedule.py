"""Schedules: no step dropped, none scored twice, lanes continue their sequences.

Property tests over random lengths, batch sizes and windows (N < batch_size and N not a
multiple of it included). `schedule.source[r, j]` is the packed index of the step in slot
(r, j) or -1 for padding; every check below reads the layout through it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import expected_window_starts
from hypothesis import given
from hypothesis import strategies as st

import statefulrnn as sr
from statefulrnn.data.schedule import pack, window_starts


def make_seqs(lengths, f=2, o=1, seed=0, zero_weight_fraction=0.3):
    """Random sequences whose weights are zero at some steps (never at every step)."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(t, f)) for t in lengths]
    ys = [rng.normal(size=(t, o)) for t in lengths]
    ws = []
    for t in lengths:
        w = rng.uniform(0.5, 2.0, size=t) * (rng.random(t) >= zero_weight_fraction)
        if not (w > 0).any():
            w[rng.integers(t)] = 1.0
        ws.append(w)
    return sr.Sequences.from_arrays(xs, ys, weights=ws)


def packed_of(seqs):
    p = pack(seqs)
    seq_of = np.repeat(np.arange(len(seqs)), seqs.lengths)
    t_of = np.arange(p.offsets[-1]) - p.offsets[seq_of]
    return p, seq_of, t_of


def assert_slots_match_source(sched, seqs):
    """Inputs, targets and weights at every slot are those of its source step; padding is 0."""
    p = pack(seqs)
    src = sched.source
    real = src >= 0
    x, y, w = sched.x.numpy(), sched.y.numpy(), sched.w.numpy()
    np.testing.assert_array_equal(x[real], p.x[src[real]])
    np.testing.assert_array_equal(y[real], p.y[src[real]])
    assert (x[~real] == 0).all() and (y[~real] == 0).all()
    assert (w[~real] == 0).all(), "padding must carry weight 0"
    return p


lengths_st = st.lists(st.integers(1, 40), min_size=1, max_size=14)
layout_st = st.fixed_dictionaries(
    {
        "lengths": lengths_st,
        "window": st.integers(1, 17),
        "batch_size": st.integers(1, 9),
        "seed": st.integers(0, 2**31 - 1),
    }
)


# --------------------------------------------------------------------------- stateful
@given(layout_st)
def test_stateful_every_step_exactly_once_and_lanes_continue(case):
    seqs = make_seqs(case["lengths"], seed=case["seed"] % 1000)
    window, batch_size = case["window"], case["batch_size"]
    sched = sr.stateful_schedule(
        seqs, window=window, batch_size=batch_size, seed=case["seed"], dtype=torch.float64
    )
    p, seq_of, t_of = packed_of(seqs)
    n_steps = p.offsets[-1]

    # shape: whole chunks of batch_size lanes, window steps each
    n_chunks = len(sched)
    assert sched.x.shape == (n_chunks * batch_size, window, seqs.num_features)
    assert sched.source.shape == (n_chunks * batch_size, window)
    assert sched.bounds == list(range(0, n_chunks * batch_size + 1, batch_size))

    # every step (scored or not) of every sequence appears exactly once
    src = sched.source
    placed = np.sort(src[src >= 0])
    np.testing.assert_array_equal(placed, np.arange(n_steps))

    # weights at each slot are the source step's; every scored step is scored exactly once
    assert_slots_match_source(sched, seqs)
    w = sched.w.numpy()
    real = src >= 0
    np.testing.assert_array_equal(w[real], p.w[src[real]])
    scored = np.sort(src[w > 0])
    np.testing.assert_array_equal(scored, np.flatnonzero(p.w > 0))
    assert sched.scored_steps == seqs.scored_steps
    assert sched.total_weight == pytest.approx(sum(float(s.w.sum()) for s in seqs))

    # lane i of chunk k+1 continues lane i of chunk k unless reset[i]
    by_lane = src.reshape(n_chunks, batch_size, window).transpose(1, 0, 2)  # [B, C, W]
    reset = sched.reset.numpy().reshape(n_chunks, batch_size).T  # [B, C]
    for lane in range(batch_size):
        prev = -1  # the last real step this lane ran (its state holds it)
        for k in range(n_chunks):
            row = by_lane[lane, k]
            first = row[0]
            if reset[lane, k]:
                assert first >= 0 and t_of[first] == 0, "reset must start a sequence"
            elif first >= 0:
                assert prev >= 0 and first == prev + 1 and seq_of[first] == seq_of[prev]
            # within a chunk: real steps come first and are consecutive steps of one sequence
            n_real = int((row >= 0).sum())
            assert (row[:n_real] >= 0).all() and (row[n_real:] == -1).all()
            if n_real:
                np.testing.assert_array_equal(np.diff(row[:n_real]), 1)
                assert seq_of[row[0]] == seq_of[row[n_real - 1]]
                if n_real < window:  # a padded chunk ends its sequence
                    last = row[n_real - 1]
                    assert t_of[last] == seqs.lengths[seq_of[last]] - 1
                prev = row[n_real - 1]
            else:
                prev = -1  # an idle chunk: the next real step must come with a reset

    # every sequence starts at a chunk edge with reset=True, and only there
    starts = p.offsets[:-1]
    r_idx, c_idx = np.nonzero(np.isin(src, starts))
    assert (c_idx == 0).all()
    np.testing.assert_array_equal(np.sort(np.flatnonzero(sched.reset.numpy())), np.sort(r_idx))

    # chunk flags agree with the reset tensor
    r = sched.reset.numpy().reshape(n_chunks, batch_size)
    assert sched.any_reset == r.any(1).tolist()
    assert sched.all_reset == r.all(1).tolist()
    for k, chunk in enumerate(sched):
        assert chunk.x.shape[0] == batch_size
        assert torch.equal(chunk.reset, sched.reset[k * batch_size : (k + 1) * batch_size])


@given(layout_st)
def test_stateful_packs_into_the_lane_that_frees_first(case):
    """The epoch is no longer than greedy packing needs, and no shorter than the bound."""
    seqs = make_seqs(case["lengths"])
    window, batch_size = case["window"], case["batch_size"]
    sched = sr.stateful_schedule(
        seqs, window=window, batch_size=batch_size, seed=case["seed"], shuffle=False
    )
    chunks = -(-seqs.lengths // window)
    # lower bounds: the longest sequence, and the total work spread over all lanes
    assert len(sched) >= max(chunks.max(), -(-chunks.sum() // batch_size))
    # replay the greedy rule: sequence j (in order) starts when the earliest lane frees
    free = np.zeros(batch_size, dtype=int)
    expected_start = []
    for c in chunks:
        b = int(np.argmin(free))  # lowest lane on ties
        expected_start.append((free[b], b))
        free[b] += c
    assert len(sched) == free.max()
    p = pack(seqs)
    for (k, b), s in zip(expected_start, p.offsets[:-1]):
        r, j = np.argwhere(sched.source == s)[0]
        assert (r, j) == (k * batch_size + b, 0)


def test_stateful_layout_of_the_docstring_picture():
    # a (5 steps), b (3), c (3); 2 lanes; window 3
    seqs = sr.Sequences.from_arrays(
        [np.ones((t, 1)) for t in (5, 3, 3)], [np.ones(t) for t in (5, 3, 3)]
    )
    sched = sr.stateful_schedule(seqs, window=3, batch_size=2, shuffle=False)
    assert sched.source.tolist() == [
        [0, 1, 2],  # chunk 0, lane 0: *a1 a2 a3
        [5, 6, 7],  # chunk 0, lane 1: *b1 b2 b3
        [3, 4, -1],  # chunk 1, lane 0:  a4 a5 .
        [8, 9, 10],  # chunk 1, lane 1: *c1 c2 c3
    ]
    assert sched.reset.tolist() == [True, True, False, True]
    assert sched.any_reset == [True, True] and sched.all_reset == [True, False]


def test_stateful_fewer_sequences_than_lanes_pads_idle_lanes():
    seqs = make_seqs([4, 2])
    sched = sr.stateful_schedule(seqs, window=3, batch_size=5, seed=1)
    assert len(sched) == 2
    assert sched.scored_steps == seqs.scored_steps
    idle = (sched.source == -1).all(1)
    assert idle.sum() == 10 - 3  # 3 rows hold real steps: 2 for the long one, 1 for the short
    assert (sched.w.numpy()[idle] == 0).all()
    assert not sched.reset.numpy()[idle].any()


@given(st.integers(0, 10_000))
def test_stateful_same_seed_same_layout(seed):
    seqs = make_seqs([5, 9, 1, 13, 7, 3, 8, 2, 11, 4])
    a = sr.stateful_schedule(seqs, window=4, batch_size=3, seed=seed)
    b = sr.stateful_schedule(seqs, window=4, batch_size=3, seed=seed)
    np.testing.assert_array_equal(a.source, b.source)
    assert torch.equal(a.x, b.x) and torch.equal(a.w, b.w) and torch.equal(a.reset, b.reset)


def test_stateful_different_seeds_give_different_orders():
    seqs = make_seqs(list(range(1, 31)))
    layouts = {
        tuple(sr.stateful_schedule(seqs, window=4, batch_size=3, seed=s).source[:, 0].tolist())
        for s in range(5)
    }
    assert len(layouts) == 5
    no_shuffle = sr.stateful_schedule(seqs, window=4, batch_size=3, shuffle=False)
    assert no_shuffle.source[0, 0] == 0 and no_shuffle.source[1, 0] == 1


def test_stateful_dtype_and_to():
    seqs = make_seqs([3, 4])
    sched = sr.stateful_schedule(seqs, window=2, batch_size=2)
    assert sched.x.dtype == torch.float32 and sched.reset.dtype == torch.bool
    s64 = sched.to(dtype=torch.float64)
    assert s64.x.dtype == s64.y.dtype == s64.w.dtype == torch.float64
    assert s64.reset.dtype == torch.bool
    np.testing.assert_array_equal(s64.source, sched.source)


@given(layout_st, st.data())
def test_stateful_lanes_subschedule(case, data):
    seqs = make_seqs(case["lengths"])
    batch_size = case["batch_size"]
    sched = sr.stateful_schedule(
        seqs, window=case["window"], batch_size=batch_size, seed=case["seed"]
    )
    lanes = data.draw(st.lists(st.integers(0, batch_size - 1), min_size=1, unique=True))
    sub = sched.lanes(lanes)
    c, n = len(sched), len(lanes)
    assert len(sub) == c and sub.batch_size == n
    full = sched.source.reshape(c, batch_size, -1)
    np.testing.assert_array_equal(sub.source.reshape(c, n, -1), full[:, lanes])
    assert torch.equal(sub.reset.view(c, n), sched.reset.view(c, batch_size)[:, lanes])
    assert torch.equal(
        sub.x.view(c, n, *sched.x.shape[1:]),
        sched.x.view(c, batch_size, *sched.x.shape[1:])[:, lanes],
    )
    with pytest.raises(ValueError, match="stateful"):
        sr.stateless_schedule(seqs, window=3, batch_size=2).lanes([0])


@pytest.mark.parametrize("bad", [0, -1, 2.5, None])
def test_schedule_argument_errors(bad):
    seqs = make_seqs([3])
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        sr.stateful_schedule(seqs, window=bad, batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        sr.stateless_schedule(seqs, window=2, batch_size=bad)
    if bad is not None:
        with pytest.raises(ValueError, match="stride must be an integer >= 1"):
            sr.stateless_schedule(seqs, window=2, batch_size=2, stride=bad)


def test_stateless_bad_target():
    with pytest.raises(ValueError, match="target must be one of"):
        sr.stateless_schedule(make_seqs([3]), window=2, batch_size=2, target="first")


# --------------------------------------------------------------------------- stateless
def windows_by_row(sched, seq_of, t_of):
    """(sequence, start time, real steps) of every row; checks rows are contiguous windows."""
    out = []
    for row in sched.source:
        n_real = int((row >= 0).sum())
        assert n_real >= 1
        assert (row[:n_real] >= 0).all() and (row[n_real:] == -1).all()
        np.testing.assert_array_equal(np.diff(row[:n_real]), 1)
        assert seq_of[row[0]] == seq_of[row[n_real - 1]]
        out.append((int(seq_of[row[0]]), int(t_of[row[0]]), n_real))
    return out


@given(layout_st)
def test_stateless_stride_window_all_scores_every_step_once(case):
    seqs = make_seqs(case["lengths"], seed=case["seed"] % 1000)
    window, batch_size = case["window"], case["batch_size"]
    sched = sr.stateless_schedule(
        seqs, window=window, batch_size=batch_size, seed=case["seed"], dtype=torch.float64
    )
    p, seq_of, t_of = packed_of(seqs)
    assert_slots_match_source(sched, seqs)
    src, w = sched.source, sched.w.numpy()
    real = src >= 0
    np.testing.assert_array_equal(w[real], p.w[src[real]])
    np.testing.assert_array_equal(np.sort(src[w > 0]), np.flatnonzero(p.w > 0))
    assert sched.scored_steps == seqs.scored_steps

    # non-overlapping windows starting at multiples of window; padding only in a last window
    # (a sequence with one scored step has one window, anchored: it ends at that step)
    for s, t0, n_real in windows_by_row(sched, seq_of, t_of):
        scored = np.flatnonzero(seqs[s].w > 0)
        if len(scored) == 1:
            assert t0 + n_real == scored[0] + 1 and n_real == min(window, scored[0] + 1)
            continue
        assert t0 % window == 0
        if n_real < window:
            assert t0 + n_real == seqs.lengths[s]
    # every window starts from a zero state; batches hold batch_size windows (the last fewer)
    assert sched.reset.all() and all(sched.any_reset) and all(sched.all_reset)
    sizes = np.diff(sched.bounds)
    assert (sizes[:-1] == batch_size).all() and 1 <= sizes[-1] <= batch_size
    assert sum(c.x.shape[0] for c in sched) == sched.x.shape[0]


@given(layout_st, st.integers(1, 5))
def test_stateless_target_last_scores_only_a_windows_last_real_step(case, stride):
    seqs = make_seqs(case["lengths"], seed=case["seed"] % 1000)
    window = case["window"]
    sched = sr.stateless_schedule(
        seqs,
        window=window,
        batch_size=case["batch_size"],
        stride=stride,
        target="last",
        seed=case["seed"],
        dtype=torch.float64,
    )
    p, seq_of, t_of = packed_of(seqs)
    assert_slots_match_source(sched, seqs)
    src, w = sched.source, sched.w.numpy()
    assert ((w > 0).sum(1) == 1).all(), "one scored step per window, and no empty windows"
    n_real = (src >= 0).sum(1)
    last = src[np.arange(len(src)), n_real - 1]
    np.testing.assert_array_equal(w[np.arange(len(src)), n_real - 1], p.w[last])

    # exactly the windows the rule asks for: anchored at the last scored step, then every
    # `stride` steps before it (full windows only), kept when their last step is scored
    expected = []
    for i in range(len(seqs)):
        scored = [t for t, v in enumerate(seqs[i].w) if v > 0]
        if not scored:
            continue
        end = scored[-1]  # the last step of the last window
        if end + 1 <= window:
            expected.append((i, 0))
            continue
        while end + 1 >= window:
            if seqs[i].w[end] > 0:
                expected.append((i, end + 1 - window))
            end -= stride
    got = sorted((s, t0) for s, t0, _ in windows_by_row(sched, seq_of, t_of))
    assert got == sorted(expected)


@given(st.lists(st.integers(1, 30), min_size=1, max_size=8), st.integers(1, 10))
def test_stateless_stride_one_gives_rolling_windows(lengths, window):
    seqs = make_seqs(lengths, zero_weight_fraction=0.0)
    sched = sr.stateless_schedule(seqs, window=window, batch_size=4, stride=1, shuffle=False)
    p = pack(seqs)
    expected = []
    for i, t in enumerate(lengths):
        if t <= window:  # one padded window
            expected.append(list(range(p.offsets[i], p.offsets[i] + t)) + [-1] * (window - t))
        else:
            for s0 in range(t - window + 1):
                expected.append(list(range(p.offsets[i] + s0, p.offsets[i] + s0 + window)))
    assert sched.source.tolist() == expected


def test_short_sequence_yields_one_padded_window():
    seqs = make_seqs([3, 10], zero_weight_fraction=0.0)
    for target in ("all", "last"):
        sched = sr.stateless_schedule(seqs, window=5, batch_size=8, target=target, shuffle=False)
        assert sched.source[0].tolist() == [0, 1, 2, -1, -1]
        w = sched.w[0].numpy()
        assert (w[3:] == 0).all()
        if target == "last":
            assert (w[:2] == 0).all() and w[2] > 0
        else:
            assert (w[:3] > 0).all()


def test_stateless_leaves_out_windows_that_score_nothing():
    w = np.zeros(12)
    w[[1, 10]] = 1.0
    seqs = sr.Sequences.from_arrays([np.ones((12, 1))], [np.ones(12)], weights=[w])
    sched = sr.stateless_schedule(seqs, window=4, batch_size=2, shuffle=False)
    assert sched.source[:, 0].tolist() == [0, 8]  # window [4, 8) scores nothing
    assert sched.scored_steps == 2


@given(st.integers(0, 10_000))
def test_stateless_same_seed_same_layout(seed):
    seqs = make_seqs([5, 9, 1, 13, 7, 3, 8, 2, 11, 4])
    a = sr.stateless_schedule(seqs, window=3, batch_size=4, stride=2, seed=seed)
    b = sr.stateless_schedule(seqs, window=3, batch_size=4, stride=2, seed=seed)
    np.testing.assert_array_equal(a.source, b.source)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.w, b.w)


def test_stateless_different_seeds_give_different_orders():
    seqs = make_seqs(list(range(1, 21)))
    orders = {
        tuple(sr.stateless_schedule(seqs, window=3, batch_size=4, seed=s).source[:, 0].tolist())
        for s in range(5)
    }
    assert len(orders) == 5


@pytest.mark.parametrize(
    "length, window, stride, starts",
    [  # worked out by hand
        (3, 5, 1, [0]),  # shorter than a window: one (padded) window
        (8, 4, 4, [0, 4]),  # two whole windows, nothing left over
        (10, 4, 3, [0, 3, 6]),  # the window at 6 ends exactly at the last step
        (11, 4, 3, [0, 3, 6, 9]),  # step 10 is past the window at 6: a short one at 9
        (5, 2, 4, [0, 4]),  # stride > window: the short window at 4 holds the last step
        (5, 2, 6, [0]),  # the next start (6) lies past the end: no empty window
        (7, 3, 1, [0, 1, 2, 3, 4]),  # rolling windows
    ],
)
def test_window_starts_by_hand(length, window, stride, starts):
    assert expected_window_starts(length, window, stride) == starts  # the tests' oracle
    assert window_starts(length, window, stride).tolist() == starts  # the library


@given(st.integers(1, 60), st.integers(1, 12), st.integers(1, 15))
def test_window_starts_equal_their_definition(length, window, stride):
    assert window_starts(length, window, stride).tolist() == expected_window_starts(
        length, window, stride
    )


@given(st.integers(1, 60), st.integers(1, 12), st.integers(1, 15))
def test_window_starts_cover_the_sequence(length, window, stride):
    starts = window_starts(length, window, stride)
    assert starts[0] == 0 and (starts < length).all(), "no window may start past the end"
    assert (np.diff(starts) == stride).all()
    if stride <= window:  # then every step lies in some window
        covered = np.zeros(length, dtype=bool)
        for s0 in starts:
            covered[s0 : s0 + window] = True
        assert covered.all()
