from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from jobs.predictive_strength import compute_predictive_strength, select_training_sample


def brute_force(benchmarks: dict[str, float], bpc: dict[str, float]) -> int:
    """Concordant pairs straight from the definition: every ordered pair of models."""
    return sum(
        1
        for weak, strong in itertools.permutations(benchmarks, 2)
        if benchmarks[weak] < benchmarks[strong] and bpc[weak] > bpc[strong]
    )


def models_frame(spark, benchmarks: dict[str, float]):
    return spark.createDataFrame(
        [(model_id, float(score)) for model_id, score in benchmarks.items()],
        "model_id string, benchmark_score double",
    )


def losses_frame(spark, rows: list[tuple[str, str, float | None]]):
    frame = pd.DataFrame(rows, columns=["doc_id", "model_id", "bpc"])
    frame["n_chars"] = 100  # the real table carries more columns; they must not matter
    return spark.createDataFrame(frame, "doc_id string, model_id string, bpc double, n_chars long")


def scored_by_doc(result) -> dict[str, tuple[float, int, int]]:
    return {
        row.doc_id: (row.ps, row.concordant_pairs, row.n_models)
        for row in result.scored.collect()
    }


def test_matches_brute_force_and_kendall_tau_without_ties(spark):
    rng = np.random.default_rng(3)
    benchmarks = {f"m{k}": score for k, score in enumerate(rng.permutation(6) * 7.5 + 20)}
    bpc = {f"d{d}": dict(zip(benchmarks, rng.uniform(0.5, 1.5, 6), strict=True)) for d in range(120)}
    # Declared rows in random order, plus an undeclared model that must be ignored.
    rows = [(doc, model, value) for doc, losses in bpc.items() for model, value in losses.items()]
    rows += [(doc, "not_declared", 0.1) for doc in bpc]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    result = compute_predictive_strength(losses_frame(spark, rows), models_frame(spark, benchmarks))

    scored = scored_by_doc(result)
    assert set(scored) == set(bpc)
    assert result.unscored.count() == 0
    assert result.n_pairs == 15
    assert list(result.model_order) == sorted(benchmarks, key=benchmarks.get)
    model_ids = list(benchmarks)
    for doc, (ps, pairs, n_models) in scored.items():
        assert pairs == brute_force(benchmarks, bpc[doc])
        assert n_models == 6
        assert ps == pytest.approx(pairs / 15, abs=1e-12)
        tau = kendalltau([benchmarks[m] for m in model_ids], [-bpc[doc][m] for m in model_ids])[0]
        assert ps == pytest.approx((1 + tau) / 2, abs=1e-12)
    values = [ps for ps, _, _ in scored.values()]
    assert min(values) < 0.3 and max(values) > 0.7  # the data spans the range


def test_ties_in_loss_and_in_benchmark_count_zero(spark):
    # m1 and m2 tie on benchmark: their pair never counts, yet Z still includes it.
    benchmarks = {"m0": 10.0, "m1": 20.0, "m2": 20.0, "m3": 30.0, "m4": 40.0}
    rng = np.random.default_rng(5)
    bpc = {f"d{d}": {m: float(rng.choice([0.8, 1.0, 1.2])) for m in benchmarks} for d in range(80)}
    bpc["perfect"] = {"m0": 2.0, "m1": 1.5, "m2": 1.0, "m3": 0.5, "m4": 0.1}
    bpc["all_equal"] = {m: 1.0 for m in benchmarks}
    rows = [(doc, model, value) for doc, losses in bpc.items() for model, value in losses.items()]
    result = compute_predictive_strength(losses_frame(spark, rows), models_frame(spark, benchmarks))

    scored = scored_by_doc(result)
    assert set(scored) == set(bpc)
    for doc, (ps, pairs, n_models) in scored.items():
        assert pairs == brute_force(benchmarks, bpc[doc]), doc
        assert ps == pytest.approx(pairs / 10, abs=1e-12)
        assert n_models == 5
    assert scored["perfect"][1] == 9  # every pair but the benchmark tie
    assert scored["all_equal"][:2] == (0.0, 0)


def test_documents_missing_a_model_are_reported_not_scored(spark):
    benchmarks = {"small": 1.0, "medium": 2.0, "large": 3.0}
    full = {"small": 1.3, "medium": 1.2, "large": 1.1}
    rows = [("complete", model, value) for model, value in full.items()]
    rows += [("no_large", model, full[model]) for model in ("small", "medium")]
    rows += [("null_medium", "small", 1.3), ("null_medium", "medium", None),
             ("null_medium", "large", 1.1)]
    rows += [("nan_small", "small", float("nan")), ("nan_small", "medium", 1.2),
             ("nan_small", "large", 1.1)]
    rows += [("twice_small", model, value) for model, value in full.items()]
    rows += [("twice_small", "small", 1.4)]
    rows += [("only_undeclared", "other", 1.0)]
    losses = losses_frame(spark, rows)
    result = compute_predictive_strength(losses, models_frame(spark, benchmarks))

    assert scored_by_doc(result) == {"complete": (1.0, 3, 3)}
    unscored = {row.doc_id: row for row in result.unscored.collect()}
    assert set(unscored) == {"no_large", "null_medium", "nan_small", "twice_small"}
    assert unscored["no_large"].missing_models == ["large"]
    assert unscored["null_medium"].missing_models == ["medium"]
    assert unscored["nan_small"].missing_models == ["small"]
    assert unscored["twice_small"].duplicate_models == ["small"]
    assert unscored["twice_small"].missing_models == []
    assert {doc: row.n_models_with_loss for doc, row in unscored.items()} == {
        "no_large": 2, "null_medium": 2, "nan_small": 2, "twice_small": 2,
    }
    assert dict(result.scored.dtypes) == {
        "doc_id": "string", "ps": "double", "concordant_pairs": "int", "n_models": "int",
    }


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ([("only", 1.0)], "at least 2 models"),
        ([("a", 1.0), ("a", 2.0)], r"not unique: \['a'\]"),
        ([("a", 1.0), ("b", None)], "benchmark_score of 'b'"),
    ],
)
def test_bad_models_table_is_named(spark, models, message):
    frame = spark.createDataFrame(models, "model_id string, benchmark_score double")
    losses = losses_frame(spark, [("d", "a", 1.0)])
    with pytest.raises(ValueError, match=message):
        compute_predictive_strength(losses, frame)


