"""ingest: raw JSONL / Parquet / Delta → `documents`, bad rows → `quarantine` with a reason.

documents: doc_id, text, source, n_chars, n_bytes, meta (JSON of the record's other fields).
doc_id is the configured id column, else the SHA-256 of the text (so identical texts collide and
the copies are quarantined as duplicates: joins on doc_id stay one-to-one).
"""

from __future__ import annotations

import glob
import os
from urllib.parse import urlparse

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StringType

from jobs.core.base import JobReport, lake_for, log, write_quarantine
from jobs.core.config import Config, ConfigError, IngestSettings
from jobs.core.lake import Lake
from udfs.parse_jsonl import make_parse_udf

DOCUMENTS_TABLE = "documents"
JOB = "ingest"


def expand_paths(patterns: list[str], source: str = "config") -> list[str]:
    """Local globs are expanded here so a typo fails fast; remote URIs go to Spark as they are."""
    paths: list[str] = []
    for pattern in patterns:
        if urlparse(pattern).scheme not in ("", "file"):
            paths.append(pattern)
            continue
        local = urlparse(pattern).path if pattern.startswith("file:") else pattern
        matches = sorted(glob.glob(local)) if glob.has_magic(local) else [local]
        matches = [m for m in matches if os.path.exists(m)]
        if not matches:
            raise ConfigError(f"{source}: ingest.paths: nothing matches {pattern!r}")
        # Absolute: Spark resolves relative paths against the JVM's working directory, which
        # need not be Python's (a session started elsewhere, a notebook).
        paths.extend(os.path.abspath(m) for m in matches)
    return paths


def read_raw(spark: SparkSession, settings: IngestSettings, lake: Lake, source: str) -> DataFrame:
    """One row per input record with a uniform shape for `flag_records`.

    Columns: text, raw_id, source_value, meta, raw, reason (null = usable so far), source, seq.
    """
    paths = expand_paths(settings.paths, source)
    if settings.format == "jsonl":
        lines = spark.read.text(paths).select(
            F.col("value").cast("binary").alias("line"),
            F.col("_metadata.file_path").alias("source"),
        )
        parse = make_parse_udf(
            settings.text_column, settings.id_column, settings.source_column,
            settings.quarantine_raw_max_chars,
        )
        parsed = lines.select(parse("line").alias("p"), "source")
        return parsed.select("p.*", "source").withColumn("seq", F.monotonically_increasing_id())
    if settings.format == "parquet":
        frame = spark.read.parquet(*paths).withColumn("source", F.col("_metadata.file_path"))
    else:
        frames = [lake.read_path(p).withColumn("source", F.lit(p)) for p in paths]
        frame = frames[0]
        for other in frames[1:]:
            frame = frame.unionByName(other, allowMissingColumns=True)
    return _columnar_records(frame, settings, source)


