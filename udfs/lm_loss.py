"""Reference-model loss per document: total NLL, BPC and bits per byte (METHODS.md section 1).

Scoring convention (lm-evaluation-harness style, each document independent):
  s = [prefix] + tokens(text), prefix = the tokenizer's BOS, or EOS when it has no BOS. The
  prefix is context only. The tokenizer adds no special tokens of its own (disabled explicitly).
  With window W and stride S (1 <= S < W): the first window s[0:W] scores all its targets
  s[1:W]; each later window scores the next S targets (fewer at the end) and its input is the W
  tokens ending at the last of them, so each of those targets keeps >= W-S tokens of context.
  Every document token is scored exactly once.

Outputs: total_nll (nats), n_tokens (scored tokens), n_chars (code points), n_bytes (UTF-8),
bpc = total_nll / (ln 2 * n_chars), bits_per_byte = total_nll / (ln 2 * n_bytes), error (null
when ok; a reason and null scores otherwise).

Batching: windows are sorted by length and packed into batches of at most
`max_tokens_per_batch` tokens (rows x longest row), padded on the right, with at most ~10% of
a batch's width as padding per row. No attention mask is
passed: under causal attention a real token never sees the pads after it, and positions start at
0 for every row, so right padding cannot change a result, while leaving the mask out lets SDPA
use its fused causal kernels. Peak memory is dominated by the logits, about
max_tokens_per_batch x vocabulary x dtype bytes.

Threads: Spark starts Python workers with OMP_NUM_THREADS = spark.task.cpus (1 by default), so
on CPU executors torch runs one thread per task; raise spark.task.cpus to give each model more.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch
from pyspark.sql.functions import pandas_udf
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from udfs.lm_models import LoadedLM, get_cached_lm, resolve_model_path
from udfs.oom import run_halving_on_oom

LN2 = math.log(2.0)
DEFAULT_MAX_TOKENS_PER_BATCH = 16384
# PreSelect scored with window 1900 and stride 512 (METHODS.md §1); the default stride keeps
# that ratio for any window.
PRESELECT_WINDOW = 1900
PRESELECT_STRIDE = 512
# A row may pad up to this share of the batch width (so waste stays under it), or up to
# MIN_FREE_PADDING tokens: for short rows a few pads cost less than another forward call.
MAX_PADDING_FRACTION = 0.1
MIN_FREE_PADDING = 16
# Log-softmax over the vocabulary runs in fp32 in chunks of about this many floats.
_LOGSOFTMAX_CHUNK_FLOATS = 1 << 25

LM_LOSS_SCHEMA = StructType(
    [
        StructField("total_nll", DoubleType()),
        StructField("n_tokens", LongType()),
        StructField("n_chars", LongType()),
        StructField("n_bytes", LongType()),
        StructField("bpc", DoubleType()),
        StructField("bits_per_byte", DoubleType()),
        StructField("error", StringType()),
    ]
)


@dataclass(frozen=True)
class Window:
    """One forward row: s[start:end] of document `doc`, scoring targets s[first_target:end]."""

    doc: int
    start: int
    end: int
    first_target: int

    @property
    def length(self) -> int:
        return self.end - self.start


def plan_windows(seq_len: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first_target) for a sequence of `seq_len` tokens including the prefix."""
    if seq_len < 2:
        return []
    end = min(window, seq_len)
    spans = [(0, end, 1)]
    while end < seq_len:
        first_target = end
        end = min(end + stride, seq_len)
        spans.append((end - window, end, first_target))
    return spans


def pack_windows(windows: Sequence[Window], max_tokens_per_batch: int) -> list[list[Window]]:
    """Longest first, greedily: a batch takes rows while it stays within the token budget and
    each row's padding stays small (see MAX_PADDING_FRACTION).

    Equal-length windows that score a suffix (later windows) are grouped together, so their
    batches can skip computing logits for the context positions.
    """
    ordered = sorted(windows, key=lambda w: (-w.length, w.first_target == 1, w.doc, w.start))
    batches: list[list[Window]] = []
    for win in ordered:
        # Sorted by decreasing length: the batch's first row sets its padded width.
        if batches and _fits(batches[-1], win, max_tokens_per_batch):
            batches[-1].append(win)
        else:
            batches.append([win])
    return batches


