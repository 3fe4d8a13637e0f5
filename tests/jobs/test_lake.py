import json
import os
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from jobs.core.lake import ConcurrentWriteError, Lake, LakeError, sanitize_partition_value
from jobs.core.lake_files import write_task_files


@pytest.fixture()
def lake(spark, tmp_path):
    return Lake(spark, str(tmp_path / "lake"))


def frame(spark, rows):
    return spark.createDataFrame(rows, "id long, text string, model_id string")


def test_backend_is_delta_rs_without_jars(lake):
    assert lake.backend == "delta-rs"


def test_create_overwrite_and_history(spark, lake):
    lake.write(frame(spark, [(i, f"t{i}", "a") for i in range(10)]), "t", partition_by=["model_id"])
    result = lake.write(frame(spark, [(1, "x", "b")]), "t", partition_by=["model_id"])
    table = DeltaTable(lake.path("t"))
    assert table.version() == 1 and result.rows == 1
    assert [h["operation"] for h in lake.history("t")][-1] == "CREATE TABLE"
    assert table.metadata().partition_columns == ["model_id"]
    assert [r.id for r in lake.read("t").collect()] == [1]
    old = DeltaTable(lake.path("t"), version=0).to_pyarrow_table()
    assert old.num_rows == 10  # time travel still sees the first version


def test_partition_replace_touches_only_that_partition(spark, lake):
    rows = [(i, f"t{i}", "a" if i % 2 else "b") for i in range(20)]
    lake.write(frame(spark, rows), "t", partition_by=["model_id"])
    lake.write(frame(spark, [(99, "new", "a")]), "t", partition_by=["model_id"],
               replace_partitions={"model_id": ["a"]})
    got = {(r.model_id, r.id) for r in lake.read("t").collect()}
    assert got == {("a", 99)} | {("b", i) for i in range(0, 20, 2)}
    assert lake.count("t") == 11


def test_replace_refuses_rows_outside_named_partitions(spark, lake):
    lake.write(frame(spark, [(1, "x", "a")]), "t", partition_by=["model_id"])
    before = sorted(os.listdir(lake.path("t")))
    with pytest.raises(LakeError, match="outside the partitions"):
        lake.write(frame(spark, [(2, "y", "b")]), "t", partition_by=["model_id"],
                   replace_partitions={"model_id": ["a"]})
    assert sorted(os.listdir(lake.path("t"))) == before
    assert lake.count("t") == 1


def test_partition_pruning_reads_only_matching_files(spark, lake):
    rows = [(i, "t", m) for i, m in enumerate(["a", "b", "c"] * 5)]
    lake.write(frame(spark, rows), "t", partition_by=["model_id"])
    pruned = lake.read("t", partitions={"model_id": ["b"]})
    files = pruned.inputFiles()
    assert files and all("model_id=b" in f for f in files)
    assert {r.model_id for r in pruned.collect()} == {"b"}


def test_reads_follow_the_log_not_the_directory(spark, lake):
    lake.write(frame(spark, [(1, "keep", "a")]), "t", partition_by=["model_id"])
    stray = os.path.join(lake.path("t"), "model_id=a", "stray.parquet")
    pq.write_table(frame(spark, [(2, "ghost", "a")]).drop("model_id").toArrow(), stray)
    assert [r.text for r in lake.read("t").collect()] == ["keep"]


def test_schema_types_survive_and_partition_strings_stay_strings(spark, lake):
    df = spark.createDataFrame([(1, 0.5, "007")], "id long, score double, model_id string")
    lake.write(df, "t", partition_by=["model_id"])
    back = lake.read("t")
    assert dict(back.dtypes) == {"id": "bigint", "score": "double", "model_id": "string"}
    assert back.first().model_id == "007"
    stats = DeltaTable(lake.path("t")).get_add_actions(flatten=True)
    assert stats.column("num_records").to_pylist() == [1]


def test_refuses_changing_partitioning_and_bad_values(spark, lake):
    lake.write(frame(spark, [(1, "x", "a")]), "t", partition_by=["model_id"])
    with pytest.raises(LakeError, match="partitioned by"):
        lake.write(frame(spark, [(1, "x", "a")]), "t", partition_by=[])
    with pytest.raises(LakeError, match="outside"):
        lake.write(frame(spark, [(1, "x", "Has Space")]), "u", partition_by=["model_id"])
    assert sanitize_partition_value("Llama-2 7B/chat") == "llama-2_7b_chat"


def test_empty_write_and_missing_table(spark, lake):
    empty = frame(spark, [])
    lake.write(empty, "e", partition_by=["model_id"])
    assert lake.read("e").count() == 0 and lake.read("e").columns == ["id", "text", "model_id"]
    with pytest.raises(LakeError, match="not found"):
        lake.read("nope")


