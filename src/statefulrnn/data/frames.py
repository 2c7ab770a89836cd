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

import warnings
from typing import Any

import numpy as np

from statefulrnn.data.columns import (
    TableReport,
    TableSpec,
    Where,
    check_columns,
    check_order,
    numeric,
    pandas,
    report_gaps,
    time_keys,
)
from statefulrnn.data.sequences import Sequences

FILLS = (None, "forward")


class TableWarning(UserWarning):
    """Reading a table found something the user likely did not mean (said in words)."""


ID_NAMES = ("id", "series", "series_id", "unique_id", "sequence", "seq", "group", "key", "item")


def _warn_if_many_ids(pd, df, used: list[str], source: str) -> None:
    """No id given, but a column looks like one (an id-like name, or text whose values
    repeat): the whole file would silently become one sequence. Say so, naming the column."""
    n = len(df)
    for col in df.columns:
        if col in used:
            continue
        s = df[col]
        named = str(col).strip().lower() in ID_NAMES
        text = not pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_datetime64_any_dtype(s)
        if not (named or text):
            continue
        distinct = int(s.nunique(dropna=True))
        if 2 <= distinct <= n // 2:
            warnings.warn(
                f"{source}: no id column given, so all {n} rows form ONE sequence, but column "
                f"{col!r} has {distinct} distinct values that repeat, like sequence ids. If the "
                f"file holds {distinct} separate series, pass id={col!r} (--id {col}).",
                TableWarning,
                stacklevel=4,
            )
            return


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
        # x, y, w, rows, keys of every id: training head, whole sequence for validation
        tr: tuple[list[np.ndarray], ...] = ([], [], [], [], [])
        va: tuple[list[np.ndarray], ...] = ([], [], [], [], [])
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
    pd = pandas()
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
    check_columns(df, spec, source)
    where = Where(source, line_offset)
    n_rows = len(df)
    if n_rows == 0:
        raise ValueError(f"{source}: the table has no rows.")

    # -- numbers: x, raw targets, weights; each column checked once, in file order
    used = list(spec.features) + list(spec.targets) + ([weight] if weight else [])
    cols = list(dict.fromkeys(used))
    vals = np.stack([numeric(pd, df, c, where) for c in cols], axis=1)  # [rows, C]

    # -- grouping and order
    if id is None:
        _warn_if_many_ids(pd, df, [*used, *([time] if time else [])], source)
    if id is not None:
        ids_col = df[id]
        if ids_col.isna().any():
            i = int(np.argmax(ids_col.isna().to_numpy()))
            raise ValueError(f"{where(i)}, column {id!r}: the id is missing; every row needs one.")
        codes, uniques = pd.factorize(ids_col, sort=False)
        id_values = list(uniques)
    else:
        codes, id_values = np.zeros(n_rows, dtype=np.int64), [None]
    keys = time_keys(pd, df[time], time, where) if time is not None else np.arange(n_rows) * 1.0
    order = np.lexsort((keys, codes)) if sort else np.argsort(codes, kind="stable")
    g = codes[order]
    k = keys[order]
    same = g[1:] == g[:-1]
    check_order(k, same, order, g, id_values, df, time, where)

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
                bad_row = int(order[s + h + int(np.argmax(w < 0))])
                raise ValueError(f"{where(bad_row)}, column {weight!r}: weights must be >= 0.")
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
        report_gaps(pd, report, tkeys, rows, id_values, df[time], where)
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
