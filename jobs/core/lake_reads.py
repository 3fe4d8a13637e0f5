"""Where the lake's tables are and how they are read: locations, current file lists, counts and
commit history from the Delta log. `Lake` (jobs/core/lake.py) adds the writes.

Reads without Delta go through the table's current file list, never a directory glob, so
removed files never come back; the schema comes from the log, so Spark reads no Parquet footer
to infer it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StringType, StructField, StructType

from jobs.core.errors import UserError
from jobs.core.lake_files import commits_between
from jobs.core.registry import TABLE_WRITERS
from jobs.core.session import session_has_delta


class LakeError(RuntimeError):
    """A table operation that cannot proceed; the message names the table."""


class TableNotFound(LakeError, UserError):
    """No Delta table where one was expected; the message names the job that writes it."""

    def __init__(self, label: str, path: str):
        writer = TABLE_WRITERS.get(label)
        fix = f"run 'siftlake {writer}' first" if writer else "check the path"
        super().__init__(f"table {label!r} not found at {path}; {fix}")
        self.table = label


def _local_path(uri: str) -> str | None:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return os.path.abspath(unquote(parsed.path) if parsed.scheme else uri)
    return None


class LakeTables:
    """Tables under one root, read; `backend` is 'native' or 'delta-rs' ('auto' decides from
    the session)."""

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

    def filesystem(self, name: str) -> tuple[pafs.FileSystem, str]:
        """The table folder as (pyarrow filesystem, path on it), for file-level maintenance."""
        return pafs.FileSystem.from_uri(self._spark_uri(self.path(name)))

    def root_filesystem(self) -> tuple[pafs.FileSystem, str]:
        return pafs.FileSystem.from_uri(self._spark_uri(self.root))

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
    def read(
        self, name: str, partitions: Mapping[str, Iterable[str]] | None = None,
        version: int | None = None,
    ) -> DataFrame:
        """The table's current version (or `version`); `partitions` prunes by partition values
        before reading."""
        return self.read_path(self.path(name), partitions, label=name, version=version)

    def read_path(
        self, path: str, partitions: Mapping[str, Iterable[str]] | None = None,
        label: str | None = None, added_after: int | None = None, added_upto: int | None = None,
        version: int | None = None,
    ) -> DataFrame:
        """Any Delta table by location (also input tables outside the lake root).

        added_after: only the rows that commits after this version (up to `added_upto`, default
        the current one) added (incremental readers; delta-rs only, natively a Delta stream
        source does it). Partitions are not pruned then.
        """
        label = label or path
        local = _local_path(path)
        path = local if local is not None else path
        filters = [(col, "in", list(values)) for col, values in (partitions or {}).items()]
        if self.backend == "native":
            if added_after is not None:
                raise LakeError(f"{label}: read new rows natively with a Delta stream source")
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            df = reader.load(self._spark_uri(path))
            for col, _, values in filters:
                df = df.filter(F.col(col).isin(values))
            return df
        try:
            table = DeltaTable(path, version=version)
        except Exception as exc:
            raise TableNotFound(label, path) from exc
        arrow_schema = pa.schema(table.schema().to_arrow())
        spark_schema = from_arrow_schema(arrow_schema)
        partition_cols = table.metadata().partition_columns
        files = table.file_uris(partition_filters=filters or None)
        if added_after is not None:
            commits = commits_between(*pafs.FileSystem.from_uri(self._spark_uri(path)),
                                      added_after, table.version() if added_upto is None
                                      else added_upto)
            files = [f"{path}/{relative}" for commit in commits for relative, _ in commit.added]
        if not files:
            return self.spark.createDataFrame([], spark_schema)
        # The schema comes from the Delta log: Spark then reads no Parquet footer to infer it
        # (a job per read). Partition values come from folder names, as strings.
        read_schema = StructType([
            StructField(field.name, StringType()) if field.name in partition_cols else field
            for field in spark_schema.fields
        ])
        df = self.spark.read.schema(read_schema).option("basePath", self._spark_uri(path)) \
            .parquet(*[self._spark_uri(f) for f in files])
        # Partition columns come back as strings from folder names; restore the table's types.
        columns = [
            F.col(field.name).cast(field.dataType) if field.name in partition_cols else F.col(field.name)
            for field in spark_schema.fields
        ]
        return df.select(*columns)

    def count(self, name: str, partitions: Mapping[str, Iterable[str]] | None = None) -> int:
        """Rows of the table (of `partitions`): from the file statistics in the Delta log,
        with no scan, where every file has them."""
        counts = self.partition_counts(name, partitions)
        if counts is not None:
            return sum(counts.values())
        return self.read(name, partitions).count()

    def partition_counts(
        self, name: str, partitions: Mapping[str, Iterable[str]] | None = None,
        column: str | None = None,
    ) -> dict[str | None, int] | None:
        """Rows per value of partition `column` (all under None without one), of `partitions`,
        from the file statistics in the Delta log; None where a file has none, and natively
        (a native table may carry deletion vectors, which the statistics do not count)."""
        if self.backend != "delta-rs":
            return None
        actions = pa.table(self.table(name).get_add_actions(flatten=True))
        for key, values in (partitions or {}).items():
            wanted = pa.array([str(v) for v in values], pa.string())
            actions = actions.filter(pc.is_in(actions[f"partition.{key}"].cast(pa.string()), wanted))
        records = actions.column("num_records")
        if records.null_count:
            return None
        if column is None:
            return {None: int(pc.sum(records).as_py() or 0)}
        groups = pa.table({"value": actions[f"partition.{column}"].cast(pa.string()),
                           "rows": records}).group_by("value").aggregate([("rows", "sum")])
        return dict(zip(groups["value"].to_pylist(), groups["rows_sum"].to_pylist(), strict=True))

    def history(self, name: str) -> list[dict]:
        return self.table(name).history()

    def version(self, name: str) -> int:
        return self.path_version(self.path(name))

    def path_version(self, path: str) -> int:
        """The table's current version; -1 when it does not exist yet (Delta's convention)."""
        try:
            return DeltaTable(path).version()
        except Exception:
            return -1

    def commit_metadata(self, name: str, with_versions: bool = False) -> list:
        """The `metadata` of the table's writes, newest first (maintenance commits carry none);
        with_versions: (version, metadata) pairs."""
        found = []
        for commit in self.history(name):
            raw = commit.get("userMetadata")
            if raw:
                try:
                    metadata = json.loads(raw)
                except ValueError:
                    continue  # another tool's free-text note
                found.append((commit["version"], metadata) if with_versions else metadata)
        return found

    def transaction_version(self, name: str, app_id: str) -> int | None:
        """The last batch id an app transaction committed to the table (None: never)."""
        if not self.exists(name):
            return None
        return DeltaTable(self.path(name)).transaction_version(app_id)
