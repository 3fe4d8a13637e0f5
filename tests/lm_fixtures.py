"""Tiny causal LMs built once per test session, and an independent reference scorer.

Models are trained for a few steps so their predictions differ from token to token: with a
uniform random model every token costs about ln(vocab), and an off-by-one in target alignment
would go unnoticed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

TINY_CONTEXT = 64
_WORDS = (
    "the a one every small big red old quick quiet cat dog bird fox house river tree road "
    "runs sees finds eats likes walks near under over with and but then über café naïve 日本 "
    "東京 ünïcödé"
).split()


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy 2-core machine extra threads spin
    against other processes (a 30x slowdown was seen). Spark workers already get
    OMP_NUM_THREADS=spark.task.cpus."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def synthetic_texts(n: int, seed: int = 0, max_words: int = 120) -> list[str]:
    """Sentences from a small vocabulary with multi-byte characters; lengths vary widely."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(1, max_words))]
        sentence = " ".join(words)
        texts.append(sentence[0].upper() + sentence[1:] + rng.choice([".", "!", "?\n"]))
    return texts


def build_tiny_lm(root: Path, architecture: str = "gpt2") -> str:
    """Tokenizer + briefly trained model saved under root/<architecture>; reused if present."""
    from jobs.demo.models import (
        init_causal_lm,
        pack_token_stream,
        train_causal_lm,
        train_tokenizer,
    )

    out = root / f"tiny-{architecture}"
    if (out / "config.json").is_file():
        return str(out)
    texts = synthetic_texts(300, seed=1)
    tokenizer = train_tokenizer(texts, str(out), vocab_size=320)
    model = init_causal_lm(
        tokenizer,
        n_layer=2,
        n_embd=32,
        n_head=2,
        n_positions=TINY_CONTEXT,
        seed=0,
        architecture=architecture,
    )
    train_causal_lm(model, pack_token_stream(tokenizer, texts), steps=40, batch_size=8)
    model.save_pretrained(out)
    return str(out)


def tiny_lm_dir(tmp_path_factory, architecture: str = "gpt2") -> str:
    """The session's tiny model directory (built on first use in this session)."""
    return build_tiny_lm(tmp_path_factory.getbasetemp() / "lm_models", architecture)


def reference_windows(seq_len: int, window: int, stride: int) -> list[tuple[int, int, list[int]]]:
    """The window convention read literally: (input start, input end, targets scored)."""
    targets = list(range(1, seq_len))
    spans = [(0, min(window, seq_len), targets[: window - 1])]
    rest = targets[window - 1 :]
    for k in range(0, len(rest), stride):
        chunk = rest[k : k + stride]
        end = chunk[-1] + 1
        spans.append((end - window, end, chunk))
    return spans


def reference_nll(model, tokenizer, text: str, window: int, stride: int) -> tuple[float, int]:
    """(total NLL in nats, scored tokens): one plain forward per window, no batching or padding."""
    prefix = (
        tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    )
    seq = [prefix] + tokenizer.encode(text, add_special_tokens=False)
    total, scored = 0.0, 0
    with torch.no_grad():
        for start, end, targets in reference_windows(len(seq), window, stride):
            logits = model(torch.tensor([seq[start:end]])).logits[0].double()
            logprobs = torch.log_softmax(logits, dim=-1)
            for t in targets:
                total -= logprobs[t - 1 - start, seq[t]].item()
                scored += 1
    return total, scored


def reference_bits_per_byte(model, tokenizer, text: str, window: int, stride: int) -> float:
    """lm-evaluation-harness bits_per_byte of one document."""
    nll, _ = reference_nll(model, tokenizer, text, window, stride)
    return nll / (math.log(2) * len(text.encode("utf-8")))
