"""fastText scoring on executors: PreSelect's document score P(positive label) (METHODS.md §2).

Prediction goes through `model.f.predict(line, k, threshold, "strict")`, one call per document
inside a per-Arrow-batch loop. With fasttext-wheel 0.9.2 under NumPy 2 the friendlier calls are
broken (shared/NOTES.md): `model.predict(str)` raises, and `model.predict(list)` /
`f.multilinePredict` return wrong probabilities. `f.predict` builds no NumPy array.

Preprocessing (identical at training and inference, `preprocess_for_fasttext`): replace "\\n"
with a space and nothing else, as the PreSelect recipe does. fastText reads one line per
prediction, so a newline would silently truncate the document; "\\r", "\\t", "\\v", "\\f" and
NUL are already word separators inside fastText (checked: "a\\rb" scores exactly like "a b"),
so they need no replacement.

The model cache lives in this importable module, never in a closure or `__main__`: Spark pickles
a UDF's closure globals by value, which would hand every task a fresh, empty cache.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from udfs.batch_udf import arrow_or_pandas_udf

if TYPE_CHECKING:
    from fasttext.FastText import _FastText

DEFAULT_POSITIVE_LABEL = "__label__1"
PREPROCESSING = "replace '\\n' with ' '; nothing else (no lowercasing, no tokenisation)"

# Resolved path -> (file identity, model). One entry per model file per Python worker.
_MODELS: dict[str, tuple[tuple[int, int], _FastText]] = {}
_LOAD_COUNTS: dict[str, int] = {}
_LOADER_PIDS: dict[str, int] = {}  # which process loaded it: a preloading daemon, or this one


def preprocess_for_fasttext(text: str) -> str:
    """The recipe's only preprocessing step, shared by training and scoring."""
    return text.replace("\n", " ")


def resolve_model_path(model_ref: str) -> str:
    """Turn a model reference into a readable local file path.

    A bare file name (no directory part) is first looked up among the files shipped with
    `SparkContext.addFile`; anything else is a path every executor can read (local disk, a
    cluster mount such as /dbfs or /Volumes).
    """
    if not model_ref:
        raise ValueError("fastText model reference is empty")
    candidates = []
    if os.path.basename(model_ref) == model_ref:
        shipped = _shipped_file_path(model_ref)
        if shipped is not None:
            candidates.append(shipped)
    candidates.append(model_ref)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise FileNotFoundError(
        f"fastText model {model_ref!r} not found; looked at: {', '.join(candidates)} "
        "(ship it with SparkContext.addFile and pass its file name, or pass a path that "
        "every executor can read)"
    )


def _shipped_file_path(name: str) -> str | None:
    try:
        from pyspark import SparkFiles

        return SparkFiles.get(name)
    except Exception:  # no Spark here, or no SparkFiles root in this process
        return None


def load_fasttext_model(model_ref: str) -> _FastText:
    """Load a model once per Python process; reload only when the file on disk changes."""
    path = resolve_model_path(model_ref)
    stat = os.stat(path)
    identity = (stat.st_mtime_ns, stat.st_size)
    cached = _MODELS.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    import fasttext

    try:
        # fastText prints a deprecation notice on every load; one per worker per model is noise.
        with contextlib.redirect_stderr(io.StringIO()):
            model = fasttext.load_model(path)
    except ValueError as exc:  # fastText's message lacks the path
        raise ValueError(f"fastText model {path!r} could not be loaded: {exc}") from exc
    _MODELS[path] = (identity, model)
    _LOAD_COUNTS[path] = _LOAD_COUNTS.get(path, 0) + 1
    _LOADER_PIDS[path] = os.getpid()
    return model


def model_loader_pid(model_ref: str) -> int | None:
    """The pid of the process whose load this process's cached model comes from, if cached."""
    return _LOADER_PIDS.get(resolve_model_path(model_ref))