def test_file_stats_stay_strict_json_with_nan_and_inf(spark, lake):
    df = spark.createDataFrame([(1, float("nan")), (2, 1.5), (3, float("inf"))], "id long, x double")
    lake.write(df, "f")
    log = "".join(p.read_text() for p in (Path(lake.path("f")) / "_delta_log").glob("*.json"))
    assert "NaN" not in log and "Infinity" not in log
    assert lake.count("f") == 3


def data_files(table_dir):
    return sorted(str(p.relative_to(table_dir)) for p in Path(table_dir).rglob("*.parquet"))


def test_overwrite_refuses_when_the_table_changed_since_it_was_read(spark, lake):
    lake.write(frame(spark, [(1, "first", "a")]), "t", partition_by=["model_id"])
    read_at = lake.version("t")
    lake.write(frame(spark, [(2, "winner", "a")]), "t", partition_by=["model_id"],
               read_version=read_at)
    on_disk = data_files(lake.path("t"))
    with pytest.raises(ConcurrentWriteError, match=r"'t'.*version 0.*version 1"):
        lake.write(frame(spark, [(3, "loser", "a")]), "t", partition_by=["model_id"],
                   read_version=read_at)
    assert [r.text for r in lake.read("t").collect()] == ["winner"]
    assert data_files(lake.path("t")) == on_disk  # the refused write's files are gone


def test_concurrent_appends_land_when_disjoint_and_refuse_shared_keys(spark, lake):
    lake.write(frame(spark, [(0, "seed", "a")]), "t", partition_by=["model_id"])
    read_at = lake.version("t")
    for ids in ([1, 2], [3, 4]):  # two appends planned against the same version
        lake.write(frame(spark, [(i, "x", "a") for i in ids]), "t", partition_by=["model_id"],
                   mode="append", read_version=read_at, unique_key=["id", "model_id"])
    assert sorted(r.id for r in lake.read("t").collect()) == [0, 1, 2, 3, 4]
    with pytest.raises(ConcurrentWriteError, match=r"same \['id', 'model_id'\].*\(4, 'a'\)"):
        lake.write(frame(spark, [(4, "again", "a"), (5, "new", "a")]), "t",
                   partition_by=["model_id"], mode="append", read_version=read_at,
                   unique_key=["id", "model_id"])
    assert lake.count("t") == 5


def test_app_transaction_makes_a_replayed_batch_a_no_op(spark, lake):
    batch = frame(spark, [(1, "x", "a")])
    first = lake.write(batch, "t", mode="append", app_transaction=("stream-1", 0),
                       metadata={"settings": {"k": 1}})
    replay = lake.write(batch, "t", mode="append", app_transaction=("stream-1", 0))
    lake.write(frame(spark, [(2, "y", "a")]), "t", mode="append", app_transaction=("stream-1", 1))
    assert not first.skipped and replay.skipped
    assert sorted(r.id for r in lake.read("t").collect()) == [1, 2]
    assert lake.transaction_version("t", "stream-1") == 1
    assert lake.commit_metadata("t") == [{"settings": {"k": 1}}]


def test_a_write_task_buffers_at_most_its_cap_over_all_its_partitions(tmp_path):
    """Rows of many partitions wait in memory up to one cap per task, not one per file, so a
    task's memory does not grow with its size or its partitions: the file holding most rows
    writes them out first. Every row lands once, in the file of its partition."""
    rng = random.Random(0)
    batches = [pa.record_batch({
        "id": list(range(b * 400, (b + 1) * 400)),
        "text": ["".join(rng.choices("abcdefgh ", k=200)) for _ in range(400)],
        "p": [f"v{rng.randrange(6)}" for _ in range(400)],
    }) for b in range(30)]
    cap = 300_000
    written = next(write_task_files(iter(batches), f"file://{tmp_path}", ["p"], "capped", {},
                                    max_pending_bytes=cap)).to_pydict()
    assert len(written["path"]) == 6
    largest_batch = max(b.nbytes for b in batches)
    ids, groups = [], 0
    for relative, values in zip(written["path"], written["partition_values"], strict=True):
        parquet = pq.ParquetFile(tmp_path / relative)
        groups += parquet.num_row_groups
        for index in range(parquet.num_row_groups):
            group = parquet.read_row_group(index)
            assert group.nbytes <= cap + largest_batch
            ids += group["id"].to_pylist()
        assert relative.startswith(f"p={json.loads(values)['p']}/")
    assert sorted(ids) == list(range(30 * 400))
    assert groups > 2 * len(written["path"])  # flushed while the task ran, not only at its end
