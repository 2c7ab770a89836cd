"""Tables to sequences (issue 7): grouping, ordering, horizon, missing values, errors, scaling.

Every error test checks that the message names the source and the row (CSV: the line) or the
column, since that is what a user with a broken file needs.
"""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from statefulrnn import Sequences, read_sequences  # noqa: E402
from statefulrnn.data.files import table_format, write_table  # noqa: E402
from statefulrnn.data.frames import TableSequences, from_frame  # noqa: E402
from statefulrnn.data.scaling import Scaling  # noqa: E402
from statefulrnn.tabular.baseline import seasonal_lag, seasonal_naive  # noqa: E402


def table(lengths=(7, 4, 5), seed=0) -> pd.DataFrame:
    """Ids a, b, c of the given lengths, rows interleaved by time as a logger writes them."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate(lengths):
        for t in range(n):
            rows.append({"id": "abc"[i], "t": t, "x": rng.normal(), "y": 100.0 * i + t})
    return pd.DataFrame(rows).sort_values("t", kind="stable").reset_index(drop=True)


def read(df, **kw) -> TableSequences:
    args = {"id": "id", "time": "t", "features": ["x"], "targets": ["y"]} | kw
    return from_frame(df, **args)


# ---------------------------------------------------------------- grouping, order, mapping
def test_groups_by_id_in_time_order_and_maps_every_step_to_its_row():
    df = table()
    seqs = read(df)
    assert isinstance(seqs, TableSequences) and isinstance(seqs, Sequences)
    assert seqs.ids == ["a", "b", "c"]
    assert seqs.lengths.tolist() == [7, 4, 5]
    for ident, rows, x in zip(seqs.ids, seqs.rows, seqs.xs):
        part = df.iloc[rows]
        assert (part["id"] == ident).all()
        assert part["t"].tolist() == list(range(len(rows)))  # in time order
        np.testing.assert_array_equal(x[:, 0], part["x"].to_numpy())
    every = np.sort(np.concatenate(seqs.rows))
    np.testing.assert_array_equal(every, np.arange(len(df)))  # each row exactly once


def test_frame_joins_outputs_back_one_row_per_table_row_in_table_order():
    df = table()
    seqs = read(df)
    out = seqs.frame([x * 2 for x in seqs.xs], ["twice"])
    assert len(out) == len(df)
    assert out["id"].tolist() == df["id"].tolist() and out["t"].tolist() == df["t"].tolist()
    np.testing.assert_allclose(out["twice"], 2 * df["x"])


def test_from_frame_is_part_of_the_data_package_and_gives_sequences():
    from statefulrnn.data import from_frame as public_from_frame

    seqs = public_from_frame(table(), id="id", time="t", features=["x"], targets=["y"])
    assert isinstance(seqs, TableSequences) and isinstance(seqs, Sequences) and len(seqs) == 3


def test_without_id_or_time_the_table_is_one_sequence_in_file_order():
    df = table()
    # ...and since this table has an id column, reading it without one says so, by name
    with pytest.warns(UserWarning, match=r"ONE sequence, but column 'id' has 3 distinct"):
        seqs = from_frame(df, features=["x"], targets=["y"])
    assert len(seqs) == 1
    np.testing.assert_array_equal(seqs.rows[0], np.arange(len(df)))
    one = from_frame(df.drop(columns="id"), features=["x"], targets=["y"])  # no warning
    assert len(one) == 1


def test_horizon_shifts_targets_within_an_id_and_keeps_the_last_steps_unscored():
    seqs = read(table(), horizon=2)
    for y, w, n, base in zip(seqs.ys, seqs.ws, [7, 4, 5], [0, 100, 200]):
        assert len(y) == n  # kept, not dropped
        np.testing.assert_array_equal(y[: n - 2, 0], base + np.arange(2, n))
        np.testing.assert_array_equal(w, [1.0] * (n - 2) + [0.0, 0.0])


def test_weight_column_weights_the_target_row():
    df = table().assign(w=lambda d: (d["t"] % 2).astype(float) + 0.5)
    seqs = read(df, weight="w", horizon=1)
    rows = seqs.rows[0]
    np.testing.assert_array_equal(seqs.ws[0][:-1], df["w"].to_numpy()[rows[1:]])


def test_sort_true_orders_unsorted_rows():
    df = table().sample(frac=1.0, random_state=3).reset_index(drop=True)
    seqs = read(df, sort=True)
    for rows in seqs.rows:
        assert df["t"].to_numpy()[rows].tolist() == list(range(len(rows)))


def test_datetime_strings_order_and_gaps_are_reported():
    times = [
        "2020-01-01T00:00:00Z",
        "2020-01-01T00:30:00Z",
        "2020-01-01T02:00:00Z",
        "2020-01-01T02:30:00Z",
    ]
    df = pd.DataFrame({"t": times, "x": [1.0, 2, 3, 4], "y": [1.0, 2, 3, 4]})
    seqs = from_frame(df, time="t", features=["x"], targets=["y"])
    assert seqs.report.gaps == 1
    assert seqs.report.step == "0 days 00:30:00"
    text = "\n".join(seqs.report.lines())
    assert "2020-01-01T00:30:00Z -> 2020-01-01T02:00:00Z" in text and "~2 steps missing" in text


# ---------------------------------------------------------------- missing values
def with_missing(col="x", row=5):
    df = table()
    df.loc[row, col] = np.nan
    return df


def test_missing_value_is_an_error_naming_source_row_and_column():
    with pytest.raises(
        ValueError, match=r"data\.csv line 7 \(row 5\), column 'x': the value is missing"
    ):
        read(with_missing(), source="data.csv", line_offset=2)


def test_fill_forward_carries_the_ids_last_value():
    df = with_missing(row=5)
    seqs = read(df, fill="forward")
    ident = df.loc[5, "id"]
    i = seqs.ids.index(ident)
    pos = int(np.flatnonzero(seqs.rows[i] == 5)[0])
    assert seqs.xs[i][pos, 0] == seqs.xs[i][pos - 1, 0]
    assert seqs.report.filled == 1


def test_fill_forward_cannot_fill_an_ids_first_row():
    df = table()
    first_b = int(df.index[df["id"] == "b"][0])
    df.loc[first_b, "x"] = np.nan
    with pytest.raises(ValueError, match="no earlier value of id 'b'"):
        read(df, fill="forward")


def test_drop_removes_rows_and_counts_them():
    df = with_missing(row=5)
    df.loc[8, "y"] = np.nan
    seqs = read(df, drop=True)
    assert seqs.report.dropped == 2
    assert seqs.report.dropped_by_column == {"x": 1, "y": 1}
    assert sum(seqs.lengths) == len(df) - 2
    out = seqs.frame(seqs.xs, ["x_again"])
    assert len(out) == len(df) and out["x_again"].isna().sum() == 2


# ---------------------------------------------------------------- bad tables
@pytest.mark.parametrize(
    "change, pattern",
    [
        (
            lambda d: d.rename(columns={"x": "xx"}),
            r"f\.csv: no feature column 'x'.*Did you mean 'xx'",
        ),
        (
            lambda d: d.assign(x=d["x"].astype(object).where(d.index != 4, "n/a")),
            r"f\.csv line 6 \(row 4\), column 'x': 'n/a' is not a number",
        ),
        (
            lambda d: pd.concat([d, d.iloc[[-1]]], ignore_index=True),
            r"f\.csv line 18 \(row 16\): id 'a' has time 6 twice \(also at line 17 \(row 15\)\)",
        ),
        (
            lambda d: d.iloc[::-1].reset_index(drop=True),
            r"f\.csv line \d+ \(row \d+\): id '\w' is not sorted by time",
        ),
    ],
    ids=["missing column", "non-numeric", "duplicate time", "unsorted"],
)
def test_bad_tables_name_the_source_and_the_row_or_column(change, pattern):
    with pytest.raises(ValueError, match=pattern):
        read(change(table()), source="f.csv", line_offset=2)


def test_duplicate_names_both_rows_and_the_id():
    df = table()
    df.loc[9, "t"] = df.loc[9, "t"] - 1  # row 9 now repeats the previous time of its id
    ident = df.loc[9, "id"]
    with pytest.raises(ValueError, match=rf"row 9\): id '{ident}' has time \d+ twice"):
        read(df, source="f.csv", line_offset=2)


def test_an_id_with_too_few_rows_for_the_horizon_is_named():
    with pytest.raises(
        ValueError,
        match=r"f\.csv: id 'b' has 4 rows \(line \d+ \(row \d+\) to .*fewer than the 5 needed",
    ):
        read(table(), horizon=4, source="f.csv", line_offset=2)


def test_target_that_is_also_a_feature_needs_a_horizon():
    with pytest.raises(ValueError, match="both a feature and a target with horizon 0"):
        read(table(), features=["x", "y"])


# ---------------------------------------------------------------- files
def test_csv_and_parquet_read_the_same(tmp_path):
    df = table()
    write_table(df, tmp_path / "d.csv")
    write_table(df, tmp_path / "d.parquet")
    a = read_sequences(tmp_path / "d.csv", id="id", time="t", features=["x"], targets=["y"])
    b = read_sequences(tmp_path / "d.parquet", id="id", time="t", features=["x"], targets=["y"])
    for xa, xb, ra, rb in zip(a.xs, b.xs, a.rows, b.rows):
        np.testing.assert_allclose(xa, xb)
        np.testing.assert_array_equal(ra, rb)


@pytest.mark.parametrize("name", ["d.xlsx", "d.json", "data"])
def test_a_file_that_is_not_csv_or_parquet_is_named(tmp_path, name):
    with pytest.raises(ValueError, match=rf"{name}: not a CSV or Parquet file"):
        table_format(tmp_path / name)


def test_a_parquet_suffix_on_a_text_file_is_named(tmp_path):
    p = tmp_path / "fake.parquet"
    p.write_text("id,t,x,y\na,0,1,2\n")
    with pytest.raises(ValueError, match=r"fake\.parquet: could not be read as Parquet"):
        read_sequences(p, features=["x"], targets=["y"])


def test_a_binary_file_named_csv_is_named(tmp_path):
    p = tmp_path / "blob.csv"
    p.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"blob\.csv: not"):
        read_sequences(p, features=["x"], targets=["y"])


def test_csv_errors_count_lines_from_the_header(tmp_path):
    df = table()
    df.loc[3, "x"] = np.nan
    write_table(df, tmp_path / "d.csv")
    with pytest.raises(ValueError, match=r"d\.csv line 5 \(row 3\), column 'x'"):
        read_sequences(tmp_path / "d.csv", id="id", time="t", features=["x"], targets=["y"])


# ---------------------------------------------------------------- time split and scaling
def test_tail_split_scores_every_target_row_once_and_train_holds_no_tail_value():
    df = table((20, 11, 15))
    seqs = read(df, features=["x", "y"], horizon=2)
    train, val = seqs.tail_split(0.25)
    for i, n in enumerate([20, 11, 15]):
        n_train = int(np.floor(0.75 * n))
        assert len(train.xs[i]) == n_train and len(val.xs[i]) == n
        scored_tr = np.flatnonzero(train.ws[i] > 0) + 2  # target rows, as step + horizon
        scored_va = np.flatnonzero(val.ws[i] > 0) + 2
        assert scored_tr.max() < n_train <= scored_va.min()
        assert sorted(np.r_[scored_tr, scored_va].tolist()) == list(range(2, n))
        # the tail's target values never reach the training arrays
        assert train.ys[i][train.ws[i] == 0].sum() == 0
        assert train.xs[i][:, 1].max() < 100.0 * i + n_train


def test_scaling_is_fitted_on_training_rows_only():
    df = table((40, 30, 50))
    n_train = np.floor(0.6 * df.groupby("id")["t"].transform("size"))
    df["x"] = df["x"] + np.where(df["t"] >= n_train, 1000.0, 0.0)  # a jump in the tails only
    seqs = read(df, horizon=1)
    train, _ = seqs.tail_split(0.4)
    s = Scaling.fit(train)
    head = np.concatenate([df["x"].to_numpy()[r] for r in train.rows])
    assert s.x.mean[0] == pytest.approx(head.mean())
    assert s.x.mean[0] < 10  # with the tails (+1000) it would be in the hundreds
    targets = np.concatenate([y[w > 0] for y, w in zip(train.ys, train.ws)])
    assert s.y.mean[0] == pytest.approx(targets.mean())
    scaled = s.apply(train)
    np.testing.assert_allclose(s.invert(scaled.ys)[0], train.ys[0])


def test_scaling_round_trips_through_json():
    s = Scaling.fit(read(table()))
    d = s.to_dict(["x"], ["y"])
    back = Scaling.from_dict(d)
    np.testing.assert_array_equal(back.y.std, s.y.std)
    assert d["x"]["columns"] == ["x"]


# ---------------------------------------------------------------- seasonal naive
@pytest.mark.parametrize("season, horizon, lag", [(3, 1, 3), (2, 3, 4), (5, 5, 5), (4, 0, 4)])
def test_seasonal_lag(season, horizon, lag):
    assert seasonal_lag(season, horizon) == lag


def test_seasonal_naive_forecasts_the_value_whole_seasons_back():
    y = np.arange(10.0)
    df = pd.DataFrame({"x": y, "y": y})
    seqs = from_frame(df, features=["x"], targets=["y"], horizon=1)
    preds, ok = seasonal_naive(seqs, 3, 1)
    # step t forecasts row t+1 from row t+1-3
    t = np.arange(3, 9)
    np.testing.assert_array_equal(preds[0][t, 0], t + 1 - 3)
    assert not ok[0][:3].any() and ok[0][3:].all()


def test_vic_elec_ships_inside_the_examples_extra():
    pytest.importorskip("tsdata")
    from statefulrnn.datasets import vic_elec

    df = vic_elec(calendar=True)
    assert len(df) == 52608
    assert {"Time", "Demand", "Temperature", "day_sin", "week_cos"} <= set(df.columns)
    # the first row is midnight, Sunday 1 January 2012, local time
    assert (df.loc[0, "day_sin"], df.loc[0, "day_cos"]) == (0.0, 1.0)
    assert df.loc[0, "week_sin"] == pytest.approx(np.sin(2 * np.pi * 6 / 7))
