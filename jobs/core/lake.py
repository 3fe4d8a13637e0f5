"""Every Delta read and write goes through here.

Two back-ends produce the same table (schema, partitioning, history):
- native: the session has Delta (Databricks, or delta-spark jars) → `format("delta")`;
- delta-rs: each Spark task writes its Parquet files straight into the table's partition folders
  under unique names (jobs/core/lake_files.py), and `deltalake` commits them as one transaction
  (create, overwrite, append, or replace of named partitions). A killed write leaves only files
  no version references; `maintain` (VACUUM) removes them.

Concurrent writers: a job passes the version it read (`read_version`, taken when it planned its
work). An overwrite fails with ConcurrentWriteError when anything changed the table's data since;
an append fails only when a concurrent writer removed data or, given `unique_key`, appended rows
with the same keys: concurrent appends of disjoint data both land.

Spark's `mode("overwrite")` is never pointed at a table folder: it would delete `_delta_log` or
files the log still references (shared/NOTES.md). Reads are in jobs/core/lake_reads.py.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Schema, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, create_table_with_add_actions
from pyspark.sql import DataFrame

from jobs.core.errors import UserError
from jobs.core.lake_files import (
    FILE_ROWS_SCHEMA,
    PARTITION_VALUE,
    REFUSED,
    commits_between,
    conflict_reason,
    delete_files,
    delete_write,
    read_keys,
    sanitize_partition_value,  # noqa: F401 - jobs import it from here
    table_arrow_schema,
    write_task_files,
)
from jobs.core.lake_reads import (  # noqa: F401 - jobs import them from here
    LakeError,
    LakeTables,
    TableNotFound,
)

# Commits lost to a writer that committed between our check and our commit, re-checked each time.
COMMIT_ATTEMPTS = 10


class ConcurrentWriteError(LakeError, UserError):
    """Another writer changed the table after this job read it; nothing was committed."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    path: str
    rows: int
    files: int
    version: int | None
    skipped: bool = False  # the app transaction was already committed: a replayed batch


@dataclass
class WriteRequest:
    name: str
    mode: Literal["overwrite", "append"]
    partition_by: list[str]
    replace: dict[str, list[str]]
    read_version: int | None
    unique_key: list[str] | None
    metadata: dict | None
    app_transaction: tuple[str, int] | None
    actions: list[AddAction] = field(default_factory=list)


