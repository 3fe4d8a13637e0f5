"""ZIP on Spark: per-group selection, second pass and ratio report against the textbook ZIP."""

from __future__ import annotations

import math
import zlib

import pytest

from jobs.zip_select import assign_groups, select_zip, selection_ratio_report
from tests.udfs.test_zip_greedy import make_pool, naive_zip, text_list_ratio

SOURCES = {"web": make_pool(24, 12, seed=21), "books": make_pool(30, 0, seed=22)}
ROWS = [
    (f"{source}-{i:02d}", text, source)
    for source, texts in SOURCES.items()
    for i, text in enumerate(texts)
]


@pytest.fixture(scope="module")
def docs(spark):
    return spark.createDataFrame(ROWS, "doc_id string, text string, source string").repartition(3)


def textbook_picks(rows, group, *, k1, k2, k3, budget, char_budget=None):
    """Textbook ZIP over a group's (doc_id, text) rows in doc_id order, as zip_selection rows."""
    rows = sorted(rows)
    texts = [text for _, text in rows]
    picks = naive_zip(len(texts), text_list_ratio(texts), k1=k1, k2=k2, k3=k3, budget=budget,
                      char_budget=char_budget, chars=[len(t) for t in texts])
    return [(rows[p][0], group, rnd, rank) for p, rnd, rank, _ in picks]


def collected(selection, stage):
    rows = selection.filter(f"stage = '{stage}'").collect()
    return sorted((r["doc_id"], r["group"], r["round"], r["rank"]) for r in rows)


def test_groups_by_column_match_textbook_zip_per_group(docs):
    selection = select_zip(docs, k1=20, k2=6, k3=3, group_column="source", budget_fraction=0.25)
    expected = []
    for source in SOURCES:
        rows = [(doc_id, text) for doc_id, text, s in ROWS if s == source]
        budget = math.ceil(0.25 * len(rows))
        expected += textbook_picks(rows, source, k1=20, k2=6, k3=3, budget=budget)
    assert collected(selection, "group") == sorted(expected)
    columns = [f.name for f in selection.schema.fields]
    assert columns == ["doc_id", "group", "round", "stage", "rank"]


def test_hash_groups_with_character_budget_match_textbook_zip(docs):
    grouped = assign_groups(docs, n_groups=3).collect()
    by_group: dict[str, list[tuple[str, str]]] = {}
    for row in grouped:
        by_group.setdefault(row["group"], []).append((row["doc_id"], row["text"]))
    assert set(by_group) <= {"0", "1", "2"} and len(by_group) >= 2
    # Grouping is a function of doc_id alone: a reordered input gives the same groups.
    again = {r["doc_id"]: r["group"] for r in assign_groups(docs.orderBy("text"), 3).collect()}
    assert again == {r["doc_id"]: r["group"] for r in grouped}

    selection = select_zip(docs, k1=15, k2=5, k3=5, n_groups=3, budget_fraction=0.2,
                           budget_unit="characters")
    expected = []
    for group, rows in by_group.items():
        char_budget = math.ceil(0.2 * sum(len(t) for _, t in rows))
        expected += textbook_picks(rows, group, k1=15, k2=5, k3=5, budget=len(rows),
                                   char_budget=char_budget)
    assert collected(selection, "group") == sorted(expected)


def test_second_pass_reselects_from_the_union_of_group_picks(docs):
    selection = select_zip(docs, k1=20, k2=6, k3=3, group_column="source", budget_fraction=0.2,
                           second_pass=True, second_pass_oversample=2.0)
    first = collected(selection, "group")
    expected_first = []
    for source in SOURCES:
        rows = [(doc_id, text) for doc_id, text, s in ROWS if s == source]
        expected_first += textbook_picks(rows, source, k1=20, k2=6, k3=3,
                                         budget=math.ceil(0.4 * len(rows)))
    assert first == sorted(expected_first)
    text_of = {doc_id: text for doc_id, text, _ in ROWS}
    union_rows = [(doc_id, text_of[doc_id]) for doc_id, *_ in first]
    expected_union = textbook_picks(union_rows, "__all__", k1=20, k2=6, k3=3,
                                    budget=math.ceil(0.2 * len(ROWS)))
    assert collected(selection, "union") == sorted(expected_union)


def test_ratio_report_matches_textbook_compression_and_beats_random(spark):
    # Two groups, each half near-duplicates: ZIP avoids the duplicates, a random subset does not.
    rows = [(f"g{g}-{i:02d}", text, f"b{g}") for g in range(2)
            for i, text in enumerate(make_pool(20, 20, seed=30 + g))]
    docs = spark.createDataFrame(rows, "doc_id string, text string, bucket string")
    selection = select_zip(docs, k1=40, k2=10, k3=5, group_column="bucket", budget_fraction=0.25)
    report = selection_ratio_report(docs, selection, seed=5, group_column="bucket")

    text_of = {doc_id: text for doc_id, text, _ in rows}
    raw = compressed = 0
    for group in ("b0", "b1"):
        picks = sorted((r["round"], r["rank"], r["doc_id"])
                       for r in selection.filter(f"`group` = '{group}'").collect())
        joined = "\n\n".join(text_of[doc_id] for *_, doc_id in picks).encode()
        raw, compressed = raw + len(joined), compressed + len(zlib.compress(joined, 9))
    assert report["stage"] == "group" and report["n_groups"] == 2
    assert report["selected_docs"] == report["random_docs"] == 20
    assert report["selected_raw_bytes"] == raw
    assert report["selected_ratio"] == pytest.approx(raw / compressed, rel=1e-12)
    assert report["selected_ratio"] < report["random_ratio"]
    assert report["ratio_reduction"] > 0


def test_documents_without_text_and_empty_inputs(spark, docs):
    blank = spark.createDataFrame(
        [("e1", "", "blank"), ("e2", None, "blank"), ("t1", "some text here", "full")],
        "doc_id string, text string, source string",
    )
    picks = select_zip(blank, k1=3, k2=2, k3=1, group_column="source", budget_fraction=1.0)
    assert [(r["doc_id"], r["group"]) for r in picks.collect()] == [("t1", "full")]
    empty = select_zip(docs.limit(0), k1=3, k2=2, k3=1, n_groups=2)
    assert empty.count() == 0


def test_bad_inputs_are_named(docs):
    with pytest.raises(ValueError, match="text"):
        select_zip(docs.drop("text"), k1=3, k2=2, k3=1)
    with pytest.raises(ValueError, match="quality_bucket"):
        select_zip(docs, k1=3, k2=2, k3=1, group_column="quality_bucket")
    with pytest.raises(ValueError, match="k3 <= k2 <= k1"):
        select_zip(docs, k1=3, k2=4, k3=1)
    with pytest.raises(ValueError, match="n_groups"):
        assign_groups(docs, n_groups=0)
