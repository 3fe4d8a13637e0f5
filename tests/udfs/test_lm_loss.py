from __future__ import annotations

import copy
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F
from tokenizers import processors

from tests.lm_fixtures import (
    TINY_CONTEXT,
    reference_bits_per_byte,
    reference_nll,
    reference_windows,
    synthetic_texts,
    tiny_lm_dir,
)
from udfs.lm_loss import (
    _supports_logits_to_keep,
    default_stride,
    make_lm_loss_udf,
    plan_windows,
    score_texts,
)
from udfs.lm_models import LoadedLM, load_causal_lm

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def gpt2_lm(tmp_path_factory) -> LoadedLM:
    return load_causal_lm(tiny_lm_dir(tmp_path_factory, "gpt2"), device="cpu")


@pytest.fixture(scope="module")
def llama_lm(tmp_path_factory) -> LoadedLM:
    return load_causal_lm(tiny_lm_dir(tmp_path_factory, "llama"), device="cpu")


def mixed_texts() -> list[str]:
    # Short and long (several windows), ASCII and multi-byte, so bpc and bits/byte differ.
    return synthetic_texts(12, seed=7, max_words=40) + ["x", "日本", "über " * 30]


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_bits_per_byte_matches_per_document_reference(architecture, gpt2_lm, llama_lm):
    lm = gpt2_lm if architecture == "gpt2" else llama_lm
    texts = mixed_texts()
    result = score_texts(texts, lm, stride=16)
    assert result["error"].isna().all()
    for i, text in enumerate(texts):
        nll, scored = reference_nll(lm.model, lm.tokenizer, text, TINY_CONTEXT, 16)
        n_bytes = len(text.encode("utf-8"))
        assert result["n_tokens"][i] == scored
        assert result["n_chars"][i] == len(text)
        assert result["n_bytes"][i] == n_bytes
        assert result["total_nll"][i] == pytest.approx(nll, rel=1e-5)
        assert result["bits_per_byte"][i] == pytest.approx(
            reference_bits_per_byte(lm.model, lm.tokenizer, text, TINY_CONTEXT, 16), rel=1e-4
        )
        assert result["bpc"][i] == pytest.approx(nll / (math.log(2) * len(text)), rel=1e-4)
    assert (result["bpc"] != result["bits_per_byte"]).any()


def test_batch_size_padding_and_order_never_change_a_result(gpt2_lm):
    texts = mixed_texts()
    # One window per batch: no padding at all.
    alone = score_texts(texts, gpt2_lm, stride=16, max_tokens_per_batch=TINY_CONTEXT)
    packed = score_texts(texts, gpt2_lm, stride=16, max_tokens_per_batch=4096)
    order = list(range(len(texts)))
    random.Random(3).shuffle(order)
    shuffled = score_texts([texts[i] for i in order], gpt2_lm, stride=16, max_tokens_per_batch=300)
    unshuffled = shuffled.set_index(pd.Index(order)).sort_index()
    for other in (packed, unshuffled):
        np.testing.assert_allclose(other["total_nll"], alone["total_nll"], rtol=1e-5)
        assert other["n_tokens"].tolist() == alone["n_tokens"].tolist()


def test_long_documents_are_scored_in_windows_with_every_token_once(gpt2_lm):
    # Later windows then run with logits_to_keep (logits for the scored suffix only).
    assert _supports_logits_to_keep(gpt2_lm.model)
    text = " ".join(synthetic_texts(8, seed=11, max_words=60))
    n_doc_tokens = len(gpt2_lm.tokenizer.encode(text, add_special_tokens=False))
    assert n_doc_tokens > 4 * TINY_CONTEXT
    for window, stride in [(64, 16), (64, 63), (32, 1), (40, 7)]:
        result = score_texts([text], gpt2_lm, window=window, stride=stride)
        nll, scored = reference_nll(gpt2_lm.model, gpt2_lm.tokenizer, text, window, stride)
        assert scored == n_doc_tokens
        assert result["n_tokens"][0] == n_doc_tokens
        assert result["total_nll"][0] == pytest.approx(nll, rel=1e-5)


