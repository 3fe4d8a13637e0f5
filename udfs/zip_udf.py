"""applyInPandas wrapper around the ZIP kernel: one call selects within one group of documents.

Input per group: a pandas DataFrame with columns doc_id, text, group (one value). Output: the
picks as rows of ZIP_SELECTION_SCHEMA (doc_id, group, round, stage, rank).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

from udfs.zip_greedy import (
    BACKENDS,
    SERIALIZATIONS,
    Backend,
    Serialization,
    list_compression,
    serialize,
    zip_select,
)

BudgetUnit = Literal["documents", "characters"]
BUDGET_UNITS: tuple[str, ...] = ("documents", "characters")
Stage = Literal["group", "union"]
UNION_GROUP = "__all__"

ZIP_SELECTION_SCHEMA = StructType(
    [
        StructField("doc_id", StringType(), False),
        StructField("group", StringType(), False),
        StructField("round", IntegerType(), False),
        StructField("stage", StringType(), False),
        StructField("rank", IntegerType(), False),
    ]
)
ZIP_SELECTION_COLUMNS = [field.name for field in ZIP_SELECTION_SCHEMA.fields]


def proportional(fraction: float, total: int) -> int:
    """ceil(fraction * total), at most total: every non-empty group contributes at least one."""
    # The epsilon keeps 0.1 * 30 (= 3.0000000000000004 in floating point) at 3.
    return min(total, math.ceil(fraction * total - 1e-9))


def group_budget(
    n_docs: int, n_chars: int, *, unit: BudgetUnit, fraction: float | None, total: int | None
) -> tuple[int, int | None]:
    """(document budget, character budget or None) for one group.

    `fraction` makes the budget proportional to the group; `total` is an absolute budget in the
    unit (the second pass over the union uses it). A character budget leaves documents unbounded.
    """
    if (fraction is None) == (total is None):
        raise ValueError("give exactly one of budget fraction and budget total")
    if unit == "documents":
        docs = proportional(fraction, n_docs) if fraction is not None else min(total, n_docs)
        return docs, None
    if unit != "characters":
        raise ValueError(f"budget_unit must be one of {BUDGET_UNITS}, got {unit!r}")
    chars = proportional(fraction, n_chars) if fraction is not None else total
    return n_docs, max(int(chars), 1)


def select_group(
    pdf: pd.DataFrame,
    *,
    k1: int,
    k2: int,
    k3: int,
    budget_unit: BudgetUnit = "documents",
    budget_fraction: float | None = None,
    budget_total: int | None = None,
    backend: Backend = "zlib9",
    zstd_level: int = 3,
    serialization: Serialization = "text",
    stage: Stage = "group",
) -> pd.DataFrame:
    """Run ZIP over one group's documents and return its picks in selection order."""
    if pdf.empty:
        return _empty_picks()
    missing = {"doc_id", "text", "group"} - set(pdf.columns)
    if missing:
        raise ValueError(f"zip group input lacks columns {sorted(missing)}")
    duplicated = pdf["doc_id"][pdf["doc_id"].duplicated()]
    if not duplicated.empty:
        raise ValueError(f"duplicate doc_id in a ZIP group: {duplicated.iloc[0]!r}")
    # Spark delivers a group's rows in no fixed order; ties in the kernel go to the lowest
    # position, so sort for run-to-run determinism.
    pdf = pdf.sort_values("doc_id", kind="stable", ignore_index=True)
    ids = pdf["doc_id"].tolist()
    texts = pdf["text"].tolist()
    pieces, framing = serialize(texts, serialization, ids=ids)
    char_lengths = [len(t) if isinstance(t, str) else 0 for t in texts]
    budget, char_budget = group_budget(
        len(pdf), sum(char_lengths), unit=budget_unit, fraction=budget_fraction, total=budget_total
    )
    if budget == 0:
        return _empty_picks()
    result = zip_select(
        pieces, k1=k1, k2=k2, k3=k3, budget=budget, char_budget=char_budget,
        char_lengths=char_lengths, framing=framing, backend=backend, zstd_level=zstd_level,
    )
    return pd.DataFrame(
        {
            "doc_id": pdf["doc_id"].to_numpy()[result.positions].astype(str),
            "group": str(pdf["group"].iloc[0]),
            "round": result.rounds.astype(np.int32),
            "stage": stage,
            "rank": result.ranks.astype(np.int32),
        },
        columns=ZIP_SELECTION_COLUMNS,
    )


