from pathlib import Path

from deltalake import DeltaTable

from jobs import pipeline
from jobs.core.base import JobReport
from jobs.core.config import load_config
from jobs.core.lake import Lake
from jobs.pipeline import chain_report

CONF = Path(__file__).resolve().parents[2] / "conf" / "local.yaml"


def small_config(tmp_path):
    return load_config(CONF, [
        f"lake.root={tmp_path / 'lake'}",
        f"demo.corpus_dir={tmp_path / 'corpus'}", f"demo.target_dir={tmp_path / 'target'}",
        "demo.n_prose_docs=0",
        f"ingest.paths=['{tmp_path / 'corpus'}/*.jsonl']",
        "demo.n_docstring_docs=120", "demo.n_boilerplate_docs=30",
        "demo.n_near_duplicate_docs=30", "demo.n_junk_docs=20", "demo.n_files=2",
        "bucketize.n_buckets=5",
    ])


def curated_rows(spark, cfg):
    rows = Lake(spark, cfg.lake.root).read("curated").collect()
    return sorted((r.doc_id, r.quality_bucket, r.zstd_ratio) for r in rows)


def test_pipeline_end_to_end_and_rerun_is_idempotent(spark, tmp_path):
    cfg = small_config(tmp_path)
    report = pipeline.run(spark, cfg)
    # 9 deliberately bad lines: one per quarantine reason plus a repeated id.
    assert report.rows_quarantined == 9
    # The prefilter leaves documents out (counted as filtered); curated holds the passed ones.
    passed = Lake(spark, cfg.lake.root).read("prefilter").where("passed").count()
    assert 0 < passed < 200 and report.rows_filtered == 200 - passed
    assert report.rows_in == report.rows_out + report.rows_quarantined + report.rows_filtered
    first = curated_rows(spark, cfg)
    assert len(first) == report.rows_out == passed

    curated = DeltaTable(str(tmp_path / "lake" / "curated"))
    assert curated.metadata().partition_columns == ["quality_bucket"]
    names = [f.name for f in curated.schema().fields]
    assert names[:6] == ["doc_id", "text", "source", "n_chars", "n_bytes", "meta"]
    assert {"zstd_ratio", "selected", "quality_bucket"} <= set(names)
    buckets = {b for _, b, _ in first}
    assert buckets == {f"q0{i}" for i in range(5)}
    # best bucket (lowest ratio) really holds the less compressible documents
    ratio = {b: [r for _, bb, r in first if bb == b] for b in buckets}
    assert max(ratio["q00"]) <= min(ratio["q04"])

    pipeline.run(spark, cfg)
    assert curated_rows(spark, cfg) == first
    assert DeltaTable(str(tmp_path / "lake" / "curated")).version() == 1
    quarantine = Lake(spark, cfg.lake.root).read("quarantine")
    assert quarantine.count() == 9


def test_chain_report_of_one_document_flow_counts_from_the_raw_records():
    steps = ["demo_corpus", "ingest", "prefilter", "score", "bucketize", "mixture"]
    reports = [
        JobReport("demo_corpus", 109, 109),
        JobReport("ingest", 109, 100, 9),
        JobReport("prefilter", 100, 70, rows_filtered=30, filtered_label="filtered by rules"),
        JobReport("score", 100, 70, rows_filtered=30, filtered_label="filtered by rules"),
        JobReport("bucketize", 100, 68, 2, rows_filtered=30, filtered_label="filtered by rules"),
        JobReport("mixture", 68, 40, rows_filtered=28, filtered_label="not in the mixture"),
    ]
    report = chain_report(steps, reports)
    assert (report.rows_in, report.rows_out, report.rows_quarantined) == (109, 40, 11)
    assert report.rows_filtered == 30 + 28
    assert report.filtered_label == "filtered by rules or not in the mixture"


def test_chain_report_off_one_flow_gives_the_last_steps_counts():
    # lm_loss counts documents x models: no longer one flow of documents.
    steps = ["ingest", "prefilter", "lm_loss", "predictive_strength"]
    reports = [
        JobReport("ingest", 109, 100, 9),
        JobReport("prefilter", 100, 70, rows_filtered=30, filtered_label="filtered by rules"),
        JobReport("lm_loss", 300, 210, rows_filtered=90, filtered_label="filtered by rules"),
        JobReport("predictive_strength", 70, 66, 4),
    ]
    report = chain_report(steps, reports)
    assert (report.rows_in, report.rows_out, report.rows_quarantined) == (70, 66, 4)
    assert report.details["quarantined along the chain"] == 13
    assert "not one document flow" in report.details["counts"]
