"""The pre-filter statistics written the plain way DataTrove's filters run: one object per filter,
each splitting the document again, one document per call, Python strings, sets and Counters.

It implements udfs/prefilter.py's definitions independently (no shared code): tests use it as an
oracle on generated documents, and bench/prefilter.py times `passes` as the per-document
baseline. Each filter yields its statistics one at a time in its check order, so `passes` stops
at the first failed check, as a DataTrove filter returns at its first failed rule.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator

STOP_WORDS = {"the", "be", "to", "of", "and", "that", "have", "with"}
BULLETS = tuple("•‣◦⁃∙●○▪▫■□►▸–-*")
TERMINAL = tuple(".!?\"'")
TRIM = string.punctuation + "“”‘’«»„…—–¡¿"
SENTENCE_END = re.compile(r"[.!?]+[\"'”’)\]]*$")

Statistics = Iterator[tuple[str, object]]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.split("\n") if line.strip()]


def _repeats(items: list[str]) -> tuple[int, int]:
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count, chars = count + 1, chars + len(item)
        seen.add(item)
    return count, chars


def _share(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


class GopherQuality:
    family = "gopher_quality"

    def statistics(self, text: str) -> Statistics:
        words = text.split()
        n = len(words)
        yield "n_words", n
        yield "mean_word_length", _share(sum(len(w) for w in words), n)
        yield "hash_word_ratio", _share(text.count("#"), n)
        yield "ellipsis_word_ratio", _share(text.count("...") + text.count("…"), n)
        lines = _lines(text)
        yield "bullet_line_share", _share(
            sum(line.startswith(BULLETS) for line in lines), len(lines))
        yield "ellipsis_line_share", _share(
            sum(line.endswith(("...", "…")) for line in lines), len(lines))
        yield "alpha_word_share", _share(sum(any(c.isalpha() for c in w) for w in words), n)
        yield "stop_word_count", sum(w.strip(TRIM).lower() in STOP_WORDS for w in words)


class GopherRepetition:
    family = "gopher_repetition"

    def statistics(self, text: str) -> Statistics:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        dup_paragraphs, dup_paragraph_chars = _repeats(paragraphs)
        yield "dup_paragraph_share", _share(dup_paragraphs, len(paragraphs))
        yield "dup_paragraph_char_share", dup_paragraph_chars / len(text)
        lines = _lines(text)
        dup_lines, dup_line_chars = _repeats(lines)
        yield "dup_line_share", _share(dup_lines, len(lines))
        yield "dup_line_char_share", dup_line_chars / len(text)
        words = text.split()
        word_chars = sum(len(w) for w in words)
        for n in (2, 3, 4):
            yield f"top_{n}gram_char_share", _share(self._top(words, n), word_chars)
        for n in range(5, 11):
            yield f"dup_{n}gram_char_share", _share(self._duplicated(words, n), word_chars)

    @staticmethod
    def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
        return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]

    def _top(self, words: list[str], n: int) -> int:
        grams = self._ngrams(words, n)
        counts = Counter(grams)
        if not counts or max(counts.values()) < 2:
            return 0
        first: dict = {}
        for i, gram in enumerate(grams):
            first.setdefault(gram, i)
        top = max(counts, key=lambda g: (counts[g], sum(map(len, g)), -first[g]))
        covered = set()
        for i, gram in enumerate(grams):
            if gram == top:
                covered.update(range(i, i + n))
        return sum(len(words[i]) for i in covered)

    def _duplicated(self, words: list[str], n: int) -> int:
        grams = self._ngrams(words, n)
        counts = Counter(grams)
        covered = set()
        for i, gram in enumerate(grams):
            if counts[gram] > 1:
                covered.update(range(i, i + n))
        return sum(len(words[i]) for i in covered)


class FineWebQuality:
    family = "fineweb"

    def statistics(self, text: str) -> Statistics:
        lines = _lines(text)
        yield "terminal_punct_line_share", _share(
            sum(line.endswith(TERMINAL) for line in lines), len(lines))
        yield "short_line_share", _share(sum(len(line) <= 30 for line in lines), len(lines))
        yield "dup_line_char_share_no_newlines", _share(
            _repeats(lines)[1], len(text.replace("\n", "")))
        yield "newlines_per_word", _share(text.count("\n"), len(text.split()))


class C4Quality:
    family = "c4"

    def statistics(self, text: str) -> Statistics:
        lines = _lines(text)
        yield "no_terminal_punct_line_share", _share(
            sum(not line.endswith(TERMINAL) or line.endswith(("...", "…")) for line in lines),
            len(lines))
        yield "few_word_line_share", _share(
            sum(len(line.split()) < 3 for line in lines), len(lines))
        words = text.split()
        ends = sum(bool(SENTENCE_END.search(w)) for w in words)
        yield "n_sentences", ends + (bool(words) and not SENTENCE_END.search(words[-1]))
        lower = text.lower()
        yield "has_lorem_ipsum", "lorem ipsum" in lower
        yield "has_curly_brace", "{" in text or "}" in text
        yield "has_javascript", "javascript" in lower


class ControlChars:
    family = "control_chars"

    def __init__(self):
        # Built once per filter object, as a DataTrove filter's __init__ would: a class of ranges.
        wanted = {"Cc", "Cf", "Co", "Cn"}
        ranges, start = [], None
        for code in range(0x110001):
            inside = code < 0x110000 and not 0xD800 <= code <= 0xDFFF and chr(
                code) not in "\n\t\r" and unicodedata.category(chr(code)) in wanted
            if inside and start is None:
                start = code
            elif not inside and start is not None:
                ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(code - 1))}")
                start = None
        self.control = re.compile("[" + "".join(ranges) + "]")

    def statistics(self, text: str) -> Statistics:
        yield "control_char_share", len(self.control.findall(text)) / len(text)


@functools.cache
def filters() -> tuple:
    return GopherQuality(), GopherRepetition(), FineWebQuality(), C4Quality(), ControlChars()


def reference_statistics(text: str | None) -> dict | None:
    """Every statistic of one document (None for null or empty text), filter by filter."""
    if not text:
        return None
    out: dict = {"n_lines": len(_lines(text))}
    for f in filters():
        out.update(f.statistics(text))
    return out


def passes(text: str, fails: dict[str, Callable[[object], bool]], families) -> bool:
    """Whether a document passes every check in `fails` (statistic -> failed?) of the filters of
    `families`, stopping at the first failure."""
    for f in filters():
        if f.family not in families:
            continue
        for name, value in f.statistics(text):
            check = fails.get(name)
            if check is not None and check(value):
                return False
    return True
