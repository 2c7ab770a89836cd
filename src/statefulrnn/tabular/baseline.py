"""The seasonal-naive forecast: the target's value one season earlier (or whole seasons earlier).

Knows sequences read from a table, nothing of models. With horizon h and season s, the step at
row t forecasts row t+h from row t+h-L, where L = s·ceil(h/s) is the shortest whole number of
seasons that reaches back to a row already seen at t (Hyndman's ŷ_{t+h} = y_{t+h-s(k+1)}).

    # s = 3, h = 1: L = 3          s = 2, h = 3: L = 4
    # row:  0 1 2 3 4 5            row:  0 1 2 3 4 5 6
    # y:    a b c d e f            y:    a b c d e f g
    # step 2 forecasts d by a      step 1 forecasts e by a
"""

from __future__ import annotations

import math

import numpy as np

from statefulrnn.data.sequences import Sequences


def seasonal_lag(season: int, horizon: int) -> int:
    if not isinstance(season, int) or season < 1:
        raise ValueError(f"a season must be an integer >= 1 (steps); received {season!r}.")
    return season * max(1, math.ceil(horizon / season))


def seasonal_naive(
    seqs: Sequences, season: int, horizon: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(forecasts, available) per sequence: forecasts [T, O] in the targets' units (NaN where
    the history is too short) and a bool mask of the steps that have one.

    `seqs.ys[i][t]` holds the target row t + horizon, so the forecast is `ys[i][t - L]`.
    """
    lag = seasonal_lag(season, horizon)
    preds, avail = [], []
    for y in seqs.ys:
        p = np.full_like(y, np.nan)
        p[lag:] = y[:-lag] if lag < len(y) else p[lag:]
        ok = np.zeros(len(y), dtype=bool)
        ok[lag:] = True
        preds.append(p)
        avail.append(ok)
    return preds, avail
