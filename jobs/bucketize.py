"""bucketize: documents + a score → `curated`, partitioned by quality bucket.

Buckets are quantiles of *character mass* ranked by the score, best first (`q00` holds the best
1/n of all characters), so every bucket is an equal-size pool for the mixture law. Thresholds
come from a sample of (score, n_chars) pairs collected to the driver: no global sort.

Calibration stores the thresholds in `bucket_thresholds` (score column, direction, sample size,
the source table's version). `bucketize.mode: incremental` places new documents with the stored
thresholds and appends them to their partitions, so a document never changes bucket between
daily runs; `recalibrate: true` (and full mode) recomputes the thresholds and rewrites `curated`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.base import QUARANTINE_TABLE, JobReport, lake_for, log, write_quarantine
from jobs.core.config import BucketizeSettings, Config, ConfigError
from jobs.core.incremental import (
    appended_only,
    collected_ids,
    lookup,
    plan_output,
    restricted_to,
)
from jobs.core.lake import Lake
from jobs.ingest import DOCUMENTS_TABLE
from jobs.prefilter import (
    FILTERED_LABEL,
    PREFILTER_TABLE,
    filtered_count,
    passed_documents,
    passed_documents_to_compute,
)

CURATED_TABLE = "curated"
THRESHOLDS_TABLE = "bucket_thresholds"
JOB = "bucketize"
# The settings thresholds are calibrated for; a stored calibration with others is recomputed.
CALIBRATION_KEYS = ("score_column", "direction", "n_buckets", "keep_top_fraction", "source_table")


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


def calibrate(scored: DataFrame, settings: BucketizeSettings) -> dict:
    """Bucket thresholds and the `selected` threshold from a sample of the scored documents."""
    score = settings.score_column
    sample = sample_for_thresholds(scored, score, settings.sample_rows, settings.seed)
    fractions = [k / settings.n_buckets for k in range(1, settings.n_buckets)]
    *thresholds, keep = mass_thresholds(
        sample[score].to_numpy(), sample["n_chars"].to_numpy(),
        fractions + [settings.keep_top_fraction], settings.direction == "higher_is_better",
    )
    return {
        **{key: getattr(settings, key) for key in CALIBRATION_KEYS},
        "thresholds": thresholds, "selected_threshold": keep, "sample_rows": len(sample),
    }


def place(scored: DataFrame, calibration: dict) -> DataFrame:
    """Add quality_bucket and selected (top `keep_top_fraction` of character mass) columns."""
    score = calibration["score_column"]
    higher = calibration["direction"] == "higher_is_better"
    keep = calibration["selected_threshold"]
    selected = (F.col(score) >= keep) if higher else (F.col(score) <= keep)
    return scored.withColumn("selected", selected).withColumn(
        "quality_bucket", bucket_expression(score, calibration["thresholds"], higher)
    )


def assign_buckets(scored: DataFrame, settings: BucketizeSettings) -> tuple[DataFrame, dict]:
    """Calibrate on `scored` and place every document of it."""
    calibration = calibrate(scored, settings)
    return place(scored, calibration), {
        "thresholds": [round(t, 6) for t in calibration["thresholds"]],
        "selected_threshold": round(calibration["selected_threshold"], 6),
        "sampled_rows": calibration["sample_rows"],
    }


def store_calibration(lake: Lake, calibration: dict, source_version: int) -> int:
    """Replace the single row of `bucket_thresholds` (older calibrations stay in its history)."""
    row = {**calibration, "source_version": source_version}
    frame = lake.spark.createDataFrame(
        [row], "score_column string, direction string, n_buckets int, keep_top_fraction double, "
        "source_table string, thresholds array<double>, selected_threshold double, "
        "sample_rows long, source_version long",
    ).withColumn("calibrated_at", F.current_timestamp())
    return lake.write(frame, THRESHOLDS_TABLE, read_version=lake.version(THRESHOLDS_TABLE)).version


def stored_calibration(lake: Lake) -> dict | None:
    if not lake.exists(THRESHOLDS_TABLE):
        return None
    if lake.backend == "delta-rs":  # one row, read without a Spark job
        rows = lake.table(THRESHOLDS_TABLE).to_pyarrow_table().to_pylist()
        return rows[0] if rows else None
    row = lake.read(THRESHOLDS_TABLE).first()
    return row.asDict() if row is not None else None


def recalibration_reason(lake: Lake, settings: BucketizeSettings, stored: dict | None) -> str | None:
    """Why the stored thresholds cannot place new documents (None: they can)."""
    if settings.mode == "full":
        return "full mode"
    if settings.recalibrate:
        return "bucketize.recalibrate: true"
    if stored is None:
        return f"no `{THRESHOLDS_TABLE}` yet"
    changed = [k for k in CALIBRATION_KEYS if stored[k] != getattr(settings, k)]
    if changed:
        return f"settings {changed} differ from the stored calibration"
    if not appended_only(lake, settings.source_table, stored["source_version"]):
        return f"`{settings.source_table}` was rewritten since the calibration"
    return None


def scored_documents(
    lake: Lake, cfg: Config, docs: DataFrame, since: int | None = None
) -> tuple[DataFrame, DataFrame, int | None]:
    """(documents with a usable score, documents whose score is missing, how many are missing
    when it is known without another pass).

    since: `docs` are a day's new documents, most likely scored by the commits of the score
    table after this version; their scores are looked up by id (collected, no shuffle; among
    those commits' rows first) and joined back as a broadcast table while they fit
    spark.incremental_broadcast_mb.
    """
    settings = cfg.bucketize
    scores = lake.read(settings.source_table)
    if settings.score_column not in scores.columns:
        raise ConfigError(
            f"{cfg.source}: bucketize.score_column: {settings.score_column!r} is not in table "
            f"{settings.source_table!r} (columns: {scores.columns})"
        )
    score_cols = [c for c in scores.columns if c not in docs.columns or c == "doc_id"]
    floating = dict(scores.dtypes)[settings.score_column] in ("double", "float")
    ids = collected_ids(docs, cfg.spark.incremental_broadcast_mb) if since is not None else None
    if ids is not None:
        found = lookup(lake, settings.source_table, ids, since,
                       tuple(c for c in score_cols if c != "doc_id"))
        score = found[settings.score_column]
        usable = pc.is_valid(score)
        if floating:
            usable = pc.and_(usable, pc.invert(pc.fill_null(pc.is_nan(score), False)))
        found = found.filter(usable)
        missing_ids = ids.filter(pc.invert(pc.is_in(ids["doc_id"], found["doc_id"])))
        present = (lake.spark.createDataFrame(found) if found.num_rows
                   else scores.select(*score_cols).limit(0))
        return (docs.join(F.broadcast(present), "doc_id"), restricted_to(docs, missing_ids),
                missing_ids.num_rows)
    joined = docs.join(scores.select(*score_cols), "doc_id", "left")
    missing = F.col(settings.score_column).isNull()
    if floating:
        missing = missing | F.isnan(settings.score_column)
    return joined.filter(~missing), joined.filter(missing), None


def bucket_sizes(lake: Lake, with_chars: bool) -> dict[str, str]:
    """Documents per bucket of `curated`, from the Delta log; characters too `with_chars` (a
    scan: a full run's report has them, a daily append's reads none)."""
    docs = None if with_chars else lake.partition_counts(CURATED_TABLE, column="quality_bucket")
    if docs is not None:
        return {bucket: f"{docs[bucket]:,} docs" for bucket in sorted(docs)}
    per_bucket = (
        lake.read(CURATED_TABLE).groupBy("quality_bucket")
        .agg(F.count("*").alias("docs"), F.sum("n_chars").alias("chars"))
        .orderBy("quality_bucket").toPandas()
    )
    return {r.quality_bucket: f"{int(r.docs):,} docs, {int(r.chars):,} chars"
            for r in per_bucket.itertuples()}


def run(spark: SparkSession, cfg: Config) -> JobReport:
    lake = lake_for(spark, cfg)
    settings = cfg.bucketize
    inputs = [DOCUMENTS_TABLE, settings.source_table]
    inputs += [PREFILTER_TABLE] if cfg.prefilter.enabled else []
    source_version = lake.version(settings.source_table)
    calibration = stored_calibration(lake)
    reason = recalibration_reason(lake, settings, calibration)
    if reason is not None:
        log.info("bucketize: recalibrating the thresholds (%s)", reason)
        calibration = calibrate(scored_documents(lake, cfg, passed_documents(lake, cfg))[0],
                                settings)
        thresholds_version = store_calibration(lake, calibration, source_version)
    else:
        thresholds_version = lake.version(THRESHOLDS_TABLE)
    plan = plan_output(
        lake, CURATED_TABLE, "full" if reason else settings.mode,
        {**{k: calibration[k] for k in CALIBRATION_KEYS}, "thresholds_version": thresholds_version},
        inputs, JOB,
    )
    docs = passed_documents_to_compute(lake, cfg, plan)
    scored, missing, n_missing = scored_documents(
        lake, cfg, docs, plan.since.get(settings.source_table, -1) if plan.append else None)
    written = lake.write(
        place(scored, calibration), CURATED_TABLE, partition_by=["quality_bucket"],
        mode=plan.mode, read_version=plan.read_version, unique_key=["doc_id"],
        metadata=plan.metadata,
    )
    unplaced = missing.select(
        F.col("doc_id").alias("raw"), "source",
        F.lit(f"missing_score: {settings.score_column} is null").alias("reason"),
    )
    if plan.append and lake.exists(QUARANTINE_TABLE):
        # An append reads only new documents; those left unplaced before stay quarantined.
        if n_missing == 0:  # nothing new to add: the partition stays as it is
            quarantined = lake.count(QUARANTINE_TABLE, {"job": [JOB]})
        else:
            earlier = lake.read(QUARANTINE_TABLE, {"job": [JOB]})
            unplaced = unplaced.unionByName(earlier.select(*unplaced.columns))
            quarantined = write_quarantine(lake, unplaced.dropDuplicates(["raw"]), JOB)
    elif plan.append and n_missing == 0:
        quarantined = 0
    else:
        quarantined = write_quarantine(lake, unplaced, JOB)
    info = {
        "thresholds": [round(t, 6) for t in calibration["thresholds"]],
        "selected_threshold": round(calibration["selected_threshold"], 6),
        "sampled_rows": calibration["sample_rows"],
        "calibration": f"recalibrated ({reason})" if reason else
        f"stored thresholds ({THRESHOLDS_TABLE} version {thresholds_version})",
        "run": f"{plan.reason}; {written.rows:,} documents placed now",
        "buckets": bucket_sizes(lake, with_chars=not plan.append),
    }
    return JobReport(
        JOB, lake.count(DOCUMENTS_TABLE), lake.count(CURATED_TABLE), quarantined,
        rows_filtered=filtered_count(lake, cfg), filtered_label=FILTERED_LABEL,
        tables={CURATED_TABLE: written.path, THRESHOLDS_TABLE: lake.path(THRESHOLDS_TABLE)},
        details=info,
    ).check_invariant()
