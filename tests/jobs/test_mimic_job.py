"""Spark path of Grad-Mimic: the pandas UDF over saved checkpoints, and the vote aggregation."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import scipy.special

from jobs.demo.models import train_causal_lm, train_tokenizer
from jobs.mimic import aggregate_mimic, score_mimic
from tests.udfs.test_mimic import MAX_LENGTH, TEXTS, brute_force_scores, corpus, tiny
from tests.udfs.test_mimic_aggregate import synthetic_scores
from udfs.mimic_aggregate import aggregate_checkpoint_scores


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two saved steps of a run plus the reference, each loadable with load_causal_lm."""
    root = tmp_path_factory.mktemp("mimic_models")
    tokenizer = train_tokenizer(corpus(), str(root / "tok"), vocab_size=300)
    stream = np.array(
        [t for text in corpus(seed=1) for t in [tokenizer.bos_token_id, *tokenizer(text)["input_ids"]]]
    )
    step0 = tiny(tokenizer, "gpt2", seed=0)
    step1 = train_causal_lm(copy.deepcopy(step0), stream, steps=2, batch_size=4, block_size=32)
    reference = train_causal_lm(copy.deepcopy(step1), stream, steps=6, batch_size=4, block_size=32)
    models = {"step0": step0, "step1": step1, "ref": reference}
    for name, model in models.items():
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root, tokenizer, models


