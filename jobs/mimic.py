"""Grad-Mimic Spark transforms: score documents per checkpoint, aggregate checkpoints into a filter.

`score_mimic` adds one checkpoint's scores (run it once per saved step θ_t and union the results
into `mimic_scores`). `aggregate_mimic` turns `mimic_scores` into one row per document with the
mean score and the voted keep flag (udfs/mimic_aggregate.py documents the binarisation). Both
`mimic_mean` (double) and `mimic_keep` (boolean) can serve bucketize as ranking columns.

Thresholds are per checkpoint: "uniform" is exact (two aggregations over all scores: the max,
then the sum of exp((m − max) / T)); "two_means" / "gmm" are fitted on the driver from a sample
of at most `max_sample_rows` scores per checkpoint (all of them when fewer), never a global sort.
`aggregate_mimic` runs three Spark actions over its input: give it the stored `mimic_scores`
table (or a cached DataFrame), not the `score_mimic` plan, which would score everything again.
"""

from __future__ import annotations

import math
from numbers import Integral

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StructField, StructType

from udfs.mimic import HEAD_LAYER
from udfs.mimic_aggregate import (
    BINARISE_METHODS,
    FRACTION_EPSILON,
    METHOD_ALIASES,
    binarise_threshold,
    votes_needed,
)
from udfs.mimic_udf import make_mimic_udf

MIMIC_SCORES_COLUMNS = ("doc_id", "checkpoint", "score", "cosine", "error")
MIMIC_AGGREGATE_COLUMNS = ("doc_id", "mimic_mean", "mimic_keep", "mimic_votes", "n_checkpoints")