def make_zip_group_selector(
    *,
    k1: int,
    k2: int,
    k3: int,
    budget_unit: BudgetUnit = "documents",
    budget_fraction: float | None = None,
    budget_total: int | None = None,
    backend: Backend = "zlib9",
    zstd_level: int = 3,
    serialization: Serialization = "text",
    stage: Stage = "group",
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """The function for `groupBy("group").applyInPandas(fn, ZIP_SELECTION_SCHEMA)`.

    Arguments are checked here, on the driver, so a bad setting fails before any task runs.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if serialization not in SERIALIZATIONS:
        raise ValueError(f"serialization must be one of {SERIALIZATIONS}, got {serialization!r}")
    if budget_unit not in BUDGET_UNITS:
        raise ValueError(f"budget_unit must be one of {BUDGET_UNITS}, got {budget_unit!r}")
    if (budget_fraction is None) == (budget_total is None):
        raise ValueError("give exactly one of budget_fraction and budget_total")
    if budget_fraction is not None and not 0 < budget_fraction <= 1:
        raise ValueError(f"budget_fraction must be in (0, 1], got {budget_fraction}")
    if budget_total is not None and budget_total < 0:
        raise ValueError(f"budget_total must be >= 0, got {budget_total}")
    if not (isinstance(k1, int) and isinstance(k2, int) and isinstance(k3, int)
            and 1 <= k3 <= k2 <= k1):
        raise ValueError(f"need integers 1 <= k3 <= k2 <= k1, got k1={k1}, k2={k2}, k3={k3}")
    settings = dict(
        k1=k1, k2=k2, k3=k3, budget_unit=budget_unit, budget_fraction=budget_fraction,
        budget_total=budget_total, backend=backend, zstd_level=zstd_level,
        serialization=serialization, stage=stage,
    )

    def zip_group(pdf: pd.DataFrame) -> pd.DataFrame:
        return select_group(pdf, **settings)  # type: ignore[arg-type]

    return zip_group


def _empty_picks() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "doc_id": pd.Series([], dtype=object),
            "group": pd.Series([], dtype=object),
            "round": pd.Series([], dtype=np.int32),
            "stage": pd.Series([], dtype=object),
            "rank": pd.Series([], dtype=np.int32),
        }
    )


LIST_SIZE_SCHEMA = StructType(
    [
        StructField("group", StringType(), False),
        StructField("n_docs", IntegerType(), False),
        StructField("raw_bytes", LongType(), False),
        StructField("compressed_bytes", LongType(), False),
    ]
)


def make_list_size_fn(
    *, backend: Backend = "zlib9", zstd_level: int = 3, serialization: Serialization = "text"
) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """For applyInPandas over (group, doc_id, text, order): the group's documents as one list in
    `order`, compressed whole with the kernel's back-end. Rows of LIST_SIZE_SCHEMA."""

    def list_size(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values(["order", "doc_id"], kind="stable")
        pieces, framing = serialize(pdf["text"].tolist(), serialization, ids=pdf["doc_id"].tolist())
        raw, compressed = list_compression(
            (p for p in pieces if p), framing, backend=backend, zstd_level=zstd_level
        )
        return pd.DataFrame(
            {
                "group": [str(pdf["group"].iloc[0])],
                "n_docs": [sum(1 for p in pieces if p)],
                "raw_bytes": [raw],
                "compressed_bytes": [compressed],
            }
        )

    return list_size
