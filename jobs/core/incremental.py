"""Incremental runs: decide between appending results for new documents and a full recompute.

Every write of a scoring job records, in its Delta commit (`userMetadata`), the settings its
results were computed with and the versions of the input tables it read. An incremental run
appends only when the stored settings equal the configured ones and every input has only been
appended to since (compaction changes no data); otherwise it recomputes everything and says why
in one log line. Old and new settings therefore never mix in one table.

An append reads only what its inputs gained since the stored results: the rows of the files
their Delta commits added after the versions recorded (`new_rows`), so a daily run reads the
day's documents, not the lake. Where the log cannot say that exactly (the native backend, a
compaction since, log entries cleaned up) it compares ids over the whole input instead.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.base import log
from jobs.core.lake import Lake, WriteResult
from jobs.core.lake_files import commits_between


@dataclass(frozen=True)
class OutputPlan:
    table: str
    append: bool  # True: compute only documents without a result and append them
    read_version: int  # the output's version when the job planned (-1: no table yet)
    reason: str
    settings: dict
    inputs: dict[str, int]  # input table -> version read
    scope: str | None = None  # a part of the table with its own settings (a model_id)
    since: dict[str, int] = field(default_factory=dict)  # append: input -> version it covers

    @property
    def metadata(self) -> dict:
        return {"settings": self.settings, "inputs": self.inputs, "scope": self.scope}

    @property
    def mode(self) -> str:
        return "append" if self.append else "overwrite"


def file_digest(path: str | None) -> str | None:
    """SHA-256 of a model file, or of a model folder's files and their names (a remote URI is
    identified by itself)."""
    if path is None:
        return None
    if "://" in path or not Path(path).exists():
        return path
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root) if root.is_dir() else "").encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def appended_only(lake: Lake, table: str, since: int) -> bool:
    """True when every commit of `table` after version `since` only added data."""
    current = lake.version(table)
    if current < since or since < 0:
        return False
    commits = commits_between(*lake.filesystem(table), since, current)
    return not any(commit.removes_data for commit in commits)


def stored_metadata(lake: Lake, table: str, scope: str | None = None) -> dict | None:
    """What the newest write of `table` (of `scope` in it) recorded (None: nothing)."""
    found = [
        m for m in lake.commit_metadata(table) if "settings" in m and m.get("scope") == scope
    ]
    return found[0] if found else None


def plan_output(
    lake: Lake, table: str, mode: str, settings: dict, inputs: list[str], job: str,
    scope: str | None = None,
) -> OutputPlan:
    """Append or recompute `table` (or its `scope`), from the configured mode and what its last
    write recorded."""
    read_version = lake.version(table)
    versions = {name: lake.version(name) for name in inputs}

    def plan(append: bool, reason: str, since: dict | None = None) -> OutputPlan:
        level = logging.INFO if append or mode == "full" else logging.WARNING
        log.log(level, "%s: %s", job, reason)
        return OutputPlan(table, append, read_version, reason, settings, versions, scope,
                          dict(since or {}))

    if mode == "full":
        return plan(False, "full mode: recomputing every document")
    if read_version < 0:
        return plan(False, f"incremental mode: no `{table}` table yet, computing every document")
    stored = stored_metadata(lake, table, scope)
    where = f"`{table}`" + (f" for {scope}" if scope else "")
    if stored is None:
        return plan(False, f"incremental mode: {where} records no settings (a new scope, or "
                    "written by an older siftlake): computing every document")
    if stored["settings"] != settings:
        changed = sorted(
            key for key in set(settings) | set(stored["settings"])
            if settings.get(key) != stored["settings"].get(key)
        )
        return plan(False, f"incremental mode: settings {changed} changed since {where} was "
                    f"computed ({ {k: stored['settings'].get(k) for k in changed} } -> "
                    f"{ {k: settings.get(k) for k in changed} }): full recompute")
    rewritten = [
        name for name in inputs
        if not appended_only(lake, name, stored.get("inputs", {}).get(name, -1))
    ]
    if rewritten:
        return plan(False, f"incremental mode: inputs {rewritten} were rewritten (not only "
                    f"appended to) since {where} was computed: full recompute")
    return plan(True, f"incremental mode: appending results for documents new since {where} "
                f"version {read_version}", stored.get("inputs", {}))


def rows_added(lake: Lake, table: str, since: int) -> DataFrame | None:
    """The rows that commits of `table` after version `since` added, read from their files
    alone; None where the log cannot say so exactly: the native backend (a Delta stream source
    does it there), no recorded version, a commit since that removed data, one that compacted
    a file added since (its rows now sit in a file with older ones), or log entries cleaned up.
    Compaction of files that were there at `since` (`maintain` after a daily run) is fine.
    """
    if lake.backend != "delta-rs" or since < 0 or lake.version(table) < since:
        return None
    try:
        commits = commits_between(*lake.filesystem(table), since, lake.version(table))
    except FileNotFoundError:
        return None
    added = {path for commit in commits for path, _ in commit.added}
    removed = {path for commit in commits for path in commit.removed}
    if any(commit.removes_data for commit in commits) or added & removed:
        return None
    return lake.read_path(lake.path(table), label=table, added_after=since)


def new_rows(
    lake: Lake, plan: OutputPlan, table: str, done: DataFrame, broadcast_mb: int = 64,
    within: DataFrame | None = None,
) -> DataFrame:
    """In an append: the rows of input `table` whose doc_id has no row in `done`, the output
    (and has one in `within`, when given: the documents that passed the pre-filter).

    The rows its commits added since the version the stored results cover are the candidates;
    their ids are still looked up in `done`, so a document that arrived while the last run was
    reading is not scored twice. Without usable log entries every row is compared.
    """
    added = rows_added(lake, table, plan.since.get(table, -1))
    if added is None:
        log.info("%s: comparing every id of `%s` with `%s` (its log since version %s is not "
                 "only appends)", plan.table, table, plan.table, plan.since.get(table, -1))
        return without_result(lake.read(table), done, broadcast_mb, within=within)
    return without_result(added, done, broadcast_mb, few=True, within=within)


def ids_cap(broadcast_mb: int) -> int:
    """How many ids `broadcast_mb` holds: ~32 bytes each, plus the hashed relation's slot."""
    return broadcast_mb * 2**20 // 64


