"""Iterator pandas UDF computing Grad-Mimic scores on executors (GPU when assigned, else CPU).

The current checkpoint is held by `udfs.lm_models.get_cached_lm` (once per Python worker and
device). The direction v = θ_ref − θ_t is computed once per worker from both checkpoints loaded in
float32 on the CPU, then only the layer's difference is kept: scoring in bf16 must not turn
bf16 rounding of θ_t into part of v, and the reference model need not stay in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pandas as pd
import torch
from pyspark.sql.functions import pandas_udf

from udfs.lm_models import get_cached_lm, load_causal_lm, parse_dtype, resolve_model_path
from udfs.mimic import HEAD_LAYER, METHODS, MimicDirection, mimic_direction, score_texts

MIMIC_RESULT_SCHEMA = "score double, cosine double, error string"

_DIRECTIONS: dict[tuple[str, str, str, str], MimicDirection] = {}


def cached_direction(
    current_path: str, reference_path: str, layer: str, device: torch.device
) -> MimicDirection:
    """v for (current, reference, layer) on `device`, computed once per Python process."""
    key = (
        str(resolve_model_path(current_path).resolve()),
        str(resolve_model_path(reference_path).resolve()),
        layer,
        str(device),
    )
    cached = _DIRECTIONS.get(key)
    if cached is None:
        current = load_causal_lm(current_path, dtype="float32", device="cpu")
        reference = load_causal_lm(reference_path, dtype="float32", device="cpu")
        direction = mimic_direction(current.model, reference.model, layer)
        cached = dataclasses.replace(direction, delta=direction.delta.to(device))
        _DIRECTIONS[key] = cached
    return cached


def clear_direction_cache() -> None:
    _DIRECTIONS.clear()


def validate_mimic_args(
    *, layer: str, dtype: str, max_length: int | None, batch_size: int, method: str
) -> None:
    """Fail on the driver, naming the argument, rather than in every task."""
    if not isinstance(layer, str) or not layer:
        raise ValueError(f"layer must be a non-empty string, got {layer!r}")
    parse_dtype(dtype, torch.device("cpu"))
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise ValueError(f"max_length must be a positive int or None, got {max_length!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def make_mimic_udf(
    current_path: str,
    reference_path: str,
    *,
    layer: str = HEAD_LAYER,
    dtype: str = "auto",
    max_length: int | None = None,
    batch_size: int = 8,
    method: str = "auto",
):
    """pandas UDF text -> struct(score, cosine, error); unscorable texts get nulls and a reason.

    `max_length` counts scored tokens per document (None: the model context minus the prefix);
    `batch_size` is documents per forward pass. Configuration errors (missing paths, identical
    checkpoints, unknown layer) fail the task with a message naming them.
    """
    validate_mimic_args(
        layer=layer, dtype=dtype, max_length=max_length, batch_size=batch_size, method=method
    )
    resolve_model_path(current_path)
    resolve_model_path(reference_path)

    @pandas_udf(MIMIC_RESULT_SCHEMA)
    def mimic_score(texts: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        loaded = None
        direction = None
        for batch in texts:
            if loaded is None:  # empty partitions never load a model
                loaded = get_cached_lm(current_path, dtype)
                direction = cached_direction(current_path, reference_path, layer, loaded.device)
            yield score_texts(
                loaded.model,
                loaded.tokenizer,
                direction,
                batch.tolist(),
                max_length=max_length,
                batch_size=batch_size,
                method=method,
            )

    return mimic_score
