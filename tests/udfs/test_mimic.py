"""Grad-Mimic kernel against a brute-force per-document autograd loop written here."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from jobs.demo.models import init_causal_lm, train_causal_lm, train_tokenizer
from udfs.lm_models import load_causal_lm
from udfs.mimic import (
    mimic_direction,
    mimic_scores,
    mimic_scores_for_token_ids,
    online_weights,
    score_texts,
)
from udfs.mimic_udf import cached_direction, clear_direction_cache

MAX_LENGTH = 24
WORDS = "data model token gradient weight river stone cloud north bright seven quiet".split()


def corpus(n: int = 40, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(2, 30))) + "." for _ in range(n)]


# A short one, a long one (truncated at MAX_LENGTH), and mid lengths, so batches pad.
TEXTS = ["seven.", corpus(1, seed=9)[0] * 4, *corpus(5, seed=3)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return train_tokenizer(corpus(), str(tmp_path_factory.mktemp("tok")), vocab_size=300)


def tiny(tokenizer, architecture: str, seed: int, tied: bool = True):
    model = init_causal_lm(
        tokenizer, n_layer=2, n_embd=32, n_head=4, n_positions=64, seed=seed,
        architecture=architecture,
    )
    if not tied:
        config = copy.deepcopy(model.config)
        config.tie_word_embeddings = False
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    return model


@pytest.fixture(scope="module")
def pairs(tokenizer):
    """(current, reference) per architecture; the reference is the current model trained on."""
    stream = np.array(
        [tok for t in corpus(seed=1) for tok in [tokenizer.bos_token_id, *tokenizer(t)["input_ids"]]]
    )
    out = {}
    for key, arch, tied in [("gpt2", "gpt2", True), ("llama", "llama", True),
                            ("llama_untied", "llama", False)]:
        current = tiny(tokenizer, arch, seed=0, tied=tied)
        reference = train_causal_lm(copy.deepcopy(current), stream, steps=5, batch_size=4,
                                    block_size=32)
        out[key] = (current, reference)
    return out


def own_parameter(model: torch.nn.Module, name: str) -> torch.nn.Parameter:
    """Give `name` its own Parameter (unties it from the input embedding when tied)."""
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    param = torch.nn.Parameter(getattr(module, attr).detach().clone())
    setattr(module, attr, param)
    return param


def brute_force_gradient(model, param, tokenizer, text: str, max_length: int) -> torch.Tensor:
    """Textbook autograd on one unpadded document: BOS + first max_length tokens, mean CE."""
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"][:max_length]
    ids = torch.tensor([[tokenizer.bos_token_id, *tokens]])
    loss = F.cross_entropy(model(input_ids=ids).logits[0, :-1], ids[0, 1:])
    return torch.autograd.grad(loss, param)[0]


def brute_force_scores(current, reference, tokenizer, texts, name, max_length=MAX_LENGTH):
    model = copy.deepcopy(current)
    param = own_parameter(model, name)
    delta = (reference.get_parameter(name) - current.get_parameter(name)).detach().double()
    scores, cosines = [], []
    for text in texts:
        g = brute_force_gradient(model, param, tokenizer, text, max_length).double()
        score = float(-(g * delta).sum() / delta.norm())
        scores.append(score)
        cosines.append(score / float(g.norm()))
    return np.array(scores), np.array(cosines)


def run(current, reference, tokenizer, layer, method="auto", texts=TEXTS, batch_size=3):
    direction = mimic_direction(current, reference, layer)
    out = score_texts(current, tokenizer, direction, texts, max_length=MAX_LENGTH,
                      batch_size=batch_size, method=method)
    return direction, out["score"].to_numpy(float), out["cosine"].to_numpy(float)


@pytest.mark.parametrize("key", ["gpt2", "llama", "llama_untied"])
@pytest.mark.parametrize("method", ["closed_form", "vmap"])
def test_head_scores_match_bruteforce(pairs, tokenizer, key, method):
    current, reference = pairs[key]
    direction, scores, cosines = run(current, reference, tokenizer, "lm_head", method)
    assert direction.layer == "lm_head.weight" and direction.closed_form_ok
    want_scores, want_cos = brute_force_scores(current, reference, tokenizer, TEXTS, direction.layer)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cosines, want_cos, rtol=1e-4, atol=1e-5)
    assert np.abs(want_scores).min() > 1e-4  # the comparison is not between zeros


@pytest.mark.parametrize(
    ("key", "layer", "expected"),
    [
        ("gpt2", "last_mlp", "transformer.h.1.mlp.c_proj.weight"),
        ("llama", "last_mlp", "model.layers.1.mlp.down_proj.weight"),
        ("gpt2", "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.weight"),
    ],
)
def test_inner_layer_scores_match_bruteforce(pairs, tokenizer, key, layer, expected):
    current, reference = pairs[key]
    direction, scores, cosines = run(current, reference, tokenizer, layer)
    assert direction.layer == expected and not direction.closed_form_ok
    want_scores, want_cos = brute_force_scores(current, reference, tokenizer, TEXTS, expected)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cosines, want_cos, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key", ["gpt2", "llama"])
def test_closed_form_equals_vmap_for_tied_head(pairs, tokenizer, key):
    current, reference = pairs[key]
    texts = corpus(12, seed=5)
    _, closed, closed_cos = run(current, reference, tokenizer, "lm_head", "closed_form", texts, 5)
    _, vmapped, vmapped_cos = run(current, reference, tokenizer, "lm_head", "vmap", texts, 5)
    np.testing.assert_allclose(closed, vmapped, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(closed_cos, vmapped_cos, rtol=1e-5, atol=1e-7)


def test_memory_bounded_sub_batches_change_nothing(pairs, tokenizer):
    current, reference = pairs["gpt2"]
    direction = mimic_direction(current, reference, "lm_head")
    docs = [[tokenizer.bos_token_id, *tokenizer(t)["input_ids"][:MAX_LENGTH]] for t in TEXTS]
    for method in ("closed_form", "vmap"):
        whole = mimic_scores_for_token_ids(current, docs, direction, method=method)
        one_by_one = mimic_scores_for_token_ids(
            current, docs, direction, method=method, memory_elements=1
        )
        np.testing.assert_allclose(whole, one_by_one, rtol=1e-5, atol=1e-8)


def test_gradient_step_towards_reference_scores_positive(pairs, tokenizer):
    current, _ = pairs["gpt2"]
    doc = TEXTS[2]
    toward = copy.deepcopy(current)
    head = own_parameter(toward, "lm_head.weight")
    torch.optim.SGD([head], lr=0.5).zero_grad()
    head.grad = brute_force_gradient(toward, head, tokenizer, doc, MAX_LENGTH)
    torch.optim.SGD([head], lr=0.5).step()  # θ_ref = θ_t − η g_doc on the head
    away = copy.deepcopy(current)
    with torch.no_grad():
        own_parameter(away, "lm_head.weight").add_(0.5 * head.grad)

    _, scores, cosines = run(current, toward, tokenizer, "lm_head")
    g_norm = float(head.grad.norm())
    assert scores[2] == pytest.approx(g_norm, rel=1e-4)  # ⟨−g, −ηg⟩ / ‖ηg‖ = ‖g‖
    assert cosines[2] == pytest.approx(1.0, abs=1e-5)
    assert np.argmax(cosines) == 2 and (np.delete(cosines, 2) < 0.999).all()
    _, away_scores, away_cos = run(current, away, tokenizer, "lm_head")
    assert away_scores[2] == pytest.approx(-g_norm, rel=1e-4)
    assert away_cos[2] == pytest.approx(-1.0, abs=1e-5)


def test_tokens_past_max_length_do_not_change_the_score(pairs, tokenizer):
    current, reference = pairs["llama"]
    long_text = TEXTS[1]
    assert len(tokenizer(long_text)["input_ids"]) > MAX_LENGTH + 5
    _, scores, _ = run(current, reference, tokenizer, "lm_head",
                       texts=[long_text, long_text + " river stone cloud"])
    assert scores[0] == pytest.approx(scores[1], rel=1e-6)


def test_unscorable_texts_get_null_and_reason_in_place(pairs, tokenizer):
    current, reference = pairs["gpt2"]
    direction = mimic_direction(current, reference, "lm_head")
    texts = [TEXTS[0], None, "", 42, TEXTS[3]]
    out = score_texts(current, tokenizer, direction, texts, max_length=MAX_LENGTH)
    assert out["error"].tolist()[1:4] == ["null text", "empty text", "text is int, not str"]
    assert out.loc[1:3, ["score", "cosine"]].isna().all().all()
    want, _ = brute_force_scores(current, reference, tokenizer, [TEXTS[0], TEXTS[3]],
                                 "lm_head.weight")
    np.testing.assert_allclose(out["score"].to_numpy(float)[[0, 4]], want, rtol=1e-4, atol=1e-5)
    assert out["error"].iloc[[0, 4]].isna().all()


def test_bad_configurations_raise_naming_the_problem(pairs, tokenizer):
    current, reference = pairs["gpt2"]
    with pytest.raises(ValueError, match="identical"):
        mimic_direction(current, copy.deepcopy(current), "lm_head")
    with pytest.raises(ValueError, match="'transformer.h.9.mlp'"):
        mimic_direction(current, reference, "transformer.h.9.mlp")
    wider = init_causal_lm(tokenizer, n_layer=2, n_embd=48, n_head=4, n_positions=64, seed=0)
    with pytest.raises(ValueError, match="shape"):
        mimic_direction(current, wider, "lm_head")
    mlp = mimic_direction(current, reference, "last_mlp")
    with pytest.raises(ValueError, match="closed_form"):
        score_texts(current, tokenizer, mlp, TEXTS, max_length=8, method="closed_form")
    head = mimic_direction(current, reference, "lm_head")
    with pytest.raises(ValueError, match="context 64"):
        score_texts(current, tokenizer, head, TEXTS, max_length=64)


def test_online_weights_are_the_batch_softmax():
    scores = np.array([0.3, -1.2, 0.05, 2.0, 0.0])
    for temperature in (0.03, 0.5, 1.0):
        want = scipy.special.softmax(scores / temperature)
        np.testing.assert_allclose(online_weights(scores, temperature), want, rtol=1e-12)
        got = online_weights(torch.tensor(scores), temperature)
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(online_weights([1e4, 1e4 - 1], 1.0), scipy.special.softmax([1, 0]))
    with pytest.raises(ValueError, match="temperature"):
        online_weights(scores, 0.0)
    with pytest.raises(ValueError, match="finite"):
        online_weights([0.1, float("nan")])


def test_checkpoints_saved_and_loaded_from_paths(pairs, tokenizer, tmp_path):
    current, reference = pairs["gpt2"]
    for name, model in [("step0", current), ("ref", reference)]:
        model.save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    cur = load_causal_lm(str(tmp_path / "step0"), dtype="float32", device="cpu")
    ref = load_causal_lm(str(tmp_path / "ref"), dtype="float32", device="cpu")
    out = mimic_scores(cur, ref, TEXTS, layer="lm_head", max_length=MAX_LENGTH, batch_size=4)
    want, want_cos = brute_force_scores(current, reference, tokenizer, TEXTS, "lm_head.weight")
    np.testing.assert_allclose(out["score"].to_numpy(float), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["cosine"].to_numpy(float), want_cos, rtol=1e-4, atol=1e-5)

    clear_direction_cache()
    direction = cached_direction(str(tmp_path / "step0"), str(tmp_path / "ref"), "lm_head",
                                 torch.device("cpu"))
    want_delta = reference.lm_head.weight.detach() - current.lm_head.weight.detach()
    torch.testing.assert_close(direction.delta, want_delta)
    assert cached_direction(str(tmp_path / "step0"), str(tmp_path / "ref"), "lm_head",
                            torch.device("cpu")) is direction
    clear_direction_cache()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_scores_match_cpu(pairs, tokenizer):
    current, reference = pairs["llama"]
    _, cpu_scores, _ = run(current, reference, tokenizer, "lm_head")
    gpu_current = copy.deepcopy(current).cuda()
    _, gpu_scores, _ = run(gpu_current, reference, tokenizer, "lm_head")
    np.testing.assert_allclose(gpu_scores, cpu_scores, rtol=1e-3, atol=1e-5)
