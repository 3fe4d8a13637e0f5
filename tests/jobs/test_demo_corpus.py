import json
import random

import pandas as pd
import pytest

from jobs.core.config import DemoSettings
from jobs.demo.clean import CLEAN_KINDS, chunks, module_page
from jobs.demo.corpus import TARGET_FILE, build_demo_corpus, demo_records
from jobs.demo.junk import JUNK_GENERATORS, JUNK_KINDS, junk_documents, near_duplicates
from udfs.prefilter import prefilter_statistics_frame

SMALL = DemoSettings(n_docstring_docs=40, n_prose_docs=20, n_boilerplate_docs=3, n_junk_docs=14,
                     n_near_duplicate_docs=3, n_target_docs=12)


@pytest.fixture(scope="module")
def records():
    return demo_records(SMALL)


def test_every_junk_and_clean_kind_is_produced(records):
    pool, target = records
    kinds = {kind for kind, _ in pool}
    assert set(JUNK_KINDS) <= kinds
    assert set(CLEAN_KINDS) - {"license"} <= kinds  # 20 prose documents in turn: 5 kinds
    assert sum(kind == "docstring" for kind, _ in pool) == 40
    assert sum(kind in JUNK_KINDS for kind, _ in pool) == 3 + 14 + 3
    assert len(target) == 12 and {kind for kind, _ in target} <= set(CLEAN_KINDS)


def test_target_set_is_disjoint_from_the_pool(records):
    pool, target = records
    pool_texts = {text for _, text in pool}
    assert not pool_texts & {text for _, text in target}
    # near-duplicates copy pool documents, never the target's
    originals = {" ".join(t.split()) for k, t in pool if k in CLEAN_KINDS}
    for kind, text in pool:
        if kind == "near_duplicate":
            words = text.rsplit(" (mirror", 1)[0].split()
            assert any(len(o.split()) == len(words) for o in originals)


def test_corpus_is_deterministic_for_a_seed():
    again = demo_records(SMALL)
    assert again == demo_records(SMALL)
    other = demo_records(SMALL.model_copy(update={"seed": 1}))
    assert other[0] != again[0]


def test_generators_are_seeded_and_produce_the_junk_they_name():
    for kind, generate in JUNK_GENERATORS.items():
        first = generate(random.Random(7), 5)
        assert len(first) == 5 and all(isinstance(t, str) and len(t) >= 100 for t in first), kind
        assert generate(random.Random(7), 5) == first, kind
        assert generate(random.Random(8), 5) != first, kind
    texts = pd.Series([JUNK_GENERATORS[kind](random.Random(0), 1)[0] for kind in JUNK_GENERATORS])
    stats = prefilter_statistics_frame(texts).set_index(pd.Index(list(JUNK_GENERATORS)))
    assert stats.loc["lorem_ipsum", "has_lorem_ipsum"]
    assert stats.loc["navigation", "short_line_share"] > 0.67
    assert stats.loc["boilerplate", "dup_5gram_char_share"] > 0.5
    assert stats.loc["keyword_spam", "top_2gram_char_share"] > 0.2
    assert stats.loc["random_chars", "mean_word_length"] > 10
    assert stats.loc["number_table", "alpha_word_share"] < 0.8
    assert stats.loc["base64_hex", "stop_word_count"] == 0
    assert stats.loc["product_page", "stop_word_count"] >= 2  # written to look like prose
    with pytest.raises(ValueError, match="unknown junk kinds"):
        junk_documents(random.Random(0), {"spam": 1})


def test_chunks_cut_at_paragraphs_within_the_limit():
    text = "\n\n".join(f"paragraph {i} " + "word " * 60 for i in range(10))
    pieces = chunks(text, max_chars=800)
    assert all(200 <= len(p) <= 800 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_build_writes_pool_files_and_the_target_set(tmp_path):
    settings = SMALL.model_copy(update={"target_dir": str(tmp_path / "target"), "n_files": 2})
    counts = build_demo_corpus(tmp_path / "corpus", settings)
    # The pool files hold one invalid UTF-8 line on purpose (the quarantine's test case).
    lines = [json.loads(line) for f in sorted((tmp_path / "corpus").glob("*.jsonl"))
             for line in f.read_bytes().splitlines() if line.startswith(b'{"id": "doc-')]
    target = [json.loads(line) for line in (tmp_path / "target" / TARGET_FILE).read_text()
              .splitlines()]
    assert counts["target"] == len(target) == 12
    assert {r["kind"] for r in target} <= set(CLEAN_KINDS)
    assert len({r["id"] for r in lines}) == counts["lines"] - counts["bad_lines"]
    assert not {r["text"] for r in lines} & {r["text"] for r in target}


def test_docstrings_make_pages_of_sections_under_signatures():
    long = " It says so at length, as a page of documentation does." * 4
    source = '''"""A module about widgets, their parts and how they fit together in practice."""
class Widget(Base):
    """A widget holds parts and knows how to assemble them in the right order.LONG"""
    def assemble(self, parts, *, strict=False):
        """Put the parts together in order; with strict, refuse a missing part."""
    def copy(self):
        """Put the parts together in order; with strict, refuse a missing part."""
def build(n):
    """Build n widgets from the default parts and return them as a list of widgets.LONG"""
'''.replace("LONG", long)
    module, widget = module_page("widgets", source)
    assert module.startswith("widgets\n\nA module about widgets")
    assert "build(n)\nBuild n widgets" in module and "Widget" not in module
    assert widget.startswith("widgets.Widget\n\nclass Widget(Base)\nA widget holds")
    assert "assemble(self, parts, *, strict=False)\nPut the parts" in widget
    assert widget.count("Put the parts together") == 1  # a copied docstring is shown once


def test_near_duplicates_keep_the_layout_of_the_page_they_copy():
    original = "\n".join(f"line {i} of a page that a mirror copies word for word" for i in range(12))
    (copy,) = near_duplicates(random.Random(0), [original], 1)
    body = copy.rsplit(" (mirror", 1)[0]
    assert body.count("\n") == original.count("\n")
    changed = [a != b for a, b in zip(body.split(), original.split(), strict=True)]
    assert 1 <= sum(changed) <= 3
