"""Every Delta read and write goes through here.

Two back-ends produce the same table (schema, partitioning, history):
- native: the session has Delta (Databricks, or delta-spark jars) → `format("delta")`;
- delta-rs: Spark writes hive-partitioned Parquet in parallel into a staging folder inside the
  table, the files move next to the table's other partitions, and `deltalake` commits them as
  one transaction (create, overwrite, or replace of named partitions).

Spark's `mode("overwrite")` is never pointed at a table folder: it would delete `_delta_log` or
files the log still references (shared/NOTES.md). Reads without Delta go through the table's
current file list, never a directory glob, so removed files never come back.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, Schema
from deltalake.transaction import AddAction, create_table_with_add_actions
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from jobs.core.errors import UserError
from jobs.core.registry import TABLE_WRITERS
from jobs.core.session import session_has_delta

PARTITION_VALUE = re.compile(r"^[a-z0-9_-]+$")
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class LakeError(RuntimeError):
    """A table operation that cannot proceed; the message names the table."""


class TableNotFound(LakeError, UserError):
    """No Delta table where one was expected; the message names the job that writes it."""

    def __init__(self, label: str, path: str):
        writer = TABLE_WRITERS.get(label)
        fix = f"run 'siftlake {writer}' first" if writer else "check the path"
        super().__init__(f"table {label!r} not found at {path}; {fix}")
        self.table = label


@dataclass(frozen=True)
class WriteResult:
    table: str
    path: str
    rows: int
    files: int
    version: int | None


def sanitize_partition_value(value: str) -> str:
    """Lower-case and map anything outside [a-z0-9_-] to '_' (Spark would percent-encode it)."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "_", str(value).strip().lower()).strip("_")
    if not cleaned:
        raise ValueError(f"{value!r} has no usable characters for a partition value")
    return cleaned


def _local_path(uri: str) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return os.path.abspath(unquote(parsed.path) if parsed.scheme else uri)
    return None


