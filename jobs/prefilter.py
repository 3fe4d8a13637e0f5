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
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.core.base import JobReport, lake_for
from jobs.core.config import Config, ConfigError
from jobs.core.incremental import plan_output, without_result
from jobs.core.lake import Lake
from jobs.ingest import DOCUMENTS_TABLE
from jobs.prefilter_rules import RULE_NAMES, active_rules, apply_rules
from udfs.prefilter import STATISTIC_NAMES, make_prefilter_udf

PREFILTER_TABLE = "prefilter"
JOB = "prefilter"
FILTERED_LABEL = "filtered by rules"
KEY_COLUMNS = ("doc_id", "source", "n_chars")
VERDICT_COLUMNS = ("passed", "filter_reason", "failed_rules")
NO_SOURCE = "<no source>"


def measure(docs: DataFrame) -> DataFrame:
    """doc_id, source, n_chars and one column per statistic, from one UDF call per document."""
    statistics = make_prefilter_udf()(F.col("text")).alias("statistics")
    measured = docs.select(*KEY_COLUMNS, statistics)
    fields = [F.col(f"statistics.{name}").alias(name) for name in STATISTIC_NAMES]
    return measured.select(*KEY_COLUMNS, *fields)


def prefilter_table(statistics: DataFrame, cfg: Config) -> DataFrame:
    judged = apply_rules(statistics, cfg.prefilter)
    return judged.select(*KEY_COLUMNS, *STATISTIC_NAMES, *VERDICT_COLUMNS)


def stored_statistics(lake: Lake, cfg: Config) -> DataFrame:
    if not lake.exists(PREFILTER_TABLE):
        raise ConfigError(
            f"{cfg.source}: prefilter.rethreshold: there is no `prefilter` table to re-threshold "
            "yet; run `siftlake prefilter` with prefilter.rethreshold: false first"
        )
    stored = lake.read(PREFILTER_TABLE)
    missing = [c for c in (*KEY_COLUMNS, *STATISTIC_NAMES) if c not in stored.columns]
    if missing:
        raise ConfigError(
            f"{cfg.source}: prefilter.rethreshold: the stored `prefilter` table lacks {missing} "
            "(written by an older siftlake); run `siftlake prefilter` with "
            "prefilter.rethreshold: false to measure them"
        )
    return stored.select(*KEY_COLUMNS, *STATISTIC_NAMES)


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
    if settings.rethreshold:
        statistics, rows_in = stored_statistics(lake, cfg), lake.count(PREFILTER_TABLE)
    else:
        docs, rows_in = lake.read(DOCUMENTS_TABLE), lake.count(DOCUMENTS_TABLE)
        if plan.append:
            docs = without_result(docs, lake.read(PREFILTER_TABLE))
        statistics = measure(docs)
    written = lake.write(
        prefilter_table(statistics, cfg), PREFILTER_TABLE, mode=plan.mode,
        read_version=plan.read_version, unique_key=["doc_id"], metadata=plan.metadata,
    )
    rates = filter_rates(lake.read(PREFILTER_TABLE))
    passed = int(rates.loc[rates["rule"].isna(), "passed"].sum())
    details = {
        "prefilter rows written (every document's verdict)": written.rows,
        "rules": f"{len(active_rules(settings))} of families {', '.join(settings.families) or '-'}",
        "statistics": "re-used from the stored table" if settings.rethreshold else "measured",
        "run": f"{plan.reason}; {written.rows:,} documents judged now",
        **rate_details(rates),
    }
    return JobReport(
        JOB, rows_in, passed, rows_filtered=lake.count(PREFILTER_TABLE) - passed,
        filtered_label=FILTERED_LABEL, tables={PREFILTER_TABLE: written.path}, details=details,
    ).check_invariant()


# -- what later jobs start from ---------------------------------------------------------------

def _checked_verdicts(lake: Lake, cfg: Config) -> DataFrame:
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
    return lake.read(PREFILTER_TABLE)


def passed_documents(lake: Lake, cfg: Config) -> DataFrame:
    """`documents` restricted to those that passed the pre-filter (all when it is disabled)."""
    docs = lake.read(DOCUMENTS_TABLE)
    if not cfg.prefilter.enabled:
        return docs
    passed = _checked_verdicts(lake, cfg).where(F.col("passed")).select("doc_id")
    # A semi join against a narrow side (doc_id only, read from Parquet columns doc_id and
    # passed): Spark sizes it as the table's bytes scaled to those two columns, so up to a few
    # million documents it falls under spark.sql.autoBroadcastJoinThreshold and is broadcast:
    # the wide documents (text) are filtered where they are read, never shuffled. Beyond that
    # it becomes a sort-merge join, which adaptive execution turns back into a broadcast when
    # the passed ids prove small at run time. A forced broadcast hint would instead ship every
    # id to every executor however large the lake is.
    return docs.join(passed, "doc_id", "left_semi")


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
