"""The pieces of a compare report that decide what a reader sees, checked without a browser."""

from __future__ import annotations

import math

import numpy as np

from statefulrnn.data.sequences import Sequences
from statefulrnn.experiments.compare import (
    QUICK_WINDOWED_CELL_STEPS,
    VERDICT_KIND,
    _example_indices,
    _windowed_series,
)
from statefulrnn.reports.html import _settings_rows, _tally
from statefulrnn.reports.plots import bin_steps
from statefulrnn.reports.sweep import _space_text
from statefulrnn.tasks import get_task


def test_first_bit_examples_show_both_bits():
    x = np.zeros((6, 4, 1))
    x[[3, 5], 0, 0] = 1.0  # series 0, 1, 2 start with 0; the first 1 is series 3
    seqs = Sequences.from_arrays(x, np.repeat(x[:, :1], 4, axis=1))
    assert _example_indices(seqs, "bce", 3) == [3, 0, 5]
    assert _example_indices(seqs, "mse", 3) == [0, 1, 2]
    only_zeros = Sequences.from_arrays(np.zeros((2, 4, 1)), np.zeros((2, 4, 1)))
    assert _example_indices(only_zeros, "bce", 3) == [0, 1]


def test_bin_steps_averages_runs_and_skips_unscored_steps():
    centres, means = bin_steps([1.0, 3.0, float("nan"), 5.0, 7.0], 3)
    assert centres == [0.5, 2.5, 4.0] and means == [2.0, 5.0, 7.0]
    centres, means = bin_steps([float("nan")] * 4 + [1.0] * 4, 2)
    assert math.isnan(means[0]) and means[1] == 1.0
    assert bin_steps([2.0, 4.0], 50) == ([0.0, 1.0], [2.0, 4.0])  # short: no binning


def test_quick_windowed_prediction_is_sized_to_its_cost():
    task = get_task("lagged-product")
    p = task.resolve(quick=True, overrides={"n_test": "20", "n_series": "10"})
    data = task.generate(p, 0)
    cfg = next(c for c in task.configs(p) if c.name == "stateful-recommended-std")
    per_series = p["T"] * cfg.predict_window
    assert _windowed_series(cfg, data, 50, quick=True) == QUICK_WINDOWED_CELL_STEPS // per_series
    assert _windowed_series(cfg, data, 2, quick=True) == 2  # the task's own limit, if smaller
    assert _windowed_series(cfg, data, 50, quick=False) == 50  # full runs: the task's limit


def test_every_verdict_has_a_colour_and_tally_counts_them():
    assert set(VERDICT_KIND.values()) == {"holds", "partly", "fails", "untested"}
    claims = [{"kind": k} for k in ("holds", "holds", "untested")]
    assert _tally(claims) == [("holds", 2, "hold"), ("untested", 1, "need the full run")]


def test_settings_are_rows_of_plain_values():
    configs = [
        {
            "settings": {
                "model": {"cell": "lstm"},
                "fit": {"mode": "stateless", "lr": 0.001},
                "predict_window": 10,
                "predict_burn_in": None,
                "seed": 0,
                "parameters": 9,
            }
        },
        {
            "settings": {
                "model": {"cell": "gru"},
                "fit": {"mode": "stateful", "backprop": 20},
                "predict_window": 5,
                "predict_burn_in": 20,
                "seed": 0,
                "parameters": 7,
            }
        },
    ]
    rows = {r["name"]: r["values"] for r in _settings_rows(configs)}
    assert rows["cell"] == ["lstm", "gru"] and rows["backprop"] == ["-", "20"]
    assert rows["lr"] == ["0.001", "-"] and rows["windowed prediction: burn-in"] == ["-", "20"]


def test_search_space_reads_as_words():
    assert _space_text({"low": 1e-4, "high": 0.01, "log": True}) == "0.0001 .. 0.01 (log)"
    assert _space_text({"choices": [8, 16]}) == "one of 8, 16"
    assert _space_text({"fixed": "lstm"}) == "fixed: lstm"
