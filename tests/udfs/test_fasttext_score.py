from __future__ import annotations

import math
import os
import random
import shutil
import uuid

import fasttext
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from udfs.fasttext_score import (
    load_fasttext_model,
    make_fasttext_udf,
    model_load_count,
    preprocess_for_fasttext,
    resolve_model_path,
    score_arrow,
    score_texts,
)

GOOD_WORDS = "river mountain forest meadow canyon glacier".split()
BAD_WORDS = "casino jackpot bonus casino lottery prize".split()


def direct_probability(model, text: str, label: str = "__label__1") -> float:
    """fastText's own answer for the recipe-preprocessed text, via the NumPy-2-safe call."""
    line = text.replace("\n", " ") + "\n"
    probabilities = {lab: prob for prob, lab in model.f.predict(line, -1, 0.0, "strict")}
    return min(probabilities[label], 1.0)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("fasttext_model")
    rng = random.Random(7)
    train_file = folder / "train.txt"
    with open(train_file, "w") as handle:
        for index in range(600):
            positive = index % 2 == 0
            words = rng.choices(GOOD_WORDS if positive else BAD_WORDS, k=12)
            words += rng.choices(GOOD_WORDS + BAD_WORDS, k=6)
            handle.write(f"__label__{int(positive)} {' '.join(words)}\n")
    model = fasttext.train_supervised(
        input=str(train_file), epoch=5, lr=0.5, wordNgrams=2, dim=8, bucket=5000, thread=1,
        verbose=0, seed=1,
    )
    path = folder / f"model-{uuid.uuid4().hex[:8]}.bin"
    model.save_model(str(path))
    return str(path)


@pytest.fixture(scope="module")
def sample_texts() -> list[str]:
    rng = random.Random(11)
    texts = []
    for _ in range(300):
        words = rng.choices(GOOD_WORDS + BAD_WORDS + ["unseen", "words"], k=rng.randint(0, 30))
        separators = [rng.choice([" ", " ", "\n", "\r", "\t"]) for _ in words]
        texts.append("".join(w + s for w, s in zip(words, separators, strict=True)))
    return texts + ["", "\n\n", "ünïcödé ☃ river", "river\ncasino jackpot bonus lottery"]


def test_scores_equal_direct_fasttext_predict(model_path, sample_texts):
    model = fasttext.load_model(model_path)
    scores = score_texts(sample_texts, model)
    expected = np.array([direct_probability(model, text) for text in sample_texts])
    np.testing.assert_array_equal(scores, expected)
    assert scores.dtype == np.float64
    assert ((scores >= 0.0) & (scores <= 1.0)).all()
    # Both classes occur, so the positive label is often not the top label.
    assert (scores < 0.5).sum() > 20 and (scores > 0.5).sum() > 20


def test_arrow_kernel_equals_direct_predict_with_nulls_slices_and_large_strings(
    model_path, sample_texts
):
    model = fasttext.load_model(model_path)
    texts = [*sample_texts, None]
    expected = [direct_probability(model, t) if t is not None else None for t in texts]
    for array in (pa.array(texts, pa.string()), pa.array(texts, pa.large_string())):
        assert score_arrow(array, model).to_pylist() == expected
    assert score_arrow(pa.array(texts).slice(290), model).to_pylist() == expected[290:]
    chunked = pa.chunked_array([pa.array(texts[:7]), pa.array(texts[7:])])
    assert score_arrow(chunked, model).to_pylist() == expected
    with pytest.raises(TypeError, match="string column"):
        score_arrow(pa.array([b"river"]), model)


def test_scores_the_other_label_as_its_complement(model_path, sample_texts):
    model = fasttext.load_model(model_path)
    positive = score_texts(sample_texts, model, "__label__1")
    negative = score_texts(sample_texts, model, "__label__0")
    # fastText adds 1e-5 to each probability, so the two sum to 1 + 2e-5 before clipping.
    np.testing.assert_allclose(positive + negative, 1.0, atol=3e-5)


def test_newline_does_not_truncate_the_document(model_path):
    model = fasttext.load_model(model_path)
    text = "river\ncasino jackpot bonus lottery casino"
    whole, = score_texts([text], model)
    assert whole == direct_probability(model, text.replace("\n", " "))
    first_line_only = {lab: p for p, lab in model.f.predict("river\n", -1, 0.0, "strict")}
    assert abs(whole - first_line_only["__label__1"]) > 0.1
    assert preprocess_for_fasttext("a\nb\r\nc") == "a b\r c"


