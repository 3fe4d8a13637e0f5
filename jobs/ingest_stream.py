"""Incremental ingest (`ingest.mode: incremental`): only input not ingested before.

JSONL and Parquet: Spark's own exactly-once file tracking decides what is new, a Structured
Streaming file source over `ingest.paths` run with `trigger(availableNow=True)` (every file that
arrived since the last run, then stop), its checkpoint inside the lake
(`<lake.root>/_checkpoints/ingest-…`). Delta inputs are read by table version: natively with a
Delta stream source; with delta-rs only the files that commits after the last version processed
added, that version being the app transaction recorded in `documents`.

Each batch goes through ingest's own parse and flag functions and is appended to `documents` and
`quarantine` as Delta application transactions (stream query id and batch id, or input table
and version), so a batch replayed after a crash lands once. Ids already in `documents` go to
quarantine as `duplicate_id`, like later copies inside the batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pyarrow.compute as pc
import pyarrow.fs as pafs
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.base import QUARANTINE_TABLE, JobReport, lake_for, log, write_quarantine
from jobs.core.config import Config, ConfigError, IngestSettings
from jobs.core.incremental import collected_ids, rows_of
from jobs.core.lake import Lake
from jobs.ingest import (
    DOCUMENTS_TABLE,
    JOB,
    columnar_records,
    documents_of,
    duplicate_copies,
    expand_paths,
    flag_records,
    line_numbers,
    mark_duplicates,
    parse_records,
    quarantined_of,
)

CHECKPOINTS = "_checkpoints"


def checkpoint_location(lake: Lake, settings: IngestSettings) -> str:
    """One checkpoint per set of input patterns: other paths are another stream."""
    digest = hashlib.sha256(json.dumps(sorted(settings.paths)).encode()).hexdigest()[:12]
    return f"{lake.root}/{CHECKPOINTS}/ingest-{digest}"


def stream_pattern(pattern: str, source: str) -> str:
    """An input pattern as the file source wants it; a local folder that is missing fails here."""
    if urlparse(pattern).scheme not in ("", "file"):
        return pattern
    local = os.path.abspath(urlparse(pattern).path if pattern.startswith("file:") else pattern)
    head = re.split(r"[*?\[]", local, maxsplit=1)[0]
    folder = head if os.path.isdir(head) else os.path.dirname(head)
    if not os.path.isdir(folder):
        raise ConfigError(f"{source}: ingest.paths: no folder {folder!r} for {pattern!r}")
    if os.path.isfile(local) and local == head:
        # The file source reads a plain path as a folder; this glob matches just the file.
        local = f"{local[:-1]}[{local[-1]}]"
    return f"file://{local}"


def input_stream(spark: SparkSession, settings: IngestSettings, source: str) -> DataFrame:
    """The stream of new input: JSONL lines (line, file, block) or columnar rows (+ file, block,
    row), one source per pattern."""
    streams = []
    for pattern in settings.paths:
        if settings.format == "jsonl":
            stream = spark.readStream.format("text").load(stream_pattern(pattern, source)).select(
                F.col("value").cast("binary").alias("line"),
                F.col("_metadata.file_path").alias("file"),
                F.col("_metadata.file_block_start").alias("block"),
            )
        elif settings.format == "parquet":
            schema = spark.read.parquet(*expand_paths([pattern], source)).schema
            stream = spark.readStream.schema(schema).parquet(stream_pattern(pattern, source))
            stream = stream.select(
                "*", F.col("_metadata.file_path").alias("file"),
                F.col("_metadata.file_block_start").alias("block"),
                F.lit(None).cast("long").alias("row"),
            )
        else:  # a Delta stream source (native backend): new versions only
            stream = spark.readStream.format("delta").load(pattern).select(
                "*", F.lit(pattern).alias("file"), F.lit(0).cast("long").alias("block"),
                F.lit(None).cast("long").alias("row"),
            )
        streams.append(stream)
    merged = streams[0]
    for other in streams[1:]:
        merged = merged.unionByName(other, allowMissingColumns=True)
    return merged


def stream_app_id(checkpoint: str) -> str:
    """The query id Spark keeps in the checkpoint: a new checkpoint restarts batch ids at 0
    and so must not share the app transactions of the old one."""
    fs, base = pafs.FileSystem.from_uri(checkpoint if "://" in checkpoint else f"file://{checkpoint}")
    with fs.open_input_stream(f"{base}/metadata") as handle:
        return f"siftlake-ingest-{json.loads(handle.read().decode())['id']}"


def committed(lake: Lake, table: str, app: tuple[str, int]) -> bool:
    """True when `table` already holds the app transaction's batch."""
    done = lake.transaction_version(table, app[0])
    return done is not None and done >= app[1]


