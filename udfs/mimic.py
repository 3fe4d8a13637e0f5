"""Grad-Mimic mimic scores for causal LMs (METHODS.md §5), Spark-free.

For one parameter tensor ("the layer") with current weights θ_t and reference weights θ_ref:

    v = θ_ref − θ_t,    m = ⟨−g, v⟩ / ‖v‖,    cosine = m / ‖g‖

where g is the gradient, on that layer, of the document's mean next-token cross-entropy at θ_t.

Document loss convention (the same as the BPC kernel): the document is tokenized without special
tokens, truncated to `max_length` tokens, and prefixed with the tokenizer's BOS (EOS when there is
no BOS). The prefix is context only: the loss is the mean over the `max_length` (or fewer) real
tokens, so the model sees at most `max_length + 1` positions. `max_length=None` uses the model's
context minus the prefix. Documents are right-padded in batches; causal attention never lets a
real token see a pad, so the attention mask is all ones and pads are masked in the loss only.

Layers: "lm_head" (the output projection), "last_mlp" (the last 2-D weight registered in the last
module named `*.mlp`, i.e. GPT-2 `c_proj`, Llama `down_proj`), or any exact parameter name.

Tied embeddings (GPT-2 ties lm_head to the input embedding): the gradient "on the layer" is taken
w.r.t. the named tensor *in that module only*; its tied partner keeps its current value. For the
head this is g = Σ_t (softmax(z_t) − e_{y_t}) h_t^T / T, the head's own contribution. Both paths
below compute exactly this, so they agree on tied and untied models alike.

Two ways to get per-document gradients:
- "closed_form" (head only): one batched forward through the backbone, then per document
  G = Δ^T H / T with Δ = softmax(HW^T) − onehot(y). Materialising G (one [V, H] matrix per document,
  a memory-bounded sub-batch at a time) is cheaper than never forming it: ⟨G, v⟩ and ‖G‖ then cost
  O(VH), whereas the gradient-free route needs U = H v^T (another T·V·H) for the score plus a Gram
  product (T²(V+H)) for ‖G‖. Math runs in float32 whatever the model dtype.
- "vmap" (any parameter): torch.func vmap(grad(...)) over the batch with functional_call
  substituting only the named tensor (tie_weights=False).
"auto" picks the closed form when the layer is the head and the model's logits are exactly
lm_head(last_hidden_state) (checked once per direction; not true for e.g. logit soft-capping).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from udfs.oom import run_halving_on_oom

HEAD_LAYER = "lm_head"
LAST_MLP_LAYER = "last_mlp"
METHODS = ("auto", "closed_form", "vmap")
# Elements (float32) one sub-batch may hold in logits + per-document gradients (~512 MB).
DEFAULT_MEMORY_ELEMENTS = 1 << 27


@dataclass(frozen=True)
class MimicDirection:
    """The target direction v = θ_ref − θ_t on one parameter tensor of the current model."""

    layer: str  # resolved parameter name in the current model
    delta: torch.Tensor  # float32, on the current model's device
    norm: float
    closed_form_ok: bool  # layer is the head and logits == lm_head(last_hidden_state)


def head_parameter_name(model: torch.nn.Module) -> str:
    head = model.get_output_embeddings()
    for name, module in model.named_modules():
        if module is head and name:
            return f"{name}.weight"
    raise ValueError(f"{type(model).__name__} has no output embedding module to use as lm_head")


def last_mlp_parameter_name(model: torch.nn.Module) -> str:
    mlps = [(name, module) for name, module in model.named_modules() if name.endswith(".mlp")]
    if not mlps:
        raise ValueError(f"{type(model).__name__} has no module named '*.mlp' for layer 'last_mlp'")
    mlp_name, mlp = mlps[-1]
    weights = [name for name, p in mlp.named_parameters() if p.dim() == 2]
    if not weights:
        raise ValueError(f"'{mlp_name}' has no 2-D weight for layer 'last_mlp'")
    return f"{mlp_name}.{weights[-1]}"


def resolve_layer(model: torch.nn.Module, layer: str) -> str:
    """Map "lm_head" / "last_mlp" / an exact parameter name to a parameter name of `model`."""
    if layer == HEAD_LAYER:
        return head_parameter_name(model)
    if layer == LAST_MLP_LAYER:
        return last_mlp_parameter_name(model)
    try:
        model.get_parameter(layer)
    except AttributeError:
        raise ValueError(
            f"layer {layer!r} is neither 'lm_head', 'last_mlp' nor a parameter of "
            f"{type(model).__name__} (e.g. {head_parameter_name(model)!r})"
        ) from None
    return layer


def mimic_direction(
    current: torch.nn.Module, reference: torch.nn.Module, layer: str = HEAD_LAYER
) -> MimicDirection:
    """v = θ_ref − θ_t on `layer`, in float32 on the current model's device."""
    name = resolve_layer(current, layer)
    ref_name = resolve_layer(reference, layer)
    theta_t = current.get_parameter(name).detach()
    theta_ref = reference.get_parameter(ref_name).detach()
    if theta_t.shape != theta_ref.shape:
        raise ValueError(
            f"layer {name!r}: current shape {tuple(theta_t.shape)} != reference shape "
            f"{tuple(theta_ref.shape)}; the two checkpoints must share an architecture"
        )
    delta = theta_ref.to(theta_t.device, torch.float32) - theta_t.float()
    norm = float(torch.linalg.vector_norm(delta))
    if not np.isfinite(norm):
        raise ValueError(f"layer {name!r}: θ_ref − θ_t is not finite")
    if norm == 0.0:
        raise ValueError(f"layer {name!r}: reference and current weights are identical (v = 0)")
    closed_form_ok = name == head_parameter_name(current) and _logits_are_plain_head(current)
    return MimicDirection(name, delta, norm, closed_form_ok)


