from __future__ import annotations

import math

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from jobs.mixture import PLAN_COLUMNS, plan_mixture, sample_mixture
from jobs.mixture_plots import plot_decayed_utility, plot_error_vs_compute
from jobs.scaling_law import LawParams, PoolParams, frontier

TMARS = LawParams(
    0.025,
    0.1,
    {
        "q00": PoolParams(-0.16, 6.7272727),
        "q01": PoolParams(-0.125, 8.5454545),
        "q02": PoolParams(-0.10, 5.2727273),
        "q03": PoolParams(-0.085, 2.2727273),
    },
)
TMARS_SIZES = pd.DataFrame({"quality_bucket": ["q03", "q01", "q00", "q02"], "size": 12.8e6})


def textbook_error(n, sizes, bs, taus, a, d):
    """METHODS.md §4, pass by pass, written independently of the package."""
    union = sum(sizes)

    def b_eff(j):
        return sum(
            s / union * b * 0.5 ** (j / (t * union / s))
            for s, b, t in zip(sizes, bs, taus, strict=True)
        )

    error = (a * min(union, n) / 1e5) ** b_eff(0) + d
    for j in range(1, math.floor(n / union) + 1):
        error *= (min((j + 1) * union, n) / (j * union)) ** b_eff(j)
    return error


@pytest.mark.parametrize(("budget", "k"), [(32e6, 1), (640e6, 2)])
def test_plan_picks_the_golden_k_and_lists_every_top_k_error(budget, k):
    plan = plan_mixture(TMARS_SIZES, TMARS, budget, unit="samples")
    table = plan.table
    assert list(table.columns) == PLAN_COLUMNS
    assert list(table["quality_bucket"]) == ["q00", "q01", "q02", "q03"]  # by b, most useful first
    assert list(table["rank"]) == [1, 2, 3, 4]
    expected = [
        textbook_error(
            budget,
            [12.8e6] * r,
            [TMARS.pools[q].b for q in table["quality_bucket"][:r]],
            [TMARS.pools[q].tau for q in table["quality_bucket"][:r]],
            0.025,
            0.1,
        )
        for r in range(1, 5)
    ]
    np.testing.assert_allclose(table["predicted_error_top_k"], expected, rtol=1e-10)
    assert plan.chosen_k == k == int(np.argmin(expected)) + 1
    assert list(table["selected"]) == [r <= k for r in range(1, 5)]
    assert plan.repeat_factor == pytest.approx(budget / (k * 12.8e6))
    assert list(table["repeat_factor"]) == [
        plan.repeat_factor if r <= k else 0.0 for r in range(1, 5)
    ]
    assert (table["chosen_k"] == k).all() and (table["budget"] == budget).all()
    assert f"train on the top {k} of 4 bucket(s)" in plan.decision
    assert f"predicted error {expected[k - 1]:.4g}" in plan.decision


def test_plan_with_unequal_sizes_and_refused_buckets():
    law = LawParams(500.0, 0.05, {"q00": PoolParams(-0.3, 2.0), "q01": PoolParams(-0.2, 3.0)})
    sizes = pd.DataFrame({"quality_bucket": ["q00", "q01", "q02"], "size": [100.0, 400.0, 50.0]})
    plan = plan_mixture(sizes, law, 5_000, unit="documents", excluded={"q02": "error rises"})
    table = plan.table.set_index("quality_bucket")
    assert plan.chosen_k == 2
    both = textbook_error(5_000, [100.0, 400.0], [-0.3, -0.2], [2.0, 3.0], 500.0, 0.05)
    alone = textbook_error(5_000, [100.0], [-0.3], [2.0], 500.0, 0.05)
    assert table.loc["q01", "predicted_error_top_k"] == pytest.approx(both, rel=1e-10)
    assert table.loc["q00", "predicted_error_top_k"] == pytest.approx(alone, rel=1e-10)
    assert plan.repeat_factor == pytest.approx(5_000 / 500.0)
    assert not table.loc["q02", "selected"] and pd.isna(table.loc["q02", "rank"])
    assert table.loc["q02", "note"] == "excluded: error rises"
    assert "Not considered (fit refused): q02" in plan.decision


def test_plan_rejects_bad_inputs_by_name():
    with pytest.raises(ValueError, match=r"no fitted \(b, tau\) for bucket\(s\) \['q07'\]"):
        plan_mixture(pd.DataFrame({"quality_bucket": ["q07"], "size": [5]}), TMARS, 100.0)
    with pytest.raises(ValueError, match=r"bucket\(s\) \['q00'\] more than once"):
        plan_mixture(pd.DataFrame({"quality_bucket": ["q00", "q00"], "size": [5, 6]}), TMARS, 1e3)
    with pytest.raises(
        ValueError, match=r"size must be a number > 0; bad for bucket\(s\) \['q01'\]"
    ):
        plan_mixture(pd.DataFrame({"quality_bucket": ["q00", "q01"], "size": [5, 0]}), TMARS, 1e3)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['size'\]"):
        plan_mixture(pd.DataFrame({"quality_bucket": ["q00"]}), TMARS, 1e3)
    with pytest.raises(ValueError, match="budget must be a finite number > 0"):
        plan_mixture(TMARS_SIZES, TMARS, float("nan"))


