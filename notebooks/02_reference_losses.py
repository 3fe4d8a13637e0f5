# Databricks notebook source
# MAGIC %md
# MAGIC # 02 · Reference-model losses (GPU)
# MAGIC `siftlake lm_loss`: every declared reference model (`lm_loss.models`, or the manifest
# MAGIC `lm_loss.models_manifest`) scores the passed documents (a sample, with
# MAGIC `lm_loss.sample_limit`), bits per character into `model_losses`, one partition per model.
# MAGIC Run it on GPU compute: each task takes its GPU from Spark's task resources and falls back
# MAGIC to CPU without one. With the `local` config the small demo models are trained here first
# MAGIC (`siftlake demo_models`), which also saves the training run Grad-Mimic (07) uses.

# COMMAND ----------

# ruff: noqa: F821 -- spark, dbutils and display are Databricks notebook globals
from pyspark.sql import functions as F

from jobs.core.notebook import declare_widgets, ensure_demo_models, start

declare_widgets(dbutils)

# COMMAND ----------

stage = start(spark, dbutils)
ensure_demo_models(stage)  # only when the config reads the demo models' manifest
reports = stage.run("lm_loss")

# COMMAND ----------

display(
    stage.lake.read("model_losses").groupBy("model_id")
    .agg(F.count("*").alias("documents"), F.avg("bpc").alias("mean_bpc"))
    .orderBy("model_id")
)
