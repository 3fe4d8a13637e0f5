"""Incremental runs: decide between appending results for new documents and a full recompute.

Every write of a scoring job records, in its Delta commit (`userMetadata`), the settings its
results were computed with and the versions of the input tables it read. An incremental run
appends only when the stored settings equal the configured ones and every input has only been
appended to since (compaction changes no data); otherwise it recomputes everything and says why
in one log line. Old and new settings therefore never mix in one table.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import DataFrame
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

    def plan(append: bool, reason: str) -> OutputPlan:
        level = logging.INFO if append or mode == "full" else logging.WARNING
        log.log(level, "%s: %s", job, reason)
        return OutputPlan(table, append, read_version, reason, settings, versions, scope)

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
                f"version {read_version}")


def without_result(docs: DataFrame, done: DataFrame, broadcast_mb: int = 64) -> DataFrame:
    """Documents whose doc_id has no row in `done` yet.

    The ids are compared first (an anti join of the narrow id columns). While the new ids fit
    `broadcast_mb` (`spark.incremental_broadcast_mb`) they are collected once and joined back
    as a broadcast table, so the text of the new documents alone is read and none is shuffled;
    a larger batch joins by a shuffle. The hint is explicit because Spark's estimate of a
    join's output is no bound (`autoBroadcastJoinThreshold` stays as it is).
    """
    new_ids = docs.select("doc_id").join(done.select("doc_id"), "doc_id", "left_anti")
    cap = broadcast_mb * 2**20 // 64  # ids of up to ~32 bytes, plus the hashed relation's slot
    collected = new_ids.limit(cap + 1).toArrow() if cap else None
    if collected is None or collected.num_rows > cap:
        return docs.join(new_ids, "doc_id", "left_semi")
    local = docs.sparkSession.createDataFrame(collected) if collected.num_rows else \
        docs.limit(0).select("doc_id")
    return docs.join(F.broadcast(local), "doc_id", "left_semi")


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
