"""Real (samples_seen, error) observations for the demo: a tiny byte-level LM per bucket, on CPU.

For each quality bucket a fresh model trains on a fixed pool of that bucket's documents, cycling
the pool for several epochs (each epoch is a seeded permutation, so every sample is seen once per
pass, as the scaling law assumes), and is evaluated on one shared held-out set at evenly spaced
steps. A sample is one document's first `sample_bytes` UTF-8 bytes, so `pool_size` and
`samples_seen` count documents.

The shared held-out set takes `heldout_per_bucket` unseen documents from every bucket (pass
`eval_texts` to target a reference set instead): the curves answer "how well does training on
this bucket model the corpus". error = bits per byte / 8 = mean NLL / ln(256): the fraction of a
raw byte's 8 bits the model still needs, in (0, 1] for any model at least as good as uniform.

The model is a fixed-window MLP language model (Bengio et al., 2003) over bytes: the previous
`order` bytes are embedded, concatenated, passed through one tanh layer and a softmax over 256
bytes. Ten buckets x 200 documents (the defaults) trained in 15-25 s on a busy 2-core machine.

Demo chain: `sample_bucket_texts(curated, docs_per_bucket + heldout_per_bucket)` ->
`demo_observations` -> `fit_scaling_law(obs, on_refusal="drop")` -> `plan_mixture(...,
excluded=fit.refused)`. On the demo corpus the boilerplate buckets make the held-out error rise
with training and are refused (listed in mixture_plan with the reason); a tiny model barely
suffers from repetition, so small buckets (many passes) can put tau on the edge of [1, 10]:
`tau_range=(1, 30)` keeps them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from torch import nn

from jobs.core.progress import progress
from jobs.mixture import seeded_uniform

START = 256  # context padding before a sample's first byte; not a predictable byte


@dataclass(frozen=True)
class CurveSettings:
    """Knobs of the demo runs (config: mixture.demo_steps -> steps, demo_docs_per_bucket)."""

    docs_per_bucket: int = 200  # pool size cap (documents) per bucket
    heldout_per_bucket: int = 8  # documents per bucket for the shared held-out set
    steps: int = 60  # optimiser steps per bucket
    batch_size: int = 32  # samples (documents) per step
    sample_bytes: int = 128  # bytes per sample
    n_points: int = 6  # evaluations per bucket, evenly spaced over the steps
    order: int = 4  # bytes of context
    embed_dim: int = 16
    hidden_dim: int = 128
    learning_rate: float = 3e-3
    seed: int = 0
    # Torch threads while training: these matrices are too small to gain from more, and one
    # thread leaves the other core to Spark (2 threads ran 5x slower on a busy 2-core machine).
    threads: int = 1

    def __post_init__(self) -> None:
        for name in (
            "docs_per_bucket",
            "steps",
            "batch_size",
            "sample_bytes",
            "n_points",
            "order",
            "embed_dim",
            "hidden_dim",
            "threads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"CurveSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.heldout_per_bucket < 0:
            raise ValueError("CurveSettings.heldout_per_bucket must be >= 0")
        if self.n_points > self.steps:
            raise ValueError(
                f"CurveSettings.n_points ({self.n_points}) exceeds steps ({self.steps})"
            )
        if not self.learning_rate > 0:
            raise ValueError("CurveSettings.learning_rate must be > 0")


class ByteMLP(nn.Module):
    """P(byte_t | the `order` previous bytes)."""

    def __init__(self, order: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.embed = nn.Embedding(START + 1, embed_dim)
        self.hidden = nn.Linear(order * embed_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, 256)

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.hidden(self.embed(contexts).flatten(-2))))


@dataclass(frozen=True)
class _Encoded:
    contexts: torch.Tensor  # (S, L, order) int64
    targets: torch.Tensor  # (S, L) int64
    mask: torch.Tensor  # (S, L) float: 1 where a real byte is predicted


def encode_samples(texts: Sequence[str], sample_bytes: int, order: int) -> _Encoded:
    """Every text's first `sample_bytes` bytes as (context window, next byte) pairs."""
    n = len(texts)
    padded = np.full((n, order + sample_bytes), START, dtype=np.int64)
    mask = np.zeros((n, sample_bytes), dtype=np.float32)
    for i, text in enumerate(texts):
        raw = np.frombuffer(text.encode("utf-8")[:sample_bytes], dtype=np.uint8)
        padded[i, order : order + len(raw)] = raw
        mask[i, : len(raw)] = 1.0
    windows = np.lib.stride_tricks.sliding_window_view(padded, order, axis=1)[:, :sample_bytes]
    targets = np.where(mask > 0, padded[:, order:], 0)
    return _Encoded(
        torch.from_numpy(windows.copy()), torch.from_numpy(targets), torch.from_numpy(mask)
    )


