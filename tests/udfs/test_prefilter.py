"""Pre-filter statistics: hand-computed values on crafted documents, an independent per-document
implementation on generated ones, and the Spark UDF against the kernel."""

import math
import random

import pandas as pd
import pyarrow as pa
import pytest

from tests.udfs.prefilter_reference import reference_statistics
from udfs.prefilter import (
    STATISTIC_NAMES,
    make_prefilter_udf,
    prefilter_statistics,
    prefilter_statistics_frame,
)


def stats(*texts):
    return prefilter_statistics(pa.array(list(texts), pa.string())).to_pylist()


def close(got: dict, want: dict):
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_word_statistics_by_hand():
    # words: The | cat, | the | DOG | and | 42 | #x... | be!   (lengths 3 4 3 3 3 2 5 3 = 26)
    [got] = stats("The cat, the DOG and 42 #x... be!")
    close(got, {
        "n_words": 8, "n_lines": 1, "mean_word_length": 26 / 8,
        "hash_word_ratio": 1 / 8, "ellipsis_word_ratio": 1 / 8,
        "alpha_word_share": 7 / 8,  # all but "42"
        "stop_word_count": 4,  # The, the, and, be! (case and punctuation do not matter)
        "terminal_punct_line_share": 1.0, "no_terminal_punct_line_share": 0.0,
        "short_line_share": 0.0,  # the line has 33 characters
        "newlines_per_word": 0.0, "few_word_line_share": 0.0,
        "n_sentences": 2,  # "#x..." and "be!" end sentences; nothing after the last
        "control_char_share": 0.0,
    })
    assert got["has_lorem_ipsum"] is got["has_curly_brace"] is got["has_javascript"] is False


def test_line_and_paragraph_statistics_by_hand():
    text = "Alpha beta.\nAlpha beta.\n\n  Gamma…\n- item one\n\nAlpha beta.\nAlpha beta.\n\n"
    # 71 characters, 9 of them newlines. Lines (stripped, empty ones ignored): Alpha beta. x2,
    # Gamma…, - item one, Alpha beta. x2. Paragraphs: "Alpha beta.\nAlpha beta." (23 chars),
    # "Gamma…\n- item one" (17), then the first again. Words: 12.
    assert len(text) == 71 and text.count("\n") == 9
    [got] = stats(text)
    close(got, {
        "n_lines": 6, "n_words": 12,
        "dup_line_share": 3 / 6, "dup_line_char_share": 3 * 11 / 71,
        "dup_line_char_share_no_newlines": 3 * 11 / 62,
        "dup_paragraph_share": 1 / 3, "dup_paragraph_char_share": 23 / 71,
        "bullet_line_share": 1 / 6, "ellipsis_line_share": 1 / 6,
        "terminal_punct_line_share": 4 / 6,
        "no_terminal_punct_line_share": 2 / 6,  # Gamma… and - item one
        "short_line_share": 1.0,
        "few_word_line_share": 5 / 6,  # all but "- item one" (3 words)
        "newlines_per_word": 9 / 12,
        "n_sentences": 4,
    })


def test_ngram_statistics_by_hand():
    # words aa b ccc aa b ccc aa b d, lengths 2 1 3 2 1 3 2 1 1 = 16 characters
    [got] = stats("aa b ccc aa b ccc aa b d")
    close(got, {
        # 2-grams: "aa b" x3 is the top one; it covers words 0 1 3 4 6 7 = 9 characters.
        "top_2gram_char_share": 9 / 16,
        # 3-grams: three tie at 2 occurrences and 6 characters; the first seen, "aa b ccc",
        # covers words 0..5 = 12 characters.
        "top_3gram_char_share": 12 / 16,
        # 4-grams: "aa b ccc aa" (8 chars) beats "b ccc aa b" (7); words 0..6 = 14.
        "top_4gram_char_share": 14 / 16,
        # 5-grams: "aa b ccc aa b" at 0 and 3 covers words 0..7 = 15 characters, each once.
        "dup_5gram_char_share": 15 / 16,
        **{f"dup_{n}gram_char_share": 0.0 for n in range(6, 11)},
    })


def test_repeats_are_counted_within_a_document_only():
    # Identical documents in one batch repeat nothing, and no n-gram spans two documents:
    # "q r" would repeat if the first document's last word met the second's first.
    first, second, again = stats("p q r s q", "r t u", "p q r s q")
    for got in (first, second, again):
        assert got["dup_line_share"] == got["dup_paragraph_share"] == 0.0
        assert got["top_2gram_char_share"] == got["dup_5gram_char_share"] == 0.0


def test_control_characters_by_hand():
    # BEL (Cc), zero-width space (Cf), private use (Co), unassigned U+0378 (Cn) count;
    # \n \t \r, é and the line separator U+2028 (Zl) do not.
    text = "ab\x07\u200b\ue000\u0378é\u2028\n\t\r"
    [got] = stats(text)
    assert got["control_char_share"] == pytest.approx(4 / len(text))
    assert len(text) == 11


