"""Scaling laws for data filtering (METHODS.md §4; Goyal et al., CVPR 2024, QQT).

A quality pool (bucket) has a utility `b < 0` and a half-life `tau` (epochs); `a` (a scale, shared)
and `d` (irreducible error, shared) complete the law. For a pool of N samples after n samples seen,
with E = floor(n / N) completed passes:

    b_j  = b * 0.5 ** (j / tau)                     utility of pass j (j = 0 is the first pass)
    s_j  = a * min((j + 1) * N, n) / 1e5,   s'_j = a * j * N / 1e5
    error = (s_0 ** b_0 + d) * prod_{j=1..E} (s_j / s'_j) ** b_j        ("effective utility")

The top-k pools train as one pool (their union). With equal pool sizes the union has size kN,
tau_hat_i = k * tau_i and b_eff(j) = (1/k) sum_i b_i 0.5 ** (j / (k tau_i)) (the authors' code).
Pools of different sizes: the union has size N_U = sum N_i, pool i supplies the share
w_i = N_i / N_U of every union pass, and its half-life stretches by N_U / N_i; so
b_eff(j) = sum_i w_i b_i 0.5 ** (j / (tau_i N_U / N_i)). Both reduce to the published form when
the sizes are equal, and a union of one pool is that pool. (As published, the rule lets a union
decay more slowly than its parts: two halves of one pool make a union with tau_hat = 2 tau.)

"Effective data" variant (`func_effective_data*` in the authors' objective.py, after Muennighoff
et al.'s data-constrained scaling laws): repeated samples count as less data rather than as less
utility. Pass j contributes its new samples weighted by delta_i(j) = 0.5 ** (j / tau_hat_i):

    eff_j  = eff_{j-1} + a * (min((j+1) N_U, n) - j N_U) / 1e5 * sum_i w_i delta_i(j)
    b_d(j) = sum_i w_i b_i delta_i(j) / sum_i w_i delta_i(j)
    error  = eff_0 ** b_d(0) * prod_{j=1..E} (eff_j / eff_{j-1}) ** b_d(j) + d

(`d` is added after the product here, before it in the utility law; for one pool this is
`eff_E ** b + d`.) Both laws are evaluated for many budgets at once: the product over full passes
is a prefix sum of logs shared by every budget, so a budget grid costs O(k E_max + len(budgets)).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

NORMALIZER = 1e5
MAX_PASSES = 1_000_000  # bounds the (pools x passes) arrays; real plans repeat data far less
Variant = Literal["effective_utility", "effective_data"]
VARIANTS: tuple[str, ...] = ("effective_utility", "effective_data")


@dataclass(frozen=True)
class PoolParams:
    """One pool's utility `b` (< 0; more negative = more useful) and half-life `tau` (epochs)."""

    b: float
    tau: float

    def __post_init__(self) -> None:
        if not np.isfinite(self.b) or self.b >= 0:
            raise ValueError(f"PoolParams.b must be a finite negative number, got {self.b!r}")
        if not np.isfinite(self.tau) or self.tau <= 0:
            raise ValueError(f"PoolParams.tau must be a finite positive number, got {self.tau!r}")


@dataclass(frozen=True)
class LawParams:
    """The shared scale `a` and irreducible error `d`, and every pool's (b, tau) by bucket name."""

    a: float
    d: float
    pools: Mapping[str, PoolParams] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not np.isfinite(self.a) or self.a <= 0:
            raise ValueError(f"LawParams.a must be a finite positive number, got {self.a!r}")
        if not np.isfinite(self.d) or self.d < 0:
            raise ValueError(f"LawParams.d must be a finite number >= 0, got {self.d!r}")


@dataclass(frozen=True)
class Frontier:
    """Predicted error of every top-k union over a budget grid, and the best k per budget."""

    budgets: np.ndarray  # (m,)
    ranked: list[str]  # bucket names, most useful first; row k-1 of `errors` is the top-k union
    errors: np.ndarray  # (K, m)
    best_k: np.ndarray  # (m,) in 1..K
    best_error: np.ndarray  # (m,) the lower envelope (Pareto frontier)


def decayed_utility(pool: PoolParams, repetitions: np.ndarray | Sequence[float]) -> np.ndarray:
    """b_j = b * 0.5 ** (j / tau): the utility left on pass j (j = 0 is the first pass)."""
    return pool.b * 0.5 ** (np.asarray(repetitions, dtype=float) / pool.tau)


