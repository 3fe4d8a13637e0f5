"""lm_loss job, transform side: reference-model losses of documents for one model.

`score_model_losses` builds the plan (documents -> one model_losses row per document) and
`sample_documents` picks a deterministic subset to score. The run() wrapper and the Delta
I/O (partition replace by model_id) live with the other jobs' I/O.
"""

from __future__ import annotations

import re

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.core.config import LMLossSettings, ModelSpec
from udfs.lm_loss import DEFAULT_MAX_TOKENS_PER_BATCH, LM_LOSS_SCHEMA, make_lm_loss_udf

MODEL_LOSSES_COLUMNS = ["doc_id", "model_id"] + LM_LOSS_SCHEMA.fieldNames()
# Spark percent-encodes other characters in partition folder names and convert_to_deltalake
# then records the encoded value (shared/NOTES.md), so model ids are restricted.
_MODEL_ID_PATTERN = re.compile(r"[a-z0-9_-]+")


def validate_model_id(model_id: str) -> str:
    """Return `model_id` when it is a safe partition value; otherwise raise with a suggestion."""
    if isinstance(model_id, str) and _MODEL_ID_PATTERN.fullmatch(model_id):
        return model_id
    suggestion = re.sub(r"[^a-z0-9_-]+", "-", str(model_id).lower()).strip("-") or "model-1"
    raise ValueError(
        f"model_id {model_id!r} is not a valid partition value: use only lowercase letters, "
        f"digits, '_' and '-' (for example {suggestion!r})"
    )


def score_model_losses(
    docs: DataFrame,
    *,
    model_id: str,
    path: str,
    dtype: str = "auto",
    window: int | None = None,
    stride: int | None = None,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
    text_col: str = "text",
) -> DataFrame:
    """doc_id, model_id, total_nll, n_tokens, n_chars, n_bytes, bpc, bits_per_byte, error.

    One row per input document; documents that cannot be scored keep their row with null scores
    and the reason in `error`.
    """
    validate_model_id(model_id)
    missing = [c for c in ("doc_id", text_col) if c not in docs.columns]
    if missing:
        raise ValueError(f"documents DataFrame lacks column(s) {missing}; it has {docs.columns}")
    text_type = docs.schema[text_col].dataType.simpleString()
    if text_type != "string":
        raise ValueError(f"column {text_col!r} must be a string, got {text_type}")
    lm_loss = make_lm_loss_udf(
        path,
        dtype=dtype,
        window=window,
        stride=stride,
        max_tokens_per_batch=max_tokens_per_batch,
    )
    scored = docs.select(
        "doc_id", F.lit(model_id).alias("model_id"), lm_loss(F.col(text_col)).alias("loss")
    )
    return scored.select("doc_id", "model_id", "loss.*")