def test_window_plan_scores_each_target_once_with_enough_context():
    for seq_len, window, stride in [
        (1, 8, 3),
        (2, 8, 3),
        (8, 8, 3),
        (9, 8, 3),
        (100, 8, 3),
        (57, 10, 9),
    ]:
        spans = plan_windows(seq_len, window, stride)
        expected = reference_windows(seq_len, window, stride) if seq_len > 1 else []
        assert [(s, e, list(range(f, e))) for s, e, f in spans] == expected
        targets = [t for _, e, f in spans for t in range(f, e)]
        assert targets == list(range(1, seq_len))
        for start, end, first in spans[1:]:
            assert end - start == window and first - start >= window - stride


def test_later_windows_change_the_score_when_context_is_cut(gpt2_lm):
    # Guards against a kernel that ignores the window and scores the whole document at once
    # (impossible beyond the context) or that drops context: short windows lose information.
    text = " ".join(synthetic_texts(4, seed=5, max_words=30))
    wide = score_texts([text], gpt2_lm, window=64, stride=8)["total_nll"][0]
    narrow = score_texts([text], gpt2_lm, window=8, stride=7)["total_nll"][0]
    assert wide != pytest.approx(narrow, rel=1e-3)


def test_empty_null_and_invalid_texts_give_null_scores_with_a_reason(gpt2_lm):
    texts = ["", None, float("nan"), "ok text", b"bytes", "bad \ud800 surrogate"]
    result = score_texts(texts, gpt2_lm, stride=16)
    assert result["error"].tolist()[:3] == ["empty text", "text is null", "text is null"]
    assert pd.isna(result["error"][3])
    assert "bytes" in result["error"][4] and "surrogate" in result["error"][5]
    failed = result.drop(index=3)
    for column in ("total_nll", "n_tokens", "bpc", "bits_per_byte"):
        assert failed[column].isna().all(), column
    assert result["n_chars"][0] == 0 and result["n_bytes"][0] == 0
    assert result["total_nll"][3] > 0
    assert len(score_texts([], gpt2_lm, stride=16)) == 0


def test_prefix_falls_back_to_eos_and_fails_clearly_without_either(gpt2_lm):
    text = "the cat sees a red house"
    no_bos = copy.deepcopy(gpt2_lm.tokenizer)
    no_bos.bos_token = None
    lm = LoadedLM(gpt2_lm.model, no_bos, gpt2_lm.device, gpt2_lm.dtype, gpt2_lm.path)
    got = score_texts([text], lm, stride=16)["total_nll"][0]
    ids = [gpt2_lm.tokenizer.eos_token_id] + gpt2_lm.tokenizer.encode(
        text, add_special_tokens=False
    )
    import torch

    with torch.no_grad():
        logprobs = torch.log_softmax(gpt2_lm.model(torch.tensor([ids])).logits[0].double(), -1)
    assert got == pytest.approx(
        -sum(logprobs[i - 1, ids[i]].item() for i in range(1, len(ids))), rel=1e-5
    )
    neither = copy.deepcopy(no_bos)
    neither.eos_token = None
    lm = LoadedLM(gpt2_lm.model, neither, gpt2_lm.device, gpt2_lm.dtype, gpt2_lm.path)
    with pytest.raises(ValueError, match="neither a BOS nor an EOS"):
        score_texts([text], lm, stride=16)


def test_special_tokens_the_tokenizer_adds_by_default_are_not_scored(gpt2_lm, tmp_path):
    model_dir = Path(gpt2_lm.path)
    adding = tmp_path / "adds-specials"
    shutil.copytree(model_dir, adding)
    lm = load_causal_lm(str(adding), device="cpu")
    tok = lm.tokenizer
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tok.bos_token} $A {tok.eos_token}",
        special_tokens=[(tok.bos_token, tok.bos_token_id), (tok.eos_token, tok.eos_token_id)],
    )
    assert (
        len(tok("cat")["input_ids"]) == len(tok("cat", add_special_tokens=False)["input_ids"]) + 2
    )
    texts = mixed_texts()[:4]
    plain = score_texts(texts, gpt2_lm, stride=16)
    with_template = score_texts(texts, lm, stride=16)
    np.testing.assert_allclose(with_template["total_nll"], plain["total_nll"], rtol=1e-6)
    assert with_template["n_tokens"].tolist() == plain["n_tokens"].tolist()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 65}, "exceeds the context length 64"),
        ({"window": 1}, "window must be an int >= 2"),
        ({"window": 32, "stride": 32}, r"stride must be an int in \[1, window-1\]"),
        ({"stride": 0}, "stride must be"),
        ({"window": 64, "max_tokens_per_batch": 32}, "does not fit max_tokens_per_batch"),
    ],
)
def test_invalid_window_settings_raise_clear_errors(gpt2_lm, kwargs, message):
    settings = {"stride": 16, **kwargs}
    with pytest.raises(ValueError, match=message):
        score_texts(["some text"], gpt2_lm, **settings)


