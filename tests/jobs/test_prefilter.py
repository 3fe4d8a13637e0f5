"""The prefilter job, its rules and thresholds, and the jobs downstream of it."""

import json
import random
import shutil

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from jobs import bucketize, ingest, prefilter, score, zip_select
from jobs.core.config import ConfigError, PrefilterSettings, config_from_dict, load_config
from jobs.core.lake import Lake
from jobs.prefilter_rules import RULES, active_rules, apply_rules, threshold
from udfs.prefilter import SPARK_SCHEMA, STATISTICS

WORDS = ("the of and to in that with have be river stone light window garden morning village "
         "quiet across small people under water between always never before after during").split()


def prose(rng: random.Random, sentences: int) -> str:
    """Plain English-like prose that passes every default rule (about 10 words a sentence)."""
    out = []
    for _ in range(sentences):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 13))]
        out.append(" ".join(words).capitalize() + ".")
    return " ".join(out)


QUOTES = [
    "The quiet water of the river runs deep under the old stone bridge.",
    "Light and shadow move across the garden in the early morning.",
    "People of the village have always walked to the market together.",
    "Never trust a window that opens to the north and the sea.",
]


def write_corpus(path, rng):
    records = (
        [{"id": f"web-{i}", "text": prose(rng, 8), "source": "web"} for i in range(14)]
        + [{"id": f"quote-{i}", "text": q, "source": "quotes"} for i, q in enumerate(QUOTES)]
        + [{"id": f"spam-{i}", "text": "Buy cheap watches now, best price! " * 12,
            "source": "spam"} for i in range(3)]
    )
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return records


@pytest.fixture(scope="module")
def lake_cfg(spark, tmp_path_factory):
    """A small lake with documents and a prefilter table, built once for this module."""
    work = tmp_path_factory.mktemp("prefilter")
    write_corpus(work / "corpus.jsonl", random.Random(0))
    cfg = config_from_dict({
        "lake": {"root": str(work / "lake")},
        "ingest": {"paths": [str(work / "corpus.jsonl")], "id_column": "id",
                   "source_column": "source"},
        "bucketize": {"n_buckets": 2},
    }, "test.yaml")
    ingest.run(spark, cfg)
    return cfg, prefilter.run(spark, cfg)


def test_job_writes_every_statistic_and_the_verdicts(spark, lake_cfg):
    cfg, report = lake_cfg
    table = Lake(spark, cfg.lake.root).read("prefilter")
    assert table.columns == ["doc_id", "source", "n_chars", *STATISTICS.names, "minhash_bands",
                             "near_duplicate_of", "is_near_duplicate", "passed",
                             "filter_reason", "failed_rules"]
    rows = {r.doc_id: r for r in table.collect()}
    assert len(rows) == 21
    for doc_id, row in rows.items():
        assert row.passed == (row.filter_reason is None) == (row.failed_rules == [])
        if not row.passed:
            assert row.filter_reason == row.failed_rules[0]
        if doc_id.startswith("web"):
            assert row.passed, row.failed_rules
        elif doc_id.startswith("quote"):  # one sentence: Gopher's 50-word minimum, first
            assert row.filter_reason == "gopher_quality.min_words"
        else:  # 12 repeats of one sentence: repetition rules; the later copies are duplicates
            assert "gopher_repetition.max_top_2gram_char_share" in row.failed_rules
            assert row.near_duplicate_of == (None if doc_id == "spam-0" else "spam-0")
            assert row.is_near_duplicate == ("dedup.reject_near_duplicates" in row.failed_rules)
        assert len(row.minhash_bands) == 14
    # Filtered documents are valid input: counted apart, not quarantined.
    assert (report.rows_in, report.rows_out, report.rows_filtered) == (21, 14, 7)
    assert report.rows_quarantined == 0 and report.filtered_label == "filtered by rules"
    assert report.details["rule gopher_quality.min_words"] == (
        "fails 19.0% (4), first failure 19.0% (4)")  # the quotes; the spam has 72 words
    assert report.details["source quotes"].startswith(
        "4 docs, passed 0.0%; gopher_quality.min_words 100.0% (first 100.0%)")
    assert report.details["source web"] == "14 docs, passed 100.0%"