def collected_ids(docs: DataFrame, broadcast_mb: int = 64) -> pa.Table | None:
    """The doc_ids of `docs` on the driver; None when there are more than `broadcast_mb` holds."""
    cap = ids_cap(broadcast_mb)
    collected = docs.select("doc_id").limit(cap + 1).toArrow() if cap else None
    return None if collected is None or collected.num_rows > cap else collected


def rows_of(spark: SparkSession, ids: pa.Table, table: DataFrame, columns: tuple = ()) -> pa.Table:
    """doc_id and `columns` of the rows of `table` whose doc_id is in `ids` (collected, few),
    found with no shuffle: `ids` are broadcast to the scan of `table`."""
    if ids.num_rows == 0:
        return table.select("doc_id", *columns).limit(0).toArrow()
    local = spark.createDataFrame(ids)
    return table.select("doc_id", *columns).join(F.broadcast(local), "doc_id", "left_semi") \
        .toArrow()


def restricted_to(docs: DataFrame, ids: pa.Table) -> DataFrame:
    """`docs` with a doc_id in `ids` (collected), by a broadcast join: nothing is shuffled."""
    if ids.num_rows == 0:
        return docs.limit(0)
    return docs.join(F.broadcast(docs.sparkSession.createDataFrame(ids)), "doc_id", "left_semi")


def without_result(
    docs: DataFrame, done: DataFrame, broadcast_mb: int = 64, few: bool = False,
    within: DataFrame | None = None,
) -> DataFrame:
    """Documents whose doc_id has no row in `done` yet (and has one in `within`, when given).

    few: `docs` are a day's new rows; their ids are collected and looked up in `done` and
    `within` (`rows_of`), and `docs` are restricted to the ids left by a broadcast join, so
    nothing is shuffled and `done` and `within` are read for their ids alone.

    Otherwise the ids are compared first (an anti join of the narrow id columns). While the new
    ids fit `broadcast_mb` (`spark.incremental_broadcast_mb`) they are collected once and joined
    back as a broadcast table, so the text of the new documents alone is read and none is
    shuffled; a larger batch joins by a shuffle. The hints are explicit because Spark's estimate
    of a join's output is no bound (`autoBroadcastJoinThreshold` stays as it is).
    """
    spark = docs.sparkSession
    if few:
        candidates = collected_ids(docs, broadcast_mb)
        if candidates is not None:
            keep = pc.invert(pc.is_in(candidates["doc_id"],
                                      rows_of(spark, candidates, done)["doc_id"]))
            if within is not None:
                keep = pc.and_(keep, pc.is_in(candidates["doc_id"],
                                              rows_of(spark, candidates, within)["doc_id"]))
            if pc.all(keep).as_py() is not False:
                return docs
            return restricted_to(docs, candidates.filter(keep))
    new_ids = docs.select("doc_id").join(done.select("doc_id"), "doc_id", "left_anti")
    if within is not None:
        new_ids = new_ids.join(within.select("doc_id"), "doc_id", "left_semi")
    collected = collected_ids(new_ids, broadcast_mb)
    if collected is None:
        return docs.join(new_ids, "doc_id", "left_semi")
    return restricted_to(docs, collected)


def write_scope(
    lake: Lake, docs: DataFrame, compute: Callable[[DataFrame], DataFrame], *, table: str,
    column: str, scope: str, mode: str, settings: dict, inputs: list[str], job: str,
    broadcast_mb: int = 64,
) -> tuple[OutputPlan, WriteResult]:
    """Compute and write one partition with its own settings (a model's losses, a checkpoint's
    scores): the documents it lacks, appended, or all of them, replacing the partition."""
    plan = plan_output(lake, table, mode, settings, inputs, job, scope=scope)
    if plan.append:
        docs = without_result(docs, lake.read(table, {column: [scope]}), broadcast_mb)
    written = lake.write(
        compute(docs), table, partition_by=[column], mode=plan.mode,
        replace_partitions=None if plan.append else {column: [scope]},
        read_version=plan.read_version, unique_key=["doc_id", column], metadata=plan.metadata,
    )
    return plan, written