def _fits(batch: list[Window], win: Window, max_tokens_per_batch: int) -> bool:
    width = batch[0].length
    padding = width - win.length
    within_budget = (len(batch) + 1) * width <= max_tokens_per_batch
    return within_budget and padding <= max(MIN_FREE_PADDING, MAX_PADDING_FRACTION * width)


def score_texts(
    texts: Sequence[str | None],
    lm: LoadedLM,
    *,
    window: int | None = None,
    stride: int | None = None,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
) -> pd.DataFrame:
    """Score each text independently; one output row per input, in input order.

    `window` defaults to the model's context length, capped at `max_tokens_per_batch`;
    `stride` to PreSelect's ratio of the window (`default_stride`).
    """
    window, stride = resolve_window(
        model_context_length(lm.model.config), lm.path, window, stride, max_tokens_per_batch
    )
    prefix_id = prefix_token_id(lm.tokenizer)
    n = len(texts)
    total_nll = np.zeros(n, dtype=np.float64)
    n_tokens: list[int | None] = [None] * n
    n_chars: list[int | None] = [None] * n
    n_bytes: list[int | None] = [None] * n
    errors: list[str | None] = [None] * n

    valid: list[int] = []
    for i, text in enumerate(texts):
        errors[i], n_chars[i], n_bytes[i] = _measure_text(text)
        if errors[i] is None:
            valid.append(i)

    encoded = (
        lm.tokenizer([texts[i] for i in valid], add_special_tokens=False, verbose=False)[
            "input_ids"
        ]
        if valid
        else []
    )
    sequences: dict[int, list[int]] = {}
    windows: list[Window] = []
    for i, ids in zip(valid, encoded, strict=True):
        if not ids:
            errors[i] = "text produced no tokens"
            continue
        sequences[i] = [prefix_id, *ids]
        n_tokens[i] = len(ids)
        windows.extend(Window(i, *span) for span in plan_windows(len(ids) + 1, window, stride))

    keep_suffix = _supports_logits_to_keep(lm.model)
    with torch.inference_mode():
        for batch in pack_windows(windows, max_tokens_per_batch):
            run_halving_on_oom(
                batch,
                lambda rows: _score_batch(
                    rows, sequences, lm, prefix_id, stride, keep_suffix, total_nll
                ),
                advice="lower the window (context) or use a larger GPU",
            )

    ok = np.array([e is None for e in errors], dtype=bool)
    nll = np.where(ok, total_nll, np.nan)
    # Rows that are ok have n_chars, n_bytes >= 1; the others are NaN already.
    chars = np.array([c if c else np.nan for c in n_chars], dtype=np.float64)
    size = np.array([b if b else np.nan for b in n_bytes], dtype=np.float64)
    return pd.DataFrame(
        {
            "total_nll": nll,
            "n_tokens": pd.array(n_tokens, dtype="Int64"),
            "n_chars": pd.array(n_chars, dtype="Int64"),
            "n_bytes": pd.array(n_bytes, dtype="Int64"),
            "bpc": nll / (LN2 * chars),
            "bits_per_byte": nll / (LN2 * size),
            "error": pd.array(errors, dtype="string"),
        }
    )


