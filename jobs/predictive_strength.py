"""PreSelect predictive strength and the classifier's training sample, as Spark plans.

    PS(d) = #{ pairs i<j by benchmark : C_i(d) > C_j(d) } / Z,   Z = N(N-1)/2   (METHODS.md §2)

Plan choice (measured with bench/predictive_strength.py --compare, 2 cores): the small models
table is collected (it plays the part of a broadcast join), and the losses are pivoted per
document with one conditional aggregate per model (`max(when(model_id = m, bpc))`); the
concordant pairs are then a sum of N(N-1)/2 column comparisons. That is one shuffle, one hash
aggregation and no Python. The rejected plans took 2-4x as long at 1M and 4M documents: a
self-join on doc_id (N(N-1)/2 rows per document through the join) and collect_list + a
vectorised pandas UDF. The comparison expression has Z terms, fine for the handful of models
the method uses (6 in the recipe).

Nothing but the models table and small histograms reaches the driver, except the training
sample itself, which is collected under a byte bound.
"""

from __future__ import annotations

import logging
import math
import operator
from dataclasses import dataclass
from functools import reduce

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

MAX_MODELS = 200
MAX_DISTINCT_PS_VALUES = 100_000


@dataclass(frozen=True)
class PredictiveStrength:
    """`scored`: doc_id, ps (double in [0, 1]), concordant_pairs (int), n_models (int).
    `unscored`: doc_id, n_models_with_loss (int), missing_models and duplicate_models
    (array<string>): documents that appear in the losses but lack a usable loss for some model.
    Both come from the same aggregation: persist it when writing both.
    """

    scored: DataFrame
    unscored: DataFrame
    model_order: tuple[str, ...]  # weakest to strongest by benchmark score
    n_pairs: int  # Z = N(N-1)/2, including pairs tied on benchmark (they never count)


def collect_model_ranking(models: DataFrame) -> list[tuple[str, float]]:
    """Validated (model_id, benchmark_score) pairs, weakest first."""
    _require_columns(models, "models", ("model_id", "benchmark_score"))
    rows = models.select("model_id", "benchmark_score").limit(MAX_MODELS + 1).collect()
    if len(rows) > MAX_MODELS:
        raise ValueError(f"models has more than {MAX_MODELS} rows: expected one row per model")
    ranking = []
    for model_id, score in rows:
        if model_id is None:
            raise ValueError("models.model_id has a null value")
        if score is None or not math.isfinite(float(score)):
            raise ValueError(f"models.benchmark_score of {model_id!r} is {score!r}, not a number")
        ranking.append((str(model_id), float(score)))
    ids = [model_id for model_id, _ in ranking]
    duplicated = sorted({model_id for model_id in ids if ids.count(model_id) > 1})
    if duplicated:
        raise ValueError(f"models.model_id is not unique: {duplicated}")
    if len(ranking) < 2:
        raise ValueError(f"predictive strength needs at least 2 models, models has {len(ranking)}")
    return sorted(ranking, key=lambda item: item[1])


def ordered_model_pairs(ranking: list[tuple[str, float]]) -> list[tuple[int, int]]:
    """Index pairs (weaker, stronger) with strictly ordered benchmarks; tied pairs never count."""
    return [
        (i, j)
        for i in range(len(ranking))
        for j in range(i + 1, len(ranking))
        if ranking[i][1] < ranking[j][1]
    ]


