"""Out-of-memory back-off for batched accelerator work: split the batch, retry, never drop rows.

Results of the LM kernels do not depend on how documents are batched (tested), so a batch that
does not fit is scored as two halves, recursively, down to a single item. Only when one item
alone does not fit is the error raised, naming what to lower.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

logger = logging.getLogger(__name__)
T = TypeVar("T")


def run_halving_on_oom(items: Sequence[T], score: Callable[[Sequence[T]], None], advice: str) -> int:
    """Call `score(items)`; on torch.OutOfMemoryError call it on each half instead, recursively.

    `score` must have no effect when it raises (write results only after the forward pass).
    Returns how many splits were needed (0 when the batch fit).
    """
    try:
        score(items)
        return 0
    except torch.OutOfMemoryError as exc:
        _release_cached_memory()
        if len(items) == 1:
            raise torch.OutOfMemoryError(
                f"one item alone does not fit in accelerator memory: {advice} ({exc})"
            ) from exc
    middle = len(items) // 2
    logger.warning("out of memory on a batch of %d; retrying as %d + %d", len(items), middle,
                   len(items) - middle)
    return 1 + run_halving_on_oom(items[:middle], score, advice) + run_halving_on_oom(
        items[middle:], score, advice)


def _release_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
