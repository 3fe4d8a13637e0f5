import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from jobs import ingest
from jobs.core.config import ConfigError, config_from_dict
from jobs.core.lake import Lake


def cfg_for(tmp_path, paths, **ingest_kw):
    return config_from_dict(
        {"lake": {"root": str(tmp_path / "lake")},
         "ingest": {"paths": paths, "id_column": None, "source_column": None, **ingest_kw}},
        "test.yaml",
    )


def write_lines(path, lines):
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


GOOD = [json.dumps({"id": f"d{i}", "text": f"document number {i} " * 3, "lang": "en"}).encode()
        for i in range(6)]
BAD = {
    "malformed_json": b'{"id": "x1", "text": "cut',
    "missing_text": json.dumps({"id": "x2"}).encode(),
    "empty_text": json.dumps({"id": "x3", "text": ""}).encode(),
    "non_string_text": json.dumps({"id": "x4", "text": {"a": 1}}).encode(),
    "invalid_utf8": b'{"id": "x5", "text": "bad \xff byte"}',
    "too_large": json.dumps({"id": "x6", "text": "y" * 500}).encode(),
    "duplicate_id": json.dumps({"id": "d0", "text": "another text with a taken id"}).encode(),
    "missing_id": json.dumps({"text": "id-less"}).encode(),
    "invalid_unicode": b'{"id": "x7", "text": "fine", "tags": ["\\ud800"]}',
}


def test_jsonl_every_reason_and_the_invariant(spark, tmp_path):
    path = write_lines(tmp_path / "in.jsonl", GOOD + list(BAD.values()))
    cfg = cfg_for(tmp_path, [path], id_column="id", max_doc_bytes=400)
    report = ingest.run(spark, cfg)
    assert report.rows_in == len(GOOD) + len(BAD)
    assert report.rows_out == len(GOOD) and report.rows_quarantined == len(BAD)
    assert report.details["quarantine_reasons"] == {code: 1 for code in BAD}
    lake = Lake(spark, cfg.lake.root)
    docs = {r.doc_id: r for r in lake.read("documents").collect()}
    assert set(docs) == {f"d{i}" for i in range(6)}
    first = docs["d0"]
    assert first.text == "document number 0 " * 3  # the first copy keeps the id
    assert first.n_chars == len(first.text) and first.n_bytes == len(first.text.encode())
    assert json.loads(first.meta) == {"lang": "en"}
    quarantine = lake.read("quarantine").collect()
    assert {q.job for q in quarantine} == {"ingest"}
    assert any(q.raw.startswith('{"id": "x1"') for q in quarantine)
    # Every quarantined line names its file and its 1-based line number there.
    by_reason = {q.reason.split(":")[0]: q for q in quarantine}
    for position, code in enumerate(BAD, start=len(GOOD) + 1):
        assert by_reason[code].line == position and by_reason[code].source.endswith("in.jsonl")
    assert by_reason["invalid_unicode"].reason == "invalid_unicode: tags[0]"


def test_content_hash_ids_and_char_counts(spark, tmp_path):
    texts = ["naïve café", "naïve café", "日本語のテキスト"]
    lines = [json.dumps({"text": t}, ensure_ascii=False).encode() for t in texts]
    cfg = cfg_for(tmp_path, [write_lines(tmp_path / "u.jsonl", lines)])
    report = ingest.run(spark, cfg)
    assert (report.rows_out, report.rows_quarantined) == (2, 1)
    docs = {r.doc_id: r for r in Lake(spark, cfg.lake.root).read("documents").collect()}
    for text in set(texts):
        row = docs[hashlib.sha256(text.encode()).hexdigest()]
        assert row.n_chars == len(text) and row.n_bytes == len(text.encode("utf-8"))


def test_rerun_replaces_instead_of_appending(spark, tmp_path):
    path = write_lines(tmp_path / "in.jsonl", GOOD + [BAD["malformed_json"]])
    cfg = cfg_for(tmp_path, [path], id_column="id")
    ingest.run(spark, cfg)
    ingest.run(spark, cfg)
    lake = Lake(spark, cfg.lake.root)
    assert lake.read("documents").count() == len(GOOD)
    assert lake.read("quarantine").count() == 1
    # A clean input replaces the partition with nothing (found without a pass over the input).
    clean = cfg_for(tmp_path, [write_lines(tmp_path / "in.jsonl", GOOD)], id_column="id")
    assert ingest.run(spark, clean).rows_quarantined == 0
    assert lake.read("quarantine").count() == 0


def test_input_without_ids_says_which_key_to_set(spark, tmp_path):
    lines = [json.dumps({"text": f"an id-less document {i}"}).encode() for i in range(3)]
    cfg = cfg_for(tmp_path, [write_lines(tmp_path / "no_ids.jsonl", lines)], id_column="id")
    report = ingest.run(spark, cfg)
    assert (report.rows_out, report.rows_quarantined) == (0, 3)
    assert "ingest.id_column" in report.details["hint"] and "null" in report.details["hint"]
    with_ids = ingest.run(spark, cfg_for(tmp_path, [write_lines(tmp_path / "ids.jsonl", GOOD)],
                                         id_column="id"))
    assert "hint" not in with_ids.details


