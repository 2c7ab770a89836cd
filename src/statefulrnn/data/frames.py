"""Tables to sequences: rows grouped by id, ordered by time, targets shifted `horizon` rows ahead.

Knows pandas frames and numpy arrays, not models or files (`files.py` reads those). pandas is
imported on use (the `data` extra). Every step keeps the position of the table row it came
from, so outputs join back to the table (`TableSequences.frame`). Every error names the source
and the row or column; gaps in time are reported, never filled in by guessing.

    # ids a (rows 0, 2, 4) and b (rows 1, 3); horizon 1: y at a step = target one row later
    #          step 0  step 1  step 2
    # a   x:   x0      x2      x4
    #     y:   y2      y4      -        - : no row 1 step ahead, so weight 0 (kept, not dropped)
    # b   x:   x1      x3
    #     y:   y3      -
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from statefulrnn.data.sequences import Sequences

FILLS = (None, "forward")


def _pandas():
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError("reading tables needs pandas: pip install 'statefulrnn[data]'") from None
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
        out = [f"{self.source}: {self.rows} rows -> {self.sequences} sequences, {self.steps} steps"]
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


class _Where:
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


class TableSequences(Sequences):
    """Sequences read from a table; every step remembers its table row.

    `rows[i]` holds the table positions (0-based) of sequence i's steps, `ids[i]` its id;
    `frame(outputs, names)` joins per-step outputs back to one row per table row.
    """

    def __init__(self, xs, ys, ws, *, spec, rows, ids, keys, report, index):
        super().__init__(xs, ys, ws)
        self.spec: TableSpec = spec
        self.rows: list[np.ndarray] = rows
        self.ids: list[Any] = ids
        self.keys: list[np.ndarray] = keys  # numeric time keys per step (row order if no time)
        self.report: TableReport = report
        self.index = index  # the table's id and time columns, as read, one row per table row

    def with_weights(self, ws: list[np.ndarray]) -> TableSequences:
        return self._like(self.xs, self.ys, ws)

    def _like(self, xs, ys, ws, rows=None, keys=None) -> TableSequences:
        return TableSequences(
            xs,
            ys,
            ws,
            spec=self.spec,
            rows=self.rows if rows is None else rows,
            ids=self.ids,
            keys=self.keys if keys is None else keys,
            report=self.report,
            index=self.index,
        )

    def tail_split(self, fraction: float) -> tuple[TableSequences, TableSequences]:
        """(train, val) by time: the last `fraction` of every id's target rows is validation.

        Not random ids: with one long series there is nothing else to split, and the model is
        judged on the future it has not seen. Train keeps the head rows and scores only targets
        inside them (with horizon h, its last h steps get weight 0: their targets lie in the
        tail). Val is the whole sequence, so a stateful pass warms up on the head, but it scores
        only targets in the tail.

            # 10 rows, fraction 0.2, horizon 1: targets of steps 0..8 are rows 1..9
            # train: steps 0..7 (rows 0..7), scored 0..6  -> target rows 1..7
            # val:   steps 0..9,             scored 7..8  -> target rows 8..9
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"the validation fraction must be in (0, 1); received {fraction}.")
        h = self.spec.horizon if self.spec.targets else 0
        tr, va = ([], [], [], [], []), ([], [], [], [], [])
        for i, (x, y, w) in enumerate(zip(self.xs, self.ys, self.ws)):
            t_len = x.shape[0]
            n_train = int(np.floor((1.0 - fraction) * t_len))
            if n_train - h < 1 or t_len - n_train < 1:
                need = _rows_for_split(fraction, h)
                raise ValueError(
                    f"{self.report.source}: id {self.ids[i]!r} has {t_len} rows, too few to hold "
                    f"out the last {fraction:.0%} for validation with horizon {h}; it needs "
                    f"{need}. Lower --val, or leave such ids out."
                )
            cut = n_train - h  # first step whose target row lies in the tail
            w_tr = w[:n_train].copy()
            w_tr[cut:] = 0.0
            y_tr = y[:n_train].copy()
            y_tr[cut:] = 0.0  # the tail's values never enter the training arrays
            w_va = w.copy()
            w_va[:cut] = 0.0
            for part, vals in (
                (tr, (x[:n_train], y_tr, w_tr, self.rows[i][:n_train], self.keys[i][:n_train])),
                (va, (x, y, w_va, self.rows[i], self.keys[i])),
            ):
                for lst, v in zip(part, vals):
                    lst.append(v)
        _check_scored(tr[2], self, "training")
        _check_scored(va[2], self, "validation")
        return (
            self._like(tr[0], tr[1], tr[2], rows=tr[3], keys=tr[4]),
            self._like(va[0], va[1], va[2], rows=va[3], keys=va[4]),
        )

    def frame(self, outputs: list[np.ndarray], names: list[str]):
        """A DataFrame with one row per table row, in the table's order: its id and time
        columns as read, then `names` from `outputs` ([T_i, len(names)] per sequence);
        NaN for rows that were dropped."""
        n = self.report.rows
        values = np.full((n, len(names)), np.nan)
        for rows, out in zip(self.rows, outputs):
            values[rows] = np.asarray(out).reshape(len(rows), len(names))
        df = self.index.reset_index(drop=True).copy()
        for j, name in enumerate(names):
            df[name] = values[:, j]
        return df