class Lake(LakeTables):
    """Tables under one root, read (LakeTables) and written."""

    # -- writes ----------------------------------------------------------------------------
    def write(
        self,
        df: DataFrame,
        name: str,
        *,
        partition_by: list[str] | tuple[str, ...] = (),
        replace_partitions: Mapping[str, Iterable[str]] | None = None,
        mode: Literal["overwrite", "append"] = "overwrite",
        read_version: int | None = None,
        unique_key: list[str] | None = None,
        metadata: dict | None = None,
        app_transaction: tuple[str, int] | None = None,
    ) -> WriteResult:
        """Overwrite the table (or only the partitions in `replace_partitions`), or append.

        read_version: the table version the job planned from (`version(name)` at its start);
        None skips the concurrency check. unique_key: columns no two appends may share.
        metadata: JSON-able dict kept in the commit (`commit_metadata` reads it back).
        app_transaction: (app_id, batch id); a batch already committed is skipped, so a
        replayed micro-batch never lands twice.
        """
        partition_by = list(partition_by)
        replace = {k: sorted(set(v)) for k, v in (replace_partitions or {}).items()}
        if set(replace) - set(partition_by):
            raise LakeError(f"{name}: can only replace partitions of columns {partition_by}")
        if replace and mode != "overwrite":
            raise LakeError(f"{name}: replace_partitions needs mode='overwrite'")
        for col, values in replace.items():
            for value in values:
                if not PARTITION_VALUE.match(value):
                    raise LakeError(f"{name}: partition value {value!r} of {col} is not [a-z0-9_-]")
        if app_transaction is not None:
            done = self.transaction_version(name, app_transaction[0])
            if done is not None and done >= app_transaction[1]:
                return WriteResult(name, self.path(name), 0, 0, self.version(name), skipped=True)
        request = WriteRequest(name, mode, partition_by, replace, read_version, unique_key,
                               metadata, app_transaction)
        if self.backend == "native":
            return self._write_native(df, request)
        return self._write_delta_rs(df, request)

    def _write_native(self, df: DataFrame, req: WriteRequest) -> WriteResult:
        # Delta's own optimistic concurrency guards the commit; this check covers the time
        # between the job's planning read and the write.
        self._unchanged_since(req, our_keys=None)
        writer = df.write.format("delta").mode(req.mode)
        if req.partition_by:
            writer = writer.partitionBy(*req.partition_by)
        if req.replace:
            predicate = " AND ".join(
                f"{col} IN ({', '.join(repr(v) for v in values)})"
                for col, values in req.replace.items()
            )
            writer = writer.option("replaceWhere", predicate)
        elif req.mode == "overwrite":
            writer = writer.option("overwriteSchema", "true")
        if req.metadata is not None:
            writer = writer.option("userMetadata", json.dumps(req.metadata, sort_keys=True))
        if req.app_transaction is not None:
            writer = writer.option("txnAppId", req.app_transaction[0])
            writer = writer.option("txnVersion", str(req.app_transaction[1]))
        writer.save(self._spark_uri(self.path(req.name)))
        return WriteResult(req.name, self.path(req.name), self.count(req.name), -1,
                           self.version(req.name))

    def _write_delta_rs(self, df: DataFrame, req: WriteRequest) -> WriteResult:
        table_path = self.path(req.name)
        existing = self._existing_partitioning(req.name)
        if existing is not None and existing != req.partition_by:
            raise LakeError(
                f"{req.name}: table at {table_path} is partitioned by {existing}, this write by "
                f"{req.partition_by}; delete the table folder to change its layout"
            )
        if existing is None:
            req.replace = {}  # nothing to replace yet: this write creates the table
        arrow_schema = table_arrow_schema(df, req.partition_by)
        req.actions = self._write_files(df, req)
        try:
            version = self._commit(req, Schema.from_arrow(arrow_schema))
        except BaseException:
            fs, base = self.filesystem(req.name)
            delete_files(fs, base, [a.path for a in req.actions])
            raise
        rows = sum(json.loads(a.stats).get("numRecords", 0) for a in req.actions)
        return WriteResult(req.name, table_path, rows, len(req.actions), version)

    def _write_files(self, df: DataFrame, req: WriteRequest) -> list[AddAction]:
        uri, write_id = self._spark_uri(self.path(req.name)), uuid.uuid4().hex
        partition_by, allowed = req.partition_by, dict(req.replace)

        def task(batches):
            return write_task_files(batches, uri, partition_by, write_id, allowed)

        try:
            rows = df.mapInArrow(task, FILE_ROWS_SCHEMA).collect()
        except Exception as exc:
            delete_write(*pafs.FileSystem.from_uri(uri), write_id)
            refused = re.search(re.escape(REFUSED) + r"([^\n]*)", str(exc))
            if refused:
                raise LakeError(f"{req.name}: {refused.group(1)}") from None
            raise
        return [
            AddAction(r.path, r.size, json.loads(r.partition_values), r.modified, True, r.stats)
            for r in rows
        ]

    def _commit(self, req: WriteRequest, schema: Schema) -> int:
        path = self.path(req.name)
        properties = CommitProperties(
            custom_metadata=(
                {"userMetadata": json.dumps(req.metadata, sort_keys=True)} if req.metadata else None
            ),
            app_transactions=[Transaction(*req.app_transaction)] if req.app_transaction else None,
            # Checked writes must not let delta-rs rebase them over a commit they never saw.
            max_commit_retries=0 if req.read_version is not None else None,
        )
        fs, base = self.filesystem(req.name)
        files = [(a.path, a.partition_values) for a in req.actions]
        for _ in range(COMMIT_ATTEMPTS):
            table = self._unchanged_since(
                req, our_keys=lambda: read_keys(fs, base, files, req.unique_key)
            )
            try:
                if table is None:
                    create_table_with_add_actions(
                        path, schema, req.actions, mode="error",
                        partition_by=req.partition_by or None, commit_properties=properties,
                    )
                else:
                    filters = [(col, "in", values) for col, values in req.replace.items()] or None
                    table.create_write_transaction(
                        req.actions, mode=req.mode, schema=schema,
                        partition_by=req.partition_by or None, partition_filters=filters,
                        commit_properties=properties,
                    )
                return DeltaTable(path).version()
            except CommitFailedError:
                continue  # a writer committed between our check and our commit: check again
            except DeltaError:
                if table is None and self.exists(req.name):
                    continue  # created meanwhile by another writer
                raise
        raise ConcurrentWriteError(
            f"table {req.name!r}: {COMMIT_ATTEMPTS} commit attempts lost to other writers"
        )

    def _unchanged_since(self, req: WriteRequest, our_keys: Callable[[], set] | None):
        """The table to commit to (None: create it), after checking what others committed."""
        try:
            table = DeltaTable(self.path(req.name))
        except Exception:
            table = None
        current = table.version() if table is not None else -1
        if req.read_version is None or current == req.read_version:
            return table
        fs, base = self.filesystem(req.name)
        commits = commits_between(fs, base, req.read_version, current)
        others = ", ".join(f"v{c.version} {c.operation}" for c in commits)
        conflict = conflict_reason(commits, req.mode, req.unique_key, fs, base, our_keys)
        if conflict:
            raise ConcurrentWriteError(
                f"table {req.name!r} changed since this job read it at version {req.read_version}: "
                f"it is now at version {current} ({others}); {conflict}. Nothing was committed; "
                "rerun the job"
            )
        return table

    def _existing_partitioning(self, name: str) -> list[str] | None:
        if not self.exists(name):
            return None
        return list(DeltaTable(self.path(name)).metadata().partition_columns)