def test_carriage_return_is_already_a_separator_for_fasttext(model_path):
    # Why preprocessing leaves "\r" alone: fastText splits words on it exactly like a space.
    model = fasttext.load_model(model_path)
    for text in ["river\rcasino", "jackpot\r\rmeadow canyon", "a\tb\x0bc\x0cd"]:
        plain = " ".join(text.replace("\r", " ").replace("\x0b", " ").replace("\x0c", " ").split())
        assert model.f.predict(text + "\n", -1, 0.0, "strict") == model.f.predict(
            plain + "\n", -1, 0.0, "strict"
        )


def test_nulls_give_nan_and_bad_values_raise(model_path):
    model = fasttext.load_model(model_path)
    scores = score_texts(pd.Series(["river", None, float("nan"), "casino"]), model)
    assert math.isnan(scores[1]) and math.isnan(scores[2])
    assert not math.isnan(scores[0]) and not math.isnan(scores[3])
    with pytest.raises(TypeError, match=r"texts\[1\] is bytes"):
        score_texts(["river", b"casino"], model)
    with pytest.raises(ValueError, match="'__label__good' is not a label"):
        score_texts(["river"], model, "__label__good")


def test_lone_surrogate_is_replaced_not_a_crash(model_path):
    model = fasttext.load_model(model_path)
    score, = score_texts(["river \udcff meadow"], model)
    # str.encode(errors="replace") turns an unencodable character into "?".
    assert score == direct_probability(model, "river ? meadow")


def test_model_is_loaded_once_and_reloaded_when_the_file_changes(model_path, tmp_path):
    copy = tmp_path / "copy.bin"
    shutil.copy(model_path, copy)
    first = load_fasttext_model(str(copy))
    assert load_fasttext_model(str(copy)) is first
    assert model_load_count(str(copy)) == 1
    stat = os.stat(copy)
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_fasttext_model(str(copy)) is not first
    assert model_load_count(str(copy)) == 2


def test_missing_model_names_what_was_looked_at(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-model.bin"):
        resolve_model_path(str(tmp_path / "no-such-model.bin"))
    with pytest.raises(FileNotFoundError, match="addFile"):
        resolve_model_path("never-shipped-model.bin")
    not_a_model = tmp_path / "junk.bin"
    not_a_model.write_bytes(b"not a fasttext model")
    with pytest.raises(ValueError, match="junk.bin"):
        load_fasttext_model(str(not_a_model))


def test_udf_with_shipped_file_and_with_a_path(spark, model_path, sample_texts):
    spark.sparkContext.addFile(model_path)
    texts = sample_texts + [None]
    frame = spark.createDataFrame(
        pd.DataFrame({"row": range(len(texts)), "text": texts})
    ).repartition(4)
    previous = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "40")
    try:
        shipped_udf = make_fasttext_udf(os.path.basename(model_path))
        path_udf = make_fasttext_udf(model_path, "__label__1")
        result = (
            frame.select("row", shipped_udf("text").alias("shipped"), path_udf("text").alias("path"))
            .withColumn("shipped_is_null", F.col("shipped").isNull())
            .toPandas()
            .sort_values("row")
        )
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", previous)

    model = fasttext.load_model(model_path)
    expected = np.array([direct_probability(model, text) for text in sample_texts])
    np.testing.assert_array_equal(result["shipped"].to_numpy()[:-1], expected)
    np.testing.assert_array_equal(result["path"].to_numpy()[:-1], expected)
    assert result["shipped_is_null"].tolist() == [False] * len(sample_texts) + [True]


def test_udf_loads_the_model_once_per_python_worker(spark, model_path):
    from pyspark.sql.functions import arrow_udf

    name = os.path.basename(model_path)
    spark.sparkContext.addFile(model_path)
    previous = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "25")

    @arrow_udf("string")
    def loads_in_this_worker(scores: pa.Array) -> pa.Array:
        return pa.array([f"{os.getpid()}:{model_load_count(name)}"] * len(scores))

    try:
        frame = spark.range(2000).selectExpr("cast(id as string) as text").repartition(8)
        # Nested Arrow UDFs run chained in one Python worker, so the count is the scorer's.
        loads = loads_in_this_worker(make_fasttext_udf(name)("text"))
        report = frame.select(loads.alias("loads")).distinct().collect()
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", previous)
    counts = {int(pid): int(loads) for pid, loads in (row.loads.split(":") for row in report)}
    # 8 tasks of 10 batches each: a working cache loads once per worker, and reused workers
    # mean fewer loads than tasks.
    assert counts and set(counts.values()) == {1}
    assert len(counts) < 8
