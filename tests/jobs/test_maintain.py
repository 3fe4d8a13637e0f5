import os
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from jobs import maintain
from jobs.core.config import config_from_dict
from jobs.core.lake import Lake
from jobs.core.lake_files import write_task_files


def killed_write_leftovers(table_dir: str) -> list[Path]:
    """What a write killed before its commit leaves: its data files, and (older siftlake) a
    staging folder."""
    batch = pa.record_batch({"id": [99], "text": ["ghost"], "model_id": ["a"]})
    list(write_task_files(iter([batch]), f"file://{table_dir}", ["model_id"], "killed", {}))
    staging = Path(table_dir) / "_staging-0123" / "model_id=a"
    staging.mkdir(parents=True)
    (staging / "part-0.parquet").write_bytes(b"PAR1")
    return [*Path(table_dir).rglob("*killed*"), staging.parent]


def maintain_run(spark, root, **settings):
    cfg = config_from_dict({"lake": {"root": root}, "maintain": settings})
    return maintain.run(spark, cfg)


@pytest.fixture()
def appended_table(spark, tmp_path):
    lake = Lake(spark, str(tmp_path / "lake"))
    rows = lambda ids: spark.createDataFrame(  # noqa: E731
        [(i, f"t{i}", "a") for i in ids], "id long, text string, model_id string")
    lake.write(rows(range(0, 3)), "t", partition_by=["model_id"])
    for start in (3, 6, 9):
        lake.write(rows(range(start, start + 3)).repartition(1), "t",
                   partition_by=["model_id"], mode="append")
    return lake


def test_compaction_keeps_data_and_time_travel_within_retention(spark, appended_table):
    lake = appended_table
    leftovers = killed_write_leftovers(lake.path("t"))
    before = len(DeltaTable(lake.path("t")).file_uris())
    report = maintain_run(spark, lake.root)  # default retention: 7 days
    table = DeltaTable(lake.path("t"))
    assert before >= 4 and len(table.file_uris()) == 1
    assert sorted(r.id for r in lake.read("t").collect()) == list(range(12))
    assert DeltaTable(lake.path("t"), version=0).to_pyarrow_table().num_rows == 3
    assert all(p.exists() for p in leftovers)  # younger than the retention: kept
    assert report.rows_in == report.rows_out == 12 and "table t" in report.details


def test_vacuum_removes_killed_writes_and_versions_past_retention(spark, appended_table):
    lake = appended_table
    table_dir = Path(lake.path("t"))
    leftovers = killed_write_leftovers(str(table_dir))
    old = time.time() - 2 * 3600
    for path in [*leftovers, *leftovers[-1].rglob("*")]:
        os.utime(path, (old, old))
    maintain_run(spark, lake.root, retention_hours=1)
    assert not any(p.exists() for p in leftovers)
    assert DeltaTable(str(table_dir), version=0).to_pyarrow_table().num_rows == 3
    maintain_run(spark, lake.root, retention_hours=0)
    on_disk = {str(p.relative_to(table_dir)) for p in table_dir.rglob("*.parquet")}
    referenced = {uri.split(f"{table_dir}/")[1] for uri in DeltaTable(str(table_dir)).file_uris()}
    assert on_disk == referenced
    with pytest.raises(Exception):  # noqa: B017 - version 0's files are gone past the retention
        DeltaTable(str(table_dir), version=0).to_pyarrow_table()
    assert sorted(r.id for r in lake.read("t").collect()) == list(range(12))
