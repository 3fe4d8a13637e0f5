"""Turning mimic scores from several checkpoints into one keep/drop filter (METHODS.md §5).

Per checkpoint the scores are binarised by a threshold (keep when score > threshold):

- "uniform": keep when the document's online weight w_i = softmax(m / T)_i beats the uniform
  weight 1/B. The batch is the checkpoint's whole set of scored documents (deterministic, no
  arbitrary grouping), so w_i > 1/n  ⇔  m_i > T · (logsumexp(m / T) − ln n). This threshold is a
  soft maximum: it tends to the mean as T grows and to the maximum as T shrinks.
- "two_means" (alias "kmeans"): the exact 1-D 2-means split (optimal over all cut points of
  the sorted scores); the threshold is the midpoint of the two centroids.
- "gmm": a 2-component 1-D Gaussian mixture fitted by EM (initialised from the 2-means split);
  the threshold is where the high component's posterior crosses 0.5 between the two means,
  clamped to [mean_low, mean_high] when one component dominates that whole interval.

A checkpoint whose scores are all equal carries no preference: its threshold is that value, so
none of its documents gets a keep vote. Votes are then combined per document: keep when the keep
votes reach `min_votes` (a count, or a fraction of the document's checkpoints), or, with
`min_votes=None`, a strict majority of the checkpoints the document has a score at. The mean
score over those checkpoints is kept as a ranking column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

BINARISE_METHODS = ("uniform", "two_means", "gmm")
# The config calls 2-means "kmeans".
METHOD_ALIASES = {"kmeans": "two_means"}
FRACTION_EPSILON = 1e-9


def _finite_scores(scores: object) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("scores must be a non-empty 1-D array")
    if not np.isfinite(values).all():
        raise ValueError("scores contain NaN or infinite values; drop failed rows first")
    return values


def uniform_weight_threshold(scores: object, temperature: float = 1.0) -> float:
    """T · (logsumexp(m / T) − ln n): scores above it have softmax weight > 1/n."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    values = _finite_scores(scores)
    top = values.max()
    if top == values.min():
        return float(top)
    scaled = (values - top) / temperature
    return float(top + temperature * (math.log(np.exp(scaled).sum()) - math.log(values.size)))


def _best_two_means_split(sorted_values: np.ndarray) -> int:
    """k such that sorted[:k] / sorted[k:] minimises the within-cluster sum of squares."""
    n = sorted_values.size
    sums = np.cumsum(sorted_values)
    squares = np.cumsum(sorted_values**2)
    k = np.arange(1, n)
    left_sse = squares[k - 1] - sums[k - 1] ** 2 / k
    right_sum = sums[-1] - sums[k - 1]
    right_sse = (squares[-1] - squares[k - 1]) - right_sum**2 / (n - k)
    return int(k[np.argmin(left_sse + right_sse)])


def two_means_threshold(scores: object) -> float:
    values = np.sort(_finite_scores(scores))
    if values[0] == values[-1]:
        return float(values[0])
    cut = _best_two_means_split(values)
    return float((values[:cut].mean() + values[cut:].mean()) / 2)