def test_score_mimic_matches_bruteforce_per_checkpoint(spark, checkpoints):
    root, tokenizer, models = checkpoints
    texts = [*TEXTS, "", None]
    docs = spark.createDataFrame(
        pd.DataFrame({"doc_id": [f"d{i}" for i in range(len(texts))], "text": texts})
    )
    parts = [
        score_mimic(docs, checkpoint=step, current_path=str(root / step),
                    reference_path=str(root / "ref"), layer="lm_head", dtype="float32",
                    max_length=MAX_LENGTH, batch_size=3)
        for step in ("step0", "step1")
    ]
    # One task: a single Python worker imports torch once (~15 s on a busy 2-core machine).
    scores = parts[0].unionByName(parts[1]).coalesce(1)
    assert scores.columns == ["doc_id", "checkpoint", "score", "cosine", "error"]
    got = scores.toPandas().set_index(["checkpoint", "doc_id"]).sort_index()
    assert len(got) == 2 * len(texts)
    for step in ("step0", "step1"):
        want, want_cos = brute_force_scores(models[step], models["ref"], tokenizer, TEXTS,
                                            "lm_head.weight", MAX_LENGTH)
        rows = got.loc[step].loc[[f"d{i}" for i in range(len(TEXTS))]]
        np.testing.assert_allclose(rows["score"].to_numpy(float), want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(rows["cosine"].to_numpy(float), want_cos, rtol=1e-4, atol=1e-5)
        assert rows["error"].isna().all()
        failed = got.loc[step].loc[[f"d{len(TEXTS)}", f"d{len(TEXTS) + 1}"]]
        assert failed["error"].tolist() == ["empty text", "null text"]
        assert failed["score"].isna().all() and failed["cosine"].isna().all()

    # As in the job: aggregate the stored scores, not the UDF plan (which it would re-run).
    stored = spark.createDataFrame(got.reset_index())
    aggregated = aggregate_mimic(stored, method="uniform", temperature=0.01).toPandas()
    assert len(aggregated) == len(texts)
    failed_docs = aggregated[aggregated.doc_id.isin([f"d{len(TEXTS)}", f"d{len(TEXTS) + 1}"])]
    assert (failed_docs.n_checkpoints == 0).all() and failed_docs.mimic_keep.isna().all()


def uniform_votes_by_definition(frame: pd.DataFrame, temperature: float) -> dict:
    votes = {}
    for _, group in frame.dropna(subset=["score"]).groupby("checkpoint"):
        weights = scipy.special.softmax(group["score"].to_numpy() / temperature)
        for doc, weight in zip(group.doc_id, weights, strict=True):
            votes[doc] = votes.get(doc, 0) + int(weight > 1 / len(group))
    return votes


@pytest.mark.parametrize("min_votes", [None, 0.5])
def test_aggregate_mimic_uniform_matches_the_softmax_definition(spark, min_votes):
    frame = synthetic_scores()
    got = aggregate_mimic(spark.createDataFrame(frame), method="uniform", min_votes=min_votes,
                          temperature=0.3).toPandas().set_index("doc_id").sort_index()
    votes = uniform_votes_by_definition(frame, 0.3)
    for doc, rows in frame.groupby("doc_id"):
        n = int(rows.score.notna().sum())
        row = got.loc[doc]
        assert row.n_checkpoints == n and row.mimic_votes == votes.get(doc, 0)
        if n == 0:
            assert pd.isna(row.mimic_keep) and pd.isna(row.mimic_mean)
            continue
        needed = n // 2 + 1 if min_votes is None else math.ceil(0.5 * n)
        assert row.mimic_keep == (votes.get(doc, 0) >= needed)
        assert row.mimic_mean == pytest.approx(rows.score.mean(), rel=1e-12)
    assert 0 < got.mimic_keep.sum() < len(got) - 1


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_aggregate_mimic_fitted_thresholds_equal_the_pandas_kernel(spark, method):
    frame = synthetic_scores()
    got = aggregate_mimic(spark.createDataFrame(frame), method=method).toPandas()
    want = aggregate_checkpoint_scores(frame, method=method)
    merged = want.merge(got, on="doc_id", suffixes=("_want", "_got"))
    assert len(merged) == len(want) == len(got)
    for column in ("mimic_votes", "n_checkpoints"):
        assert (merged[f"{column}_want"] == merged[f"{column}_got"]).all()
    pd.testing.assert_series_equal(
        merged["mimic_keep_want"].astype(object), merged["mimic_keep_got"].astype(object),
        check_names=False,
    )


def test_aggregate_mimic_from_a_sample_still_thresholds_each_checkpoint(spark):
    frame = synthetic_scores()
    scores = spark.createDataFrame(frame)
    # A 12-row sample (of 29 scores) moves the threshold, but it stays one cut per checkpoint:
    # every voted score is above every unvoted one.
    per_step = aggregate_mimic(scores.where("checkpoint = 's100'"), method="two_means",
                               max_sample_rows=12).toPandas().merge(frame[frame.checkpoint == "s100"])
    voted = per_step[per_step.mimic_votes == 1].score
    unvoted = per_step[(per_step.mimic_votes == 0) & per_step.score.notna()].score
    assert len(voted) and len(unvoted) and voted.min() > unvoted.max()


def test_bad_inputs_raise_naming_the_problem(spark):
    frame = synthetic_scores()
    with pytest.raises(ValueError, match="checkpoint"):
        aggregate_mimic(spark.createDataFrame(frame.drop(columns="checkpoint")))
    with pytest.raises(ValueError, match="repeated doc_id"):
        aggregate_mimic(spark.createDataFrame(pd.concat([frame, frame.iloc[:2]])))
    with pytest.raises(ValueError, match="method"):
        aggregate_mimic(spark.createDataFrame(frame), method="median")
    docs = spark.createDataFrame(pd.DataFrame({"doc_id": ["a"], "body": ["x"]}))
    with pytest.raises(ValueError, match="text"):
        score_mimic(docs, checkpoint="s", current_path="/nope", reference_path="/nope")
    with pytest.raises(ValueError, match="batch_size"):
        score_mimic(docs.withColumnRenamed("body", "text"), checkpoint="s",
                    current_path="/a", reference_path="/b", batch_size=0)


def test_documents_without_any_score_keep_a_row(spark):
    frame = pd.DataFrame({"doc_id": ["a", "b"], "checkpoint": ["s1", "s1"], "score": [None, None]})
    got = aggregate_mimic(spark.createDataFrame(frame, "doc_id string, checkpoint string, "
                                                "score double")).toPandas().sort_values("doc_id")
    assert got.doc_id.tolist() == ["a", "b"]
    assert (got.n_checkpoints == 0).all() and (got.mimic_votes == 0).all()
    assert got.mimic_keep.isna().all() and got.mimic_mean.isna().all()
