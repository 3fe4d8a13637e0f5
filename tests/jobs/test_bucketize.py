import numpy as np
import pytest

from jobs.bucketize import assign_buckets, mass_thresholds
from jobs.core.config import BucketizeSettings


def brute_force_bucket(scores, masses, n, higher):
    """Rank best first, walk the cumulative mass, the bucket is floor(mass before / share)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i] if higher else scores[i])
    total = sum(masses)
    buckets, before = {}, 0.0
    for i in order:
        buckets[i] = min(int(before / total * n + 1e-9), n - 1)
        before += masses[i]
    return buckets


@pytest.mark.parametrize("higher", [False, True])
def test_thresholds_split_character_mass(higher):
    rng = np.random.default_rng(0)
    scores = rng.normal(size=400)
    masses = rng.integers(1, 50, size=400).astype(float)
    thresholds = mass_thresholds(scores, masses, [k / 10 for k in range(1, 10)], higher)
    expected = brute_force_bucket(list(scores), list(masses), 10, higher)
    for i, s in enumerate(scores):
        behind = sum((s < t) if higher else (s > t) for t in thresholds)
        assert abs(behind - expected[i]) <= 1  # a document straddling a boundary may go either way
    shares = np.zeros(10)
    for i, s in enumerate(scores):
        shares[sum((s < t) if higher else (s > t) for t in thresholds)] += masses[i]
    assert np.all(np.abs(shares / masses.sum() - 0.1) < 0.03)


def test_assign_buckets_on_spark(spark):
    rows = [(f"d{i}", float(i), 10) for i in range(100)]
    df = spark.createDataFrame(rows, "doc_id string, score double, n_chars long")
    settings = BucketizeSettings(score_column="score", direction="lower_is_better", n_buckets=4,
                                 keep_top_fraction=0.2)
    curated, info = assign_buckets(df, settings)
    got = {r.doc_id: (r.quality_bucket, r.selected) for r in curated.collect()}
    assert len(info["thresholds"]) == 3
    for i in range(100):
        assert got[f"d{i}"][0] == f"q{min(i // 25, 3):02d}"
        assert got[f"d{i}"][1] == (i < 20)
    higher = BucketizeSettings(score_column="score", direction="higher_is_better", n_buckets=4)
    flipped = {r.doc_id: r.quality_bucket for r in assign_buckets(df, higher)[0].collect()}
    assert flipped["d99"] == "q00" and flipped["d0"] == "q03"


def test_empty_sample_is_a_clear_error():
    with pytest.raises(ValueError, match="no scored documents"):
        mass_thresholds(np.array([]), np.array([]), [0.5], False)
