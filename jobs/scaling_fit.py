"""Fit each bucket's (b, tau) from small training runs; `a` and `d` are shared by all buckets.

Observations (a DataFrame, CSV file or Delta folder; jobs/scaling_observations.py):
`bucket`, `samples_seen`, `error`, and optionally `pool_size` (samples per pass of that run, else from `pool_sizes`, e.g. the curated
bucket sizes); samples, pool sizes and the mixture budget share one unit (documents, characters
or tokens). `error` is any positive error or loss (with a raw loss `d` absorbs the floor).

The search follows the authors (METHODS.md §4): an exhaustive grid, b in [-0.5, -0.005] and tau
in [1, 10] (100 steps each), for every (a, d) of the shared sweep (or the fixed values), then a
bounded L-BFGS-B refinement of everything searched from the grid optimum, kept only if it lowers
the squared error. Per observation the law is `M(a; b, tau) + d * K(b, tau)`, so a bucket's
squared error is a quadratic in d whose coefficients take one pass per value of a.

A bucket is refused, with the reason, when it has fewer than `min_points` distinct budgets, never
goes past one pass (tau is then unidentifiable), its error rises with training (the law has no
harmful data: b < 0), or its optimum sits on the edge of the searched range (the true optimum
may lie outside it). A shared a or d on the edge always refuses, and the reason names the key
to set (`SharedKeys`: the mixture job passes its config keys). Fitted b values close to (not on)
the limit of the b range are kept with a warning: their ranking may be an artefact of the limit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from jobs.core.errors import UserError
from jobs.core.progress import progress
from jobs.scaling_law import NORMALIZER, LawParams, PoolParams, Variant, union_error_arrays
from jobs.scaling_observations import ObservationsError, load_observations  # noqa: F401 (re-export)

log = logging.getLogger("siftlake")

B_RANGE = (-0.5, -0.005)
TAU_RANGE = (1.0, 10.0)
GRID_STEPS = 100
DEFAULT_A_RANGE = (1e-6, 1e12)
DEFAULT_D_STEPS = 20
A_STEPS_PER_DECADE = 4  # refinement fills the gaps
D_CEILING = 0.99  # of the smallest error: d is the error's floor, so it stays below every error
B_LIMIT_WARN_STEPS = 2  # fitted b within this many grid steps of a b_range end gets a warning
Array = np.ndarray
ArrayLike = np.ndarray | Sequence[float]
Grids = Mapping[str, Array]  # "b", "tau": the searched grids; "a", "d": the sweeps (or one value)


class FitRefused(UserError, ValueError):
    """The data cannot support a fit; `reasons` maps a bucket (or 'a' / 'd') to why."""

    def __init__(self, reasons: Mapping[str, str]):
        self.reasons = dict(reasons)
        lines = "\n".join(f"  {name}: {why}" for name, why in sorted(self.reasons.items()))
        super().__init__(f"scaling-law fit refused for {len(self.reasons)} item(s):\n{lines}")


@dataclass(frozen=True)
class SharedKeys:
    """The names a refusal or warning tells the user to set (the mixture job: its config keys)."""

    a: str = "a"
    a_range: str = "a_range"
    d: str = "d"
    d_range: str = "d_range"
    b_range: str = "b_range"
    tau_range: str = "tau_range"


DEFAULT_KEYS = SharedKeys()
REPORT_COLUMNS = "bucket status reason n_points b tau a d rmse max_abs_residual".split()


@dataclass(frozen=True)
class FitResult:
    """`law`: fitted buckets; `report`: per bucket status, reason, b, tau, rmse...; `residuals`:
    per fitted observation, predicted and residual (= error - predicted)."""

    law: LawParams
    report: pd.DataFrame
    residuals: pd.DataFrame
    sse: float
    variant: str
    refused: dict[str, str] = field(default_factory=dict)  # bucket -> why (on_refusal="drop")
    warnings: list[str] = field(default_factory=list)


@dataclass
class _BucketGrid:
    """One bucket's observations and the a-free parts of the law on the (b, tau) grid."""

    error: Array  # (P,)
    k_term: Array  # K (P, B, T), the factor of d
    k_sq_sum: Array  # sum_p K^2 (B, T)
    log_base: Array  # (P,) or (P, T): the parts of log M free of a and b
    b_grid: Array
    variant: str

    def m_term(self, a: float) -> Array:
        b = self.b_grid
        if self.variant == "effective_utility":  # M = (a * base) ** b * K
            return (
                np.exp(b[None, :] * (np.log(a) + self.log_base[:, None]))[..., None] * self.k_term
            )
        return np.exp(b[None, :, None] * (np.log(a) + self.log_base[:, None, :]))


