"""Incremental ingest of columnar inputs: Parquet files by stream, Delta tables by version."""

import pyarrow as pa
import pyarrow.parquet as pq

from jobs import ingest
from jobs.core.base import write_quarantine
from jobs.core.config import config_from_dict
from jobs.core.lake import Lake
from jobs.ingest_stream import delta_app_id


def config(tmp_path, fmt, paths):
    return config_from_dict({
        "lake": {"root": str(tmp_path / f"lake-{fmt}")},
        "ingest": {"mode": "incremental", "format": fmt, "paths": paths, "id_column": "id",
                   "source_column": None},
    }, "test.yaml")


def records(ids):
    return {"id": [f"i{i}" for i in ids], "text": [f"text number {i} is here" for i in ids]}


def ingested(spark, cfg):
    lake = Lake(spark, cfg.lake.root)
    ids = sorted(r.doc_id for r in lake.read("documents").collect())
    reasons = sorted(r.reason for r in lake.read("quarantine").collect())
    return ids, reasons


def test_only_new_rows_of_delta_and_parquet_inputs_are_ingested(spark, tmp_path):
    source = Lake(spark, str(tmp_path / "input"))
    frame = lambda ids: spark.createDataFrame(  # noqa: E731
        list(zip(*records(ids).values(), strict=True)), "id string, text string")
    source.write(frame(range(3)), "t")
    folder = tmp_path / "parquet"
    folder.mkdir()
    pq.write_table(pa.table(records(range(3))), folder / "part-1.parquet")
    for fmt, paths in (("delta", [source.path("t")]), ("parquet", [f"{folder}/*.parquet"])):
        cfg = config(tmp_path, fmt, paths)
        first = ingest.run(spark, cfg)
        # A clean batch needs no pass to find rejects and commits nothing to quarantine.
        assert not Lake(spark, cfg.lake.root).exists("quarantine"), fmt
        if fmt == "delta":
            source.write(frame(range(3, 5)), "t", mode="append")
            source.write(frame([0]), "t", mode="append")  # an id ingested before
            # A run killed between its two commits: the batch's quarantine row is in.
            lake = Lake(spark, cfg.lake.root)
            killed = spark.createDataFrame([("i0", paths[0], "duplicate_id")],
                                           "raw string, source string, reason string")
            write_quarantine(lake, killed, "ingest",
                             app_transaction=(delta_app_id(paths[0]), source.version("t")))
        else:
            # An id ingested before, and one repeated within the batch.
            pq.write_table(pa.table(records([3, 4, 0, 4])), folder / "part-2.parquet")
        copies = 1 if fmt == "delta" else 2
        second = ingest.run(spark, cfg)
        third = ingest.run(spark, cfg)
        assert (first.rows_in, second.rows_in, third.rows_in) == (3, 2 + copies, 0), fmt
        assert (second.rows_out, second.rows_quarantined) == (2, copies), fmt
        assert second.details["quarantine_reasons (this run)"] == {"duplicate_id": copies}, fmt
        assert third.details["quarantine_reasons (this run)"] == {}, fmt
        assert ingested(spark, cfg) == ([f"i{i}" for i in range(5)], ["duplicate_id"] * copies)


def test_stream_patterns_turn_a_single_file_into_a_glob_of_itself(tmp_path):
    import glob

    import pytest

    from jobs.core.config import ConfigError
    from jobs.ingest_stream import stream_pattern

    single = tmp_path / "a.jsonl"
    single.write_text("")
    (tmp_path / "b.jsonl").write_text("")
    pattern = stream_pattern(str(single), "test.yaml").removeprefix("file://")
    assert glob.has_magic(pattern) and glob.glob(pattern) == [str(single)]
    assert stream_pattern(f"{tmp_path}/*.jsonl", "test.yaml") == f"file://{tmp_path}/*.jsonl"
    with pytest.raises(ConfigError, match="ingest.paths: no folder"):
        stream_pattern(str(tmp_path / "missing" / "*.jsonl"), "test.yaml")
