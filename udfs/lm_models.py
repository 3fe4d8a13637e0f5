"""Loading Hugging Face causal LMs safely on executors, and picking each task's device.

Security: weights load only from safetensors files, only from local paths (never the hub), and
never with `trust_remote_code`. Paths are read on the executors, so on a cluster they must be
visible there: a shared mount such as DBFS (`/dbfs/...`), a Unity Catalog volume
(`/Volumes/...`) or NFS. Local paths and `file:` URIs are accepted; object-store URIs
(`s3://`, `dbfs:/`, ...) are rejected with the mount path to use instead.

A Python worker is reused across tasks (spark.python.worker.reuse), so `get_cached_lm` keeps each
model loaded for the worker's lifetime; the cache lives in this importable module because a cache
in `__main__` would be re-shipped, and thus emptied, with every task.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.activations import ACT2FN, NewGELUActivation
from transformers.utils import logging as hf_logging

logger = logging.getLogger(__name__)

DTYPE_NAMES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass
class LoadedLM:
    """A causal LM in eval mode, its tokenizer, and where/how it runs."""

    model: PreTrainedModel
    tokenizer: object
    device: torch.device
    dtype: torch.dtype
    path: str


def resolve_model_path(path: str) -> Path:
    """A local directory from a path or `file:` URI; other URI schemes raise with advice."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"model path must be a non-empty string, got {path!r}")
    parsed = urlparse(path)
    # A one-letter scheme is a Windows drive ("C:\\models"), not a URI.
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"model path {path!r}: file URIs with a remote host are not supported")
        return Path(unquote(parsed.path))
    if len(parsed.scheme) > 1:
        hint = ""
        if parsed.scheme == "dbfs":
            hint = f" (on Databricks use the FUSE mount /dbfs{parsed.path})"
        raise ValueError(
            f"model path {path!r}: scheme '{parsed.scheme}:' is not readable by torch; pass a "
            f"path mounted on every executor{hint}, e.g. /dbfs/..., /Volumes/... or NFS"
        )
    return Path(path)


