"""A PySpark daemon that loads fastText models once, before it forks the Python workers.

Spark starts one daemon per executor (`python -m <spark.python.daemon.module>`) and forks every
Python worker from it. Models loaded here are inherited copy-on-write: all workers of the
executor read one physical copy instead of each loading its own (800 MB per copy with the
recipe's 2M buckets), and the workers' model cache already holds them, so they load nothing.

The model paths come from the executor environment variable PRELOAD_ENV (os.pathsep-separated),
set by `jobs.core.session.preload_conf`. A model that cannot be loaded here is reported on stderr and
skipped: the workers then load it themselves and raise the usual clear error. Torch models are
not preloaded: a process that has run torch must not fork workers that run torch again.
"""

from __future__ import annotations

import os
import sys

PRELOAD_ENV = "SIFTLAKE_PRELOAD_FASTTEXT"


def preload_models() -> list[str]:
    from udfs.fasttext_score import load_fasttext_model

    loaded = []
    for path in filter(None, os.environ.get(PRELOAD_ENV, "").split(os.pathsep)):
        try:
            load_fasttext_model(path)
            loaded.append(path)
        except Exception as exc:  # the daemon must start whatever happens
            print(f"siftlake preload: skipped {path}: {exc}", file=sys.stderr)
    return loaded


if __name__ == "__main__":
    preload_models()
    from pyspark import daemon

    daemon.manager()