def _require_columns(df: DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {df.columns}")


def score_mimic(
    docs: DataFrame,
    *,
    checkpoint: str,
    current_path: str,
    reference_path: str,
    layer: str = HEAD_LAYER,
    dtype: str = "auto",
    max_length: int | None = None,
    batch_size: int = 8,
    method: str = "auto",
) -> DataFrame:
    """docs(doc_id, text) -> (doc_id, checkpoint, score, cosine, error) for one checkpoint θ_t."""
    _require_columns(docs, ("doc_id", "text"), "docs")
    if not isinstance(checkpoint, str) or not checkpoint:
        raise ValueError(f"checkpoint must be a non-empty name, got {checkpoint!r}")
    udf = make_mimic_udf(
        current_path,
        reference_path,
        layer=layer,
        dtype=dtype,
        max_length=max_length,
        batch_size=batch_size,
        method=method,
    )
    scored = docs.select("doc_id", udf(F.col("text")).alias("mimic"))
    return scored.select(
        "doc_id",
        F.lit(checkpoint).alias("checkpoint"),
        F.col("mimic.score").alias("score"),
        F.col("mimic.cosine").alias("cosine"),
        F.col("mimic.error").alias("error"),
    )


def _checkpoint_counts(valid: DataFrame) -> pd.DataFrame:
    counts = (
        valid.groupBy("checkpoint")
        .agg(
            F.count("*").alias("n"),
            F.countDistinct("doc_id").alias("n_docs"),
            F.min("score").alias("bottom"),
            F.max("score").alias("top"),
        )
        .toPandas()
    )
    repeated = counts[counts["n"] != counts["n_docs"]]
    if not repeated.empty:
        row = repeated.iloc[0]
        raise ValueError(
            f"mimic scores must have one row per (doc_id, checkpoint); checkpoint "
            f"{row['checkpoint']!r} has {row['n'] - row['n_docs']} repeated doc_id rows"
        )
    return counts


def _uniform_thresholds(valid: DataFrame, counts: pd.DataFrame, temperature: float) -> dict:
    """T·(logsumexp(m/T) − ln n) per checkpoint, exact: Σ exp((m − max)/T) is one aggregation."""
    spark = valid.sparkSession
    tops = spark.createDataFrame(counts[["checkpoint", "top"]])
    sums = (
        valid.join(F.broadcast(tops), "checkpoint")
        .groupBy("checkpoint")
        .agg(F.sum(F.exp((F.col("score") - F.col("top")) / temperature)).alias("sum_exp"))
        .toPandas()
        .set_index("checkpoint")["sum_exp"]
    )
    thresholds = {}
    for row in counts.itertuples():
        if row.top == row.bottom:  # no preference: nobody beats the uniform weight
            thresholds[row.checkpoint] = float(row.top)
        else:
            log_mean_exp = math.log(sums[row.checkpoint]) - math.log(row.n)
            thresholds[row.checkpoint] = float(row.top + temperature * log_mean_exp)
    return thresholds


def _fitted_thresholds(
    valid: DataFrame,
    counts: pd.DataFrame,
    method: str,
    max_sample_rows: int,
    sample_fraction: float | None,
    seed: int,
) -> dict:
    fractions = {
        row.checkpoint: sample_fraction or min(1.0, max_sample_rows / row.n)
        for row in counts.itertuples()
    }
    sample = valid if all(f >= 1.0 for f in fractions.values()) else valid.sampleBy(
        "checkpoint", fractions, seed
    )
    sampled = sample.select("checkpoint", "score").toPandas()
    thresholds = {}
    for checkpoint in counts["checkpoint"]:
        scores = sampled.loc[sampled["checkpoint"] == checkpoint, "score"].to_numpy()
        if scores.size == 0:
            raise ValueError(
                f"the sample of checkpoint {checkpoint!r} is empty; raise sample_fraction"
            )
        thresholds[checkpoint] = binarise_threshold(scores, method)
    return thresholds


def aggregate_mimic(
    scores: DataFrame,
    *,
    method: str = "uniform",
    min_votes: int | float | None = None,
    temperature: float = 1.0,
    max_sample_rows: int = 200_000,
    sample_fraction: float | None = None,
    seed: int = 0,
) -> DataFrame:
    """mimic_scores -> (doc_id, mimic_mean, mimic_keep, mimic_votes, n_checkpoints).

    `min_votes`: None = strict majority of the document's scored checkpoints, an int = that many
    keep votes, a float in [0, 1] = that fraction (rounded up). Rows with a null score cast no
    vote; a document with no score at all keeps its row with nulls and n_checkpoints = 0.
    """
    _require_columns(scores, ("doc_id", "checkpoint", "score"), "mimic scores")
    method = METHOD_ALIASES.get(method, method)
    if method not in BINARISE_METHODS:
        raise ValueError(f"method must be one of {BINARISE_METHODS} (or 'kmeans'), got {method!r}")
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if sample_fraction is not None and not 0 < sample_fraction <= 1:
        raise ValueError(f"sample_fraction must be in (0, 1], got {sample_fraction}")
    votes_needed([1], min_votes)  # validates min_votes on the driver

    valid = scores.where(F.col("score").isNotNull() & ~F.isnan("score")).select(
        "doc_id", "checkpoint", F.col("score").cast("double").alias("score")
    )
    counts = _checkpoint_counts(valid)
    if counts.empty:  # every score failed: each document keeps a row with nulls
        thresholds = {}
    elif method == "uniform":
        thresholds = _uniform_thresholds(valid, counts, temperature)
    else:
        thresholds = _fitted_thresholds(
            valid, counts, method, max_sample_rows, sample_fraction, seed
        )
    threshold_schema = StructType(
        [valid.schema["checkpoint"], StructField("threshold", DoubleType(), nullable=False)]
    )
    threshold_df = scores.sparkSession.createDataFrame(
        list(thresholds.items()), schema=threshold_schema
    )
    per_doc = (
        valid.join(F.broadcast(threshold_df), "checkpoint")
        .groupBy("doc_id")
        .agg(
            F.avg("score").alias("mimic_mean"),
            F.sum((F.col("score") > F.col("threshold")).cast("long")).alias("mimic_votes"),
            F.count("*").alias("n_checkpoints"),
        )
    )
    n = F.coalesce(F.col("n_checkpoints"), F.lit(0)).cast("long")
    votes = F.coalesce(F.col("mimic_votes"), F.lit(0)).cast("long")
    return (
        scores.select("doc_id").distinct()
        .join(per_doc, "doc_id", "left")
        .select(
            "doc_id",
            "mimic_mean",
            F.when(n > 0, votes >= _needed_votes(n, min_votes)).alias("mimic_keep"),
            votes.alias("mimic_votes"),
            n.alias("n_checkpoints"),
        )
    )


def _needed_votes(n: F.Column, min_votes: int | float | None) -> F.Column:
    """The Spark twin of udfs.mimic_aggregate.votes_needed."""
    if min_votes is None:
        return F.floor(n / 2) + 1
    if isinstance(min_votes, Integral):
        return F.lit(int(min_votes))
    return F.ceil(F.lit(float(min_votes)) * n - FRACTION_EPSILON)


MIMIC_SCORES_TABLE = "mimic_scores"
MIMIC_AGGREGATE_TABLE = "mimic_aggregate"


def checkpoint_settings(cfg, path: str) -> dict:
    """What one checkpoint's scores depend on: a change recomputes its partition."""
    from jobs.core.incremental import file_digest

    settings = cfg.mimic
    return {
        "checkpoint_sha256": file_digest(path),
        "reference_sha256": file_digest(settings.reference_path),
        "layer": settings.layer, "method": settings.method, "dtype": settings.dtype,
        "max_length": settings.max_length, "sample_fraction": settings.sample_fraction,
        "seed": settings.seed, "prefilter": cfg.prefilter.enabled,
    }


def run(spark, cfg):
    """Score the documents for every configured checkpoint; one `mimic_scores` partition each.

    In incremental mode each checkpoint scores only the documents its partition lacks, while
    the settings recorded with the partition still hold (jobs/core/incremental.py).
    """
    from jobs.core.base import JobReport, lake_for
    from jobs.core.config import ConfigError
    from jobs.core.errors import require_local_path
    from jobs.core.incremental import write_scope
    from jobs.core.lake import sanitize_partition_value
    from jobs.lm_loss import sample_documents
    from jobs.prefilter import PREFILTER_TABLE, filtered_count, left_out_label, passed_documents

    settings = cfg.mimic
    if not settings.reference_path or not settings.checkpoints:
        raise ConfigError(
            f"{cfg.source}: mimic.reference_path and mimic.checkpoints must both be set"
        )
    fix = ("run 'siftlake demo_models' (it saves the demo run) or set mimic.reference_path and "
           "mimic.checkpoints")
    require_local_path(settings.reference_path, "mimic.reference_path", fix)
    for name, path in settings.checkpoints.items():
        require_local_path(path, f"mimic.checkpoints.{name}", fix)
    lake = lake_for(spark, cfg)
    docs = passed_documents(lake, cfg)
    if settings.sample_fraction:
        docs = sample_documents(docs, fraction=settings.sample_fraction, seed=settings.seed)
    n_docs, n_documents = docs.count(), lake.count("documents")
    inputs = ["documents"] + ([PREFILTER_TABLE] if cfg.prefilter.enabled else [])
    rows_out, errors, runs = 0, 0, {}
    for name, path in settings.checkpoints.items():
        checkpoint = sanitize_partition_value(name)
        plan, written = write_scope(
            lake, docs.select("doc_id", "text"), lambda todo, c=checkpoint, p=path: score_mimic(
                todo, checkpoint=c, current_path=p, reference_path=settings.reference_path,
                layer=settings.layer, dtype=settings.dtype, max_length=settings.max_length,
                batch_size=settings.batch_size, method=settings.method,
            ),
            table=MIMIC_SCORES_TABLE, column="checkpoint", scope=checkpoint,
            mode=settings.mode, settings=checkpoint_settings(cfg, path), inputs=inputs,
            job="mimic", broadcast_mb=cfg.spark.incremental_broadcast_mb,
        )
        runs[checkpoint] = f"{written.rows:,} documents scored now ({plan.mode})"
        partition = lake.read(MIMIC_SCORES_TABLE, {"checkpoint": [checkpoint]})
        rows_out += partition.count()
        errors += partition.where(F.col("error").isNotNull()).count()
    n_checkpoints = len(settings.checkpoints)
    return JobReport(
        "mimic", n_documents * n_checkpoints, rows_out,
        rows_filtered=(n_documents - n_docs) * n_checkpoints,
        filtered_label=left_out_label(cfg, bool(settings.sample_fraction)),
        tables={MIMIC_SCORES_TABLE: lake.path(MIMIC_SCORES_TABLE)},
        details={"checkpoints": ", ".join(settings.checkpoints), "documents scored": n_docs,
                 "documents filtered by rules": filtered_count(lake, cfg),
                 "rows_without_score": errors,
                 **{f"checkpoint {c}": outcome for c, outcome in runs.items()}},
    ).check_invariant()


def run_aggregate(spark, cfg):
    """Binarise per checkpoint, vote, keep the mean: `mimic_aggregate` (a bucketize source)."""
    from jobs.core.base import JobReport, lake_for

    settings = cfg.mimic
    lake = lake_for(spark, cfg)
    scores = lake.read(MIMIC_SCORES_TABLE)
    min_votes = settings.min_votes
    if min_votes is not None and min_votes >= 1:
        min_votes = int(min_votes)
    aggregated = aggregate_mimic(
        scores, method=settings.aggregate_method, min_votes=min_votes,
        temperature=settings.temperature, max_sample_rows=settings.threshold_sample_rows,
        seed=settings.seed,
    )
    written = lake.write(aggregated, MIMIC_AGGREGATE_TABLE)
    kept = lake.read(MIMIC_AGGREGATE_TABLE).where(F.col("mimic_keep")).count()
    n_docs = scores.select("doc_id").distinct().count()
    return JobReport(
        "mimic_aggregate", n_docs, written.rows,
        tables={MIMIC_AGGREGATE_TABLE: written.path},
        details={"kept": kept, "method": settings.aggregate_method},
    ).check_invariant()
