"""A family of small causal LMs built locally, so predictive strength has a real model ordering.

PreSelect needs N reference models of one family whose benchmark scores are ordered. Offline (no
hub downloads) we train our own: one byte-level BPE tokenizer on the corpus, then k GPT-2 models
that grow in width, depth and training steps and differ in training data. With a target set
(trusted text; `preselect.target_paths`) it is split in two by a hash: model i draws a share
`trusted_share` of its training tokens from the first half and the rest from the pool, and its
benchmark score is the negative corpus-level bits per byte on the second half (higher = better),
as PreSelect ranks its models by downstream benchmarks, never by how well they fit the pool.
Without a target set the benchmark is held-out pool text. The ordering is measured, not assumed.
Every model directory holds safetensors weights plus the tokenizer, loadable with
`udfs.lm_models.load_causal_lm`; `models.yaml` in the output directory lists them.

Run: `python -m jobs.demo.models --texts corpus.jsonl --out /tmp/demo_models [--k 4]`
(JSONL with a "text" field, or a plain text file with one document per line).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from jobs.core.progress import progress
from udfs.lm_loss import score_texts
from udfs.lm_models import LoadedLM

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
ARCHITECTURES = ("gpt2", "llama")


def train_tokenizer(
    texts: list[str], out_dir: str, vocab_size: int = 1024
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with BOS/EOS/PAD on `texts`; save it to `out_dir`.

    Byte-level, so every string encodes losslessly (no unknown token). The tokenizer adds no
    special tokens by default: callers add the BOS prefix themselves. The vocabulary may come
    out smaller than `vocab_size` when the corpus has too few distinct merges.
    """
    # 256 byte symbols + 3 specials leave no room for merges below this.
    if vocab_size < 260:
        raise ValueError(f"vocab_size must be >= 260 for a byte-level BPE, got {vocab_size}")
    usable = [t for t in texts if isinstance(t, str) and t]
    if not usable:
        raise ValueError("train_tokenizer needs at least one non-empty text")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS_TOKEN, EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(usable, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def init_causal_lm(
    tokenizer: PreTrainedTokenizerFast,
    *,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_positions: int,
    seed: int,
    architecture: str = "gpt2",
) -> PreTrainedModel:
    """A randomly initialised causal LM sized to `tokenizer`, identical for identical arguments.

    `architecture` is "gpt2" (learned absolute positions) or "llama" (rotary positions). Dropout
    is off, so train and eval mode compute the same function; the model is returned in eval mode.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
    special_ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if architecture == "gpt2":
        config = GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=n_positions,
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **special_ids,
        )
        model_cls: type[PreTrainedModel] = GPT2LMHeadModel
    else:
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=n_embd,
            intermediate_size=4 * n_embd,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            num_key_value_heads=n_head,
            max_position_embeddings=n_positions,
            tie_word_embeddings=True,
            **special_ids,
        )
        model_cls = LlamaForCausalLM
    # Fork the RNG so seeding here leaves the caller's global random state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.eval()


def pack_token_stream(tokenizer: PreTrainedTokenizerFast, texts: Sequence[str]) -> np.ndarray:
    """All documents as one token stream, each preceded by BOS (the same prefix scoring uses)."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return np.fromiter((tok for ids in encoded if ids for tok in [bos, *ids]), dtype=np.int64)


def train_causal_lm(
    model: PreTrainedModel,
    stream: np.ndarray,
    *,
    steps: int,
    batch_size: int = 16,
    block_size: int | None = None,
    lr: float = 3e-3,
    seed: int = 0,
) -> PreTrainedModel:
    """Train in place on random blocks of a packed token stream (AdamW, cosine decay)."""
    block = block_size or _context_length(model)
    if stream.size < block + 1:
        raise ValueError(
            f"token stream has {stream.size} tokens; training needs more than block_size={block}"
        )
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
    )
    model.train()
    for _ in range(steps):
        starts = rng.integers(0, stream.size - block, size=batch_size)
        batch = torch.from_numpy(np.stack([stream[s : s + block] for s in starts]))
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    return model.eval()