def compute_predictive_strength(losses: DataFrame, models: DataFrame) -> PredictiveStrength:
    """Predictive strength per document from `losses` (doc_id, model_id, bpc, ...).

    A document is scored only when every declared model has exactly one row with a non-null,
    non-NaN bpc; otherwise it goes to `unscored` with the models that are missing or duplicated.
    Loss rows of models not in `models` are ignored; a document with no declared model's loss
    appears in neither output.
    """
    _require_columns(losses, "losses", ("doc_id", "model_id", "bpc"))
    ranking = collect_model_ranking(models)
    model_ids = [model_id for model_id, _ in ranking]
    n_models = len(ranking)
    n_pairs = n_models * (n_models - 1) // 2

    bpc = F.col("bpc").cast("double")
    usable_bpc = F.when(~F.isnan(bpc), bpc)
    aggregates = []
    for index, model_id in enumerate(model_ids):
        is_model = F.col("model_id") == F.lit(model_id)
        aggregates.append(F.max(F.when(is_model, usable_bpc)).alias(f"_bpc{index}"))
        aggregates.append(F.count(F.when(is_model, F.lit(1))).alias(f"_rows{index}"))
    # Hash-partition the rows by doc_id before aggregating. A map-side partial aggregation
    # cannot shrink anything here (losses are partitioned by model_id, so a map task sees each
    # document about once) and with millions of keys its hash map spills: 1M -> 4M documents
    # took 6.8x the time with it, 3.5x without (bench/predictive_strength.py, 2 cores).
    per_doc = (
        losses.select("doc_id", "model_id", "bpc")
        .where(F.col("model_id").isin(model_ids))
        .repartition("doc_id")
        .groupBy("doc_id")
        .agg(*aggregates)
    )

    def loss(index: int) -> Column:
        return F.col(f"_bpc{index}")

    def rows(index: int) -> Column:
        return F.col(f"_rows{index}")

    missing = F.array_compact(F.array(*[
        F.when(loss(k).isNull() & (rows(k) <= 1), F.lit(model_id))
        for k, model_id in enumerate(model_ids)
    ]))
    duplicated = F.array_compact(F.array(*[
        F.when(rows(k) > 1, F.lit(model_id)) for k, model_id in enumerate(model_ids)
    ]))
    with_loss = reduce(operator.add, [
        (loss(k).isNotNull() & (rows(k) == 1)).cast("int") for k in range(n_models)
    ])
    # A weaker model with strictly higher loss; `>` on equal losses is false, so ties count 0.
    concordant = reduce(operator.add, [
        (loss(i) > loss(j)).cast("int") for i, j in ordered_model_pairs(ranking)
    ], F.lit(0))

    flagged = per_doc.select(
        "doc_id",
        concordant.alias("concordant_pairs"),
        with_loss.alias("n_models_with_loss"),
        missing.alias("missing_models"),
        duplicated.alias("duplicate_models"),
    )
    complete = F.col("n_models_with_loss") == F.lit(n_models)
    scored = flagged.where(complete).select(
        "doc_id",
        (F.col("concordant_pairs") / F.lit(float(n_pairs))).alias("ps"),
        F.col("concordant_pairs").cast("int").alias("concordant_pairs"),
        F.lit(n_models).cast("int").alias("n_models"),
    )
    unscored = flagged.where(~complete).select(
        "doc_id", "n_models_with_loss", "missing_models", "duplicate_models"
    )
    return PredictiveStrength(scored, unscored, tuple(model_ids), n_pairs)


def select_training_sample(
    ps: DataFrame,
    docs: DataFrame,
    *,
    positive_threshold: float = 1.0,
    max_per_class: int = 200_000,
    max_collect_bytes: int = 512 * 1024 * 1024,
    seed: int = 0,
    positive_label: str = "__label__1",
    negative_label: str = "__label__0",
) -> pd.DataFrame:
    """Balanced fastText training sample: pandas DataFrame[doc_id, text, label, ps].

    Positives: ps >= positive_threshold; negatives: the lowest-ps documents below it; n per class
    = min(#positives, #documents below the threshold, max_per_class). Ties at the negatives'
    boundary level, and positives beyond the cap, are drawn by a seeded hash of doc_id through a
    top-n (never a global sort of the corpus). ps takes at most Z+1 values, so the boundary comes
    from an exact histogram. If the selected texts exceed `max_collect_bytes` (UTF-8), both
    classes are down-sampled by the same count (logged) before the collect. Rows with a null ps
    are unscored and ignored.
    """
    _require_columns(ps, "ps", ("doc_id", "ps"))
    _require_columns(docs, "docs", ("doc_id", "text"))
    if max_per_class < 1 or max_collect_bytes < 1:
        raise ValueError("max_per_class and max_collect_bytes must be positive")
    scored = ps.where(F.col("ps").isNotNull()).select(
        "doc_id", "ps", F.xxhash64(F.col("doc_id"), F.lit(seed)).alias("_key")
    )
    histogram = _ps_histogram(scored)
    n_positive = sum(count for value, count in histogram if value >= positive_threshold)
    below = [(value, count) for value, count in histogram if value < positive_threshold]
    n_per_class = min(n_positive, sum(count for _, count in below), max_per_class)
    if n_per_class == 0:
        raise ValueError(
            f"no balanced sample: {n_positive} documents with ps >= {positive_threshold} and "
            f"{sum(count for _, count in below)} below it"
        )

    positives = scored.where(F.col("ps") >= positive_threshold)
    if n_per_class < n_positive:
        positives = positives.orderBy("_key").limit(n_per_class)
    boundary, n_from_boundary, boundary_size = _negative_boundary(below, n_per_class)
    negatives = scored.where(F.col("ps") < boundary)
    at_boundary = scored.where(F.col("ps") == boundary)
    if n_from_boundary < boundary_size:
        at_boundary = at_boundary.orderBy("_key").limit(n_from_boundary)
    negatives = negatives.unionByName(at_boundary)
    labelled = positives.withColumn("label", F.lit(positive_label)).unionByName(
        negatives.withColumn("label", F.lit(negative_label))
    )
    selection = labelled.join(docs.select("doc_id", "text"), "doc_id", "left").persist()
    try:
        _check_texts(selection, n_per_class)
        labels = (positive_label, negative_label)
        n_keep = _count_within_bytes(selection, n_per_class, max_collect_bytes, labels)
        if n_keep < n_per_class:
            selection = _first_by_key(selection, n_keep, labels)
        sample = selection.select("doc_id", "text", "label", "ps").toPandas()
    finally:
        selection.unpersist()
    n_below = sum(count for _, count in below)
    # What the balanced cut used and left out, for the job report (pandas keeps attrs on the frame).
    sample.attrs["counts"] = {
        "scored": n_positive + n_below,
        "positives_available": n_positive,
        "negatives_available": n_below,
        "per_class": n_keep,
        "positives_unused": n_positive - n_keep,
        "negatives_unused": n_below - n_keep,
        "per_class_before_byte_cap": n_per_class,
    }
    return sample


