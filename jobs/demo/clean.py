"""Clean text of several kinds that every Python install ships, read without importing modules.

Kinds (`CLEAN_KINDS`): `docstring` (a module's documentation pages as a docs site renders them:
the module docstring with its functions, and a page per class with its methods, each docstring
under its signature; parsed with `ast`), `reference` (the language reference behind `help()`
topics, `pydoc_data.topics`), `manual` (IDLE's help page with its HTML tags removed, and its README/NEWS text files), `code_comment` (a
source file's `#` comment blocks, each block one paragraph) and `license` (Python's LICENSE.txt).
Every kind is page-sized, as crawled documentation is: long texts are cut at section or
paragraph breaks into documents of at most `MAX_CHARS` characters, none under `MIN_CHARS`.
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


def read_source(path: Path) -> str:
    """A source file's text; empty when it cannot be read as UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def pack(pieces: list[str], max_chars: int = MAX_CHARS) -> list[str]:
    """Pieces (sections, paragraphs) joined in order by blank lines into documents of at most
    `max_chars`; a piece longer than that is cut at its own paragraph breaks."""
    out, current = [], ""
    for piece in (p.strip() for p in pieces):
        if not piece:
            continue
        if len(piece) > max_chars and "\n\n" in piece:
            parts = pack(re.split(r"\n\s*\n", piece), max_chars)
        else:
            parts = [piece[:max_chars]]
        for part in parts:
            if current and len(current) + 2 + len(part) > max_chars:
                out.append(current)
                current = ""
            current = f"{current}\n\n{part}" if current else part
    if current:
        out.append(current)
    return [c for c in out if len(c) >= MIN_CHARS]


def chunks(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Paragraphs (split on blank lines) packed in order into pieces of at most `max_chars`."""
    return pack(re.split(r"\n\s*\n", text), max_chars)


def _signature(node: ast.AST) -> str:
    if isinstance(node, ast.ClassDef):
        bases = ", ".join(ast.unparse(b) for b in node.bases)
        return f"class {node.name}({bases})" if bases else f"class {node.name}"
    return f"{node.name}({ast.unparse(node.args)})"


def _documented(nodes) -> list[str]:
    """Signature + docstring of each documented class or function, each docstring once (a page
    documents an inherited or copied docstring where it first appears)."""
    seen, sections = set(), []
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc and len(doc.split()) >= 5 and doc not in seen:
                seen.add(doc)
                sections.append(f"{_signature(node)}\n{doc}")
    return sections


def module_page(module: str, source: str) -> list[str]:
    """A module's documentation cut into pages as a docs site does: the module docstring with
    its functions, then one page per class (the class and its methods)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    doc = ast.get_docstring(tree)
    functions = [node for node in tree.body if not isinstance(node, ast.ClassDef)]
    pages = pack([f"{module}\n\n{doc}" if doc else module, *_documented(functions)])
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            pages += pack([f"{module}.{node.name}", *_documented([node, *node.body])])
    return pages


def docstrings() -> list[str]:
    stdlib = _stdlib()
    return [page for path in _sources()
            for page in module_page(".".join(path.relative_to(stdlib).with_suffix("").parts),
                                    read_source(path))]


def reference() -> list[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return []
    return [piece for name in sorted(topics) for piece in chunks(topics[name])]


def manual() -> list[str]:
    stdlib = _stdlib()
    page = read_source(stdlib / "idlelib" / "help.html")
    body = page.split('<div class="body"', 1)[-1]
    body = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)
    body = re.sub(r"</(p|h[1-6]|li|dt|dd|pre|div)>", "\n\n", body)
    text = html.unescape(re.sub(r"<[^>]+>", "", body))
    texts = chunks(re.sub(r"[ \t]+", " ", text))
    for name in MANUAL_FILES:
        texts += chunks(read_source(stdlib / name))
    return texts


def code_comments() -> list[str]:
    texts = []
    for path in _sources():
        blocks, run = [], []
        for line in read_source(path).splitlines() + [""]:
            stripped = line.strip()
            if stripped.startswith("#") and not stripped.startswith("#!"):
                run.append(stripped.lstrip("#").strip())
                continue
            block = " ".join(part for part in run if part)
            if len(block.split()) >= 8:  # not a one-line remark or commented-out code
                blocks.append(block)
            run = []
        texts += pack(blocks)
    return texts


def license_text() -> list[str]:
    return chunks(read_source(_stdlib() / "LICENSE.txt"))


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
