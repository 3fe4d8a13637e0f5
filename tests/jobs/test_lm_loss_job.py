from __future__ import annotations

import math

import pytest

from jobs.core.config import LMLossSettings, ModelSpec
from jobs.lm_loss import (
    MODEL_LOSSES_COLUMNS,
    sample_documents,
    score_model_losses,
    scoring_settings,
    validate_model_id,
)
from tests.lm_fixtures import (
    TINY_CONTEXT,
    reference_nll,
    synthetic_texts,
)
from udfs.lm_models import load_causal_lm

pytestmark = pytest.mark.usefixtures("torch_one_thread")



def test_model_losses_rows_match_the_per_document_reference(spark, model_dir):
    texts = synthetic_texts(10, seed=21, max_words=50) + ["", None]
    docs = spark.createDataFrame(
        [(f"d{i:02d}", t, "web") for i, t in enumerate(texts)],
        "doc_id string, text string, source string",
    )
    out = score_model_losses(docs, model_id="tiny-1", path=model_dir, stride=16)
    assert out.columns == MODEL_LOSSES_COLUMNS
    assert MODEL_LOSSES_COLUMNS == [
        "doc_id",
        "model_id",
        "total_nll",
        "n_tokens",
        "n_chars",
        "n_bytes",
        "bpc",
        "bits_per_byte",
        "error",
    ]
    rows = {r["doc_id"]: r for r in out.collect()}
    assert len(rows) == len(texts)
    lm = load_causal_lm(model_dir, device="cpu")
    for i, text in enumerate(texts):
        row = rows[f"d{i:02d}"]
        assert row["model_id"] == "tiny-1"
        if not text:
            assert row["total_nll"] is None and row["bpc"] is None and row["error"]
            continue
        nll, scored = reference_nll(lm.model, lm.tokenizer, text, TINY_CONTEXT, 16)
        assert row["error"] is None and row["n_tokens"] == scored
        assert row["total_nll"] == pytest.approx(nll, rel=1e-5)
        assert row["bpc"] == pytest.approx(nll / (math.log(2) * len(text)), rel=1e-4)
        assert row["n_bytes"] == len(text.encode("utf-8"))


@pytest.mark.parametrize("bad", ["Llama-7B", "model/1", "", "a b", "ünï"])
def test_model_ids_outside_the_partition_alphabet_are_refused(bad):
    with pytest.raises(ValueError, match="not a valid partition value"):
        validate_model_id(bad)


def test_valid_model_ids_pass_and_suggestion_is_valid():
    assert validate_model_id("llama-7b_v2") == "llama-7b_v2"
    with pytest.raises(ValueError, match="'llama-7b'"):
        validate_model_id("Llama 7B")


def test_bad_documents_frames_raise_clear_errors(spark, model_dir):
    no_text = spark.createDataFrame([("a", "x")], "doc_id string, body string")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['text'\]"):
        score_model_losses(no_text, model_id="m", path=model_dir)
    renamed = score_model_losses(no_text, model_id="m", path=model_dir, text_col="body", stride=16)
    assert renamed.columns[:2] == ["doc_id", "model_id"]
    numeric = spark.createDataFrame([("a", 1)], "doc_id string, text int")
    with pytest.raises(ValueError, match="must be a string, got int"):
        score_model_losses(numeric, model_id="m", path=model_dir)
    with pytest.raises(ValueError, match="not a valid partition value"):
        score_model_losses(no_text, model_id="M", path=model_dir, text_col="body")


def _unit_hashes(spark, ids: list[str], seed: int) -> dict[str, float]:
    """The sampling key recomputed in Python from Spark's raw signed 64-bit xxhash64."""
    frame = spark.createDataFrame([(i,) for i in ids], "doc_id string")
    raw = frame.selectExpr("doc_id", f"xxhash64(CAST({seed} AS INT), doc_id) AS h").collect()
    return {r["doc_id"]: ((r["h"] % 2**64) >> 11) / 2**53 for r in raw}


def test_sampling_is_a_seeded_hash_threshold_independent_of_partitioning(spark):
    ids = [f"doc-{i}" for i in range(400)]
    docs = spark.createDataFrame([(d, f"text {d}") for d in ids], "doc_id string, text string")
    units = _unit_hashes(spark, ids, seed=7)
    sample = sample_documents(docs, fraction=0.25, seed=7)
    assert sample.columns == docs.columns
    got = {r["doc_id"] for r in sample.collect()}
    assert got == {d for d, u in units.items() if u < 0.25}
    assert 60 <= len(got) <= 140  # binomial(400, 0.25): mean 100, sd 8.7
    reshuffled = sample_documents(docs.repartition(7).orderBy("text"), fraction=0.25, seed=7)
    assert {r["doc_id"] for r in reshuffled.collect()} == got
    smaller = {r["doc_id"] for r in sample_documents(docs, fraction=0.1, seed=7).collect()}
    assert smaller < got
    other_seed = {r["doc_id"] for r in sample_documents(docs, fraction=0.25, seed=8).collect()}
    assert other_seed != got


