"""score: `documents` → `scores` (doc_id, n_chars, one column per configured scorer).

Scorers run as pandas UDFs over the same scan, so adding one costs its kernel, not another read.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.base import JobReport, lake_for
from jobs.config import Config, ConfigError, ScoreSettings
from jobs.ingest import DOCUMENTS_TABLE
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


def score_documents(
    spark: SparkSession, docs: DataFrame, settings: ScoreSettings, fasttext_path: str | None = None
) -> DataFrame:
    columns = [F.col("doc_id"), F.col("n_chars")]
    for scorer in settings.scorers:
        if scorer == "zstd":
            udf = make_zstd_ratio_udf(settings.zstd_level)
        else:
            from udfs.fasttext_score import make_fasttext_udf, ship_model

            udf = make_fasttext_udf(ship_model(spark, fasttext_path), settings.fasttext_positive_label)
        columns.append(udf(F.col("text")).alias(SCORE_COLUMNS[scorer]))
    return docs.select(*columns)


def run(spark: SparkSession, cfg: Config) -> JobReport:
    lake = lake_for(spark, cfg)
    docs = lake.read(DOCUMENTS_TABLE)
    fasttext_path = fasttext_model_path(cfg) if "fasttext" in cfg.score.scorers else None
    written = lake.write(score_documents(spark, docs, cfg.score, fasttext_path), SCORES_TABLE)
    rows_in = lake.count(DOCUMENTS_TABLE)
    return JobReport(
        JOB, rows_in, written.rows,
        tables={SCORES_TABLE: written.path},
        details={"scorers": ", ".join(SCORE_COLUMNS[s] for s in cfg.score.scorers)},
    ).check_invariant()
