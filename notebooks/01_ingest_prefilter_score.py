# Databricks notebook source
# MAGIC %md
# MAGIC # 01 · Ingest, pre-filter, score
# MAGIC The first stage of siftlake, as `siftlake ingest`, `prefilter` and `score` run it: raw
# MAGIC JSONL / Parquet / Delta into `documents` (bad records into `quarantine` with a reason), the
# MAGIC Gopher / FineWeb pre-filter statistics and verdicts into `prefilter`, and the cheap scores of
# MAGIC the passed documents into `scores`.
# MAGIC
# MAGIC Install the siftlake wheel on the cluster first (a cluster library, or `%pip install` of
# MAGIC the wheel in a cell of its own). Widgets: `config` is a packaged config name (`local`,
# MAGIC `cluster`, `databricks`) or a YAML path; `overrides` takes `key=value` items separated by
# MAGIC `;`, as `--set` does. With `local`, the notebooks build their demo inputs themselves; run
# MAGIC `01` … `07` in order from one folder: each reads what the earlier ones wrote.

# COMMAND ----------

# ruff: noqa: F821 -- spark, dbutils and display are Databricks notebook globals
from jobs.core.notebook import declare_widgets, ensure_demo_corpus, start

declare_widgets(dbutils)

# COMMAND ----------

# MAGIC %md
# MAGIC The config's Spark settings that this running session accepts are applied now; the rest
# MAGIC (executor memory and environment, worker reuse, GPU amounts) are listed: put those in the
# MAGIC cluster's Spark config.

# COMMAND ----------

stage = start(spark, dbutils)
ensure_demo_corpus(stage)  # only when `ingest.paths` read the demo corpus
reports = stage.run("ingest", "prefilter", "score")

# COMMAND ----------

# MAGIC %md
# MAGIC ## What was quarantined, and what the pre-filter removed

# COMMAND ----------

display(stage.lake.read("quarantine").groupBy("job", "reason").count().orderBy("job", "reason"))

# COMMAND ----------

display(
    stage.lake.read("prefilter").groupBy("passed", "filter_reason").count()
    .orderBy("passed", "filter_reason")
)

# COMMAND ----------

display(stage.lake.read("scores").summary("count", "mean", "min", "50%", "max"))
