"""Incremental prefilter / score / bucketize: only new documents, appended; settings recorded."""

import logging
import random
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs import bucketize, prefilter, score
from jobs.core.config import config_from_dict
from jobs.core.incremental import rows_added, without_result
from jobs.core.lake import Lake
from jobs.ingest import DOCUMENTS_TABLE
from tests.jobs.test_prefilter import prose


def append_documents(spark, lake, start, count, rng):
    rows = []
    for i in range(start, start + count):
        text = "Buy cheap watches now, best price! " * 12 if i % 5 == 4 else prose(rng, 8)
        rows.append((f"d{i:03d}", text, "web", len(text), len(text.encode()), "{}"))
    frame = spark.createDataFrame(
        rows, "doc_id string, text string, source string, n_chars long, n_bytes long, meta string")
    lake.write(frame, DOCUMENTS_TABLE, mode="append", unique_key=["doc_id"])


def daily(spark, cfg):
    return [job.run(spark, cfg) for job in (prefilter, score, bucketize)]


def incremental_cfg(tmp_path, **extra):
    overrides = {"prefilter": {"mode": "incremental"}, "score": {"mode": "incremental"},
                 "bucketize": {"mode": "incremental", "n_buckets": 2, "sample_rows": 100}}
    return config_from_dict({"lake": {"root": str(tmp_path / "lake")}, **overrides, **extra},
                            "test.yaml")


def run_counts(reports):
    return [r.details["run"].split("; ")[1] for r in reports]


def files(lake, table):
    return set(DeltaTable(lake.path(table)).file_uris())


def test_incremental_chain_appends_new_results_and_a_changed_setting_recomputes(
    spark, tmp_path, caplog
):
    rng = random.Random(1)
    cfg = incremental_cfg(tmp_path)
    lake = Lake(spark, cfg.lake.root)
    append_documents(spark, lake, 0, 10, rng)
    daily(spark, cfg)
    before = {t: files(lake, t) for t in ("prefilter", "scores", "curated")}
    buckets = {r.doc_id: r.quality_bucket for r in lake.read("curated").collect()}
    thresholds_version = lake.version("bucket_thresholds")

    append_documents(spark, lake, 10, 10, rng)
    reports = daily(spark, cfg)
    assert run_counts(reports) == [
        "10 documents judged now", "8 documents scored now", "8 documents placed now"]
    for table, earlier in before.items():
        assert earlier <= files(lake, table), f"{table} was rewritten, not appended to"
    scores = lake.read("scores")
    assert scores.count() == scores.select("doc_id").distinct().count() == 16
    curated = {r.doc_id: r.quality_bucket for r in lake.read("curated").collect()}
    assert len(curated) == 16 and all(curated[d] == b for d, b in buckets.items())
    assert lake.version("bucket_thresholds") == thresholds_version  # stable buckets

    changed = cfg.model_copy(deep=True)
    changed.score.zstd_level = 9
    with caplog.at_level(logging.INFO, logger="siftlake"):
        score.run(spark, changed)
        report = bucketize.run(spark, changed)
    assert "settings ['zstd_level'] changed" in caplog.text and "full recompute" in caplog.text
    assert not before["scores"] & files(lake, "scores")  # every score recomputed
    assert lake.commit_metadata("scores")[0]["settings"]["zstd_level"] == 9
    assert "recalibrated (`scores` was rewritten" in report.details["calibration"]
    assert lake.read("curated").where(F.col("doc_id") == "d004").count() == 0  # spam filtered


