"""demo_models: reference models for PreSelect and Grad-Mimic, set up as the papers do.

PreSelect: k small LMs (`jobs/demo/models.py`) of one size that differ in training data: a hash
sample of the *passed* documents mixed with a share of trusted text, from 0 to 1. They are ranked
by a benchmark on held-out target text (`preselect.target_paths`), not by how well they fit the
pool; the report prints that order and warns when it is not by trusted share or its spread is
within seed noise (then PreSelect's positives are chance).

Grad-Mimic: θ_t are checkpoints of one training run on the passed documents (`early`, `middle`,
`final`); θ_ref starts from the same initial weights and trains as long on the target set
(`reference`), so v = θ_ref − θ_t points from the pool's run towards trusted text. Without a
target set θ_ref is the run's own final checkpoint (the older, weaker set-up).
"""

from __future__ import annotations

import glob
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml
from transformers import PreTrainedTokenizerFast

from jobs.demo.models import (
    DemoModelSpec,
    benchmark_warnings,
    build_demo_models,
    default_specs,
    init_causal_lm,
    pack_token_stream,
    read_texts,
    train_causal_lm,
)

log = logging.getLogger(__name__)
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
    lake = lake_for(spark, cfg)
    docs = passed_documents(lake, cfg).select("doc_id", "text")
    sample = sample_documents(docs, limit=settings.max_docs, seed=settings.seed)
    texts = [r.text for r in sample.collect()]
    target = read_target_texts(cfg)
    specs = default_specs(settings.k, settings.steps, settings.trusted_shares,
                          n_layer=settings.n_layer, n_embd=settings.n_embd, lr=settings.lr)
    if not target:  # no data to tell them apart: they differ in training length instead
        specs = [replace(spec, trusted_share=0.0, steps=max(1, spec.steps * (i + 1) // len(specs)))
                 for i, spec in enumerate(specs)]
    entries = build_demo_models(
        texts, settings.out_dir, specs=specs, vocab_size=settings.vocab_size,
        n_positions=settings.n_positions, batch_size=settings.batch_size, target_texts=target,
        seed=settings.seed, measure_seed_noise=True,
    )
    root = Path(settings.out_dir).resolve()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(root / "tokenizer"))
    checkpoints = save_mimic_run(
        tokenizer, pack_token_stream(tokenizer, texts), root / MIMIC_RUN_DIR,
        spec=DemoModelSpec(n_layer=1, n_embd=32, n_head=2, steps=settings.steps, lr=settings.lr),
        n_positions=settings.n_positions, seed=settings.seed,
        trusted_stream=pack_token_stream(tokenizer, target) if target else None,
    )
    noise = yaml.safe_load((root / "models.yaml").read_text()).get("seed_noise")
    by_share = sorted(zip(specs, entries, strict=True), key=lambda pair: pair[0].trusted_share)
    problems = benchmark_warnings([spec.trusted_share for spec in specs],
                                  [e["benchmark_score"] for e in entries], noise) if target else []
    for problem in problems:
        log.warning("demo_models: %s", problem)
    if not target:
        check = "no target set: the models differ in training steps"
    else:
        check = "; ".join(problems) or "ordered by trusted share, spread above 3 x seed noise"
    order = ", ".join(f"{e['model_id']} (share {spec.trusted_share:.2f}) {e['benchmark_score']:.4f}"
                       for spec, e in by_share)
    n_documents = lake.count("documents")
    return JobReport(
        "demo_models", n_documents, len(texts), rows_filtered=n_documents - len(texts),
        filtered_label="filtered by rules or not sampled (demo_models.max_docs)",
        tables={"models.yaml": str(root / "models.yaml")},
        details={
            "benchmark on": "half of preselect.target_paths" if target else "held-out pool text",
            "benchmark by trusted share": order,
            "seed noise": f"{noise:.4f} (demo-1's benchmark retrained on other batches)",
            "benchmark check": check,
            "mimic checkpoints": ", ".join(checkpoints),
        },
    ).check_invariant()
