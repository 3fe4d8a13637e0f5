"""prefilter: `documents` → `prefilter` (doc_id, source, n_chars, every statistic, passed,
filter_reason, failed_rules), and the passed documents every later job starts from.

The statistics are measured in one scan by one Arrow UDF (udfs/prefilter.py) and stored; the
rules (jobs/prefilter_rules.py) only compare stored columns with config, so
`prefilter.rethreshold: true` re-applies changed thresholds without reading a document.
Documents that fail are valid input left out on purpose, not quarantine: reports count them as
filtered, per rule and per source. `prefilter.mode: incremental` measures only documents not in
`prefilter` yet and appends them while the recorded rules still hold (jobs/core/incremental.py).
"""

from __future__ import annotations

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.base import JobReport, lake_for, log
from jobs.core.config import Config, ConfigError, PrefilterSettings
from jobs.core.incremental import OutputPlan, Passed, new_rows, plan_output, stored_metadata
from jobs.core.lake import Lake
from jobs.ingest import DOCUMENTS_TABLE
from jobs.prefilter_dedup import (
    BANDS_COLUMN,
    DUPLICATE_OF_COLUMN,
    FLAG_COLUMN,
    near_duplicates,
    near_duplicates_of_few,
    with_near_duplicates,
)
from jobs.prefilter_rules import RULE_NAMES, active_rules, apply_rules, source_rules_lines
from udfs.minhash import SPARK_TYPE as BANDS_TYPE
from udfs.minhash import make_minhash_udf
from udfs.prefilter import STATISTIC_NAMES, make_prefilter_udf

PREFILTER_TABLE = "prefilter"
JOB = "prefilter"
FILTERED_LABEL = "filtered by rules"
KEY_COLUMNS = ("doc_id", "source", "n_chars")
DEDUP_COLUMNS = (BANDS_COLUMN, DUPLICATE_OF_COLUMN, FLAG_COLUMN)
VERDICT_COLUMNS = ("passed", "filter_reason", "failed_rules")
NO_SOURCE = "<no source>"


def dedup_active(settings: PrefilterSettings) -> bool:
    return "dedup" in settings.families


def minhash_settings(settings: PrefilterSettings) -> dict:
    """What the stored band keys depend on (the switch only decides what they mean)."""
    return settings.dedup.model_dump(exclude={"reject_near_duplicates"})


def measure(docs: DataFrame, settings: PrefilterSettings | None = None) -> DataFrame:
    """doc_id, source, n_chars, one column per statistic and the MinHash band keys (null when
    the dedup family is off), from one scan: both kernels see each batch of texts once."""
    statistics = make_prefilter_udf()(F.col("text")).alias("statistics")
    if settings is not None and dedup_active(settings):
        dedup = settings.dedup
        bands = make_minhash_udf(dedup.ngram, dedup.bands, dedup.rows_per_band, dedup.seed)(
            F.col("text"))
    else:
        bands = F.lit(None).cast(BANDS_TYPE)
    measured = docs.select(*KEY_COLUMNS, statistics, bands.alias(BANDS_COLUMN))
    fields = [F.col(f"statistics.{name}").alias(name) for name in STATISTIC_NAMES]
    return measured.select(*KEY_COLUMNS, *fields, BANDS_COLUMN)


def prefilter_table(statistics: DataFrame, cfg: Config) -> DataFrame:
    judged = apply_rules(statistics, cfg.prefilter)
    return judged.select(*KEY_COLUMNS, *STATISTIC_NAMES, *DEDUP_COLUMNS, *VERDICT_COLUMNS)


