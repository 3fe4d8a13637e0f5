"""Job names → modules; imported lazily so `siftlake ingest` never imports torch."""

from __future__ import annotations

import importlib

JOBS: dict[str, str] = {
    "demo_corpus": "jobs.demo.corpus",
    "demo_target": "jobs.demo.corpus:run_target",
    "ingest": "jobs.ingest",
    "prefilter": "jobs.prefilter",
    "score": "jobs.score",
    "bucketize": "jobs.bucketize",
    "demo_models": "jobs.demo.references",
    "lm_loss": "jobs.lm_loss",
    "predictive_strength": "jobs.predictive_strength",
    "train_classifier": "jobs.train_classifier",
    "zip_select": "jobs.zip_select",
    "demo_curves": "jobs.demo.curves",
    "mixture": "jobs.mixture",
    "mimic": "jobs.mimic",
    "mimic_aggregate": "jobs.mimic:run_aggregate",
    "pipeline": "jobs.pipeline",
}


def job_runner(name: str):
    if name not in JOBS:
        raise KeyError(f"unknown job {name!r}; known: {', '.join(JOBS)}")
    module, _, function = JOBS[name].partition(":")
    return getattr(importlib.import_module(module), function or "run")
