from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoTokenizer

from jobs.demo.models import (
    DemoModelSpec,
    benchmark_warnings,
    build_demo_models,
    default_specs,
    init_causal_lm,
    mixed_stream,
    train_tokenizer,
)
from tests.lm_fixtures import reference_nll, synthetic_texts
from udfs.lm_models import load_causal_lm

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokenizer")
    return train_tokenizer(synthetic_texts(200, seed=3), str(out), vocab_size=300)


def test_tokenizer_is_lossless_has_specials_and_adds_none_by_default(tokenizer):
    text = "Über café 日本 — unseen symbols ∮ and \U0001f600 tabs\tnewlines\n"
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text
    assert tokenizer(text)["input_ids"] == ids
    specials = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    assert None not in specials and len(specials) == 3
    assert not specials & set(ids)
    assert 260 <= len(tokenizer) <= 300


def test_saved_tokenizer_reloads_locally_with_the_same_ids(tokenizer, tmp_path):
    texts = synthetic_texts(20, seed=4)
    out = tmp_path / "tok"
    saved = train_tokenizer(texts, str(out), vocab_size=280)
    reloaded = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    for text in texts:
        assert reloaded.encode(text, add_special_tokens=False) == saved.encode(
            text, add_special_tokens=False
        )
    assert reloaded.bos_token_id == saved.bos_token_id


def test_tokenizer_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="vocab_size must be >= 260"):
        train_tokenizer(["text"], str(tmp_path), vocab_size=100)
    with pytest.raises(ValueError, match="at least one non-empty text"):
        train_tokenizer(["", None], str(tmp_path))


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_init_sizes_the_model_to_the_tokenizer_and_is_seeded(tokenizer, architecture):
    def build(seed):
        return init_causal_lm(
            tokenizer,
            n_layer=2,
            n_embd=16,
            n_head=2,
            n_positions=32,
            seed=seed,
            architecture=architecture,
        )

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    model = build(0)
    assert torch.equal(torch.rand(3), expected_next), "caller's RNG state was disturbed"
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert not model.training
    same, other = build(0).state_dict(), build(1).state_dict()
    assert all(torch.equal(v, same[k]) for k, v in model.state_dict().items())
    assert any(not torch.equal(v, other[k]) for k, v in model.state_dict().items())
    ids = torch.tensor([[tokenizer.bos_token_id] + tokenizer.encode("a red fox")])
    assert model(ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_init_rejects_bad_shapes(tokenizer):
    with pytest.raises(ValueError, match="divisible by n_head"):
        init_causal_lm(tokenizer, n_layer=1, n_embd=30, n_head=4, n_positions=16, seed=0)
    with pytest.raises(ValueError, match="architecture must be one of"):
        init_causal_lm(
            tokenizer, n_layer=1, n_embd=16, n_head=2, n_positions=16, seed=0, architecture="rnn"
        )


def test_default_family_is_one_size_and_differs_in_trusted_share():
    specs = default_specs(4, 50, n_embd=48, lr=0.01)
    assert [s.trusted_share for s in specs] == pytest.approx([0.0, 1 / 6, 1 / 3, 0.5])
    assert {(s.n_layer, s.n_embd, s.n_head, s.steps, s.lr) for s in specs} == {(1, 48, 3, 50, 0.01)}
    assert [s.trusted_share for s in default_specs(2, trusted_shares=[1.0, 0.0])] == [1.0, 0.0]
    with pytest.raises(ValueError, match="one trusted share per model"):
        default_specs(3, trusted_shares=[0.5])


def test_benchmark_warnings_name_a_wrong_order_and_a_spread_within_noise():
    shares = [0.0, 0.5, 1.0]
    assert benchmark_warnings(shares, [-3.2, -3.1, -3.0], seed_noise=0.01) == []
    assert benchmark_warnings([1.0, 0.0, 0.5], [-3.0, -3.2, -3.1], seed_noise=0.01) == []
    (wrong,) = benchmark_warnings(shares, [-3.2, -3.0, -3.1], seed_noise=0.01)
    assert "not ordered by trusted share" in wrong
    (noisy,) = benchmark_warnings(shares, [-3.2, -3.1, -3.0], seed_noise=0.1)
    assert "within 3 x seed noise" in noisy and "0.2000" in noisy


def _heldout(texts: list[str], fraction: float) -> list[str]:
    return [
        t
        for t in texts
        if int.from_bytes(hashlib.sha1(t.encode()).digest()[:8], "big") / 2**64 < fraction
    ]


def test_demo_family_has_measured_and_ordered_benchmark_scores(tmp_path):
    texts = synthetic_texts(240, seed=13, max_words=60)
    specs = [
        DemoModelSpec(n_layer=1, n_embd=16, n_head=2, steps=3),
        DemoModelSpec(n_layer=2, n_embd=32, n_head=2, steps=60),
    ]
    entries = build_demo_models(
        texts, str(tmp_path), specs=specs, vocab_size=300, n_positions=32, batch_size=8,
        measure_seed_noise=True,
    )
    assert [e["model_id"] for e in entries] == ["demo-1", "demo-2"]
    assert all(e["stride"] == 16 for e in entries)
    manifest = yaml.safe_load((tmp_path / "models.yaml").read_text())
    assert manifest["models"] == entries
    heldout = _heldout(texts, 0.1)
    assert 10 <= len(heldout) <= 45
    n_bytes = sum(len(t.encode("utf-8")) for t in heldout)

    def benchmark(path) -> float:
        lm = load_causal_lm(str(path), device="cpu")
        total = sum(reference_nll(lm.model, lm.tokenizer, t, 32, 16)[0] for t in heldout)
        return -total / (math.log(2) * n_bytes)

    for entry in entries:
        assert Path(entry["path"]).parent == tmp_path.resolve()
        assert entry["benchmark_score"] == pytest.approx(benchmark(entry["path"]), rel=1e-5)
    assert entries[1]["benchmark_score"] > entries[0]["benchmark_score"]
    # demo-1 again from the same weights on other batches: how far chance moves a benchmark
    again = benchmark(tmp_path / "seed-noise")
    assert manifest["seed_noise"] > 0
    assert manifest["seed_noise"] == pytest.approx(abs(again - entries[0]["benchmark_score"]),
                                                   rel=1e-4)


def test_demo_family_needs_texts_on_both_sides_of_the_split(tmp_path):
    with pytest.raises(ValueError, match="held-out split"):
        build_demo_models(["only one text"], str(tmp_path), k=1)


def test_mixed_stream_draws_the_trusted_share_of_its_tokens():
    pool, trusted = np.arange(1000), np.arange(1000, 1030)
    mixed = mixed_stream(pool, trusted, 0.25)
    assert np.array_equal(mixed[:1000], pool)
    assert (mixed >= 1000).mean() == pytest.approx(0.25, abs=1e-3)
    assert np.array_equal(mixed_stream(pool, trusted, 0.0), pool)
    assert np.array_equal(mixed_stream(pool, trusted, 1.0), trusted)
    assert np.array_equal(mixed_stream(pool, trusted[:0], 0.5), pool)
