"""Binarisation and voting of mimic scores against textbook computations written here."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.special
import scipy.stats

from udfs.mimic_aggregate import (
    TwoGaussians,
    aggregate_checkpoint_scores,
    binarise_threshold,
    fit_two_gaussians,
    gmm_boundary,
    gmm_threshold,
    two_means_threshold,
    uniform_weight_threshold,
    votes_needed,
)


@pytest.mark.parametrize("temperature", [0.03, 0.2, 1.0, 5.0])
def test_uniform_threshold_keeps_exactly_the_above_uniform_softmax_weights(temperature):
    scores = np.random.default_rng(1).normal(0.0, 0.1, size=500)
    weights = scipy.special.softmax(scores / temperature)
    want_keep = weights > 1.0 / scores.size
    got_keep = scores > uniform_weight_threshold(scores, temperature)
    assert (got_keep == want_keep).all()
    assert 0 < want_keep.sum() < scores.size


def brute_force_two_means(values: np.ndarray) -> np.ndarray:
    """Best partition over every subset-by-threshold, by within-cluster sum of squares."""
    best, best_keep = math.inf, None
    for cut in np.unique(values)[:-1]:
        high = values > cut
        sse = ((values[high] - values[high].mean()) ** 2).sum() + (
            (values[~high] - values[~high].mean()) ** 2
        ).sum()
        if sse < best:
            best, best_keep = sse, high
    return best_keep


@pytest.mark.parametrize("seed", range(5))
def test_two_means_matches_brute_force_partition(seed):
    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.normal(0, 1, 40), rng.normal(rng.uniform(1, 4), 0.7, 25)])
    got = values > two_means_threshold(values)
    assert (got == brute_force_two_means(values)).all()
    # Lloyd's algorithm from the brute-force optimum does not move: a fixed point.
    centroids = values[~got].mean(), values[got].mean()
    assert (np.abs(values - centroids[1]) < np.abs(values - centroids[0]) - 1e-12)[got].all()


def test_gmm_recovers_a_known_mixture_and_its_bayes_boundary():
    rng = np.random.default_rng(7)
    w, mu, sd = (0.7, 0.3), (-1.0, 2.0), (0.5, 0.8)
    n = 40_000
    high = rng.random(n) < w[1]
    values = np.where(high, rng.normal(mu[1], sd[1], n), rng.normal(mu[0], sd[0], n))

    fit = fit_two_gaussians(values)
    np.testing.assert_allclose(fit.weights, w, atol=0.01)
    np.testing.assert_allclose(fit.means, mu, atol=0.03)
    np.testing.assert_allclose(fit.stds, sd, atol=0.03)

    def true_log_ratio(x):
        return (math.log(w[1]) + scipy.stats.norm.logpdf(x, mu[1], sd[1])
                - math.log(w[0]) - scipy.stats.norm.logpdf(x, mu[0], sd[0]))

    bayes = scipy.optimize.brentq(true_log_ratio, mu[0], mu[1])
    assert gmm_threshold(values) == pytest.approx(bayes, abs=0.03)

    # EM reaches (at least) the likelihood of the generating parameters: it is the MLE here.
    def log_likelihood(p):
        return np.logaddexp(
            math.log(p[0][0]) + scipy.stats.norm.logpdf(values, p[1][0], p[2][0]),
            math.log(p[0][1]) + scipy.stats.norm.logpdf(values, p[1][1], p[2][1]),
        ).sum()

    fitted = log_likelihood((fit.weights, fit.means, fit.stds))
    assert fitted >= log_likelihood((w, mu, sd)) - 1e-6
    assert fit.log_likelihood(values) == pytest.approx(fitted, rel=1e-10)


def test_gmm_boundary_is_the_posterior_crossing_of_its_own_fit():
    fit = TwoGaussians(weights=(0.4, 0.6), means=(0.0, 1.0), stds=(0.3, 0.6))
    boundary = gmm_boundary(fit)

    def posterior_high(x):
        lo = fit.weights[0] * scipy.stats.norm.pdf(x, fit.means[0], fit.stds[0])
        hi = fit.weights[1] * scipy.stats.norm.pdf(x, fit.means[1], fit.stds[1])
        return hi / (lo + hi)

    assert posterior_high(boundary) == pytest.approx(0.5, abs=1e-9)
    assert 0.0 < boundary < 1.0


def test_degenerate_and_bad_inputs():
    for method in ("uniform", "two_means", "kmeans", "gmm"):
        assert binarise_threshold([0.2, 0.2, 0.2], method) == 0.2  # nobody gets a keep vote
        assert binarise_threshold([0.5], method) == 0.5
    with pytest.raises(ValueError, match="NaN"):
        two_means_threshold([0.1, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        gmm_threshold([])
    with pytest.raises(ValueError, match="one of"):
        binarise_threshold([0.1, 0.2], "median")
    with pytest.raises(ValueError, match="temperature"):
        uniform_weight_threshold([0.1, 0.2], -1.0)


def test_votes_needed():
    n = np.array([1, 2, 3, 4, 10])
    assert votes_needed(n, None).tolist() == [1, 2, 2, 3, 6]  # strict majority
    assert votes_needed(n, 2).tolist() == [2, 2, 2, 2, 2]
    assert votes_needed(n, 0.5).tolist() == [1, 1, 2, 2, 5]
    assert votes_needed(n, 0.3).tolist() == [1, 1, 1, 2, 3]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="min_votes"):
            votes_needed(n, bad)


def synthetic_scores(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(30)]
    quality = rng.normal(size=len(docs))  # good documents score high at every step
    rows = [
        (doc, step, float(q + rng.normal(0, 0.6)))
        for step in ("s100", "s200", "s300")
        for doc, q in zip(docs, quality, strict=True)
    ]
    frame = pd.DataFrame(rows, columns=["doc_id", "checkpoint", "score"])
    frame.loc[(frame.doc_id == "d3") & (frame.checkpoint == "s200"), "score"] = None  # failed
    frame.loc[frame.doc_id == "d4", "score"] = None  # failed everywhere
    return frame


@pytest.mark.parametrize("method", ["uniform", "two_means", "gmm"])
@pytest.mark.parametrize("min_votes", [None, 1, 0.6])
def test_aggregate_matches_a_loop_over_checkpoints_and_documents(method, min_votes):
    frame = synthetic_scores()
    got = aggregate_checkpoint_scores(frame, method=method, min_votes=min_votes,
                                      temperature=0.5).set_index("doc_id")
    vote = {}  # (doc_id, checkpoint) -> keep vote, computed per checkpoint from its valid scores
    for _, group in frame.dropna(subset=["score"]).groupby("checkpoint"):
        values = group["score"].to_numpy()
        if method == "uniform":  # the definition: softmax weight above the uniform 1/B
            keep = scipy.special.softmax(values / 0.5) > 1 / values.size
        else:
            keep = values > binarise_threshold(values, method)
        vote.update(zip(zip(group.doc_id, group.checkpoint, strict=True), keep, strict=True))
    for doc, rows in frame.groupby("doc_id"):
        rows = rows.dropna(subset=["score"])
        votes = sum(int(vote[(doc, step)]) for step in rows.checkpoint)
        n = len(rows)
        row = got.loc[doc]
        assert row.n_checkpoints == n and row.mimic_votes == votes
        if n == 0:
            assert pd.isna(row.mimic_mean) and pd.isna(row.mimic_keep)
            continue
        needed = n // 2 + 1 if min_votes is None else (
            min_votes if isinstance(min_votes, int) else math.ceil(min_votes * n - 1e-9))
        assert bool(row.mimic_keep) == (votes >= needed)
        assert row.mimic_mean == pytest.approx(rows.score.mean(), rel=1e-12)
    assert len(got) == frame.doc_id.nunique()
    assert 0 < got.mimic_keep.sum() < len(got) - 1


def test_aggregate_rejects_duplicates_and_missing_columns():
    frame = synthetic_scores()
    with pytest.raises(ValueError, match="unique"):
        aggregate_checkpoint_scores(pd.concat([frame, frame.iloc[:1]]))
    with pytest.raises(ValueError, match="checkpoint"):
        aggregate_checkpoint_scores(frame.drop(columns="checkpoint"))


def test_two_means_beats_every_other_cut_on_sse():
    values = np.array([0.0, 0.1, 0.15, 0.9, 1.0, 3.0])
    keep = values > two_means_threshold(values)

    def sse(mask):
        return sum(((values[m] - values[m].mean()) ** 2).sum() for m in (mask, ~mask))

    for k in range(1, values.size):
        other = np.arange(values.size) >= k
        assert sse(keep) <= sse(other) + 1e-15
    assert list(itertools.compress(values, keep)) == [3.0]


def test_documents_without_any_score_keep_a_row():
    frame = pd.DataFrame({"doc_id": ["a", "b"], "checkpoint": ["s1", "s1"], "score": [None, None]})
    got = aggregate_checkpoint_scores(frame)
    assert got.doc_id.tolist() == ["a", "b"] and (got.n_checkpoints == 0).all()
    assert got.mimic_keep.isna().all() and got.mimic_mean.isna().all()
