"""Near-duplicates for the pre-filter: which documents share a MinHash band with an earlier one.

The band keys (udfs/minhash.py) are measured with the other statistics and stored in
`prefilter.minhash_bands`, so an incremental run compares new documents with every stored one
without reading their text. Only narrow rows are shuffled: (band key, doc_id), `bands` per
document; bands that only one document holds (nearly all) are dropped before the join back.

"Earlier" is an order every run agrees on: documents judged in an earlier run come first (their
verdicts are never revised, so appends stay appends), then doc_id. A document is a near-duplicate
when any of its bands holds an earlier document; `near_duplicate_of` names the earliest such one.
Every member of a group of copies but the first is therefore filtered, as FineWeb keeps one
document per cluster. Rule verdicts play no part: a copy of a page the rules removed is filtered
too, as it carries the same content.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

BANDS_COLUMN = "minhash_bands"
DUPLICATE_OF_COLUMN = "near_duplicate_of"
FLAG_COLUMN = "is_near_duplicate"


def _band_rows(bands: DataFrame, generation: int) -> DataFrame:
    return bands.select(
        "doc_id", F.lit(generation).alias("generation"), F.explode(BANDS_COLUMN).alias("band")
    )


def near_duplicates(
    new: DataFrame, stored: DataFrame | None = None, broadcast_new: bool = False
) -> DataFrame:
    """doc_id, near_duplicate_of for each document of `new` (doc_id, minhash_bands) that shares
    a band with an earlier document of `new` or with any of `stored` (same columns).

    Only the stored rows holding a band of a new document take part: with `broadcast_new` the
    new band keys are broadcast and the stored keys stream past them where they are read
    (a daily batch against a large table), else both sides are shuffled by band.
    """
    rows = _band_rows(new, 1)
    candidates = rows
    if stored is not None:
        keys = rows.select("band")
        matching = _band_rows(stored, 0).join(
            F.broadcast(keys) if broadcast_new else keys.distinct(), "band", "left_semi")
        candidates = rows.unionByName(matching)
    order = F.struct("generation", "doc_id")
    shared = (
        candidates.groupBy("band")
        .agg(F.min(order).alias("first"), F.count("*").alias("holders"))
        .where(F.col("holders") > 1)
        .select("band", "first")
    )
    return (
        rows.join(shared, "band")
        .where(F.col("first.doc_id") != F.col("doc_id"))
        .groupBy("doc_id")
        .agg(F.min("first").alias("first"))
        .select("doc_id", F.col("first.doc_id").alias(DUPLICATE_OF_COLUMN))
    )


def with_near_duplicates(statistics: DataFrame, duplicates: DataFrame) -> DataFrame:
    """The statistics with near_duplicate_of (null: none earlier) and is_near_duplicate."""
    joined = statistics.join(duplicates, "doc_id", "left")
    return joined.withColumn(FLAG_COLUMN, F.col(DUPLICATE_OF_COLUMN).isNotNull())
