from __future__ import annotations

import math
import random
import string

import numpy as np
import pandas as pd
import pytest
import torch

from jobs.demo.curves import (
    START,
    ByteMLP,
    CurveSettings,
    demo_observations,
    encode_samples,
    mean_nll,
    split_buckets,
    train_curve,
)
from jobs.scaling_fit import load_observations

TINY = CurveSettings(
    docs_per_bucket=12,
    heldout_per_bucket=3,
    steps=24,
    batch_size=8,
    sample_bytes=48,
    n_points=4,
    hidden_dim=32,
    learning_rate=1e-2,
)


def english(rng: random.Random, n: int) -> list[str]:
    words = "the data model value returns a list of items from each call to this function".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(12, 20))) + "." for _ in range(n)]


def junk(rng: random.Random, n: int) -> list[str]:
    alphabet = string.ascii_letters + string.digits + string.punctuation
    return ["".join(rng.choice(alphabet) for _ in range(60)) for _ in range(n)]


def corpus() -> pd.DataFrame:
    rng = random.Random(0)
    rows = [("q00", t) for t in english(rng, 15)] + [("q01", t) for t in junk(rng, 15)]
    return pd.DataFrame(rows, columns=["quality_bucket", "text"])


def test_encoding_pairs_each_byte_with_the_bytes_before_it():
    texts = ["héllo", "ab"]
    data = encode_samples(texts, sample_bytes=4, order=3)
    raw = "héllo".encode()[:4]  # 'h', the two bytes of 'é', 'l': samples count bytes
    for t in range(4):
        context = [START] * max(0, 3 - t) + list(raw[max(0, t - 3) : t])
        assert data.contexts[0, t].tolist() == context
        assert data.targets[0, t].item() == raw[t]
    assert data.mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert data.contexts[1, 1].tolist() == [START, START, ord("a")]


def test_error_is_bits_per_byte_over_8():
    # A model with zero output weights predicts the uniform distribution: exactly 8 bits per byte.
    model = ByteMLP(order=3, embed_dim=4, hidden_dim=8)
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.zero_()
        nll = float(mean_nll(model, encode_samples(["some text", "more"], 16, 3)))
    assert nll / math.log(256) == pytest.approx(1.0, abs=1e-6)


def test_train_curve_records_real_held_out_loss_at_even_steps():
    threads = torch.get_num_threads()
    rng = random.Random(1)
    curve = train_curve(english(rng, 10), english(rng, 4), TINY, seed=0)
    assert torch.get_num_threads() == threads
    assert list(curve["samples_seen"]) == [6 * 8, 12 * 8, 18 * 8, 24 * 8]
    np.testing.assert_allclose(curve["error"], curve["eval_nll"] / math.log(256))
    assert 0 < curve["error"].iloc[-1] < curve["error"].iloc[0] < 1.05
    # the same texts and seed give the same curve (model init and batch order are seeded)
    rng = random.Random(1)
    pd.testing.assert_frame_equal(curve, train_curve(english(rng, 10), english(rng, 4), TINY, 0))


def test_demo_observations_learn_the_useful_bucket_and_feed_the_fit():
    rng = random.Random(4)
    eval_texts = english(rng, 6)  # the target is English: junk teaches little about it
    obs = demo_observations(corpus(), TINY, eval_texts=eval_texts)
    assert list(obs.columns) == ["bucket", "samples_seen", "error", "pool_size", "eval_nll"]
    assert sorted(obs["bucket"].unique()) == ["q00", "q01"]
    assert (obs["pool_size"] == 12.0).all()  # 15 documents - 3 held out
    assert (obs["samples_seen"] > obs["pool_size"]).any()  # the pool is repeated
    last = obs.groupby("bucket")["error"].last()
    assert last["q00"] < last["q01"] - 0.05
    loaded = load_observations(obs)
    np.testing.assert_allclose(loaded["error"], obs["error"])


def test_split_buckets_holds_out_per_bucket_and_caps_the_pool():
    settings = CurveSettings(docs_per_bucket=5, heldout_per_bucket=2)
    pools, held_out = split_buckets(corpus(), settings)
    assert [len(p) for p in pools.values()] == [5, 5]
    assert len(held_out) == 4
    texts = set(corpus()["text"])
    assert set(held_out) <= texts and not set(held_out) & {t for p in pools.values() for t in p}


def test_bad_bucket_inputs_are_named():
    frame = corpus()
    with pytest.raises(ValueError, match="bucket 'q09' has 2 document"):
        split_buckets(
            pd.concat([frame, pd.DataFrame({"quality_bucket": ["q09"] * 2, "text": ["a", "b"]})]),
            TINY,
        )
    with pytest.raises(ValueError, match=r"null or empty 'text' in rows per bucket \{'q00': 1\}"):
        split_buckets(frame.assign(text=[""] + list(frame["text"][1:])), TINY)
    with pytest.raises(ValueError, match=r"lack column\(s\) \['text'\]"):
        split_buckets(frame.drop(columns="text"), TINY)
    with pytest.raises(ValueError, match="n_points"):
        CurveSettings(steps=3, n_points=4)


def test_sample_bucket_texts_equals_a_full_sort_by_the_seeded_hash(spark):
    from pyspark.sql import functions as F

    from jobs.demo.curves import sample_bucket_texts

    rows = [
        (f"d{b}-{i:04d}", f"q0{b}", f"text {b} {i}")
        for b, n in enumerate([60, 400, 5])
        for i in range(n)
    ]
    curated = spark.createDataFrame(rows, "doc_id string, quality_bucket string, text string")
    picked = sample_bucket_texts(curated, per_bucket=20, seed=3)
    # brute force: hash every document, sort each bucket whole, take the first 20
    hashed = curated.withColumn(
        "h", F.xxhash64("doc_id", F.lit(3)).bitwiseAND(F.lit((1 << 53) - 1))
    ).toPandas()
    expected = (
        hashed.sort_values(["h", "doc_id"])
        .groupby("quality_bucket")
        .head(20)
        .sort_values(["quality_bucket", "doc_id"], ignore_index=True)
    )[["doc_id", "quality_bucket", "text"]]
    pd.testing.assert_frame_equal(picked, expected)
    assert picked["quality_bucket"].value_counts().to_dict() == {"q00": 20, "q01": 20, "q02": 5}
    other = sample_bucket_texts(curated, per_bucket=20, seed=4)
    assert set(other["doc_id"]) != set(picked["doc_id"])
