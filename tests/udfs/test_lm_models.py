from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.lm_fixtures import synthetic_texts
from udfs import lm_models
from udfs.lm_models import (
    clear_lm_cache,
    cuda_index_for_address,
    get_cached_lm,
    load_causal_lm,
    resolve_model_path,
    task_device,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")



def test_loads_weights_tokenizer_and_eval_mode_on_cpu(model_dir):
    lm = load_causal_lm(model_dir, device="cpu")
    assert lm.device == torch.device("cpu") and lm.dtype == torch.float32
    assert not lm.model.training
    assert lm.path == model_dir
    weights = load_file(str(next(Path(model_dir).glob("*.safetensors"))))
    loaded = dict(lm.model.named_parameters())
    name = "transformer.wte.weight"
    assert torch.equal(loaded[name].detach(), weights[name])
    assert lm.tokenizer.bos_token_id == lm.model.config.bos_token_id


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [("auto", torch.float32), ("bf16", torch.bfloat16), ("float16", torch.float16)],
)
def test_dtype_names(model_dir, dtype, expected):
    lm = load_causal_lm(model_dir, dtype=dtype, device="cpu")
    assert lm.dtype == expected
    assert next(lm.model.parameters()).dtype == expected


def test_unknown_dtype_is_named_in_the_error(model_dir):
    with pytest.raises(ValueError, match="'int8'"):
        load_causal_lm(model_dir, dtype="int8", device="cpu")


def test_file_uri_and_plain_path_load_the_same_model(model_dir):
    uri = Path(model_dir).resolve().as_uri()
    assert uri.startswith("file://")
    assert resolve_model_path(uri) == Path(model_dir).resolve()
    assert load_causal_lm(uri, device="cpu").path == str(Path(model_dir).resolve())


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("s3://bucket/model", "scheme 's3:'"),
        ("dbfs:/models/m1", "/dbfs/models/m1"),
        ("", "non-empty string"),
    ],
)
def test_unreadable_uris_are_rejected_with_advice(path, message):
    with pytest.raises(ValueError, match=message):
        load_causal_lm(path, device="cpu")


def test_missing_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model.*does not exist"):
        load_causal_lm(str(missing), device="cpu")


def test_directory_without_safetensors_is_refused(model_dir, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(model_dir, pickled)
    for weights in pickled.glob("*.safetensors"):
        state = load_file(str(weights))
        weights.unlink()
    torch.save(state, pickled / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors.*pytorch_model\.bin"):
        load_causal_lm(str(pickled), device="cpu")


def test_tokenizer_larger_than_the_model_vocabulary_is_refused(model_dir, tmp_path):
    from jobs.demo.models import train_tokenizer

    mismatched = tmp_path / "mismatched"
    shutil.copytree(model_dir, mismatched)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (mismatched / name).unlink(missing_ok=True)
    big = train_tokenizer(synthetic_texts(400, seed=9), str(mismatched), vocab_size=600)
    n_embeddings = (
        load_causal_lm(model_dir, device="cpu").model.get_input_embeddings().num_embeddings
    )
    assert len(big) > n_embeddings
    with pytest.raises(
        ValueError, match=f"{len(big)} tokens but the model embeds only {n_embeddings}"
    ):
        load_causal_lm(str(mismatched), device="cpu")


def test_tokenizer_with_other_special_token_ids_is_refused(model_dir, tmp_path):
    import json

    shifted = tmp_path / "shifted"
    shutil.copytree(model_dir, shifted)
    config = json.loads((shifted / "config.json").read_text())
    config["eos_token_id"] = 7
    (shifted / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="eos_token_id=1, model config eos_token_id=7"):
        load_causal_lm(str(shifted), device="cpu")


def test_task_device_is_cpu_outside_spark_without_cuda():
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert str(task_device()) == expected


def test_task_device_is_cpu_inside_a_spark_task_without_gpu(spark):
    def devices(_):
        from udfs.lm_models import task_device

        yield str(task_device())

    assert spark.sparkContext.parallelize(range(2), 2).mapPartitions(devices).collect() == [
        "cpu",
        "cpu",
    ]


def test_cuda_index_for_spark_gpu_address():
    assert cuda_index_for_address("3", None, 4) == 3
    # Under isolation torch renumbers the visible GPUs from 0.
    assert cuda_index_for_address("3", "1,3", 2) == 1
    assert cuda_index_for_address("5", "GPU-uuid", 1) == 0
    with pytest.raises(ValueError, match="out of range"):
        cuda_index_for_address("4", None, 4)
    with pytest.raises(ValueError, match="not among CUDA_VISIBLE_DEVICES"):
        cuda_index_for_address("2", "0,1", 2)


def test_cache_loads_once_per_path_and_dtype(model_dir):
    clear_lm_cache()
    try:
        first = get_cached_lm(model_dir)
        assert get_cached_lm(model_dir) is first
        assert get_cached_lm(Path(model_dir).resolve().as_uri()) is first
        other = get_cached_lm(model_dir, dtype="bf16")
        assert other is not first and other.dtype == torch.bfloat16
        assert len(lm_models._CACHE) == 2
    finally:
        clear_lm_cache()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_dtype_is_bf16_on_a_capable_gpu(model_dir):
    lm = load_causal_lm(model_dir, device="cuda:0")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    assert lm.dtype == expected and next(lm.model.parameters()).device.type == "cuda"


def test_fused_tanh_gelu_replaces_gelu_new_without_changing_logits(model_dir):
    from transformers import AutoModelForCausalLM
    from transformers.activations import NewGELUActivation

    plain = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True).eval()
    assert plain.config.activation_function == "gelu_new"
    lm = load_causal_lm(model_dir, device="cpu")
    assert not any(isinstance(m, NewGELUActivation) for m in lm.model.modules())
    ids = torch.tensor([[lm.tokenizer.bos_token_id, *range(5, 60)]])
    with torch.no_grad():
        expected, got = plain(ids).logits, lm.model(ids).logits
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
