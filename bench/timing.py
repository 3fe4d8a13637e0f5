"""Wall-clock timing for benches, waiting for queued GPU work on both ends."""

from __future__ import annotations

import time

import torch


def timed(fn) -> tuple[float, object]:
    """(seconds, fn()) with CUDA synchronised before and after, so queued kernels count."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result
