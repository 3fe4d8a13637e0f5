"""Does the demo reference family carry a PreSelect signal? Spark-free, on the bench's corpus.

    python bench/demo_references.py [--steps 600] [--seed 0] [--docs 300]

Builds the `--quick` corpus of bench/selection_quality.py, applies the pre-filter rules with
their default thresholds (the kernel of udfs/prefilter.py, compared in pandas), trains the demo
family of `demo_models` on the passed documents plus the target set, and prints the benchmark
order by trusted share, the seed noise and the family's warnings, then predictive strength on a
sample of passed documents and of filtered junk, by kind: mean ps and the share with ps = 1
(PreSelect's positives). CPU seconds of training and scoring are printed (process time, so a
shared machine's load does not inflate them).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # not bench/: bench/fasttext.py would shadow the fasttext package

from jobs.core.config import DemoModelsSettings, PrefilterSettings  # noqa: E402
from jobs.demo.clean import CLEAN_KINDS  # noqa: E402
from jobs.demo.corpus import demo_records  # noqa: E402
from jobs.demo.models import benchmark_warnings, build_demo_models, default_specs  # noqa: E402
from jobs.prefilter_rules import active_rules, threshold  # noqa: E402
from udfs.lm_loss import score_texts  # noqa: E402
from udfs.lm_models import load_causal_lm  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from selection_quality import QUICK  # noqa: E402


def passes(texts: pd.Series, settings: PrefilterSettings) -> pd.Series:
    from udfs.prefilter import prefilter_statistics_frame

    stats = prefilter_statistics_frame(texts)
    failed = pd.Series(False, index=texts.index)
    for rule in active_rules(settings):
        value, limit = stats[rule.statistic], threshold(rule, settings)
        broken = value.astype(bool) if rule.kind == "reject" else (
            value > limit if rule.kind == "max" else value < limit)
        failed |= broken.fillna(True) | value.isna()
    return ~failed


def predictive_strength(losses: np.ndarray, scores: list[float]) -> np.ndarray:
    """losses: models x documents. Pairs whose weaker model has the strictly higher loss."""
    order = np.argsort(scores)
    ranked, k = losses[order], len(scores)
    pairs = sum((ranked[i] > ranked[j]).astype(int) for i in range(k) for j in range(i + 1, k))
    return pairs / (k * (k - 1) / 2)


def main() -> None:
    defaults = DemoModelsSettings()
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--docs", type=int, default=300, help="passed documents to score")
    args = parser.parse_args()
    pool, target = demo_records(QUICK)
    kinds = pd.Series([kind for kind, _ in pool])
    texts = pd.Series([text for _, text in pool])
    passed = passes(texts, PrefilterSettings(
        families=["gopher_quality", "gopher_repetition", "fineweb", "control_chars"]))
    print(f"{len(pool)} documents, {int(passed.sum())} passed; target {len(target)}")
    specs = default_specs(defaults.k, args.steps, n_layer=defaults.n_layer,
                          n_embd=defaults.n_embd, lr=defaults.lr)
    out = Path(tempfile.mkdtemp(prefix="demo_references_"))
    started = time.process_time()
    entries = build_demo_models(
        texts[passed].tolist()[: defaults.max_docs], str(out), specs=specs,
        vocab_size=defaults.vocab_size, n_positions=defaults.n_positions,
        batch_size=defaults.batch_size, target_texts=[t for _, t in target], seed=args.seed,
        measure_seed_noise=True)
    print(f"training: {time.process_time() - started:.0f} CPU s for {len(specs) + 1} models")
    scores = [e["benchmark_score"] for e in entries]
    shares = [s.trusted_share for s in specs]
    noise = yaml.safe_load((out / "models.yaml").read_text())["seed_noise"]
    for share, score in sorted(zip(shares, scores, strict=True)):
        print(f"trusted share {share:.3f}: benchmark {score:.4f}")
    print(f"seed noise {noise:.4f}; warnings: {benchmark_warnings(shares, scores, noise)}")
    rng = np.random.default_rng(args.seed)
    junk = np.flatnonzero(~passed.to_numpy() & ~kinds.isin(CLEAN_KINDS).to_numpy())
    chosen = np.concatenate([
        rng.choice(np.flatnonzero(passed.to_numpy()), min(args.docs, int(passed.sum())), False),
        rng.choice(junk, min(60, len(junk)), replace=False)])
    sample = texts.iloc[chosen].tolist()
    started = time.process_time()
    losses = []
    for entry in entries:
        lm = load_causal_lm(entry["path"], device="cpu")
        scored = score_texts(sample, lm, window=defaults.n_positions, stride=entry["stride"])
        losses.append((scored["total_nll"] / (math.log(2) * scored["n_bytes"])).to_numpy())
    print(f"scoring: {time.process_time() - started:.0f} CPU s for {len(sample)} documents")
    frame = pd.DataFrame({"passed": passed.iloc[chosen].to_numpy(),
                          "kind": kinds.iloc[chosen].to_numpy(),
                          "ps": predictive_strength(np.array(losses), scores)})
    table = frame.groupby(["passed", "kind"])["ps"].agg(
        n="count", mean_ps="mean", share_ps_1=lambda v: (v == 1).mean())
    print(table.round(3).to_string())
    print(f"share with ps = 1 among passed: {(frame[frame.passed].ps == 1).mean():.3f}")


if __name__ == "__main__":
    main()
