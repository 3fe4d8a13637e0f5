"""Typed configuration: YAML files validated into pydantic models.

The defaults here are the values of `conf/local.yaml` (a test keeps the two equal). Loading
(packaged configs, `--set`) is in `config_files`; every error names the file or the `--set` and
the dotted key, e.g. `conf/local.yaml: bucketize.n_buckets: Input should be greater than or
equal to 2`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from jobs.core.config_base import (  # noqa: F401 - the package imports these from here
    MODE_FIELD_DESCRIPTION,
    PARTITION_VALUE_PATTERN,
    ConfigError,
    Mode,
    Section,
)
from jobs.core.config_prefilter import (  # noqa: F401 - the package imports these from here
    C4Rules,
    ControlCharRules,
    FineWebRules,
    GopherQualityRules,
    GopherRepetitionRules,
    PrefilterFamily,
    PrefilterSettings,
)


class SparkSettings(Section):
    master: str | None = Field("local[*]", description="null keeps spark-submit's / Databricks' master")
    app_name: str = "siftlake-local"
    conf: dict[str, str] = Field(
        default_factory=lambda: {
            "spark.driver.memory": "4g",
            "spark.sql.shuffle.partitions": "16",
            "spark.sql.files.maxPartitionBytes": "64m",
            "spark.sql.execution.arrow.maxRecordsPerBatch": "2000",
            "spark.sql.execution.arrow.maxBytesPerBatch": "64m",
        },
        description="Spark settings; a file's `conf` replaces this whole mapping",
    )
    delta: Literal["auto", "native", "delta-rs"] = Field(
        "auto", description="auto: format('delta') when the session has Delta, else delta-rs commits"
    )
    delta_extensions: bool = Field(
        False, description="add the delta-spark session extensions (needs the jars on the classpath)"
    )
    incremental_broadcast_mb: int = Field(
        64, ge=0, description="largest set of new ids or new MinHash band keys (estimated MB) an "
        "incremental run broadcasts so that no stored document or key is shuffled; larger "
        "daily batches are shuffled (0: never broadcast)",
    )
    preload_fasttext: list[str] = Field(
        default_factory=list,
        description="fastText .bin files each executor's Python daemon loads once before forking "
        "workers, so they share one copy; readable on executors at session start",
    )

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class LakeSettings(Section):
    root: str = Field("lake", description="folder or URI under which every table lives")
    artifacts: str = Field("artifacts", description="models, plots and reports")


class DemoSettings(Section):
    corpus_dir: str = "demo_data/corpus"
    target_dir: str = Field(
        "demo_data/target", description="target set: clean documents kept out of the pool"
    )
    n_docstring_docs: int = Field(1200, ge=0)
    n_prose_docs: int = Field(
        300, ge=0, description="clean reference, manual, source-comment and license documents"
    )
    n_boilerplate_docs: int = Field(250, ge=0)
    n_near_duplicate_docs: int = Field(250, ge=0)
    n_junk_docs: int = Field(
        150, ge=0, description="spread over spam, menus, tables, random characters, lorem ipsum, "
        "base64/hex blobs and product pages"
    )
    n_target_docs: int = Field(200, ge=0, description="clean documents of the target set")
    n_files: int = Field(4, ge=1)
    seed: int = 0
    build_if_missing: bool = True


class IngestSettings(Section):
    mode: Mode = Field("full", description=MODE_FIELD_DESCRIPTION)
    paths: list[str] = Field(default_factory=lambda: ["demo_data/corpus/*.jsonl"])
    format: Literal["jsonl", "parquet", "delta"] = "jsonl"
    text_column: str = "text"
    id_column: str | None = Field("id", description="null: doc_id = sha256(text)")
    source_column: str | None = Field(
        "source", description="null (or a null value in a JSON record): the input file path"
    )
    max_doc_bytes: int = Field(1_000_000, ge=1)
    quarantine_raw_max_chars: int = Field(4096, ge=16)


class ScoreSettings(Section):
    mode: Mode = Field("full", description=MODE_FIELD_DESCRIPTION)
    scorers: list[Literal["zstd", "fasttext"]] = Field(default_factory=lambda: ["zstd"])
    zstd_level: int = Field(3, ge=1, le=22)
    fasttext_model: str | None = Field(
        None, description="model.bin path; default: the train_classifier artifact"
    )
    fasttext_positive_label: str = "__label__1"

    @field_validator("scorers")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one scorer is required")
        return value


class BucketizeSettings(Section):
    mode: Mode = Field(
        "full", description="incremental: place new documents with the stored thresholds"
    )
    recalibrate: bool = Field(
        False, description="recompute the thresholds and rewrite `curated` (incremental mode)"
    )
    score_column: str = "zstd_ratio"
    direction: Literal["lower_is_better", "higher_is_better"] = "lower_is_better"
    n_buckets: int = Field(10, ge=2, le=100)
    sample_rows: int = Field(200_000, ge=100, description="rows sampled to place the thresholds")
    keep_top_fraction: float = Field(0.1, gt=0, le=1, description="character mass flagged selected")
    source_table: Literal["scores", "mimic_aggregate"] = "scores"
    seed: int = 0


class ModelSpec(Section):
    model_id: str = Field(pattern=PARTITION_VALUE_PATTERN)
    path: str
    benchmark_score: float
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    window: int | None = Field(None, ge=2)
    stride: int | None = Field(None, ge=1)
    max_tokens_per_batch: int | None = Field(None, ge=16)


class LMLossSettings(Section):
    mode: Mode = Field("full", description=MODE_FIELD_DESCRIPTION + " (per model_id)")
    models: list[ModelSpec] = Field(default_factory=list)
    models_manifest: str | None = Field(
        "artifacts/demo_models/models.yaml",
        description="YAML list of models (e.g. written by demo_models); merged after `models`",
    )
    only_models: list[str] = Field(default_factory=list, description="rerun just these model_ids")
    sample_fraction: float | None = Field(None, gt=0, le=1)
    sample_limit: int | None = Field(None, ge=1)
    window: int | None = Field(None, ge=2, description="tokens per window; default model context")
    stride: int | None = Field(
        None, ge=1, description="tokens a window advances; null: window * 512 // 1900 (PreSelect)"
    )
    max_tokens_per_batch: int = Field(16384, ge=16)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    seed: int = 0


class DemoModelsSettings(Section):
    out_dir: str = "artifacts/demo_models"
    k: int = Field(4, ge=2)
    steps: int = Field(600, ge=1, description="training steps of every reference model")
    n_layer: int = Field(1, ge=1, description="layers of every reference model (one size)")
    n_embd: int = Field(64, ge=16, description="width of every reference model (head size 16)")
    lr: float = Field(3e-3, gt=0, description="peak learning rate (AdamW, cosine decay)")
    batch_size: int = Field(16, ge=1, description="training blocks of n_positions per step")
    vocab_size: int = Field(1024, ge=260, description="byte-level BPE: 256 bytes + specials + merges")
    n_positions: int = Field(128, ge=8)
    max_docs: int = Field(2000, ge=10, description="documents sampled to train on")
    trusted_shares: list[float] | None = Field(
        None, description="per model, the share of its training tokens drawn from the target "
        "set (preselect.target_paths); null: evenly from 0 to 1/2"
    )
    seed: int = 0

    @field_validator("trusted_shares")
    @classmethod
    def _shares(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not all(0 <= share <= 1 for share in value):
            raise ValueError("each trusted share must be in [0, 1]")
        return value


class PreSelectSettings(Section):
    target_paths: list[str] = Field(
        default_factory=list, description="trusted target text (JSONL with a text field, globs): "
        "demo_models measures each reference model's benchmark on it and trains Grad-Mimic's "
        "reference on it; empty: held-out pool text"
    )
    positive_threshold: float = Field(1.0, ge=0, le=1)
    max_per_class: int = Field(200_000, ge=1)
    max_collect_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    epoch: int = Field(3, ge=1)
    lr: float = Field(0.1, gt=0)
    word_ngrams: int = Field(2, ge=1)
    dim: int = Field(100, ge=1)
    min_count: int = Field(1, ge=1)
    bucket: int = Field(
        200_000, ge=0, description="recipe: 2000000 (a 256 MB model); smaller keeps the demo light"
    )
    thread: int = Field(2, ge=1)
    holdout_fraction: float = Field(0.1, ge=0, lt=1)
    model_dir: str = "artifacts/preselect_fasttext"
    seed: int = 0


class ZipSettings(Section):
    source_table: Literal["curated", "documents"] = "curated"
    # The paper's stage sizes are 10000 / 200 / 100 (conf/cluster.yaml); these fit the demo.
    k1: int = Field(1_000, ge=1)
    k2: int = Field(100, ge=1)
    k3: int = Field(50, ge=1)
    backend: Literal["zlib9", "zstd"] = "zlib9"
    zstd_level: int = Field(3, ge=1, le=22)
    group_column: str | None = Field("quality_bucket", description="null: hash doc_id into n_groups")
    n_groups: int = Field(8, ge=1)
    budget_fraction: float = Field(0.1, gt=0, le=1)
    budget_unit: Literal["documents", "characters"] = "documents"
    second_pass: bool = False
    second_pass_oversample: float = Field(2.0, ge=1, description="first pass keeps this x budget")
    serialization: Literal["text", "sharegpt"] = "text"
    seed: int = 0

    @model_validator(mode="after")
    def _stage_sizes(self) -> ZipSettings:
        if not self.k3 <= self.k2 <= self.k1:
            raise ValueError("need k3 <= k2 <= k1")
        return self


class MixtureSettings(Section):
    observations: str | None = Field(
        "artifacts/demo_curves/observations.csv",
        description="CSV or Delta table of bucket,samples_seen,error",
    )
    compute_budget: float = Field(
        4000, gt=0, description="samples (or tokens) the training run sees; 4000 fits the demo"
    )
    size_unit: Literal["documents", "characters"] = "documents"
    a: float | None = Field(None, gt=0, description="shared scale; null sweeps it")
    d: float | None = Field(None, ge=0, description="shared irreducible error; null sweeps it")
    a_range: tuple[float, float] = Field(
        (1e-6, 1e12), description="range the shared a sweeps (4 steps per decade) when a is null"
    )
    d_range: tuple[float, float] | None = Field(
        None, description="range the shared d sweeps (20 steps) when d is null; null: "
        "[0, 0.95 x the smallest observed error]"
    )
    variant: Literal["effective_utility", "effective_data"] = "effective_utility"
    b_range: tuple[float, float] = (-0.5, -0.005)
    tau_range: tuple[float, float] = Field(
        (1.0, 30.0), description="the paper's is [1, 10]; tiny demo buckets decay slowly"
    )
    on_refusal: Literal["raise", "drop"] = Field(
        "drop", description="drop: plan without buckets the fit refuses, listing them"
    )
    seed: int = 0
    demo_steps: int = Field(60, ge=1)
    demo_docs_per_bucket: int = Field(200, ge=4)
    demo_heldout_per_bucket: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _shared_ranges(self) -> MixtureSettings:
        if not 0 < self.a_range[0] < self.a_range[1]:
            raise ValueError(f"a_range needs 0 < low < high, got {list(self.a_range)}")
        if self.d_range is not None and not 0 <= self.d_range[0] < self.d_range[1]:
            raise ValueError(f"d_range needs 0 <= low < high, got {list(self.d_range)}")
        return self


class MimicSettings(Section):
    mode: Mode = Field("full", description=MODE_FIELD_DESCRIPTION + " (per checkpoint)")
    reference_path: str | None = Field(
        "artifacts/demo_models/mimic-run/final", description="θ_ref (same architecture as θ_t)"
    )
    checkpoints: dict[str, str] = Field(
        default_factory=lambda: {
            "early": "artifacts/demo_models/mimic-run/early",
            "middle": "artifacts/demo_models/mimic-run/middle",
        },
        description="name -> θ_t path: saved steps of one training run",
    )
    layer: str = Field("lm_head", description="parameter tensor name or 'lm_head' / 'last_mlp'")
    method: Literal["auto", "closed_form", "vmap"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_length: int | None = Field(None, ge=1, description="scored tokens; null: context - 1")
    batch_size: int = Field(16, ge=1)
    sample_fraction: float | None = Field(None, gt=0, le=1, description="documents scored")
    aggregate_method: Literal["uniform", "two_means", "kmeans", "gmm"] = "uniform"
    min_votes: float | None = Field(
        None, ge=0, description="null: strict majority; < 1: fraction of checkpoints; else a count"
    )
    temperature: float = Field(1.0, gt=0, description="T of the uniform-weight threshold")
    threshold_sample_rows: int = Field(200_000, ge=100, description="rows to fit 2-means / GMM")
    seed: int = 0


class MaintainSettings(Section):
    """Table maintenance: compaction, VACUUM, leftovers of killed writes."""

    tables: list[str] = Field(
        default_factory=list, description="tables to maintain; empty: every table under lake.root"
    )
    compact: bool = Field(True, description="rewrite the small files appends leave (OPTIMIZE)")
    target_file_mb: int = Field(128, ge=1, description="size compaction aims each file at")
    vacuum: bool = Field(
        True, description="delete files no version within the retention references (VACUUM)"
    )
    retention_hours: int = Field(
        168, ge=0, description="time travel and unreferenced files are kept this long; also the "
        "age after which leftovers of killed writes go. Keep it above the longest write or read",
    )


class ReportSettings(Section):
    """The HTML report of the lake (`siftlake report`): <lake.artifacts>/report/index.html."""

    histogram_bins: int = Field(30, ge=2, le=500, description="equal-width bins per histogram")
    max_sources: int = Field(
        8, ge=1, description="sources drawn as their own histogram line; the rest are pooled"
    )
    sample_chars: int = Field(300, ge=10, description="characters shown of each sample or example")
    examples_per_reason: int = Field(
        3, ge=0, description="examples per quarantine reason and per first failed pre-filter rule"
    )
    samples_per_bucket: int = Field(
        3, ge=0, description="best- and worst-scored documents shown per quality bucket"
    )
    zip_ratio: bool = Field(
        True, description="compress the ZIP selection and a random subset of its size to compare "
        "their ratios (a compression pass over both)"
    )


class PipelineSettings(Section):
    steps: list[str] = Field(
        default_factory=lambda: ["demo_corpus", "ingest", "prefilter", "score", "bucketize"]
    )


class Config(Section):
    spark: SparkSettings = Field(default_factory=SparkSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    prefilter: PrefilterSettings = Field(default_factory=PrefilterSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)
    bucketize: BucketizeSettings = Field(default_factory=BucketizeSettings)
    demo_models: DemoModelsSettings = Field(default_factory=DemoModelsSettings)
    lm_loss: LMLossSettings = Field(default_factory=LMLossSettings)
    preselect: PreSelectSettings = Field(default_factory=PreSelectSettings)
    zip: ZipSettings = Field(default_factory=ZipSettings)
    mixture: MixtureSettings = Field(default_factory=MixtureSettings)
    mimic: MimicSettings = Field(default_factory=MimicSettings)
    maintain: MaintainSettings = Field(default_factory=MaintainSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)

    source: str = Field("<defaults>", exclude=True, description="file the config came from")


LOADERS = ("config_from_dict", "declared_models", "load_config")


def __getattr__(name: str):
    """The loaders live in config_files (packaged configs, overrides, error messages), which
    imports this module; callers import them from here."""
    if name in LOADERS:
        from jobs.core import config_files

        return getattr(config_files, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