def sample_documents(
    docs: DataFrame,
    *,
    fraction: float | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> DataFrame:
    """A subset chosen by a seeded hash of doc_id: the same rows on every run and partitioning.

    `fraction` keeps documents whose hash falls below it (so a smaller fraction's sample is
    contained in a larger one's); `limit` then keeps the `limit` documents with the smallest
    hashes. Neither: all documents.
    """
    if fraction is not None and not (isinstance(fraction, int | float) and 0 < fraction <= 1):
        raise ValueError(f"sample fraction must be in (0, 1], got {fraction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"sample limit must be a positive int, got {limit!r}")
    if "doc_id" not in docs.columns:
        raise ValueError(f"documents DataFrame lacks column 'doc_id'; it has {docs.columns}")
    if fraction is None and limit is None:
        return docs
    columns = docs.columns
    # 53 high bits of a 64-bit hash map exactly onto doubles uniform in [0, 1).
    unit = F.shiftrightunsigned(F.xxhash64(F.lit(int(seed)), F.col("doc_id")), 11) / float(1 << 53)
    hashed = docs.withColumn("_sample_u", unit)
    if fraction is not None and fraction < 1:
        hashed = hashed.where(F.col("_sample_u") < F.lit(float(fraction)))
    if limit is not None:
        # Ties on the hash are broken by doc_id so the cut is deterministic.
        hashed = hashed.orderBy("_sample_u", "doc_id").limit(limit)
    return hashed.select(*columns)


MODEL_LOSSES_TABLE = "model_losses"


def scoring_settings(spec: ModelSpec, settings: LMLossSettings) -> dict:
    """A model's own dtype, window, stride and batch size, else the job's. A stride left unset
    everywhere stays None: the kernel then takes window * 512 // 1900 (at least 1) of the window
    in effect, so the default fits any context."""
    return {
        "dtype": spec.dtype if spec.dtype != "auto" else settings.dtype,
        "window": spec.window or settings.window,
        "stride": spec.stride or settings.stride,
        "max_tokens_per_batch": spec.max_tokens_per_batch or settings.max_tokens_per_batch,
    }


def model_settings(cfg, spec) -> dict:
    """What one model's losses depend on: a change recomputes that model's partition."""
    from jobs.core.incremental import file_digest

    settings = cfg.lm_loss
    own = scoring_settings(spec, settings)
    return {
        "model_sha256": file_digest(spec.path),
        "dtype": own["dtype"], "window": own["window"], "stride": own["stride"],
        "sample_fraction": settings.sample_fraction, "seed": settings.seed,
        "prefilter": cfg.prefilter.enabled,
    }


def run(spark, cfg):
    """Score the (sampled) documents under every declared model; one partition per model_id.

    Rerunning with `lm_loss.only_models` replaces just those models' partitions. In
    incremental mode each model scores only the documents its partition lacks, while the
    settings recorded with the partition still hold (jobs/core/incremental.py).
    """
    from jobs.core.base import JobReport, lake_for, log
    from jobs.core.config import ConfigError, declared_models
    from jobs.core.errors import require_local_path
    from jobs.core.incremental import write_scope
    from jobs.prefilter import PREFILTER_TABLE, filtered_count, left_out_label, passed_documents

    settings = cfg.lm_loss
    specs = declared_models(cfg)
    if settings.only_models:
        unknown = sorted(set(settings.only_models) - {s.model_id for s in specs})
        if unknown:
            raise ConfigError(f"{cfg.source}: lm_loss.only_models: undeclared models {unknown}")
        specs = [s for s in specs if s.model_id in settings.only_models]
    for spec in specs:
        require_local_path(spec.path, f"lm_loss: model {spec.model_id!r}",
                           "run 'siftlake demo_models' or fix its path in lm_loss.models (or the "
                           "lm_loss.models_manifest)")
    lake = lake_for(spark, cfg)
    docs = sample_documents(
        passed_documents(lake, cfg).select("doc_id", "text"), fraction=settings.sample_fraction,
        limit=settings.sample_limit, seed=settings.seed,
    )
    n_docs, n_documents = docs.count(), lake.count("documents")
    mode = settings.mode
    if mode == "incremental" and settings.sample_limit is not None:
        # The documents with the smallest hashes change as the corpus grows.
        log.warning("lm_loss: lm_loss.sample_limit draws a different sample from a grown "
                    "corpus: full recompute (use sample_fraction for incremental runs)")
        mode = "full"
    inputs = ["documents"] + ([PREFILTER_TABLE] if cfg.prefilter.enabled else [])
    rows_out, without_bpc, runs = 0, 0, {}
    for spec in specs:
        log.info("lm_loss: scoring with %s (%s)", spec.model_id, spec.path)
        plan, written = write_scope(
            lake, docs, lambda todo, spec=spec: score_model_losses(
                todo, model_id=spec.model_id, path=spec.path, **scoring_settings(spec, settings)
            ),
            table=MODEL_LOSSES_TABLE, column="model_id", scope=spec.model_id, mode=mode,
            settings=model_settings(cfg, spec), inputs=inputs, job="lm_loss",
            broadcast_mb=cfg.spark.incremental_broadcast_mb,
        )
        runs[spec.model_id] = f"{written.rows:,} documents scored now ({plan.mode})"
        partition = lake.read(MODEL_LOSSES_TABLE, {"model_id": [spec.model_id]})
        rows_out += partition.count()
        without_bpc += partition.where(F.col("bpc").isNull()).count()
    sampled = settings.sample_fraction is not None or settings.sample_limit is not None
    return JobReport(
        "lm_loss", n_documents * len(specs), rows_out,
        rows_filtered=(n_documents - n_docs) * len(specs), filtered_label=left_out_label(cfg, sampled),
        tables={MODEL_LOSSES_TABLE: lake.path(MODEL_LOSSES_TABLE)},
        details={"models": ", ".join(s.model_id for s in specs), "documents scored": n_docs,
                 "documents filtered by rules": filtered_count(lake, cfg),
                 "rows_without_bpc (null + reason)": without_bpc,
                 **{f"model {m}": outcome for m, outcome in runs.items()}},
    ).check_invariant()
