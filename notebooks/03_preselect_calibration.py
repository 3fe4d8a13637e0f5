# Databricks notebook source
# MAGIC %md
# MAGIC # 03 · PreSelect calibration
# MAGIC `predictive_strength` turns the reference losses of 02 into each document's predictive
# MAGIC strength (how well its BPC ranks the models as their benchmarks do), `train_classifier`
# MAGIC trains the fastText classifier on the strongest and weakest documents, and `score` rescores
# MAGIC every passed document with zstd and that classifier (`fasttext_score`). This stage always
# MAGIC scores with fastText (`score.scorers=[zstd, fasttext]` before the widget's overrides).

# COMMAND ----------

# ruff: noqa: F821 -- spark, dbutils and display are Databricks notebook globals
import json
from pathlib import Path

from jobs.core.notebook import declare_widgets, start

declare_widgets(dbutils)

# COMMAND ----------

stage = start(spark, dbutils, ["score.scorers=[zstd, fasttext]"])
reports = stage.run("predictive_strength", "train_classifier", "score")

# COMMAND ----------

print(json.dumps(
    json.loads((Path(stage.cfg.preselect.model_dir) / "metadata.json").read_text()), indent=2
))

# COMMAND ----------

display(stage.lake.read("predictive_strength").groupBy("ps").count().orderBy("ps"))

# COMMAND ----------

display(stage.lake.read("scores").select("zstd_ratio", "fasttext_score").summary())
