"""ZIP selection on Spark: group documents, run the greedy per group on executors, optionally run
it again over the union of the groups' picks, and compare the selection's compression ratio with a
random subset of the same size.

Transforms only: reading `curated`/`documents` and writing `zip_selection` belong to `run`.

Each group is one pandas DataFrame on one executor and ZIP is sequential within it, so choose
groups that fit in an executor's memory and keep each greedy short (the cost of a group is about
(budget / k3) * (k1 + k2 * k3) compressions of one document). On a raw pool ZIP favours
incompressible junk (shared/NOTES.md): run it inside quality buckets
(`group_column="quality_bucket"`) or after a quality filter.
"""

from __future__ import annotations

from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from udfs.zip_greedy import Backend, Serialization
from udfs.zip_udf import (
    LIST_SIZE_SCHEMA,
    UNION_GROUP,
    ZIP_SELECTION_SCHEMA,
    BudgetUnit,
    make_list_size_fn,
    make_zip_group_selector,
    proportional,
)

NULL_GROUP = "__null__"


def assign_groups(
    docs: DataFrame, n_groups: int | None = None, group_column: str | None = None
) -> DataFrame:
    """`docs` with a string column `group`.

    `group_column` (e.g. "source", "domain", "quality_bucket") wins when given; nulls in it form the
    group "__null__". Otherwise doc_id is hashed (xxhash64) into `n_groups` groups "0".."n-1";
    with neither, every document is in group "0".
    """
    _require_columns(docs, ["doc_id"])
    if group_column is not None:
        _require_columns(docs, [group_column])
        value = F.coalesce(F.col(group_column).cast("string"), F.lit(NULL_GROUP))
    else:
        n = 1 if n_groups is None else n_groups
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n_groups must be a positive integer, got {n_groups!r}")
        value = F.pmod(F.xxhash64(F.col("doc_id")), F.lit(n)).cast("string")
    return docs.withColumn("group", value)


def select_zip(
    docs: DataFrame,
    *,
    k1: int,
    k2: int,
    k3: int,
    backend: Backend = "zlib9",
    zstd_level: int = 3,
    n_groups: int | None = None,
    group_column: str | None = None,
    budget_fraction: float = 0.1,
    budget_unit: BudgetUnit = "documents",
    second_pass: bool = False,
    second_pass_oversample: float = 2.0,
    serialization: Serialization = "text",
) -> DataFrame:
    """The zip_selection rows (doc_id, group, round, stage, rank) for `docs` (doc_id, text, ...).

    First pass (stage "group"): each group selects ceil(budget_fraction * its documents), or
    ceil(budget_fraction * its characters) with budget_unit="characters".
    With `second_pass`, the first pass over-selects by `second_pass_oversample` and ZIP runs again
    over the union of those picks (stage "union", group "__all__") for budget_fraction of the
    whole input; both stages are returned, the union rows being the final selection. The first
    pass is then persisted (it feeds both outputs) and the input totals are computed eagerly.
    `serialization="sharegpt"` reads `text` as one JSON ShareGPT record per document and
    serialises lists as the reference does.
    """
    _require_columns(docs, ["doc_id", "text"])
    if not 0 < budget_fraction <= 1:
        raise ValueError(f"budget_fraction must be in (0, 1], got {budget_fraction}")
    if second_pass and second_pass_oversample < 1:
        raise ValueError(f"second_pass_oversample must be >= 1, got {second_pass_oversample}")
    settings: dict[str, Any] = dict(
        k1=k1, k2=k2, k3=k3, budget_unit=budget_unit, backend=backend, zstd_level=zstd_level,
        serialization=serialization,
    )
    first_fraction = min(1.0, budget_fraction * second_pass_oversample) if second_pass else (
        budget_fraction
    )
    first_selector = make_zip_group_selector(
        budget_fraction=first_fraction, stage="group", **settings
    )
    grouped = assign_groups(docs, n_groups, group_column).select("doc_id", "text", "group")
    first = grouped.groupBy("group").applyInPandas(first_selector, ZIP_SELECTION_SCHEMA)
    if not second_pass:
        return first

    totals = grouped.agg(
        F.count(F.lit(1)).alias("docs"), F.sum(F.length("text")).alias("chars")
    ).first()
    input_size = int(totals["docs"] if budget_unit == "documents" else (totals["chars"] or 0))
    union_selector = make_zip_group_selector(
        budget_total=proportional(budget_fraction, input_size), stage="union", **settings
    )
    first = first.persist(StorageLevel.MEMORY_AND_DISK)
    union_pool = (
        first.select("doc_id")
        .join(grouped.select("doc_id", "text"), "doc_id")
        .withColumn("group", F.lit(UNION_GROUP))
    )
    second = union_pool.groupBy("group").applyInPandas(union_selector, ZIP_SELECTION_SCHEMA)
    return first.unionByName(second)


