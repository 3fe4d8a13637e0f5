"""maintain: compaction, VACUUM and the leftovers of killed writes, for the tables of the lake.

Appends (incremental runs, streaming ingest) leave many small files; compaction rewrites them
into files of about `maintain.target_file_mb` without changing any data (readers and concurrent
appends are unaffected). VACUUM then deletes every file that no version within
`maintain.retention_hours` references: files compaction or overwrites replaced, and the files of
writes killed before their commit (never referenced by any version). Time travel to versions
inside the retention keeps working. `_staging-*` folders that older siftlake writers left behind
are removed once older than the retention.
"""

from __future__ import annotations

import time

import pyarrow.fs as pafs
from pyspark.sql import SparkSession

from jobs.core.base import JobReport, lake_for, log
from jobs.core.config import Config, ConfigError
from jobs.core.lake import Lake

JOB = "maintain"
STAGING_PREFIX = "_staging-"


def lake_tables(lake: Lake) -> list[str]:
    """Every Delta table directly under the lake root."""
    fs, base = lake.root_filesystem()
    folders = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    return sorted(
        info.base_name for info in folders
        if info.type == pafs.FileType.Directory and lake.exists(info.base_name)
    )


def remove_old_staging(lake: Lake, name: str, min_age_hours: float) -> int:
    """Delete `_staging-*` folders of killed older-style writes; returns how many went."""
    fs, base = lake.filesystem(name)
    cutoff = time.time() - min_age_hours * 3600
    removed = 0
    for info in fs.get_file_info(pafs.FileSelector(base)):
        if info.type != pafs.FileType.Directory or not info.base_name.startswith(STAGING_PREFIX):
            continue
        inside = fs.get_file_info(pafs.FileSelector(info.path, recursive=True))
        newest = max([i.mtime.timestamp() for i in inside if i.mtime] + [info.mtime.timestamp()])
        if newest <= cutoff:
            fs.delete_dir(info.path)
            removed += 1
    return removed


def compact(lake: Lake, name: str, target_file_mb: int) -> str:
    if lake.backend == "native":
        lake.spark.sql(f"OPTIMIZE delta.`{lake.path(name)}`")
        return "optimized"
    metrics = lake.table(name).optimize.compact(target_size=target_file_mb * 1024 * 1024)
    return f"{metrics['numFilesRemoved']} files -> {metrics['numFilesAdded']}"


def vacuum(lake: Lake, name: str, retention_hours: int) -> str:
    if lake.backend == "native":
        # Databricks refuses a retention under 7 days unless this check is off for the session.
        lake.spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
        lake.spark.sql(f"VACUUM delta.`{lake.path(name)}` RETAIN {retention_hours} HOURS")
        return "vacuumed"
    # full: also files no commit ever referenced (killed writes), by their age.
    deleted = lake.table(name).vacuum(
        retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False,
        full=True,
    )
    return f"{len(deleted)} unreferenced files deleted"


def run(spark: SparkSession, cfg: Config) -> JobReport:
    lake = lake_for(spark, cfg)
    settings = cfg.maintain
    names = settings.tables or lake_tables(lake)
    missing = [n for n in names if not lake.exists(n)]
    if missing:
        raise ConfigError(f"{cfg.source}: maintain.tables: no table {missing} under {lake.root}")
    details, rows = {}, 0
    for name in names:
        done = []
        if settings.compact:
            done.append(f"compaction {compact(lake, name, settings.target_file_mb)}")
        if settings.vacuum:
            done.append(f"vacuum {vacuum(lake, name, settings.retention_hours)}")
        staging = remove_old_staging(lake, name, settings.retention_hours)
        if staging:
            done.append(f"{staging} old _staging folders removed")
        rows += lake.count(name)
        details[f"table {name}"] = "; ".join(done) or "nothing to do"
        log.info("maintain: %s: %s", name, details[f"table {name}"])
    return JobReport(
        JOB, rows, rows, tables={n: lake.path(n) for n in names},
        details={"retention": f"{settings.retention_hours} h", **details},
    ).check_invariant()
