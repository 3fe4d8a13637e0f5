"""Train PreSelect's fastText classifier on a driver-side sample (METHODS.md §2).

Writes `model.bin` and `metadata.json` (labels, parameters, counts, preprocessing, held-out
accuracy and ROC AUC) into `out_dir`. Training uses fasttext-wheel 0.9.2: the 0.9.3 and numpy2
builds fail training at random with "Encountered NaN" (shared/NOTES.md).

Reproducibility: fastText's `seed` fixes initialisation, but with `thread > 1` the Hogwild
updates race, so two runs with the same seed can differ slightly; use `thread=1` for
bit-identical models.

Known recipe quirk, kept: a word of a document that starts with `__label__` is read by fastText
as an extra label of that training line (and ignored as a word at prediction time).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from udfs.fasttext_score import (
    DEFAULT_POSITIVE_LABEL,
    PREPROCESSING,
    preprocess_for_fasttext,
    score_texts,
)

LABEL_PREFIX = "__label__"
MODEL_FILE = "model.bin"
METADATA_FILE = "metadata.json"
METADATA_FORMAT = "siftlake.preselect_fasttext/1"


def default_thread_count() -> int:
    return min(4, os.cpu_count() or 1)


def normalise_labels(labels: pd.Series) -> pd.Series:
    """Labels as fastText spells them: `1` and `"1"` become `"__label__1"`."""
    if labels.isna().any():
        raise ValueError(f"samples.label has {int(labels.isna().sum())} null values")
    as_text = labels.astype(str)
    bad = as_text[as_text.str.contains(r"\s", regex=True) | (as_text == "")]
    if len(bad):
        raise ValueError(f"samples.label values must be non-empty without whitespace: {bad.iloc[0]!r}")
    return as_text.where(as_text.str.startswith(LABEL_PREFIX), LABEL_PREFIX + as_text)


def split_holdout(labels: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows, stratified: round(fraction * n) rows of each label."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    positions = np.arange(len(labels))
    for label in sorted(labels.unique()):
        members = positions[(labels == label).to_numpy()]
        n_held = int(round(fraction * len(members)))
        mask[rng.permutation(members)[:n_held]] = True
    return mask


def roc_auc(scores: np.ndarray, is_positive: np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties get half credit)."""
    scores = np.asarray(scores, dtype=np.float64)
    is_positive = np.asarray(is_positive, dtype=bool)
    n_pos = int(is_positive.sum())
    n_neg = len(is_positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Midrank of each distinct value = ranks before it + (its count + 1) / 2.
    midranks = np.cumsum(counts) - counts + (counts + 1) / 2.0
    rank_sum = midranks[inverse][is_positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def write_training_file(texts: pd.Series, labels: pd.Series, path: str | Path) -> int:
    """fastText's supervised format, one `label text` line per sample; returns lines written."""
    with open(path, "w", encoding="utf-8", errors="replace", newline="\n") as handle:
        for label, text in zip(labels.tolist(), texts.tolist(), strict=True):
            handle.write(f"{label} {preprocess_for_fasttext(text)}\n")
    return len(labels)


def train_classifier(
    samples: pd.DataFrame,
    *,
    out_dir: str | Path,
    epoch: int = 3,
    lr: float = 0.1,
    word_ngrams: int = 2,
    dim: int = 100,
    min_count: int = 1,
    bucket: int = 2_000_000,
    thread: int | None = None,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    positive_label: str = DEFAULT_POSITIVE_LABEL,
) -> dict[str, Any]:
    """Train on `samples[text, label]` (two labels), write model.bin + metadata.json, return it.

    Defaults are the PreSelect recipe (epoch 3, lr 0.1, wordNgrams 2, other settings fastText's).
    Training rows are shuffled: a file sorted by class would bias SGD towards the last class.
    """
    texts, labels = _validated_samples(samples, positive_label)
    held_out = split_holdout(labels, holdout_fraction, seed)
    train_rows = np.random.default_rng(seed).permutation(np.flatnonzero(~held_out))
    parameters = {
        "epoch": epoch, "lr": lr, "wordNgrams": word_ngrams, "dim": dim, "minCount": min_count,
        "bucket": bucket, "thread": thread or default_thread_count(), "seed": seed,
        "loss": "softmax",
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = _train(texts.iloc[train_rows], labels.iloc[train_rows], parameters, out)
    train_seconds = time.perf_counter() - started
    model_path = out / MODEL_FILE
    model.save_model(str(model_path))

    holdout_metrics: dict[str, Any] = {"fraction": holdout_fraction, "accuracy": None, "auc": None}
    if held_out.any():
        holdout_scores = score_texts(texts[held_out], model, positive_label)
        is_positive = (labels[held_out] == positive_label).to_numpy()
        # Binary softmax: P(positive) > 0.5 exactly when the positive label is fastText's top-1.
        holdout_metrics["accuracy"] = float(np.mean((holdout_scores > 0.5) == is_positive))
        auc = roc_auc(holdout_scores, is_positive)
        holdout_metrics["auc"] = None if np.isnan(auc) else auc

    result = {
        "format": METADATA_FORMAT,
        "model_file": MODEL_FILE,
        "model_sha256": _sha256(model_path),
        "model_bytes": model_path.stat().st_size,
        "labels": sorted(model.get_labels()),
        "positive_label": positive_label,
        "parameters": parameters,
        "counts": {
            "total": len(labels),
            "train": _label_counts(labels.iloc[train_rows]),
            "holdout": _label_counts(labels[held_out]),
        },
        "preprocessing": PREPROCESSING,
        "holdout": holdout_metrics,
        "train_seconds": round(train_seconds, 3),
        "fasttext": f"fasttext-wheel {package_metadata.version('fasttext-wheel')}",
        "reproducibility": "bit-identical only with thread=1 (Hogwild updates race otherwise)",
    }
    (out / METADATA_FILE).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _validated_samples(samples: pd.DataFrame, positive_label: str) -> tuple[pd.Series, pd.Series]:
    missing = {"text", "label"} - set(samples.columns)
    if missing:
        raise ValueError(f"samples is missing column(s) {sorted(missing)}; has {list(samples.columns)}")
    if samples.empty:
        raise ValueError("samples is empty: nothing to train on")
    texts = samples["text"].reset_index(drop=True)
    not_text = texts.map(lambda value: not isinstance(value, str))
    if not_text.any():
        raise ValueError(
            f"samples.text has {int(not_text.sum())} null or non-string values "
            f"(first at row {int(np.flatnonzero(not_text.to_numpy())[0])})"
        )
    labels = normalise_labels(samples["label"].reset_index(drop=True))
    distinct = sorted(labels.unique())
    if positive_label not in distinct or len(distinct) != 2:
        raise ValueError(
            f"samples.label must hold exactly two labels including {positive_label!r}; got {distinct}"
        )
    return texts, labels


def _train(texts: pd.Series, labels: pd.Series, parameters: dict[str, Any], out: Path):
    import fasttext

    handle, train_path = tempfile.mkstemp(prefix=".train-", suffix=".txt", dir=out)
    os.close(handle)
    try:
        write_training_file(texts, labels, train_path)
        return fasttext.train_supervised(input=train_path, verbose=0, **parameters)
    finally:
        os.unlink(train_path)


def _label_counts(labels: pd.Series) -> dict[str, int]:
    return {str(label): int(count) for label, count in sorted(labels.value_counts().items())}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