def judged_statistics(
    lake: Lake, docs: DataFrame, cfg: Config, append: bool
) -> tuple[DataFrame, DataFrame | None]:
    """Measured statistics with the near-duplicate columns, and what to unpersist after the
    write.

    The measured rows are narrow (no text) and are needed twice, by the band grouping and by
    the write; they are kept on local disk (never in memory) so the kernels run once.
    """
    measured = measure(docs, cfg.prefilter)
    if not dedup_active(cfg.prefilter):
        return measured.withColumn(DUPLICATE_OF_COLUMN, F.lit(None).cast("string")).withColumn(
            FLAG_COLUMN, F.lit(False)), None
    measured = measured.persist(StorageLevel.DISK_ONLY)
    stored, small = None, False
    if append:
        stored = lake.read(PREFILTER_TABLE).select("doc_id", BANDS_COLUMN)
        new_docs = lake.count(DOCUMENTS_TABLE) - lake.count(PREFILTER_TABLE)  # Delta statistics
        small = 16 * new_docs * cfg.prefilter.dedup.bands <= cfg.spark.incremental_broadcast_mb << 20
    if small:  # a day's batch: its band keys are collected, the stored ones searched for them
        found = near_duplicates_of_few(measured.select("doc_id", BANDS_COLUMN).toArrow(), stored)
        spark = lake.spark
        duplicates = F.broadcast(spark.createDataFrame(found) if found.num_rows else
                                 spark.createDataFrame([], "doc_id string, near_duplicate_of string"))
    else:
        duplicates = near_duplicates(measured.select("doc_id", BANDS_COLUMN), stored)
    return with_near_duplicates(measured, duplicates), measured


def stored_statistics(lake: Lake, cfg: Config) -> DataFrame:
    if not lake.exists(PREFILTER_TABLE):
        raise ConfigError(
            f"{cfg.source}: prefilter.rethreshold: there is no `prefilter` table to re-threshold "
            "yet; run `siftlake prefilter` with prefilter.rethreshold: false first"
        )
    stored = lake.read(PREFILTER_TABLE)
    columns = (*KEY_COLUMNS, *STATISTIC_NAMES, *DEDUP_COLUMNS)
    missing = [c for c in columns if c not in stored.columns]
    if missing:
        raise ConfigError(
            f"{cfg.source}: prefilter.rethreshold: the stored `prefilter` table lacks {missing} "
            "(written by an older siftlake); run `siftlake prefilter` with "
            "prefilter.rethreshold: false to measure them"
        )
    if dedup_active(cfg.prefilter):
        recorded = (stored_metadata(lake, PREFILTER_TABLE) or {}).get("settings", {})
        measured_with = recorded.get("dedup") if "dedup" in recorded.get("families", []) else None
        wanted = minhash_settings(cfg.prefilter)
        if measured_with is None or {k: measured_with.get(k) for k in wanted} != wanted:
            raise ConfigError(
                f"{cfg.source}: prefilter.rethreshold: the stored MinHash bands were measured "
                f"with {measured_with and {k: measured_with.get(k) for k in wanted}}, not the "
                f"configured prefilter.dedup {wanted}; run `siftlake prefilter` with "
                "prefilter.rethreshold: false to measure them"
            )
    return stored.select(*columns)