def selection_ratio_report(
    docs: DataFrame,
    selection: DataFrame,
    seed: int,
    *,
    backend: Backend = "zlib9",
    zstd_level: int = 3,
    serialization: Serialization = "text",
    n_groups: int | None = None,
    group_column: str | None = None,
) -> dict[str, Any]:
    """Compression ratio of the final selection against a random subset of the same size.

    The final selection is the "union" stage when present, else the "group" stage. Each selection
    group is compressed as one list in pick order; its random counterpart is the same number of
    non-empty documents drawn (by a seeded hash of doc_id) from the same group, regrouped with the
    same `n_groups` / `group_column` as the selection, or from all documents for the union.
    Ratios are total raw bytes / total compressed bytes over the groups (higher = more redundant).
    """
    _require_columns(docs, ["doc_id", "text"])
    _require_columns(selection, ["doc_id", "group", "round", "stage", "rank"])
    stages = {row["stage"] for row in selection.select("stage").distinct().collect()}
    final_stage = "union" if "union" in stages else "group"
    chosen = selection.filter(F.col("stage") == final_stage)
    chosen = chosen.select("doc_id", "group", "round", "rank")
    texts = docs.select("doc_id", "text")
    picked = chosen.join(texts, "doc_id").select(
        "group", "doc_id", "text",
        (F.col("round").cast("long") * (1 << 31) + F.col("rank")).alias("order"),
    )
    shuffle_key = F.xxhash64(F.col("doc_id"), F.lit(int(seed)))
    pool = docs.filter(F.length("text") > 0)
    counts = {row["group"]: row["count"] for row in chosen.groupBy("group").count().collect()}
    if final_stage == "union":
        drawn = (
            pool.select("doc_id", "text", shuffle_key.alias("order"))
            .orderBy("order", "doc_id")
            .limit(sum(counts.values()))
            .withColumn("group", F.lit(UNION_GROUP))
        )
    else:
        grouped = assign_groups(pool, n_groups, group_column).select(
            "doc_id", "text", "group", shuffle_key.alias("order")
        )
        known = {row["group"] for row in grouped.select("group").distinct().collect()}
        unknown = sorted(set(counts) - known)
        if unknown:
            raise ValueError(
                f"selection groups {unknown[:5]} do not occur when grouping docs with "
                f"n_groups={n_groups}, group_column={group_column!r}; pass the selection's grouping"
            )
        wanted = docs.sparkSession.createDataFrame(
            list(counts.items()), "`group` string, wanted long"
        )
        rank = F.row_number().over(Window.partitionBy("group").orderBy("order", "doc_id"))
        drawn = (
            grouped.join(F.broadcast(wanted), "group")
            .withColumn("position", rank)
            .filter(F.col("position") <= F.col("wanted"))
            .select("group", "doc_id", "text", "order")
        )
    list_size = make_list_size_fn(
        backend=backend, zstd_level=zstd_level, serialization=serialization
    )
    selected = _sum_sizes(picked, list_size)
    random = _sum_sizes(drawn.select("group", "doc_id", "text", "order"), list_size)
    reduction = None
    if selected["ratio"] and random["ratio"]:
        reduction = 1 - selected["ratio"] / random["ratio"]
    return {
        "backend": backend,
        "stage": final_stage,
        "seed": int(seed),
        "n_groups": len(counts),
        "selected_docs": selected["docs"],
        "selected_raw_bytes": selected["raw"],
        "selected_ratio": selected["ratio"],
        "random_docs": random["docs"],
        "random_raw_bytes": random["raw"],
        "random_ratio": random["ratio"],
        "ratio_reduction": reduction,
    }


def _sum_sizes(lists: DataFrame, list_size: Any) -> dict[str, Any]:
    rows = lists.groupBy("group").applyInPandas(list_size, LIST_SIZE_SCHEMA).collect()
    raw = sum(int(r["raw_bytes"]) for r in rows)
    compressed = sum(int(r["compressed_bytes"]) for r in rows)
    return {
        "docs": sum(int(r["n_docs"]) for r in rows),
        "raw": raw,
        "ratio": raw / compressed if compressed else None,
    }


def _require_columns(df: DataFrame, names: list[str]) -> None:
    missing = [name for name in names if name not in df.columns]
    if missing:
        raise ValueError(f"input DataFrame lacks column(s) {missing}; it has {df.columns}")


ZIP_SELECTION_TABLE = "zip_selection"


def run(spark, cfg):
    """Read `zip.source_table`, select per group, write `zip_selection`, report ratio vs random."""
    from jobs.core.base import JobReport, lake_for
    from jobs.prefilter import passed_documents

    settings = cfg.zip
    lake = lake_for(spark, cfg)
    # `curated` holds passed documents already; `documents` is narrowed to them here.
    docs = (passed_documents(lake, cfg) if settings.source_table == "documents"
            else lake.read(settings.source_table))
    group_column = settings.group_column
    if group_column is not None and group_column not in docs.columns:
        from jobs.core.config import ConfigError

        raise ConfigError(
            f"{cfg.source}: zip.group_column: {group_column!r} is not a column of "
            f"{settings.source_table!r} (columns: {docs.columns})"
        )
    selection = select_zip(
        docs, k1=settings.k1, k2=settings.k2, k3=settings.k3, backend=settings.backend,
        zstd_level=settings.zstd_level, n_groups=settings.n_groups, group_column=group_column,
        budget_fraction=settings.budget_fraction, budget_unit=settings.budget_unit,
        second_pass=settings.second_pass, second_pass_oversample=settings.second_pass_oversample,
        serialization=settings.serialization,
    )
    written = lake.write(selection, ZIP_SELECTION_TABLE)
    stored = lake.read(ZIP_SELECTION_TABLE)
    report = selection_ratio_report(
        docs, stored, settings.seed, backend=settings.backend, zstd_level=settings.zstd_level,
        serialization=settings.serialization, n_groups=settings.n_groups, group_column=group_column,
    )
    rows_in = docs.count()
    final = stored.where(F.col("stage") == report["stage"]).select("doc_id")
    selected = final.distinct().count()
    not_selected = docs.select("doc_id").join(final, "doc_id", "left_anti").count()
    return JobReport(
        "zip_select", rows_in, selected, rows_filtered=not_selected, filtered_label="not selected",
        tables={ZIP_SELECTION_TABLE: written.path},
        details={
            "selection_rows (all stages)": written.rows,
            "final_stage": report["stage"],
            "selected_ratio": report["selected_ratio"],
            "random_ratio": report["random_ratio"],
            "ratio_reduction_vs_random": report["ratio_reduction"],
        },
    ).check_invariant()
