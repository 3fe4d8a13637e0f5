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
    # append: the table holds results for no row its inputs gained after `since` (see `covered`)
    covered: bool = False

    @property
    def metadata(self) -> dict:
        """What the write records. The jobs writing a whole table (no scope) read their inputs
        as of `inputs` exactly (`new_rows`, `passed_documents`), which `inputs_exact` says, so
        the next append may rely on `covered`."""
        exact = {"inputs_exact": True} if self.scope is None else {}
        return {"settings": self.settings, "inputs": self.inputs, "scope": self.scope, **exact}

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
    found = stored_commit(lake, table, scope)
    return found[1] if found else None


def stored_commit(
    lake: Lake, table: str, scope: str | None = None, history: list | None = None
) -> tuple[int, dict] | None:
    """(version, metadata) of the newest write of `table` (of `scope`) that recorded settings;
    history: the table's `commit_metadata(with_versions=True)`, when already read."""
    for version, metadata in history or lake.commit_metadata(table, with_versions=True):
        if "settings" in metadata and metadata.get("scope") == scope:
            return version, metadata
    return None


def covered(lake: Lake, table: str, history: list, version: int, metadata: dict) -> bool:
    """True when `table` holds results only for input rows up to the versions that its newest
    write (at `version`, with `metadata`) recorded, so an input row added after them (ingest
    keeps doc_ids unique) has no result yet and needs no lookup.

    That holds when the writes read their inputs as of the versions they recorded
    (`inputs_exact`), none recorded later versions than the newest (concurrent appends can
    commit out of order) and no commit since added rows. Before the newest write that did not
    (a full recompute by an older siftlake) nothing needs checking: it read its inputs before
    any later write planned (an append planned before it commits is refused), so at versions
    no later than theirs.
    """
    bound = metadata.get("inputs", {})
    if metadata.get("inputs_exact") is not True or metadata.get("scope") is not None:
        return False
    for _, earlier in history:
        if "settings" not in earlier:
            continue
        if earlier.get("inputs_exact") is not True:
            break
        if any(v > bound.get(name, -1) for name, v in earlier.get("inputs", {}).items()):
            return False
    try:
        commits = commits_between(*lake.filesystem(table), version, lake.version(table))
    except FileNotFoundError:  # log entries cleaned up: nothing to rely on
        return False
    return not any(commit.added for commit in commits)


def changed_settings(stored: dict, configured: dict) -> list[str]:
    """The keys whose value differs. A key that a write by an older siftlake did not record is
    unchanged while it is configured empty (a knob added since, at its default: no rules per
    source), so upgrading forces no recompute."""
    def differs(key: str) -> bool:
        if key not in stored and configured.get(key) in (None, [], {}):
            return False
        return configured.get(key) != stored.get(key)

    return sorted(key for key in set(stored) | set(configured) if differs(key))


def plan_output(
    lake: Lake, table: str, mode: str, settings: dict, inputs: list[str], job: str,
    scope: str | None = None,
) -> OutputPlan:
    """Append or recompute `table` (or its `scope`), from the configured mode and what its last
    write recorded."""
    read_version = lake.version(table)
    versions = {name: lake.version(name) for name in inputs}

    def plan(append: bool, reason: str, since: dict | None = None, exact: bool = False
             ) -> OutputPlan:
        level = logging.INFO if append or mode == "full" else logging.WARNING
        log.log(level, "%s: %s", job, reason)
        return OutputPlan(table, append, read_version, reason, settings, versions, scope,
                          dict(since or {}), exact)

    if mode == "full":
        return plan(False, "full mode: recomputing every document")
    if read_version < 0:
        return plan(False, f"incremental mode: no `{table}` table yet, computing every document")
    history = lake.commit_metadata(table, with_versions=True)
    found = stored_commit(lake, table, scope, history)
    stored = found[1] if found else None
    where = f"`{table}`" + (f" for {scope}" if scope else "")
    if stored is None:
        return plan(False, f"incremental mode: {where} records no settings (a new scope, or "
                    "written by an older siftlake): computing every document")
    changed = changed_settings(stored["settings"], settings)
    if changed:
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
                f"version {read_version}", stored.get("inputs", {}),
                covered(lake, table, history, *found))


def rows_added(lake: Lake, table: str, since: int, upto: int | None = None) -> DataFrame | None:
    """The rows that commits of `table` after version `since` (up to `upto`, default the
    current version) added, read from their files alone; None where the log cannot say so
    exactly: the native backend (a Delta stream source does it there), no recorded version, a
    commit since that removed data, one that compacted a file added since (its rows now sit in
    a file with older ones), or log entries cleaned up. Compaction of files that were there at
    `since` (`maintain` after a daily run) is fine.
    """
    upto = lake.version(table) if upto is None else upto
    if lake.backend != "delta-rs" or since < 0 or upto < since:
        return None
    try:
        commits = commits_between(*lake.filesystem(table), since, upto)
    except FileNotFoundError:
        return None
    added = {path for commit in commits for path, _ in commit.added}
    removed = {path for commit in commits for path in commit.removed}
    if any(commit.removes_data for commit in commits) or added & removed:
        return None
    return lake.read_path(lake.path(table), label=table, added_after=since, added_upto=upto)


