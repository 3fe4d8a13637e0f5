"""Scaling-law observations: (bucket, samples_seen, error[, pool_size]) from a DataFrame, CSV file
or Delta folder, validated with messages that name the source, the column and the rows."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
from deltalake import DeltaTable

from jobs.core.errors import UserError

REQUIRED_COLUMNS = ("bucket", "samples_seen", "error")


class ObservationsError(UserError, ValueError):
    """Malformed observations; the message names the source, the column and the rows."""


def _read_source(source: pd.DataFrame | str | os.PathLike) -> tuple[pd.DataFrame, str, int]:
    """(frame as strings where read from a file, name for messages, offset from row to line)."""
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True), "observations DataFrame", 0
    path = os.fspath(source)
    if os.path.isdir(path):
        if not os.path.isdir(os.path.join(path, "_delta_log")):
            raise ObservationsError(f"{path}: a folder but not a Delta table (no _delta_log)")
        return DeltaTable(path).to_pandas(), path, 0
    if not os.path.isfile(path):
        raise ObservationsError(f"{path}: observations file does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ObservationsError(f"{path}: not a readable CSV: {exc}") from None
    return frame, path, 2  # header is line 1, data row 0 is line 2


def _bad_rows(
    name: str, column: str, mask: np.ndarray, raw: pd.Series, why: str, line: int
) -> None:
    rows = np.flatnonzero(mask)
    if len(rows):
        where = ", ".join(
            f"row {r + 1}" + (f" (line {r + line})" if line else "") + f" = {raw.iloc[r]!r}"
            for r in rows[:5]
        )
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        raise ObservationsError(f"{name}: column '{column}' {why}: {where}{more}")


def _positive_column(frame: pd.DataFrame, column: str, name: str, line: int) -> pd.Series:
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.astype(float)
        _bad_rows(name, column, values.isna().to_numpy(), raw, "is empty", line)
    else:
        text = raw.astype(str).str.strip()
        blank = raw.isna().to_numpy() | text.isin(["", "nan", "NaN", "None"]).to_numpy()
        _bad_rows(name, column, blank, raw, "is empty", line)
        values = pd.to_numeric(text, errors="coerce")
        _bad_rows(name, column, values.isna().to_numpy(), raw, "is not a number", line)
    bad = ~np.isfinite(values.to_numpy(float)) | (values.to_numpy(float) <= 0)
    _bad_rows(name, column, bad, raw, "must be finite and > 0", line)
    return values.astype(float)


def load_observations(
    source: pd.DataFrame | str | os.PathLike, pool_sizes: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """Validated (bucket, samples_seen, error, pool_size) from a DataFrame, CSV or Delta path."""
    frame, name, line = _read_source(source)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ObservationsError(
            f"{name}: missing column(s) {missing}; found {list(frame.columns)}; "
            f"need {list(REQUIRED_COLUMNS)} and optionally 'pool_size'"
        )
    if frame.empty:
        raise ObservationsError(f"{name}: no observation rows")
    bucket_raw = frame["bucket"]
    buckets = bucket_raw.astype(str).str.strip()
    empty = bucket_raw.isna().to_numpy() | buckets.isin(["", "nan", "None"]).to_numpy()
    _bad_rows(name, "bucket", empty, bucket_raw, "is empty", line)
    out = pd.DataFrame(
        {
            "bucket": buckets,
            "samples_seen": _positive_column(frame, "samples_seen", name, line),
            "error": _positive_column(frame, "error", name, line),
        }
    )
    if "pool_size" in frame.columns:
        out["pool_size"] = _positive_column(frame, "pool_size", name, line)
    else:
        unknown = sorted(set(out["bucket"]) - set(pool_sizes or {}))
        if unknown:
            raise ObservationsError(
                f"{name}: no 'pool_size' column and no pool size given for bucket(s) {unknown}"
            )
        out["pool_size"] = out["bucket"].map(lambda b: float(pool_sizes[b]))
    return out
