"""ingest: raw JSONL / Parquet / Delta → `documents`, bad rows → `quarantine` with a reason.

documents: doc_id, text, source, n_chars, n_bytes, meta (JSON of the record's other fields).
doc_id is the configured id column, else the SHA-256 of the text (so identical texts collide and
the copies are quarantined as duplicates: joins on doc_id stay one-to-one).

Nothing corpus-sized is cached or collected, so memory stays flat however large the input:
- per record (`read_lines` + `parse_records`, or `columnar_records`, then `flag_records`): parse,
  validate and size each record; these take any DataFrame of raw lines or records, e.g. one
  micro-batch;
- corpus-wide (`duplicate_copies`): the first occurrence of each doc_id (by input file, then
  position) is found on the narrow columns doc_id, file, block, seq alone; only the positions of
  later copies are kept (cached: small and narrow), and every write drops or quarantines rows
  by a broadcast join on `seq`, so no text is shuffled while the copies stay under
  `spark.sql.autoBroadcastJoinThreshold` (beyond it Spark falls back to a spilling sort-merge
  join: slower, still flat);
- counts: rows in from one JVM-only pass over the input (JSONL) or the file footers (Parquet),
  rows out and quarantined from what the writes committed (Delta file statistics).
"""

from __future__ import annotations

import glob
import os
from urllib.parse import urlparse

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, BinaryType, MapType, StringType, StructType

from jobs.core.base import QUARANTINE_TABLE, JobReport, lake_for, log, write_quarantine
from jobs.core.config import Config, ConfigError, IngestSettings
from jobs.core.lake import Lake
from udfs.parse_jsonl import make_parse_udf

DOCUMENTS_TABLE = "documents"
JOB = "ingest"
# A character that shows something: not whitespace/separator (Z*), control (Cc) or format (Cf);
# the same classes as udfs.parse_jsonl.INVISIBLE_CATEGORIES, for columnar inputs.
VISIBLE_CHAR_REGEX = r"[^\p{Z}\p{Cc}\p{Cf}]"
POSITION_COLUMNS = ["file", "block", "seq", "row"]


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


# -- per record ---------------------------------------------------------------------------------

