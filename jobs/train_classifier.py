"""train_classifier: PreSelect's fastText classifier from `predictive_strength` + `documents`.

Positives are documents with PS >= `preselect.positive_threshold` (1.0: every model pair ordered
like the benchmarks), negatives the lowest-PS documents, balanced and capped; the sample is
collected to the driver within `preselect.max_collect_bytes` and trained with the recipe's
settings. Writes `<preselect.model_dir>/model.bin` and `metadata.json`.
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from jobs.core.base import JobReport, lake_for
from jobs.core.config import Config
from jobs.fasttext_train import train_classifier
from jobs.predictive_strength import PREDICTIVE_STRENGTH_TABLE, select_training_sample

JOB = "train_classifier"


def run(spark: SparkSession, cfg: Config) -> JobReport:
    settings = cfg.preselect
    lake = lake_for(spark, cfg)
    ps = lake.read(PREDICTIVE_STRENGTH_TABLE)
    docs = lake.read("documents")
    sample = select_training_sample(
        ps, docs, positive_threshold=settings.positive_threshold,
        max_per_class=settings.max_per_class, max_collect_bytes=settings.max_collect_bytes,
        seed=settings.seed, positive_label=cfg.score.fasttext_positive_label,
    )
    metadata = train_classifier(
        sample[["text", "label"]], out_dir=settings.model_dir, epoch=settings.epoch, lr=settings.lr,
        word_ngrams=settings.word_ngrams, dim=settings.dim, min_count=settings.min_count,
        bucket=settings.bucket, thread=settings.thread, holdout_fraction=settings.holdout_fraction,
        seed=settings.seed, positive_label=cfg.score.fasttext_positive_label,
    )
    holdout = metadata.get("holdout", {})
    counts = sample.attrs["counts"]
    return JobReport(
        JOB, counts["scored"], len(sample), rows_filtered=counts["scored"] - len(sample),
        filtered_label="not sampled",
        tables={"model": f"{settings.model_dir}/model.bin"},
        details={
            "positives (ps >= positive_threshold)": (
                f"{counts['per_class']:,} used of {counts['positives_available']:,}; "
                f"{counts['positives_unused']:,} left out to balance the classes"
            ),
            "negatives (lowest ps)": (
                f"{counts['per_class']:,} used of {counts['negatives_available']:,} below "
                f"the threshold; {counts['negatives_unused']:,} left out"
            ),
            "capped by": _cap_reason(counts, settings.max_per_class),
            "holdout_accuracy": holdout.get("accuracy"),
            "holdout_auc": holdout.get("auc"),
        },
    ).check_invariant()


def _cap_reason(counts: dict, max_per_class: int) -> str:
    if counts["per_class"] < counts["per_class_before_byte_cap"]:
        return "preselect.max_collect_bytes (the texts did not fit)"
    if counts["per_class"] == max_per_class:
        return "preselect.max_per_class"
    if counts["positives_available"] <= counts["negatives_available"]:
        return "the number of positives"
    return "the number of documents below preselect.positive_threshold"
