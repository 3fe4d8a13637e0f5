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
