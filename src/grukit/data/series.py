"""Time series from a CSV file (pandas) or arrays, checked once.

A CSV holds either one series (a value column, optionally a time column) or many in long
format (id, time, value). The time column holds dates and times, or whole period numbers
(``1, 2, 3``; ``1.0`` is a whole number, ``1.5`` is refused): integer time, which has a step but
no calendar. Columns are named with ``id_col``, ``time_col``, ``value_col``;
when a name is not given, the usual names are tried (``id``/``unique_id``/``series``,
``timestamp``/``date``/``time``/``ds``, ``value``/``y``), and a file with exactly one numeric
column needs no names at all.

The policy for missing values (documented, and reported in ``SeriesSet.report``):

- empty cells inside a series are filled by linear interpolation;
- empty cells at the start or end of a series are dropped;
- a series with no values, a value that is not a number, an empty or unreadable time, a
  repeated timestamp, and times that are not regularly spaced (a missing period) are refused
  with the row that shows it. Rows with timestamps may come in any order (each series is sorted
  by time); integer times must increase strictly within each series, in the file's order, and
  their step (the most common difference) plays the part of the frequency.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "SeriesSet",
    "read_csv",
    "read_frame",
    "from_arrays",
    "parse_times",
    "check_increasing",
    "future_times",
]

ID_NAMES = ("id", "unique_id", "series", "series_id")
TIME_NAMES = ("timestamp", "date", "time", "ds", "datetime")
VALUE_NAMES = ("value", "y")


class DataError(ValueError):
    """Input data that cannot be used as given; the message names the file, column and row."""


@dataclass
class SeriesSet:
    """Many series: ``values[i]`` (n_i,) float64 with id ``ids[i]`` and, when the file had them,
    regularly spaced ``timestamps[i]`` (n_i,): datetime64 with ``freq`` a pandas frequency string,
    or int64 period numbers with ``freq`` the integer step. ``freq`` is None when no series has
    enough points to show one (3 timestamps, 2 integer times)."""

    ids: list[str]
    values: list[np.ndarray]
    timestamps: list[np.ndarray] | None = None
    freq: str | int | None = None
    report: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def integer_time(self) -> bool:
        """True when the times are period numbers rather than dates."""
        return self.timestamps is not None and np.issubdtype(self.timestamps[0].dtype, np.integer)

    @property
    def lengths(self) -> list[int]:
        return [len(v) for v in self.values]

    def shorter_than(self, need: int) -> str | None:
        """None when every series has ``need`` points, else the start of an error message naming
        the first short series and how many more there are."""
        short = [(sid, n) for sid, n in zip(self.ids, self.lengths) if n < need]
        if not short:
            return None
        sid, n = short[0]
        more = f" (and {len(short) - 1} more)" if len(short) > 1 else ""
        return f"series {sid!r} has {n} points{more}"


def _pandas():
    from grukit._extras import require

    return require("pandas", "apps", what="reading CSV files")


def _pick(columns: list[str], given: str | None, names: tuple[str, ...], what: str, source: str):
    if given is not None:
        if given not in columns:
            raise DataError(f"{source}: no {what} column {given!r}; the columns are {', '.join(columns)}")
        return given
    lower = {c.lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def read_frame(path: str | os.PathLike, **options):
    """``pandas.read_csv(path, **options)``, with a ``DataError`` naming the file when it is
    missing, empty, unreadable as CSV, or a header without rows."""
    pd = _pandas()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    try:
        df = pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    if len(df) == 0:
        raise DataError(f"{path} has a header but no rows")
    return df


def read_csv(
    path: str | os.PathLike,
    *,
    id_col: str | None = None,
    time_col: str | None = None,
    value_col: str | None = None,
) -> SeriesSet:
    """Read one series or many (long format) from ``path``; see the module docstring."""
    pd = _pandas()
    source = str(path)
    df = read_frame(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    columns = list(df.columns)
    id_c = _pick(columns, id_col, ID_NAMES, "id", source)
    time_c = _pick(columns, time_col, TIME_NAMES, "time", source)
    value_c = _pick(columns, value_col, VALUE_NAMES, "value", source)
    if value_c is None:
        rest = [c for c in columns if c not in (id_c, time_c)]
        numeric = [c for c in rest if pd.to_numeric(df[c].replace("", np.nan), errors="coerce").notna().any()]
        if len(numeric) != 1:
            raise DataError(
                f"{source}: cannot tell which column holds the values "
                f"({'none is numeric' if not numeric else 'candidates: ' + ', '.join(numeric)}); "
                "name it with --value-col"
            )
        value_c = numeric[0]
    if value_c in (id_c, time_c):
        raise DataError(f"{source}: the value column {value_c!r} is also the id or time column")

    raw = df[value_c].str.strip()
    missing = raw.isin(["", "nan", "NaN", "NA", "N/A", "null", "NULL", "None"])
    values = pd.to_numeric(raw.where(~missing), errors="coerce")
    bad = values.isna() & ~missing
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{source}: line {row + 2}: {value_c}={raw.iloc[row]!r} is not a number")
    if not np.isfinite(values.dropna().to_numpy(dtype=float)).all():
        row = int(np.flatnonzero(~np.isfinite(values.fillna(0).to_numpy(dtype=float)))[0])
        raise DataError(f"{source}: line {row + 2}: {value_c}={raw.iloc[row]!r} is not finite")
    frame = pd.DataFrame({"value": values.astype(float)})
    frame["id"] = df[id_c].str.strip() if id_c is not None else "series"
    frame["line"] = np.arange(len(df)) + 2
    if time_c is not None:
        frame["time"] = parse_times(df[time_c], time_c, source)
    return _assemble(frame, source, time_c)


def parse_times(column, name: str, source: str, first_line: int = 2) -> np.ndarray:
    """A time column (a pandas Series, row ``i`` on line ``i + first_line``) as (n,) int64 period
    numbers when every cell is a whole number, else as (n,) datetime64 dates and times."""
    pd = _pandas()
    text = column.astype(str).str.strip()
    empty = column.isna().to_numpy() | (text == "").to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise DataError(f"{source}: line {row + first_line}: {name} is empty; every row needs a time")
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():  # integer time
        x = numbers.to_numpy()
        if x.dtype.kind == "f":
            whole = np.isfinite(x) & (x == np.round(x)) & (np.abs(x) <= 2**53)
            if not whole.all():
                row = int(np.flatnonzero(~whole)[0])
                raise DataError(
                    f"{source}: line {row + first_line}: {name}={text.iloc[row]!r} is not a whole number; "
                    "a numeric time column holds period numbers (1, 2, 3, ...)"
                )
        return x.astype(np.int64)
    try:
        stamps = pd.to_datetime(text, errors="coerce", format="mixed")
    except (ValueError, OverflowError) as exc:  # what coercing cannot fix, as time zones mixed
        why = next(iter(str(exc).splitlines()), type(exc).__name__)
        raise DataError(f"{source}: the {name} column cannot be read as dates and times: {why}") from None
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        mixed = " (the column mixes numbers and dates)" if numbers.notna().iloc[row] else ""
        raise DataError(
            f"{source}: line {row + first_line}: {name}={text.iloc[row]!r} is not a date or time" + mixed
        )
    return stamps.to_numpy()


def future_times(last, freq: str | int, h: int) -> np.ndarray:
    """The (h,) times after ``last``: ``last + k * freq`` (k = 1..h) for integer time, else dates
    continuing the pandas frequency ``freq``."""
    if isinstance(freq, (int, np.integer)):
        return last + int(freq) * np.arange(1, h + 1, dtype=np.int64)
    pd = _pandas()
    return pd.date_range(last, periods=h + 1, freq=freq)[1:].to_numpy()


def check_increasing(t: np.ndarray, lines: np.ndarray, source: str, name: str, sid=None) -> None:
    """Refuse times ``t`` (n,) (from file lines ``lines`` (n,)) that do not increase strictly
    down the rows (of series ``sid``, when given)."""
    back = np.flatnonzero(t[1:] <= t[:-1])
    if back.size:
        i = int(back[0])
        a, b = (str(_pandas().Timestamp(v)) if t.dtype.kind == "M" else str(v) for v in t[i : i + 2])
        raise DataError(
            f"{source}: lines {lines[i]} and {lines[i + 1]}: {name} goes from {a} to {b}"
            + (
                f" in series {sid!r}; times must increase strictly within each series"
                if sid is not None
                else "; times must increase strictly down the rows"
            )
        )


def _integer_step(t: np.ndarray, lines: np.ndarray, sid, source: str) -> int:
    """The step of increasing integer times ``t`` (n >= 2,): the most common difference (the
    smallest of equally common ones); any other difference is refused as irregular spacing."""
    d = np.diff(t)
    steps, counts = np.unique(d, return_counts=True)
    step = int(steps[np.argmax(counts)])
    off = np.flatnonzero(d != step)
    if off.size:
        i = int(off[0])
        raise DataError(
            f"{source}: series {sid!r} has irregularly spaced times (a missing period, or mixed "
            f"spacing): the step is {step} but line {lines[i + 1]} follows {t[i]} with {t[i + 1]}; "
            "add the missing periods with empty values, which are interpolated"
        )
    return step


def _assemble(frame, source: str, time_col: str | None) -> SeriesSet:
    pd = _pandas()
    has_time = time_col is not None
    integer = has_time and pd.api.types.is_integer_dtype(frame["time"])
    ids, values, stamps, freqs = [], [], [], set()
    interpolated = dropped = 0
    for sid, g in frame.groupby("id", sort=False):
        if integer:
            check_increasing(g["time"].to_numpy(), g["line"].to_numpy(), source, time_col, sid)
        elif has_time:
            g = g.sort_values("time", kind="stable")
            dup = g["time"].duplicated()
            if dup.any():
                line = int(g["line"][dup].iloc[0])
                raise DataError(
                    f"{source}: line {line}: series {sid!r} repeats the timestamp {g['time'][dup].iloc[0]}"
                )
        v = g["value"].to_numpy(dtype=float, copy=True)
        ok = np.flatnonzero(~np.isnan(v))
        if len(ok) == 0:
            raise DataError(f"{source}: series {sid!r} has no values")
        first, last = ok[0], ok[-1]
        dropped += int(len(v) - (last - first + 1))
        keep = slice(first, last + 1)
        v = v[keep]
        gaps = np.isnan(v)
        if gaps.any():
            interpolated += int(gaps.sum())
            idx = np.arange(len(v))
            v[gaps] = np.interp(idx[gaps], idx[~gaps], v[~gaps])
        ids.append(str(sid))
        values.append(v)
        if integer:
            t = g["time"].to_numpy()[keep]
            if len(t) >= 2:
                freqs.add(_integer_step(t, g["line"].to_numpy()[keep], sid, source))
            stamps.append(t)
        elif has_time:
            t = g["time"].to_numpy()[keep]
            if len(t) >= 3:
                with warnings.catch_warnings():  # pandas 3 announces an offset return type
                    warnings.simplefilter("ignore")
                    freq = pd.infer_freq(pd.DatetimeIndex(t))
                freq = getattr(freq, "freqstr", freq)
                if freq is None:
                    raise DataError(
                        f"{source}: series {sid!r} has irregularly spaced timestamps (a missing "
                        "period, or mixed spacing); add the missing periods with empty values, "
                        "which are interpolated"
                    )
                freqs.add(freq)
            stamps.append(t)
    if len(freqs) > 1:
        raise DataError(
            f"{source}: the series have different "
            f"{'steps' if integer else 'frequencies'} ({', '.join(map(str, sorted(freqs)))})"
        )
    return SeriesSet(
        ids=ids,
        values=values,
        timestamps=stamps if has_time else None,
        freq=freqs.pop() if freqs else None,
        report={
            "series": len(ids),
            "points": int(sum(len(v) for v in values)),
            "interpolated": interpolated,
            "dropped_at_ends": dropped,
        },
    )


def from_arrays(data, ids: list[str] | None = None) -> SeriesSet:
    """A ``SeriesSet`` from one array, a list of arrays, or a mapping id -> array (NaNs follow
    the same policy as in files)."""
    if isinstance(data, dict):
        ids, arrays = [str(k) for k in data], list(data.values())
    elif isinstance(data, np.ndarray) and data.ndim == 1:
        arrays = [data]
    elif isinstance(data, (list, tuple)) and data and not np.isscalar(data[0]):
        arrays = list(data)
    elif isinstance(data, (list, tuple)):
        arrays = [np.asarray(data)]
    else:
        raise DataError(
            f"expected a 1-D array, a list of 1-D arrays or a dict of them, got {type(data).__name__}"
        )
    if ids is None:
        ids = [str(i) for i in range(len(arrays))]
    if len(ids) != len(arrays):
        raise DataError(f"expected {len(arrays)} ids, got {len(ids)}")
    if len(arrays) == 0:
        raise DataError("expected at least one series, got none")
    pd = _pandas()
    frames = []
    for sid, a in zip(ids, arrays):
        try:
            a = np.asarray(a, dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"series {sid!r}: expected numbers") from None
        if a.ndim != 1:
            raise DataError(f"series {sid!r}: expected a 1-D array, got shape {a.shape}")
        if np.isinf(a).any():
            raise DataError(f"series {sid!r}: contains infinite values")
        frames.append(pd.DataFrame({"value": a, "id": sid, "line": np.arange(len(a))}))
    return _assemble(pd.concat(frames, ignore_index=True), "arrays", None)