def _rows_for_split(fraction: float, h: int) -> int:
    """The fewest rows an id needs for `tail_split`: a scored step on both sides."""
    t = h + 2
    while not (
        int(np.floor((1.0 - fraction) * t)) - h >= 1
        and t - int(np.floor((1.0 - fraction) * t)) >= 1
    ):
        t += 1
    return t


def _check_scored(ws: list[np.ndarray], seqs: TableSequences, what: str) -> None:
    for i, w in enumerate(ws):
        if not (w > 0).any():
            raise ValueError(
                f"{seqs.report.source}: id {seqs.ids[i]!r} has no scored {what} step "
                f"(every weight in its {what} part is 0)."
            )


def _columns(names) -> tuple[str, ...]:
    if names is None:
        return ()
    if isinstance(names, str):
        return (names,)
    return tuple(names)


def _check_columns(df, spec: TableSpec, source: str) -> None:
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


def _numeric(pd, df, col: str, where: _Where) -> np.ndarray:
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


def _time_keys(pd, s, col: str, where: _Where) -> np.ndarray:
    """Numbers that order the time column: the values themselves, or datetimes in ns."""
    if s.isna().any():
        i = int(np.argmax(s.isna().to_numpy()))
        raise ValueError(f"{where(i)}, column {col!r}: the time is missing; every row needs one.")
    if pd.api.types.is_bool_dtype(s):
        raise ValueError(f"{where.source}: time column {col!r} holds booleans, not times.")
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=np.float64)
    if not pd.api.types.is_datetime64_any_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().all():
            return num.to_numpy(dtype=np.float64)
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


