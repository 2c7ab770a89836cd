"""Stateless many-to-one training scores the window windowed prediction feeds (issue 14).

With one target per sequence, at its last step L-1, `predict(mode="windowed", window=W)`
answers from a fresh pass over steps max(0, L-W) .. L-1. Whatever the lengths, window,
stride and target rule, the stateless schedule must score exactly that window for that target
and nothing else. The expectation is written here from that sentence alone (no helper of the
implementation), and checked twice: on the schedule's steps, and numerically, by running a
model over the scheduled rows and comparing with windowed prediction.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import statefulrnn as sr


def many_to_one(lengths, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(n, 2)) for n in lengths]
    ys = [float(rng.normal()) for _ in lengths]  # one target per sequence: at its last step
    return sr.Sequences.from_arrays(xs, ys)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    window=st.integers(1, 15),
    stride=st.one_of(st.none(), st.integers(1, 20)),
    target=st.sampled_from(["all", "last"]),
    seed=st.integers(0, 1000),
)
def test_stateless_many_to_one_scores_the_window_windowed_prediction_feeds(
    lengths, window, stride, target, seed
):
    seqs = many_to_one(lengths, seed)
    sched = sr.stateless_schedule(
        seqs,
        window=window,
        batch_size=3,
        stride=stride,
        target=target,
        seed=seed,
        dtype=torch.float64,
    )
    # packed step -> (sequence, time), written out here
    where = [(i, t) for i, n in enumerate(lengths) for t in range(n)]

    # expectation: one scored row per sequence, holding steps max(0, L-W) .. L-1, scoring L-1
    expected = {i: (list(range(max(0, n - window), n)), n - 1) for i, n in enumerate(lengths)}
    got = {}
    w = sched.w.numpy()
    for r, row in enumerate(sched.source):
        if not (w[r] > 0).any():
            continue
        steps = [where[s] for s in row if s >= 0]
        seq = steps[0][0]
        assert all(i == seq for i, _ in steps)
        assert seq not in got, f"sequence {seq} scored by two windows"
        scored = [where[s] for s, v in zip(row, w[r]) if v > 0]
        assert len(scored) == 1
        got[seq] = ([t for _, t in steps], scored[0][1])
    assert got == expected

    # ...and the number training scores is the number windowed prediction gives
    torch.manual_seed(seed)
    model = sr.StatefulRNN(2, 3, 1, dtype=torch.float64)
    with torch.no_grad():
        y_train, _ = model(sched.x)  # every row from a zero state, as stateless training runs
    windowed = sr.predict(model, seqs, mode="windowed", window=window)
    for r in range(len(sched.source)):
        for k in np.flatnonzero(w[r] > 0):
            i, t = where[sched.source[r, k]]
            assert abs(float(y_train[r, k, 0]) - float(windowed[i][t, 0])) <= 1e-12


def test_the_issue_example_seventeen_steps_window_ten():
    """17 steps, target at step 16, window 10, default stride: steps 7..16, not 10..16."""
    seqs = many_to_one([17])
    sched = sr.stateless_schedule(seqs, window=10, batch_size=4, shuffle=False)
    assert sched.source.tolist() == [list(range(7, 17))]
