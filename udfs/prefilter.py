"""Pre-filter statistics (METHODS.md §6): Gopher quality and repetition, FineWeb, C4, controls.

`prefilter_statistics` turns an Arrow string array into a struct array of statistics, one row per
document. Thresholds are not applied here: the job compares the stored statistics with config
(jobs/prefilter_rules.py), so re-thresholding never recomputes them.

One pass per batch, vectorised over all its documents (no Python loop per document or word):
lines are split once (`\\n`); words are split once, from the lines, so each word knows its line
and document; paragraphs are split once; every n-gram statistic comes from the one array of word
ids (`dictionary_encode`), hashed to 64-bit n-gram keys whose repeats are counted per document.

Definitions (METHODS.md §6 where it speaks; otherwise DataTrove's GopherQualityFilter,
GopherRepetitionFilter, FineWebQualityFilter and C4QualityFilter, with the choices noted):
- words: whitespace-separated tokens (Python's `str.split()`), punctuation attached. DataTrove
  tokenises with a word tokenizer and drops punctuation-only tokens from the word count; here
  every token counts, as METHODS says. Mean word length is over these tokens.
- lines: pieces of `text.split("\\n")` with surrounding whitespace stripped; empty ones are
  ignored (so CRLF text and indentation change nothing). Line lengths and line comparisons use
  the stripped line. Paragraphs: pieces between blank lines (`\\n\\s*\\n`), stripped, empty ones
  ignored; a paragraph's characters are its stripped length.
- stop words: tokens equal to one of {the, be, to, of, and, that, have, with} once lower-cased
  and stripped of surrounding punctuation (DataTrove compares case-sensitively: a sentence's
  first "The" would not count there); every occurrence counts.
- duplicate lines / paragraphs: those equal to an earlier one of the same document; their
  characters ÷ the document's characters (FineWeb's variant: ÷ characters other than `\\n`).
- top n-gram character share (n = 2, 3, 4): the most frequent word n-gram (ties: the one with
  more characters, then the first seen); the characters of the words its occurrences cover,
  each word once, ÷ the characters of all words. An n-gram seen only once is not a repetition:
  the share is 0 then (DataTrove would count its one occurrence).
- duplicate n-gram character share (n = 5..10): characters of the words covered by any n-gram
  that occurs more than once, each word counted once, ÷ characters of all words (the Gopher
  paper's definition; DataTrove's greedy variant skips the first occurrence).
- line-end statistics: a line ends in terminal punctuation when its last character is one of
  `. ! ? " '`; C4's complement also counts lines ending in an ellipsis as unterminated, as
  DataTrove's C4 filter does. Bullet lines start with one of `BULLETS`.
- sentences (C4): words ending in a run of `. ! ?` (optionally closed by quotes or brackets),
  plus one when the last word does not; DataTrove uses an NLTK sentence splitter, which this
  approximates without a model (abbreviations such as "e.g." count as sentence ends).
- control characters: Unicode categories Cc, Cf, Co, Cn (Cs cannot occur in UTF-8) except
  `\\n \\t \\r`, by the Unicode tables of Arrow's RE2 (newer than Python 3.11's
  `unicodedata` 14.0: code points assigned since then count as assigned). No paper publishes
  this rule; its default threshold (`control_chars.max_control_char_share`: 0.01 of the
  characters) is siftlake's: mis-decoded or binary data shows several percent of such
  characters, while edited prose carries at most a stray zero-width space, soft hyphen or byte
  order mark (one per 1,000 characters is already a lot), so 1% separates the two with margin.

Null or empty text gives null statistics. Whitespace-only text has 0 words and lines; shares
whose denominator is 0 are null.
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from udfs.batch_udf import arrow_or_pandas_udf

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
BULLETS = "•‣◦⁃∙●○▪▫■□►▸–-*"
TERMINAL_PUNCTUATION = ".!?\"'"
SHORT_LINE_CHARS = 30  # FineWeb: a line of <= 30 characters is short
C4_MIN_LINE_WORDS = 3  # C4: lines of fewer words are dropped
TOP_NGRAM_SIZES = (2, 3, 4)
DUP_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)
_TRIM = string.punctuation + "“”‘’«»„…—–¡¿"
_CLOSERS = "\"'”’)\\]"
_SENTENCE_END = f"[.!?]+[{_CLOSERS}]*$"  # a word that ends a sentence

_LONG, _DOUBLE, _BOOL = pa.int64(), pa.float64(), pa.bool_()
STATISTICS = pa.struct(
    [
        ("n_words", _LONG),
        ("n_lines", _LONG),
        ("mean_word_length", _DOUBLE),
        ("hash_word_ratio", _DOUBLE),
        ("ellipsis_word_ratio", _DOUBLE),
        ("bullet_line_share", _DOUBLE),
        ("ellipsis_line_share", _DOUBLE),
        ("alpha_word_share", _DOUBLE),
        ("stop_word_count", _LONG),
        ("dup_line_share", _DOUBLE),
        ("dup_paragraph_share", _DOUBLE),
        ("dup_line_char_share", _DOUBLE),
        ("dup_paragraph_char_share", _DOUBLE),
        *[(f"top_{n}gram_char_share", _DOUBLE) for n in TOP_NGRAM_SIZES],
        *[(f"dup_{n}gram_char_share", _DOUBLE) for n in DUP_NGRAM_SIZES],
        ("terminal_punct_line_share", _DOUBLE),
        ("short_line_share", _DOUBLE),
        ("dup_line_char_share_no_newlines", _DOUBLE),
        ("newlines_per_word", _DOUBLE),
        ("control_char_share", _DOUBLE),
        ("no_terminal_punct_line_share", _DOUBLE),
        ("few_word_line_share", _DOUBLE),
        ("n_sentences", _LONG),
        ("has_lorem_ipsum", _BOOL),
        ("has_curly_brace", _BOOL),
        ("has_javascript", _BOOL),
    ]
)
STATISTIC_NAMES = tuple(field.name for field in STATISTICS)
_SPARK_TYPES = {_LONG: "bigint", _DOUBLE: "double", _BOOL: "boolean"}
SPARK_SCHEMA = "struct<" + ",".join(f"{f.name}:{_SPARK_TYPES[f.type]}" for f in STATISTICS) + ">"


# Cc/Cf/Co (RE2's \pC, minus \n \t \r), or in no assigned category at all (Cn): RE2 has no \p{Cn}.
CONTROL_CHARS = r"[^\P{C}\n\t\r]|[^\pL\pM\pN\pP\pS\pZ\pC]"


def _numpy(array: pa.Array | pa.ChunkedArray, dtype=None) -> np.ndarray:
    out = array.to_numpy(zero_copy_only=False)
    return out if dtype is None else out.astype(dtype, copy=False)


def _per_doc(docs: np.ndarray, n_docs: int, weights=None) -> np.ndarray:
    return np.bincount(docs, weights=weights, minlength=n_docs).astype(np.float64)


def _matches(values: pa.Array, pattern: str) -> np.ndarray:
    return _numpy(pc.match_substring_regex(values, pattern), bool)


def _repeats(values: pa.Array, docs: np.ndarray) -> np.ndarray:
    """True where a value equals an earlier value of the same document."""
    if len(values) == 0:
        return np.zeros(0, bool)
    ids = _numpy(pc.dictionary_encode(values).indices, np.int64)
    codes, _ = pd.factorize(docs.astype(np.int64) * (int(ids.max()) + 1) + ids)
    # factorize numbers values in order of first appearance: a first sighting raises the maximum.
    highest = np.maximum.accumulate(codes)
    first = np.ones(len(codes), bool)
    first[1:] = highest[1:] > highest[:-1]
    return ~first


_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN, _POLY = np.uint64(0x9E3779B97F4A7C15), np.uint64(0x100000001B3)


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads small ints over 64 bits (wrapping uint64 arithmetic)."""
    z = values.astype(np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def _ngram_covered_chars(word_ids, word_docs, word_lengths, n_words, n_docs) -> dict:
    """Covered characters per document: the top n-gram's (n = 2..4) and repeated n-grams' (5..10).

    N-grams are 64-bit polynomial hashes of mixed word ids, extended by one word per n, with the
    document mixed in (repeats count within a document). An n-gram can repeat only where the
    (n-1)-grams at its start and at the next word both repeat, so past n = 2 only those
    positions are counted: on ordinary text the candidates shrink fast with n. Two different
    n-grams of one document share a key with a chance of about 2^-64 per pair: never in practice.
    """
    out = {_ngram_field(n): np.zeros(n_docs) for n in TOP_NGRAM_SIZES + DUP_NGRAM_SIZES}
    total = len(word_ids)
    token = mix64(word_ids)
    keys = mix64(word_docs) * _POLY + token
    cumulative = np.concatenate([[0.0], np.cumsum(word_lengths)])
    repeated_before = None
    for n in range(2, max(DUP_NGRAM_SIZES) + 1):
        starts = total - n + 1
        if starts <= 0:
            break
        keys = keys[:starts] * _POLY + token[n - 1 :]
        if repeated_before is None:  # n = 2: every start whose n-gram stays in its document
            doc_ends = np.cumsum(n_words).astype(np.int64)[word_docs[:starts]]
            positions = np.flatnonzero(np.arange(starts) + n <= doc_ends)
        else:
            positions = np.flatnonzero(repeated_before[:starts] & repeated_before[1 : starts + 1])
        codes, _ = pd.factorize(keys[positions])
        counts = np.bincount(codes)[codes] if len(codes) else codes
        hits, hit_codes, hit_counts = (a[counts >= 2] for a in (positions, codes, counts))
        if not len(hits):
            break  # no repeated n-gram: no longer one repeats either
        repeated_before = np.zeros(starts, bool)
        repeated_before[hits] = True
        if n in TOP_NGRAM_SIZES:
            hits = _top_ngram_starts(hits, hit_codes, hit_counts, n, word_docs, cumulative)
        out[_ngram_field(n)] = _union_chars(hits, n, word_docs, cumulative, n_docs)
    return out


def _ngram_field(n: int) -> str:
    return f"top_{n}gram_char_share" if n in TOP_NGRAM_SIZES else f"dup_{n}gram_char_share"


def _union_chars(starts: np.ndarray, n: int, word_docs, cumulative, n_docs) -> np.ndarray:
    """Per document: characters of the words inside the n-grams at (ascending) `starts`, once.

    Each start covers up to the next start or its own end, whichever comes first; the next
    document's starts lie beyond this one's end, so documents need no special case.
    """
    stops = starts + n
    stops[:-1] = np.minimum(stops[:-1], starts[1:])
    return _per_doc(word_docs[starts], n_docs, cumulative[stops] - cumulative[starts])


def _top_ngram_starts(hits, codes, counts, n, word_docs, cumulative) -> np.ndarray:
    """Starts of each document's most frequent n-gram (ties: more characters, then first seen).

    `codes` number the n-grams in order of first appearance, so a group's first occurrence is
    where the running maximum of the codes rises, and groups come in document order.
    """
    highest = np.maximum.accumulate(codes)
    first = np.ones(len(codes), bool)
    first[1:] = highest[1:] > highest[:-1]
    group_starts = hits[first]
    group_docs = word_docs[group_starts]
    chars = cumulative[group_starts + n] - cumulative[group_starts]
    rank = (counts[first].astype(np.int64) << 32) | chars.astype(np.int64)
    doc_bounds = np.flatnonzero(np.r_[True, group_docs[1:] != group_docs[:-1]])
    best_rank = np.maximum.reduceat(rank, doc_bounds)
    is_best = rank == np.repeat(best_rank, np.diff(np.r_[doc_bounds, len(rank)]))
    best = np.flatnonzero(is_best)
    best = best[np.r_[True, group_docs[best][1:] != group_docs[best][:-1]]]  # first seen wins
    best_code = np.full(int(word_docs[-1]) + 1, -1, np.int64)
    best_code[group_docs[best]] = codes[first][best]
    return hits[codes == best_code[word_docs[hits]]]


def _share(numerator, denominator) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.where(denominator > 0, denominator, 1)
        return np.where(denominator > 0, numerator / safe, np.nan)


def _as_string_array(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if texts.type == pa.null():
        return texts.cast(pa.string())
    if texts.type == pa.string_view():
        return texts.cast(pa.large_string())
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        raise TypeError(f"pre-filter statistics need a string column, got {texts.type}")
    return texts


def prefilter_statistics(texts: pa.Array | pa.ChunkedArray) -> pa.StructArray:
    """One struct of `STATISTICS` per document; null or empty text gives null fields."""
    texts = _as_string_array(texts)
    n_docs = len(texts)
    n_chars = _numpy(pc.fill_null(pc.utf8_length(texts), 0), np.float64)
    missing = n_chars == 0
    texts = pc.fill_null(texts, "")

    # Lines once; words split from the lines, so each word knows its line and its document.
    line_lists = pc.split_pattern(texts, "\n")
    newlines = _numpy(pc.list_value_length(line_lists), np.float64) - 1
    raw_lines = pc.list_flatten(line_lists)
    all_line_docs = _numpy(pc.list_parent_indices(line_lists), np.int64)
    words = _Words(raw_lines, all_line_docs, n_docs)
    lines = _Pieces(pc.utf8_trim_whitespace(raw_lines), all_line_docs, n_docs)
    words_per_line = np.bincount(words.lines, minlength=len(raw_lines))[lines.kept]
    paragraph_lists = pc.split_pattern_regex(texts, r"\n\s*\n")
    paragraphs = _Pieces(
        pc.utf8_trim_whitespace(pc.list_flatten(paragraph_lists)),
        _numpy(pc.list_parent_indices(paragraph_lists), np.int64), n_docs,
    )

    n_words, n_lines, word_chars = words.count, lines.count, words.per_doc(words.lengths)
    ellipsis_end = lines.matches(r"(?:\.\.\.|…)$")
    terminal_end = lines.matches(f"[{_escape(TERMINAL_PUNCTUATION)}]$")
    dup_line_chars = lines.per_doc(lines.lengths * lines.repeats)
    ends_sentence = words.vocab_property(lambda v: _matches(v, _SENTENCE_END))
    unterminated_tail = np.zeros(n_docs, bool)  # text after the last sentence end is one more
    has_words = n_words > 0
    last_word = np.cumsum(n_words).astype(np.int64) - 1
    unterminated_tail[has_words] = ~ends_sentence[last_word[has_words]]
    columns = {
        "n_words": n_words,
        "n_lines": n_lines,
        "mean_word_length": _share(word_chars, n_words),
        "hash_word_ratio": _share(words.per_doc(words.vocab_count("#")), n_words),
        "ellipsis_word_ratio": _share(
            words.per_doc(words.vocab_count("...") + words.vocab_count("…")), n_words),
        "bullet_line_share": _share(
            lines.per_doc(lines.matches(f"^[{_escape(BULLETS)}]")), n_lines),
        "ellipsis_line_share": _share(lines.per_doc(ellipsis_end), n_lines),
        "alpha_word_share": _share(words.per_doc(words.vocab_property(
            lambda v: _matches(v, r"\pL"))), n_words),
        "stop_word_count": words.per_doc(words.vocab_property(lambda v: _numpy(pc.is_in(
            pc.utf8_lower(pc.utf8_trim(v, _TRIM)), value_set=pa.array(STOP_WORDS)), bool))),
        "dup_line_share": _share(lines.per_doc(lines.repeats), n_lines),
        "dup_paragraph_share": _share(paragraphs.per_doc(paragraphs.repeats), paragraphs.count),
        "dup_line_char_share": _share(dup_line_chars, n_chars),
        "dup_paragraph_char_share": _share(
            paragraphs.per_doc(paragraphs.lengths * paragraphs.repeats), n_chars),
        **{name: _share(chars, word_chars) for name, chars in _ngram_covered_chars(
            words.ids, words.docs, words.lengths, n_words, n_docs).items()},
        "terminal_punct_line_share": _share(lines.per_doc(terminal_end), n_lines),
        "short_line_share": _share(lines.per_doc(lines.lengths <= SHORT_LINE_CHARS), n_lines),
        "dup_line_char_share_no_newlines": _share(dup_line_chars, n_chars - newlines),
        "newlines_per_word": _share(newlines, n_words),
        "control_char_share": _share(
            _numpy(pc.count_substring_regex(texts, CONTROL_CHARS), np.float64), n_chars),
        "no_terminal_punct_line_share": _share(
            lines.per_doc(~terminal_end | ellipsis_end), n_lines),
        "few_word_line_share": _share(
            lines.per_doc(words_per_line < C4_MIN_LINE_WORDS), n_lines),
        "n_sentences": words.per_doc(ends_sentence) + unterminated_tail,
        "has_lorem_ipsum": _numpy(pc.match_substring(texts, "lorem ipsum", ignore_case=True)),
        "has_curly_brace": words.per_doc(words.vocab_count("{") + words.vocab_count("}")) > 0,
        "has_javascript": _numpy(pc.match_substring(texts, "javascript", ignore_case=True)),
    }
    return _struct(columns, missing)


class _Words:
    """The batch's words (whitespace tokens of its lines) as ids into their distinct values.

    Per-word properties are computed once per distinct word (`vocab_property`) and gathered.
    """

    def __init__(self, lines: pa.Array, line_docs: np.ndarray, n_docs: int):
        word_lists = pc.utf8_split_whitespace(lines)
        encoded = pc.dictionary_encode(pc.list_flatten(word_lists))
        self.vocab = encoded.dictionary
        self.ids = _numpy(encoded.indices, np.int64)
        self.lines = _numpy(pc.list_parent_indices(word_lists), np.int64)
        vocab_lengths = _numpy(pc.utf8_length(self.vocab), np.float64)
        if (vocab_lengths == 0).any():  # Arrow yields "" around leading/trailing whitespace
            nonempty = vocab_lengths[self.ids] > 0
            self.ids, self.lines = self.ids[nonempty], self.lines[nonempty]
        self.docs = line_docs[self.lines]
        self.n_docs = n_docs
        self.lengths = vocab_lengths[self.ids]
        self.count = self.per_doc()

    def per_doc(self, weights=None) -> np.ndarray:
        return _per_doc(self.docs, self.n_docs, weights)

    def vocab_property(self, of_vocab) -> np.ndarray:
        return of_vocab(self.vocab)[self.ids]

    def vocab_count(self, substring: str) -> np.ndarray:
        return self.vocab_property(lambda v: _numpy(pc.count_substring(v, substring), np.float64))


class _Pieces:
    """Stripped lines or paragraphs of the batch, empty ones dropped, with their documents."""

    def __init__(self, stripped: pa.Array, docs: np.ndarray, n_docs: int):
        lengths = _numpy(pc.utf8_length(stripped), np.float64)
        self.kept = np.flatnonzero(lengths > 0)
        self.values = stripped.take(pa.array(self.kept))
        self.docs, self.lengths, self.n_docs = docs[self.kept], lengths[self.kept], n_docs
        self.count = self.per_doc()
        self.repeats = _repeats(self.values, self.docs)

    def per_doc(self, weights=None) -> np.ndarray:
        return _per_doc(self.docs, self.n_docs, weights)

    def matches(self, pattern: str) -> np.ndarray:
        return _matches(self.values, pattern)


def _struct(columns: dict[str, np.ndarray], missing: np.ndarray) -> pa.StructArray:
    children = []
    for field in STATISTICS:
        values = np.asarray(columns[field.name])
        mask = missing | (np.isnan(values) if field.type == _DOUBLE else False)
        if field.type == _LONG:
            values = values.astype(np.int64)
        children.append(pa.array(values, field.type, mask=mask))
    return pa.StructArray.from_arrays(children, fields=list(STATISTICS))


def _escape(characters: str) -> str:
    return "".join("\\" + c if c in "\\^-[]" else c for c in characters)


def prefilter_statistics_frame(texts: pd.Series) -> pd.DataFrame:
    """The same statistics for a pandas Series of str (the pandas-UDF form): one column each."""
    values = pa.array(texts.astype(object).where(texts.notna(), None), pa.large_string())
    return pa.Table.from_struct_array(prefilter_statistics(values)).to_pandas()


def make_prefilter_udf():
    """`text -> struct<statistics>` column function (an Arrow UDF where PySpark has them)."""
    return arrow_or_pandas_udf(SPARK_SCHEMA, prefilter_statistics, prefilter_statistics_frame)