def test_limit_keeps_the_documents_with_the_smallest_hashes(spark):
    ids = [f"doc-{i}" for i in range(200)]
    docs = spark.createDataFrame([(d, "t") for d in ids], "doc_id string, text string")
    units = _unit_hashes(spark, ids, seed=0)
    expected = sorted(ids, key=lambda d: (units[d], d))
    got = {r["doc_id"] for r in sample_documents(docs.repartition(5), limit=30).collect()}
    assert got == set(expected[:30])
    both = {r["doc_id"] for r in sample_documents(docs, fraction=0.5, limit=1000).collect()}
    assert both == {d for d in ids if units[d] < 0.5}
    assert sample_documents(docs).count() == 200


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraction": 0.0}, "fraction must be in"),
        ({"fraction": 1.5}, "fraction must be in"),
        ({"limit": 0}, "limit must be a positive int"),
        ({"limit": 2.5}, "limit must be a positive int"),
    ],
)
def test_invalid_sample_settings_raise(spark, kwargs, message):
    docs = spark.createDataFrame([("a", "t")], "doc_id string, text string")
    with pytest.raises(ValueError, match=message):
        sample_documents(docs, **kwargs)


def test_job_defaults_work_for_a_model_with_a_short_context(spark, model_dir, tmp_path):
    """No window or stride set: the job scores with the model context and window * 512 // 1900."""
    from jobs import lm_loss
    from jobs.core.base import lake_for
    from jobs.core.config import config_from_dict

    cfg = config_from_dict({
        "lake": {"root": str(tmp_path / "lake")},
        "prefilter": {"enabled": False},
        "lm_loss": {"models": [{"model_id": "tiny", "path": model_dir, "benchmark_score": 1.0}],
                    "models_manifest": None},
    })
    assert cfg.lm_loss.window is None and cfg.lm_loss.stride is None
    texts = synthetic_texts(6, seed=5, max_words=120)
    docs = spark.createDataFrame([(f"d{i}", t) for i, t in enumerate(texts)], "doc_id string, text string")
    lake_for(spark, cfg).write(docs, "documents")
    report = lm_loss.run(spark, cfg)
    assert report.rows_out == len(texts)
    losses = lake_for(spark, cfg).read("model_losses").toPandas()
    assert losses["bpc"].notna().all() and (losses["n_tokens"] > TINY_CONTEXT).any()

    # Incremental: two new documents are scored, the six stay as they were (appended, not
    # rewritten); the recorded model digest keeps it from mixing models.
    from deltalake import DeltaTable

    lake = lake_for(spark, cfg)
    before = set(DeltaTable(lake.path("model_losses")).file_uris())
    more = synthetic_texts(2, seed=6, max_words=40)
    lake.write(spark.createDataFrame([(f"n{i}", t) for i, t in enumerate(more)],
                                     "doc_id string, text string"), "documents", mode="append")
    cfg.lm_loss.mode = "incremental"
    report = lm_loss.run(spark, cfg)
    assert report.details["model tiny"] == "2 documents scored now (append)"
    assert before <= set(DeltaTable(lake.path("model_losses")).file_uris())
    ids = [r.doc_id for r in lake.read("model_losses").collect()]
    assert report.rows_out == len(ids) == len(set(ids)) == len(texts) + 2

def test_a_models_own_window_and_stride_override_the_jobs():
    settings = LMLossSettings(window=256, stride=64, dtype="bfloat16")
    own = ModelSpec(model_id="m", path="/m", benchmark_score=1, window=48, stride=5,
                    dtype="float32", max_tokens_per_batch=96)
    assert scoring_settings(own, settings) == {
        "dtype": "float32", "window": 48, "stride": 5, "max_tokens_per_batch": 96}
    plain = ModelSpec(model_id="p", path="/p", benchmark_score=1)
    assert scoring_settings(plain, settings) == {
        "dtype": "bfloat16", "window": 256, "stride": 64, "max_tokens_per_batch": 16384}
    # Nothing set anywhere: the kernel picks the model context and PreSelect's ratio of it.
    unset = scoring_settings(plain, LMLossSettings())
    assert unset["window"] is None and unset["stride"] is None


@pytest.mark.parametrize("window", [2, 3])
def test_default_stride_is_at_least_one_when_the_ratio_rounds_to_zero(model_dir, window):
    """window * 512 // 1900 is 0 for windows of 2 and 3; the default stride is then 1."""
    from udfs.lm_loss import default_stride, make_lm_loss_udf, score_texts

    assert window * 512 // 1900 == 0 and default_stride(window) == 1
    lm = load_causal_lm(model_dir, device="cpu")
    text = synthetic_texts(1, seed=3, max_words=12)[0]
    by_default = score_texts([text], lm, window=window)
    nll, scored = reference_nll(lm.model, lm.tokenizer, text, window, 1)
    assert by_default["total_nll"][0] == pytest.approx(nll, rel=1e-4)
    assert by_default["n_tokens"][0] == scored
    assert make_lm_loss_udf(model_dir, window=window) is not None  # the job's driver-side check
