from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from jobs.scaling_law import (
    LawParams,
    PoolParams,
    best_k,
    decayed_utility,
    frontier,
    law_from_frame,
    law_to_frame,
    pool_error,
    rank_pools,
    topk_errors,
    union_error,
)

# Published T-MARS ImageNet fit (METHODS.md §4).
TMARS = LawParams(
    a=0.025,
    d=0.1,
    pools={
        "q00": PoolParams(-0.16, 6.7272727),
        "q01": PoolParams(-0.125, 8.5454545),
        "q02": PoolParams(-0.10, 5.2727273),
        "q03": PoolParams(-0.085, 2.2727273),
    },
)
TMARS_SIZES = {name: 12.8e6 for name in TMARS.pools}
GOLDEN_ACCURACY = {  # k -> (accuracy % at 32M, at 640M)
    1: (18.2471, 31.1758),
    2: (15.8361, 38.5524),
    3: (13.4221, 37.5648),
    4: (11.6774, 35.1359),
}


def textbook_utility_error(n, sizes, bs, taus, a, d):
    """METHODS.md §4 written out pass by pass; unequal pools use the documented generalisation."""
    union = sum(sizes)
    epochs = math.floor(n / union)

    def b_eff(j):
        return sum(
            (size / union) * b * 0.5 ** (j / (tau * union / size))
            for size, b, tau in zip(sizes, bs, taus, strict=True)
        )

    error = (a * min(union, n) / 1e5) ** b_eff(0) + d
    for j in range(1, epochs + 1):
        s_j = a * min((j + 1) * union, n) / 1e5
        s_prev = a * j * union / 1e5
        error *= (s_j / s_prev) ** b_eff(j)
    return error


