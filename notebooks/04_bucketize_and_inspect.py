# Databricks notebook source
# MAGIC %md
# MAGIC # 04 · Quality buckets, and what is in them
# MAGIC `siftlake bucketize`: deciles of character mass ranked by the PreSelect score of 03 (`q00`
# MAGIC best), into `curated`, partitioned by `quality_bucket`. To rank by compression instead, set
# MAGIC the overrides `bucketize.score_column=zstd_ratio; bucketize.direction=lower_is_better`.
# MAGIC Then read a few documents of each bucket: the buckets are only as good as they look.

# COMMAND ----------

# ruff: noqa: F821 -- spark, dbutils and display are Databricks notebook globals
from pyspark.sql import functions as F

from jobs.core.notebook import bucket_samples, declare_widgets, start

declare_widgets(dbutils)

# COMMAND ----------

stage = start(
    spark, dbutils,
    ["bucketize.score_column=fasttext_score", "bucketize.direction=higher_is_better"],
)
reports = stage.run("bucketize")

# COMMAND ----------

curated = stage.lake.read("curated")
display(
    curated.groupBy("quality_bucket")
    .agg(F.count("*").alias("documents"), F.sum("n_chars").alias("characters"),
         F.avg(stage.cfg.bucketize.score_column).alias("mean_score"))
    .orderBy("quality_bucket")
)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Sample documents per bucket (the first 300 characters)

# COMMAND ----------

display(bucket_samples(curated, per_bucket=3, seed=stage.cfg.bucketize.seed))
