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
    return chain_report(steps, reports)


def chain_report(steps: list[str], reports: list[JobReport]) -> JobReport:
    """Records in = rows the last step wrote + rows quarantined + rows left out on the way.

    That holds when the steps form one document flow: each step counts its input as an earlier
    step's input or output (ingest → prefilter → score → bucketize → mixture). The demo builders
    make inputs, not lake rows, and stay out of it, as do steps that move no rows (`report`).
    Steps on a side branch (lm_loss scores a sample under several models) break the flow; the
    headline is then the last step's own.
    """
    flow = [r for s, r in zip(steps, reports, strict=True)
            if not JOBS[s].startswith("jobs.demo.") and (r.rows_in or r.rows_out)]
    flow = flow or reports
    first, last = flow[0], flow[-1]
    tables = {k: v for r in reports for k, v in r.tables.items()}
    details = {"steps": " -> ".join(steps)}
    quarantined = sum(r.rows_quarantined for r in flow)
    left_out = first.rows_in - last.rows_out - quarantined
    one_flow = left_out >= 0 and all(
        any(r.rows_in in (e.rows_in, e.rows_out) for e in flow[:i]) for i, r in enumerate(flow) if i
    )
    if not one_flow:
        details["counts"] = (f"those of the last step ({last.job}): the steps are not one "
                             "document flow; see each step's report above")
        details["quarantined along the chain"] = quarantined
        return JobReport(
            "pipeline", last.rows_in, last.rows_out, last.rows_quarantined,
            rows_filtered=last.rows_filtered, filtered_label=last.filtered_label,
            tables=tables, details={**details, **last.details},
        ).check_invariant()
    labels = dict.fromkeys(r.filtered_label for r in flow if r.rows_filtered)
    return JobReport(
        "pipeline", first.rows_in, last.rows_out, quarantined, rows_filtered=left_out,
        filtered_label=" or ".join(labels) or "filtered", tables=tables,
        details={**details, **last.details},
    ).check_invariant()