def test_an_append_reads_only_the_files_added_since_and_compares_every_id_after_compaction(
    spark, tmp_path, caplog
):
    rng = random.Random(2)
    cfg = incremental_cfg(tmp_path)
    lake = Lake(spark, cfg.lake.root)
    append_documents(spark, lake, 0, 5, rng)
    append_documents(spark, lake, 5, 5, rng)
    daily(spark, cfg)
    day_one = lake.version(DOCUMENTS_TABLE)
    lake.table(DOCUMENTS_TABLE).optimize.compact()  # `maintain` after the daily run
    assert lake.version(DOCUMENTS_TABLE) == day_one + 1
    compacted = files(lake, DOCUMENTS_TABLE)

    append_documents(spark, lake, 10, 10, rng)
    added = rows_added(lake, DOCUMENTS_TABLE, day_one)
    assert sorted(r.doc_id for r in added.collect()) == [f"d{i:03d}" for i in range(10, 20)]
    new_files = {Path(f).name for f in files(lake, DOCUMENTS_TABLE) - compacted}
    assert {Path(urlparse(f).path).name for f in added.inputFiles()} == new_files
    with caplog.at_level(logging.INFO, logger="siftlake"):
        reports = daily(spark, cfg)
    assert run_counts(reports) == [
        "10 documents judged now", "8 documents scored now", "8 documents placed now"]
    assert "comparing every id" not in caplog.text

    day_two = lake.version(DOCUMENTS_TABLE)
    append_documents(spark, lake, 20, 10, rng)
    lake.table(DOCUMENTS_TABLE).optimize.compact()  # the new rows move in with older ones
    assert rows_added(lake, DOCUMENTS_TABLE, day_two) is None
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="siftlake"):
        reports = daily(spark, cfg)
    assert run_counts(reports) == [
        "10 documents judged now", "8 documents scored now", "8 documents placed now"]
    assert "comparing every id of `documents` with `prefilter`" in caplog.text
    for table, expected in (("prefilter", 30), ("scores", 24), ("curated", 24)):
        rows = lake.read(table)
        assert rows.count() == rows.select("doc_id").distinct().count() == expected, table


def test_documents_left_unplaced_stay_quarantined_when_an_append_reads_only_new_ones(
    spark, tmp_path
):
    cfg = incremental_cfg(tmp_path, prefilter={"enabled": False})
    lake = Lake(spark, cfg.lake.root)

    def day(start, unscored):
        append_documents(spark, lake, start, 10, random.Random(start))
        scores = [(f"d{i:03d}", None if i == unscored else float(i))
                  for i in range(start, start + 10)]
        lake.write(spark.createDataFrame(scores, "doc_id string, zstd_ratio double"), "scores",
                   mode="append", unique_key=["doc_id"])
        return bucketize.run(spark, cfg)  # the report checks rows in = out + quarantined

    assert day(0, unscored=1).rows_quarantined == 1
    report = day(10, unscored=11)
    assert "9 documents placed now" in report.details["run"]
    assert (report.rows_out, report.rows_quarantined) == (18, 2)
    quarantined = lake.read("quarantine", {"job": ["bucketize"]}).collect()
    assert sorted(r.raw for r in quarantined) == ["d001", "d011"]
    assert all(r.reason.startswith("missing_score") for r in quarantined)


def test_plan_appends_only_while_settings_hold_and_inputs_only_grew(tmp_path):
    """The decision alone, on delta-rs tables (no Spark)."""
    import json

    from deltalake import CommitProperties, write_deltalake

    from jobs.core.incremental import plan_output

    lake = Lake(None, str(tmp_path), backend="delta-rs")
    docs = lambda ids, mode: write_deltalake(  # noqa: E731
        lake.path("documents"), pa.table({"doc_id": ids}), mode=mode)
    docs(["a"], "error")
    settings = {"zstd_level": 3}

    def write_output(inputs_version):
        meta = {"settings": settings, "inputs": {"documents": inputs_version}}
        write_deltalake(lake.path("out"), pa.table({"doc_id": ["a"]}), mode="overwrite",
                        commit_properties=CommitProperties(
                            custom_metadata={"userMetadata": json.dumps(meta)}))

    def plan(mode="incremental", wanted=settings):
        return plan_output(lake, "out", mode, wanted, ["documents"], "test")

    assert not plan().append and "no `out` table yet" in plan().reason
    write_output(lake.version("documents"))
    docs(["b"], "append")
    lake.table("documents").optimize.compact()  # moves data, changes none
    assert plan().append and plan().mode == "append" and plan().read_version == 0
    assert not plan("full").append
    changed = plan(wanted={"zstd_level": 9})
    assert not changed.append and "['zstd_level']" in changed.reason
    docs(["c"], "overwrite")
    assert not plan().append and "inputs ['documents'] were rewritten" in plan().reason


