"""zstd compression ratio per document: raw UTF-8 bytes / compressed bytes (higher = more redundant).

The kernel works on an Arrow array: its UTF-8 data buffer and offsets go straight to
zstandard's `multi_compress_to_buffer` as one buffer with segments, so no Python string or bytes
object is made per document. Each document is still its own zstd frame with the same parameters
as `ZstdCompressor(level).compress(doc)`, so the ratios are identical to that call's.
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import zstandard

from udfs.batch_udf import arrow_or_pandas_udf

_local = threading.local()
_OFFSET_TYPES = {
    pa.string(): np.int32,
    pa.binary(): np.int32,
    pa.large_string(): np.int64,
    pa.large_binary(): np.int64,
}


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # ZstdCompressor is not thread-safe; one per thread and level, reused across batches.
    cache = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]


def zstd_ratios_arrow(texts: pa.Array | pa.ChunkedArray, level: int = 3) -> pa.Array:
    """float64 ratio per element of a string/binary Arrow array; null or empty gives null."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if texts.type == pa.string_view() or texts.type == pa.binary_view():
        texts = texts.cast(pa.large_binary())
    offset_type = _OFFSET_TYPES.get(texts.type)
    if offset_type is None:
        raise TypeError(f"zstd ratio needs a string or binary column, got {texts.type}")
    n = len(texts)
    if n == 0:
        return pa.array([], pa.float64())
    _, offsets_buffer, data_buffer = texts.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[texts.offset : texts.offset + n + 1]
    lengths = np.diff(offsets)
    scored = np.flatnonzero(texts.is_valid().to_numpy(zero_copy_only=False) & (lengths > 0))
    ratios = np.full(n, np.nan)
    if len(scored):
        segments = np.empty((len(scored), 2), dtype=np.uint64)
        segments[:, 0] = offsets[scored]
        segments[:, 1] = lengths[scored]
        frames = _compressor(level).multi_compress_to_buffer(
            zstandard.BufferWithSegments(data_buffer, segments.tobytes()), threads=0
        )
        compressed = np.fromiter((len(frames[i]) for i in range(len(frames))), np.float64,
                                 len(frames))
        ratios[scored] = segments[:, 1] / compressed
    return pa.array(ratios, pa.float64(), mask=np.isnan(ratios))


def zstd_ratios(texts: pd.Series, level: int = 3) -> pd.Series:
    """The same ratios for a pandas Series of str (or bytes); null or empty gives NaN."""
    try:
        values = pa.array(texts, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # bytes or a mix of str and bytes
        values = pa.array(
            [t.encode("utf-8") if isinstance(t, str) else (None if pd.isna(t) else bytes(t))
             for t in texts.array],
            pa.large_binary(),
        )
    if values.type == pa.null():
        values = values.cast(pa.string())
    ratios = zstd_ratios_arrow(values, level).to_numpy(zero_copy_only=False)
    return pd.Series(ratios, index=texts.index, dtype="float64")


def make_zstd_ratio_udf(level: int = 3):
    """`text -> double` column function (an Arrow UDF where PySpark has them)."""
    return arrow_or_pandas_udf(
        "double",
        lambda texts: zstd_ratios_arrow(texts, level),
        lambda texts: zstd_ratios(texts, level),
    )
