"""Sequences: construction, validation errors that name the culprit, and reshaping.

Every validation error is checked for the sequence index it names (and, for non-finite
values, the first bad step), since that is what a user needs to find the bad row.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import statefulrnn as sr
from statefulrnn.data import Item


def _seqs(lengths, f=2, o=1, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(t, f)) for t in lengths]
    ys = [rng.normal(size=(t, o)) for t in lengths]
    return xs, ys


# --------------------------------------------------------------------------- construction
def test_from_lists_keeps_values_and_defaults_weights_to_one():
    xs, ys = _seqs([5, 3, 7], f=2, o=3)
    seqs = sr.Sequences.from_arrays(xs, ys)
    assert len(seqs) == 3
    assert seqs.num_features == 2 and seqs.num_outputs == 3
    assert seqs.lengths.tolist() == [5, 3, 7]
    assert seqs.scored_steps == 15
    for item, x, y in zip(seqs, xs, ys):
        np.testing.assert_array_equal(item.x, x)
        np.testing.assert_array_equal(item.y, y)
        np.testing.assert_array_equal(item.w, np.ones(len(x)))
        assert item.x.dtype == np.float64


def test_from_3d_array_and_2d_univariate_array():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6, 2))
    y = rng.normal(size=(4, 6, 1))
    seqs = sr.Sequences.from_arrays(x, y)
    assert len(seqs) == 4 and seqs.lengths.tolist() == [6] * 4
    np.testing.assert_array_equal(seqs[2].x, x[2])

    # [N, T] inputs and targets: one feature, one output per step
    x2, y2 = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    seqs2 = sr.Sequences.from_arrays(x2, y2)
    assert seqs2.num_features == 1 and seqs2.num_outputs == 1
    np.testing.assert_array_equal(seqs2[1].y[:, 0], y2[1])
    assert seqs2.scored_steps == 15


def test_one_dimensional_series_become_one_column():
    seqs = sr.Sequences.from_arrays([np.arange(4.0), np.arange(2.0)], [np.ones(4), np.ones(2)])
    assert seqs.num_features == 1 and seqs.num_outputs == 1
    assert seqs[0].x.shape == (4, 1)


def test_explicit_weights_are_kept():
    xs, ys = _seqs([3, 2])
    ws = [np.array([0.0, 2.0, 1.0]), np.array([1.0, 0.0])]
    seqs = sr.Sequences.from_arrays(xs, ys, weights=ws)
    np.testing.assert_array_equal(seqs[0].w, ws[0])
    assert seqs.scored_steps == 3


def test_many_to_one_targets_become_last_step_targets():
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=(t, 1)) for t in (4, 1, 6)]
    targets = rng.normal(size=(3, 2))  # [N, O]
    seqs = sr.Sequences.from_arrays(xs, targets)
    assert seqs.num_outputs == 2
    assert seqs.scored_steps == 3
    for item, target in zip(seqs, targets):
        np.testing.assert_array_equal(item.y[-1], target)
        np.testing.assert_array_equal(item.y[:-1], 0.0)
        np.testing.assert_array_equal(item.w, np.eye(len(item))[-1])


def test_many_to_one_scalar_targets():
    xs = [np.ones((3, 1)), np.ones((2, 1))]
    seqs = sr.Sequences.from_arrays(xs, [1.5, -2.0])
    assert seqs.num_outputs == 1
    assert seqs[0].y[-1, 0] == 1.5 and seqs[1].y[-1, 0] == -2.0
    np.testing.assert_array_equal(seqs[1].w, [0.0, 1.0])


def test_many_to_one_with_weights_is_an_error():
    with pytest.raises(ValueError, match="weights cannot be given with one target per sequence"):
        sr.Sequences.from_arrays([np.ones((3, 1))] * 2, np.ones((2, 1)), weights=[np.ones(3)] * 2)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("what", ["x", "y", "weights"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_value_names_sequence_and_first_bad_step(what, bad):
    xs, ys = _seqs([4, 6, 5])
    ws = [np.ones(4), np.ones(6), np.ones(5)]
    arrays = {"x": xs, "y": ys, "weights": ws}[what]
    arrays[1][3] = bad  # the first bad step of sequence 1 ...
    arrays[1][5] = bad  # ... not the last
    with pytest.raises(
        ValueError, match=rf"sequence 1 has a non-finite {what} value.* at step 3\."
    ):
        sr.Sequences.from_arrays(xs, ys, weights=ws)


def test_non_finite_in_one_feature_column_only():
    xs, ys = _seqs([3, 4], f=3)
    xs[0][2, 1] = np.nan
    with pytest.raises(ValueError, match=r"sequence 0 has a non-finite x value .*step 2"):
        sr.Sequences.from_arrays(xs, ys)


def test_non_finite_many_to_one_target_names_its_sequence():
    xs = [np.ones((3, 1)), np.ones((5, 1))]
    with pytest.raises(ValueError, match=r"sequence 1 has a non-finite y value .*step 4"):
        sr.Sequences.from_arrays(xs, np.array([[1.0], [np.nan]]))


def test_mismatched_feature_count_names_sequence():
    xs, ys = _seqs([3, 3, 3], f=2)
    xs[2] = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"sequence 2 has 4 features, but sequence 0 has 2"):
        sr.Sequences.from_arrays(xs, ys)


def test_mismatched_output_count_names_sequence():
    xs, ys = _seqs([3, 3, 3], o=1)
    ys[1] = np.ones((3, 2))
    with pytest.raises(
        ValueError, match=r"sequence 1 has 2 targets per step, but sequence 0 has 1"
    ):
        sr.Sequences.from_arrays(xs, ys)


def test_empty_sequence_names_sequence():
    xs, ys = _seqs([3, 0, 2])
    with pytest.raises(ValueError, match=r"sequence 1 is empty \(0 steps\)"):
        sr.Sequences.from_arrays(xs, ys)


def test_no_sequences_is_an_error():
    with pytest.raises(ValueError, match="no sequences given"):
        sr.Sequences.from_arrays([], [])


def test_negative_weight_names_sequence_and_step():
    xs, ys = _seqs([3, 4])
    ws = [np.ones(3), np.array([1.0, 1.0, -0.5, 1.0])]
    with pytest.raises(ValueError, match=r"sequence 1 has a negative weight at step 2"):
        sr.Sequences.from_arrays(xs, ys, weights=ws)


def test_all_zero_weights_names_sequence():
    xs, ys = _seqs([3, 4, 2])
    ws = [np.ones(3), np.ones(4), np.zeros(2)]
    with pytest.raises(ValueError, match=r"sequence 2 has every weight zero"):
        sr.Sequences.from_arrays(xs, ys, weights=ws)


def test_target_length_mismatch_names_sequence():
    xs, ys = _seqs([3, 4])
    ys[1] = np.ones((5, 1))
    with pytest.raises(ValueError, match=r"sequence 1 has 4 input steps but 5 target steps"):
        sr.Sequences.from_arrays(xs, ys)


def test_weight_length_mismatch_names_sequence():
    xs, ys = _seqs([3, 4])
    with pytest.raises(
        ValueError, match=r"sequence 1 has 4 steps but its weights have shape \(3,\)"
    ):
        sr.Sequences.from_arrays(xs, ys, weights=[np.ones(3), np.ones(3)])


def test_count_mismatches():
    xs, ys = _seqs([3, 4, 5])
    with pytest.raises(ValueError, match="got 3 input sequences but 2 targets"):
        sr.Sequences.from_arrays(xs, ys[:2])
    with pytest.raises(ValueError, match="got 3 input sequences but 2 weight sequences"):
        sr.Sequences.from_arrays(xs, ys, weights=[np.ones(3), np.ones(4)])


def test_flat_target_list_of_wrong_length_is_not_reshaped():
    # 4 scalars for 2 sequences must not become 2 targets of width 2
    with pytest.raises(ValueError, match="got 2 input sequences but 4 targets"):
        sr.Sequences.from_arrays([np.ones((3, 1)), np.ones((2, 1))], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="got 3 input sequences but 2 targets"):
        sr.Sequences.from_arrays(np.ones((3, 4, 1)), np.ones((2, 1)))


def test_bad_shapes_and_types_name_sequence():
    with pytest.raises(ValueError, match=r"sequence 1: x must be 2-D"):
        sr.Sequences.from_arrays([np.ones((3, 1)), np.ones((3, 1, 1))], [np.ones(3)] * 2)
    with pytest.raises(TypeError, match=r"sequence 0: x must be numeric"):
        sr.Sequences.from_arrays([np.array(["a", "b"])], [np.ones(2)])
    with pytest.raises(TypeError, match="xs must be a list of arrays"):
        sr.Sequences.from_arrays("abc", [np.ones(3)])
    with pytest.raises(ValueError, match=r"xs as one array must be \[N, T, F\]"):
        sr.Sequences.from_arrays(np.ones(3), [np.ones(3)])


# --------------------------------------------------------------------------- container
def test_len_iter_index_slice_and_index_list():
    xs, ys = _seqs([2, 3, 4, 5, 6])
    seqs = sr.Sequences.from_arrays(xs, ys)
    assert len(seqs) == 5
    items = list(seqs)
    assert all(isinstance(it, Item) for it in items)
    assert [len(it) for it in items] == [2, 3, 4, 5, 6]
    np.testing.assert_array_equal(seqs[3].x, xs[3])
    np.testing.assert_array_equal(seqs[np.int64(-1)].x, xs[-1])
    part = seqs[1:4]
    assert isinstance(part, sr.Sequences) and part.lengths.tolist() == [3, 4, 5]
    picked = seqs[[4, 0]]
    assert picked.lengths.tolist() == [6, 2]
    np.testing.assert_array_equal(picked[1].y, ys[0])
    with pytest.raises(IndexError):
        seqs[5]
    with pytest.raises(ValueError, match="at least one sequence"):
        seqs[[]]
    assert "Sequences(n=5" in repr(seqs)


def test_concat():
    xs, ys = _seqs([2, 3, 4])
    seqs = sr.Sequences.from_arrays(xs, ys)
    both = seqs[:1].concat(seqs[1:])
    assert both.lengths.tolist() == [2, 3, 4]


# --------------------------------------------------------------------------- split
def test_split_fraction_in_order():
    seqs = sr.Sequences.from_arrays(*_seqs(range(1, 11)))
    first, second = seqs.split(0.7)
    assert first.lengths.tolist() == list(range(1, 8))
    assert second.lengths.tolist() == [8, 9, 10]


def test_split_fraction_shuffled_is_a_partition_and_reproducible():
    seqs = sr.Sequences.from_arrays(*_seqs(range(1, 21)))
    a1, b1 = seqs.split(0.5, seed=3)
    a2, b2 = seqs.split(0.5, seed=3)
    assert a1.lengths.tolist() == a2.lengths.tolist()
    assert len(a1) == 10 and len(b1) == 10
    assert sorted(a1.lengths.tolist() + b1.lengths.tolist()) == list(range(1, 21))
    assert a1.lengths.tolist() != list(range(1, 11))  # shuffled (fixed seed, so deterministic)


def test_split_indices():
    xs, ys = _seqs([2, 3, 4, 5])
    seqs = sr.Sequences.from_arrays(xs, ys)
    first, second = seqs.split([3, 1])
    assert first.lengths.tolist() == [5, 3]
    assert second.lengths.tolist() == [2, 4]
    np.testing.assert_array_equal(second[1].x, xs[2])


def test_split_errors():
    seqs = sr.Sequences.from_arrays(*_seqs([2, 3, 4]))
    with pytest.raises(ValueError, match=re.escape("split fraction must be in (0, 1)")):
        seqs.split(1.5)
    with pytest.raises(ValueError, match="leaves one part empty"):
        seqs.split(0.1)
    with pytest.raises(IndexError, match="split index 7 is out of range for 3 sequences"):
        seqs.split([0, 7])
    with pytest.raises(ValueError, match="at least one sequence"):
        seqs.split([0, 1, 2])


# --------------------------------------------------------------------------- cut
@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_cut_keeps_every_step(parts):
    rng = np.random.default_rng(4)
    lengths = [7, 10, 23]
    xs, ys = _seqs(lengths, f=2, o=2)
    ws = [rng.uniform(0.5, 2.0, size=t) for t in lengths]
    seqs = sr.Sequences.from_arrays(xs, ys, weights=ws)
    pieces = seqs.cut(parts)
    assert len(pieces) == parts * len(lengths)
    at = 0
    for i in range(len(lengths)):
        mine = [pieces[j] for j in range(at, at + parts)]
        at += parts
        assert max(len(p) for p in mine) - min(len(p) for p in mine) <= 1
        np.testing.assert_array_equal(np.concatenate([p.x for p in mine]), xs[i])
        np.testing.assert_array_equal(np.concatenate([p.y for p in mine]), ys[i])
        np.testing.assert_array_equal(np.concatenate([p.w for p in mine]), ws[i])
    assert pieces.scored_steps == seqs.scored_steps


def test_cut_joins_unscored_pieces_and_drops_nothing():
    # many-to-one: only the last step is scored, so every earlier piece joins a later one
    xs = [np.arange(10.0)[:, None], np.arange(6.0)[:, None]]
    seqs = sr.Sequences.from_arrays(xs, [1.0, 2.0])
    pieces = seqs.cut(3)
    assert len(pieces) == 2
    np.testing.assert_array_equal(pieces[0].x, xs[0])
    # a scored step in the middle: the unscored tail joins the last scored piece
    w = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0], dtype=float)
    seqs = sr.Sequences.from_arrays([np.arange(9.0)], [np.ones(9)], weights=[w])
    pieces = seqs.cut(3)
    assert len(pieces) == 1 and len(pieces[0]) == 9


def test_cut_errors_name_the_sequence():
    seqs = sr.Sequences.from_arrays(*_seqs([5, 2, 6]))
    with pytest.raises(ValueError, match="sequence 1 has 2 steps, fewer than the 3 parts"):
        seqs.cut(3)
    with pytest.raises(ValueError, match="parts must be >= 1"):
        seqs.cut(0)
