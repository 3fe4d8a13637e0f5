"""Every notebook in notebooks/, top to bottom, in stage order, on the test SparkSession, from one
temporary working directory, with widget `config` = `local`.

`dbutils.widgets` and `display` are Databricks notebook globals, not Spark: small stand-ins
record what the notebooks declare and show. The `overrides` widget is the one widget not left at
its default: the `local` demo (1,850 documents, four models trained for 60+ steps) takes many
minutes here, so the test shrinks it to the sizes tests/cluster_chain.py uses. The session
fixture's JVM started in another working directory than the notebooks', as on Databricks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from pyspark.sql import DataFrame

from jobs.core.lake import Lake
from jobs.core.notebook import parse_overrides

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.py"))
SMALL_DEMO = "; ".join([
    "demo.n_docstring_docs=160", "demo.n_boilerplate_docs=30", "demo.n_near_duplicate_docs=30",
    "demo.n_junk_docs=20", "demo.n_files=2",
    # As in tests/cluster_chain.py: the tiny demo models disagree only on the random-character
    # junk, which train_classifier needs as negatives; repetition rules keep it.
    "prefilter.families=[gopher_repetition]",
    "demo_models.k=3", "demo_models.base_steps=12", "demo_models.vocab_size=320",
    "demo_models.n_positions=64", "demo_models.max_docs=200", "lm_loss.stride=32",
    "preselect.bucket=20000", "preselect.thread=1", "bucketize.n_buckets=4",
    "zip.k1=40", "zip.k2=10", "zip.k3=5", "zip.budget_fraction=0.2",
    "mixture.demo_steps=12", "mixture.demo_docs_per_bucket=24", "mixture.demo_heldout_per_bucket=4",
    "mimic.max_length=48", "mimic.batch_size=8",
])


class Widgets:
    """`dbutils.widgets`: values set by the caller win over the notebook's defaults."""

    def __init__(self, values: dict[str, str]):
        self.values = dict(values)
        self.declared: dict[str, str] = {}

    def text(self, name: str, default_value: str, label: str | None = None) -> None:
        self.declared[name] = default_value

    def get(self, name: str) -> str:
        if name not in self.declared:
            raise ValueError(f"widget {name!r} was never declared")  # what Databricks does too
        return self.values.get(name, self.declared[name])


class DBUtils:
    def __init__(self, values: dict[str, str]):
        self.widgets = Widgets(values)


def run_notebook(path: Path, spark, widget_values: dict[str, str]) -> tuple[DBUtils, list, dict]:
    source = path.read_text(encoding="utf-8")
    assert source.startswith("# Databricks notebook source\n"), path.name
    dbutils, shown = DBUtils(widget_values), []
    namespace = {"spark": spark, "dbutils": dbutils, "display": shown.append, "__name__": path.stem}
    for index, cell in enumerate(source.split("# COMMAND ----------")):
        lines = [line for line in cell.strip().splitlines() if line.strip()]
        if lines and lines[0].startswith("# MAGIC"):
            assert all(line.startswith("# MAGIC") for line in lines), f"{path.name} cell {index}"
            continue
        exec(compile(cell, f"{path.name} (cell {index})", "exec"), namespace)  # noqa: S102
    return dbutils, shown, namespace


@pytest.fixture
def restored_conf(spark):
    """The notebooks apply the config's settings to the shared session; put the old ones back."""
    keys = ["spark.sql.shuffle.partitions", "spark.sql.execution.arrow.maxRecordsPerBatch"]
    before = {key: spark.conf.get(key) for key in keys}
    yield
    for key, value in before.items():
        spark.conf.set(key, value)


def test_override_items_split_on_semicolons_and_lines_not_commas():
    assert parse_overrides("a=1; s=[x, y]\n b=2 ;") == ["a=1", "s=[x, y]", "b=2"]


def test_notebooks_run_in_stage_order_from_one_folder(spark, tmp_path, monkeypatch, restored_conf):
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 8)]
    monkeypatch.chdir(tmp_path)
    spark.conf.set("spark.sql.shuffle.partitions", "200")  # Databricks' default
    widgets = {"config": "local", "overrides": SMALL_DEMO}
    shown: dict[str, list] = {}
    stages = {}
    for path in NOTEBOOKS:
        dbutils, shown[path.stem], namespace = run_notebook(path, spark, widgets)
        stages[path.stem] = namespace["stage"]
        assert dbutils.widgets.declared == {"config": "databricks", "overrides": ""}
        # Every DataFrame a notebook shows can be computed.
        for item in shown[path.stem]:
            if isinstance(item, DataFrame):
                item.collect()

    # The config's session settings reached the session (conf/local.yaml: 8 shuffle partitions);
    # those a running session cannot take are named, not silently dropped.
    assert spark.conf.get("spark.sql.shuffle.partitions") == "8"
    first = stages["01_ingest_prefilter_score"]
    assert first.applied["spark.sql.shuffle.partitions"] == "8"
    assert {"spark.driver.memory", "spark.executorEnv.GLIBC_TUNABLES"} <= set(first.refused)
    # Each stage found what the earlier ones wrote: everything lives under the one folder.
    lake = tmp_path / "lake"
    for table in ["documents", "prefilter", "scores", "model_losses", "predictive_strength",
                  "curated", "zip_selection", "mixture_plan", "mimic_scores", "mimic_aggregate"]:
        assert (lake / table / "_delta_log").is_dir(), table
    assert json.loads((tmp_path / "artifacts" / "preselect_fasttext" / "metadata.json").read_text())
    assert "fasttext_score" in Lake(spark, str(lake)).read("scores").columns  # 03's classifier

    # 04 shows sample documents of every bucket; 06 shows its plots.
    samples = next(d for d in shown["04_bucketize_and_inspect"] if "text_start" in d.columns)
    buckets = {r.quality_bucket for r in samples.collect()}
    assert buckets == {f"q{i:02d}" for i in range(4)}
    figures = [f for f in shown["06_mixture_planning"] if isinstance(f, Figure)]
    assert len(figures) == len(list((tmp_path / "artifacts" / "mixture").glob("*.png"))) >= 2