def test_losses_without_bpc_is_named(spark):
    losses = spark.createDataFrame([("d", "a", 1.0)], "doc_id string, model_id string, nll double")
    with pytest.raises(ValueError, match=r"losses is missing column\(s\) \['bpc'\]"):
        compute_predictive_strength(losses, models_frame(spark, {"a": 1.0, "b": 2.0}))


# ------------------------------------------------------------------ training sample


def ps_and_docs(spark, levels: dict[int, int], text_chars: int = 50):
    """`levels`: concordant pairs (of 15) -> number of documents at that level."""
    rows = [(f"p{pairs}_{i}", pairs / 15) for pairs, n in levels.items() for i in range(n)]
    ps = spark.createDataFrame(rows, "doc_id string, ps double")
    # "é" is two UTF-8 bytes: the byte bound must count bytes, not characters.
    docs = spark.createDataFrame(
        [(doc_id, f"{doc_id} " + "é" * text_chars) for doc_id, _ in rows],
        "doc_id string, text string",
    )
    return ps, docs, dict(rows)


def test_sample_is_balanced_with_the_lowest_ps_as_negatives(spark):
    ps, docs, ps_of = ps_and_docs(spark, {15: 30, 14: 50, 0: 5, 1: 10, 2: 40, 7: 20})
    sample = select_training_sample(ps, docs, seed=1)

    positives = sample[sample.label == "__label__1"]
    negatives = sample[sample.label == "__label__0"]
    assert len(positives) == len(negatives) == 30
    assert set(positives.doc_id) == {d for d, v in ps_of.items() if v == 1.0}
    # The 30 lowest: all 5 at 0, all 10 at 1/15, and 15 of the 40 tied at 2/15.
    assert sorted(negatives.ps.round(6)) == sorted([0.0] * 5 + [round(1 / 15, 6)] * 10
                                                   + [round(2 / 15, 6)] * 15)
    assert (sample.ps == sample.doc_id.map(ps_of)).all()
    assert (sample.text == sample.doc_id + " " + "é" * 50).all()
    other_seed = select_training_sample(ps, docs, seed=2)
    assert set(other_seed.doc_id) != set(sample.doc_id)  # the boundary tie is drawn by seed
    # What the balanced cut used and left out, as the train_classifier report prints it.
    assert sample.attrs["counts"] == {
        "scored": 155, "positives_available": 30, "negatives_available": 125, "per_class": 30,
        "positives_unused": 0, "negatives_unused": 95, "per_class_before_byte_cap": 30,
    }


def test_sample_cap_and_threshold(spark):
    ps, docs, ps_of = ps_and_docs(spark, {15: 30, 14: 50, 0: 5, 1: 10, 2: 40})
    capped = select_training_sample(ps, docs, max_per_class=8)
    assert (capped.label == "__label__1").sum() == (capped.label == "__label__0").sum() == 8
    assert (capped[capped.label == "__label__1"].ps == 1.0).all()
    assert (capped[capped.label == "__label__0"].ps == 0.0).sum() == 5

    # A lower threshold takes the 14/15 documents as positives too; only 55 are below it.
    lowered = select_training_sample(ps, docs, positive_threshold=14 / 15)
    assert (lowered.label == "__label__1").sum() == (lowered.label == "__label__0").sum() == 55
    assert set(lowered[lowered.label == "__label__0"].doc_id) == {
        d for d, v in ps_of.items() if v < 14 / 15
    }


def test_sample_is_down_sampled_to_the_byte_bound(spark):
    ps, docs, _ = ps_and_docs(spark, {15: 30, 0: 40}, text_chars=100)
    bytes_per_doc = len(("p15_10 " + "é" * 100).encode())
    bound = 24 * bytes_per_doc
    sample = select_training_sample(ps, docs, max_collect_bytes=bound)
    n_pos, n_neg = (sample.label == "__label__1").sum(), (sample.label == "__label__0").sum()
    assert n_pos == n_neg
    assert sample.attrs["counts"]["per_class"] == n_pos
    assert sample.attrs["counts"]["positives_unused"] == 30 - n_pos
    assert sum(len(t.encode()) for t in sample.text) <= bound
    assert 10 <= n_pos < 12.5  # close to the 12 that fit, not an arbitrary cut
    with pytest.raises(ValueError, match="max_collect_bytes"):
        select_training_sample(ps, docs, max_collect_bytes=bytes_per_doc)


def test_sample_errors_name_the_problem(spark):
    ps, docs, _ = ps_and_docs(spark, {14: 10, 0: 10})
    with pytest.raises(ValueError, match="0 documents with ps >= 1.0"):
        select_training_sample(ps, docs)
    ps, docs, _ = ps_and_docs(spark, {15: 5, 0: 5})
    with pytest.raises(ValueError, match="have no text in docs"):
        select_training_sample(ps, docs.where("doc_id != 'p15_3'"))
