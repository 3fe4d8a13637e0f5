"""Clean text of several kinds that every Python install ships, read without importing modules.

Kinds (`CLEAN_KINDS`): `docstring` (module, class and function docstrings, parsed with `ast`),
`reference` (the language reference behind `help()` topics, `pydoc_data.topics`), `manual` (IDLE's
help page with its HTML tags removed, and its README/NEWS text files), `code_comment` (runs of `#`
comment lines in the stdlib sources, joined into prose) and `license` (Python's LICENSE.txt).
Long texts are cut at paragraph breaks into documents of at most `MAX_CHARS` characters.
"""

from __future__ import annotations

import ast
import functools
import html
import random
import re
import sysconfig
from pathlib import Path

MIN_CHARS = 200
MAX_CHARS = 2500
CLEAN_KINDS = ("docstring", "reference", "manual", "code_comment", "license")
MANUAL_FILES = ("idlelib/README.txt", "idlelib/NEWS.txt", "idlelib/HISTORY.txt",
                "idlelib/TODO.txt", "idlelib/extend.txt")


def _stdlib() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _sources() -> list[Path]:
    stdlib = _stdlib()
    files = sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/[!_]*.py"))
    return [p for p in files if "test" not in p.parts[-2:] and not p.name.startswith("test")]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def chunks(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Paragraphs (split on blank lines) packed in order into pieces of at most `max_chars`."""
    out, current = [], ""
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not paragraph:
            continue
        if current and len(current) + 2 + len(paragraph) > max_chars:
            out.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph[:max_chars]
    if current:
        out.append(current)
    return [c for c in out if len(c) >= MIN_CHARS]


def docstrings() -> list[str]:
    texts = []
    for path in _sources():
        try:
            tree = ast.parse(_read(path))
        except SyntaxError:
            continue
        nodes = [tree] + [n for n in ast.walk(tree)
                          if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        texts += [doc for node in nodes
                  if (doc := ast.get_docstring(node)) and len(doc) >= MIN_CHARS]
    return texts


def reference() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return []
    return [piece for name in sorted(topics) for piece in chunks(topics[name])]


def manual() -> list[str]:
    stdlib = _stdlib()
    page = _read(stdlib / "idlelib" / "help.html")
    body = page.split('<div class="body"', 1)[-1]
    body = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)
    body = re.sub(r"</(p|h[1-6]|li|dt|dd|pre|div)>", "\n\n", body)
    text = html.unescape(re.sub(r"<[^>]+>", "", body))
    texts = chunks(re.sub(r"[ \t]+", " ", text))
    for name in MANUAL_FILES:
        texts += chunks(_read(stdlib / name))
    return texts


def code_comments() -> list[str]:
    texts = []
    for path in _sources():
        run: list[str] = []
        for line in _read(path).splitlines() + [""]:
            stripped = line.strip()
            if stripped.startswith("#") and not stripped.startswith("#!"):
                run.append(stripped.lstrip("#").strip())
                continue
            joined = " ".join(part for part in run if part)
            if len(joined) >= MIN_CHARS and len(joined.split()) >= 40:
                texts.append(joined[:MAX_CHARS])
            run = []
    return texts


def license_text() -> list[str]:
    return chunks(_read(_stdlib() / "LICENSE.txt"))


SOURCES = {"docstring": docstrings, "reference": reference, "manual": manual,
           "code_comment": code_comments, "license": license_text}


@functools.cache
def _deduplicated() -> dict[str, tuple[str, ...]]:
    # Parsing the stdlib takes seconds: once per process.
    seen: set[str] = set()
    out = {}
    for kind in CLEAN_KINDS:
        texts = []
        for text in SOURCES[kind]():
            if text not in seen:
                seen.add(text)
                texts.append(text)
        out[kind] = tuple(texts)
    return out


def clean_texts(seed: int) -> dict[str, list[str]]:
    """Every clean text by kind, each kind deduplicated (across kinds too) and seed-shuffled."""
    out = {}
    for kind, texts in _deduplicated().items():
        shuffled = list(texts)
        random.Random(f"{seed}/{kind}").shuffle(shuffled)
        out[kind] = shuffled
    return out