def test_rethreshold_changes_verdicts_without_measuring_again(spark, lake_cfg, tmp_path):
    cfg, _ = lake_cfg
    lake = Lake(spark, cfg.lake.root)
    before = lake.read("prefilter").orderBy("doc_id").collect()
    # Move `documents` away: a re-threshold must not need the text at all.
    shutil.move(lake.path("documents"), tmp_path / "documents")
    try:
        lowered = config_from_dict(
            cfg.model_dump() | {"prefilter": {"rethreshold": True,
                                              "gopher_quality": {"min_words": 5}}}, "test.yaml")
        report = prefilter.run(spark, lowered)
    finally:
        shutil.move(tmp_path / "documents", lake.path("documents"))
    after = lake.read("prefilter").orderBy("doc_id").collect()
    assert report.details["statistics"] == "re-used from the stored table"
    for old, new in zip(before, after, strict=True):
        assert [old[s] for s in STATISTICS.names] == [new[s] for s in STATISTICS.names]
        if old.doc_id.startswith("quote"):
            assert not old.passed and new.passed  # 11-13 words: enough for min_words 5
        else:
            assert old.passed == new.passed
    assert report.rows_out == 18 and report.rows_filtered == 3
    # Restore the default verdicts for the other tests.
    prefilter.run(spark, cfg.model_copy(update={"prefilter": PrefilterSettings(rethreshold=True)}))
    assert lake.read("prefilter").orderBy("doc_id").collect() == before


def test_source_rules_give_some_sources_their_own_thresholds(spark, lake_cfg, caplog):
    """For each rule the first entry that matches the source and sets the rule applies; the
    other sources keep the section's thresholds; an entry matching no source is reported."""
    cfg, _ = lake_cfg
    lake = Lake(spark, cfg.lake.root)
    before = {r.doc_id: r for r in lake.read("prefilter").collect()}
    source_rules = [
        {"sources": ["quot?s"], "thresholds": {"gopher_quality.min_words": 5}},
        {"sources": ["q*"], "thresholds": {"gopher_quality.min_words": 500,
                                           "gopher_quality.max_mean_word_length": 3.5}},
        {"sources": ["*/docs/*"], "thresholds": {"fineweb.max_dup_line_char_share": 0.2}},
    ]
    per_source = config_from_dict(cfg.model_dump() | {"prefilter": {
        "rethreshold": True, "source_rules": source_rules}}, "test.yaml")
    report = prefilter.run(spark, per_source)
    after = {r.doc_id: r for r in lake.read("prefilter").collect()}
    for doc_id, row in after.items():
        if doc_id.startswith("quote"):
            # min_words 5 from the first entry (not 500 from the second); the second entry's
            # mean word length, which the first does not set, applies.
            assert row.failed_rules == ["gopher_quality.max_mean_word_length"], row.failed_rules
            assert row.mean_word_length > 3.5
        else:
            assert row.failed_rules == before[doc_id].failed_rules
    lines = report.details["source rules"]
    assert "source_rules[0] [quot?s]: gopher_quality.min_words=5; matches 1 of 3 sources" in lines
    assert "source_rules[2] [*/docs/*]: fineweb.max_dup_line_char_share=0.2; MATCHES NONE" in lines
    assert any("MATCHES NONE" in r.getMessage() for r in caplog.records)
    prefilter.run(spark, cfg.model_copy(update={"prefilter": PrefilterSettings(rethreshold=True)}))
    assert {r.doc_id: r for r in lake.read("prefilter").collect()} == before


def test_source_rules_switch_reject_rules_and_match_sources_literally(spark):
    """A reject rule off for every source but on for one (and the reverse); a null statistic
    fails only where the rule applies; regex characters in a source are literal."""
    odd = "file:/data/docs (v2)/p+1.jsonl"
    # As a regex, the glob would match this one too: "(v2)" a group, "p+1" one or more p's.
    rows = [(odd, True), (odd, None), ("file:/data/docs v2/pp1.jsonl", True),
            ("crawl/a.jsonl", True), ("crawl/a.jsonl", None), (None, True)]
    frame = spark.createDataFrame([(i, s, d) for i, (s, d) in enumerate(rows)],
                                  "case long, source string, is_near_duplicate boolean")
    only = {"families": ["dedup"]}
    entry = [{"sources": [odd], "thresholds": {"dedup.reject_near_duplicates": False}}]
    off_here = PrefilterSettings(**only, source_rules=entry)
    entry = [{"sources": [odd], "thresholds": {"dedup.reject_near_duplicates": True}}]
    on_here = PrefilterSettings(**only, dedup={"reject_near_duplicates": False},
                                source_rules=entry)

    def passed(settings):
        return [r.passed for r in apply_rules(frame, settings).orderBy("case").collect()]

    assert passed(off_here) == [True, True, False, False, False, False]
    assert passed(on_here) == [False, False, True, True, True, True]
    assert [r.name for r in active_rules(on_here)] == ["dedup.reject_near_duplicates"]