class Lake:
    """Tables under one root; `backend` is 'native' or 'delta-rs' ('auto' decides from the session)."""

    def __init__(self, spark: SparkSession, root: str, backend: str = "auto"):
        self.spark = spark
        local = _local_path(root)
        self.root = local if local is not None else root.rstrip("/")
        if backend == "auto":
            backend = "native" if session_has_delta(spark) else "delta-rs"
        if backend not in ("native", "delta-rs"):
            raise LakeError(f"unknown lake backend {backend!r}")
        self.backend = backend

    # -- locations -------------------------------------------------------------------------
    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def _spark_uri(self, path: str) -> str:
        return f"file://{path}" if path.startswith("/") else path

    def exists(self, name: str) -> bool:
        try:
            DeltaTable(self.path(name))
            return True
        except Exception:
            return False

    def table_names(self) -> list[str]:
        """The Delta tables directly under the root (folders holding a `_delta_log`)."""
        fs, base = pafs.FileSystem.from_uri(self._spark_uri(self.root))
        folders = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        names = [f.base_name for f in folders if f.type == pafs.FileType.Directory]
        logs = fs.get_file_info([f"{base}/{name}/_delta_log" for name in names])
        return sorted(n for n, log in zip(names, logs, strict=True)
                      if log.type == pafs.FileType.Directory)

    def table(self, name: str) -> DeltaTable:
        try:
            return DeltaTable(self.path(name))
        except Exception as exc:
            raise TableNotFound(name, self.path(name)) from exc

    # -- reads -----------------------------------------------------------------------------
    def read(self, name: str, partitions: Mapping[str, Iterable[str]] | None = None) -> DataFrame:
        """The table's current version; `partitions` prunes by partition values before reading."""
        return self.read_path(self.path(name), partitions, label=name)

    def read_path(
        self, path: str, partitions: Mapping[str, Iterable[str]] | None = None, label: str | None = None
    ) -> DataFrame:
        """Any Delta table by location (also input tables outside the lake root)."""
        label = label or path
        local = _local_path(path)
        path = local if local is not None else path
        filters = [(col, "in", list(values)) for col, values in (partitions or {}).items()]
        if self.backend == "native":
            df = self.spark.read.format("delta").load(self._spark_uri(path))
            for col, _, values in filters:
                df = df.filter(F.col(col).isin(values))
            return df
        try:
            table = DeltaTable(path)
        except Exception as exc:
            raise TableNotFound(label, path) from exc
        arrow_schema = pa.schema(table.schema().to_arrow())
        spark_schema = from_arrow_schema(arrow_schema)
        partition_cols = table.metadata().partition_columns
        files = table.file_uris(partition_filters=filters or None)
        if not files:
            return self.spark.createDataFrame([], spark_schema)
        df = self.spark.read.option("basePath", self._spark_uri(path)).parquet(
            *[self._spark_uri(f) for f in files]
        )
        # Partition columns come back as strings from folder names; restore the table's types.
        columns = [
            F.col(field.name).cast(field.dataType) if field.name in partition_cols else F.col(field.name)
            for field in spark_schema.fields
        ]
        return df.select(*columns)

    def count(self, name: str) -> int:
        if self.backend == "delta-rs":
            actions = pa.table(self.table(name).get_add_actions(flatten=True))
            return int(pa.compute.sum(actions.column("num_records")).as_py() or 0)
        return self.read(name).count()

    def history(self, name: str) -> list[dict]:
        return self.table(name).history()

    # -- writes ----------------------------------------------------------------------------
    def write(
        self,
        df: DataFrame,
        name: str,
        *,
        partition_by: list[str] | tuple[str, ...] = (),
        replace_partitions: Mapping[str, Iterable[str]] | None = None,
    ) -> WriteResult:
        """Overwrite the table, or only the partitions named in `replace_partitions`.

        Rerunning a job therefore replaces its output instead of appending duplicates.
        """
        partition_by = list(partition_by)
        replace = {k: sorted(set(v)) for k, v in (replace_partitions or {}).items()}
        if set(replace) - set(partition_by):
            raise LakeError(f"{name}: can only replace partitions of columns {partition_by}")
        for col, values in replace.items():
            for value in values:
                if not PARTITION_VALUE.match(value):
                    raise LakeError(f"{name}: partition value {value!r} of {col} is not [a-z0-9_-]")
        if self.backend == "native":
            return self._write_native(df, name, partition_by, replace)
        return self._write_delta_rs(df, name, partition_by, replace)

    def _write_native(self, df, name, partition_by, replace) -> WriteResult:
        writer = df.write.format("delta").mode("overwrite")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if replace:
            predicate = " AND ".join(
                f"{col} IN ({', '.join(repr(v) for v in values)})" for col, values in replace.items()
            )
            writer = writer.option("replaceWhere", predicate)
        else:
            writer = writer.option("overwriteSchema", "true")
        writer.save(self._spark_uri(self.path(name)))
        return WriteResult(name, self.path(name), self.count(name), -1, None)

    def _write_delta_rs(self, df, name, partition_by, replace) -> WriteResult:
        table_path = self.path(name)
        fs, base = pafs.FileSystem.from_uri(self._spark_uri(table_path))
        staging_name = f"_staging-{uuid.uuid4().hex}"
        staging = f"{base}/{staging_name}"
        existing = self._existing_partitioning(name)
        if existing is not None and existing != partition_by:
            raise LakeError(
                f"{name}: table at {table_path} is partitioned by {existing}, this write by "
                f"{partition_by}; delete the table folder to change its layout"
            )
        if replace and existing is None:
            replace = {}  # nothing to replace yet: this write creates the table
        arrow_schema = self._arrow_schema(df, partition_by)
        try:
            writer = df.write.mode("errorifexists")
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            writer.parquet(self._spark_uri(f"{table_path}/{staging_name}"))
            actions = self._move_into_table(fs, base, staging, name, partition_by, replace)
        finally:
            fs.delete_dir_contents(staging, missing_dir_ok=True)
            try:
                fs.delete_dir(staging)
            except (FileNotFoundError, OSError):
                pass
        delta_schema = Schema.from_arrow(arrow_schema)
        if existing is None:
            create_table_with_add_actions(
                table_path, delta_schema, actions, mode="overwrite", partition_by=partition_by or None
            )
        else:
            filters = [(col, "in", values) for col, values in replace.items()] or None
            DeltaTable(table_path).create_write_transaction(
                actions, mode="overwrite", schema=delta_schema,
                partition_by=partition_by or None, partition_filters=filters,
            )
        rows = sum(json.loads(a.stats).get("numRecords", 0) for a in actions)
        return WriteResult(name, table_path, rows, len(actions), DeltaTable(table_path).version())

    def _existing_partitioning(self, name: str) -> list[str] | None:
        if not self.exists(name):
            return None
        return list(DeltaTable(self.path(name)).metadata().partition_columns)

    def _arrow_schema(self, df: DataFrame, partition_by: list[str]) -> pa.Schema:
        schema = to_arrow_schema(df.schema, timezone="UTC")
        data_fields = [f for f in schema if f.name not in partition_by]
        part_fields = [schema.field(col) for col in partition_by]
        # Delta keeps partition columns last, as Spark's partitioned write lays them out.
        return pa.schema(data_fields + part_fields)

    def _move_into_table(self, fs, base, staging, name, partition_by, replace) -> list[AddAction]:
        planned = []
        selector = pafs.FileSelector(staging, recursive=True)
        for info in fs.get_file_info(selector):
            if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
                continue
            relative = info.path[len(staging) + 1:]
            values = _partition_values(relative, partition_by, name)
            for col, allowed in replace.items():
                if values.get(col) not in allowed:
                    raise LakeError(
                        f"{name}: data holds {col}={values.get(col)!r}, outside the partitions "
                        f"being replaced {allowed}"
                    )
            planned.append((info, relative, values))
        # Validate everything before moving anything, so a refused write leaves no strays.
        actions: list[AddAction] = []
        for info, relative, values in planned:
            target = f"{base}/{relative}"
            fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            fs.move(info.path, target)
            actions.append(
                AddAction(
                    relative, info.size, values, int(info.mtime.timestamp() * 1000), True,
                    _file_stats(fs, target),
                )
            )
        return actions


