import math

import pandas as pd
import zstandard

from udfs.compression import zstd_ratios


def test_ratio_is_raw_bytes_over_compressed_bytes():
    texts = ["hello " * 200, "naïve café ✓ " * 50, "x"]
    got = zstd_ratios(pd.Series(texts), level=3)
    for text, value in zip(texts, got, strict=True):
        raw = text.encode("utf-8")
        expected = len(raw) / len(zstandard.ZstdCompressor(level=3).compress(raw))
        assert value == expected


def test_level_is_honoured():
    text = "".join(f"line {i} of a longer log with some repetition\n" for i in range(500))
    low = zstd_ratios(pd.Series([text]), level=1)[0]
    high = zstd_ratios(pd.Series([text]), level=19)[0]
    raw = text.encode()
    assert high == len(raw) / len(zstandard.ZstdCompressor(level=19).compress(raw))
    assert high != low


def test_null_and_empty_have_no_ratio():
    got = zstd_ratios(pd.Series(["", None, "abc"], dtype=object))
    assert math.isnan(got[0]) and math.isnan(got[1]) and got[2] > 0
    assert list(got.index) == [0, 1, 2]


def test_udf_matches_kernel(spark):
    from udfs.compression import make_zstd_ratio_udf

    texts = [f"document {i} " * (i + 1) for i in range(50)]
    df = spark.createDataFrame([(t,) for t in texts], "text string")
    got = [r[0] for r in df.select(make_zstd_ratio_udf(5)("text")).collect()]
    assert got == list(zstd_ratios(pd.Series(texts), level=5))


def _reference(raw: bytes, level: int = 3) -> float:
    return len(raw) / len(zstandard.ZstdCompressor(level=level).compress(raw))


def test_arrow_kernel_equals_one_compress_call_per_document():
    import random

    import pyarrow as pa

    from udfs.compression import zstd_ratios_arrow

    rng = random.Random(7)
    alphabet = "abcdefgh é✓\n"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3000))) for _ in range(300)]
    texts[5] = None
    texts[9] = ""
    expected = [None if not t else _reference(t.encode("utf-8")) for t in texts]
    for array in (pa.array(texts, pa.string()), pa.array(texts, pa.large_string()),
                  pa.array([None if t is None else t.encode() for t in texts], pa.binary())):
        assert zstd_ratios_arrow(array).to_pylist() == expected
    # A slice keeps the parent's buffers and starts at an offset; chunks arrive combined.
    sliced = pa.array(texts, pa.string()).slice(100, 50)
    assert zstd_ratios_arrow(sliced).to_pylist() == expected[100:150]
    chunked = pa.chunked_array([pa.array(texts[:10]), pa.array(texts[10:])])
    assert zstd_ratios_arrow(chunked).to_pylist() == expected


def test_arrow_kernel_edge_cases():
    import pyarrow as pa
    import pytest

    from udfs.compression import zstd_ratios_arrow

    assert zstd_ratios_arrow(pa.array([], pa.string())).to_pylist() == []
    assert zstd_ratios_arrow(pa.array([None, ""], pa.string())).to_pylist() == [None, None]
    with pytest.raises(TypeError, match="string or binary"):
        zstd_ratios_arrow(pa.array([1, 2]))


def test_series_of_bytes_and_all_null():
    got = zstd_ratios(pd.Series([b"abc" * 100, None], dtype=object))
    assert got[0] == _reference(b"abc" * 100) and math.isnan(got[1])
    assert zstd_ratios(pd.Series([None, None], dtype=object)).isna().all()