def curated_frame(spark, per_bucket):
    rows = [(f"doc-{b}-{i:05d}", f"q0{b}") for b, n in enumerate(per_bucket) for i in range(n)]
    return spark.createDataFrame(rows, "doc_id string, quality_bucket string")


def test_sample_mixture_matches_the_plan(spark):
    sizes = [600, 900, 500]
    law = LawParams(
        500.0,
        0.05,
        {
            "q00": PoolParams(-0.3, 2.0),
            "q01": PoolParams(-0.25, 3.0),
            "q02": PoolParams(-0.05, 3.0),
        },
    )
    size_frame = pd.DataFrame({"quality_bucket": ["q00", "q01", "q02"], "size": sizes})
    budget = 3_550.0
    plan = plan_mixture(size_frame, law, budget, unit="documents")
    assert plan.chosen_k == 2  # q02 is not worth its dilution at this budget
    curated = curated_frame(spark, sizes)
    mixture = sample_mixture(curated, plan, seed=7).toPandas()
    r = budget / 1_500
    assert set(mixture["quality_bucket"]) == {"q00", "q01"}
    assert len(mixture) == 1_500 and mixture["doc_id"].is_unique  # floor(r) >= 1: every doc
    assert set(mixture["repeats"]) == {math.floor(r), math.floor(r) + 1}
    # one extra repeat for a hash-chosen fraction frac(r) of the documents: total ~ budget
    extra = (mixture["repeats"] == math.floor(r) + 1).sum()
    sd = math.sqrt(1_500 * (r % 1) * (1 - r % 1))
    assert abs(extra - 1_500 * (r % 1)) < 4 * sd
    assert abs(mixture["repeats"].sum() - budget) < 4 * sd
    for name, group in mixture.groupby("quality_bucket"):
        assert group["repeats"].mean() == pytest.approx(r, abs=0.15), name

    again = sample_mixture(curated, plan.table, seed=7).toPandas()
    pd.testing.assert_frame_equal(
        mixture.sort_values("doc_id").reset_index(drop=True),
        again.sort_values("doc_id").reset_index(drop=True),
    )
    other = sample_mixture(curated, plan, seed=8).toPandas()
    assert set(other.loc[other["repeats"] > 2, "doc_id"]) != set(
        mixture.loc[mixture["repeats"] > 2, "doc_id"]
    )


def test_sample_mixture_below_one_pass_keeps_a_seeded_subset(spark):
    plan = plan_mixture(
        pd.DataFrame({"quality_bucket": ["q00"], "size": [2_000]}),
        LawParams(500.0, 0.05, {"q00": PoolParams(-0.3, 2.0)}),
        500.0,
    )
    assert plan.repeat_factor == pytest.approx(0.25)
    mixture = sample_mixture(curated_frame(spark, [2_000]), plan, seed=1).toPandas()
    assert (mixture["repeats"] == 1).all()
    assert abs(len(mixture) - 500) < 4 * math.sqrt(2_000 * 0.25 * 0.75)
    with pytest.raises(ValueError, match=r"curated lacks column\(s\) \['quality_bucket'\]"):
        sample_mixture(curated_frame(spark, [3]).drop("quality_bucket"), plan)
    with pytest.raises(ValueError, match="plan selects no bucket"):
        sample_mixture(curated_frame(spark, [3]), plan.table.assign(selected=False))


def test_plots_write_pngs(tmp_path):
    sizes = {name: 12.8e6 for name in TMARS.pools}
    front = frontier(np.geomspace(1e7, 1e10, 30), sizes, TMARS)
    error_png = plot_error_vs_compute(front, tmp_path / "plots" / "error.png", budget=640e6)
    utility_png = plot_decayed_utility(TMARS, tmp_path / "utility.png", max_repetitions=12)
    for path in (error_png, utility_png):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        image = mpimg.imread(path)
        assert image.shape[0] > 200 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas


def test_mixture_settings_reach_the_fit_and_its_refusal_names_the_config_keys(tmp_path):
    from jobs.core.config import MixtureSettings
    from jobs.mixture import fit_observations
    from jobs.scaling_fit import FitRefused
    from tests.jobs.test_scaling_fit import curve

    path = tmp_path / "obs.csv"
    observations = pd.DataFrame(curve("q00", PoolParams(-0.2, 3.0), 50.0, 0.3))
    observations.to_csv(path, index=False)
    widest = f"{0.99 * observations['error'].min():.4g}"  # just below the smallest error
    settings = MixtureSettings(observations=str(path), compute_budget=1e4, a=50.0,
                               d_range=(0.0, 0.1))
    with pytest.raises(FitRefused) as refused:
        fit_observations(settings)
    assert f"set mixture.d_range: [0, {widest}]" in refused.value.reasons["d"]
    assert refused.value.reasons["d"].endswith("or fix mixture.d")
    settings.d_range = (0.0, 0.29)
    with pytest.raises(FitRefused, match=r"d = 0.29 is on the edge"):
        fit_observations(settings)
    settings.d_range = (0.0, 0.5)
    assert fit_observations(settings).law.d == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match="d_range needs 0 <= low < high"):
        MixtureSettings(compute_budget=1e4, d_range=(0.2, 0.1))
