"""pipeline: the configured chain of jobs, end to end, each idempotent."""

from __future__ import annotations

from pyspark.sql import SparkSession

from jobs.core.base import JobReport, log, spark_stage
from jobs.core.config import Config, ConfigError
from jobs.core.registry import JOBS, job_runner


def run(spark: SparkSession, cfg: Config) -> JobReport:
    steps = cfg.pipeline.steps
    unknown = [s for s in steps if s not in JOBS or s == "pipeline"]
    if unknown:
        raise ConfigError(f"{cfg.source}: pipeline.steps: unknown steps {unknown}")
    reports = []
    for number, step in enumerate(steps, start=1):
        log.info("pipeline: running %s", step)
        with spark_stage(spark, f"siftlake pipeline {number}/{len(steps)}: {step}"):
            report = job_runner(step)(spark, cfg)
        print(report.summary(), flush=True)
        reports.append(report)
    quarantined = sum(r.rows_quarantined for r in reports)
    # The last job that moved rows (a closing `report` step writes none).
    last = next((r for r in reversed(reports) if r.rows_in), reports[-1])
    rows_in = next((r.rows_in for r in reports if r.rows_in), 0)
    # The last job's filtered rows are those left out along the chain (e.g. by the prefilter).
    return JobReport(
        "pipeline", rows_in, last.rows_out, quarantined,
        rows_filtered=last.rows_filtered, filtered_label=last.filtered_label,
        tables={k: v for r in reports for k, v in r.tables.items()},
        details={"steps": " -> ".join(steps), **(last.details if last else {})},
    )