def _ps_histogram(scored: DataFrame) -> list[tuple[float, int]]:
    rows = (
        scored.groupBy("ps").count().orderBy("ps").limit(MAX_DISTINCT_PS_VALUES + 1).collect()
    )
    if len(rows) > MAX_DISTINCT_PS_VALUES:
        raise ValueError(
            f"ps has more than {MAX_DISTINCT_PS_VALUES} distinct values: expected the output of "
            "compute_predictive_strength (multiples of 1/Z)"
        )
    return [(float(value), int(count)) for value, count in rows]


def _negative_boundary(below: list[tuple[float, int]], n: int) -> tuple[float, int, int]:
    """The ps level where the n lowest documents end, how many to take from it, and its size."""
    taken = 0
    for value, count in below:  # ascending ps
        if taken + count >= n:
            return value, n - taken, count
        taken += count
    raise AssertionError("n exceeds the documents below the threshold")  # guarded by the caller


def _check_texts(selection: DataFrame, n_per_class: int) -> None:
    stats = selection.groupBy("label").agg(
        F.count(F.lit(1)).alias("rows"), F.count("text").alias("with_text")
    ).collect()
    for label, n_rows, with_text in stats:
        if n_rows > n_per_class:
            raise ValueError(f"docs has duplicate doc_id values ({label}: {n_rows} rows for "
                             f"{n_per_class} selected documents)")
        if with_text < n_rows:
            raise ValueError(
                f"{n_rows - with_text} selected {label} documents have no text in docs "
                "(doc_id absent or text null)"
            )


def _count_within_bytes(
    selection: DataFrame, n_per_class: int, max_bytes: int, labels: tuple[str, str]
) -> int:
    """Largest per-class count, in hash-key order, whose texts fit in max_bytes."""
    n_keep = n_per_class
    candidate = selection
    for _ in range(8):
        size = candidate.agg(F.coalesce(F.sum(F.octet_length("text")), F.lit(0))).first()[0]
        if size <= max_bytes:
            if n_keep < n_per_class:
                log.warning(
                    "training sample down-sampled from %d to %d documents per class to stay "
                    "under max_collect_bytes=%d", n_per_class, n_keep, max_bytes)
            return n_keep
        # Shrink in proportion, with a margin because the kept documents' sizes vary.
        n_keep = int(n_keep * max_bytes / size * 0.97)
        if n_keep < 1:
            break
        candidate = _first_by_key(selection, n_keep, labels)
    raise ValueError(
        f"the training sample does not fit in max_collect_bytes={max_bytes}: raise it or "
        "lower max_per_class"
    )


def _first_by_key(selection: DataFrame, n: int, labels: tuple[str, str]) -> DataFrame:
    """The n lowest-key rows of each label (a top-n per label over the persisted selection)."""
    parts = [selection.where(F.col("label") == label).orderBy("_key").limit(n) for label in labels]
    return reduce(DataFrame.unionByName, parts)


def _require_columns(frame: DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; has {frame.columns}")


PREDICTIVE_STRENGTH_TABLE = "predictive_strength"


def run(spark, cfg):
    """model_losses ⋈ declared benchmark scores → `predictive_strength`; documents lacking a
    model's loss go to the quarantine with the models they miss."""
    from pyspark import StorageLevel

    from jobs.core.base import JobReport, lake_for, write_quarantine
    from jobs.core.config import declared_models

    lake = lake_for(spark, cfg)
    losses = lake.read("model_losses")
    models = spark.createDataFrame(
        [(s.model_id, float(s.benchmark_score)) for s in declared_models(cfg)],
        "model_id string, benchmark_score double",
    )
    result = compute_predictive_strength(losses, models)
    scored = result.scored.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        written = lake.write(scored, PREDICTIVE_STRENGTH_TABLE)
        reason = F.concat(
            F.lit("missing_model_loss: "),
            F.array_join(F.array_union(F.col("missing_models"), F.col("duplicate_models")), ","),
        )
        quarantined = write_quarantine(
            lake,
            result.unscored.select(F.col("doc_id").alias("raw"),
                                   F.lit("model_losses").alias("source"), reason.alias("reason")),
            "predictive_strength",
        )
        perfect = lake.read(PREDICTIVE_STRENGTH_TABLE).where(F.col("ps") >= 1.0).count()
    finally:
        scored.unpersist()
    rows_in = losses.where(F.col("model_id").isin(list(result.model_order))).select(
        "doc_id").distinct().count()
    return JobReport(
        "predictive_strength", rows_in, written.rows, quarantined,
        tables={PREDICTIVE_STRENGTH_TABLE: written.path},
        details={"model_order (weakest first)": " < ".join(result.model_order),
                 "pairs": result.n_pairs, "documents with ps == 1": perfect},
    ).check_invariant()