def parse_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """ "auto" means bf16 on CUDA devices that support it and fp32 everywhere else."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return DTYPE_NAMES[str(dtype).lower()]
    except KeyError:
        raise ValueError(
            f"dtype must be 'auto' or one of {sorted(DTYPE_NAMES)}, got {dtype!r}"
        ) from None


def load_causal_lm(
    path: str, *, dtype: str = "auto", device: str | torch.device | None = None
) -> LoadedLM:
    """Load model + tokenizer from a local directory onto `device` (default: `task_device()`)."""
    model_dir = resolve_model_path(path)
    target = torch.device(device) if device is not None else task_device()
    torch_dtype = parse_dtype(dtype, target)
    _check_model_dir(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(model_dir), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # the library's own messages rarely name the directory
        raise ValueError(f"cannot load the tokenizer from {model_dir}: {exc}") from exc
    # Progress bars would print into every executor's log on every load.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir),
            dtype=torch_dtype,
            use_safetensors=True,
            local_files_only=True,
            trust_remote_code=False,
        )
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    check_tokenizer_matches_model(tokenizer, model, str(model_dir))
    fuse_tanh_gelu(model)
    model.to(target).eval()
    return LoadedLM(model, tokenizer, target, torch_dtype, str(model_dir))


def fuse_tanh_gelu(model: torch.nn.Module) -> int:
    """Swap transformers' `gelu_new` (GPT-2, GPT-J, ...) for torch's fused tanh GELU, in place.

    Both compute 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))); `gelu_new` runs it as ~8 separate
    elementwise kernels, which took ~40% of a small GPT-2's CPU time. Outputs agree to float
    rounding (~1e-7 relative). Returns how many modules were swapped.
    """
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, NewGELUActivation):
                setattr(parent, name, ACT2FN["gelu_pytorch_tanh"])
                swapped += 1
    return swapped


def _check_model_dir(model_dir: Path) -> None:
    if not model_dir.exists():
        raise FileNotFoundError(f"model directory {model_dir} does not exist on this machine")
    if not model_dir.is_dir():
        raise NotADirectoryError(f"model path {model_dir} is a file, expected a directory")
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"model directory {model_dir} has no config.json")
    if not any(model_dir.glob("*.safetensors")):
        found = sorted(p.name for p in model_dir.glob("*.bin")) or ["no weight files"]
        raise FileNotFoundError(
            f"model directory {model_dir} has no *.safetensors weights (found: {', '.join(found)});"
            " only safetensors are loaded; convert with model.save_pretrained(dir)"
        )


def check_tokenizer_matches_model(tokenizer, model: PreTrainedModel, where: str) -> None:
    """Raise when the tokenizer can emit ids the model has no embedding for, or special ids differ.

    Models often pad the embedding matrix beyond the tokenizer (e.g. to a multiple of 64), so a
    larger embedding is fine; a larger tokenizer is not.
    """
    n_embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > n_embeddings:
        raise ValueError(
            f"tokenizer in {where} does not match the model: it has {len(tokenizer)} tokens but "
            f"the model embeds only {n_embeddings}"
        )
    for name in ("bos_token_id", "eos_token_id"):
        config_ids = getattr(model.config, name, None)
        tokenizer_id = getattr(tokenizer, name, None)
        if config_ids is None or tokenizer_id is None:
            continue
        allowed = set(config_ids) if isinstance(config_ids, list | tuple) else {config_ids}
        if tokenizer_id not in allowed:
            raise ValueError(
                f"tokenizer in {where} does not match the model: tokenizer {name}={tokenizer_id}, "
                f"model config {name}={config_ids}"
            )


def task_device() -> torch.device:
    """The GPU Spark assigned to the running task, else cuda:0 outside Spark, else the CPU.

    Inside a Spark task without a GPU resource we stay on the CPU even when CUDA exists, so
    CPU-only tasks never pile onto a GPU that the scheduler gave to another task.
    """
    from pyspark import TaskContext

    context = TaskContext.get()
    if context is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    gpu = context.resources().get("gpu")
    if gpu is None or not gpu.addresses:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        logger.warning(
            "Spark assigned GPU %s but this torch build has no CUDA; scoring on the CPU",
            gpu.addresses,
        )
        return torch.device("cpu")
    index = cuda_index_for_address(
        gpu.addresses[0], os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count()
    )
    return torch.device("cuda", index)


def cuda_index_for_address(address: str, visible_devices: str | None, device_count: int) -> int:
    """Map Spark's GPU address (a physical id) to a torch CUDA index.

    When CUDA_VISIBLE_DEVICES restricts the process (YARN/Kubernetes isolation), torch numbers
    the visible GPUs from 0, so the address is looked up in that list.
    """
    if visible_devices:
        visible = [d.strip() for d in visible_devices.split(",") if d.strip()]
        if address in visible:
            return visible.index(address)
        if len(visible) == 1:
            # Isolated to one GPU whose id in this namespace differs (e.g. a UUID vs an index).
            return 0
        raise ValueError(
            f"Spark GPU address {address!r} is not among CUDA_VISIBLE_DEVICES={visible_devices!r}"
        )
    try:
        index = int(address)
    except ValueError:
        raise ValueError(f"Spark GPU address {address!r} is not a CUDA device index") from None
    if not 0 <= index < device_count:
        raise ValueError(
            f"Spark GPU address {address!r} is out of range: torch sees {device_count} CUDA devices"
        )
    return index


_CACHE: dict[tuple[str, str, str], LoadedLM] = {}


def get_cached_lm(path: str, dtype: str = "auto") -> LoadedLM:
    """`load_causal_lm` once per (path, dtype, device) per Python process.

    A reused worker may be handed a different GPU by its next task; copies of the same model on
    other GPUs are dropped first, because a worker runs one task at a time and idle copies would
    eat memory that other workers' tasks on those GPUs need.
    """
    device = task_device()
    key = (str(resolve_model_path(path).resolve()), str(dtype), str(device))
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    for other in [k for k in _CACHE if k[:2] == key[:2] and k[2].startswith("cuda")]:
        del _CACHE[other]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    loaded = load_causal_lm(path, dtype=dtype, device=device)
    _CACHE[key] = loaded
    return loaded


def clear_lm_cache() -> None:
    """Drop every cached model (tests, or a driver that is done scoring)."""
    _CACHE.clear()