def later_copies(lake: Lake, keys: DataFrame, broadcast_mb: int = 64) -> DataFrame:
    """`seq` of usable records to quarantine as duplicate_id: later copies of an id within the
    batch, and ids `documents` already holds (narrow columns only).

    While the batch's ids fit `broadcast_mb` they are collected once: a batch whose ids are all
    distinct (the usual day) needs no shuffle to find copies, and its ids are broadcast to the
    scan of the stored ones. A larger batch finds both by shuffles of the narrow columns.
    """
    spark = keys.sparkSession
    usable = keys.filter(F.col("reason").isNull()).select("doc_id", "seq")
    stored = lake.read(DOCUMENTS_TABLE).select("doc_id") if lake.exists(DOCUMENTS_TABLE) else None
    ids = collected_ids(usable, broadcast_mb)
    if ids is None:
        parts = [duplicate_copies(keys)]
        if stored is not None:
            parts.append(usable.join(stored, "doc_id", "left_semi").select("seq"))
    else:
        parts = []
        if pc.count_distinct(ids["doc_id"]).as_py() < ids.num_rows:
            parts.append(duplicate_copies(keys))
        seen = rows_of(spark, ids, stored) if stored is not None else None
        if seen is not None and seen.num_rows:
            seen_ids = F.broadcast(spark.createDataFrame(seen))
            parts.append(usable.join(seen_ids, "doc_id", "left_semi").select("seq"))
    if not parts:
        return usable.limit(0).select("seq")
    if len(parts) == 1:
        return parts[0]
    return parts[0].unionByName(parts[1]).distinct()


@dataclass
class BatchIngest:
    """The foreachBatch body; runs on the driver and keeps the run's counts."""

    spark: SparkSession
    lake: Lake
    settings: IngestSettings
    checkpoint: str
    source: str
    broadcast_mb: int = 64  # spark.incremental_broadcast_mb
    counts: dict = field(default_factory=lambda: {"in": 0, "out": 0, "quarantined": 0})
    reasons: dict = field(default_factory=dict)  # this run's quarantined rows per reason code
    batches: list = field(default_factory=list)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        app = (stream_app_id(self.checkpoint), batch_id)
        if committed(self.lake, DOCUMENTS_TABLE, app):
            log.info("ingest: micro-batch %d was committed before its replay: skipped", batch_id)
            return
        if self.settings.format == "jsonl":
            lines = batch.withColumn("seq", F.monotonically_increasing_id())
            self.ingest(parse_records(lines, self.settings), app, lines)
        else:
            self.ingest(columnar_records(batch, self.settings, self.source), app)

    def ingest(
        self, records: DataFrame, app: tuple[str, int], lines: DataFrame | None = None
    ) -> None:
        """Flag, mark duplicates (also of ids already ingested), append as transaction `app`.

        lines: the batch's JSONL lines, numbered only when a record is quarantined."""
        flagged = flag_records(records, self.settings)
        if lines is not None:
            # JSONL: the parsed batch is kept on local disk (never in memory) for the counts,
            # both duplicate checks and both writes, so each line is parsed once. A usable
            # record's raw line is left out of it: a later copy's is parsed again from its line.
            flagged = flagged.withColumn(
                "raw", F.when(F.col("reason").isNotNull(), F.col("raw"))
            ).persist(StorageLevel.DISK_ONLY)
            keys = flagged.select("doc_id", "file", "block", "seq", "reason")
            kept = flagged
        else:
            # Columnar rows: only the narrow keys are kept; the writes read the batch again.
            keys = flagged.select("doc_id", "file", "block", "seq", "reason").persist(
                StorageLevel.DISK_ONLY)
            kept = keys
        copies = later_copies(self.lake, keys, self.broadcast_mb).persist(
            StorageLevel.MEMORY_AND_DISK)
        try:
            totals = keys.agg(F.count("*").alias("rows"), F.count("reason").alias("flagged"))
            rows_in, n_flagged = totals.first()
            n_copies = copies.count()
            marked = mark_duplicates(flagged, copies)
            # Quarantine first: a crash between the two commits replays the batch against the
            # same `documents`, so it finds the same duplicates again.
            quarantined = 0
            if n_flagged or n_copies:  # a clean batch costs no pass to find its (no) rejects
                self.count_reasons(keys, n_copies)
                line_offsets = None
                if lines is not None:
                    line_offsets = line_numbers(self.spark, lines)[1]
                    marked = with_copied_lines(marked, lines, copies, self.settings)
                rejected = quarantined_of(marked, line_offsets)
                if committed(self.lake, QUARANTINE_TABLE, app):
                    quarantined = rejected.count()  # committed before a crash: only count them
                else:
                    quarantined = write_quarantine(self.lake, rejected, JOB, app_transaction=app)
            written = self.lake.write(
                documents_of(marked), DOCUMENTS_TABLE, mode="append", app_transaction=app,
                read_version=self.lake.version(DOCUMENTS_TABLE), unique_key=["doc_id"],
            )
        finally:
            copies.unpersist()
            kept.unpersist()
        self.counts["in"] += rows_in
        self.counts["out"] += written.rows
        self.counts["quarantined"] += quarantined
        self.batches.append(f"{app[1]}")
        log.info("ingest: batch %s: %d records, %d documents, %d quarantined",
                 app[1], rows_in, written.rows, quarantined)

    def count_reasons(self, keys: DataFrame, n_copies: int) -> None:
        """Add the batch's quarantined rows per reason code to this run's counts."""
        codes = keys.where(F.col("reason").isNotNull()).groupBy(
            F.split("reason", ":")[0].alias("code")).count().collect()
        for row in codes:
            self.reasons[row["code"]] = self.reasons.get(row["code"], 0) + row["count"]
        if n_copies:
            self.reasons["duplicate_id"] = self.reasons.get("duplicate_id", 0) + n_copies