def _check_inputs(
    samples_seen: np.ndarray | Sequence[float] | float,
    sizes: Sequence[float],
    pools: Sequence[PoolParams],
    variant: str,
) -> tuple[np.ndarray, np.ndarray]:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    n = np.atleast_1d(np.asarray(samples_seen, dtype=float))
    if n.ndim != 1 or not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError("samples_seen must be finite and > 0 (a budget of samples or tokens)")
    sizes_arr = np.asarray(sizes, dtype=float)
    if sizes_arr.ndim != 1 or len(sizes_arr) == 0 or len(sizes_arr) != len(pools):
        raise ValueError(
            f"need one pool size per pool, got {len(sizes_arr)} sizes for {len(pools)} pools"
        )
    if not np.all(np.isfinite(sizes_arr)) or np.any(sizes_arr <= 0):
        raise ValueError(f"pool sizes must be finite and > 0, got {sizes_arr.tolist()}")
    if n.max() / sizes_arr.sum() > MAX_PASSES:
        raise ValueError(
            f"samples_seen {n.max():.3g} is over {MAX_PASSES:,} passes over pools of "
            f"{sizes_arr.sum():.3g} samples: check that budget and sizes share one unit"
        )
    return n, sizes_arr


def union_error(
    samples_seen: np.ndarray | Sequence[float] | float,
    pool_sizes: Sequence[float],
    pools: Sequence[PoolParams],
    a: float,
    d: float,
    variant: Variant = "effective_utility",
) -> np.ndarray:
    """Predicted error after training on the union of `pools` for each value of `samples_seen`."""
    n, sizes = _check_inputs(samples_seen, pool_sizes, pools, variant)
    b = np.array([p.b for p in pools])
    tau = np.array([p.tau for p in pools])
    return union_error_arrays(n, sizes, b, tau, a, d, variant)


def union_error_arrays(
    n: np.ndarray,
    sizes: np.ndarray,
    b: np.ndarray,
    tau: np.ndarray,
    a: float,
    d: float,
    variant: str,
) -> np.ndarray:
    """`union_error` on plain arrays without validation, for the fit's inner loop."""
    union_size = float(sizes.sum())
    share = sizes / union_size
    tau_hat = tau * (union_size / sizes)
    completed = np.floor(n / union_size).astype(np.int64)  # E per budget
    passes = np.arange(int(completed.max()) + 1, dtype=float)
    # delta[i, j]: pool i's remaining weight on union pass j.
    delta = 0.5 ** (passes[None, :] / tau_hat[:, None])
    unit = a / NORMALIZER
    if variant == "effective_utility":
        return _utility_error(n, completed, union_size, share @ (b[:, None] * delta), unit, d)
    return _data_error(n, completed, union_size, share, b, delta, unit, d)


def _utility_error(
    n: np.ndarray,
    completed: np.ndarray,
    union_size: float,
    b_eff: np.ndarray,
    unit: float,
    d: float,
) -> np.ndarray:
    first_pass = unit * np.minimum(n, union_size)
    # Full pass j (1 <= j < E) multiplies by ((j+1)/j) ** b_eff(j); the last, partial pass E by
    # (n / (E N)) ** b_eff(E). Prefix sums of the full-pass logs serve every budget at once.
    j = np.arange(1, len(b_eff), dtype=float)
    full_logs = b_eff[1:] * np.log((j + 1.0) / j)
    prefix = np.concatenate(([0.0, 0.0], np.cumsum(full_logs)))  # prefix[E] = sum_{j=1}^{E-1}
    last = np.where(
        completed >= 1,
        b_eff[completed] * np.log(n / (np.maximum(completed, 1) * union_size)),
        0.0,
    )
    return (first_pass ** b_eff[0] + d) * np.exp(prefix[completed] + last)


def _data_error(
    n: np.ndarray,
    completed: np.ndarray,
    union_size: float,
    share: np.ndarray,
    b: np.ndarray,
    delta: np.ndarray,
    unit: float,
    d: float,
) -> np.ndarray:
    weight = share @ delta  # sum_i w_i delta_i(j)
    b_data = (share @ (b[:, None] * delta)) / weight
    # eff_full[e]: effective samples after e completed union passes.
    eff_full = np.concatenate(([0.0], np.cumsum(unit * union_size * weight)))
    j = np.arange(1, len(weight))
    full_logs = b_data[1:] * np.log(eff_full[j + 1] / eff_full[j])
    prefix = np.concatenate(([0.0, 0.0], np.cumsum(full_logs)))
    has_repeat = completed >= 1
    first = np.where(has_repeat, eff_full[1], unit * n)
    # Budgets still inside the first pass have no repetition factor; 1/1 keeps their log at 0.
    before = np.where(has_repeat, eff_full[completed], 1.0)
    partial = unit * (n - completed * union_size) * weight[completed]
    after = np.where(has_repeat, eff_full[completed] + partial, 1.0)
    last = b_data[completed] * np.log(after / before)
    return np.exp(b_data[0] * np.log(first) + prefix[completed] + last) + d