def _partition_values(relative: str, partition_by: list[str], name: str) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for segment in relative.split("/")[:-1]:
        key, _, raw = segment.partition("=")
        value = unquote(raw)
        if value == HIVE_NULL:
            values[key] = None
            continue
        if raw != value or not PARTITION_VALUE.match(value):
            raise LakeError(
                f"{name}: partition value {value!r} of {key} is outside [a-z0-9_-]; "
                "sanitize it (jobs.core.lake.sanitize_partition_value) before writing"
            )
        values[key] = value
    missing = set(partition_by) - set(values)
    if missing:
        raise LakeError(f"{name}: file {relative} lacks partition folders for {sorted(missing)}")
    return values


def _file_stats(fs, path: str) -> str:
    """numRecords plus per-column null counts and min/max from the Parquet footer (data skipping)."""
    with fs.open_input_file(path) as handle:
        meta = pq.ParquetFile(handle).metadata
    stats: dict = {"numRecords": meta.num_rows, "nullCount": {}, "minValues": {}, "maxValues": {}}
    if meta.num_rows == 0:
        return json.dumps({"numRecords": 0})
    for col_index in range(meta.num_columns):
        column = meta.schema.column(col_index)
        if "." in column.path or column.max_repetition_level > 0:
            continue  # nested columns: numRecords is enough
        nulls, lo, hi, complete = 0, None, None, True
        for rg in range(meta.num_row_groups):
            st = meta.row_group(rg).column(col_index).statistics
            if st is None or not st.has_null_count:
                complete = False
                break
            nulls += st.null_count
            if st.has_min_max and column.physical_type in ("INT32", "INT64", "DOUBLE", "FLOAT"):
                if column.logical_type.type not in ("NONE", "INT"):
                    continue
                if not (math.isfinite(st.min) and math.isfinite(st.max)):
                    continue  # NaN / inf are not valid JSON in the Delta log
                lo = st.min if lo is None else min(lo, st.min)
                hi = st.max if hi is None else max(hi, st.max)
        if not complete:
            continue
        stats["nullCount"][column.name] = nulls
        if lo is not None:
            stats["minValues"][column.name] = lo
            stats["maxValues"][column.name] = hi
    return json.dumps(stats)