def test_default_window_is_the_model_context(gpt2_lm):
    text = " ".join(synthetic_texts(3, seed=2, max_words=50))
    default = score_texts([text], gpt2_lm, stride=16)["total_nll"][0]
    explicit = score_texts([text], gpt2_lm, window=TINY_CONTEXT, stride=16)["total_nll"][0]
    assert default == explicit


def test_default_stride_keeps_preselect_ratio_and_fits_a_short_context(gpt2_lm):
    # The tiny model's context is far below the old fixed default of 512 tokens.
    assert TINY_CONTEXT <= 512
    assert default_stride(1900) == 512 and default_stride(128) == 34 and default_stride(2) == 1
    text = " ".join(synthetic_texts(3, seed=2, max_words=50))
    default = score_texts([text], gpt2_lm)["total_nll"][0]
    stride = default_stride(TINY_CONTEXT)
    explicit = score_texts([text], gpt2_lm, window=TINY_CONTEXT, stride=stride)["total_nll"][0]
    assert default == explicit
    assert make_lm_loss_udf(gpt2_lm.path) is not None  # the driver-side check accepts it too


def test_udf_on_local_spark_matches_the_reference(spark, gpt2_lm):
    texts = mixed_texts() + ["", None]
    rows = [(i, t) for i, t in enumerate(texts)]
    df = spark.createDataFrame(rows, "doc_id long, text string").repartition(3)
    udf = make_lm_loss_udf(gpt2_lm.path, stride=16, max_tokens_per_batch=512)
    got = (
        df.select("doc_id", udf("text").alias("r"))
        # Spark must see SQL nulls, not NaN, for documents without a score.
        .select("doc_id", "r.*", F.isnull("r.total_nll").alias("nll_is_null"))
        .toPandas()
        .set_index("doc_id")
        .sort_index()
    )
    assert list(got.columns) == [
        "total_nll",
        "n_tokens",
        "n_chars",
        "n_bytes",
        "bpc",
        "bits_per_byte",
        "error",
        "nll_is_null",
    ]
    assert got["nll_is_null"].tolist() == [not t for t in texts]
    for i, text in enumerate(texts):
        if not text:
            assert got["error"][i] in ("empty text", "text is null")
            assert got["total_nll"].isna()[i] and got["bits_per_byte"].isna()[i]
            continue
        expected = reference_bits_per_byte(gpt2_lm.model, gpt2_lm.tokenizer, text, TINY_CONTEXT, 16)
        assert got["bits_per_byte"][i] == pytest.approx(expected, rel=1e-4)
        assert got["error"][i] is None


def test_udf_settings_are_checked_on_the_driver_against_the_model_config(gpt2_lm, tmp_path):
    with pytest.raises(ValueError, match=r"stride must be an int in \[1, window-1\] = \[1, 63\]"):
        make_lm_loss_udf(gpt2_lm.path, stride=512)  # 512 >= the 64-token context
    with pytest.raises(ValueError, match="exceeds the context length 64"):
        make_lm_loss_udf(gpt2_lm.path, window=128, stride=16)
    # A path only the executors can see is checked there instead.
    assert make_lm_loss_udf(str(tmp_path / "elsewhere"), stride=16) is not None
    with pytest.raises(ValueError, match="stride must be"):
        make_lm_loss_udf(str(tmp_path / "elsewhere"), window=16, stride=16)
