"""The lake report's aggregates, computed by Spark: only small results reach the driver.

Histograms are bucketed counts (one pass for the ranges, one for the counts of every column);
samples are the first rows of a window over narrow columns (ids and scores), and only the texts of
those few documents are read, truncated in Spark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from jobs.core.base import QUARANTINE_TABLE
from jobs.core.config import Config
from jobs.core.lake import Lake
from jobs.report_html import Section

MAKERS = {  # table -> the job that writes it, for the line that replaces a missing section
    "documents": "ingest", QUARANTINE_TABLE: "ingest", "prefilter": "prefilter",
    "scores": "score", "curated": "bucketize", "model_losses": "lm_loss",
    "predictive_strength": "predictive_strength", "zip_selection": "zip_select",
    "mixture_plan": "mixture", "mixture": "mixture", "mimic_aggregate": "mimic_aggregate",
}
OTHER_SOURCES = "other sources"
NO_SOURCE = "<no source>"


@dataclass(frozen=True)
class Histogram:
    column: str
    edges: np.ndarray  # bins + 1 edges shared by every group
    counts: dict[str, np.ndarray]  # group (source) -> documents per bin


def numeric_columns(df: DataFrame, exclude: Sequence[str] = ()) -> list[str]:
    """Numeric columns in table order (booleans are not numeric in Spark)."""
    return [f.name for f in df.schema.fields
            if isinstance(f.dataType, NumericType) and f.name not in exclude]


def _finite(column: str) -> Column:
    value = F.col(column).cast("double")
    return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)


def _group_expr(df: DataFrame, group_column: str | None, max_groups: int) -> Column:
    if group_column is None or group_column not in df.columns:
        return F.lit("all documents")
    group = F.coalesce(F.col(group_column).cast("string"), F.lit(NO_SOURCE))
    top = (df.groupBy(group.alias("g")).count().orderBy(F.desc("count"), "g")
           .limit(max_groups + 1).collect())
    if len(top) <= max_groups:
        return group
    return F.when(group.isin([row["g"] for row in top[:max_groups]]), group).otherwise(
        F.lit(OTHER_SOURCES))


def histograms(
    df: DataFrame, columns: Sequence[str], group_column: str | None, bins: int, max_groups: int
) -> list[Histogram]:
    """Per column, documents per bin on `bins` equal bins over its finite range, per group;
    groups beyond the `max_groups` largest are pooled as 'other sources'."""
    if not columns:
        return []
    ranges = df.agg(*[agg(_finite(c)) for c in columns for agg in (F.min, F.max)]).first()
    spans = {}
    for index, column in enumerate(columns):
        lo, hi = ranges[2 * index], ranges[2 * index + 1]
        if lo is not None:
            spans[column] = (float(lo), float(hi))
    if not spans:
        return []
    cells = []
    for index, (column, (lo, hi)) in enumerate(spans.items()):
        width = (hi - lo) / bins if hi > lo else 1.0
        position = F.floor((_finite(column) - F.lit(lo)) / F.lit(width)).cast("int")
        cells.append(F.struct(F.lit(index).alias("c"), F.least(position, F.lit(bins - 1)).alias("b")))
    group = _group_expr(df, group_column, max_groups)
    rows = (df.select(group.alias("g"), F.explode(F.array(*cells)).alias("x"))
            .where(F.col("x.b").isNotNull())
            .groupBy(F.col("x.c").alias("c"), "g", F.col("x.b").alias("b")).count().collect())
    names = list(spans)
    result: dict[str, dict[str, np.ndarray]] = {name: {} for name in names}
    for row in rows:
        per_group = result[names[row["c"]]]
        per_group.setdefault(row["g"], np.zeros(bins))[row["b"]] += row["count"]
    out = []
    for name, (lo, hi) in spans.items():
        edges = np.linspace(lo, hi, bins + 1) if hi > lo else lo + np.arange(bins + 1) - 0.5
        out.append(Histogram(name, edges, dict(sorted(result[name].items()))))
    return out


def first_per_key(
    df: DataFrame, key: str | Sequence[str], order: Column | Sequence[Column], n: int
) -> DataFrame:
    """The first `n` rows of each key by `order` (pass narrow columns: this sorts per key)."""
    keys = [key] if isinstance(key, str) else list(key)
    window = Window.partitionBy(*keys).orderBy(*([order] if isinstance(order, Column) else order))
    return df.withColumn("_rank", F.row_number().over(window)).where(F.col("_rank") <= n)


def clipped_text(column: str, limit: int) -> list[Column]:
    """The first `limit` characters and the full length, computed by Spark."""
    return [F.substring(F.col(column), 1, limit).alias("snippet"),
            F.length(F.col(column)).alias("length")]


def with_texts(picked: DataFrame, docs: DataFrame, limit: int) -> DataFrame:
    """`picked` (a few doc_ids) with each document's clipped text."""
    return docs.select("doc_id", *clipped_text("text", limit)).join(F.broadcast(picked), "doc_id")


def hash_order(seed: int = 0) -> Column:
    """A stable pseudo-random order of documents (examples are not just the first ids)."""
    return F.xxhash64(F.col("doc_id").cast("string"), F.lit(seed))


def table_overview(lake: Lake, names: Sequence[str]) -> list[tuple]:
    """(table, rows, Delta version, last write time UTC, last operation) per table."""
    rows = []
    for name in names:
        delta = lake.table(name)
        last = (delta.history(1) or [{}])[0]
        stamp = last.get("timestamp")
        when = (datetime.fromtimestamp(stamp / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
                if stamp else "")
        rows.append((name, lake.count(name), delta.version(), when, last.get("operation", "")))
    return rows


@dataclass
class ReportContext:
    """What every section reads: the session, config, lake, its tables, shared results."""

    spark: SparkSession
    cfg: Config
    lake: Lake
    tables: set[str]
    histograms: dict[str, list[Histogram]] = field(default_factory=dict)
    frames: dict[str, DataFrame] = field(default_factory=dict)

    def read(self, name: str) -> DataFrame:
        if name not in self.frames:  # one file listing per table
            self.frames[name] = self.lake.read(name)
        return self.frames[name]

    def missing(self, section: Section, *names: str) -> Section | None:
        absent = [n for n in names if n not in self.tables]
        if absent:
            section.missing = (f"Not shown: no `{absent[0]}` table yet; "
                               f"`siftlake {MAKERS[absent[0]]}` makes it.")
            return section
        return None

    def clip(self, snippet: str | None, length: int | None) -> str:
        limit, snippet = self.cfg.report.sample_chars, snippet or ""
        more = (length or 0) - limit
        return snippet + (f"… [{more:,} more characters]" if more > 0 else "")