def model_load_count(model_ref: str) -> int:
    """How many times this process has loaded the model file (1 when the cache works)."""
    return _LOAD_COUNTS.get(resolve_model_path(model_ref), 0)


def score_texts(
    texts: Iterable[str | None],
    model: _FastText,
    positive_label: str = DEFAULT_POSITIVE_LABEL,
) -> np.ndarray:
    """P(positive_label) for each text, float64; null texts get NaN (Spark turns it into null)."""
    values = texts.tolist() if isinstance(texts, pd.Series) else list(texts)
    lines: list[str | None] = []
    for index, text in enumerate(values):
        if isinstance(text, str):
            lines.append(preprocess_for_fasttext(text) + "\n")
        elif text is None or (isinstance(text, float) and math.isnan(text)):
            lines.append(None)
        else:
            raise TypeError(f"texts[{index}] is {type(text).__name__}, expected str or None")
    return _predict_lines(lines, model, positive_label)


def score_arrow(
    texts: pa.Array | pa.ChunkedArray,
    model: _FastText,
    positive_label: str = DEFAULT_POSITIVE_LABEL,
) -> pa.Array:
    """The same scores for an Arrow string array, preprocessed in Arrow (null stays null)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise TypeError(f"fastText scoring needs a string column, got {texts.type}")
    newline, nothing = pa.scalar("\n", texts.type), pa.scalar("", texts.type)
    lines = pc.binary_join_element_wise(pc.replace_substring(texts, "\n", " "), newline, nothing)
    scores = _predict_lines(lines.to_pylist(), model, positive_label)
    return pa.array(scores, pa.float64(), mask=np.isnan(scores))


def _predict_lines(
    lines: list[str | None], model: _FastText, positive_label: str
) -> np.ndarray:
    """P(positive_label) per preprocessed, newline-terminated line; None gives NaN.

    fastText adds 1e-5 to every probability before taking its log, so a confident prediction can
    come back as 1.00001: scores are clipped to [0, 1] to stay probabilities.
    """
    labels = model.get_labels()
    if positive_label not in labels:
        raise ValueError(f"positive label {positive_label!r} is not a label of this model: {labels}")
    predict = model.f.predict
    scores = np.empty(len(lines), dtype=np.float64)
    for index, line in enumerate(lines):
        if line is None:
            scores[index] = math.nan
            continue
        try:
            predictions = predict(line, -1, 0.0, "strict")
        except TypeError:
            # Lone surrogates cannot be encoded to UTF-8 for the C++ side; Arrow strings never
            # contain them, Python callers might.
            predictions = predict(line.encode("utf-8", "replace").decode("utf-8"), -1, 0.0,
                                  "strict")
        scores[index] = _probability_of(predictions, positive_label)
    return np.clip(scores, 0.0, 1.0)


def _probability_of(predictions: list[tuple[float, str]], label: str) -> float:
    # k=-1 with threshold 0 returns every label, so the positive one is always present.
    for probability, predicted in predictions:
        if predicted == label:
            return probability
    return 0.0


def make_fasttext_udf(model_ref: str, positive_label: str = DEFAULT_POSITIVE_LABEL):
    """A `text -> double` (P(positive_label)) column function for `df.withColumn`.

    `model_ref` is a file name shipped with `spark.sparkContext.addFile(path)` (pass
    `os.path.basename(path)`) or a path readable on every executor. Each Python worker loads
    the model once and scores a whole Arrow batch per call: an Arrow UDF where PySpark has them
    (4.1+; no pandas conversion), a pandas UDF otherwise.
    """
    if not model_ref:
        raise ValueError("fastText model reference is empty")
    return arrow_or_pandas_udf(
        "double",
        lambda texts: score_arrow(texts, load_fasttext_model(model_ref), positive_label),
        lambda texts: pd.Series(
            score_texts(texts, load_fasttext_model(model_ref), positive_label), index=texts.index
        ),
    )