def mean_nll(
    model: nn.Module, data: _Encoded, rows: torch.Tensor | slice = slice(None)
) -> torch.Tensor:
    """Mean negative log-likelihood (nats) per real byte of the selected samples."""
    logits = model(data.contexts[rows])
    nll = nn.functional.cross_entropy(
        logits.reshape(-1, 256), data.targets[rows].reshape(-1), reduction="none"
    )
    mask = data.mask[rows].reshape(-1)
    return (nll * mask).sum() / mask.sum()


def _train(
    model: ByteMLP, pool: _Encoded, held_out: _Encoded, order: np.ndarray, settings: CurveSettings
) -> list[tuple[int, float, float]]:
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    checkpoints = {
        round(settings.steps * i / settings.n_points) for i in range(1, settings.n_points + 1)
    }
    rows = []
    for step in range(1, settings.steps + 1):
        batch = torch.from_numpy(
            order[(step - 1) * settings.batch_size : step * settings.batch_size]
        )
        loss = mean_nll(model, pool, batch)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if step in checkpoints:
            with torch.no_grad():
                nll = float(mean_nll(model, held_out))
            rows.append((step * settings.batch_size, nll / math.log(256), nll))
    return rows


def train_curve(
    pool_texts: Sequence[str], eval_texts: Sequence[str], settings: CurveSettings, seed: int
) -> pd.DataFrame:
    """(samples_seen, error, eval_nll) at `n_points` evenly spaced steps of one training run."""
    if not pool_texts or not eval_texts:
        raise ValueError("train_curve needs at least one pool text and one held-out text")
    pool = encode_samples(pool_texts, settings.sample_bytes, settings.order)
    held_out = encode_samples(eval_texts, settings.sample_bytes, settings.order)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ByteMLP(settings.order, settings.embed_dim, settings.hidden_dim)
    # Every epoch is a fresh permutation of the pool: each sample is seen once per pass.
    rng = np.random.default_rng(seed)
    epochs = math.ceil(settings.steps * settings.batch_size / len(pool_texts))
    order = np.concatenate([rng.permutation(len(pool_texts)) for _ in range(epochs)])
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        rows = _train(model, pool, held_out, order, settings)
    finally:
        torch.set_num_threads(previous_threads)
    return pd.DataFrame(rows, columns=["samples_seen", "error", "eval_nll"])


def sample_bucket_texts(
    curated: DataFrame,
    per_bucket: int,
    seed: int = 0,
    bucket_column: str = "quality_bucket",
    text_column: str = "text",
) -> pd.DataFrame:
    """Up to `per_bucket` documents of every bucket, picked by a seeded hash of doc_id, collected.

    A per-bucket hash threshold, sized from the bucket counts, keeps about 2 * per_bucket + 10 *
    sqrt(per_bucket) + 20 documents (falling short of per_bucket is then practically impossible)
    before the ranking window runs, so no bucket is ever sorted whole.
    """
    missing = {"doc_id", bucket_column, text_column} - set(curated.columns)
    if missing:
        raise ValueError(f"curated lacks column(s) {sorted(missing)}")
    counts = {r[0]: r[1] for r in curated.groupBy(bucket_column).count().collect()}
    margin = 2 * per_bucket + 10 * math.sqrt(per_bucket) + 20
    keep = F.lit(None).cast("double")
    for name, count in counts.items():
        keep = F.when(F.col(bucket_column) == name, min(1.0, margin / count)).otherwise(keep)
    draw = seeded_uniform(F.col("doc_id"), seed)
    rank = F.row_number().over(Window.partitionBy(bucket_column).orderBy("_draw", "doc_id"))
    picked = (
        curated.select("doc_id", bucket_column, text_column, draw.alias("_draw"))
        .where(F.col("_draw") < keep)
        .withColumn("_rank", rank)
        .where(F.col("_rank") <= per_bucket)
        .select("doc_id", bucket_column, text_column)
        .toPandas()
    )
    got = picked[bucket_column].value_counts()
    short = sorted(n for n, c in counts.items() if got.get(n, 0) < min(per_bucket, c))
    if short:  # never silently hand back less than asked for
        raise RuntimeError(f"hash sampling kept too few documents for bucket(s) {short}")
    return picked.sort_values([bucket_column, "doc_id"], ignore_index=True)