def _logits_are_plain_head(model: torch.nn.Module) -> bool:
    if model.base_model is model:
        return False
    ids = torch.arange(4, device=_device_of(model)).unsqueeze(0) % model.config.vocab_size
    with torch.no_grad():
        hidden = model.base_model(input_ids=ids, use_cache=False).last_hidden_state
        expected = model(input_ids=ids, use_cache=False).logits
        ours = model.get_output_embeddings()(hidden)
    return bool(torch.allclose(ours.float(), expected.float(), rtol=1e-3, atol=1e-3))


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def context_tokens(model: torch.nn.Module) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


def document_token_ids(
    tokenizer: Any, texts: Sequence[Any], max_length: int
) -> tuple[list[list[int] | None], list[str | None]]:
    """Prefix + first `max_length` tokens per text; (None, reason) when a text cannot be scored."""
    prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if prefix is None:
        raise ValueError("tokenizer has neither a BOS nor an EOS token to use as the prefix")
    ids: list[list[int] | None] = [None] * len(texts)
    errors: list[str | None] = [None] * len(texts)
    scorable = []
    for i, text in enumerate(texts):
        if text is None or (isinstance(text, float) and np.isnan(text)):
            errors[i] = "null text"
        elif not isinstance(text, str):
            errors[i] = f"text is {type(text).__name__}, not str"
        elif not text:
            errors[i] = "empty text"
        else:
            scorable.append(i)
    if scorable:
        encoded = tokenizer(
            [texts[i] for i in scorable],
            add_special_tokens=False,
            truncation=True,
            max_length=max_length,
        )["input_ids"]
        for i, tokens in zip(scorable, encoded, strict=True):
            if tokens:
                ids[i] = [prefix, *tokens]
            else:
                errors[i] = "text has no tokens"
    return ids, errors


def _pad_right(docs: Sequence[Sequence[int]], device: torch.device):
    """ids [B, L] right-padded with the prefix id; target mask [B, L-1] marks real targets."""
    width = max(len(d) for d in docs)
    ids = torch.full((len(docs), width), docs[0][0], dtype=torch.long)
    mask = torch.zeros((len(docs), width - 1), dtype=torch.float32)
    for row, doc in enumerate(docs):
        ids[row, : len(doc)] = torch.tensor(doc, dtype=torch.long)
        mask[row, : len(doc) - 1] = 1.0
    return ids.to(device), mask.to(device)