def test_source_rules_name_rules_and_valid_thresholds():
    def entry(thresholds, sources=("a",)):
        return {"prefilter": {"source_rules": [{"sources": list(sources),
                                                "thresholds": thresholds}]}}

    typed = config_from_dict(entry({"gopher_quality.min_words": 20.0,
                                    "fineweb.max_dup_line_char_share": 1})).prefilter
    assert typed.source_rules[0].thresholds == {
        "gopher_quality.min_words": 20, "fineweb.max_dup_line_char_share": 1.0}
    assert type(typed.source_rules[0].thresholds["gopher_quality.min_words"]) is int
    for thresholds, message in [
        ({"fineweb.max_dup_line": 0.2}, r"thresholds.fineweb.max_dup_line: not a rule"),
        ({"dup_line": 0.2}, r"thresholds.dup_line: not a rule"),
        ({"dedup.bands": 4}, r"thresholds.dedup.bands: measures the text"),
        ({"fineweb.max_dup_line_char_share": 1.5}, r"less than or equal to 1"),
        ({"gopher_quality.min_words": 200_000}, r"min_words must be <= max_words"),
        ({}, r"source_rules.0.thresholds: Dictionary should have at least 1 item"),
    ]:
        with pytest.raises(ConfigError, match=f"my.yaml: prefilter.*{message}"):
            config_from_dict(entry(thresholds), "my.yaml")
    with pytest.raises(ConfigError, match="source_rules.0.sources: List should have at least 1"):
        config_from_dict(entry({"gopher_quality.min_words": 20}, sources=()), "my.yaml")


def test_rules_at_their_thresholds(spark):
    """Exactly at a threshold passes, just beyond it fails; a null statistic fails."""
    settings = PrefilterSettings(families=["gopher_quality", "gopher_repetition", "fineweb",
                                           "control_chars", "c4", "dedup"])
    passing = {  # statistics of an unremarkable document
        "n_words": 400, "n_lines": 10, "mean_word_length": 5.0, "hash_word_ratio": 0.0,
        "ellipsis_word_ratio": 0.0, "bullet_line_share": 0.0, "ellipsis_line_share": 0.0,
        "alpha_word_share": 1.0, "stop_word_count": 40, "terminal_punct_line_share": 1.0,
        "short_line_share": 0.0, "newlines_per_word": 0.02, "n_sentences": 20,
        "has_lorem_ipsum": False, "has_curly_brace": False, "has_javascript": False,
    }
    cases = []  # (rule, statistics changed, the rules expected to fail or None)
    for rule in RULES:
        at = threshold(rule, settings)
        if rule.kind == "reject":
            cases += [(rule.name, {rule.statistic: False}, None),
                      (rule.name, {rule.statistic: True}, [rule.name])]
            continue
        step = 1 if STATISTICS.field(rule.statistic).type == pa.int64() else 1e-9
        beyond = at + step if rule.kind == "max" else at - step
        reading = [r.name for r in RULES if r.statistic == rule.statistic]  # e.g. min and max
        cases += [(rule.name, {rule.statistic: at}, None),
                  (rule.name, {rule.statistic: beyond}, [rule.name]),
                  (rule.name, {rule.statistic: None}, reading)]
    rows = []
    for i, (_, changed, _) in enumerate(cases):
        values = {f.name: passing.get(f.name, 0) for f in STATISTICS} | {
            "is_near_duplicate": False} | changed
        rows.append({"case": i, **{
            name: float(v) if v is not None and name in STATISTICS.names
            and STATISTICS.field(name).type == pa.float64() else v
            for name, v in values.items()}})
    fields = SPARK_SCHEMA.removeprefix("struct<").removesuffix(">").replace(":", " ")
    frame = spark.createDataFrame(rows, "case long, " + fields + ", is_near_duplicate boolean")
    verdicts = {r.case: r for r in apply_rules(frame, settings).collect()}
    for i, (name, changed, failing) in enumerate(cases):
        got = verdicts[i]
        if failing is None:
            assert name not in got.failed_rules, (name, changed, got.failed_rules)
        else:
            assert got.failed_rules == failing and got.filter_reason == failing[0], (name, changed)
            assert not got.passed