def test_an_output_is_covered_only_while_its_writes_read_no_later_inputs_than_the_newest(
    tmp_path,
):
    """`covered` (no lookup of a day's ids in the output) holds only while the output's writes
    read their inputs as of the versions they recorded and the newest recorded the latest."""
    import json

    from deltalake import CommitProperties, write_deltalake

    from jobs.core.incremental import plan_output

    lake = Lake(None, str(tmp_path), backend="delta-rs")
    for mode in ("error", "append", "append"):
        write_deltalake(lake.path("documents"), pa.table({"doc_id": ["x"]}), mode=mode)
    settings = {"zstd_level": 3}

    def write_output(documents_version, mode="append", exact=True, **extra):
        meta = {"settings": settings, "inputs": {"documents": documents_version},
                "scope": None, **({"inputs_exact": True} if exact else {}), **extra}
        write_deltalake(lake.path("out"), pa.table({"doc_id": ["a"]}), mode=mode,
                        commit_properties=CommitProperties(
                            custom_metadata={"userMetadata": json.dumps(meta)}))

    def plan(wanted=settings):
        return plan_output(lake, "out", "incremental", wanted, ["documents"], "test")

    write_output(0, mode="overwrite")
    assert plan().append and plan().covered and plan().since == {"documents": 0}
    write_output(2)
    write_output(1)  # planned before the write above, committed after it
    assert plan().append and not plan().covered
    write_output(2)
    assert plan().covered
    write_deltalake(lake.path("out"), pa.table({"doc_id": ["b"]}), mode="append")  # no record
    assert plan().append and not plan().covered
    write_output(2, exact=False)  # an older siftlake's write
    assert plan().append and not plan().covered
    write_output(2)  # what came before the older siftlake's write needs no check
    assert plan().covered
    # A setting added since the stored write, configured at its empty default, changes nothing.
    assert plan({**settings, "source_rules": []}).append
    changed = plan({**settings, "source_rules": [{"sources": ["a*"]}]})
    assert not changed.append and "['source_rules']" in changed.reason


def test_a_lookup_finds_rows_among_the_added_ones_first_and_the_rest_in_the_table(spark, tmp_path):
    from jobs.core.incremental import Passed

    lake = Lake(spark, str(tmp_path / "lake"))
    frame = lambda rows: spark.createDataFrame(rows, "doc_id string, passed boolean")  # noqa: E731
    lake.write(frame([("d1", True), ("d2", False)]), "verdicts")
    lake.write(frame([("d3", True), ("d5", None)]), "verdicts", mode="append")
    ids = pa.table({"doc_id": ["d1", "d2", "d3", "d4", "d5"]})
    # d3 and d5 sit in the commit after version 0; d1 and d2 only in the table before it.
    for since in (0, -1):
        among = Passed(lake, "verdicts", "passed", since).among(ids)
        assert among.to_pylist() == [True, False, True, False, False], since


def test_new_documents_are_found_on_ids_and_their_text_is_never_shuffled(spark):
    docs = spark.createDataFrame(
        [(f"d{i}", "text " * (i + 1)) for i in range(6)], "doc_id string, text string")
    done = spark.createDataFrame([("d0", 1.0), ("d2", 1.0), ("d5", 1.0)], "doc_id string, s double")
    previous = spark.conf.get("spark.sql.autoBroadcastJoinThreshold")
    spark.conf.set("spark.sql.autoBroadcastJoinThreshold", "-1")  # only our hint broadcasts
    try:
        for limit_mb, broadcast in ((64, True), (0, False)):  # 0: too many new ids, a shuffle
            new = without_result(docs, done, broadcast_mb=limit_mb)
            assert sorted(r.doc_id for r in new.collect()) == ["d1", "d3", "d4"]
            plan = new._jdf.queryExecution().executedPlan().toString()
            assert ("BroadcastHashJoin" in plan and "LeftSemi" in plan) == broadcast, plan
        # A day's new rows: their ids are looked up in `done` (and in `within`: the passed
        # ones), and the rows left are kept by a broadcast join.
        passed = spark.createDataFrame([("d1",), ("d3",), ("d5",)], "doc_id string")
        for within, expected in ((None, ["d1", "d3", "d4"]), (passed, ["d1", "d3"])):
            new = without_result(docs, done, broadcast_mb=64, few=True, within=within)
            assert sorted(r.doc_id for r in new.collect()) == expected
            plan = new._jdf.queryExecution().executedPlan().toString()
            assert "BroadcastHashJoin" in plan and "LeftSemi" in plan
            assert "Exchange hashpartitioning" not in plan  # nothing shuffled
            shuffled = without_result(docs, done, broadcast_mb=0, within=within)
            assert sorted(r.doc_id for r in shuffled.collect()) == expected
        nothing_done = without_result(docs, done.limit(0), broadcast_mb=64, few=True)
        assert nothing_done.count() == 6
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", previous)
