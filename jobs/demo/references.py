"""demo_models: reference models for PreSelect and Grad-Mimic, set up as the papers do.

PreSelect: k small LMs (`jobs/demo/models.py`) that differ in size and in training data, trained
on a hash sample of the *passed* documents mixed with trusted text, and ranked by a benchmark on
the target set (`preselect.target_paths`), not by how well they fit the pool.

Grad-Mimic: θ_t are checkpoints of one training run on the passed documents (`early`, `middle`,
`final`); θ_ref starts from the same initial weights and trains as long on the target set
(`reference`), so v = θ_ref − θ_t points from the pool's run towards trusted text. Without a
target set θ_ref is the run's own final checkpoint (the older, weaker set-up).
"""

from __future__ import annotations

import glob
from dataclasses import replace
from pathlib import Path

import numpy as np
from transformers import PreTrainedTokenizerFast

from jobs.demo.models import (
    DemoModelSpec,
    build_demo_models,
    default_specs,
    init_causal_lm,
    pack_token_stream,
    read_texts,
    train_causal_lm,
)

MIMIC_RUN_DIR = "mimic-run"
REFERENCE = "reference"


def read_target_texts(cfg) -> list[str]:
    """Texts of `preselect.target_paths` (JSONL with a text field, or text lines; globs)."""
    from jobs.core.config import ConfigError

    texts = []
    for pattern in cfg.preselect.target_paths:
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise ConfigError(
                f"{cfg.source}: preselect.target_paths: {pattern!r} matches no file; build the "
                "demo target set with `siftlake demo_target` or point it at trusted text"
            )
        for path in paths:
            texts += read_texts(path)
    if cfg.preselect.target_paths and len(texts) < 4:
        raise ConfigError(f"{cfg.source}: preselect.target_paths: {len(texts)} texts; need >= 4")
    return texts


def save_mimic_run(
    tokenizer: PreTrainedTokenizerFast,
    stream: np.ndarray,
    out_dir: Path,
    *,
    spec: DemoModelSpec,
    n_positions: int,
    trusted_stream: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, str]:
    """One run on `stream` saved at a third (`early`), two thirds (`middle`) and the end
    (`final`), plus `reference`: the same start trained as long on `trusted_stream`. θ_t and
    θ_ref must share an architecture, which the growing family does not."""
    def fresh():
        return init_causal_lm(tokenizer, n_layer=spec.n_layer, n_embd=spec.n_embd,
                              n_head=spec.n_head, n_positions=n_positions, seed=seed)

    def save(model, name: str) -> str:
        path = out_dir / name
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        return str(path)

    model, saved, done = fresh(), {}, 0
    stops = [("early", spec.steps // 3), ("middle", 2 * spec.steps // 3), ("final", spec.steps)]
    for name, until in stops:
        train_causal_lm(model, stream, steps=max(until - done, 1), seed=seed + until)
        done = until
        saved[name] = save(model, name)
    if trusted_stream is not None and trusted_stream.size > n_positions:
        reference = train_causal_lm(fresh(), trusted_stream, steps=spec.steps, seed=seed)
        saved[REFERENCE] = save(reference, REFERENCE)
    return saved


def run(spark, cfg):
    """Train the demo family and the Grad-Mimic run; write models.yaml for lm_loss."""
    from jobs.core.base import JobReport, lake_for
    from jobs.lm_loss import sample_documents
    from jobs.prefilter import passed_documents

    settings = cfg.demo_models
    docs = passed_documents(lake_for(spark, cfg), cfg).select("doc_id", "text")
    sample = sample_documents(docs, limit=settings.max_docs, seed=settings.seed)
    texts = [r.text for r in sample.collect()]
    target = read_target_texts(cfg)
    specs = default_specs(settings.k, settings.base_steps, settings.trusted_shares)
    if not target:  # nothing to mix in: say so in the report
        specs = [replace(spec, trusted_share=0.0) for spec in specs]
    entries = build_demo_models(
        texts, settings.out_dir, specs=specs, vocab_size=settings.vocab_size,
        n_positions=settings.n_positions, target_texts=target, seed=settings.seed,
    )
    root = Path(settings.out_dir).resolve()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(root / "tokenizer"))
    checkpoints = save_mimic_run(
        tokenizer, pack_token_stream(tokenizer, texts), root / MIMIC_RUN_DIR,
        spec=DemoModelSpec(n_layer=1, n_embd=32, n_head=2, steps=3 * settings.base_steps // 2),
        n_positions=settings.n_positions, seed=settings.seed,
        trusted_stream=pack_token_stream(tokenizer, target) if target else None,
    )
    return JobReport(
        "demo_models", len(texts), len(texts),
        tables={"models.yaml": str(root / "models.yaml")},
        details={e["model_id"]: f"benchmark {e['benchmark_score']:.4f}, trusted share "
                 f"{spec.trusted_share:.2f}" for e, spec in zip(entries, specs, strict=True)}
        | {"benchmark on": "half of preselect.target_paths" if target else "held-out pool text",
           "mimic checkpoints": ", ".join(checkpoints)},
    )