@dataclass(frozen=True)
class DemoModelSpec:
    """Size, training length and training data of one family member."""

    n_layer: int
    n_embd: int
    n_head: int
    steps: int
    trusted_share: float = 0.0  # share of training tokens drawn from the target set
    lr: float = 3e-3


def default_specs(
    k: int,
    steps: int = 600,
    trusted_shares: Sequence[float] | None = None,
    *,
    n_layer: int = 1,
    n_embd: int = 64,
    lr: float = 3e-3,
) -> list[DemoModelSpec]:
    """k members of one size and training length that differ in data: trusted shares evenly
    from 0 to 1/2 (or `trusted_shares`). Equal sizes and one seed leave the data as the main
    cause of their differences, so losses co-vary with the benchmark through what a document
    resembles. The shares stop at 1/2 because a trusted half of a few hundred documents is soon
    memorised: on the demo target, share 1 scored worst of 0, 1/3, 2/3, 1 for two seeds.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    shares = list(trusted_shares) if trusted_shares is not None else [
        i / (2 * max(k - 1, 1)) for i in range(k)]
    if len(shares) != k:
        raise ValueError(f"need one trusted share per model: {k} models, {len(shares)} shares")
    # Head size 16.
    return [DemoModelSpec(n_layer=n_layer, n_embd=n_embd, n_head=max(1, n_embd // 16),
                          steps=steps, trusted_share=float(share), lr=lr) for share in shares]


def benchmark_warnings(shares: Sequence[float], scores: Sequence[float],
                       seed_noise: float | None) -> list[str]:
    """What is wrong with a family's benchmark: not ordered by trusted share, or a spread
    within the noise of retraining one member on other batches (then PreSelect's ranking
    reflects chance, not the target)."""
    ranked = [score for _, score in sorted(zip(shares, scores, strict=True))]
    out = []
    if any(b <= a for a, b in zip(ranked, ranked[1:], strict=False)):
        out.append("benchmark is not ordered by trusted share")
    spread = max(scores) - min(scores)
    if seed_noise is not None and spread < 3 * seed_noise:
        out.append(f"benchmark spread {spread:.4f} is within 3 x seed noise ({seed_noise:.4f}); "
                   "train longer (demo_models.steps) or use real references")
    return out


def mixed_stream(pool: np.ndarray, trusted: np.ndarray, share: float) -> np.ndarray:
    """The pool's tokens followed by the trusted tokens, tiled so that they make up `share` of
    the stream (random training blocks then draw about that share from them)."""
    if share <= 0 or trusted.size == 0:
        return pool
    if share >= 1 or pool.size == 0:
        return trusted
    wanted = int(round(pool.size * share / (1 - share)))
    return np.concatenate([pool, np.resize(trusted, wanted)])


def split_heldout(texts: Sequence[str], heldout_fraction: float) -> tuple[list[str], list[str]]:
    """(train, heldout) by a hash of each text, so the split does not depend on input order."""
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    train, heldout = [], []
    for text in texts:
        if not isinstance(text, str) or not text:
            continue
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()
        (heldout if int.from_bytes(digest[:8], "big") / 2**64 < heldout_fraction else train).append(
            text
        )
    if not train or not heldout:
        raise ValueError(
            f"need non-empty texts on both sides of the held-out split; got {len(train)} train and "
            f"{len(heldout)} held-out (heldout_fraction={heldout_fraction}); pass more texts"
        )
    return train, heldout


def heldout_bits_per_byte(lm: LoadedLM, texts: Sequence[str], window: int) -> float:
    """Corpus-level bits per byte: total NLL over total bytes, never a mean of per-doc values."""
    scores = score_texts(list(texts), lm, window=window, stride=max(window // 2, 1))
    ok = scores[scores["error"].isna()]
    return float(ok["total_nll"].sum() / (math.log(2) * ok["n_bytes"].sum()))


def build_demo_models(
    texts: list[str],
    out_dir: str,
    k: int = 4,
    *,
    specs: Sequence[DemoModelSpec] | None = None,
    vocab_size: int = 1024,
    n_positions: int = 128,
    batch_size: int = 8,
    heldout_fraction: float = 0.1,
    target_texts: Sequence[str] | None = None,
    seed: int = 0,
    measure_seed_noise: bool = False,
) -> list[dict]:
    """Train k models into `out_dir/<model_id>/`, write `out_dir/models.yaml`, return its entries.

    Each entry is {model_id, path, benchmark_score, stride}; benchmark_score = -(bits per byte
    on the benchmark text: half of `target_texts`, or held-out pool text without them);
    stride = n_positions // 2, the lm_loss window stride that fits these models.
    `specs` overrides the default schedule (its length then replaces k). Every member starts
    from the same seed (members of one size share their initial weights, so what they differ
    in is their data). With `measure_seed_noise`, the first member is trained again from the
    same weights on other random batches (seed + 1) and models.yaml records `seed_noise`, the
    change of its benchmark score: the chance part of any difference between members.
    """
    specs = list(specs) if specs is not None else default_specs(k)
    if target_texts:
        train = [t for t in texts if isinstance(t, str) and t]
        trusted, heldout = split_heldout(target_texts, 0.5)
    else:
        train, heldout = split_heldout(texts, heldout_fraction)
        trusted = []
    root = Path(out_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(train + trusted, str(root / "tokenizer"), vocab_size=vocab_size)
    pool_stream = pack_token_stream(tokenizer, train)
    trusted_stream = pack_token_stream(tokenizer, trusted)
    def train_and_score(spec: DemoModelSpec, model_dir: Path, batch_seed: int) -> float:
        started = time.perf_counter()
        model = init_causal_lm(tokenizer, n_layer=spec.n_layer, n_embd=spec.n_embd,
                               n_head=spec.n_head, n_positions=n_positions, seed=seed)
        stream = mixed_stream(pool_stream, trusted_stream, spec.trusted_share)
        train_causal_lm(model, stream, steps=spec.steps, batch_size=batch_size, lr=spec.lr,
                        seed=batch_seed)
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        lm = LoadedLM(model, tokenizer, torch.device("cpu"), torch.float32, str(model_dir))
        bpb = heldout_bits_per_byte(lm, heldout, window=n_positions)
        print(f"{model_dir.name}: {spec} benchmark bits/byte {bpb:.4f} "
              f"({time.perf_counter() - started:.1f} s)", flush=True)
        return bpb

    entries = []
    for index, spec in progress(list(enumerate(specs)), "demo models: training"):
        model_id = f"demo-{index + 1}"
        model_dir = root / model_id
        bpb = train_and_score(spec, model_dir, seed)
        # Half the context: more tokens per window than the lm_loss default (window * 512 // 1900).
        stride = max(1, n_positions // 2)
        entries.append(
            {"model_id": model_id, "path": str(model_dir), "benchmark_score": -bpb, "stride": stride}
        )
    manifest = {
        "benchmark": "negative bits per byte on "
        + ("half of the target set" if target_texts else "held-out pool text")
        + " (higher is better)",
        "models": entries,
    }
    if measure_seed_noise and entries:
        again = train_and_score(specs[0], root / "seed-noise", seed + 1)
        manifest["seed_noise"] = abs(-again - entries[0]["benchmark_score"])
    (root / "models.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return entries


def _context_length(model: PreTrainedModel) -> int:
    config = model.config
    return int(getattr(config, "n_positions", None) or config.max_position_embeddings)


def read_texts(path: str) -> list[str]:
    """Documents from JSONL (a "text" field per line) or plain text (one document per line)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if path.endswith((".jsonl", ".json")):
        texts = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValueError(f"{path}:{number}: expected an object with a string 'text' field")
            texts.append(record["text"])
        return texts
    return [line for line in lines if line.strip()]


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", required=True, help="JSONL with a 'text' field, or .txt")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--k", type=int, default=4, help="number of models")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return build_demo_models(
        read_texts(args.texts), args.out, k=args.k, vocab_size=args.vocab_size, seed=args.seed
    )


if __name__ == "__main__":
    main()