def filter_rates(table: DataFrame) -> pd.DataFrame:
    """Per source and rule: documents, documents failing the rule, and failing it first.

    One row per (source, rule) with failures, plus a row with rule = None per source carrying
    its document and passed counts. Sources that are null are reported as `NO_SOURCE`.
    """
    source = F.coalesce(F.col("source"), F.lit(NO_SOURCE)).alias("source")
    totals = table.groupBy(source).agg(
        F.count("*").alias("docs"), F.sum(F.col("passed").cast("long")).alias("passed")
    ).toPandas()
    per_rule = (
        table.select(source, F.posexplode("failed_rules").alias("position", "rule"))
        .groupBy("source", "rule")
        .agg(F.count("*").alias("failing"),
             F.sum((F.col("position") == 0).cast("long")).alias("first"))
        .toPandas()
    )
    totals["rule"] = None
    return pd.concat([totals, per_rule], ignore_index=True)


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def rate_details(rates: pd.DataFrame) -> dict[str, str]:
    """Report lines: each rule's filter rate overall, then each source's (rules in rule order)."""
    totals = rates[rates["rule"].isna()]
    per_rule = rates[rates["rule"].notna()]
    docs, passed = int(totals["docs"].sum()), int(totals["passed"].sum())
    details = {"passed": f"{passed:,} of {docs:,} ({_percent(passed, docs)})"}
    order = {name: i for i, name in enumerate(RULE_NAMES)}
    overall = per_rule.groupby("rule")[["failing", "first"]].sum()
    for rule in sorted(overall.index, key=order.get):
        failing, first = overall.loc[rule]
        details[f"rule {rule}"] = (
            f"fails {_percent(failing, docs)} ({int(failing):,}), "
            f"first failure {_percent(first, docs)} ({int(first):,})"
        )
    for row in totals.sort_values("source").itertuples():
        mine = per_rule[per_rule["source"] == row.source].copy()
        mine["order"] = mine["rule"].map(order)
        rules = "; ".join(
            f"{r.rule} {_percent(r.failing, row.docs)} (first {_percent(r.first, row.docs)})"
            for r in mine.sort_values("order").itertuples()
        )
        details[f"source {row.source}"] = (
            f"{int(row.docs):,} docs, passed {_percent(row.passed, row.docs)}"
            + (f"; {rules}" if rules else "")
        )
    return details


def rule_settings(cfg: Config) -> dict:
    """The rules the verdicts depend on (statistics are measured the same way for any rules)."""
    return cfg.prefilter.model_dump(exclude={"enabled", "mode", "rethreshold"})


def run(spark: SparkSession, cfg: Config) -> JobReport:
    lake = lake_for(spark, cfg)
    settings = cfg.prefilter
    mode = "full" if settings.rethreshold else settings.mode
    plan = plan_output(lake, PREFILTER_TABLE, mode, rule_settings(cfg), [DOCUMENTS_TABLE], JOB)
    kept = None
    if settings.rethreshold:
        statistics, rows_in = stored_statistics(lake, cfg), lake.count(PREFILTER_TABLE)
    else:
        rows_in = lake.count(DOCUMENTS_TABLE)
        docs = (new_rows(lake, plan, DOCUMENTS_TABLE, cfg.spark.incremental_broadcast_mb)
                if plan.append else lake.read(DOCUMENTS_TABLE, version=plan.inputs[DOCUMENTS_TABLE]))
        statistics, kept = judged_statistics(lake, docs, cfg, plan.append)
    try:
        written = lake.write(
            prefilter_table(statistics, cfg), PREFILTER_TABLE, mode=plan.mode,
            read_version=plan.read_version, unique_key=["doc_id"], metadata=plan.metadata,
        )
    finally:
        if kept is not None:
            kept.unpersist()
    rates = filter_rates(lake.read(PREFILTER_TABLE))
    passed = int(rates.loc[rates["rule"].isna(), "passed"].sum())
    source_lines = source_rules_lines(settings, sorted(set(rates["source"]) - {NO_SOURCE}))
    for line in source_lines:
        if "MATCHES NONE" in line:
            log.warning("prefilter: %s; check its globs against the sources in the report", line)
    details = {
        "prefilter rows written (every document's verdict)": written.rows,
        "rules": f"{len(active_rules(settings))} of families {', '.join(settings.families) or '-'}",
        "statistics": "re-used from the stored table" if settings.rethreshold else "measured",
        "run": f"{plan.reason}; {written.rows:,} documents judged now",
        **({"source rules": "; ".join(source_lines)} if source_lines else {}),
        **rate_details(rates),
    }
    return JobReport(
        JOB, rows_in, passed, rows_filtered=lake.count(PREFILTER_TABLE) - passed,
        filtered_label=FILTERED_LABEL, tables={PREFILTER_TABLE: written.path}, details=details,
    ).check_invariant()


