# Databricks notebook source
# MAGIC %md
# MAGIC # 05 · ZIP: entropy-law selection
# MAGIC `siftlake zip_select`: ZIP's three-stage greedy selection of diverse (hard to compress
# MAGIC together) documents, run inside each quality bucket of 04 (`zip.group_column`), into
# MAGIC `zip_selection`. The report compares the selection's compression ratio with a random
# MAGIC subset of the same size.

# COMMAND ----------

# ruff: noqa: F821 -- spark, dbutils and display are Databricks notebook globals
from pyspark.sql import functions as F

from jobs.core.notebook import declare_widgets, start

declare_widgets(dbutils)

# COMMAND ----------

stage = start(spark, dbutils)
reports = stage.run("zip_select")

# COMMAND ----------

selection = stage.lake.read("zip_selection")
display(selection.groupBy("stage", "group").count().orderBy("stage", "group"))

# COMMAND ----------

display(
    selection.join(stage.lake.read("curated"), "doc_id")
    .select("quality_bucket", "rank", "doc_id", F.substring("text", 1, 200).alias("text_start"))
    .orderBy("quality_bucket", "rank").limit(20)
)