def test_parquet_input_with_binary_text(spark, tmp_path):
    table = pa.table({
        "body": pa.array([b"fine text", b"bad \xff utf8", None, b"  "], pa.binary()),
        "key": ["a", "b", "c", "d"],
        "site": ["s1", "s1", "s2", "s2"],
    })
    pq.write_table(table, tmp_path / "in.parquet")
    cfg = cfg_for(tmp_path, [str(tmp_path / "in.parquet")], format="parquet",
                  text_column="body", id_column="key", source_column="site")
    report = ingest.run(spark, cfg)
    assert (report.rows_in, report.rows_out, report.rows_quarantined) == (4, 1, 3)
    assert set(report.details["quarantine_reasons"]) == {"invalid_utf8", "missing_text", "empty_text"}
    doc = Lake(spark, cfg.lake.root).read("documents").first()
    assert (doc.doc_id, doc.text, doc.source) == ("a", "fine text", "s1")
    assert json.loads(doc.meta) == {}


def test_delta_input(spark, tmp_path):
    write_deltalake(str(tmp_path / "src"), pa.table({"text": ["one doc", "two doc"], "n": [1, 2]}))
    cfg = cfg_for(tmp_path, [str(tmp_path / "src")], format="delta")
    report = ingest.run(spark, cfg)
    assert report.rows_out == 2
    metas = sorted(json.loads(r.meta)["n"] for r in Lake(spark, cfg.lake.root).read("documents").collect())
    assert metas == [1, 2]


def test_clear_errors_for_unusable_input(spark, tmp_path):
    with pytest.raises(ConfigError, match="nothing matches"):
        ingest.run(spark, cfg_for(tmp_path, [str(tmp_path / "none*.jsonl")]))
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(ConfigError, match="not string"):
        ingest.run(spark, cfg_for(tmp_path, [str(tmp_path / "ints.parquet")], format="parquet"))
    with pytest.raises(ConfigError, match="no column 'body'"):
        ingest.run(spark, cfg_for(tmp_path, [str(tmp_path / "ints.parquet")], format="parquet",
                                  text_column="body"))


@pytest.fixture
def small_splits(spark):
    """Read files in splits of 1 KB, so one file is read by several tasks."""
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    spark.conf.set(key, "1024")
    yield
    spark.conf.set(key, before)


def test_line_numbers_and_first_copy_across_splits_and_files(spark, tmp_path, small_splits):
    a = [json.dumps({"id": f"a{i}", "text": f"text of a{i} " * 4}).encode() for i in range(120)]
    b = [json.dumps({"id": f"b{i}", "text": f"text of b{i} " * 4}).encode() for i in range(30)]
    bad_a = {7: b"", 55: b"{broken", 99: json.dumps({"id": "a3", "text": "later copy"}).encode(),
             118: json.dumps({"id": "x", "text": "\u0000\u200b\ufeff\u3000"}).encode()}
    for position, line in bad_a.items():
        a[position - 1] = line
    b[2 - 1] = json.dumps({"id": "a3", "text": "copy in a later file"}).encode()
    paths = [write_lines(tmp_path / "a.jsonl", a), write_lines(tmp_path / "b.jsonl", b)]
    cfg = cfg_for(tmp_path, paths, id_column="id")
    report = ingest.run(spark, cfg)
    assert report.rows_in == 150 and report.rows_quarantined == 5
    lake = Lake(spark, cfg.lake.root)
    assert lake.read("documents").filter("doc_id = 'a3'").first().text == "text of a3 " * 4
    found = {(q.source.rsplit("/", 1)[-1], q.line, q.reason.split(":")[0])
             for q in lake.read("quarantine").collect()}
    assert found == {
        ("a.jsonl", 7, "malformed_json"), ("a.jsonl", 55, "malformed_json"),
        ("a.jsonl", 99, "duplicate_id"), ("a.jsonl", 118, "empty_text"),
        ("b.jsonl", 2, "duplicate_id"),
    }


def utf8_unchecked(values: list[bytes]) -> pa.Array:
    """A string column holding bytes as they are: CESU-8 surrogates (ED A0 80) included."""
    return pa.array(values, pa.binary()).view(pa.string())


def test_columnar_invalid_unicode_and_invisible_text(spark, tmp_path):
    lone_surrogate = b"\xed\xa0\x80"
    table = pa.table({
        "text": utf8_unchecked([b"good one", b"bad " + lone_surrogate, b"\x00\x00",
                                "\u200b\ufeff\u3000".encode(), b"good two", b"good three"]),
        "lang": utf8_unchecked([b"en", b"en", b"en", b"en", b"e" + lone_surrogate, b"en"]),
        "info": pa.StructArray.from_arrays(
            [utf8_unchecked([b"a", b"b", b"c", b"d", b"e", lone_surrogate])], ["who"]),
    })
    pq.write_table(table, tmp_path / "in.parquet")
    cfg = cfg_for(tmp_path, [str(tmp_path / "in.parquet")], format="parquet")
    report = ingest.run(spark, cfg)
    assert (report.rows_in, report.rows_out, report.rows_quarantined) == (6, 1, 5)
    lake = Lake(spark, cfg.lake.root)
    assert lake.read("documents").first().text == "good one"
    found = {(q.line, q.reason) for q in lake.read("quarantine").collect()}
    assert found == {(2, "invalid_unicode: text"), (3, "empty_text"), (4, "empty_text"),
                     (5, "invalid_unicode: lang"), (6, "invalid_unicode: info")}
