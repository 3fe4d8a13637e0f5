"""What each ranking of a finished chain selected, read from its tables, and what it holds by kind.

For benches and tests on labelled corpora: the labels (doc_id -> kind, clean or junk) stay with
the caller and are joined here on the driver, after the jobs ran; no job ever sees them.
Selections (doc_id, weight): `preselect` and any `bucketize` ranking (curated.selected),
`zip` (the final stage of zip_selection), `mixture` (weight = repeats), `mimic`
(mimic_aggregate.mimic_keep), `prefilter` (passed documents).
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import functions as F

from jobs.core.lake import Lake


def _pandas(df) -> pd.DataFrame:
    return df.toPandas()


def chain_selections(lake: Lake) -> dict[str, pd.DataFrame]:
    """(doc_id, weight) per selection whose table exists in `lake`."""
    out = {}
    if lake.exists("prefilter"):
        out["prefilter"] = _pandas(lake.read("prefilter").where("passed").select(
            "doc_id", F.lit(1).alias("weight")))
    if lake.exists("curated"):
        out["bucketize"] = _pandas(lake.read("curated").where("selected").select(
            "doc_id", F.lit(1).alias("weight")))
    if lake.exists("zip_selection"):
        stored = lake.read("zip_selection")
        stages = {r.stage for r in stored.select("stage").distinct().collect()}
        final = "union" if "union" in stages else "group"
        out["zip"] = _pandas(stored.where(F.col("stage") == final).select("doc_id").distinct()
                             .select("doc_id", F.lit(1).alias("weight")))
    if lake.exists("mixture"):
        out["mixture"] = _pandas(lake.read("mixture").select(
            "doc_id", F.col("repeats").alias("weight")))
    if lake.exists("mimic_aggregate"):
        out["mimic"] = _pandas(lake.read("mimic_aggregate").where(F.col("mimic_keep")).select(
            "doc_id", F.lit(1).alias("weight")))
    return out


def composition(selection: pd.DataFrame, labels: pd.DataFrame) -> dict:
    """Junk share of the selected characters (weighted), clean characters kept, per-kind chars.

    `labels`: doc_id, n_chars, kind, junk (bool) for every document of the corpus.
    """
    joined = selection.merge(labels, on="doc_id", how="inner")
    chars = joined["n_chars"] * joined["weight"]
    total = float(chars.sum())
    junk = float(chars[joined["junk"]].sum())
    clean_total = float(labels.loc[~labels["junk"], "n_chars"].sum())
    kept_clean = float(joined.loc[~joined["junk"], "n_chars"].sum())  # distinct, unweighted
    by_kind = (chars.groupby(joined["kind"]).sum() / total).round(4).to_dict() if total else {}
    return {
        "docs": int(joined["doc_id"].nunique()),
        "junk_share": junk / total if total else float("nan"),
        "clean_kept": kept_clean / clean_total if clean_total else float("nan"),
        "by_kind": by_kind,
    }


def base_rate(labels: pd.DataFrame) -> float:
    return float(labels.loc[labels["junk"], "n_chars"].sum() / labels["n_chars"].sum())
