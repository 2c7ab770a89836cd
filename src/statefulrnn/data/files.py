"""Table files: read CSV or Parquet into a DataFrame or straight into sequences; write outputs.

Knows file formats and their errors, nothing of models. The format comes from the suffix
(`.csv`, `.tsv`, either compressed with `.gz`/`.bz2`/`.xz`/`.zip`/`.zst`; `.parquet`, `.pq`);
a file that does not read as its suffix says is an error that names it.
"""

from __future__ import annotations

import os
from pathlib import Path

from statefulrnn.data.columns import pandas as _pandas
from statefulrnn.data.frames import TableSequences, from_frame

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")


def table_format(path: str | Path) -> str:
    """'csv', 'tsv' or 'parquet' from the file's suffix; an error for anything else."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSION:
        suffixes = suffixes[:-1]
    kind = FORMATS.get(suffixes[-1]) if suffixes else None
    if kind is None:
        got = "".join(Path(path).suffixes) or "no suffix"
        raise ValueError(
            f"{path}: not a CSV or Parquet file ({got}); give a .csv, .tsv or .parquet file."
        )
    return kind


def read_table(path: str | Path):
    """The file as a DataFrame; errors name the file and, where pandas says, the line."""
    pd = _pandas()
    path = Path(path)
    kind = table_format(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file.")
    if not path.is_file():  # a FIFO would block the read forever
        raise ValueError(f"{path}: not a regular file (a folder, FIFO or device).")
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if kind == "tsv" else ",")
    except UnicodeDecodeError:
        raise ValueError(
            f"{path}: not a text {kind.upper()} file (it does not decode as text)."
        ) from None
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: the file is empty; it needs a header row and data rows."
        ) from None
    except pd.errors.ParserError as err:
        raise ValueError(f"{path}: not a well-formed {kind.upper()} file: {err}") from None
    except (OSError, ValueError) as err:
        if kind != "parquet":
            raise
        raise ValueError(f"{path}: could not be read as Parquet: {err}") from None


def read_sequences(
    path: str | Path,
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
) -> TableSequences:
    """Sequences from a CSV or Parquet file; the arguments are those of `data.frames.from_frame`.

    Errors name the file and the row (for CSV also its line) or column.
    """
    df = read_table(path)
    return from_frame(
        df,
        id=id,
        time=time,
        features=features,
        targets=targets,
        weight=weight,
        horizon=horizon,
        fill=fill,
        drop=drop,
        sort=sort,
        min_length=min_length,
        source=str(path),
        line_offset=2 if table_format(path) in ("csv", "tsv") else None,
    )


# a text cell starting with one of these is a formula to Excel, LibreOffice and Sheets
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(df):
    """A copy of `df` whose text cells cannot run as spreadsheet formulas: a cell starting
    with = + - @ tab or CR gets a leading apostrophe (`=cmd|...` -> `'=cmd|...`), the escape
    spreadsheets show as the text itself. Numbers are never changed."""
    out = df.copy()
    for name in out.columns:
        col = out[name]
        if col.dtype == object or str(col.dtype) in ("string", "str"):
            risky = col.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_START))
            if risky.any():
                out[name] = col.where(~risky, "'" + col.astype(str))
    return out


def write_table(df, path: str | Path, *, escape_formulas: bool = True) -> Path:
    """Write a DataFrame as CSV, TSV or Parquet by the suffix of `path`, atomically (a
    temporary file renamed into place). CSV/TSV text cells that a spreadsheet would run as a
    formula are escaped (`spreadsheet_safe`) unless `escape_formulas=False`."""
    import io

    from statefulrnn import records

    path = Path(path)
    kind = table_format(path)
    buf = io.BytesIO()
    if kind == "parquet":
        df.to_parquet(buf, index=False)
    else:
        if escape_formulas:
            df = spreadsheet_safe(df)
        compression = Path(path).suffix.lower()
        if compression in COMPRESSION:
            df.to_csv(path, index=False, sep="\t" if kind == "tsv" else ",")  # pandas compresses
            return path
        buf.write(df.to_csv(index=False, sep="\t" if kind == "tsv" else ",").encode())
    records.atomic_write_bytes(path, buf.getvalue())
    return path


def check_output(out: str | Path, *inputs: str | Path | None) -> None:
    """Refuse an output path that is one of the inputs (`predict -o in.csv`) or a folder."""
    from statefulrnn.records import UsageError

    out = Path(out)
    if out.is_dir():
        raise UsageError(f"output {out} is a folder; name a file such as {out / 'preds.csv'}.")
    for given in inputs:
        if given is None:
            continue
        given = Path(given)
        same = out.exists() and given.exists() and os.path.samefile(out, given)
        if same or out.resolve() == given.resolve():
            raise UsageError(
                f"output {out} is the input file {given}: writing it would destroy the input. "
                "Name another output file."
            )