def textbook_data_error(n, sizes, bs, taus, a, d):
    """The authors' effective-data aggregation, pass by pass, with size-weighted shares."""
    union = sum(sizes)
    epochs = int(n // union)
    shares = [size / union for size in sizes]
    deltas = [
        [0.5 ** (j / (tau * union / size)) for j in range(epochs + 1)]
        for size, tau in zip(sizes, taus, strict=True)
    ]
    error = None
    effective_prev = 0.0
    for j in range(epochs + 1):
        weight = sum(w * dl[j] for w, dl in zip(shares, deltas, strict=True))
        b_j = sum(w * b * dl[j] for w, b, dl in zip(shares, bs, deltas, strict=True)) / weight
        new = a * (min((j + 1) * union, n) - j * union) / 1e5
        effective = effective_prev + new * weight
        error = effective**b_j if j == 0 else error * (effective / effective_prev) ** b_j
        effective_prev = effective
    return error + d


def test_golden_table_to_1e_3():
    ranked, errors = topk_errors([32e6, 640e6], TMARS_SIZES, TMARS)
    assert ranked == ["q00", "q01", "q02", "q03"]
    for k, expected in GOLDEN_ACCURACY.items():
        accuracy = 100 * (1 - errors[k - 1])
        np.testing.assert_allclose(accuracy, expected, atol=1e-3)
    assert best_k(32e6, TMARS_SIZES, TMARS)[0] == 1
    assert best_k(640e6, TMARS_SIZES, TMARS)[0] == 2


@pytest.mark.parametrize("variant", ["effective_utility", "effective_data"])
def test_union_matches_textbook_loop_for_unequal_pools(variant):
    textbook = textbook_utility_error if variant == "effective_utility" else textbook_data_error
    rng = np.random.default_rng(7)
    for _ in range(20):
        k = int(rng.integers(1, 5))
        sizes = list(rng.uniform(500, 5000, k))
        bs = list(rng.uniform(-0.45, -0.02, k))
        taus = list(rng.uniform(1, 10, k))
        a, d = float(rng.uniform(1, 100)), float(rng.uniform(0, 0.3))
        union = sum(sizes)
        # inside the first pass, exactly on pass boundaries, and between them
        budgets = [0.3 * union, union, 2 * union, 3.7 * union, 12 * union + 1, 40.5 * union]
        pools = [PoolParams(b, t) for b, t in zip(bs, taus, strict=True)]
        ours = union_error(budgets, sizes, pools, a, d, variant)
        expected = [textbook(n, sizes, bs, taus, a, d) for n in budgets]
        np.testing.assert_allclose(ours, expected, rtol=1e-10)


def test_effective_data_single_pool_is_effective_samples_to_the_b():
    pool, n_pool, a, d = PoolParams(-0.2, 3.0), 1000.0, 50.0, 0.05
    for n in [400.0, 1000.0, 3500.0, 9000.0]:
        passes = np.arange(int(n // n_pool) + 1)
        new = np.minimum((passes + 1) * n_pool, n) - passes * n_pool
        effective = a * float(np.sum(new * 0.5 ** (passes / pool.tau))) / 1e5
        got = pool_error(n, n_pool, pool, a, d, "effective_data")[0]
        assert got == pytest.approx(effective**pool.b + d, rel=1e-12)


def test_equal_pools_use_the_published_union_rule():
    # tau_hat = k * tau and b_eff(j) = mean_i b_i 0.5 ** (j / (k tau_i)), written independently.
    k, size, n = 3, 1000.0, 7300.0
    bs, taus = [-0.3, -0.2, -0.1], [2.0, 5.0, 9.0]
    union = k * size
    epochs = int(n // union)

    def b_eff(j):
        return np.mean([b * 0.5 ** (j / (k * t)) for b, t in zip(bs, taus, strict=True)])

    expected = (2.0 * union / 1e5) ** b_eff(0) + 0.1
    for j in range(1, epochs + 1):
        expected *= (min((j + 1) * union, n) / (j * union)) ** b_eff(j)
    pools = [PoolParams(b, t) for b, t in zip(bs, taus, strict=True)]
    assert union_error(n, [size] * k, pools, 2.0, 0.1)[0] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("variant", ["effective_utility", "effective_data"])
def test_more_samples_never_raise_error_and_repetition_never_beats_fresh_data(variant):
    rng = np.random.default_rng(3)
    budgets = np.linspace(50, 60_000, 3000)
    for _ in range(10):
        pool = PoolParams(float(rng.uniform(-0.5, -0.01)), float(rng.uniform(1, 10)))
        a, d = float(rng.uniform(1, 1000)), float(rng.uniform(0, 0.5))
        small = pool_error(budgets, 1_000, pool, a, d, variant)
        assert np.all(np.diff(small) <= 1e-12)
        # The same budget on a 4x larger pool repeats less and is never worse. With d = 0 only:
        # the published utility law multiplies d by the repetition factors too (METHODS.md §4),
        # so there repeated data also shrinks the floor.
        small = pool_error(budgets, 1_000, pool, a, 0.0, variant)
        large = pool_error(budgets, 4_000, pool, a, 0.0, variant)
        assert np.all(large <= small * (1 + 1e-12))


def test_more_repetitions_never_raise_a_buckets_utility():
    for b, tau in [(-0.5, 1.0), (-0.16, 6.7), (-0.005, 10.0)]:
        utility = -decayed_utility(PoolParams(b, tau), np.arange(0, 60))
        assert utility[0] == pytest.approx(-b)
        assert np.all(np.diff(utility) < 0)
        # the half-life: after tau passes half of the utility is left
        assert -decayed_utility(PoolParams(b, tau), [tau])[0] == pytest.approx(-b / 2)


def test_frontier_is_the_lower_envelope_of_brute_force_top_k_errors():
    sizes = {"q00": 1_000.0, "q01": 3_000.0, "q02": 2_000.0}
    pools = {
        "q00": PoolParams(-0.3, 2.0),
        "q01": PoolParams(-0.2, 4.0),
        "q02": PoolParams(-0.25, 3),
    }
    law = LawParams(500.0, 0.1, pools)
    budgets = np.geomspace(200, 1e6, 40)  # from a * n / 1e5 = 1, where the power law starts < 1
    front = frontier(budgets, sizes, law)
    assert front.ranked == ["q00", "q02", "q01"] == rank_pools(law.pools)
    for i, n in enumerate(budgets):
        by_k = []
        for k in range(1, 4):
            names = front.ranked[:k]
            by_k.append(
                textbook_utility_error(
                    n,
                    [sizes[x] for x in names],
                    [law.pools[x].b for x in names],
                    [law.pools[x].tau for x in names],
                    law.a,
                    law.d,
                )
            )
        assert front.best_k[i] == int(np.argmin(by_k)) + 1
        assert front.best_error[i] == pytest.approx(min(by_k), rel=1e-10)
    # small budgets pick only the best bucket, large budgets need more data
    assert front.best_k[0] == 1 and front.best_k[-1] == 3


def test_law_frame_round_trip_and_bad_tables():
    frame = law_to_frame(TMARS)
    assert list(frame.columns) == ["bucket", "b", "tau", "a", "d"]
    assert law_from_frame(frame) == TMARS
    broken = frame.assign(a=[0.025, 0.025, 0.03, 0.025])
    with pytest.raises(ValueError, match="'a' differs"):
        law_from_frame(broken)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['tau'\]"):
        law_from_frame(frame.drop(columns="tau"))
    with pytest.raises(ValueError, match="more than once"):
        law_from_frame(pd.concat([frame, frame.iloc[:1]]))


def test_bad_inputs_name_the_problem():
    pool = PoolParams(-0.1, 2.0)
    with pytest.raises(ValueError, match="samples_seen must be finite and > 0"):
        pool_error([0.0], 10.0, pool, 1.0, 0.0)
    with pytest.raises(ValueError, match="pool sizes must be finite and > 0"):
        pool_error([5.0], -1.0, pool, 1.0, 0.0)
    with pytest.raises(ValueError, match="over 1,000,000 passes .* share one unit"):
        pool_error([1e9], 10.0, pool, 1.0, 0.0)
    with pytest.raises(ValueError, match="variant must be one of"):
        pool_error([5.0], 10.0, pool, 1.0, 0.0, "chinchilla")
    with pytest.raises(ValueError, match="PoolParams.b must be a finite negative"):
        PoolParams(0.1, 2.0)
    with pytest.raises(ValueError, match="PoolParams.tau must be"):
        PoolParams(-0.1, 0.0)
    with pytest.raises(ValueError, match="LawParams.a must be"):
        LawParams(0.0, 0.1)
    with pytest.raises(ValueError, match=r"no fitted \(b, tau\) for bucket\(s\) \['q09'\]"):
        topk_errors([10.0], {"q09": 5.0}, TMARS)
