"""An offline demo corpus built from text every Python install has, so any fresh machine can run.

Good documents: module and function docstrings of the standard library (parsed with `ast`,
nothing imported). Mixed in so the buckets differ visibly: templated boilerplate (very
compressible), near-duplicates of good documents, and random-character junk (incompressible).
A handful of deliberately bad lines exercise every quarantine reason.
"""

from __future__ import annotations

import ast
import json
import os
import random
import string
import sysconfig
from pathlib import Path

from jobs.core.config import Config, DemoSettings

BOILERPLATE = [
    "Click here to subscribe to our newsletter! Best deals, best prices, best offers every day. ",
    "Cookie policy: we use cookies to improve your experience. Accept all cookies to continue. ",
    "Home | About | Contact | Privacy | Terms | Login | Register | Cart | Checkout | Help | ",
    "Buy now and save 50%! Limited time offer! Free shipping on all orders over $25! ",
]


def _docstrings(limit: int, seed: int) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py"))
    files += sorted(stdlib.glob("*/[!_]*.py"))
    texts: list[str] = []
    seen: set[str] = set()
    for path in files:
        if "test" in path.parts[-2:] or path.name.startswith("test"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        nodes = [tree] + [
            n for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        ]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= 200 and doc not in seen:
                seen.add(doc)
                texts.append(doc)
    random.Random(seed).shuffle(texts)
    return texts[:limit]


def _boilerplate(rng: random.Random, n: int) -> list[str]:
    out = []
    for i in range(n):
        block = rng.choice(BOILERPLATE)
        out.append(f"Page {i}. " + block * rng.randint(4, 20))
    return out


def _near_duplicates(rng: random.Random, originals: list[str], n: int) -> list[str]:
    out = []
    for i in range(n):
        words = rng.choice(originals).split()
        for _ in range(max(1, len(words) // 50)):
            words[rng.randrange(len(words))] = rng.choice(["the", "a", "data", "value"])
        out.append(" ".join(words) + f" (mirror {i})")
    return out


def _junk(rng: random.Random, n: int) -> list[str]:
    alphabet = string.ascii_letters + string.digits + string.punctuation + " "
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(300, 1500))) for _ in range(n)]


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


def build_demo_corpus(out_dir: str | os.PathLike, settings: DemoSettings | None = None) -> dict:
    """Write `n_files` JSONL files of {"id", "text", "source", "kind"} records; returns counts."""
    settings = settings or DemoSettings()
    rng = random.Random(settings.seed)
    good = _docstrings(settings.n_docstring_docs, settings.seed)
    kinds = (
        [("docstring", t) for t in good]
        + [("boilerplate", t) for t in _boilerplate(rng, settings.n_boilerplate_docs)]
        + [("near_duplicate", t) for t in _near_duplicates(rng, good or ["seed text"],
                                                           settings.n_near_duplicate_docs)]
        + [("junk", t) for t in _junk(rng, settings.n_junk_docs)]
    )
    rng.shuffle(kinds)
    lines = [
        json.dumps({"id": f"doc-{i:06d}", "text": text, "source": f"demo/{kind}", "kind": kind},
                   ensure_ascii=False).encode("utf-8")
        for i, (kind, text) in enumerate(kinds)
    ]
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
    counts: dict[str, int] = {"lines": len(lines), "bad_lines": len(_bad_lines()) + 1}
    for kind, _ in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def run(spark, cfg: Config):
    from jobs.core.base import JobReport

    out_dir = cfg.demo.corpus_dir
    if cfg.demo.build_if_missing and list(Path(out_dir).glob("corpus-*.jsonl")):
        return JobReport("demo_corpus", 0, 0, details={"corpus": f"{out_dir} (already built)"})
    counts = build_demo_corpus(out_dir, cfg.demo)
    # A generator: every record it makes is written, bad lines included.
    return JobReport(
        "demo_corpus", counts["lines"], counts["lines"], details={"corpus": out_dir, **counts},
    ).check_invariant()