def _bucket_grid(rows: pd.DataFrame, grids: Grids, variant: str) -> _BucketGrid:
    b_grid, tau_grid = grids["b"], grids["tau"]
    k_terms, log_bases = [], []
    for n, pool in zip(rows["samples_seen"], rows["pool_size"], strict=True):
        passes = np.arange(int(n // pool) + 1, dtype=float)
        seen = np.minimum((passes + 1) * pool, n)
        decay = 0.5 ** (passes[None, :] / tau_grid[:, None])  # (T, E + 1)
        if variant == "effective_utility":
            logs = np.log(seen[1:] / (passes[1:] * pool))  # log(s_j / s'_j), j >= 1
            k_terms.append(np.exp(b_grid[:, None] * (decay[:, 1:] @ logs)[None, :]))
            log_bases.append(np.log(min(n, pool) / NORMALIZER))
        else:  # log of the effective samples per unit of a
            k_terms.append(np.ones((len(b_grid), len(tau_grid))))
            log_bases.append(np.log(decay @ (seen - passes * pool) / NORMALIZER))
    k = np.stack(k_terms)
    error = rows["error"].to_numpy(float)
    return _BucketGrid(error, k, (k**2).sum(axis=0), np.asarray(log_bases), b_grid, variant)


def _grid_search(buckets: list[_BucketGrid], grids: Grids) -> tuple[int, int, list[int]]:
    """(a index, d index, flat (b, tau) index per bucket) minimising the summed squared error."""
    best = (np.inf, 0, 0, [])
    d_grid = grids["d"]
    d_col = d_grid[:, None, None]
    for ai, a in progress(enumerate(grids["a"]), "scaling-law fit: a values", len(grids["a"])):
        total = np.zeros(len(d_grid))
        picks = []
        for grid in buckets:
            resid = grid.m_term(a) - grid.error[:, None, None]
            c0, c1 = (resid**2).sum(axis=0), 2.0 * (resid * grid.k_term).sum(axis=0)
            sse = c0[None] + c1[None] * d_col + grid.k_sq_sum[None] * d_col**2  # (D, B, T)
            sse = sse.reshape(len(d_grid), -1)
            idx = np.argmin(sse, axis=1)
            total += sse[np.arange(len(d_grid)), idx]
            picks.append(idx)
        di = int(np.argmin(total))
        if total[di] < best[0]:
            best = (float(total[di]), ai, di, [int(p[di]) for p in picks])
    return best[1:]


class _Points:
    """Observations as arrays grouped by (bucket, pool_size), for fast repeated evaluation."""

    def __init__(self, obs: pd.DataFrame):  # obs has a RangeIndex: labels are positions
        self.error = obs["error"].to_numpy(float)
        self.groups = []
        for (name, pool), rows in obs.groupby(["bucket", "pool_size"], sort=False):
            n = rows["samples_seen"].to_numpy(float)
            self.groups.append((name, np.array([pool]), rows.index.to_numpy(), n))

    def predict(self, law: LawParams, variant: str) -> Array:
        out = np.empty(len(self.error))
        for name, pool, where, n in self.groups:
            p = law.pools[name]
            out[where] = union_error_arrays(
                n, pool, np.array([p.b]), np.array([p.tau]), law.a, law.d, variant
            )
        return out


def _refusals_before_fit(obs: pd.DataFrame, min_points: int, rise_tol: float) -> dict[str, str]:
    reasons = {}
    for name, rows in obs.groupby("bucket", sort=True):
        curve = rows.groupby("samples_seen")["error"].mean().sort_index()
        if len(curve) < min_points:
            reasons[name] = f"{len(curve)} distinct samples_seen value(s); {min_points} needed"
        elif not (rows["samples_seen"] > rows["pool_size"]).any():
            reasons[name] = (
                "no observation past the first pass (samples_seen <= pool_size): the half-life "
                "tau cannot be estimated; add points after 2 or more epochs"
            )
        elif curve.iloc[-1] > curve.min() * (1 + rise_tol):
            reasons[name] = (
                f"error rises with more training ({curve.min():.4g} at {curve.idxmin():g}, "
                f"{curve.iloc[-1]:.4g} at {curve.index[-1]:g}): the law needs b < 0 (more data "
                "never hurts), so this bucket hurts the target"
            )
    return reasons


def _near_edge(value: float, grid: Array) -> bool:  # within half a grid step of either end
    half_step = (grid[-1] - grid[0]) / (len(grid) - 1) / 2
    return min(value - grid[0], grid[-1] - value) < half_step


def _edge_message(label: str, value: float, grid: Array) -> str:
    return f"{label} = {value:.4g} is on the edge of the searched [{grid[0]:.4g}, {grid[-1]:.4g}]"


def _g(x: float) -> str:
    return f"{x:.4g}"


def _shared_a_reason(a: float, grid: Array, keys: SharedKeys) -> str:
    lo, hi = float(grid[0]), float(grid[-1])
    wider = (lo / 1e3, hi) if np.log(a) - np.log(lo) < np.log(hi) - np.log(a) else (lo, hi * 1e3)
    return (_edge_message("a", a, grid) + f"; set {keys.a_range}: [{_g(wider[0])}, "
            f"{_g(wider[1])}] or fix {keys.a}")


def _shared_d_reason(d: float, grid: Array, min_error: float, keys: SharedKeys) -> str:
    lo, hi = float(grid[0]), float(grid[-1])
    message = _edge_message("d", d, grid)
    if d - lo < hi - d:  # the lower edge of a sweep that does not start at 0
        return message + f"; set {keys.d_range}: [0, {_g(hi)}] or fix {keys.d}"
    ceiling = D_CEILING * min_error
    if hi < ceiling * 0.999:
        return (message + f"; set {keys.d_range}: [{_g(lo)}, {_g(ceiling)}] (d stays below the "
                f"smallest error, {_g(min_error)}) or fix {keys.d}")
    return (message + f", which already reaches the smallest error ({_g(min_error)}): the curves "
            f"flatten more than the law allows; fix {keys.d} to the error's known floor")


def _edge_reasons(law: LawParams, grids: Grids, min_error: float, keys: SharedKeys) -> dict:
    reasons = {}
    for name, p in law.pools.items():
        for label, value, key in (("b", p.b, keys.b_range), ("tau", p.tau, keys.tau_range)):
            if name not in reasons and _near_edge(value, grids[label]):
                reasons[name] = _edge_message(label, value, grids[label]) + f"; widen {key}"
    a_grid, d_grid = grids["a"], grids["d"]
    if len(a_grid) > 1 and _near_edge(np.log(law.a), np.log(a_grid)):
        reasons["a"] = _shared_a_reason(law.a, a_grid, keys)
    # d = 0 is the physical floor, not an artefact of the sweep: there only the top edge counts.
    if len(d_grid) > 1 and _near_edge(law.d, d_grid) and (d_grid[0] > 0 or law.d > d_grid[-1] / 2):
        reasons["d"] = _shared_d_reason(law.d, d_grid, min_error, keys)
    return reasons


def _b_limit_warnings(law: LawParams, b_grid: Array, keys: SharedKeys) -> list[str]:
    """Fitted b close to an end of the b range (the nearer ones were refused as on the edge)."""
    lo, hi = float(b_grid[0]), float(b_grid[-1])
    tolerance = B_LIMIT_WARN_STEPS * (hi - lo) / (len(b_grid) - 1)
    warnings = []
    for limit, wider in ((lo, f"[{_g(2 * lo)}, {_g(hi)}]"), (hi, f"[{_g(lo)}, {_g(hi / 2)}]")):
        near = {n: p.b for n, p in sorted(law.pools.items()) if abs(p.b - limit) <= tolerance}
        if near:
            values = ", ".join(f"{n} {_g(b)}" for n, b in near.items())
            spread = max(near.values()) - min(near.values())
            warnings.append(
                f"b of {', '.join(near)} within {_g(tolerance)} of the {keys.b_range} limit "
                f"{_g(limit)} ({values}; they differ by at most {_g(spread)}): the ranking of "
                f"these buckets may be an artefact of the limit; set {keys.b_range}: {wider} "
                "or add observations"
            )
    return warnings


def _refine(law: LawParams, points: _Points, grids: Grids, variant: str) -> LawParams:
    """Bounded L-BFGS-B over every searched parameter, each scaled to [0, 1] within its range."""
    names = sorted(law.pools)
    k = len(names)
    sweep_a, sweep_d = len(grids["a"]) > 1, len(grids["d"]) > 1
    start = [law.pools[n].b for n in names] + [law.pools[n].tau for n in names]
    start += [np.log(law.a)] * sweep_a + [law.d] * sweep_d
    ranges = [grids["b"][[0, -1]]] * k + [grids["tau"][[0, -1]]] * k
    ranges += [np.log(grids["a"][[0, -1]])] * sweep_a + [grids["d"][[0, -1]]] * sweep_d
    lows, highs = np.array(ranges).T

    def unpack(unit: Array) -> LawParams:
        x = (lows + np.clip(unit, 0.0, 1.0) * (highs - lows)).tolist()
        pools = {n: PoolParams(x[i], x[k + i]) for i, n in enumerate(names)}
        a = float(np.exp(x[2 * k])) if sweep_a else law.a
        return LawParams(a, x[-1] if sweep_d else law.d, pools)

    def objective(unit: Array) -> float:
        return float(((points.error - points.predict(unpack(unit), variant)) ** 2).sum())

    x0 = (np.array(start) - lows) / (highs - lows)
    result = minimize(objective, x0, method="L-BFGS-B", bounds=[(0.0, 1.0)] * len(x0))
    return unpack(result.x) if objective(result.x) <= objective(x0) else law


def _fit_once(obs: pd.DataFrame, grids: Grids, variant: str, refine: bool) -> LawParams:
    names = sorted(obs["bucket"].unique())
    buckets = [_bucket_grid(obs[obs["bucket"] == n], grids, variant) for n in names]
    ai, di, picks = _grid_search(buckets, grids)
    b_grid, tau_grid = grids["b"], grids["tau"]
    pools = {
        n: PoolParams(float(b_grid[i // len(tau_grid)]), float(tau_grid[i % len(tau_grid)]))
        for n, i in zip(names, picks, strict=True)
    }
    law = LawParams(float(grids["a"][ai]), float(grids["d"][di]), pools)
    return _refine(law, _Points(obs), grids, variant) if refine else law


def _a_sweep(a_range: tuple[float, float] | None) -> Array:
    lo, hi = a_range or DEFAULT_A_RANGE
    if not 0 < lo < hi:
        raise ValueError(f"a_range needs 0 < lo < hi, got {a_range}")
    steps = max(3, round(A_STEPS_PER_DECADE * np.log10(hi / lo)) + 1)
    return np.geomspace(lo, hi, steps)


def _shared_values(fixed: float | None, grid: ArrayLike | None, default: Array) -> Array:
    chosen = fixed if fixed is not None else default if grid is None else grid
    return np.atleast_1d(np.asarray(chosen, dtype=float))


def fit_scaling_law(
    observations: pd.DataFrame | str | os.PathLike,
    *,
    pool_sizes: Mapping[str, float] | None = None,
    a: float | None = None,
    d: float | None = None,
    a_grid: ArrayLike | None = None,
    d_grid: ArrayLike | None = None,
    a_range: tuple[float, float] | None = None,
    d_range: tuple[float, float] | None = None,
    b_range: tuple[float, float] = B_RANGE,
    tau_range: tuple[float, float] = TAU_RANGE,
    steps: int = GRID_STEPS,
    min_points: int = 3,
    rise_tolerance: float = 0.02,
    variant: Variant = "effective_utility",
    refine: bool = True,
    on_refusal: Literal["raise", "drop"] = "raise",
    keys: SharedKeys = DEFAULT_KEYS,
) -> FitResult:
    """Fit (b, tau) per bucket and the shared a, d (fixed when given, else swept).

    A shared parameter sweeps its grid (`a_grid` / `d_grid`) or its range (`a_range`: geometric,
    4 steps per decade; `d_range`: 20 steps); by default a spans [1e-6, 1e12] and d
    [0, 0.95 x the smallest error fitted]. `keys` names what a refusal tells the user to set.

    on_refusal="raise" raises FitRefused listing every refused bucket; "drop" fits the others
    (refitting without buckets whose optimum hit an edge) and lists the refused in the result.
    A shared a or d on the edge of its sweep always raises.
    """
    if on_refusal not in ("raise", "drop"):
        raise ValueError(f"on_refusal must be 'raise' or 'drop', got {on_refusal!r}")
    if steps < 3 or not (b_range[0] < b_range[1] < 0 and 0 < tau_range[0] < tau_range[1]):
        raise ValueError(
            f"need steps >= 3, b_range lo < hi < 0, 0 < tau_range lo < hi; got "
            f"{steps}, {b_range}, {tau_range}"
        )
    if d_range is not None and not 0 <= d_range[0] < d_range[1]:
        raise ValueError(f"d_range needs 0 <= lo < hi, got {d_range}")
    obs = load_observations(observations, pool_sizes).reset_index(drop=True)
    refused = _refusals_before_fit(obs, min_points, rise_tolerance)
    if refused and on_refusal == "raise":
        raise FitRefused(refused)
    grids = {
        "b": np.linspace(b_range[0], b_range[1], steps),
        "tau": np.linspace(tau_range[0], tau_range[1], steps),
        "a": _shared_values(a, a_grid, _a_sweep(a_range)),
    }
    while True:
        kept = obs[~obs["bucket"].isin(list(refused))].reset_index(drop=True)
        if kept.empty:
            raise FitRefused(refused)
        # By default d sweeps up to just below the smallest error still being fitted.
        min_error = float(kept["error"].min())
        d_sweep = np.linspace(*(d_range or (0.0, 0.95 * min_error)), DEFAULT_D_STEPS)
        grids["d"] = _shared_values(d, d_grid, d_sweep)
        if np.any(grids["a"] <= 0) or np.any(grids["d"] < 0):
            raise ValueError("a must be > 0 and d >= 0 (check a, a_grid, d, d_grid)")
        law = _fit_once(kept, grids, variant, refine)
        edges = _edge_reasons(law, grids, min_error, keys)
        if "a" in edges or "d" in edges or (edges and on_refusal == "raise"):
            raise FitRefused({**refused, **edges})
        if not edges:
            break
        refused.update(edges)
    predicted = _Points(kept).predict(law, variant)
    residuals = kept.assign(predicted=predicted, residual=kept["error"] - predicted)
    sse = float((residuals["residual"] ** 2).sum())
    warnings = _b_limit_warnings(law, grids["b"], keys)
    for warning in warnings:
        log.warning("scaling-law fit: %s", warning)
    report = _report(law, residuals, obs, refused)
    return FitResult(law, report, residuals, sse, variant, refused, warnings)


def _report(
    law: LawParams, residuals: pd.DataFrame, obs: pd.DataFrame, refused: Mapping[str, str]
) -> pd.DataFrame:
    stats = residuals.groupby("bucket")["residual"].agg(
        rmse=lambda r: float(np.sqrt(np.mean(r**2))), max_abs_residual=lambda r: r.abs().max()
    )
    report = obs.groupby("bucket").size().rename("n_points").to_frame().join(stats)
    names = list(report.index)
    report["status"] = ["refused" if n in refused else "fitted" for n in names]
    report["reason"] = [refused.get(n, "") for n in names]
    report["b"] = [law.pools[n].b if n in law.pools else np.nan for n in names]
    report["tau"] = [law.pools[n].tau if n in law.pools else np.nan for n in names]
    report["a"], report["d"] = law.a, law.d
    return report.reset_index()[REPORT_COLUMNS]
