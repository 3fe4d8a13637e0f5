"""score: `documents` → `scores` (doc_id, n_chars, one column per configured scorer).

Scorers run as pandas UDFs over the same scan, so adding one costs its kernel, not another read.
`score.mode: incremental` scores only passed documents without a score yet and appends them, as
long as the settings recorded with the scores (scorers, zstd level, fastText model digest) still
hold (jobs/core/incremental.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.base import JobReport, lake_for
from jobs.core.config import Config, ConfigError, ScoreSettings
from jobs.core.incremental import file_digest, plan_output
from jobs.ingest import DOCUMENTS_TABLE
from jobs.prefilter import (
    FILTERED_LABEL,
    PREFILTER_TABLE,
    filtered_count,
    passed_documents_to_compute,
)
from udfs.compression import make_zstd_ratio_udf

SCORES_TABLE = "scores"
JOB = "score"
SCORE_COLUMNS = {"zstd": "zstd_ratio", "fasttext": "fasttext_score"}


def fasttext_model_path(cfg: Config) -> str:
    path = cfg.score.fasttext_model or str(Path(cfg.preselect.model_dir) / "model.bin")
    if "://" not in path and not Path(path).exists():
        raise ConfigError(
            f"{cfg.source}: score.fasttext_model: no model at {path!r}; run train_classifier "
            "first or point score.fasttext_model at a fastText .bin"
        )
    return path


def ship_model(spark: SparkSession, path: str) -> str:
    """Ship a model file to every executor with addFile; returns the name to resolve it by there.

    The name carries a digest of the path and mtime: Spark refuses a second file of the same
    name, and a retrained model must not be mistaken for the one shipped before it.
    """
    local = Path(path)
    stamp = f"{local.resolve()}:{local.stat().st_mtime_ns}" if local.exists() else path
    name = f"model-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}{local.suffix or '.bin'}"
    if not local.exists():  # a cluster URI (s3a://, dbfs:/ ...): Spark fetches it itself
        spark.sparkContext.addFile(path)
        return os.path.basename(path)
    staged = Path(tempfile.gettempdir()) / "siftlake-shipped" / name
    if not staged.exists():
        staged.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(local, staged)
        except OSError:
            shutil.copyfile(local, staged)
    try:
        spark.sparkContext.addFile(str(staged))
    except Exception as exc:  # already shipped in this session: same name means same file
        if "already registered" not in str(exc):
            raise
    return name


def fasttext_model_ref(spark: SparkSession, path: str) -> str:
    """The reference the UDF resolves on executors: the path itself when the executors' daemon
    preloaded it (its workers find it in their cache), else the name of a shipped copy."""
    from udfs.preload_daemon import PRELOAD_ENV

    preloaded = (spark.sparkContext.environment.get(PRELOAD_ENV) or "").split(os.pathsep)
    absolute = os.path.abspath(path) if "://" not in path else path
    return absolute if absolute in preloaded else ship_model(spark, path)


def score_documents(
    spark: SparkSession, docs: DataFrame, settings: ScoreSettings, fasttext_path: str | None = None
) -> DataFrame:
    columns = [F.col("doc_id"), F.col("n_chars")]
    for scorer in settings.scorers:
        if scorer == "zstd":
            udf = make_zstd_ratio_udf(settings.zstd_level)
        else:
            from udfs.fasttext_score import make_fasttext_udf

            udf = make_fasttext_udf(
                fasttext_model_ref(spark, fasttext_path), settings.fasttext_positive_label
            )
        columns.append(udf(F.col("text")).alias(SCORE_COLUMNS[scorer]))
    return docs.select(*columns)


def score_settings(cfg: Config, fasttext_path: str | None) -> dict:
    """What the scores depend on: a change makes an incremental run recompute them all."""
    settings: dict = {"scorers": list(cfg.score.scorers), "prefilter": cfg.prefilter.enabled}
    if "zstd" in cfg.score.scorers:
        settings["zstd_level"] = cfg.score.zstd_level
    if "fasttext" in cfg.score.scorers:
        settings["fasttext_model_sha256"] = file_digest(fasttext_path)
        settings["fasttext_positive_label"] = cfg.score.fasttext_positive_label
    return settings


def run(spark: SparkSession, cfg: Config) -> JobReport:
    lake = lake_for(spark, cfg)
    fasttext_path = fasttext_model_path(cfg) if "fasttext" in cfg.score.scorers else None
    inputs = [DOCUMENTS_TABLE] + ([PREFILTER_TABLE] if cfg.prefilter.enabled else [])
    plan = plan_output(
        lake, SCORES_TABLE, cfg.score.mode, score_settings(cfg, fasttext_path), inputs, JOB
    )
    docs = passed_documents_to_compute(lake, cfg, plan)
    written = lake.write(
        score_documents(spark, docs, cfg.score, fasttext_path), SCORES_TABLE, mode=plan.mode,
        read_version=plan.read_version, unique_key=["doc_id"], metadata=plan.metadata,
    )
    return JobReport(
        JOB, lake.count(DOCUMENTS_TABLE), lake.count(SCORES_TABLE),
        rows_filtered=filtered_count(lake, cfg), filtered_label=FILTERED_LABEL,
        tables={SCORES_TABLE: written.path},
        details={
            "scorers": ", ".join(SCORE_COLUMNS[s] for s in cfg.score.scorers),
            "run": f"{plan.reason}; {written.rows:,} documents scored now",
        },
    ).check_invariant()
