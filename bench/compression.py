"""zstd scoring UDF throughput vs the raw kernel, and Delta (delta-rs commit) write vs plain Parquet.

    python bench/compression.py [--quick] [--docs N]

Peers, on the same ~1 KB documents, in interleaved rounds (best of each):
  raw          the UDF's own kernel (`zstd_ratios_arrow`) on an in-memory Arrow array, one process.
  raw_loop     `ZstdCompressor(3).compress(doc.encode())` per document: the plain-library loop.
  udf          the scoring UDF on local[2], cached input, Spark's no-op sink.
  empty_udf    a UDF of the same kind that returns zeros: the engine's ceiling for any UDF.
  job_udf      the score job's shape: read the documents Parquet, score, write (doc_id, ratio).
  job_jvm      the same job with the Python kernel replaced by a JVM expression (length):
               Spark reading the same text column with no Python at all.
  job_copy     read the documents, write (doc_id, text): the text column passed through Spark's
               reader and writer, no Python (context: the "pass-through" of shared/NOTES.md).

Prints, last:
    BENCH zstd_udf_vs_raw <udf ÷ (2 × raw)> goal>=0.8
    BENCH zstd_udf_vs_passthrough <job_udf ÷ job_jvm> goal>=0.8
    BENCH delta_write_vs_parquet <delta write time ÷ parquet write time> goal<=1.1
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import functions as F  # noqa: E402

from jobs.core.lake import Lake  # noqa: E402
from jobs.core.session import build_session  # noqa: E402
from udfs.compression import make_zstd_ratio_udf, zstd_ratios_arrow  # noqa: E402

WORDS = ("data model token corpus quality filter score bucket train loss the of and a to in is "
         "compression entropy ratio document web page").split()


def make_docs(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(120, 220))]  # ~1 KB
        docs.append(" ".join(words))
    return docs


def seconds_of(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def zeros_udf():
    """A UDF of the same kind as the scorer's that does no work."""
    try:
        from pyspark.sql.functions import arrow_udf
    except ImportError:
        import pandas as pd

        @F.pandas_udf("double")
        def zeros(texts: pd.Series) -> pd.Series:
            return pd.Series(np.zeros(len(texts)))

        return zeros

    @arrow_udf("double")
    def zeros_arrow(texts: pa.Array) -> pa.Array:
        return pa.array(np.zeros(len(texts)))

    return zeros_arrow


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=int, default=None)
    args = parser.parse_args()
    n = args.docs or (30_000 if args.quick else 200_000)
    rounds = 2 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="bench-zstd-"))
    docs = make_docs(n)
    buckets = [f"q{i % 10:02d}" for i in range(n)]
    # Eight files, so the job-shaped read has eight tasks like the cached frame's partitions.
    (work / "docs").mkdir()
    for part in range(8):
        rows = slice(part * n // 8, (part + 1) * n // 8)
        pq.write_table(pa.table({"doc_id": [str(i) for i in range(n)][rows], "text": docs[rows],
                                 "quality_bucket": buckets[rows]}), work / "docs" / f"{part}.parquet")
    arrow_docs = pa.array(docs, pa.string())
    compressor = zstandard.ZstdCompressor(level=3)

    spark = build_session("local[2]", "bench-zstd", {"spark.sql.shuffle.partitions": "8"})
    source = str(work / "docs")
    df = spark.read.parquet(source).repartition(8).cache()
    df.count()
    udf, zeros = make_zstd_ratio_udf(3), zeros_udf()

    def noop(column) -> None:
        df.select(column).write.format("noop").mode("overwrite").save()

    def job(column) -> None:
        spark.read.parquet(source).select("doc_id", column.alias("score")).write.mode(
            "overwrite").parquet(str(work / "scores"))

    peers = {
        "raw": lambda: zstd_ratios_arrow(arrow_docs, 3),
        "raw_loop": lambda: [len(d) / len(compressor.compress(d)) for d in map(str.encode, docs)],
        "udf": lambda: noop(udf("text")),
        "empty_udf": lambda: noop(zeros("text")),
        "job_udf": lambda: job(udf("text")),
        "job_jvm": lambda: job(F.length("text").cast("double")),
        "job_copy": lambda: job(F.col("text")),
    }
    noop(udf("text"))  # warm the Python workers
    rate = dict.fromkeys(peers, 0.0)
    for _ in range(rounds):
        for name, run in peers.items():
            rate[name] = max(rate[name], n / seconds_of(run))

    lake = Lake(spark, str(work / "lake"), backend="delta-rs")
    frame = df.withColumn("zstd_ratio", udf("text")).cache()
    frame.count()

    def parquet_write():
        shutil.rmtree(work / "pq", ignore_errors=True)
        frame.write.partitionBy("quality_bucket").parquet(str(work / "pq"))

    def delta_write():
        lake.write(frame, "curated", partition_by=["quality_bucket"])

    parquet_write(), delta_write()  # warm-up: the first write of each pays the JIT
    writes = {"parquet": [], "delta": []}
    # Interleaved in alternating order: drifting load, and the disk still flushing the
    # previous write's ~200 MB, then hit both alike.
    for round_ in range(2 * rounds):
        pair = [("parquet", parquet_write), ("delta", delta_write)]
        for name, write in pair if round_ % 2 == 0 else pair[::-1]:
            writes[name].append(seconds_of(write))
    parquet_s, delta_s = statistics.median(writes["parquet"]), statistics.median(writes["delta"])
    spark.stop()
    shutil.rmtree(work, ignore_errors=True)

    print(f"docs: {n:,} of ~1 KB; load average at the end {os.getloadavg()}")
    print(f"raw kernel (Arrow), 1 process: {rate['raw']:10,.0f} docs/s")
    print(f"raw compress() loop, 1 process:{rate['raw_loop']:10,.0f} docs/s")
    print(f"UDF, local[2], cached -> noop:  {rate['udf']:10,.0f} docs/s")
    print(f"empty UDF, cached -> noop:     {rate['empty_udf']:10,.0f} docs/s (engine ceiling)")
    print(f"score job, parquet -> parquet: {rate['job_udf']:10,.0f} docs/s")
    print(f"same job, JVM length instead:  {rate['job_jvm']:10,.0f} docs/s (no Python)")
    print(f"copy job, text passed through: {rate['job_copy']:10,.0f} docs/s (no Python)")
    print(f"partitioned write: parquet {parquet_s:.2f}s, delta (delta-rs commit) {delta_s:.2f}s")
    print(f"BENCH zstd_udf_vs_raw {rate['udf'] / (2 * rate['raw']):.3f} goal>=0.8")
    print(f"BENCH zstd_udf_vs_raw_loop {rate['udf'] / (2 * rate['raw_loop']):.3f} goal>=0.8")
    print(f"BENCH zstd_udf_vs_empty_udf {rate['udf'] / rate['empty_udf']:.3f}")
    print(f"BENCH zstd_udf_vs_passthrough {rate['job_udf'] / rate['job_jvm']:.3f} goal>=0.8")
    print(f"BENCH zstd_job_vs_text_copy_job {rate['job_udf'] / rate['job_copy']:.3f}")
    print(f"BENCH delta_write_vs_parquet {delta_s / parquet_s:.3f} goal<=1.1")


if __name__ == "__main__":
    from bench.same_env import rerun_with_worker_env

    rerun_with_worker_env()
    main()
