"""Incremental prefilter / score / bucketize: only new documents, appended; settings recorded."""

import logging
import random

from deltalake import DeltaTable
from pyspark.sql import functions as F

from jobs import bucketize, prefilter, score
from jobs.core.config import config_from_dict
from jobs.core.incremental import without_result
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


def files(lake, table):
    return set(DeltaTable(lake.path(table)).file_uris())


def test_incremental_chain_appends_new_results_and_a_changed_setting_recomputes(
    spark, tmp_path, caplog
):
    rng = random.Random(1)
    overrides = {"prefilter": {"mode": "incremental"}, "score": {"mode": "incremental"},
                 "bucketize": {"mode": "incremental", "n_buckets": 2, "sample_rows": 100}}
    cfg = config_from_dict({"lake": {"root": str(tmp_path / "lake")}, **overrides}, "test.yaml")
    lake = Lake(spark, cfg.lake.root)
    append_documents(spark, lake, 0, 10, rng)
    daily(spark, cfg)
    before = {t: files(lake, t) for t in ("prefilter", "scores", "curated")}
    buckets = {r.doc_id: r.quality_bucket for r in lake.read("curated").collect()}
    thresholds_version = lake.version("bucket_thresholds")

    append_documents(spark, lake, 10, 10, rng)
    reports = daily(spark, cfg)
    assert [r.details["run"].split("; ")[1] for r in reports] == [
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


def test_plan_appends_only_while_settings_hold_and_inputs_only_grew(tmp_path):
    """The decision alone, on delta-rs tables (no Spark)."""
    import json

    import pyarrow as pa
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
    finally:
        spark.conf.set("spark.sql.autoBroadcastJoinThreshold", previous)
