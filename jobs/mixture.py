"""Compute-aware mixture: which quality buckets to train on for a budget, and how often.

`plan_mixture` ranks buckets by fitted utility b, predicts the error of every top-k union at the
budget (jobs/scaling_law.py) and keeps the best k. The union is one pool cycled uniformly, so
every selected document is seen `budget / union_size` times. `sample_mixture` turns that repeat
factor into integer repeats per document: floor(r) for everyone plus one more for a
hash-chosen fraction frac(r) of the documents (xxhash64 of doc_id and the seed), so the expected
total equals the budget and the same seed always picks the same documents.

Sizes and the budget share one unit (documents, characters or tokens); with characters, r still
applies per document and the expected characters seen equal the budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.scaling_law import LawParams, Variant, topk_errors

PLAN_COLUMNS = [
    "quality_bucket",
    "size",
    "rank",
    "b",
    "tau",
    "selected",
    "repeat_factor",
    "predicted_error_top_k",
    "note",
    "chosen_k",
    "budget",
]
_HASH_BITS = 53  # doubles represent every integer below 2**53 exactly


@dataclass(frozen=True)
class MixturePlan:
    """mixture_plan rows (one per bucket, by rank) and the decision in words."""

    table: pd.DataFrame
    decision: str
    chosen_k: int
    repeat_factor: float
    budget: float


def _validated_sizes(bucket_sizes: pd.DataFrame) -> dict[str, float]:
    missing = {"quality_bucket", "size"} - set(bucket_sizes.columns)
    if missing:
        raise ValueError(
            f"bucket_sizes lacks column(s) {sorted(missing)}; found {list(bucket_sizes.columns)}"
        )
    if bucket_sizes.empty:
        raise ValueError("bucket_sizes has no rows: there is no bucket to choose from")
    names = bucket_sizes["quality_bucket"].astype(str)
    duplicated = sorted(names[names.duplicated()].unique())
    if duplicated:
        raise ValueError(f"bucket_sizes lists bucket(s) {duplicated} more than once")
    sizes = pd.to_numeric(bucket_sizes["size"], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(sizes) | (sizes <= 0)
    if bad.any():
        raise ValueError(
            f"bucket_sizes: size must be a number > 0; bad for bucket(s) {sorted(names[bad])}"
        )
    return dict(zip(names, sizes, strict=True))


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _decision(
    ranked: list[str],
    sizes: Mapping[str, float],
    law: LawParams,
    errors: np.ndarray,
    k: int,
    budget: float,
    unit: str,
) -> str:
    chosen = ranked[:k]
    union = sum(sizes[n] for n in chosen)
    r = budget / union
    lines = [
        f"Budget {_fmt(budget)} {unit}: train on the top {k} of {len(ranked)} bucket(s) "
        f"({', '.join(chosen)}; {_fmt(union)} {unit}), each seen {r:.3g} time(s); "
        f"predicted error {errors[k - 1]:.4g}."
    ]
    if k > 1:
        best = law.pools[ranked[0]]
        alone = budget / sizes[ranked[0]]
        lines.append(
            f"Fewer buckets repeat data more: {ranked[0]} alone would be seen {alone:.3g} times "
            f"while its utility halves every {best.tau:.3g} passes (b={best.b:.3g}); the top-"
            f"{k - 1} mixture predicts {errors[k - 2]:.4g}."
        )
    if k == len(ranked):
        lines.append("Every fitted bucket is used: the budget outgrows even the least useful data.")
    else:
        nxt = ranked[k]
        why = (
            "no data repeats yet, so adding it only dilutes quality"
            if r <= 1
            else "it dilutes quality more than the repetition it avoids costs"
        )
        lines.append(
            f"Adding {nxt} (b={law.pools[nxt].b:.3g}, less useful) does not pay: {why}; the "
            f"top-{k + 1} mixture predicts {errors[k]:.4g}."
        )
    return " ".join(lines)


def plan_mixture(
    bucket_sizes: pd.DataFrame,
    law: LawParams,
    budget: float,
    variant: Variant = "effective_utility",
    unit: str = "samples",
    excluded: Mapping[str, str] | None = None,
) -> MixturePlan:
    """mixture_plan for `budget`: rank, selection, repeat factor and top-k errors per bucket.

    `bucket_sizes` has columns quality_bucket, size. `excluded` maps buckets the fit refused to
    the reason: they are listed, never selected, with the reason in `note`. Any other bucket
    without fitted parameters is an error; fitted buckets absent from `bucket_sizes` hold no data
    and are ignored.
    """
    if not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"budget must be a finite number > 0, got {budget!r}")
    all_sizes = _validated_sizes(bucket_sizes)
    excluded = {n: why for n, why in (excluded or {}).items() if n in all_sizes}
    sizes = {n: s for n, s in all_sizes.items() if n not in excluded}
    if not sizes:
        raise ValueError(f"every bucket is excluded, nothing to select: {excluded}")
    ranked, errors = topk_errors([budget], sizes, law, variant)
    errors = errors[:, 0]
    k = int(np.argmin(errors)) + 1
    repeat = budget / sum(sizes[n] for n in ranked[:k])
    chosen = np.arange(len(ranked)) < k
    table = pd.DataFrame(
        {
            "quality_bucket": ranked,
            "size": [sizes[n] for n in ranked],
            "rank": pd.array(np.arange(1, len(ranked) + 1), dtype="Int64"),
            "b": [law.pools[n].b for n in ranked],
            "tau": [law.pools[n].tau for n in ranked],
            "selected": chosen,
            "repeat_factor": np.where(chosen, repeat, 0.0),
            "predicted_error_top_k": errors,
            "note": "",
        }
    )
    left_out = pd.DataFrame(
        {
            "quality_bucket": sorted(excluded),
            "size": [all_sizes[n] for n in sorted(excluded)],
            "rank": pd.array([None] * len(excluded), dtype="Int64"),
            "selected": False,
            "repeat_factor": 0.0,
            "note": [f"excluded: {excluded[n]}" for n in sorted(excluded)],
        }
    )
    if len(left_out):
        table = pd.concat([table, left_out], ignore_index=True)
    table = table.assign(chosen_k=k, budget=float(budget))[PLAN_COLUMNS]
    decision = _decision(ranked, sizes, law, errors, k, budget, unit)
    if excluded:
        decision += f" Not considered (fit refused): {', '.join(sorted(excluded))}."
    return MixturePlan(table, decision, k, repeat, float(budget))


def seeded_uniform(doc_id: Column, seed: int) -> Column:
    """A uniform draw in [0, 1) per (doc_id, seed): the low 53 bits of xxhash64, stable across
    runs and clusters (no RNG state, no dependence on partitioning)."""
    bits = F.xxhash64(doc_id.cast("string"), F.lit(int(seed))).bitwiseAND(
        F.lit((1 << _HASH_BITS) - 1)
    )
    return bits / F.lit(float(1 << _HASH_BITS))


def _repeat_factors(plan: MixturePlan | pd.DataFrame) -> dict[str, float]:
    table = plan.table if isinstance(plan, MixturePlan) else plan
    missing = {"quality_bucket", "selected", "repeat_factor"} - set(table.columns)
    if missing:
        raise ValueError(f"plan lacks column(s) {sorted(missing)}")
    chosen = table[table["selected"].astype(bool)]
    if chosen.empty:
        raise ValueError("plan selects no bucket")
    factors = dict(zip(chosen["quality_bucket"].astype(str), chosen["repeat_factor"], strict=True))
    bad = sorted(n for n, r in factors.items() if not (math.isfinite(r) and r > 0))
    if bad:
        raise ValueError(f"plan: repeat_factor must be > 0 for selected bucket(s) {bad}")
    return factors


def sample_mixture(
    curated: DataFrame, plan: MixturePlan | pd.DataFrame, seed: int = 0
) -> DataFrame:
    """(doc_id, quality_bucket, repeats >= 1) for the selected buckets; deterministic per seed."""
    missing = {"doc_id", "quality_bucket"} - set(curated.columns)
    if missing:
        raise ValueError(f"curated lacks column(s) {sorted(missing)}")
    factors = _repeat_factors(plan)
    whole = F.lit(None).cast("int")
    fraction = F.lit(None).cast("double")
    for name, r in factors.items():
        whole = F.when(F.col("quality_bucket") == name, F.lit(int(math.floor(r)))).otherwise(whole)
        fraction = F.when(F.col("quality_bucket") == name, F.lit(r - math.floor(r))).otherwise(
            fraction
        )
    repeats = (whole + (seeded_uniform(F.col("doc_id"), seed) < fraction).cast("int")).cast("int")
    return (
        curated.where(F.col("quality_bucket").isin(list(factors)))
        .select("doc_id", "quality_bucket", repeats.alias("repeats"))
        .where(F.col("repeats") >= 1)
    )


MIXTURE_PLAN_TABLE = "mixture_plan"
MIXTURE_TABLE = "mixture"
PLAN_SCHEMA = (
    "quality_bucket string, size double, rank int, b double, tau double, selected boolean, "
    "repeat_factor double, predicted_error_top_k double, note string, chosen_k int, budget double"
)


def bucket_sizes(curated: DataFrame, unit: str) -> pd.DataFrame:
    size = F.count("*") if unit == "documents" else F.sum("n_chars")
    return (
        curated.groupBy("quality_bucket").agg(size.cast("double").alias("size"))
        .orderBy("quality_bucket").toPandas()
    )


def _plan_rows(table: pd.DataFrame) -> list[tuple]:
    def clean(value):
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [tuple(clean(v) for v in row) for row in table[PLAN_COLUMNS].itertuples(index=False)]


def fit_observations(settings):
    """The scaling-law fit of `mixture.observations` with the mixture's settings; refusals and
    warnings name the `mixture.*` keys to set."""
    from jobs.scaling_fit import SharedKeys, fit_scaling_law

    names = ("a", "a_range", "d", "d_range", "b_range", "tau_range")
    keys = SharedKeys(*(f"mixture.{key}" for key in names))
    return fit_scaling_law(
        settings.observations, a=settings.a, d=settings.d, a_range=tuple(settings.a_range),
        d_range=tuple(settings.d_range) if settings.d_range else None, variant=settings.variant,
        b_range=tuple(settings.b_range), tau_range=tuple(settings.tau_range),
        on_refusal=settings.on_refusal, keys=keys,
    )


def run(spark, cfg):
    """Fit the law on the observations, plan for `mixture.compute_budget`, sample the mixture."""
    from pathlib import Path

    from jobs.core.base import JobReport, lake_for
    from jobs.core.config import ConfigError
    from jobs.core.errors import require_local_path
    from jobs.mixture_plots import plot_decayed_utility, plot_error_vs_compute
    from jobs.scaling_fit import FitRefused
    from jobs.scaling_law import frontier

    settings = cfg.mixture
    if not settings.observations:
        raise ConfigError(f"{cfg.source}: mixture.observations: no observations file configured")
    lake = lake_for(spark, cfg)
    curated = lake.read("curated")
    sizes = bucket_sizes(curated, settings.size_unit)
    require_local_path(settings.observations, "mixture.observations",
                       "run 'siftlake demo_curves' or set mixture.observations")
    try:
        fit = fit_observations(settings)
    except FitRefused as refused:
        refused.fix = ("set mixture.on_refusal: drop to plan without them, or add observations "
                       "(more budgets, runs past one pass)")
        raise
    plan = plan_mixture(sizes, fit.law, settings.compute_budget, settings.variant,
                        settings.size_unit, excluded=fit.refused)
    print(plan.decision, flush=True)
    plan_df = spark.createDataFrame(_plan_rows(plan.table), PLAN_SCHEMA)
    lake.write(plan_df, MIXTURE_PLAN_TABLE)
    written = lake.write(sample_mixture(curated, plan, settings.seed), MIXTURE_TABLE,
                         partition_by=["quality_bucket"])

    out = Path(cfg.lake.artifacts) / "mixture"
    out.mkdir(parents=True, exist_ok=True)
    fitted = {n: s for n, s in zip(sizes["quality_bucket"], sizes["size"], strict=True)
              if n in fit.law.pools}
    budgets = np.geomspace(settings.compute_budget / 100, settings.compute_budget * 100, 200)
    front = frontier(budgets, fitted, fit.law, settings.variant)
    plot_error_vs_compute(front, out / "error_vs_compute.png", settings.compute_budget,
                          settings.size_unit)
    plot_decayed_utility(fit.law, out / "decayed_utility.png")
    fit.report.to_csv(out / "fit_report.csv", index=False)
    mixture = lake.read(MIXTURE_TABLE)
    total = mixture.agg(F.sum("repeats")).first()[0] or 0
    rows_in = curated.count()
    left_out = curated.select("doc_id").join(mixture.select("doc_id"), "doc_id", "left_anti").count()
    return JobReport(
        "mixture", rows_in, written.rows, rows_filtered=left_out, filtered_label="not in the mixture",
        tables={MIXTURE_PLAN_TABLE: lake.path(MIXTURE_PLAN_TABLE), MIXTURE_TABLE: written.path,
                "plots": str(out)},
        details={"decision": plan.decision, "chosen_k": plan.chosen_k,
                 "repeat_factor": round(plan.repeat_factor, 4),
                 "samples_in_mixture": int(total), "refused": fit.refused or "none",
                 **({"warnings": fit.warnings} if fit.warnings else {})},
    ).check_invariant()