def test_every_threshold_is_a_config_key_and_families_switch_rules():
    settings = PrefilterSettings()
    keys = {(r.family, r.key) for r in RULES}
    for family in ("gopher_quality", "gopher_repetition", "fineweb", "control_chars", "c4"):
        assert {(family, k) for k in type(getattr(settings, family)).model_fields} <= keys
    names = [r.name for r in active_rules(settings)]
    assert names[0] == "gopher_quality.min_words"
    assert names[-2:] == ["control_chars.max_control_char_share", "dedup.reject_near_duplicates"]
    no_dedup = PrefilterSettings(dedup={"reject_near_duplicates": False})
    assert "dedup.reject_near_duplicates" not in [r.name for r in active_rules(no_dedup)]
    assert not any(n.startswith("c4.") for n in names)  # C4: available, off by default
    with_c4 = PrefilterSettings(families=["c4"], c4={"reject_javascript": False})
    assert [r.name for r in active_rules(with_c4)] == [
        "c4.max_no_terminal_punct_line_share", "c4.max_few_word_line_share", "c4.min_sentences",
        "c4.reject_lorem_ipsum", "c4.reject_curly_brace"]
    shipped = load_config("conf/local.yaml").prefilter
    assert shipped == settings
    with pytest.raises(ConfigError, match="prefilter.gopher_quality: Value error, min_words"):
        config_from_dict({"prefilter": {"gopher_quality": {"min_words": 200, "max_words": 100}}})
    with pytest.raises(ConfigError, match="prefilter.families"):
        config_from_dict({"prefilter": {"families": ["gopher"]}})


def test_downstream_jobs_see_passed_documents_only(spark, lake_cfg):
    cfg, _ = lake_cfg
    lake = Lake(spark, cfg.lake.root)
    passed = {r.doc_id for r in lake.read("prefilter").where("passed").collect()}
    assert len(passed) == 14

    scored = score.run(spark, cfg)
    assert {r.doc_id for r in lake.read("scores").collect()} == passed
    assert (scored.rows_in, scored.rows_out, scored.rows_filtered) == (21, 14, 7)
    assert scored.filtered_label == "filtered by rules"
    curated = bucketize.run(spark, cfg)
    assert {r.doc_id for r in lake.read("curated").collect()} == passed
    assert (curated.rows_in, curated.rows_out, curated.rows_filtered) == (21, 14, 7)

    zip_cfg = config_from_dict(cfg.model_dump() | {"zip": {
        "source_table": "documents", "group_column": None, "n_groups": 1, "k1": 10, "k2": 4,
        "k3": 2, "budget_fraction": 0.3}}, "test.yaml")
    zipped = zip_select.run(spark, zip_cfg)
    assert zipped.rows_in == 14
    assert {r.doc_id for r in lake.read("zip_selection").collect()} <= passed

    # The join with the narrow passed side is broadcast: the documents are never shuffled.
    plan = prefilter.passed_documents(lake, cfg)._jdf.queryExecution().executedPlan().toString()
    assert "BroadcastHashJoin" in plan and "LeftSemi" in plan

    everything = cfg.model_copy(update={"prefilter": PrefilterSettings(enabled=False)})
    scored_all = score.run(spark, everything)
    assert lake.read("scores").count() == 21
    assert (scored_all.rows_in, scored_all.rows_out, scored_all.rows_filtered) == (21, 21, 0)


def test_missing_or_stale_prefilter_table_is_a_clear_error(spark, lake_cfg, tmp_path):
    cfg, _ = lake_cfg
    fresh = config_from_dict({"lake": {"root": str(tmp_path / "lake")}}, "test.yaml")
    lake = Lake(spark, fresh.lake.root)
    lake.write(spark.createDataFrame([("a", "text")], "doc_id string, text string"), "documents")
    with pytest.raises(ConfigError, match="run `siftlake prefilter` first, or set "
                                          "prefilter.enabled: false"):
        prefilter.passed_documents(lake, fresh)
    with pytest.raises(ConfigError, match="no `prefilter` table to re-threshold"):
        prefilter.run(spark, fresh.model_copy(
            update={"prefilter": PrefilterSettings(rethreshold=True)}))
    stale = Lake(spark, cfg.lake.root).read("prefilter").limit(3)
    lake.write(stale.withColumn("doc_id", F.lit("zzz")), "prefilter")
    with pytest.raises(ConfigError, match="judges 3 documents but `documents` holds 1"):
        score.run(spark, fresh)


