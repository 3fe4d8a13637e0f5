from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from deltalake import write_deltalake

from jobs.scaling_fit import (
    FitRefused,
    ObservationsError,
    SharedKeys,
    fit_scaling_law,
    load_observations,
)
from jobs.scaling_law import PoolParams, pool_error

B_GRID = np.linspace(-0.5, -0.005, 100)
TAU_GRID = np.linspace(1, 10, 100)
POOL = 1_000.0
EPOCHS = np.array([1.5, 2, 3, 4, 6, 8, 10])


def curve(
    name, pool, a, d, samples=EPOCHS * POOL, noise=0.0, rng=None, variant="effective_utility"
):
    """Textbook single-pool law (independent of the package) with optional multiplicative noise."""
    rows = []
    for n in samples:
        epochs = int(n // POOL)
        b_j = [pool.b * 0.5 ** (j / pool.tau) for j in range(epochs + 1)]
        if variant == "effective_utility":
            error = (a * min(n, POOL) / 1e5) ** b_j[0] + d
            for j in range(1, epochs + 1):
                error *= (min((j + 1) * POOL, n) / (j * POOL)) ** b_j[j]
        else:
            new = [min((j + 1) * POOL, n) - j * POOL for j in range(epochs + 1)]
            effective = sum(x * 0.5 ** (j / pool.tau) for j, x in enumerate(new))
            error = (a * effective / 1e5) ** pool.b + d
        if noise:
            error *= 1 + noise * rng.standard_normal()
        rows.append({"bucket": name, "samples_seen": n, "error": error, "pool_size": POOL})
    return rows


def frame(*curves):
    return pd.DataFrame([row for rows in curves for row in rows])


def test_recovers_grid_parameters_exactly_without_noise():
    truth = {
        "q00": PoolParams(B_GRID[20], TAU_GRID[60]),
        "q01": PoolParams(B_GRID[70], TAU_GRID[25]),
    }
    obs = frame(*(curve(n, p, a=50.0, d=0.1) for n, p in truth.items()))
    result = fit_scaling_law(obs, a=50.0, d=0.1, refine=False)
    assert result.law.pools == truth
    assert result.sse < 1e-20


@pytest.mark.parametrize("variant", ["effective_utility", "effective_data"])
def test_recovers_known_parameters_from_noisy_curves(variant):
    rng = np.random.default_rng(11)
    truth = {
        "q00": PoolParams(-0.31, 2.6),
        "q01": PoolParams(-0.22, 6.3),
        "q02": PoolParams(-0.13, 4.1),
    }
    obs = frame(
        *(curve(n, p, 80.0, 0.08, noise=0.002, rng=rng, variant=variant) for n, p in truth.items())
    )
    result = fit_scaling_law(obs, a=80.0, d=0.08, variant=variant)
    for name, p in truth.items():
        fitted = result.law.pools[name]
        assert fitted.b == pytest.approx(p.b, abs=0.01), name
        # tau is the weakly identified parameter (it moves only the repeated passes)
        assert fitted.tau == pytest.approx(p.tau, rel=0.2), name
    assert sorted(truth, key=lambda n: truth[n].b) == sorted(
        truth, key=lambda n: result.law.pools[n].b
    )
    # residuals are the observations minus the law at the fitted parameters
    for name, rows in result.residuals.groupby("bucket"):
        law = result.law
        predicted = pool_error(rows["samples_seen"], POOL, law.pools[name], law.a, law.d, variant)
        np.testing.assert_allclose(rows["residual"], rows["error"] - predicted, rtol=1e-12)
        report = result.report.set_index("bucket").loc[name]
        assert report["rmse"] == pytest.approx(np.sqrt(np.mean((rows["error"] - predicted) ** 2)))
        assert report["status"] == "fitted" and report["n_points"] == len(EPOCHS)
        assert report["rmse"] < 0.01


def test_sweeps_shared_a_and_d_when_not_fixed():
    truth = {"q00": PoolParams(-0.3, 3.0), "q01": PoolParams(-0.15, 7.0)}
    obs = frame(*(curve(n, p, a=30.0, d=0.12) for n, p in truth.items()))
    result = fit_scaling_law(obs, a_grid=np.geomspace(3, 300, 9), d_grid=np.linspace(0, 0.3, 13))
    assert result.law.a == pytest.approx(30.0, rel=0.05)
    assert result.law.d == pytest.approx(0.12, abs=0.01)
    for name, p in truth.items():
        assert result.law.pools[name].b == pytest.approx(p.b, abs=0.005)
        assert result.law.pools[name].tau == pytest.approx(p.tau, abs=0.3)


def test_refuses_too_few_points_first_pass_only_and_rising_curves():
    good = curve("q00", PoolParams(-0.2, 3.0), 50.0, 0.1)
    few = curve("q01", PoolParams(-0.2, 3.0), 50.0, 0.1, samples=[2_000.0, 4_000.0])
    first_pass = curve("q02", PoolParams(-0.2, 3.0), 50.0, 0.1, samples=[200.0, 500.0, 900.0])
    rising = frame(curve("q03", PoolParams(-0.2, 3.0), 50.0, 0.1))
    rising.loc[rising.index[-1], "error"] = rising["error"].min() * 1.1
    obs = pd.concat([frame(good, few, first_pass), rising], ignore_index=True)
    with pytest.raises(FitRefused) as refused:
        fit_scaling_law(obs, a=50.0, d=0.1)
    reasons = refused.value.reasons
    assert set(reasons) == {"q01", "q02", "q03"}
    assert "2 distinct samples_seen value(s); 3 needed" in reasons["q01"]
    assert "first pass" in reasons["q02"] and "error rises" in reasons["q03"]
    assert "q01" in str(refused.value)

    dropped = fit_scaling_law(obs, a=50.0, d=0.1, on_refusal="drop")
    assert set(dropped.law.pools) == {"q00"}
    report = dropped.report.set_index("bucket")
    assert list(report["status"]) == ["fitted", "refused", "refused", "refused"]
    assert report.loc["q03", "reason"] == reasons["q03"]
    assert np.isnan(report.loc["q01", "b"])


def test_refuses_an_optimum_on_the_grid_edge():
    # tau = 40 epochs: almost no decay inside 10 epochs, so the best tau sits on the upper edge.
    obs = frame(
        curve("q00", PoolParams(-0.2, 3.0), 50.0, 0.1),
        curve("q01", PoolParams(-0.2, 40.0), 50.0, 0.1),
        curve("q02", PoolParams(-0.7, 3.0), 50.0, 0.1),  # b beyond the searched -0.5
    )
    with pytest.raises(FitRefused) as refused:
        fit_scaling_law(obs, a=50.0, d=0.1)
    assert set(refused.value.reasons) == {"q01", "q02"}
    assert refused.value.reasons["q01"].startswith("tau = 10 is on the edge")
    assert refused.value.reasons["q02"].startswith("b = -0.5 is on the edge")
    assert refused.value.reasons["q02"].endswith("; widen b_range")
    assert refused.value.reasons["q01"].endswith("; widen tau_range")
    dropped = fit_scaling_law(obs, a=50.0, d=0.1, on_refusal="drop")
    assert set(dropped.law.pools) == {"q00"}
    assert dropped.law.pools["q00"].tau == pytest.approx(3.0, abs=0.05)


def test_refuses_shared_a_on_the_edge_of_its_sweep():
    obs = frame(curve("q00", PoolParams(-0.2, 3.0), 50.0, 0.1))
    with pytest.raises(FitRefused, match=r"a = 10 is on the edge.*set a_range: \[1, 1e\+04\]"):
        fit_scaling_law(obs, a_grid=[1.0, 3.0, 10.0], d=0.1)
    with pytest.raises(FitRefused, match=r"set mixture.a_range: \[0.1, 1e\+04\] or fix mixture.a"):
        fit_scaling_law(obs, a_range=(100.0, 1e4), d=0.1, keys=MIXTURE_KEYS)


MIXTURE_KEYS = SharedKeys(*(f"mixture.{key}" for key in (
    "a", "a_range", "d", "d_range", "b_range", "tau_range")))


def test_shared_d_on_the_edge_names_the_range_key_and_a_value_to_set():
    obs = frame(curve("q00", PoolParams(-0.2, 3.0), 50.0, 0.3),
                curve("q01", PoolParams(-0.3, 5.0), 50.0, 0.3))
    ceiling = 0.99 * obs["error"].min()
    with pytest.raises(FitRefused) as refused:
        fit_scaling_law(obs, a=50.0, d_range=(0.0, 0.1), keys=MIXTURE_KEYS)
    assert refused.value.reasons["d"] == (
        "d = 0.1 is on the edge of the searched [0, 0.1]; set mixture.d_range: "
        f"[0, {ceiling:.4g}] (d stays below the smallest error, {obs['error'].min():.4g}) "
        "or fix mixture.d"
    )
    # the lower edge of a range that does not start at 0: widen it down to 0
    with pytest.raises(FitRefused, match=r"d = 0.5 is on the edge.*set d_range: \[0, 0.7\]"):
        fit_scaling_law(obs, a=50.0, d_range=(0.5, 0.7))
    # the range suggested by the refusal recovers d
    widened = fit_scaling_law(obs, a=50.0, d_range=(0.0, ceiling))
    assert widened.law.d == pytest.approx(0.3, abs=0.01)


def test_b_close_to_its_search_limit_is_kept_with_a_warning_naming_the_buckets(caplog):
    # 1 and 1.6 grid steps from b_range's lower limit: nearer than 2 steps, not on the edge
    truth = {"q00": PoolParams(B_GRID[1], 3.0), "q01": PoolParams(-0.492, 4.0),
             "q02": PoolParams(-0.2, 3.0)}
    obs = frame(*(curve(n, p, a=50.0, d=0.1) for n, p in truth.items()))
    with caplog.at_level("WARNING", logger="siftlake"):
        result = fit_scaling_law(obs, a=50.0, d=0.1, keys=MIXTURE_KEYS)
    assert set(result.law.pools) == set(truth) and not result.refused
    [warning] = result.warnings
    assert warning.startswith("b of q00, q01 within 0.01 of the mixture.b_range limit -0.5")
    assert "set mixture.b_range: [-1, -0.005]" in warning and "q02" not in warning
    assert warning in caplog.text
    assert fit_scaling_law(frame(curve("q02", truth["q02"], 50.0, 0.1)), a=50.0, d=0.1).warnings == []


def write_csv(tmp_path, text):
    path = tmp_path / "obs.csv"
    path.write_text(text)
    return path


def test_csv_and_delta_sources_load_the_same_rows(tmp_path):
    obs = frame(curve("q00", PoolParams(-0.2, 3.0), 50.0, 0.1))
    csv = tmp_path / "obs.csv"
    obs.to_csv(csv, index=False)
    write_deltalake(str(tmp_path / "delta"), obs)
    from_csv = load_observations(csv)
    from_delta = load_observations(tmp_path / "delta")
    pd.testing.assert_frame_equal(from_csv, from_delta)
    np.testing.assert_allclose(from_csv["error"], obs["error"], rtol=1e-15)
    # pool sizes may come from the curated bucket sizes instead of a column
    no_pool = obs.drop(columns="pool_size")
    assert (load_observations(no_pool, {"q00": 123.0})["pool_size"] == 123.0).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bucket,samples,error\nq00,1,0.5\n", r"obs.csv: missing column\(s\) \['samples_seen'\]"),
        ("bucket,samples_seen,error\n", "obs.csv: no observation rows"),
        (
            "bucket,samples_seen,error,pool_size\nq00,100,0.5,10\nq00,abc,0.4,10\n",
            r"obs.csv: column 'samples_seen' is not a number: row 2 \(line 3\) = 'abc'",
        ),
        (
            "bucket,samples_seen,error,pool_size\nq00,100,-0.5,10\n",
            r"obs.csv: column 'error' must be finite and > 0: row 1 \(line 2\) = '-0.5'",
        ),
        (
            "bucket,samples_seen,error,pool_size\n,100,0.5,10\n",
            r"obs.csv: column 'bucket' is empty: row 1 \(line 2\)",
        ),
        (
            "bucket,samples_seen,error,pool_size\nq00,100,0.5,\n",
            r"obs.csv: column 'pool_size' is empty: row 1 \(line 2\)",
        ),
        (
            "bucket,samples_seen,error\nq00,100,0.5\n",
            r"obs.csv: no 'pool_size' column and no pool size given for bucket\(s\) \['q00'\]",
        ),
    ],
)
def test_malformed_observations_name_file_column_and_row(tmp_path, text, message):
    path = write_csv(tmp_path, text)
    with pytest.raises(ObservationsError, match=message):
        load_observations(path)
    with pytest.raises(ObservationsError, match=message):
        fit_scaling_law(path)


def test_missing_file_and_bad_dataframe(tmp_path):
    with pytest.raises(ObservationsError, match="nope.csv: observations file does not exist"):
        load_observations(tmp_path / "nope.csv")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ObservationsError, match="not a Delta table"):
        load_observations(tmp_path / "folder")
    bad = pd.DataFrame(
        {"bucket": ["q00"], "samples_seen": [np.inf], "error": [0.5], "pool_size": 1}
    )
    with pytest.raises(ObservationsError, match="observations DataFrame: column 'samples_seen'"):
        load_observations(bad)