def with_copied_lines(
    marked: DataFrame, lines: DataFrame, copies: DataFrame, settings: IngestSettings
) -> DataFrame:
    """`marked` (parsed rows kept without the raw line of usable records) with the raw line of
    each later copy of an id, parsed again from the copies' lines alone."""
    copied = parse_records(lines.join(copies, "seq", "left_semi"), settings).select(
        "seq", F.col("raw").alias("copied_raw"))
    return marked.join(copied, "seq", "left").withColumn(
        "raw", F.coalesce(F.col("raw"), F.col("copied_raw"))).drop("copied_raw")


def delta_app_id(path: str) -> str:
    return f"siftlake-ingest-delta-{hashlib.sha256(path.encode()).hexdigest()[:12]}"


def ingest_delta_versions(lake: Lake, settings: IngestSettings, writer: BatchIngest) -> None:
    """delta-rs: each input table's rows added since the version last ingested."""
    for path in expand_paths(settings.paths, writer.source):
        app_id = delta_app_id(path)
        done = lake.transaction_version(DOCUMENTS_TABLE, app_id)
        current = lake.path_version(path)
        if committed(lake, DOCUMENTS_TABLE, (app_id, current)):
            continue
        frame = lake.read_path(path, added_after=done).select(
            "*", F.lit(path).alias("file"), F.lit(0).cast("long").alias("block"),
            F.lit(None).cast("long").alias("row"),
        )
        writer.ingest(columnar_records(frame, settings, writer.source), (app_id, current))


def run(spark: SparkSession, cfg: Config) -> JobReport:
    lake = lake_for(spark, cfg)
    checkpoint = checkpoint_location(lake, cfg.ingest)
    ingest_batch = BatchIngest(spark, lake, cfg.ingest, checkpoint, cfg.source,
                               cfg.spark.incremental_broadcast_mb)
    by_version = cfg.ingest.format == "delta" and lake.backend == "delta-rs"
    if by_version:
        ingest_delta_versions(lake, cfg.ingest, ingest_batch)
    else:
        query = (
            input_stream(spark, cfg.ingest, cfg.source).writeStream
            .foreachBatch(ingest_batch)
            .trigger(availableNow=True)
            .option("checkpointLocation", checkpoint)
            .queryName("siftlake-ingest")
            .start()
        )
        query.awaitTermination()
    counts = ingest_batch.counts
    batches = ", ".join(ingest_batch.batches) or "none (nothing new)"
    return JobReport(
        JOB, counts["in"], counts["out"], counts["quarantined"],
        tables={DOCUMENTS_TABLE: lake.path(DOCUMENTS_TABLE),
                QUARANTINE_TABLE: lake.path(QUARANTINE_TABLE)},
        details={"mode": "incremental", "batches": batches,
                 "tracking": "input table versions (app transactions in documents)" if by_version
                 else f"stream checkpoint {checkpoint}",
                 "quarantine_reasons (this run)": dict(sorted(ingest_batch.reasons.items()))},
    ).check_invariant()
