from __future__ import annotations

import json
import random

import fasttext
import numpy as np
import pandas as pd
import pytest

from jobs.fasttext_train import (
    normalise_labels,
    roc_auc,
    split_holdout,
    train_classifier,
    write_training_file,
)

FILLER = "the of and a to in is it that for on with as was".split()
POSITIVE_WORDS = "theorem proof lemma integral matrix vector eigenvalue".split()
NEGATIVE_WORDS = "click subscribe deal cheap offer coupon winner".split()
SMALL_MODEL = {"dim": 16, "bucket": 20_000, "thread": 1, "epoch": 10, "lr": 0.5}


def separable_samples(n: int, seed: int) -> pd.DataFrame:
    """Class words only appear after a newline: without the recipe's newline -> space
    preprocessing, fastText would see only the shared filler line and stay at chance."""
    rng = random.Random(seed)
    rows = []
    for index in range(n):
        positive = index % 2 == 0
        head = " ".join(rng.choices(FILLER, k=8))
        body = " ".join(rng.choices(POSITIVE_WORDS if positive else NEGATIVE_WORDS, k=6)
                        + rng.choices(FILLER, k=4))
        rows.append((f"{head}\n{body}", 1 if positive else 0))
    return pd.DataFrame(rows, columns=["text", "label"])


def brute_force_auc(scores, is_positive) -> float:
    positives = [s for s, p in zip(scores, is_positive, strict=True) if p]
    negatives = [s for s, p in zip(scores, is_positive, strict=True) if not p]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in positives for q in negatives)
    return wins / (len(positives) * len(negatives))


def test_classifier_beats_chance_on_a_separable_set(tmp_path):
    samples = separable_samples(800, seed=1)
    meta = train_classifier(samples, out_dir=tmp_path, holdout_fraction=0.2, seed=3, **SMALL_MODEL)

    assert meta["holdout"]["accuracy"] >= 0.95
    assert meta["holdout"]["auc"] >= 0.98
    assert meta["counts"] == {
        "total": 800,
        "train": {"__label__0": 320, "__label__1": 320},
        "holdout": {"__label__0": 80, "__label__1": 80},
    }
    assert meta["labels"] == ["__label__0", "__label__1"]
    assert meta["parameters"]["wordNgrams"] == 2 and meta["parameters"]["bucket"] == 20_000
    assert "'\\n' with ' '" in meta["preprocessing"]
    assert json.loads((tmp_path / "metadata.json").read_text()) == meta
    assert not list(tmp_path.glob(".train-*")), "the temporary training file is left behind"

    # Independent check on fresh documents, scored through fastText's own per-line predict.
    model = fasttext.load_model(str(tmp_path / "model.bin"))
    fresh = separable_samples(200, seed=99)
    correct = 0
    for text, label in zip(fresh.text, fresh.label, strict=True):
        (probability, top), = model.f.predict(text.replace("\n", " ") + "\n", 1, 0.0, "strict")
        correct += top == f"__label__{label}"
    assert correct / len(fresh) >= 0.95


def test_recipe_defaults_and_single_thread_determinism(tmp_path):
    samples = separable_samples(200, seed=2)
    first = train_classifier(samples, out_dir=tmp_path / "a", bucket=1000, dim=8, thread=1)
    second = train_classifier(samples, out_dir=tmp_path / "b", bucket=1000, dim=8, thread=1)
    assert first["parameters"] == {
        "epoch": 3, "lr": 0.1, "wordNgrams": 2, "dim": 8, "minCount": 1, "bucket": 1000,
        "thread": 1, "seed": 0, "loss": "softmax",
    }
    assert first["model_sha256"] == second["model_sha256"]
    assert first["counts"]["holdout"] == {"__label__0": 10, "__label__1": 10}


def test_no_holdout_gives_no_metrics(tmp_path):
    meta = train_classifier(separable_samples(40, seed=4), out_dir=tmp_path, holdout_fraction=0.0,
                            bucket=1000, dim=8, thread=1)
    assert meta["holdout"] == {"fraction": 0.0, "accuracy": None, "auc": None}
    assert meta["counts"]["train"] == {"__label__0": 20, "__label__1": 20}


def test_training_file_has_one_line_per_sample(tmp_path):
    texts = pd.Series(["a\nb\nc", "one line", "trailing\n", "\r\nwindows"])
    labels = pd.Series(["__label__1", "__label__0", "__label__1", "__label__0"])
    path = tmp_path / "train.txt"
    assert write_training_file(texts, labels, path) == 4
    lines = path.read_bytes().decode().split("\n")
    assert lines[-1] == "" and len(lines) == 5
    assert lines[:4] == ["__label__1 a b c", "__label__0 one line", "__label__1 trailing ",
                         "__label__0 \r windows"]


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    scores = rng.choice(np.linspace(0, 1, 7), size=300)  # many ties
    is_positive = rng.random(300) < 0.4
    assert roc_auc(scores, is_positive) == pytest.approx(brute_force_auc(scores, is_positive))
    assert roc_auc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert np.isnan(roc_auc(np.array([0.3, 0.4]), np.array([True, True])))


def test_holdout_split_is_stratified_and_seeded():
    labels = pd.Series(["__label__1"] * 30 + ["__label__0"] * 70)
    mask = split_holdout(labels, 0.1, seed=5)
    assert mask[:30].sum() == 3 and mask[30:].sum() == 7
    assert (split_holdout(labels, 0.1, seed=5) == mask).all()
    assert (split_holdout(labels, 0.1, seed=6) != mask).any()
    with pytest.raises(ValueError, match="holdout_fraction"):
        split_holdout(labels, 1.0, seed=0)


def test_labels_are_normalised():
    assert normalise_labels(pd.Series([1, "0", "__label__1"])).tolist() == [
        "__label__1", "__label__0", "__label__1"
    ]


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (pd.DataFrame({"text": ["a"]}), r"missing column\(s\) \['label'\]"),
        (pd.DataFrame({"text": [], "label": []}), "samples is empty"),
        (pd.DataFrame({"text": ["a", None], "label": [1, 0]}), "1 null or non-string"),
        (pd.DataFrame({"text": ["a", "b"], "label": [1, 1]}), "exactly two labels"),
        (pd.DataFrame({"text": ["a", "b"], "label": [2, 0]}), "including '__label__1'"),
        (pd.DataFrame({"text": ["a", "b"], "label": ["x y", 0]}), "without whitespace"),
        (pd.DataFrame({"text": ["a", "b"], "label": [None, 0]}), "label has 1 null"),
    ],
)
def test_bad_samples_are_named(tmp_path, samples, message):
    with pytest.raises(ValueError, match=message):
        train_classifier(samples, out_dir=tmp_path, bucket=1000, dim=8, thread=1)
