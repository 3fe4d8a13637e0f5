"""What every job shares: the run report with its count invariant, the lake, the quarantine."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.config import Config
from jobs.core.lake import Lake, sanitize_partition_value

log = logging.getLogger("siftlake")

QUARANTINE_TABLE = "quarantine"


class InvariantError(RuntimeError):
    """rows in != rows out + quarantined + filtered: a job lost or invented rows."""


@dataclass
class JobReport:
    job: str
    rows_in: int
    rows_out: int
    rows_quarantined: int = 0
    # Valid rows a job left out on purpose: failed a pre-filter rule, not selected, not sampled.
    rows_filtered: int = 0
    filtered_label: str = "filtered"
    tables: dict[str, str] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def check_invariant(self) -> JobReport:
        if self.rows_in != self.rows_out + self.rows_quarantined + self.rows_filtered:
            raise InvariantError(
                f"{self.job}: rows in {self.rows_in} != rows out {self.rows_out} + "
                f"quarantined {self.rows_quarantined} + {self.filtered_label} {self.rows_filtered}"
            )
        return self

    def summary(self) -> str:
        counts = (
            f"[{self.job}] rows in {self.rows_in:,} = out {self.rows_out:,} + "
            f"quarantined {self.rows_quarantined:,}"
        )
        if self.rows_filtered:
            counts += f" + {self.filtered_label} {self.rows_filtered:,}"
        lines = [counts]
        lines += [f"  table {name}: {path}" for name, path in self.tables.items()]
        lines += [f"  {key}: {value}" for key, value in self.details.items()]
        return "\n".join(lines)


@contextmanager
def spark_stage(spark: SparkSession, description: str) -> Iterator[None]:
    """Label the Spark jobs started inside (the Spark UI's job description), then restore the
    enclosing label, so a pipeline step and the sections of a job nest."""
    try:
        context = spark.sparkContext
    except Exception:  # Spark Connect sessions have no SparkContext: nothing to label
        yield
        return
    previous = context.getLocalProperty("spark.job.description")
    context.setJobDescription(description)
    try:
        yield
    finally:
        context.setJobDescription(previous)


def lake_for(spark: SparkSession, cfg: Config) -> Lake:
    return Lake(spark, cfg.lake.root, cfg.spark.delta)


def write_quarantine(
    lake: Lake, rows: DataFrame, job: str, app_transaction: tuple[str, int] | None = None
) -> int:
    """Replace this job's partition of the shared quarantine table; returns the rows written.

    `rows` needs columns raw, source, reason, and may have `line` (where in the source the row
    sits, 1-based; null when unknown). Rerunning a job replaces its own quarantine rows; with
    `app_transaction` (a streaming micro-batch: app id, batch id) the rows are appended to the
    partition instead, once per batch however often it is replayed.
    """
    job_value = sanitize_partition_value(job)
    line = F.col("line") if "line" in rows.columns else F.lit(None)
    table = rows.select(
        F.col("raw").cast("string").alias("raw"),
        F.col("source").cast("string").alias("source"),
        F.col("reason").cast("string").alias("reason"),
        line.cast("long").alias("line"),
        F.current_timestamp().alias("at"),
        F.lit(job_value).alias("job"),
    )
    if app_transaction is not None:
        return lake.write(table, QUARANTINE_TABLE, partition_by=["job"], mode="append",
                          app_transaction=app_transaction).rows
    result = lake.write(
        table, QUARANTINE_TABLE, partition_by=["job"], replace_partitions={"job": [job_value]}
    )
    return result.rows
