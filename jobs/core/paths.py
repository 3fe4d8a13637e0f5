"""Relative paths of a config made absolute against one folder.

A notebook's Python process and its Spark JVM need not share a working directory (Databricks:
the notebook's folder vs /databricks/driver; a test: tmp vs where pytest started). Spark resolves
a relative path against the JVM's, Python (delta-rs commits, model files, CSVs) against its own,
so a relative `lake.root` or `ingest.paths` would split one lake over two folders. Under
`siftlake` and spark-submit both share the working directory and paths stay as written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jobs.core.config import Config

# Every config key that names a file or folder; `*` is each item of a list or each map value.
PATH_KEYS: tuple[str, ...] = (
    "spark.preload_fasttext.*",
    "lake.root",
    "lake.artifacts",
    "demo.corpus_dir",
    "demo.target_dir",
    "ingest.paths.*",
    "score.fasttext_model",
    "demo_models.out_dir",
    "lm_loss.models.*.path",
    "lm_loss.models_manifest",
    "preselect.model_dir",
    "preselect.target_paths.*",
    "mixture.observations",
    "mimic.reference_path",
    "mimic.checkpoints.*",
)


def absolute(path: str, base: Path) -> str:
    """`path` joined to `base` when it is a relative local path; URIs and absolute paths as is."""
    if urlparse(path).scheme not in ("", "file") or os.path.isabs(path):
        return path
    return str(base / path)


def with_absolute_paths(cfg: Config, base: str | os.PathLike | None = None) -> Config:
    """A copy of `cfg` whose relative PATH_KEYS are resolved against `base` (default: cwd)."""
    root = Path(base or os.getcwd()).resolve()
    data = cfg.model_dump()
    for key in PATH_KEYS:
        _resolve(data, key.split("."), root)
    resolved = Config.model_validate(data)
    resolved.source = cfg.source
    return resolved


def _resolve(node: Any, parts: list[str], root: Path) -> Any:
    if not parts:
        return absolute(node, root) if isinstance(node, str) else node
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(node, list):
            node[:] = [_resolve(item, rest, root) for item in node]
        elif isinstance(node, dict):
            for name in node:
                node[name] = _resolve(node[name], rest, root)
        return node
    if isinstance(node, dict) and node.get(head) is not None:
        node[head] = _resolve(node[head], rest, root)
    return node