def read_lines(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Raw JSONL lines: line (bytes), file, block (start byte of the file split it was read in),
    seq (unique; consecutive within a split, which `line_numbers` relies on)."""
    return spark.read.text(paths).select(
        F.col("value").cast("binary").alias("line"),
        F.col("_metadata.file_path").alias("file"),
        F.col("_metadata.file_block_start").alias("block"),
    ).withColumn("seq", F.monotonically_increasing_id())


def parse_records(lines: DataFrame, settings: IngestSettings) -> DataFrame:
    """Lines (columns line, file, block, seq) → one record per line with a uniform shape.

    Columns: text, raw_id, source_value, meta, raw, reason (null = usable so far), file, block,
    seq, row (null: JSONL line numbers come from `line_numbers`).
    """
    # Non-deterministic for the optimizer only (the parse is pure): a filter on its output is
    # then not pushed below the projection, which made Spark run the parse twice per pass.
    parse = make_parse_udf(
        settings.text_column, settings.id_column, settings.source_column,
        settings.quarantine_raw_max_chars,
    ).asNondeterministic()
    parsed = lines.select(parse("line").alias("p"), "line", "file", "block", "seq")
    # The kernel keeps the line only for its own rejects; a later duplicate takes it from here
    # (computed only for quarantined rows: the documents write prunes this column).
    line_raw = F.substring(F.make_valid_utf8(F.col("line").cast("string")), 1,
                           settings.quarantine_raw_max_chars)
    return parsed.select(
        "p.text", "p.raw_id", "p.source_value", "p.meta",
        F.coalesce(F.col("p.raw"), line_raw).alias("raw"),
        "p.reason", "file", "block", "seq", F.lit(None).cast("long").alias("row"),
    )


def read_columnar(
    spark: SparkSession, settings: IngestSettings, lake: Lake, paths: list[str]
) -> DataFrame:
    """Parquet or Delta input with columns file, block, row (1-based in its file, Parquet only)."""
    if settings.format == "parquet":
        return spark.read.parquet(*paths).select(
            "*", F.col("_metadata.file_path").alias("file"),
            F.col("_metadata.file_block_start").alias("block"),
            (F.col("_metadata.row_index") + 1).alias("row"),
        )
    frames = [
        lake.read_path(p).select("*", F.lit(p).alias("file"), F.lit(0).cast("long").alias("block"),
                                 F.lit(None).cast("long").alias("row"))
        for p in paths
    ]
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.unionByName(other, allowMissingColumns=True)
    return frame


def _invalid_utf8(column: str, data_type) -> F.Column | None:
    """Spark strings are UTF-8 bytes unchecked: a lone surrogate (CESU bytes ED A0 80) or any
    other invalid sequence would only fail later, when Arrow hands the string to Python."""
    if isinstance(data_type, StringType):
        return ~F.is_valid_utf8(F.col(column))
    if isinstance(data_type, (StructType, ArrayType, MapType)):
        # A cast to string keeps the bytes; to_json would silently replace them.
        return ~F.is_valid_utf8(F.col(column).cast("string"))
    return None


def columnar_records(frame: DataFrame, settings: IngestSettings, source: str) -> DataFrame:
    """Parquet/Delta rows (with file, block, row) → the record shape of `parse_records`."""
    positions = set(POSITION_COLUMNS) - {"seq"}
    frame = frame.withColumn("seq", F.monotonically_increasing_id())
    data_columns = [c for c in frame.columns if c not in positions and c != "seq"]
    columns = {c: frame.schema[c].dataType for c in data_columns}
    text_col = settings.text_column
    if text_col not in columns:
        raise ConfigError(
            f"{source}: ingest.text_column: input has no column {text_col!r} (has {sorted(columns)})"
        )
    text_type = columns[text_col]
    if not isinstance(text_type, (StringType, BinaryType)):
        raise ConfigError(
            f"{source}: ingest.text_column: column {text_col!r} is "
            f"{text_type.simpleString()}, not string"
        )
    for key in ("id_column", "source_column"):
        name = getattr(settings, key)
        if name is not None and name not in columns:
            raise ConfigError(f"{source}: ingest.{key}: input has no column {name!r}")
    text = F.col(text_col)
    reason = F.when(text.isNull(), F.lit(f"missing_text: {text_col!r} is null"))
    if isinstance(text_type, BinaryType):
        reason = reason.when(~F.is_valid_utf8(text.cast("string")), F.lit("invalid_utf8"))
        text = text.cast("string")
    for name, data_type in columns.items():
        invalid = _invalid_utf8(name, data_type)
        if invalid is not None:
            reason = reason.when(invalid, F.lit(f"invalid_unicode: {name}"))
    reason = reason.when(~text.rlike(VISIBLE_CHAR_REGEX), F.lit("empty_text"))
    raw_id = F.col(settings.id_column).cast("string") if settings.id_column else F.lit(None)
    if settings.id_column:
        reason = reason.when(raw_id.isNull(), F.lit(f"missing_id: {settings.id_column!r} is null"))
    meta_cols = [c for c in data_columns
                 if c not in (text_col, settings.id_column, settings.source_column)]
    meta = F.to_json(F.struct(*meta_cols)) if meta_cols else F.lit("{}")
    raw = F.substring(F.to_json(F.struct(*data_columns)), 1, settings.quarantine_raw_max_chars)
    source_value = (
        F.col(settings.source_column).cast("string") if settings.source_column else F.lit(None)
    )
    return frame.select(
        F.when(reason.isNull(), text).alias("text"),
        raw_id.alias("raw_id"),
        source_value.alias("source_value"),
        F.when(reason.isNull(), meta).alias("meta"),
        raw.alias("raw"),
        reason.alias("reason"),
        *POSITION_COLUMNS,
    )


def flag_records(records: DataFrame, settings: IngestSettings) -> DataFrame:
    """Add doc_id, source, sizes and the size limit's reason to every record (no shuffle)."""
    text = F.col("text")
    doc_id = F.col("raw_id") if settings.id_column else F.sha2(text, 256)
    return records.select(
        F.when(F.col("reason").isNull(), doc_id).alias("doc_id"),
        "text",
        F.coalesce(F.col("source_value"), F.col("file")).alias("source"),
        F.char_length(text).cast("long").alias("n_chars"),
        F.octet_length(text).cast("long").alias("n_bytes"),
        "meta", "raw",
        F.when(
            F.col("reason").isNull() & (F.octet_length(text) > settings.max_doc_bytes),
            F.concat(F.lit("too_large: "), F.octet_length(text).cast("string"),
                     F.lit(f" bytes > {settings.max_doc_bytes}")),
        ).otherwise(F.col("reason")).alias("reason"),
        *POSITION_COLUMNS,
    )


# -- corpus-wide --------------------------------------------------------------------------------

def duplicate_copies(flagged: DataFrame) -> DataFrame:
    """`seq` of every usable record whose doc_id occurred earlier (by input file, then position).

    Only doc_id and the position columns are shuffled, never the text.
    """
    keys = flagged.filter(F.col("reason").isNull()).select("doc_id", "file", "block", "seq")
    first = Window.partitionBy("doc_id").orderBy("file", "block", "seq")
    return keys.withColumn("occurrence", F.row_number().over(first)).filter(
        F.col("occurrence") > 1
    ).select("seq")


def mark_duplicates(flagged: DataFrame, copies: DataFrame) -> DataFrame:
    """Give later copies the reason duplicate_id, by a join on `seq` against the (small) copies."""
    marked = flagged.join(copies.withColumn("is_copy", F.lit(True)), "seq", "left")
    return marked.withColumn(
        "reason",
        F.when(F.col("is_copy"), F.lit("duplicate_id")).otherwise(F.col("reason")),
    ).drop("is_copy")


def line_numbers(spark: SparkSession, lines: DataFrame) -> tuple[int, DataFrame]:
    """(lines read, per file split the offset that turns `seq` into the 1-based line number).

    Spark reads a large file in splits of `spark.sql.files.maxPartitionBytes` in parallel, each
    starting at the first line after its start byte; counting each split's lines (a JVM-only
    pass over narrow columns) and summing the earlier splits of the same file gives every line
    its number without reading a file in one task.
    """
    splits = (
        lines.groupBy("file", "block")
        .agg(F.min("seq").alias("first_seq"), F.count("*").alias("n"))
        .collect()
    )
    offsets, total, before = [], 0, {}
    for split in sorted(splits, key=lambda s: (s["file"], s["block"])):
        start = before.get(split["file"], 0)
        offsets.append((split["file"], split["block"], start + 1 - split["first_seq"]))
        before[split["file"]] = start + split["n"]
        total += split["n"]
    schema = "file string, block long, line_offset long"
    return total, spark.createDataFrame(offsets, schema)


def documents_of(marked: DataFrame) -> DataFrame:
    return marked.filter(F.col("reason").isNull()).select(
        "doc_id", "text", "source", "n_chars", "n_bytes", "meta"
    )


def quarantined_of(marked: DataFrame, line_offsets: DataFrame | None = None) -> DataFrame:
    """Quarantine rows: raw, source (the input file), reason, line (in the file, when known)."""
    rejected = marked.filter(F.col("reason").isNotNull())
    line = F.col("row")
    if line_offsets is not None:
        rejected = rejected.join(F.broadcast(line_offsets), ["file", "block"], "left")
        line = F.coalesce(line, F.col("seq") + F.col("line_offset"))
    return rejected.select("raw", F.col("file").alias("source"), "reason", line.alias("line"))


def quarantine_reasons(lake: Lake) -> dict[str, int]:
    """Quarantined rows per reason code, read back from what this job wrote."""
    rows = (
        lake.read(QUARANTINE_TABLE, {"job": [JOB]})
        .groupBy(F.split("reason", ":")[0].alias("code")).count().collect()
    )
    return dict(sorted((r["code"], r["count"]) for r in rows))


def run(spark: SparkSession, cfg: Config) -> JobReport:
    if cfg.ingest.mode == "incremental":
        from jobs.ingest_stream import run as run_incremental

        return run_incremental(spark, cfg)
    lake = lake_for(spark, cfg)
    settings = cfg.ingest
    paths = expand_paths(settings.paths, cfg.source)
    line_offsets = None
    if settings.format == "jsonl":
        lines = read_lines(spark, paths)
        rows_in, line_offsets = line_numbers(spark, lines)
        records = parse_records(lines, settings)
    else:
        frame = read_columnar(spark, settings, lake, paths)
        rows_in = frame.count()
        records = columnar_records(frame, settings, cfg.source)
    log.info("ingest: %d input records", rows_in)
    flagged = flag_records(records, settings)
    copies = duplicate_copies(flagged).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        log.info("ingest: %d later copies of an id", copies.count())
        marked = mark_duplicates(flagged, copies)
        written = lake.write(documents_of(marked), DOCUMENTS_TABLE)
        rejected = quarantined_of(marked, line_offsets)
        if written.rows == rows_in:  # nothing to quarantine: no pass over the input to find it
            rejected = rejected.limit(0)
        quarantined = write_quarantine(lake, rejected, JOB)
    finally:
        copies.unpersist()
    reasons = quarantine_reasons(lake)
    details = {"quarantine_reasons": reasons}
    if rows_in and reasons.get("missing_id", 0) == rows_in:
        details["hint"] = id_column_hint(settings)
        log.warning("ingest: %s", details["hint"])
    return JobReport(
        JOB, rows_in, written.rows, quarantined,
        tables={DOCUMENTS_TABLE: written.path, QUARANTINE_TABLE: lake.path(QUARANTINE_TABLE)},
        details=details,
    ).check_invariant()


def id_column_hint(settings: IngestSettings) -> str:
    return (f"no record has an id in {settings.id_column!r}; set ingest.id_column to the input's "
            "id field, or to null to use the SHA-256 of the text")
