"""What the stage notebooks in notebooks/ share, so that no logic lives only in a notebook.

Each notebook declares the two widgets (`config`, `overrides`), calls `start`, runs its jobs with
`Stage.run` and shows tables with the notebook's `display`. `start` loads the config, makes its
relative paths absolute against the notebook's working directory (jobs.core.paths says why) and
applies the config's Spark settings that the running session accepts, saying which it cannot.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from jobs.core.base import JobReport, lake_for
from jobs.core.config import Config, load_config
from jobs.core.lake import Lake
from jobs.core.paths import with_absolute_paths
from jobs.core.registry import job_runner
from jobs.core.session import apply_conf, session_conf

CONFIG_WIDGET = "config"
OVERRIDES_WIDGET = "overrides"
DEFAULT_CONFIG = "databricks"
# Overrides are `key=value` items, one per line or separated by `;` (a YAML list value such as
# `score.scorers=[zstd, fasttext]` holds commas, so commas cannot separate items).
_OVERRIDE_SEPARATOR = re.compile(r"[;\n]")


def declare_widgets(dbutils) -> None:
    dbutils.widgets.text(
        CONFIG_WIDGET, DEFAULT_CONFIG, "config: local | cluster | databricks, or a YAML path"
    )
    dbutils.widgets.text(
        OVERRIDES_WIDGET, "", "overrides: key=value; key=value (as --set)"
    )


def parse_overrides(text: str) -> list[str]:
    return [item.strip() for item in _OVERRIDE_SEPARATOR.split(text or "") if item.strip()]


@dataclass
class Stage:
    """One notebook's config, lake and the Spark settings it could and could not apply."""

    spark: SparkSession
    cfg: Config
    applied: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def lake(self) -> Lake:
        return lake_for(self.spark, self.cfg)

    def run(self, *jobs: str) -> list[JobReport]:
        reports = []
        for name in jobs:
            report = job_runner(name)(self.spark, self.cfg)
            print(report.summary(), flush=True)
            reports.append(report)
        return reports


def start(
    spark: SparkSession, dbutils, stage_overrides: Sequence[str] = (), base: str | None = None
) -> Stage:
    """Config from the widgets; `stage_overrides` (this stage's own) come before the widget's."""
    name = dbutils.widgets.get(CONFIG_WIDGET).strip() or DEFAULT_CONFIG
    overrides = [*stage_overrides, *parse_overrides(dbutils.widgets.get(OVERRIDES_WIDGET))]
    cfg = with_absolute_paths(load_config(name, overrides), base or os.getcwd())
    applied, refused = apply_conf(
        spark, session_conf(cfg.spark.conf, cfg.spark.delta_extensions, cfg.spark.preload_fasttext)
    )
    print(f"config {cfg.source}; lake {cfg.lake.root}; artifacts {cfg.lake.artifacts}")
    print(f"Spark settings applied to this session: {len(applied)}")
    for key, value in refused.items():
        print(f"  cannot change on a running session (set it in the cluster's Spark config): "
              f"{key}={value}")
    return Stage(spark, cfg, applied, refused)


# The demo inputs are built only where the config reads them from the demo jobs' own output, so a
# missing input of a real setup stays an error instead of being replaced by demo data.


def ensure_demo_corpus(stage: Stage) -> JobReport | None:
    """Build the demo corpus when `ingest.paths` read it."""
    corpus = Path(stage.cfg.demo.corpus_dir)
    if not any(Path(p).parent == corpus for p in stage.cfg.ingest.paths):
        return None
    return stage.run("demo_corpus")[0]


def ensure_demo_models(stage: Stage) -> JobReport | None:
    """Train the demo models when the config reads their manifest and it is not there yet."""
    manifest = stage.cfg.lm_loss.models_manifest
    out_dir = Path(stage.cfg.demo_models.out_dir)
    if not manifest or Path(manifest).exists() or Path(manifest).parent != out_dir:
        return None
    return stage.run("demo_models")[0]


def ensure_demo_curves(stage: Stage) -> JobReport | None:
    """Write demo training curves when `mixture.observations` is a missing CSV among the artifacts."""
    observations = stage.cfg.mixture.observations
    artifacts = Path(stage.cfg.lake.artifacts)
    if not observations or Path(observations).exists() or artifacts not in Path(observations).parents:
        return None
    return stage.run("demo_curves")[0]


def plots(stage: Stage, job: str) -> list[Path]:
    """The PNG plots a job wrote under `<lake.artifacts>/<job>/`, by name."""
    return sorted((Path(stage.cfg.lake.artifacts) / job).glob("*.png"))


def bucket_samples(curated: DataFrame, per_bucket: int = 3, seed: int = 0) -> DataFrame:
    """`per_bucket` documents of each quality bucket, a seeded pick, text cut to 300 characters."""
    pick = Window.partitionBy("quality_bucket").orderBy(F.xxhash64("doc_id", F.lit(seed)))
    return (
        curated.withColumn("pick", F.row_number().over(pick))
        .where(F.col("pick") <= per_bucket)
        .select("quality_bucket", "doc_id", "source", "n_chars", F.substring("text", 1, 300)
                .alias("text_start"))
        .orderBy("quality_bucket", "doc_id")
    )


def png_figure(path: str | os.PathLike):
    """A matplotlib figure holding a PNG the jobs wrote, for `display` (Databricks shows figures).

    Built without pyplot, so the notebook's plotting backend is left alone.
    """
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    image = imread(str(path))
    height, width = image.shape[:2]
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.imshow(image)
    axes.axis("off")
    return figure