def from_frame(
    df,
    *,
    id: str | None = None,
    time: str | None = None,
    features=(),
    targets=(),
    weight: str | None = None,
    horizon: int = 0,
    fill: str | None = None,
    drop: bool = False,
    sort: bool = False,
    min_length: int = 1,
    source: str = "DataFrame",
    line_offset: int | None = None,
) -> TableSequences:
    """Sequences from a pandas DataFrame: one per `id` (one in all if None), ordered by `time`.

    `features` and `targets` name numeric columns; `targets=()` reads inputs only (for
    prediction). With `horizon=h` the target of a step is the target columns `h` rows later in
    the same id; the last h steps of each id have none and get weight 0. A `weight` column
    weights the target's row. Times must increase within an id (`sort=True` sorts them);
    duplicated times are an error. Missing values are an error unless `fill="forward"` (carry
    the id's last value) or `drop=True` (drop the row; `report` counts them). `source` and
    `line_offset` (2 for a CSV with a header) name rows in messages.
    """
    pd = _pandas()
    if fill not in FILLS:
        raise ValueError(f"fill must be None or 'forward'; received {fill!r}.")
    if not isinstance(horizon, (int, np.integer)) or isinstance(horizon, bool) or horizon < 0:
        raise ValueError(f"horizon must be an integer >= 0; received {horizon!r}.")
    spec = TableSpec(
        features=_columns(features),
        targets=_columns(targets),
        id=id,
        time=time,
        weight=weight,
        horizon=int(horizon),
    )
    _check_columns(df, spec, source)
    where = _Where(source, line_offset)
    n_rows = len(df)
    if n_rows == 0:
        raise ValueError(f"{source}: the table has no rows.")

    # -- numbers: x, raw targets, weights; each column checked once, in file order
    used = list(spec.features) + list(spec.targets) + ([weight] if weight else [])
    cols = list(dict.fromkeys(used))
    vals = np.stack([_numeric(pd, df, c, where) for c in cols], axis=1)  # [rows, C]

    # -- grouping and order
    if id is not None:
        ids_col = df[id]
        if ids_col.isna().any():
            i = int(np.argmax(ids_col.isna().to_numpy()))
            raise ValueError(f"{where(i)}, column {id!r}: the id is missing; every row needs one.")
        codes, uniques = pd.factorize(ids_col, sort=False)
        id_values = list(uniques)
    else:
        codes, id_values = np.zeros(n_rows, dtype=np.int64), [None]
    keys = _time_keys(pd, df[time], time, where) if time is not None else np.arange(n_rows) * 1.0
    order = np.lexsort((keys, codes)) if sort else np.argsort(codes, kind="stable")
    g = codes[order]
    k = keys[order]
    same = g[1:] == g[:-1]
    _check_order(k, same, order, g, id_values, df, time, where)

    # -- missing values: fill forward within an id, then drop or refuse what is left
    v = vals[order]
    missing = np.isnan(v)
    filled = 0
    if fill == "forward" and missing.any():
        starts = np.r_[0, np.flatnonzero(~same) + 1]
        group_start = np.repeat(starts, np.diff(np.r_[starts, len(g)]))
        pos = np.arange(len(g))
        for c in range(v.shape[1]):
            last = np.maximum.accumulate(np.where(missing[:, c], -1, pos))
            ok = missing[:, c] & (last >= group_start)
            v[ok, c] = v[last[ok], c]
            filled += int(ok.sum())
        missing = np.isnan(v)
    dropped, by_col = 0, {}
    if missing.any():
        if not drop:
            r = np.flatnonzero(missing.any(1))
            first = r[np.argmin(order[r])]  # first in file order
            c = int(np.argmax(missing[first]))
            name = "" if id is None else f" of id {id_values[g[first]]!r}"
            fix = (
                f"Forward fill found no earlier value{name} to carry; pass"
                if fill
                else "Pass fill='forward' (--fill forward) to carry the last value on, or"
            )
            raise ValueError(
                f"{where(int(order[first]))}, column {cols[c]!r}: the value is missing. {fix} "
                "drop=True (--drop) to drop such rows."
            )
        keep = ~missing.any(1)
        dropped = int((~keep).sum())
        by_col = {
            cols[c]: int(missing[:, c].sum()) for c in range(len(cols)) if missing[:, c].any()
        }
        order, g, k, v = order[keep], g[keep], k[keep], v[keep]

    # -- one sequence per id
    counts = np.bincount(g, minlength=len(id_values))
    bounds = np.r_[0, np.cumsum(counts)]
    h = spec.horizon if spec.targets else 0
    need = max(int(min_length), h + 1)
    nf, no = len(spec.features), len(spec.targets)
    fi = [cols.index(c) for c in spec.features]
    ti = [cols.index(c) for c in spec.targets]
    wi = cols.index(weight) if weight else None
    xs, ys, ws, rows, tkeys = [], [], [], [], []
    for j, ident in enumerate(id_values):
        s, e = bounds[j], bounds[j + 1]
        n = e - s
        if n < need:
            what = "" if id is None else f" id {ident!r}"
            span = (
                f" ({where.short(int(order[s]))} to {where.short(int(order[e - 1]))})" if n else ""
            )
            why = (
                f"horizon {h} leaves it no step with a target"
                if n < h + 1
                else "the minimum length asked for"
            )
            raise ValueError(
                f"{source}:{what} has {n} rows{span}, fewer than the {need} needed: {why}."
            )
        block = v[s:e]
        x = block[:, fi].reshape(n, nf)
        y = np.zeros((n, no))
        w = np.ones(n)
        if no:
            y[: n - h] = block[h:, ti]
            if wi is not None:
                w[: n - h] = block[h:, wi]
            w[n - h :] = 0.0
            if (w < 0).any():
                r = int(order[s + h + int(np.argmax(w < 0))])
                raise ValueError(f"{where(r)}, column {weight!r}: weights must be >= 0.")
            if not (w > 0).any():
                raise ValueError(
                    f"{source}: id {ident!r} has every weight zero: none of its rows is scored."
                )
        xs.append(x)
        ys.append(y)
        ws.append(w)
        rows.append(order[s:e].astype(np.int64))
        tkeys.append(k[s:e])

    report = TableReport(
        source=source,
        rows=n_rows,
        sequences=len(id_values),
        steps=int(bounds[-1]),
        dropped=dropped,
        dropped_by_column=by_col,
        filled=filled,
    )
    if time is not None:
        _report_gaps(pd, report, tkeys, rows, id_values, df[time], where)
    index_cols = [c for c in (id, time) if c is not None]
    return TableSequences(
        xs,
        ys,
        ws,
        spec=spec,
        rows=rows,
        ids=id_values,
        keys=tkeys,
        report=report,
        index=df[index_cols].copy() if index_cols else pd.DataFrame(index=df.index),
    )


def _check_order(k, same, order, g, id_values, df, time, where: _Where) -> None:
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


def _report_gaps(pd, report: TableReport, tkeys, rows, id_values, times, where) -> None:
    diffs = [np.diff(t) for t in tkeys if len(t) > 1]
    if not diffs:
        return
    d_all = np.concatenate(diffs)
    vals, counts = np.unique(d_all, return_counts=True)
    step = vals[np.argmax(counts)]
    report.step = _show_step(pd, step, times)
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


def _show_step(pd, step, times):
    if pd.api.types.is_numeric_dtype(times):
        return float(step)
    return str(pd.Timedelta(int(step), "ns"))