def _sub_batches(n: int, per_doc_elements: int, memory_elements: int) -> list[slice]:
    step = max(1, memory_elements // max(1, per_doc_elements))
    return [slice(start, min(n, start + step)) for start in range(0, n, step)]


def _dots_closed_form(
    model: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    direction: MimicDirection,
    memory_elements: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(⟨g_i, v⟩, ‖g_i‖) for every document, g_i the head-only gradient in closed form."""
    head = model.get_output_embeddings()
    weight = head.weight.detach().float()
    bias = None if getattr(head, "bias", None) is None else head.bias.detach().float()
    with torch.no_grad():
        hidden = model.base_model(
            input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False
        ).last_hidden_state[:, :-1]
    targets = ids[:, 1:]
    vocab, width = weight.shape
    per_doc = hidden.shape[1] * vocab + vocab * width
    dots, norms = [], []
    for part in _sub_batches(ids.shape[0], per_doc, memory_elements):
        h = hidden[part].float()
        with torch.no_grad():
            delta = F.linear(h, weight, bias).softmax(dim=-1)
            delta.scatter_add_(-1, targets[part].unsqueeze(-1), -torch.ones_like(delta[..., :1]))
            doc_mask = mask[part]
            delta *= (doc_mask / doc_mask.sum(dim=1, keepdim=True)).unsqueeze(-1)
            grads = (delta.transpose(1, 2) @ h).flatten(1)  # [b, V·H]
            dots.append(grads @ direction.delta.flatten())  # a mat-vec: no [b, V, H] temporary
            norms.append(torch.linalg.vector_norm(grads, dim=1))
    return torch.cat(dots), torch.cat(norms)


def _dots_vmap(
    model: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    direction: MimicDirection,
    memory_elements: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(⟨g_i, v⟩, ‖g_i‖) with g_i from torch.func vmap(grad(doc_loss)) on the named tensor."""
    name = direction.layer
    weight = model.get_parameter(name).detach()

    # A constant all-ones mask (built outside vmap, so never a batched tensor) keeps HF's
    # padding heuristics from inspecting token ids, which vmap cannot branch on.
    attention_mask = torch.ones((1, ids.shape[1]), dtype=torch.long, device=ids.device)

    def doc_loss(w: torch.Tensor, doc_ids: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
        inputs = {"input_ids": doc_ids.unsqueeze(0), "attention_mask": attention_mask}
        out = functional_call(
            model,
            {name: w},
            args=(),
            kwargs={**inputs, "use_cache": False},
            tie_weights=False,
            strict=False,
        )
        nll = F.cross_entropy(out.logits[0, :-1].float(), doc_ids[1:], reduction="none")
        return (nll * doc_mask).sum() / doc_mask.sum()

    per_doc_grad = vmap(grad(doc_loss), in_dims=(None, 0, 0))
    dots, norms = [], []
    # Outer no_grad keeps autograd from recording through the model's own parameters;
    # torch.func.grad still differentiates w.r.t. `w`.
    with torch.no_grad(), warnings.catch_warnings():
        # SDPA has no vmap batching rule on some backends; the per-sample fallback is correct.
        warnings.filterwarnings("ignore", message=".*batching rule.*", category=UserWarning)
        for part in _sub_batches(ids.shape[0], weight.numel(), memory_elements):
            grads = per_doc_grad(weight, ids[part], mask[part]).float().flatten(1)
            dots.append(grads @ direction.delta.flatten())
            norms.append(torch.linalg.vector_norm(grads, dim=1))
    return torch.cat(dots), torch.cat(norms)


def mimic_scores_for_token_ids(
    model: torch.nn.Module,
    docs: Sequence[Sequence[int]],
    direction: MimicDirection,
    *,
    method: str = "auto",
    memory_elements: int = DEFAULT_MEMORY_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """(score, cosine) per document; each doc is prefix + ≥ 1 target token, in one padded batch."""
    if method not in METHODS:
        raise ValueError(f"method {method!r} is not one of {METHODS}")
    if any(len(doc) < 2 for doc in docs):
        raise ValueError("every document needs the prefix and at least one token")
    if method == "closed_form" and not direction.closed_form_ok:
        raise ValueError(
            f"closed_form needs the layer to be the LM head with plain logits; "
            f"{direction.layer!r} is not (use method='vmap')"
        )
    if not docs:
        return np.zeros(0), np.zeros(0)
    model.eval()
    ids, mask = _pad_right(docs, _device_of(model))
    use_closed_form = method == "closed_form" or (method == "auto" and direction.closed_form_ok)
    kernel = _dots_closed_form if use_closed_form else _dots_vmap
    dots, norms = kernel(model, ids, mask, direction, memory_elements)
    scores = (-dots / direction.norm).double().cpu().numpy()
    norms_np = norms.double().cpu().numpy()
    # A zero gradient has no direction: it contributes nothing, so its cosine is 0 as well.
    cosines = np.divide(scores, norms_np, out=np.zeros_like(scores), where=norms_np > 0)
    return scores, cosines


def score_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    direction: MimicDirection,
    texts: Sequence[Any],
    *,
    max_length: int | None = None,
    batch_size: int = 8,
    method: str = "auto",
) -> pd.DataFrame:
    """Columns score, cosine, error (one row per text, input order); unscorable rows get a reason."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    context = context_tokens(model)
    limit = (context - 1) if (max_length is None and context) else max_length
    if limit is None or limit < 1:
        raise ValueError(f"max_length must be >= 1 (got {max_length}) and the model needs a context")
    if context is not None and limit + 1 > context:
        raise ValueError(f"max_length {limit} + 1 prefix token exceeds the model context {context}")
    texts = list(texts)
    ids, errors = document_token_ids(tokenizer, texts, limit)
    scores = np.full(len(texts), np.nan)
    cosines = np.full(len(texts), np.nan)
    # Longest first, so each batch holds similar lengths and padding stays small.
    order = sorted((i for i, doc in enumerate(ids) if doc), key=lambda i: -len(ids[i]))

    def score_rows(rows: Sequence[int]) -> None:
        batch_scores, batch_cos = mimic_scores_for_token_ids(
            model, [ids[i] for i in rows], direction, method=method
        )
        scores[rows] = batch_scores
        cosines[rows] = batch_cos

    for start in range(0, len(order), batch_size):
        run_halving_on_oom(
            order[start : start + batch_size],
            score_rows,
            advice="lower max_length or use a larger GPU",
        )
    return pd.DataFrame(
        {
            "score": pd.array(np.where(np.isnan(scores), None, scores), dtype="Float64"),
            "cosine": pd.array(np.where(np.isnan(cosines), None, cosines), dtype="Float64"),
            "error": pd.array(errors, dtype="string"),
        }
    )


def online_weights(scores: Any, temperature: float = 1.0) -> Any:
    """Grad-Mimic batch weights w = softmax(m / T) (sum to 1; the uniform weight is 1/B).

    In a training loop, compute the mimic scores of the batch at the current step and update the
    layer with Σ_i w_i g_i instead of the mean gradient. Accepts a 1-D torch tensor (returns one on
    the same device) or anything numpy can read (returns a float64 array).
    """
    if not temperature > 0 or not np.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if isinstance(scores, torch.Tensor):
        if scores.dim() != 1 or scores.numel() == 0 or not torch.isfinite(scores).all():
            raise ValueError("scores must be a non-empty 1-D tensor of finite values")
        return torch.softmax(scores / temperature, dim=0)
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or not np.isfinite(values).all():
        raise ValueError("scores must be a non-empty 1-D sequence of finite values")
    shifted = values / temperature
    shifted -= shifted.max()
    weights = np.exp(shifted)
    return weights / weights.sum()


def mimic_scores(
    current: Any,
    reference: Any,
    texts: Sequence[Any],
    *,
    layer: str = HEAD_LAYER,
    max_length: int | None = None,
    batch_size: int = 8,
    method: str = "auto",
) -> pd.DataFrame:
    """score / cosine / error per text, given the current and reference `LoadedLM`s."""
    direction = mimic_direction(current.model, reference.model, layer)
    return score_texts(
        current.model,
        current.tokenizer,
        direction,
        texts,
        max_length=max_length,
        batch_size=batch_size,
        method=method,
    )
