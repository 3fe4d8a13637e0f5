"""An offline demo corpus built from text every Python install has, so any fresh machine can run.

The pool mixes clean text of several kinds (`jobs/demo/clean.py`: stdlib docstrings, the
language reference, IDLE's manual, source comments, the license) with the junk real crawls hold
(`jobs/demo/junk.py`): repeated boilerplate, near-duplicates of clean documents (each somewhere
after the page it copies) and `n_junk_docs` spread over keyword spam, navigation menus, tables
of numbers, random characters, lorem ipsum, base64/hex blobs and templated product pages. A
handful of deliberately bad lines exercise every quarantine reason. Each record names its kind
in `source` and `kind` (for reports and benches; no job selects on them).

The target set (`demo.target_dir/target.jsonl`) is `n_target_docs` clean documents kept out of
the pool: the trusted text `preselect.target_paths` points at (PreSelect's benchmark of the demo
reference models, Grad-Mimic's reference model).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from jobs.core.config import Config, DemoSettings
from jobs.demo.clean import CLEAN_KINDS, clean_texts
from jobs.demo.junk import JUNK_GENERATORS, junk_documents, mirrors

TARGET_FILE = "target.jsonl"
PROSE_KINDS = tuple(k for k in CLEAN_KINDS if k != "docstring")
SPREAD_JUNK_KINDS = tuple(k for k in JUNK_GENERATORS if k != "boilerplate")


def _round_robin(lists: list[list[str]], start: list[int], n: int) -> list[tuple[int, str]]:
    """Up to n (list index, text) pairs taken in turn from each list from its `start` on."""
    out, positions = [], list(start)
    while len(out) < n and any(p < len(texts) for p, texts in zip(positions, lists, strict=True)):
        for index, texts in enumerate(lists):
            if positions[index] < len(texts) and len(out) < n:
                out.append((index, texts[positions[index]]))
                positions[index] += 1
    return out


def demo_records(settings: DemoSettings) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(pool, target): (kind, text) pairs; the target's texts never occur in the pool."""
    rng = random.Random(settings.seed)
    clean = clean_texts(settings.seed)
    docstrings = clean["docstring"][: settings.n_docstring_docs]
    prose_lists = [clean[k] for k in PROSE_KINDS]
    prose = _round_robin(prose_lists, [0] * len(prose_lists), settings.n_prose_docs)
    pool = [("docstring", t) for t in docstrings] + [(PROSE_KINDS[i], t) for i, t in prose]
    used = [sum(1 for i, _ in prose if i == k) for k in range(len(PROSE_KINDS))]
    # The target takes clean texts the pool did not: the docstrings after the pool's, then prose.
    lists = [clean["docstring"], *prose_lists]
    target_kinds = ("docstring", *PROSE_KINDS)
    target = [(target_kinds[i], t)
              for i, t in _round_robin(lists, [len(docstrings), *used], settings.n_target_docs)]
    originals = [t for _, t in pool] or ["seed text"]
    per_kind, extra = divmod(settings.n_junk_docs, len(SPREAD_JUNK_KINDS))
    counts = {"boilerplate": settings.n_boilerplate_docs} | {
        kind: per_kind + (i < extra) for i, kind in enumerate(SPREAD_JUNK_KINDS)}
    pool += junk_documents(rng, counts)
    copies = mirrors(rng, originals, settings.n_near_duplicate_docs)
    order = list(range(len(pool)))
    rng.shuffle(order)
    place = {index: rank for rank, index in enumerate(order)}  # originals are pool[:n]
    # A mirror lands somewhere after the page it copies, as a crawl meets a copy later.
    keyed = [(float(rank), pool[index]) for rank, index in enumerate(order)] + [
        (rng.uniform(place.get(source, -1) + 0.5, len(order) + 0.5), ("near_duplicate", text))
        for source, text in copies
    ]
    keyed.sort(key=lambda pair: pair[0])
    return [record for _, record in keyed], target


def _bad_lines() -> list[bytes]:
    """One or more lines per quarantine reason ingest knows."""
    return [
        b'{"id": "bad-json", "text": "unterminated',
        json.dumps({"id": "bad-missing", "title": "no text field"}).encode(),
        json.dumps({"id": "bad-null", "text": None}).encode(),
        json.dumps({"id": "bad-empty", "text": "   "}).encode(),
        json.dumps({"id": "bad-type", "text": 42}).encode(),
        b'{"id": "bad-utf8", "text": "caf\xc3\x28 au lait"}',
        json.dumps({"text": "a document without an id"}).encode(),
        json.dumps({"id": "bad-large", "text": "x" * 1_100_000}).encode(),
    ]


def _record(doc_id: str, kind: str, text: str) -> bytes:
    return json.dumps({"id": doc_id, "text": text, "source": f"demo/{kind}", "kind": kind},
                      ensure_ascii=False).encode("utf-8")


def write_target(path: Path, target: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for i, (kind, text) in enumerate(target):
            handle.write(_record(f"target-{i:06d}", kind, text) + b"\n")


def build_demo_corpus(out_dir: str | os.PathLike, settings: DemoSettings | None = None) -> dict:
    """Write `n_files` JSONL pool files and the target set; returns counts per kind."""
    settings = settings or DemoSettings()
    pool, target = demo_records(settings)
    lines = [_record(f"doc-{i:06d}", kind, text) for i, (kind, text) in enumerate(pool)]
    # A repeated id: the second copy must be quarantined as a duplicate.
    lines.append(json.dumps({"id": "doc-000000", "text": "a different text, same id"}).encode())
    lines += _bad_lines()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("corpus-*.jsonl"):
        old.unlink()
    for f in range(settings.n_files):
        with open(out / f"corpus-{f:04d}.jsonl", "wb") as handle:
            for line in lines[f :: settings.n_files]:
                handle.write(line + b"\n")
    write_target(Path(settings.target_dir) / TARGET_FILE, target)
    counts: dict[str, int] = {"lines": len(lines), "bad_lines": len(_bad_lines()) + 1,
                              "target": len(target)}
    for kind, _ in pool:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def run(spark, cfg: Config):
    from jobs.core.base import JobReport

    out_dir = cfg.demo.corpus_dir
    target = Path(cfg.demo.target_dir) / TARGET_FILE
    if cfg.demo.build_if_missing and list(Path(out_dir).glob("corpus-*.jsonl")) and target.exists():
        return JobReport("demo_corpus", 0, 0, details={"corpus": f"{out_dir} (already built)"})
    counts = build_demo_corpus(out_dir, cfg.demo)
    # A generator: every record it makes is written, bad lines included.
    return JobReport(
        "demo_corpus", counts["lines"], counts["lines"],
        details={"corpus": out_dir, "target set": str(target), **counts},
    ).check_invariant()


def run_target(spark, cfg: Config):
    """Only the target set (trusted clean text kept out of the demo pool), for chains that
    ingest a corpus of their own."""
    from jobs.core.base import JobReport

    target = Path(cfg.demo.target_dir) / TARGET_FILE
    if cfg.demo.build_if_missing and target.exists():
        return JobReport("demo_target", 0, 0, details={"target set": f"{target} (already built)"})
    _, records = demo_records(cfg.demo)
    write_target(target, records)
    return JobReport("demo_target", 0, 0, details={"target set": str(target),
                                                   "documents": len(records)})
