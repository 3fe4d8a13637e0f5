"""Progress of long driver-side loops: a tqdm bar on a terminal, plain log lines elsewhere.

Logs (spark-submit, Databricks, CI) get at most about `LOG_LINES` lines per loop, so a loop of
10,000 steps does not flood them.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

log = logging.getLogger("siftlake")
T = TypeVar("T")
LOG_LINES = 10


def progress(
    items: Iterable[T], desc: str, total: int | None = None, *, leave: bool = False
) -> Iterator[T]:
    """Yield `items`; report how many are done, on a terminal as a bar, else as log lines."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, total=total, leave=leave, dynamic_ncols=True)
        return
    every = max(1, (total or LOG_LINES) // LOG_LINES)
    started = time.perf_counter()
    done = 0
    for done, item in enumerate(items, start=1):
        yield item
        if done % every == 0 or done == total:
            of = f"/{total}" if total else ""
            log.info("%s: %d%s done (%.1f s)", desc, done, of, time.perf_counter() - started)
