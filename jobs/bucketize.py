"""bucketize: documents + a score → `curated`, partitioned by quality bucket.

Buckets are quantiles of *character mass* ranked by the score, best first (`q00` holds the best
1/n of all characters), so every bucket is an equal-size pool for the mixture law. Thresholds
come from a sample of (score, n_chars) pairs collected to the driver: no global sort.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.base import JobReport, lake_for, write_quarantine
from jobs.core.config import BucketizeSettings, Config, ConfigError
from jobs.ingest import DOCUMENTS_TABLE
from jobs.prefilter import FILTERED_LABEL, filtered_count, passed_documents

CURATED_TABLE = "curated"
JOB = "bucketize"


def bucket_name(index: int) -> str:
    return f"q{index:02d}"


def mass_thresholds(
    scores: np.ndarray, masses: np.ndarray, fractions: list[float], higher_is_better: bool
) -> list[float]:
    """Score at which the best documents first reach each fraction of the total mass.

    A document belongs above threshold k when it ranks at or before the point where the
    cumulative mass, sorted best first, reaches fractions[k].
    """
    scores = np.asarray(scores, dtype=float)
    masses = np.asarray(masses, dtype=float)
    if len(scores) == 0 or masses.sum() <= 0:
        raise ValueError("no scored documents with characters to place thresholds on")
    ranked = -scores if higher_is_better else scores
    order = np.argsort(ranked, kind="stable")
    cumulative = np.cumsum(masses[order]) / masses.sum()
    positions = np.searchsorted(cumulative, np.asarray(fractions) - 1e-12, side="left")
    positions = np.minimum(positions, len(order) - 1)
    thresholds = ranked[order][positions]
    return [float(-t) if higher_is_better else float(t) for t in thresholds]


def bucket_expression(score: str, thresholds: list[float], higher_is_better: bool):
    """Index of the bucket: how many thresholds the score falls strictly behind."""
    col = F.col(score)
    behind = [(col < t) if higher_is_better else (col > t) for t in thresholds]
    index = sum((b.cast("int") for b in behind), F.lit(0))
    return F.format_string("q%02d", index)


def sample_for_thresholds(scored: DataFrame, score: str, sample_rows: int, seed: int) -> pd.DataFrame:
    total = scored.count()
    fraction = min(1.0, sample_rows / max(total, 1))
    sample = scored.select(score, "n_chars")
    if fraction < 1.0:
        sample = sample.sample(fraction=fraction, seed=seed)
    return sample.toPandas()


def assign_buckets(scored: DataFrame, settings: BucketizeSettings) -> tuple[DataFrame, dict]:
    """Add quality_bucket and selected (top `keep_top_fraction` of character mass) columns."""
    score = settings.score_column
    higher = settings.direction == "higher_is_better"
    sample = sample_for_thresholds(scored, score, settings.sample_rows, settings.seed)
    fractions = [k / settings.n_buckets for k in range(1, settings.n_buckets)]
    *thresholds, keep = mass_thresholds(
        sample[score].to_numpy(), sample["n_chars"].to_numpy(),
        fractions + [settings.keep_top_fraction], higher,
    )
    selected = (F.col(score) >= keep) if higher else (F.col(score) <= keep)
    curated = scored.withColumn("selected", selected).withColumn(
        "quality_bucket", bucket_expression(score, thresholds, higher)
    )
    info = {
        "thresholds": [round(t, 6) for t in thresholds],
        "selected_threshold": round(keep, 6),
        "sampled_rows": len(sample),
    }
    return curated, info


def run(spark: SparkSession, cfg: Config) -> JobReport:
    lake = lake_for(spark, cfg)
    settings = cfg.bucketize
    docs = passed_documents(lake, cfg)
    scores = lake.read(settings.source_table)
    if settings.score_column not in scores.columns:
        raise ConfigError(
            f"{cfg.source}: bucketize.score_column: {settings.score_column!r} is not in table "
            f"{settings.source_table!r} (columns: {scores.columns})"
        )
    score_cols = [c for c in scores.columns if c not in docs.columns or c == "doc_id"]
    joined = docs.join(scores.select(*score_cols), "doc_id", "left")
    missing = F.col(settings.score_column).isNull()
    if dict(joined.dtypes)[settings.score_column] in ("double", "float"):
        missing = missing | F.isnan(settings.score_column)
    scored = joined.filter(~missing)
    curated, info = assign_buckets(scored, settings)
    written = lake.write(curated, CURATED_TABLE, partition_by=["quality_bucket"])
    quarantined = write_quarantine(
        lake,
        joined.filter(missing).select(
            F.col("doc_id").alias("raw"), "source",
            F.lit(f"missing_score: {settings.score_column} is null").alias("reason"),
        ),
        JOB,
    )
    per_bucket = (
        lake.read(CURATED_TABLE).groupBy("quality_bucket")
        .agg(F.count("*").alias("docs"), F.sum("n_chars").alias("chars"))
        .orderBy("quality_bucket").toPandas()
    )
    info["buckets"] = {
        r.quality_bucket: f"{int(r.docs):,} docs, {int(r.chars):,} chars"
        for r in per_bucket.itertuples()
    }
    return JobReport(
        JOB, lake.count(DOCUMENTS_TABLE), written.rows, quarantined,
        rows_filtered=filtered_count(lake, cfg), filtered_label=FILTERED_LABEL,
        tables={CURATED_TABLE: written.path}, details=info,
    ).check_invariant()
