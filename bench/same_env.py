"""Run a bench's in-process baselines in the same environment as Spark's Python workers.

The session gives workers `jobs.core.session.WORKER_ENV` (glibc huge pages for big allocations).
glibc reads it only when a process starts, so a bench re-executes itself once with it set:
otherwise the UDF would get an allocator advantage that the raw baseline lacks.
"""

from __future__ import annotations

import os
import sys

from jobs.core.session import WORKER_ENV


def rerun_with_worker_env() -> None:
    missing = {k: v for k, v in WORKER_ENV.items() if os.environ.get(k) != v}
    if missing:
        os.environ.update(missing)
        os.execv(sys.executable, [sys.executable, *sys.argv])