def pool_error(
    samples_seen: np.ndarray | Sequence[float] | float,
    pool_size: float,
    pool: PoolParams,
    a: float,
    d: float,
    variant: Variant = "effective_utility",
) -> np.ndarray:
    """Predicted error after `samples_seen` samples of one pool of `pool_size` samples."""
    return union_error(samples_seen, [pool_size], [pool], a, d, variant)


def rank_pools(pools: Mapping[str, PoolParams]) -> list[str]:
    """Bucket names, most useful (most negative b) first; ties keep name order."""
    return sorted(pools, key=lambda name: (pools[name].b, name))


def _ranked_inputs(
    pool_sizes: Mapping[str, float], law: LawParams
) -> tuple[list[str], list[float], list[PoolParams]]:
    missing = sorted(set(pool_sizes) - set(law.pools))
    if missing:
        raise ValueError(f"no fitted (b, tau) for bucket(s) {missing}; fitted: {sorted(law.pools)}")
    if not pool_sizes:
        raise ValueError("pool_sizes is empty: there is no bucket to choose from")
    ranked = rank_pools({name: law.pools[name] for name in pool_sizes})
    return ranked, [float(pool_sizes[name]) for name in ranked], [law.pools[n] for n in ranked]


def topk_errors(
    samples_seen: np.ndarray | Sequence[float] | float,
    pool_sizes: Mapping[str, float],
    law: LawParams,
    variant: Variant = "effective_utility",
) -> tuple[list[str], np.ndarray]:
    """(ranked bucket names, errors[k-1, i]) for the top-k union at each samples_seen[i]."""
    ranked, sizes, pools = _ranked_inputs(pool_sizes, law)
    errors = np.stack(
        [
            union_error(samples_seen, sizes[:k], pools[:k], law.a, law.d, variant)
            for k in range(1, len(ranked) + 1)
        ]
    )
    return ranked, errors


def best_k(
    budget: float,
    pool_sizes: Mapping[str, float],
    law: LawParams,
    variant: Variant = "effective_utility",
) -> tuple[int, list[str], np.ndarray]:
    """(best k, ranked names, error of each top-k union) for one compute budget."""
    ranked, errors = topk_errors([budget], pool_sizes, law, variant)
    column = errors[:, 0]
    return int(np.argmin(column)) + 1, ranked, column


def frontier(
    budgets: np.ndarray | Sequence[float],
    pool_sizes: Mapping[str, float],
    law: LawParams,
    variant: Variant = "effective_utility",
) -> Frontier:
    """Every top-k curve over `budgets`, the best k per budget and the lower envelope."""
    grid = np.atleast_1d(np.asarray(budgets, dtype=float))
    ranked, errors = topk_errors(grid, pool_sizes, law, variant)
    best = np.argmin(errors, axis=0)
    return Frontier(
        budgets=grid,
        ranked=ranked,
        errors=errors,
        best_k=best + 1,
        best_error=errors[best, np.arange(len(grid))],
    )


def law_to_frame(law: LawParams) -> pd.DataFrame:
    """One row per bucket (bucket, b, tau, a, d): the fitted parameters as a table."""
    rows = [
        {"bucket": name, "b": p.b, "tau": p.tau, "a": law.a, "d": law.d}
        for name, p in sorted(law.pools.items())
    ]
    return pd.DataFrame(rows, columns=["bucket", "b", "tau", "a", "d"])


def law_from_frame(frame: pd.DataFrame) -> LawParams:
    """Inverse of `law_to_frame`; a and d must be the same on every row."""
    missing = {"bucket", "b", "tau", "a", "d"} - set(frame.columns)
    if missing:
        raise ValueError(f"fitted-parameters table lacks column(s) {sorted(missing)}")
    if frame.empty:
        raise ValueError("fitted-parameters table has no rows")
    if frame["bucket"].duplicated().any():
        raise ValueError("fitted-parameters table lists a bucket more than once")
    for shared in ("a", "d"):
        if frame[shared].nunique() != 1:
            raise ValueError(f"fitted-parameters table: '{shared}' differs between rows")
    pools = {str(r.bucket): PoolParams(float(r.b), float(r.tau)) for r in frame.itertuples()}
    return LawParams(float(frame["a"].iloc[0]), float(frame["d"].iloc[0]), pools)
