# Databricks notebook source
# MAGIC %md
# MAGIC # 06 · Compute-aware mixture
# MAGIC `siftlake mixture` fits the scaling law of data filtering to each bucket's training curves
# MAGIC (`mixture.observations`), picks the top-k buckets that minimise the predicted error for
# MAGIC `mixture.compute_budget`, and writes `mixture_plan`, `mixture` and two plots. With the
# MAGIC `local` config, `siftlake demo_curves` first trains a tiny model on each bucket for its
# MAGIC curves (only when the observations file is missing among the artifacts).

# COMMAND ----------

# ruff: noqa: F821 -- spark, dbutils and display are Databricks notebook globals
from jobs.core.notebook import declare_widgets, ensure_demo_curves, plots, png_figure, start

declare_widgets(dbutils)

# COMMAND ----------

stage = start(spark, dbutils)
ensure_demo_curves(stage)
reports = stage.run("mixture")

# COMMAND ----------

display(stage.lake.read("mixture_plan"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Predicted error against compute, and each bucket's utility as it repeats

# COMMAND ----------

for plot in plots(stage, "mixture"):
    print(plot.name)
    display(png_figure(plot))
