# Databricks notebook source
# MAGIC %md
# MAGIC # siftlake quickstart
# MAGIC Runs the same jobs as `siftlake pipeline` on this cluster's Spark session: ingest → score →
# MAGIC bucketize, then reads the `curated` Delta table. Install the siftlake wheel as a cluster or
# MAGIC notebook library first (`%pip install /Volumes/.../siftlake-0.1.0-py3-none-any.whl`).
# MAGIC No logic lives here: every cell calls a job module.

# COMMAND ----------

dbutils.widgets.text("config", "conf/databricks.yaml")  # noqa: F821  (Databricks global)
dbutils.widgets.text("overrides", "")  # noqa: F821  e.g. "lake.root=/Volumes/main/x/lake"

# COMMAND ----------

from jobs.core.config import load_config  # noqa: E402
from jobs.core.registry import job_runner  # noqa: E402

config_path = dbutils.widgets.get("config")  # noqa: F821
overrides = [o for o in dbutils.widgets.get("overrides").split(",") if o.strip()]  # noqa: F821
cfg = load_config(config_path, overrides)
print(cfg.lake.root, cfg.pipeline.steps)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Run the pipeline (each job is idempotent: rerunning replaces its own output)

# COMMAND ----------

report = job_runner("pipeline")(spark, cfg)  # noqa: F821  (the notebook's session)
print(report.summary())

# COMMAND ----------

# MAGIC %md
# MAGIC ## Look at the buckets

# COMMAND ----------

from pyspark.sql import functions as F  # noqa: E402

from jobs.core.base import lake_for  # noqa: E402

lake = lake_for(spark, cfg)  # noqa: F821
curated = lake.read("curated")
display(  # noqa: F821
    curated.groupBy("quality_bucket")
    .agg(F.count("*").alias("docs"), F.sum("n_chars").alias("chars"))
    .orderBy("quality_bucket")
)

# COMMAND ----------

display(lake.read("quarantine").groupBy("job", "reason").count())  # noqa: F821