def _measure_text(text: object) -> tuple[str | None, int | None, int | None]:
    """(error reason or None, n_chars, n_bytes) before any tokenisation."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return "text is null", None, None
    if not isinstance(text, str):
        return f"text is {type(text).__name__}, expected str", None, None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return "text is not valid Unicode (unpaired surrogate)", len(text), None
    if not text:
        return "empty text", 0, 0
    return None, len(text), size


def _score_batch(
    batch: list[Window],
    sequences: dict[int, list[int]],
    lm: LoadedLM,
    pad_id: int,
    stride: int,
    keep_suffix: bool,
    total_nll: np.ndarray,
) -> None:
    width = batch[0].length
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    rows, positions, targets, docs = [], [], [], []
    for row, win in enumerate(batch):
        seq = sequences[win.doc]
        ids[row, : win.length] = torch.tensor(seq[win.start : win.end])
        # Logit at local position p predicts the token at p + 1.
        first = win.first_target - win.start - 1
        count = win.end - win.first_target
        rows.append(np.full(count, row))
        positions.append(np.arange(first, first + count))
        targets.append(seq[win.first_target : win.end])
        docs.append(np.full(count, win.doc))
    kwargs: dict[str, object] = {"use_cache": False}
    offset = 0
    if keep_suffix and all(w.first_target > 1 for w in batch):
        # Later windows score at most `stride` trailing targets, all rows being full-width.
        kwargs["logits_to_keep"] = stride + 1
        offset = width - (stride + 1)
    logits = lm.model(input_ids=ids.to(lm.device), **kwargs).logits
    row_idx = torch.from_numpy(np.concatenate(rows)).to(lm.device)
    pos_idx = torch.from_numpy(np.concatenate(positions) - offset).to(lm.device)
    target_ids = torch.tensor([t for ts in targets for t in ts], device=lm.device)
    chunk = max(1, _LOGSOFTMAX_CHUNK_FLOATS // logits.shape[-1])
    token_logprobs = []
    for lo in range(0, row_idx.numel(), chunk):
        picked = logits[row_idx[lo : lo + chunk], pos_idx[lo : lo + chunk]].float()
        logprobs = torch.log_softmax(picked, dim=-1)
        token_logprobs.append(logprobs.gather(1, target_ids[lo : lo + chunk, None]).squeeze(1))
    nll = -torch.cat(token_logprobs).double().cpu().numpy()
    np.add.at(total_nll, np.concatenate(docs), nll)


def default_stride(window: int) -> int:
    """PreSelect's stride for a window: 512 of 1900 (every scored token keeps >= ~73% of the
    window as context), so the default fits any model's context."""
    return max(1, window * PRESELECT_STRIDE // PRESELECT_WINDOW)


def resolve_window(
    context: int | None,
    where: str,
    window: int | None,
    stride: int | None,
    max_tokens_per_batch: int,
) -> tuple[int, int]:
    """Validate the window settings against a model context; returns (window, stride) in effect."""
    if not isinstance(max_tokens_per_batch, int) or max_tokens_per_batch < 2:
        raise ValueError(f"max_tokens_per_batch must be an int >= 2, got {max_tokens_per_batch!r}")
    if window is None:
        if context is None:
            raise ValueError(f"model {where} declares no context length; pass window=")
        window = min(context, max_tokens_per_batch)
    if not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an int >= 2, got {window!r}")
    if context is not None and window > context:
        raise ValueError(f"window={window} exceeds the context length {context} of {where}")
    if window > max_tokens_per_batch:
        raise ValueError(
            f"window={window} does not fit max_tokens_per_batch={max_tokens_per_batch}"
        )
    if stride is None:
        stride = default_stride(window)
    if not isinstance(stride, int) or not 1 <= stride < window:
        raise ValueError(
            f"stride must be an int in [1, window-1] = [1, {window - 1}], got {stride!r} "
            f"for {where} (PreSelect used window 1900, stride 512; leave it unset for "
            f"window * 512 // 1900 = {default_stride(window)})"
        )
    return window, stride


def model_context_length(config: object) -> int | None:
    """The context length a model config declares (attribute names differ by architecture)."""
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _config_visible_here(path: str) -> SimpleNamespace | None:
    """The model's config.json when this machine can read it (the driver usually can)."""
    try:
        config_file = resolve_model_path(path) / "config.json"
        return SimpleNamespace(**json.loads(config_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def prefix_token_id(tokenizer) -> int:
    """BOS, or EOS when the tokenizer has no BOS: the context-only first token."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError(
        f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has neither a BOS nor an EOS "
        "token; one is needed as the context-only prefix of every document"
    )


def _supports_logits_to_keep(model) -> bool:
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def make_lm_loss_udf(
    path: str,
    *,
    dtype: str = "auto",
    window: int | None = None,
    stride: int | None = None,
    max_tokens_per_batch: int = DEFAULT_MAX_TOKENS_PER_BATCH,
):
    """Iterator pandas UDF: text column -> struct<LM_LOSS_SCHEMA>, the model loaded once per worker.

    The device comes from the task's Spark GPU resource (CPU when none); see udfs.lm_models.
    Settings are checked here on the driver against the model's config.json when the driver can
    see it, so a bad window or stride fails before any task starts.
    """
    config = _config_visible_here(path)
    if config is not None:
        resolve_window(model_context_length(config), path, window, stride, max_tokens_per_batch)
    elif window is not None:
        resolve_window(None, path, window, stride, max_tokens_per_batch)

    @pandas_udf(LM_LOSS_SCHEMA)
    def lm_loss(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        lm = get_cached_lm(path, dtype=dtype)
        for texts in batches:
            yield score_texts(
                texts.tolist(),
                lm,
                window=window,
                stride=stride,
                max_tokens_per_batch=max_tokens_per_batch,
            )

    return lm_loss