def split_buckets(
    texts: pd.DataFrame,
    settings: CurveSettings,
    bucket_column: str = "quality_bucket",
    text_column: str = "text",
) -> tuple[dict[str, list[str]], list[str]]:
    """(training pool per bucket, shared held-out texts), both drawn with the settings' seed."""
    missing = {bucket_column, text_column} - set(texts.columns)
    if missing:
        raise ValueError(
            f"bucket texts lack column(s) {sorted(missing)}; found {list(texts.columns)}"
        )
    usable = texts[text_column].map(lambda t: isinstance(t, str) and t != "")
    if not usable.all():
        bad = texts.loc[~usable, bucket_column].astype(str).value_counts().to_dict()
        raise ValueError(f"bucket texts: null or empty '{text_column}' in rows per bucket {bad}")
    pools, held_out = {}, []
    rng = np.random.default_rng(settings.seed)
    for name, group in texts.groupby(bucket_column, sort=True):
        need = settings.heldout_per_bucket + 1
        if len(group) < need:
            raise ValueError(
                f"bucket {name!r} has {len(group)} document(s); needs at least {need} "
                f"({settings.heldout_per_bucket} held out + 1 to train on)"
            )
        shuffled = group[text_column].to_numpy()[rng.permutation(len(group))]
        held_out += list(shuffled[: settings.heldout_per_bucket])
        pools[str(name)] = list(shuffled[settings.heldout_per_bucket :][: settings.docs_per_bucket])
    return pools, held_out


def demo_observations(
    texts: pd.DataFrame,
    settings: CurveSettings | None = None,
    eval_texts: Sequence[str] | None = None,
    bucket_column: str = "quality_bucket",
    text_column: str = "text",
) -> pd.DataFrame:
    """Observations (bucket, samples_seen, error, pool_size, eval_nll) for every bucket."""
    settings = settings or CurveSettings()
    pools, held_out = split_buckets(texts, settings, bucket_column, text_column)
    if eval_texts is not None:
        held_out = list(eval_texts)
    if not held_out:
        raise ValueError("no held-out texts: set heldout_per_bucket > 0 or pass eval_texts")
    frames = []
    for name, pool in progress(pools.items(), "demo curves: buckets trained", len(pools)):
        # One seed for every bucket: the curves differ by their data, not by initialisation.
        curve = train_curve(pool, held_out, settings, seed=settings.seed)
        frames.append(curve.assign(bucket=name, pool_size=float(len(pool))))
    columns = ["bucket", "samples_seen", "error", "pool_size", "eval_nll"]
    return pd.concat(frames, ignore_index=True)[columns]


def run(spark, cfg):
    """Train the tiny model on every bucket of `curated`; write the observations CSV."""
    from pathlib import Path

    from jobs.core.base import JobReport, lake_for

    settings = cfg.mixture
    if not settings.observations or "://" in settings.observations:
        from jobs.core.config import ConfigError

        raise ConfigError(f"{cfg.source}: mixture.observations: demo_curves needs a local CSV path")
    lake = lake_for(spark, cfg)
    curated = lake.read("curated")
    per_bucket = settings.demo_docs_per_bucket + settings.demo_heldout_per_bucket
    texts = sample_bucket_texts(curated, per_bucket, settings.seed)
    curve_settings = CurveSettings(
        docs_per_bucket=settings.demo_docs_per_bucket,
        heldout_per_bucket=settings.demo_heldout_per_bucket,
        steps=settings.demo_steps, seed=settings.seed,
    )
    observations = demo_observations(texts, curve_settings)
    out = Path(settings.observations)
    out.parent.mkdir(parents=True, exist_ok=True)
    observations.to_csv(out, index=False)
    n_curated = lake.count("curated")
    return JobReport(
        "demo_curves", n_curated, len(texts), rows_filtered=n_curated - len(texts),
        filtered_label="not sampled (mixture.demo_docs_per_bucket + demo_heldout_per_bucket)",
        tables={"observations": str(out)},
        details={"buckets": observations["bucket"].nunique(), "points": len(observations)},
    ).check_invariant()
