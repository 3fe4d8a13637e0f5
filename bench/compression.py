"""zstd scoring UDF throughput vs the raw kernel, and Delta (delta-rs commit) write vs plain Parquet.

    python bench/compression.py [--quick] [--docs N]

Prints, last:
    BENCH zstd_udf_vs_raw <UDF docs/s ÷ (2 × one-process docs/s)> goal>=0.8
    BENCH zstd_udf_vs_passthrough <UDF docs/s ÷ a no-work pandas UDF's docs/s> goal>=0.8
    BENCH delta_write_vs_parquet <delta write time ÷ parquet write time> goal<=1.1
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import functions as F  # noqa: E402

from jobs.lake import Lake  # noqa: E402
from jobs.session import build_session  # noqa: E402
from udfs.compression import make_zstd_ratio_udf, zstd_ratios  # noqa: E402

WORDS = ("data model token corpus quality filter score bucket train loss the of and a to in is "
         "compression entropy ratio document web page").split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(120, 220))]  # ~1 KB
        docs.append(" ".join(words))
    return docs


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=int, default=None)
    args = parser.parse_args()
    n = args.docs or (30_000 if args.quick else 200_000)
    repeats = 2 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="bench-zstd-"))
    docs = make_docs(n)
    buckets = [f"q{i % 10:02d}" for i in range(n)]
    pq.write_table(pa.table({"doc_id": [str(i) for i in range(n)], "text": docs,
                             "quality_bucket": buckets}), work / "docs.parquet")

    series = pd.Series(docs)
    raw_s = timed(lambda: zstd_ratios(series, 3), repeats)
    raw_rate = n / raw_s

    spark = build_session("local[2]", "bench-zstd", {"spark.sql.shuffle.partitions": "8"})
    df = spark.read.parquet(str(work / "docs.parquet")).repartition(8).cache()
    df.count()
    udf = make_zstd_ratio_udf(3)
    udf_s = timed(lambda: df.select(udf("text")).write.format("noop").mode("overwrite").save(),
                  repeats)
    # The ceiling for any pandas UDF here: the same column to Python and a double back, no work.
    @F.pandas_udf("double")
    def passthrough(texts: pd.Series) -> pd.Series:
        return pd.Series(0.0, index=texts.index)

    pass_s = timed(lambda: df.select(passthrough("text")).write.format("noop").mode("overwrite")
                   .save(), repeats)
    jvm_s = timed(lambda: df.select(F.length("text")).write.format("noop").mode("overwrite")
                  .save(), repeats)
    udf_rate, pass_rate, jvm_rate = n / udf_s, n / pass_s, n / jvm_s

    lake = Lake(spark, str(work / "lake"), backend="delta-rs")
    frame = df.withColumn("zstd_ratio", udf("text")).cache()
    frame.count()

    def parquet_write():
        shutil.rmtree(work / "pq", ignore_errors=True)
        frame.write.partitionBy("quality_bucket").parquet(str(work / "pq"))

    parquet_s = timed(parquet_write, repeats)
    delta_s = timed(lambda: lake.write(frame, "curated", partition_by=["quality_bucket"]), repeats)
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)

    print(f"docs: {n:,} of ~1 KB; one plain process: {raw_rate:,.0f} docs/s")
    print(f"pandas UDF on local[2]: {udf_rate:,.0f} docs/s; pass-through pandas UDF (no work): "
          f"{pass_rate:,.0f} docs/s; JVM only (length, no Python): {jvm_rate:,.0f} docs/s")
    print(f"partitioned write: parquet {parquet_s:.2f}s, delta (delta-rs commit) {delta_s:.2f}s")
    print(f"BENCH zstd_udf_vs_raw {udf_rate / (2 * raw_rate):.3f} goal>=0.8")
    print(f"BENCH zstd_udf_vs_passthrough {udf_rate / pass_rate:.3f} goal>=0.8")
    print(f"BENCH delta_write_vs_parquet {delta_s / parquet_s:.3f} goal<=1.1")


if __name__ == "__main__":
    main()