@dataclass(frozen=True)
class TwoGaussians:
    """A 1-D mixture; index 0 is the low-mean component, 1 the high-mean one."""

    weights: tuple[float, float]
    means: tuple[float, float]
    stds: tuple[float, float]

    def log_likelihood(self, values: np.ndarray) -> float:
        return float(np.logaddexp(*self._log_joint(values)).sum())

    def _log_joint(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, mu, sd = self.weights, self.means, self.stds
        return tuple(
            math.log(w[j]) - math.log(sd[j]) - 0.5 * math.log(2 * math.pi)
            - 0.5 * ((values - mu[j]) / sd[j]) ** 2
            for j in (0, 1)
        )


def fit_two_gaussians(scores: object, *, max_iter: int = 500, tol: float = 1e-10) -> TwoGaussians:
    """EM for a 2-component Gaussian mixture, started from the exact 2-means split."""
    values = np.sort(_finite_scores(scores))
    if values.size < 2 or values[0] == values[-1]:
        raise ValueError("a 2-component mixture needs at least two distinct scores")
    # Variances are floored so a component cannot collapse onto one repeated score.
    var_floor = 1e-6 * values.var()
    cut = _best_two_means_split(values)
    groups = (values[:cut], values[cut:])
    weights = np.array([g.size / values.size for g in groups])
    means = np.array([g.mean() for g in groups])
    variances = np.maximum(np.array([g.var() for g in groups]), var_floor)
    previous = -np.inf
    for _ in range(max_iter):
        model = TwoGaussians(tuple(weights), tuple(means), tuple(np.sqrt(variances)))
        log_low, log_high = model._log_joint(values)
        log_total = np.logaddexp(log_low, log_high)
        log_likelihood = float(log_total.sum())
        resp = np.stack([np.exp(log_low - log_total), np.exp(log_high - log_total)])
        mass = resp.sum(axis=1)
        if (mass <= 0).any():
            break  # one component lost every point; keep the last proper fit
        weights = mass / values.size
        means = (resp @ values) / mass
        variances = np.maximum((resp * (values - means[:, None]) ** 2).sum(axis=1) / mass, var_floor)
        if log_likelihood - previous <= tol * abs(log_likelihood):
            break
        previous = log_likelihood
    order = np.argsort(means)
    return TwoGaussians(
        tuple(weights[order]), tuple(means[order]), tuple(np.sqrt(variances[order]))
    )


def gmm_boundary(model: TwoGaussians) -> float:
    """The posterior-0.5 crossing between the two means (clamped to them)."""
    (w_lo, w_hi), (mu_lo, mu_hi), (sd_lo, sd_hi) = model.weights, model.means, model.stds
    # log p(high, x) − log p(low, x) = a x² + b x + c
    a = 0.5 / sd_lo**2 - 0.5 / sd_hi**2
    b = mu_hi / sd_hi**2 - mu_lo / sd_lo**2
    c = 0.5 * mu_lo**2 / sd_lo**2 - 0.5 * mu_hi**2 / sd_hi**2 + math.log(
        (w_hi * sd_lo) / (w_lo * sd_hi)
    )

    def log_ratio(x: float) -> float:
        return a * x * x + b * x + c

    at_low, at_high = log_ratio(mu_lo), log_ratio(mu_hi)
    if at_low >= 0:
        return float(mu_lo)  # the high component dominates the whole interval
    if at_high <= 0:
        return float(mu_hi)  # the low component dominates the whole interval
    # Exactly one root lies in (mu_lo, mu_hi) since the sign changes; bisection avoids the
    # cancellation the quadratic formula suffers when a ≈ 0 (near-equal variances).
    lo, hi = mu_lo, mu_hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if log_ratio(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, abs(mid)):
            break
    return float(0.5 * (lo + hi))


def gmm_threshold(scores: object) -> float:
    values = _finite_scores(scores)
    if values.min() == values.max():
        return float(values[0])
    return gmm_boundary(fit_two_gaussians(values))


def binarise_threshold(scores: object, method: str, *, temperature: float = 1.0) -> float:
    """The per-checkpoint threshold; a document gets a keep vote when its score is above it."""
    method = METHOD_ALIASES.get(method, method)
    if method == "uniform":
        return uniform_weight_threshold(scores, temperature)
    if method == "two_means":
        return two_means_threshold(scores)
    if method == "gmm":
        return gmm_threshold(scores)
    raise ValueError(f"binarise method must be one of {BINARISE_METHODS}, got {method!r}")


def votes_needed(n_checkpoints: object, min_votes: int | float | None) -> np.ndarray:
    """Keep votes a document needs out of its `n_checkpoints` scored checkpoints.

    None: a strict majority. An int >= 1: that many votes. A float in [0, 1]: that fraction of
    the document's checkpoints, rounded up (0.5 of 4 needs 2).
    """
    counts = np.asarray(n_checkpoints, dtype=np.int64)
    if min_votes is None:
        return counts // 2 + 1
    if isinstance(min_votes, bool):
        raise ValueError(f"min_votes must be an int, a fraction or None, got {min_votes!r}")
    if isinstance(min_votes, int | np.integer):
        if min_votes < 1:
            raise ValueError(f"min_votes as a count must be >= 1, got {min_votes}")
        return np.full(counts.shape, int(min_votes))
    if isinstance(min_votes, float) and 0.0 <= min_votes <= 1.0:
        # The epsilon keeps 0.3 * 10 (= 3.0000000000000004) at 3 votes.
        return np.ceil(min_votes * counts - FRACTION_EPSILON).astype(np.int64)
    raise ValueError(f"min_votes as a fraction must be in [0, 1], got {min_votes!r}")


def aggregate_checkpoint_scores(
    scores: pd.DataFrame,
    *,
    method: str = "uniform",
    min_votes: int | float | None = None,
    temperature: float = 1.0,
) -> pd.DataFrame:
    """(doc_id, checkpoint, score) rows -> doc_id, mimic_mean, mimic_keep, mimic_votes, n_checkpoints.

    Rows with a null score (failed documents) cast no vote; a document without any score keeps
    a row with n_checkpoints = 0 and null mean/keep, so nothing disappears silently.
    """
    missing = {"doc_id", "checkpoint", "score"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores is missing column(s) {sorted(missing)}")
    duplicated = scores.duplicated(["doc_id", "checkpoint"])
    if duplicated.any():
        first = scores.loc[duplicated, ["doc_id", "checkpoint"]].iloc[0].tolist()
        raise ValueError(f"(doc_id, checkpoint) rows must be unique; e.g. {first} repeats")
    valid = scores.loc[scores["score"].notna(), ["doc_id", "checkpoint", "score"]].copy()
    valid["score"] = valid["score"].astype(np.float64)
    thresholds = {
        checkpoint: binarise_threshold(group.to_numpy(), method, temperature=temperature)
        for checkpoint, group in valid.groupby("checkpoint", sort=True)["score"]
    }
    valid["vote"] = valid["score"] > valid["checkpoint"].map(thresholds)
    per_doc = valid.groupby("doc_id", sort=True).agg(
        mimic_mean=("score", "mean"), mimic_votes=("vote", "sum"), n_checkpoints=("score", "size")
    )
    all_docs = pd.Index(scores["doc_id"].drop_duplicates(), name="doc_id")
    result = per_doc.reindex(all_docs).reset_index()
    n_checkpoints = result["n_checkpoints"].fillna(0).astype(np.int64)
    votes = result["mimic_votes"].fillna(0).astype(np.int64)
    keep = votes >= votes_needed(n_checkpoints.to_numpy(), min_votes)
    return pd.DataFrame(
        {
            "doc_id": result["doc_id"],
            "mimic_mean": result["mimic_mean"].astype("Float64"),
            "mimic_keep": pd.array(keep.where(n_checkpoints > 0, None), dtype="boolean"),
            "mimic_votes": votes,
            "n_checkpoints": n_checkpoints,
        }
    )
