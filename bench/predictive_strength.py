"""Predictive strength at 1M and 4M documents x 6 models on local[2] (`--quick`: 100K / 400K).

Synthetic losses are generated in Spark and written as Parquet partitioned by model_id (the
model_losses layout), then `compute_predictive_strength` is timed end to end (read, aggregate,
write to Spark's no-op sink). Linear scaling means the 4x input takes <= 4.4x the time.

`--compare` also times, at both sizes, the plans that were rejected:
  self_join     pairs of loss rows joined on doc_id (N(N-1)/2 rows per document shuffled)
  list_numpy    collect_list of losses per document, pairs counted by a vectorised pandas UDF
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/x.py`: import the package from the repository root.
sys.path[0] = str(Path(__file__).resolve().parents[1])
# Spark's Python workers inherit this, so they import the package from any working directory.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [sys.path[0], os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from jobs.core.session import build_session  # noqa: E402
from jobs.predictive_strength import compute_predictive_strength  # noqa: E402

BENCHMARKS = {"m7b": 40.1, "m13b": 46.9, "m30b": 57.8, "m65b": 63.4, "m3b": 31.0, "m1b": 25.2}
MISSING_FRACTION = 0.001


def write_losses(spark: SparkSession, n_docs: int, path: str) -> None:
    """Per-document difficulty + a per-model offset (stronger = lower bpc) + noise."""
    models = spark.createDataFrame(
        [(m, (70.0 - s) / 100.0) for m, s in BENCHMARKS.items()], "model_id string, offset double"
    )
    docs = spark.range(n_docs).select(
        F.lower(F.hex(F.xxhash64("id"))).alias("doc_id"),
        (F.rand(1) * 0.8 + 0.6).alias("difficulty"),
    )
    losses = (
        docs.crossJoin(F.broadcast(models))
        .select(
            "doc_id",
            "model_id",
            (F.col("difficulty") + F.col("offset") + F.randn(2) * 0.08).alias("bpc"),
        )
        .where(F.rand(3) >= MISSING_FRACTION)
    )
    losses.write.mode("overwrite").partitionBy("model_id").parquet(path)


def models_frame(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(list(BENCHMARKS.items()), "model_id string, benchmark_score double")


def time_plan(build, repeats: int) -> float:
    """Best wall time of `repeats` runs; the plan's output goes to the no-op sink."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        frame = build()
        frame.write.format("noop").mode("overwrite").save()
        best = min(best, time.perf_counter() - started)
    return best


def chosen_plan(spark: SparkSession, path: str) -> DataFrame:
    return compute_predictive_strength(spark.read.parquet(path), models_frame(spark)).scored


def self_join_plan(spark: SparkSession, path: str) -> DataFrame:
    rows = spark.read.parquet(path).join(F.broadcast(models_frame(spark)), "model_id")
    weak = rows.select("doc_id", F.col("benchmark_score").alias("s_w"), F.col("bpc").alias("c_w"))
    strong = rows.select("doc_id", F.col("benchmark_score").alias("s_s"), F.col("bpc").alias("c_s"))
    pairs = weak.join(strong, "doc_id").where(F.col("s_w") < F.col("s_s"))
    return pairs.groupBy("doc_id").agg(
        F.sum((F.col("c_w") > F.col("c_s")).cast("int")).alias("concordant_pairs"),
        F.count(F.lit(1)).alias("pairs"),
    )


def list_numpy_plan(spark: SparkSession, path: str) -> DataFrame:
    order = sorted(BENCHMARKS, key=BENCHMARKS.get)
    rank = F.create_map(*[x for i, m in enumerate(order) for x in (F.lit(m), F.lit(i))])
    n = len(order)

    @F.pandas_udf("int")
    def count_pairs(ranks: pd.Series, losses: pd.Series) -> pd.Series:
        table = np.full((len(ranks), n), np.nan)
        for row, (r, c) in enumerate(zip(ranks, losses, strict=True)):
            table[row, np.asarray(r, dtype=int)] = c
        weaker, stronger = np.triu_indices(n, 1)
        return pd.Series((table[:, weaker] > table[:, stronger]).sum(axis=1).astype("int32"))

    per_doc = (
        spark.read.parquet(path)
        .groupBy("doc_id")
        .agg(F.collect_list(rank[F.col("model_id")]).alias("r"), F.collect_list("bpc").alias("c"))
    )
    return per_doc.select("doc_id", count_pairs("r", "c").alias("concordant_pairs"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100K / 400K documents")
    parser.add_argument("--compare", action="store_true", help="also time the rejected plans")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    small = 100_000 if args.quick else 1_000_000
    sizes = (small, 4 * small)

    spark = build_session(
        master="local[2]", app_name="bench-predictive-strength",
        conf={"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "2g"},
    )
    workdir = tempfile.mkdtemp(prefix="bench_ps_")
    try:
        paths = {}
        for n_docs in sizes:
            paths[n_docs] = f"{workdir}/losses_{n_docs}"
            started = time.perf_counter()
            write_losses(spark, n_docs, paths[n_docs])
            print(f"generated {n_docs:,} docs x {len(BENCHMARKS)} models "
                  f"in {time.perf_counter() - started:.1f}s")
        check = compute_predictive_strength(spark.read.parquet(paths[small]), models_frame(spark))
        print(f"unscored documents at {small:,}: {check.unscored.count():,} "
              f"(~{MISSING_FRACTION:.1%} of loss rows dropped on purpose)")

        seconds = {}
        for n_docs in sizes:
            seconds[n_docs] = time_plan(lambda n=n_docs: chosen_plan(spark, paths[n]),
                                           args.repeats)
            print(f"conditional_agg {n_docs:>10,} docs: {seconds[n_docs]:7.2f}s "
                  f"({n_docs / seconds[n_docs]:,.0f} docs/s)")
        if args.compare:
            for name, plan in (("self_join", self_join_plan), ("list_numpy", list_numpy_plan)):
                for n_docs in sizes:
                    elapsed = time_plan(lambda p=plan, n=n_docs: p(spark, paths[n]), 1)
                    print(f"{name:15s} {n_docs:>10,} docs: {elapsed:7.2f}s "
                          f"({n_docs / elapsed:,.0f} docs/s)")
        ratio = seconds[sizes[1]] / seconds[sizes[0]]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        spark.stop()
    print(f"BENCH ps_scaling_4x {ratio:.2f} goal<=4.4")


if __name__ == "__main__":
    main()