def test_c4_markers_and_non_ascii_text():
    [markers] = stats("Lorem Ipsum dolor { sit } JavaScript")
    assert markers["has_lorem_ipsum"] and markers["has_curly_brace"] and markers["has_javascript"]
    [got] = stats("Ça va? Très bien… 日本語 テキスト")
    # words Ça va? Très bien… 日本語 テキスト: 2 3 4 5 3 4 = 21 code points
    close(got, {
        "n_words": 6, "mean_word_length": 21 / 6, "alpha_word_share": 1.0,
        "ellipsis_word_ratio": 1 / 6, "n_sentences": 2, "short_line_share": 1.0,
    })


def test_null_empty_and_whitespace_only_text():
    null, empty, blank = stats(None, "", " \n\t \n")
    assert all(value is None for value in null.values())
    assert all(value is None for value in empty.values())
    # whitespace only: nothing to count, and shares over words or lines cannot be measured
    assert blank["n_words"] == blank["n_lines"] == blank["stop_word_count"] == 0
    assert blank["mean_word_length"] is None and blank["dup_line_share"] is None
    assert blank["top_2gram_char_share"] is None and blank["terminal_punct_line_share"] is None
    assert blank["control_char_share"] == 0.0
    assert prefilter_statistics(pa.array([], pa.string())).to_pylist() == []
    assert prefilter_statistics(pa.array([None, None])).to_pylist()[0]["n_words"] is None


def generated_documents(n: int, seed: int = 0) -> list:
    """Prose, lists, repeated boilerplate, code, random characters and odd Unicode."""
    rng = random.Random(seed)
    vocab = ("the of and to a in is that with have be data model it for on as this "
             "river stone light Ça très 日本 naïve … — # ... { } lorem ipsum").split()
    docs = []
    for i in range(n):
        kind = i % 6
        if kind == 0:
            sentences = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 14)))
                         + rng.choice([".", "!", "?", "", "...", '."'])
                         for _ in range(rng.randint(1, 12))]
            docs.append(rng.choice([" ", "\n", "\n\n", "\r\n"]).join(sentences))
        elif kind == 1:
            docs.append("\n".join(rng.choice(["- ", "* ", "• ", ""]) + rng.choice(vocab)
                                  for _ in range(rng.randint(1, 20))))
        elif kind == 2:
            block = " ".join(rng.choice(vocab) for _ in range(rng.randint(2, 9)))
            docs.append((block + rng.choice([" ", "\n", "\n\n"])) * rng.randint(1, 6))
        elif kind == 3:
            docs.append("def f(x):\n    return {x: 1}\n\n" * rng.randint(1, 3))
        elif kind == 4:
            docs.append("".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0, 31),
                                                rng.randint(0x370, 0x3ff), 0x200b, 0xe000]))
                                for _ in range(rng.randint(1, 200))))
        else:
            docs.append(rng.choice([None, "", " ", "x", "a a a a a a a a a a a a"]))
    return docs


def test_kernel_equals_an_independent_per_document_implementation():
    docs = generated_documents(600)
    got = prefilter_statistics(pa.array(docs, pa.string())).to_pylist()
    for text, row in zip(docs, got, strict=True):
        want = reference_statistics(text)
        if want is None:
            assert all(v is None for v in row.values()), text
            continue
        for name in STATISTIC_NAMES:
            value = want[name]
            if value is None:
                assert row[name] is None, (text, name)
            else:
                assert math.isclose(row[name], value, rel_tol=1e-9, abs_tol=1e-12), (text, name)


def test_pandas_form_and_large_strings_match():
    docs = generated_documents(60, seed=3)
    arrow = pa.Table.from_struct_array(prefilter_statistics(pa.array(docs))).to_pandas()
    large = pa.Table.from_struct_array(
        prefilter_statistics(pa.chunked_array([pa.array(docs, pa.large_string())]))).to_pandas()
    frame = prefilter_statistics_frame(pd.Series(docs, dtype=object))
    pd.testing.assert_frame_equal(frame, arrow)
    pd.testing.assert_frame_equal(large, arrow)
    with pytest.raises(TypeError, match="string column"):
        prefilter_statistics(pa.array([1, 2]))


def test_udf_on_spark_equals_the_kernel(spark):
    docs = generated_documents(120, seed=7)
    df = spark.createDataFrame([(i, t) for i, t in enumerate(docs)], "id long, text string")
    rows = df.select("id", make_prefilter_udf()("text").alias("s")).collect()
    got = {r.id: r.s.asDict() for r in rows}
    want = prefilter_statistics(pa.array(docs, pa.string())).to_pylist()
    assert len(got) == len(docs)
    for i, expected in enumerate(want):
        assert got[i] == expected, docs[i]
