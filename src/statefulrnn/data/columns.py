"""The columns of a table: names, numbers, times, order within an id, gaps in time.

Knows pandas columns and numpy arrays; `frames.py` builds sequences from what these return.
pandas is imported on use (the `data` extra). Every error names the source and the row
(for CSV also its line) or the column.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def pandas():
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("reading tables needs pandas and pyarrow: pip install pandas pyarrow") from None
    return pd


@dataclass(frozen=True)
class TableSpec:
    """How table rows become sequences; saved with a model so new tables read the same way."""

    features: tuple[str, ...]  # input columns, in order
    targets: tuple[str, ...]  # target columns; () for inputs only (prediction)
    id: str | None = None  # rows with equal id form one sequence; None: one sequence
    time: str | None = None  # orders rows within an id; None: the table's order
    weight: str | None = None  # per-row weight of the target (0 = not scored)
    horizon: int = 0  # the target of a step is the target columns `horizon` rows later


@dataclass
class TableReport:
    """What reading found: counts, the time step, gaps; `lines()` says it in words."""

    source: str
    rows: int  # rows in the table
    sequences: int
    steps: int  # rows kept as steps
    dropped: int = 0  # rows dropped for missing values (drop=True)
    dropped_by_column: dict[str, int] = field(default_factory=dict)
    filled: int = 0  # values filled forward (fill="forward")
    step: Any = None  # the most common time difference within an id
    gaps: int = 0  # differences larger than `step`
    examples: list[str] = field(default_factory=list)  # the first few gaps, in words

    def lines(self) -> list[str]:
        seqs = f"{self.sequences} sequence{'s' if self.sequences != 1 else ''}"
        out = [f"{self.source}: {self.rows} rows -> {seqs}, {self.steps} steps"]
        if self.dropped:
            cols = ", ".join(f"{c}: {n}" for c, n in self.dropped_by_column.items())
            out.append(f"  dropped {self.dropped} rows with missing values ({cols})")
        if self.filled:
            out.append(f"  filled {self.filled} missing values forward")
        if self.gaps:
            out.append(
                f"  {self.gaps} gaps in time (step {self.step}); rows are taken as consecutive:"
            )
            out += [f"    {e}" for e in self.examples]
        return out


class Where:
    """Names a row of the source: `data.csv line 7 (row 5)`; rows count from 0 after the header."""

    def __init__(self, source: str, line_offset: int | None):
        self.source, self.line_offset = source, line_offset

    def __call__(self, row: int) -> str:
        return f"{self.source} {self.short(row)}"

    def short(self, row: int) -> str:
        """The row without the source: `line 7 (row 5)`, or `row 5`."""
        if self.line_offset is None:
            return f"row {row}"
        return f"line {row + self.line_offset} (row {row})"


def check_columns(df, spec: TableSpec, source: str) -> None:
    have = [str(c) for c in df.columns]
    wanted = [("id", spec.id), ("time", spec.time), ("weight", spec.weight)]
    wanted += [("feature", c) for c in spec.features] + [("target", c) for c in spec.targets]
    for role, col in wanted:
        if col is not None and col not in df.columns:
            close = difflib.get_close_matches(str(col), have, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{source}: no {role} column {col!r}; the columns are {have}.{hint}")
    if not spec.features:
        raise ValueError(f"{source}: name at least one feature column (features=[...]).")
    if spec.horizon == 0:
        both = [c for c in spec.targets if c in spec.features]
        if both:
            raise ValueError(
                f"{source}: {both[0]!r} is both a feature and a target with horizon 0, so the "
                "model would see the answer. Predict ahead with horizon >= 1."
            )


def numeric(pd, df, col: str, where: Where) -> np.ndarray:
    s = df[col]
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        a = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        num = pd.to_numeric(s, errors="coerce")
        bad = (num.isna() & s.notna()).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(
                f"{where(i)}, column {col!r}: {s.iloc[i]!r} is not a number. "
                "Feature, target and weight columns must be numeric."
            )
        a = num.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(a).any():
        i = int(np.argmax(np.isinf(a)))
        raise ValueError(f"{where(i)}, column {col!r}: {a[i]} is not a finite number.")
    return a


def _numeric_keys(s, col: str, where: Where) -> np.ndarray:
    """Integer times stay int64, exactly (nanosecond stamps above 2**53 would collide as
    float64); other numbers are float64 and must be finite."""
    if s.dtype.kind in "iu":
        if s.dtype.kind == "u" and len(s) and int(s.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{where.source}: time column {col!r} holds integers beyond int64.")
        return s.to_numpy(dtype=np.int64)
    a = s.to_numpy(dtype=np.float64)
    if not np.isfinite(a).all():
        i = int(np.argmax(~np.isfinite(a)))
        raise ValueError(f"{where(i)}, column {col!r}: time {a[i]} is not a finite number.")
    return a


def time_keys(pd, s, col: str, where: Where) -> np.ndarray:
    """Numbers that order the time column: the values themselves, or datetimes in ns."""
    if s.isna().any():
        i = int(np.argmax(s.isna().to_numpy()))
        raise ValueError(f"{where(i)}, column {col!r}: the time is missing; every row needs one.")
    if pd.api.types.is_bool_dtype(s):
        raise ValueError(f"{where.source}: time column {col!r} holds booleans, not times.")
    if pd.api.types.is_numeric_dtype(s):
        return _numeric_keys(s, col, where)
    if not pd.api.types.is_datetime64_any_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().all():
            return _numeric_keys(num, col, where)
        dt = pd.to_datetime(s, errors="coerce", format="ISO8601", utc=True)
        if dt.isna().any():
            dt = pd.to_datetime(s, errors="coerce", format="mixed", utc=True)
        if dt.isna().any():
            i = int(np.argmax(dt.isna().to_numpy()))
            raise ValueError(
                f"{where(i)}, column {col!r}: {s.iloc[i]!r} is neither a number nor a date/time."
            )
        s = dt
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def check_order(k, same, order, g, id_values, df, time, where: Where) -> None:
    """Times must strictly increase within an id: name the first offending row in file order."""
    d = np.diff(k)
    bad = same & (d <= 0)
    if not bad.any():
        return
    at = np.flatnonzero(bad)
    p = at[np.argmin(np.maximum(order[at], order[at + 1]))]
    r0, r1 = int(order[p]), int(order[p + 1])
    a, b = sorted((r0, r1))
    who = "the table" if id_values == [None] else f"id {id_values[g[p]]!r}"
    tv = df[time]
    if d[p] == 0:
        raise ValueError(
            f"{where(b)}: {who} has time {tv.iloc[b]} twice (also at "
            f"{where.short(a)}). Each id needs one row per time; remove or aggregate the duplicates."
        )
    raise ValueError(
        f"{where(r1)}: {who} is not sorted by time: time {tv.iloc[r1]} comes after "
        f"{tv.iloc[r0]} ({where.short(r0)}). Sort the rows by id and time, or pass "
        "sort=True (--sort)."
    )


def report_gaps(pd, report: TableReport, tkeys, rows, id_values, times, where) -> None:
    diffs = [np.diff(t) for t in tkeys if len(t) > 1]
    if not diffs:
        return
    d_all = np.concatenate(diffs)
    vals, counts = np.unique(d_all, return_counts=True)
    step = vals[np.argmax(counts)]
    report.step = show_step(pd, step, times)
    report.gaps = int((d_all > step).sum())
    for i, t in enumerate(tkeys):
        for p in np.flatnonzero(np.diff(t) > step)[: 5 - len(report.examples)]:
            r0, r1 = int(rows[i][p]), int(rows[i][p + 1])
            who = "" if id_values[i] is None else f"id {id_values[i]!r}: "
            missing = int(round((t[p + 1] - t[p]) / step)) - 1
            report.examples.append(
                f"{who}{times.iloc[r0]} -> {times.iloc[r1]} (~{missing} steps missing, "
                f"{where.short(r1)})"
            )
        if len(report.examples) >= 5:
            break


def show_step(pd, step, times):
    if pd.api.types.is_numeric_dtype(times):
        return float(step)
    return str(pd.Timedelta(int(step), "ns"))