# -- what later jobs start from ---------------------------------------------------------------

def _checked_verdicts(lake: Lake, cfg: Config) -> DataFrame:
    _check_verdicts(lake, cfg)
    return lake.read(PREFILTER_TABLE)


def _check_verdicts(lake: Lake, cfg: Config) -> None:
    """The pre-filter has judged every document, or a clear error."""
    if not lake.exists(PREFILTER_TABLE):
        raise ConfigError(
            f"{cfg.source}: prefilter.enabled: there is no `prefilter` table at "
            f"{lake.path(PREFILTER_TABLE)}; run `siftlake prefilter` first, or set "
            "prefilter.enabled: false to use every document"
        )
    judged, documents = lake.count(PREFILTER_TABLE), lake.count(DOCUMENTS_TABLE)
    if judged != documents:  # both counts come from the Delta logs: cheap
        raise ConfigError(
            f"{cfg.source}: prefilter.enabled: the `prefilter` table judges {judged:,} documents "
            f"but `documents` holds {documents:,}; rerun `siftlake prefilter` after ingest"
        )


def passed_documents(
    lake: Lake, cfg: Config, docs: DataFrame | None = None, versions: dict | None = None
) -> DataFrame:
    """`documents` (or `docs`, some of them) restricted to those that passed the pre-filter
    (all when it is disabled); `versions`: the versions of the tables to read (default the
    current ones)."""
    versions = versions or {}
    docs = lake.read(DOCUMENTS_TABLE, version=versions.get(DOCUMENTS_TABLE)) if docs is None \
        else docs
    if not cfg.prefilter.enabled:
        return docs
    _check_verdicts(lake, cfg)
    passed = lake.read(PREFILTER_TABLE, version=versions.get(PREFILTER_TABLE)) \
        .where(F.col("passed")).select("doc_id")
    # A semi join against a narrow side (doc_id only, read from Parquet columns doc_id and
    # passed): Spark sizes it as the table's bytes scaled to those two columns, so up to a few
    # million documents it falls under spark.sql.autoBroadcastJoinThreshold and is broadcast:
    # the wide documents (text) are filtered where they are read, never shuffled. Beyond that
    # it becomes a sort-merge join, which adaptive execution turns back into a broadcast when
    # the passed ids prove small at run time. A forced broadcast hint would instead ship every
    # id to every executor however large the lake is.
    return docs.join(passed, "doc_id", "left_semi")


def passed_documents_to_compute(lake: Lake, cfg: Config, plan: OutputPlan) -> DataFrame:
    """The passed documents a job computes now: in an append, only those without a row in its
    output table yet (a day's documents are checked against the verdicts by their ids alone,
    so neither the verdicts nor the documents are shuffled); otherwise all of them. Either way
    as of the input versions the plan records, so the results cover exactly those."""
    if not plan.append:
        return passed_documents(lake, cfg, versions=plan.inputs)
    within = None
    if cfg.prefilter.enabled:
        _check_verdicts(lake, cfg)
        within = Passed(lake, PREFILTER_TABLE, "passed", plan.since.get(PREFILTER_TABLE, -1))
    return new_rows(lake, plan, DOCUMENTS_TABLE, cfg.spark.incremental_broadcast_mb,
                    within=within)


def left_out_label(cfg: Config, sampled: bool) -> str:
    """What a job that may score a sample of the passed documents calls the rest."""
    reasons = [FILTERED_LABEL] if cfg.prefilter.enabled else []
    reasons += ["not sampled"] if sampled else []
    return " or ".join(reasons) or FILTERED_LABEL


def filtered_count(lake: Lake, cfg: Config) -> int:
    """Documents the pre-filter removed (0 when it is disabled), for later jobs' reports."""
    if not cfg.prefilter.enabled:
        return 0
    return _checked_verdicts(lake, cfg).where(~F.col("passed")).count()