def mirror(text: str, rng: random.Random) -> str:
    """A copy with one word in fifty replaced and the spacing changed (a repost)."""
    words = text.split()
    for _ in range(len(words) // 50):
        words[rng.randrange(len(words))] = "data"
    return "  ".join(words).upper()


def test_near_duplicates_are_filtered_the_first_copy_stays_also_across_runs(spark, tmp_path):
    rng = random.Random(3)
    originals = [prose(rng, 14) for _ in range(4)]
    first = [{"id": f"a{i}", "text": t} for i, t in enumerate(originals)]
    first.append({"id": "a9", "text": mirror(originals[0], rng)})  # a later copy of a0
    first.append({"id": "a5", "text": mirror(originals[1], rng)})  # a copy with a later id
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "day1.jsonl").write_text("\n".join(json.dumps(r) for r in first) + "\n")
    cfg = config_from_dict({
        "lake": {"root": str(tmp_path / "lake")},
        "ingest": {"paths": [str(tmp_path / "in" / "*.jsonl")], "mode": "incremental"},
        "prefilter": {"mode": "incremental"},
    }, "test.yaml")
    ingest.run(spark, cfg)
    report = prefilter.run(spark, cfg)
    lake = Lake(spark, cfg.lake.root)
    rows = {r.doc_id: r for r in lake.read("prefilter").collect()}
    assert {d: r.near_duplicate_of for d, r in rows.items()} == {
        "a0": None, "a1": None, "a2": None, "a3": None, "a9": "a0", "a5": "a1"}
    assert rows["a9"].failed_rules == ["dedup.reject_near_duplicates"]
    assert (report.rows_out, report.rows_filtered) == (4, 2)
    assert report.details["rule dedup.reject_near_duplicates"].startswith("fails 33.3% (2)")

    # The next day: a copy of a stored document (with an id before it) and a new page.
    fresh, twice = prose(rng, 14), prose(rng, 14)
    (tmp_path / "in" / "day2.jsonl").write_text(
        json.dumps({"id": "a", "text": mirror(originals[2], rng)}) + "\n"
        + json.dumps({"id": "b", "text": fresh}) + "\n"
        + json.dumps({"id": "c1", "text": twice}) + "\n"  # two copies within the day
        + json.dumps({"id": "c0", "text": mirror(twice, rng)}) + "\n")
    version = lake.version("prefilter")
    ingest.run(spark, cfg)
    prefilter.run(spark, cfg)
    later = {r.doc_id: r for r in lake.read("prefilter").collect()}
    assert later["a"].near_duplicate_of == "a2" and not later["a"].passed
    assert later["b"].passed and later["b"].near_duplicate_of is None
    assert later["c0"].passed and later["c1"].near_duplicate_of == "c0"
    assert {d: later[d].passed for d in rows} == {d: r.passed for d, r in rows.items()}
    assert lake.version("prefilter") == version + 1  # one append

    # The switch re-thresholds from the stored columns; the measuring settings need a new run.
    off = cfg.model_copy(update={"prefilter": PrefilterSettings(
        rethreshold=True, dedup={"reject_near_duplicates": False})})
    assert prefilter.run(spark, off).rows_out == 10  # the 4 copies pass without the switch
    changed = cfg.model_copy(update={"prefilter": PrefilterSettings(
        rethreshold=True, dedup={"bands": 20})})
    with pytest.raises(ConfigError, match="MinHash bands were measured with .*'bands': 14"):
        prefilter.run(spark, changed)


def test_a_days_near_duplicates_on_the_driver_equal_the_shuffled_ones(spark):
    """`near_duplicates_of_few` (a day's batch: keys collected, stored lists searched by an
    Arrow kernel, resolved on the driver) finds what the shuffled join finds, on band keys
    drawn from a small range so that many documents share some."""
    from jobs.prefilter_dedup import near_duplicates, near_duplicates_of_few

    rng = random.Random(5)

    def docs(prefix, count):
        return [(f"{prefix}{rng.randrange(1000):03d}-{i}",
                 None if rng.random() < 0.1 else [rng.randrange(120) for _ in range(4)])
                for i in range(count)]

    schema = "doc_id string, minhash_bands array<bigint>"
    stored = spark.createDataFrame(docs("s", 60), schema).repartition(3)
    for new_rows in (docs("n", 40), docs("a", 25), [("z-1", None)]):
        new = spark.createDataFrame(new_rows, schema)
        shuffled = sorted(tuple(r) for r in near_duplicates(new, stored).collect())
        few = near_duplicates_of_few(new.toArrow(), stored)
        assert sorted(zip(*few.to_pydict().values(), strict=True)) == shuffled
        assert shuffled or all(bands is None for _, bands in new_rows)  # drawn to share some