@dataclass(frozen=True)
class Passed:
    """The documents whose boolean `column` of `table` is true (those the pre-filter passed);
    a day's new documents are most likely among the rows `table` gained after `since`."""

    lake: Lake
    table: str
    column: str
    since: int = -1

    def frame(self) -> DataFrame:
        return self.lake.read(self.table).where(F.col(self.column)).select("doc_id")

    def among(self, ids: pa.Table) -> pa.Array:
        """Which of `ids` (collected) pass: a boolean per id."""
        found = lookup(self.lake, self.table, ids, self.since, (self.column,))
        passing = found.filter(pc.fill_null(found[self.column], False))["doc_id"]
        return pc.is_in(ids["doc_id"], passing)


def lookup(lake: Lake, table: str, ids: pa.Table, since: int, columns: tuple = ()) -> pa.Table:
    """doc_id and `columns` of the rows of `table` with a doc_id in `ids` (collected, few),
    looked for first among the rows its commits after version `since` added (a day's rows,
    read from their files alone), then, for ids not found there, in the whole table."""
    spark = lake.spark
    added = rows_added(lake, table, since)
    if added is None:
        return rows_of(spark, ids, lake.read(table), columns)
    found = rows_of(spark, ids, added, columns)
    missing = ids.filter(pc.invert(pc.is_in(ids["doc_id"], found["doc_id"])))
    if missing.num_rows == 0:
        return found
    rest = rows_of(spark, missing, lake.read(table), columns)
    return pa.concat_tables([found, rest.cast(found.schema)])


def new_rows(
    lake: Lake, plan: OutputPlan, table: str, broadcast_mb: int = 64,
    within: Passed | None = None,
) -> DataFrame:
    """In an append: the rows of input `table` whose doc_id has no row in the output yet
    (and passes `within`, when given: the pre-filter's verdicts).

    The rows its commits added after the version the stored results cover, up to the version
    this run records, are the candidates: exactly those, so what this run computes is what it
    records. Their ids are looked up in the output's unless it is `covered` (after an older
    siftlake's write, a document that arrived while it was reading is not scored twice).
    Without usable log entries every row of the recorded version is compared.
    """
    since, upto = plan.since.get(table, -1), plan.inputs.get(table)
    added = rows_added(lake, table, since, upto)
    if added is None:
        log.info("%s: comparing every id of `%s` with `%s` (its log since version %s is not "
                 "only appends)", plan.table, table, plan.table, since)
        return without_result(lake.read(table, version=upto), lake.read(plan.table),
                              broadcast_mb, within=None if within is None else within.frame())
    return without_result(added, None if plan.covered else lake.read(plan.table), broadcast_mb,
                          few=True, within=within)


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
    docs: DataFrame, done: DataFrame | None, broadcast_mb: int = 64, few: bool = False,
    within: DataFrame | Passed | None = None,
) -> DataFrame:
    """Documents whose doc_id has no row in `done` yet (None: none has) and passes `within`,
    when given (a DataFrame of the passing doc_ids, or a `Passed`).

    few: `docs` are a day's new rows; their ids are collected and looked up in `done` and
    `within` (`rows_of`, `Passed.among`), and `docs` are restricted to the ids left by a
    broadcast join, so nothing is shuffled and `done` and `within` are read for their ids alone.

    Otherwise the ids are compared first (an anti join of the narrow id columns). While the new
    ids fit `broadcast_mb` (`spark.incremental_broadcast_mb`) they are collected once and joined
    back as a broadcast table, so the text of the new documents alone is read and none is
    shuffled; a larger batch joins by a shuffle. The hints are explicit because Spark's estimate
    of a join's output is no bound (`autoBroadcastJoinThreshold` stays as it is).
    """
    spark = docs.sparkSession
    candidates = collected_ids(docs, broadcast_mb) if few else None
    if candidates is not None:
        keep = pc.is_valid(candidates["doc_id"])
        if done is not None:
            keep = pc.invert(pc.is_in(candidates["doc_id"],
                                      rows_of(spark, candidates, done)["doc_id"]))
        if isinstance(within, Passed):
            keep = pc.and_(keep, within.among(candidates))
        elif within is not None:
            keep = pc.and_(keep, pc.is_in(candidates["doc_id"],
                                          rows_of(spark, candidates, within)["doc_id"]))
        if pc.all(keep).as_py() is not False:
            return docs
        return restricted_to(docs, candidates.filter(keep))
    if isinstance(within, Passed):
        within = within.frame()
    new_ids = docs.select("doc_id")
    if done is not None:
        new_ids = new_ids.join(done.select("doc_id"), "doc_id", "left_anti")
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
