"""ingest never fails on a record, and never needs the corpus in memory."""

import json
import subprocess
import sys
import textwrap

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs import ingest
from jobs.core.config import config_from_dict
from jobs.core.lake import Lake
from tests.jsonl_strategies import lines


# Few examples: each is one ingest run over one small file (a handful of Spark jobs).
@settings(max_examples=3, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(lines, min_size=10, max_size=40))
def test_any_file_ingests_with_the_invariant_and_a_reason_per_rejected_row(
    spark, tmp_path_factory, batch
):
    folder = tmp_path_factory.mktemp("prop")
    data = b"\n".join(batch) + b"\n"
    (folder / "in.jsonl").write_bytes(data)
    cfg = config_from_dict({
        "lake": {"root": str(folder / "lake")},
        "ingest": {"paths": [str(folder / "in.jsonl")], "id_column": "id", "source_column": "src"},
    })
    report = ingest.run(spark, cfg)  # check_invariant: in = out + quarantined
    # Spark's line reader splits on \n, \r\n and \r, as bytes.splitlines does.
    assert report.rows_in == len(data.splitlines())
    lake = Lake(spark, cfg.lake.root)
    quarantine = lake.read("quarantine").collect()
    assert len(quarantine) == report.rows_quarantined
    assert all(q.reason and q.source and 1 <= q.line <= report.rows_in for q in quarantine)
    docs = lake.read("documents").collect()
    assert len(docs) == report.rows_out
    assert all(d.text.strip("\x00\u200b\ufeff") and d.doc_id for d in docs)


LOW_MEMORY_CHILD = textwrap.dedent("""
    import json, sys
    from jobs import ingest
    from jobs.core.config import config_from_dict
    from jobs.core.session import build_session
    folder = sys.argv[1]
    spark = build_session("local[2]", conf={
        "spark.driver.memory": "512m", "spark.sql.shuffle.partitions": "4",
        "spark.sql.execution.arrow.maxBytesPerBatch": "16m",
    })
    cfg = config_from_dict({"lake": {"root": folder + "/lake"},
                            "ingest": {"paths": [folder + "/in.jsonl"], "id_column": "id"}})
    report = ingest.run(spark, cfg)
    heap = spark._jvm.java.lang.Runtime.getRuntime().maxMemory()
    print(json.dumps({"heap": heap, "in": report.rows_in, "out": report.rows_out,
                      "quarantined": report.rows_quarantined,
                      "reasons": report.details["quarantine_reasons"]}))
""")


def test_input_larger_than_the_driver_heap_ingests(tmp_path):
    """A 512m driver (the least Spark starts with; ~90 MB of it is Spark's execution and
    storage pool) ingests ~600 MB of JSONL: more than the whole heap, so the job only passes
    if it streams. Documents of ~10 KB keep the record count, hence the Python parsing time,
    small (under a minute on an idle 2-core machine). Its own process: the shared session's
    memory is fixed at start."""
    n_docs, body = 60_000, "stream me " * 1000
    expected, seen = {"duplicate_id": 0, "malformed_json": 0}, set()
    with open(tmp_path / "in.jsonl", "w") as out:
        for i in range(n_docs):
            doc_id = f"d{i % 59_000}"  # the last 1,000 lines reuse ids
            if i % 1000 == 999:
                out.write("{not json\n")
                expected["malformed_json"] += 1
                continue
            expected["duplicate_id"] += doc_id in seen
            seen.add(doc_id)
            out.write(json.dumps({"id": doc_id, "text": f"{i} {body}"}) + "\n")
    size = (tmp_path / "in.jsonl").stat().st_size
    result = subprocess.run(
        [sys.executable, "-c", LOW_MEMORY_CHILD, str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert size > report["heap"]
    assert report["in"] == n_docs
    assert report["reasons"] == expected
    assert report["out"] == n_docs - sum(expected.values())
