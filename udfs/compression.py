"""zstd compression ratio per document: raw UTF-8 bytes / compressed bytes (higher = more redundant)."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import zstandard
from pyspark.sql.functions import pandas_udf

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # ZstdCompressor is not thread-safe; one per thread and level, reused across batches.
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]


def zstd_ratios(texts: pd.Series, level: int = 3) -> pd.Series:
    """Ratio for each text; null or empty text gives null (no ratio is defined for zero bytes)."""
    compress = _compressor(level).compress
    out = np.full(len(texts), np.nan)
    for i, text in enumerate(texts.array):
        if text is None or text is pd.NA or (isinstance(text, float) and np.isnan(text)):
            continue
        raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if raw:
            out[i] = len(raw) / len(compress(raw))
    return pd.Series(out, index=texts.index, dtype="float64")


def make_zstd_ratio_udf(level: int = 3):
    @pandas_udf("double")
    def zstd_ratio(texts: pd.Series) -> pd.Series:
        return zstd_ratios(texts, level)

    return zstd_ratio
