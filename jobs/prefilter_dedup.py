"""Near-duplicates for the pre-filter: which documents share a MinHash band with an earlier one.

The band keys (udfs/minhash.py) are measured with the other statistics and stored in
`prefilter.minhash_bands`, so an incremental run compares new documents with every stored one
without reading their text. Only narrow rows are shuffled: (band key, doc_id), `bands` per
document; bands that only one document holds (nearly all) are dropped before the join back.

A day's batch against a large table (`near_duplicates_of_few`) collects the new band keys, finds
the stored documents holding one of them with an Arrow kernel where their band lists are read
(no row per band is made, nothing is shuffled) and resolves the few candidates on the driver.

"Earlier" is an order every run agrees on: documents judged in an earlier run come first (their
verdicts are never revised, so appends stay appends), then doc_id. A document is a near-duplicate
when any of its bands holds an earlier document; `near_duplicate_of` names the earliest such one.
Every member of a group of copies but the first is therefore filtered, as FineWeb keeps one
document per cluster. Rule verdicts play no part: a copy of a page the rules removed is filtered
too, as it carries the same content.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

BANDS_COLUMN = "minhash_bands"
DUPLICATE_OF_COLUMN = "near_duplicate_of"
FLAG_COLUMN = "is_near_duplicate"


def _band_rows(bands: DataFrame, generation: int) -> DataFrame:
    return bands.select(
        "doc_id", F.lit(generation).alias("generation"), F.explode(BANDS_COLUMN).alias("band")
    )


def near_duplicates(new: DataFrame, stored: DataFrame | None = None) -> DataFrame:
    """doc_id, near_duplicate_of for each document of `new` (doc_id, minhash_bands) that shares
    a band with an earlier document of `new` or with any of `stored` (same columns).

    Only the stored rows holding a band of a new document take part; both sides are shuffled by
    band (a batch too large to collect: `near_duplicates_of_few` takes a day's).
    """
    rows = _band_rows(new, 1)
    candidates = rows
    if stored is not None:
        keys = rows.select("band")
        matching = _band_rows(stored, 0).join(keys.distinct(), "band", "left_semi")
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


def key_bitmap(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """A bitmap of the keys' low bits (~32 bits per key, at most 16 MB) and its mask: a stored
    band whose bit is clear is not a key, so few bands reach the exact search."""
    bits = 1 << int(np.clip(np.ceil(np.log2(max(len(keys), 1) * 32)), 16, 27))
    low = keys & (bits - 1)
    bitmap = np.zeros(bits >> 3, np.uint8)
    np.bitwise_or.at(bitmap, low >> 3, (1 << (low & 7)).astype(np.uint8))
    return bitmap, bits - 1


def stored_band_holders(stored: DataFrame, keys: np.ndarray) -> DataFrame:
    """band, doc_id: the earliest (least doc_id) stored document holding each of `keys` (sorted
    unique band keys) that any holds. The band lists are searched where they are read."""
    bitmap, mask = key_bitmap(keys)

    def task(batches):
        for batch in batches:
            lists = batch.column(BANDS_COLUMN)
            values = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
            if not len(values) or not len(keys):
                continue
            low = values & mask
            maybe = np.flatnonzero((bitmap[low >> 3] >> (low & 7)) & 1)
            slots = np.minimum(np.searchsorted(keys, values[maybe]), len(keys) - 1)
            hits = maybe[keys[slots] == values[maybe]]
            if len(hits):
                parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)[hits]
                yield pa.RecordBatch.from_arrays(
                    [pa.array(values[hits], pa.int64()), batch.column("doc_id").take(parents)],
                    names=["band", "doc_id"])

    holders = stored.select("doc_id", BANDS_COLUMN).mapInArrow(task, "band bigint, doc_id string")
    return holders.groupBy("band").agg(F.min("doc_id").alias("doc_id"))


def near_duplicates_of_few(new: pa.Table, stored: DataFrame) -> pa.Table:
    """What `near_duplicates(new, stored)` finds, for a collected day's batch `new` (doc_id,
    minhash_bands): doc_id, near_duplicate_of for each new document sharing a band with an
    earlier one (any stored document, then the new ones by doc_id). Vectorised: no Python loop
    per band or document."""
    lists = new.column(BANDS_COLUMN).combine_chunks()
    ids = new.column("doc_id").combine_chunks()
    bands = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
    schema = pa.schema([("doc_id", pa.string()), (DUPLICATE_OF_COLUMN, pa.string())])
    if not len(bands):
        return schema.empty_table()
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
    by_id = pc.sort_indices(ids).to_numpy()
    rank = np.empty(len(ids), np.int64)
    rank[by_id] = np.arange(len(ids))  # a new document's place in doc_id order
    row_rank = rank[parents]
    keys, inverse, holders = np.unique(bands, return_inverse=True, return_counts=True)
    first_rank = np.full(len(keys), len(ids), np.int64)
    np.minimum.at(first_rank, inverse, row_rank)
    held = stored_band_holders(stored, keys).toArrow()
    held_bands = held["band"].to_numpy()
    order = np.argsort(held_bands)
    held_bands, held_ids = held_bands[order], held["doc_id"].take(pa.array(order))
    slot = np.minimum(np.searchsorted(held_bands, bands), max(len(held_bands) - 1, 0))
    is_held = held_bands[slot] == bands if len(held_bands) else np.zeros(len(bands), bool)
    # A stored holder comes first; else the least new doc_id of a band two or more hold.
    stored_hits = pa.table({"doc": parents[is_held], "first": held_ids.take(pa.array(slot[is_held]))})
    new_hit = ~is_held & (holders[inverse] > 1) & (first_rank[inverse] != row_rank)
    new_hits = pa.table({"doc": parents[new_hit], "first": first_rank[inverse][new_hit]})
    from_stored = stored_hits.group_by("doc").aggregate([("first", "min")])
    from_new = new_hits.group_by("doc").aggregate([("first", "min")])
    from_new = from_new.filter(pc.invert(pc.is_in(from_new["doc"], from_stored["doc"])))
    docs = pa.concat_arrays([from_stored["doc"].combine_chunks(),
                             from_new["doc"].combine_chunks()]).cast(pa.int64())
    firsts = pa.concat_arrays([
        from_stored["first_min"].combine_chunks().cast(pa.string()),
        ids.take(pa.array(by_id[from_new["first_min"].to_numpy()], pa.int64())).cast(pa.string()),
    ])
    return pa.table([ids.take(docs).cast(pa.string()), firsts], schema=schema)