def _columnar_records(frame: DataFrame, settings: IngestSettings, source: str) -> DataFrame:
    columns = dict(frame.dtypes)
    text_col = settings.text_column
    if text_col not in columns:
        raise ConfigError(
            f"{source}: ingest.text_column: input has no column {text_col!r} (has {sorted(columns)})"
        )
    text_type = frame.schema[text_col].dataType
    if not isinstance(text_type, (StringType, BinaryType)):
        raise ConfigError(
            f"{source}: ingest.text_column: column {text_col!r} is {columns[text_col]}, not string"
        )
    for key in ("id_column", "source_column"):
        name = getattr(settings, key)
        if name is not None and name not in columns:
            raise ConfigError(f"{source}: ingest.{key}: input has no column {name!r}")
    text = F.col(text_col)
    invalid = F.lit(False)
    if isinstance(text_type, BinaryType):
        invalid = ~F.is_valid_utf8(text.cast("string"))
        text = text.cast("string")
    meta_cols = [c for c in frame.columns
                 if c not in (text_col, settings.id_column, settings.source_column, "source")]
    meta = F.to_json(F.struct(*meta_cols)) if meta_cols else F.lit("{}")
    raw = F.substring(
        F.to_json(F.struct(*[c for c in frame.columns if c != "source"])), 1,
        settings.quarantine_raw_max_chars,
    )
    raw_id = F.col(settings.id_column).cast("string") if settings.id_column else F.lit(None)
    source_value = (
        F.col(settings.source_column).cast("string") if settings.source_column else F.lit(None)
    )
    reason = (
        F.when(F.col(text_col).isNull(), F.lit(f"missing_text: {text_col!r} is null"))
        .when(invalid, F.lit("invalid_utf8"))
        .when(F.trim(text) == "", F.lit("empty_text"))
    )
    if settings.id_column:
        reason = reason.when(raw_id.isNull(), F.lit(f"missing_id: {settings.id_column!r} is null"))
    return frame.select(
        F.when(reason.isNull(), text).alias("text"),
        raw_id.alias("raw_id"),
        source_value.alias("source_value"),
        meta.alias("meta"),
        raw.alias("raw"),
        reason.alias("reason"),
        F.col("source"),
    ).withColumn("seq", F.monotonically_increasing_id())


def flag_records(records: DataFrame, settings: IngestSettings) -> DataFrame:
    """Add doc_id, sizes and the final reason (size limit, duplicates) to every record."""
    text = F.col("text")
    doc_id = F.col("raw_id") if settings.id_column else F.sha2(text, 256)
    flagged = records.select(
        F.when(F.col("reason").isNull(), doc_id).alias("doc_id"),
        "text",
        F.coalesce(F.col("source_value"), F.col("source")).alias("source"),
        F.char_length(text).cast("long").alias("n_chars"),
        F.octet_length(text).cast("long").alias("n_bytes"),
        "meta", "raw", "seq",
        F.when(
            F.col("reason").isNull() & (F.octet_length(text) > settings.max_doc_bytes),
            F.concat(F.lit("too_large: "), F.octet_length(text).cast("string"),
                     F.lit(f" bytes > {settings.max_doc_bytes}")),
        ).otherwise(F.col("reason")).alias("reason"),
    )
    # The first occurrence (by input file, then position) keeps the id; later copies are quarantined.
    first = Window.partitionBy("doc_id").orderBy("source", "seq")
    occurrence = F.when(
        F.col("reason").isNull(), F.row_number().over(first)
    )
    return flagged.withColumn("occurrence", occurrence).withColumn(
        "reason",
        F.when(F.col("occurrence") > 1, F.lit("duplicate_id")).otherwise(F.col("reason")),
    ).drop("occurrence")


def documents_of(flagged: DataFrame) -> DataFrame:
    return flagged.filter(F.col("reason").isNull()).select(
        "doc_id", "text", "source", "n_chars", "n_bytes", "meta"
    )


def quarantined_of(flagged: DataFrame) -> DataFrame:
    return flagged.filter(F.col("reason").isNotNull()).select("raw", "source", "reason")


def run(spark: SparkSession, cfg: Config) -> JobReport:
    lake = lake_for(spark, cfg)
    records = read_raw(spark, cfg.ingest, lake, cfg.source)
    flagged = flag_records(records, cfg.ingest).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows_in = flagged.count()
        log.info("ingest: %d input records", rows_in)
        written = lake.write(documents_of(flagged), DOCUMENTS_TABLE)
        quarantined = write_quarantine(lake, quarantined_of(flagged), JOB)
        reasons = {
            r["code"]: r["count"]
            for r in quarantined_of(flagged)
            .groupBy(F.split("reason", ":")[0].alias("code")).count().collect()
        }
    finally:
        flagged.unpersist()
    return JobReport(
        JOB, rows_in, written.rows, quarantined,
        tables={DOCUMENTS_TABLE: written.path, "quarantine": lake.path("quarantine")},
        details={"quarantine_reasons": dict(sorted(reasons.items()))},
    ).check_invariant()
