"""Job names → modules, what each reads and writes, and the config keys it uses.

Modules are imported lazily so `siftlake ingest` never imports torch. `TABLE_WRITERS` (derived
from `tables`) lets a missing-table error name the job to run first.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class JobSpec:
    target: str  # module[:function]; the function defaults to run(spark, cfg)
    summary: str
    reads: str
    writes: str
    tables: tuple[str, ...] = ()  # lake tables this job is the one to run for
    keys: tuple[str, ...] = ()  # config sections or dotted keys (besides spark.* and lake.*)


PASSED = "prefilter.enabled"  # jobs reading "passed documents" (prefilter.passed_documents)

JOB_SPECS: dict[str, JobSpec] = {
    "demo_corpus": JobSpec(
        "jobs.demo.corpus", "build the offline demo corpus", "Python's stdlib",
        "`demo.corpus_dir/*.jsonl`", keys=("demo",)),
    "demo_target": JobSpec(
        "jobs.demo.corpus:run_target", "build only the demo target set (trusted clean text)",
        "Python's stdlib", "`demo.target_dir/target.jsonl`", keys=("demo",)),
    "ingest": JobSpec(
        "jobs.ingest", "read raw records into `documents`; bad ones go to `quarantine`",
        "JSONL / Parquet / Delta (`ingest.paths`, globs)", "`documents`, `quarantine`",
        ("documents", "quarantine"), ("ingest",)),
    "prefilter": JobSpec(
        "jobs.prefilter", "heuristic pre-filter statistics and verdicts", "`documents`",
        "`prefilter` (statistics, passed, filter_reason, failed_rules)", ("prefilter",),
        ("prefilter",)),
    "score": JobSpec(
        "jobs.score", "zstd ratio and fastText score per document", "passed `documents`",
        "`scores` (doc_id, n_chars, zstd_ratio, fasttext_score)", ("scores",),
        ("score", "preselect.model_dir", PASSED)),
    "bucketize": JobSpec(
        "jobs.bucketize", "quality buckets of equal character mass", "passed `documents` + "
        "`scores`", "`curated`, partitioned by `quality_bucket`", ("curated",),
        ("bucketize", PASSED)),
    "demo_models": JobSpec(
        "jobs.demo.references", "train k small reference LMs and the Grad-Mimic run for the "
        "demo", "passed `documents` + `preselect.target_paths`",
        "k small causal LMs + `models.yaml` under `demo_models.out_dir`", keys=("demo_models", "preselect.target_paths")),
    "lm_loss": JobSpec(
        "jobs.lm_loss", "bits per character of each reference model", "passed `documents` "
        "(sampled), models from config", "`model_losses`, partitioned by `model_id`",
        ("model_losses",), ("lm_loss", PASSED)),
    "predictive_strength": JobSpec(
        "jobs.predictive_strength", "PreSelect's predictive strength per document",
        "`model_losses` + benchmark scores", "`predictive_strength`", ("predictive_strength",),
        ("lm_loss.models", "lm_loss.models_manifest")),
    "train_classifier": JobSpec(
        "jobs.train_classifier", "PreSelect's fastText classifier",
        "`predictive_strength` + `documents`", "fastText `model.bin` + `metadata.json`",
        keys=("preselect", "score.fasttext_positive_label")),
    "zip_select": JobSpec(
        "jobs.zip_select", "ZIP's entropy-law greedy selection", "`curated` (or `documents`)",
        "`zip_selection`", ("zip_selection",), ("zip", PASSED)),
    "demo_curves": JobSpec(
        "jobs.demo.curves", "observations from tiny training runs per bucket", "`curated`",
        "observations CSV", keys=("mixture",)),
    "mixture": JobSpec(
        "jobs.mixture", "compute-aware mixture over the quality buckets",
        "`curated` + observations", "`mixture_plan`, `mixture`, PNG plots",
        ("mixture_plan", "mixture"), ("mixture", "lake.artifacts")),
    "mimic": JobSpec(
        "jobs.mimic", "Grad-Mimic scores per checkpoint", "passed `documents` + checkpoints",
        "`mimic_scores`", ("mimic_scores",), ("mimic", PASSED)),
    "mimic_aggregate": JobSpec(
        "jobs.mimic:run_aggregate", "combine the checkpoints' Grad-Mimic votes",
        "`mimic_scores`", "`mimic_aggregate` (usable by `bucketize`)", ("mimic_aggregate",),
        ("mimic",)),
    "maintain": JobSpec(
        "jobs.maintain", "compact small files, VACUUM, clear what killed writes left",
        "every table under `lake.root` (or `maintain.tables`)", "the same tables, compacted",
        keys=("maintain",)),
    "report": JobSpec(
        "jobs.report", "one self-contained HTML page of the lake", "every table present",
        "`<lake.artifacts>/report/index.html` + PNGs", keys=("report", "lake.artifacts")),
    "pipeline": JobSpec(
        "jobs.pipeline", "run `pipeline.steps` in order", "—", "what each step writes",
        keys=("pipeline",)),
}

JOBS: dict[str, str] = {name: spec.target for name, spec in JOB_SPECS.items()}

TABLE_WRITERS: dict[str, str] = {
    table: name for name, spec in JOB_SPECS.items() for table in spec.tables
}


def job_runner(name: str):
    if name not in JOBS:
        raise KeyError(f"unknown job {name!r}; known: {', '.join(JOBS)}")
    module, _, function = JOBS[name].partition(":")
    return getattr(importlib.import_module(module), function or "run")
