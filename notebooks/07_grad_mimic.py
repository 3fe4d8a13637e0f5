# Databricks notebook source
# MAGIC %md
# MAGIC # 07 · Grad-Mimic (GPU)
# MAGIC `siftlake mimic` scores each passed document by how well its gradient points from each
# MAGIC checkpoint of a training run (`mimic.checkpoints`) towards the reference
# MAGIC (`mimic.reference_path`), into `mimic_scores`; `mimic_aggregate` votes across checkpoints
# MAGIC into `mimic_aggregate`, a source `bucketize` can rank by. With the `local` config the
# MAGIC checkpoints are the demo training run that 02 saved.

# COMMAND ----------

# ruff: noqa: F821 -- spark, dbutils and display are Databricks notebook globals
from pyspark.sql import functions as F

from jobs.core.notebook import declare_widgets, start

declare_widgets(dbutils)

# COMMAND ----------

stage = start(spark, dbutils)
reports = stage.run("mimic", "mimic_aggregate")

# COMMAND ----------

display(
    stage.lake.read("mimic_scores").groupBy("checkpoint")
    .agg(F.count("*").alias("documents"), F.avg("score").alias("mean_score"))
    .orderBy("checkpoint")
)

# COMMAND ----------

display(stage.lake.read("mimic_aggregate").groupBy("mimic_keep").count())
