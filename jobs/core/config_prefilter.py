"""The pre-filter section of the config: Gopher quality and repetition, FineWeb, C4 and
control-character rules with their published thresholds (METHODS.md §6)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, ValidationError, field_validator, model_validator

from jobs.core.config_base import MODE_FIELD_DESCRIPTION, Mode, Section


class GopherQualityRules(Section):
    """Gopher quality (Rae et al. 2021, A.1.1): a document fails outside these bounds."""

    min_words: int = Field(50, ge=0, description="whitespace-separated words")
    max_words: int = Field(100_000, ge=1)
    min_mean_word_length: float = Field(3.0, ge=0, description="characters")
    max_mean_word_length: float = Field(10.0, gt=0)
    max_hash_word_ratio: float = Field(0.1, ge=0, description="'#' per word")
    max_ellipsis_word_ratio: float = Field(0.1, ge=0, description="'...' or '…' per word")
    max_bullet_line_share: float = Field(0.9, ge=0, le=1, description="lines starting with a bullet")
    max_ellipsis_line_share: float = Field(0.3, ge=0, le=1, description="lines ending in an ellipsis")
    min_alpha_word_share: float = Field(0.8, ge=0, le=1, description="words with a letter")
    min_stop_words: int = Field(2, ge=0, description="occurrences of the, be, to, of, and, that, ...")

    @model_validator(mode="after")
    def _bounds(self) -> GopherQualityRules:
        if self.min_words > self.max_words:
            raise ValueError("min_words must be <= max_words")
        if self.min_mean_word_length > self.max_mean_word_length:
            raise ValueError("min_mean_word_length must be <= max_mean_word_length")
        return self


class GopherRepetitionRules(Section):
    """Gopher repetition (Rae et al. 2021, table A1): a document fails above these shares."""

    max_dup_paragraph_share: float = Field(0.30, ge=0, le=1)
    max_dup_paragraph_char_share: float = Field(0.20, ge=0, le=1)
    max_dup_line_share: float = Field(0.30, ge=0, le=1)
    max_dup_line_char_share: float = Field(0.20, ge=0, le=1)
    max_top_2gram_char_share: float = Field(0.20, ge=0, le=1)
    max_top_3gram_char_share: float = Field(0.18, ge=0, le=1)
    max_top_4gram_char_share: float = Field(0.16, ge=0, le=1)
    max_dup_5gram_char_share: float = Field(0.15, ge=0, le=1)
    max_dup_6gram_char_share: float = Field(0.14, ge=0, le=1)
    max_dup_7gram_char_share: float = Field(0.13, ge=0, le=1)
    max_dup_8gram_char_share: float = Field(0.12, ge=0, le=1)
    max_dup_9gram_char_share: float = Field(0.11, ge=0, le=1)
    max_dup_10gram_char_share: float = Field(0.10, ge=0, le=1)


class FineWebRules(Section):
    """FineWeb quality (Penedo et al. 2024, as DataTrove ships it)."""

    min_terminal_punct_line_share: float = Field(
        0.12, ge=0, le=1, description="lines ending in . ! ? \" '")
    max_short_line_share: float = Field(0.67, ge=0, le=1, description="lines of <= 30 characters")
    max_dup_line_char_share: float = Field(
        0.01, ge=0, le=1, description="characters in repeated lines, newlines excluded")
    max_newlines_per_word: float = Field(0.3, ge=0)


class ControlCharRules(Section):
    """Non-printable characters (Cc, Cf, Co, Cn except \\n \\t \\r); siftlake's rule."""

    max_control_char_share: float = Field(0.01, ge=0, le=1, description="of all characters")


class C4Rules(Section):
    """C4 (Raffel et al. 2020, as DataTrove's C4QualityFilter), as document rules.

    C4 drops lines without terminal punctuation or with < 3 words; siftlake never rewrites a
    document, so it fails documents where more than these shares of lines would go (siftlake's
    defaults; C4 publishes no document-level share).
    """

    max_no_terminal_punct_line_share: float = Field(0.5, ge=0, le=1)
    max_few_word_line_share: float = Field(0.5, ge=0, le=1, description="lines of < 3 words")
    min_sentences: int = Field(5, ge=0)
    reject_lorem_ipsum: bool = True
    reject_curly_brace: bool = True
    reject_javascript: bool = True


class DedupRules(Section):
    """Near-duplicates by MinHash LSH over word 5-grams (FineWeb's setting: 14 bands of 8).

    A document sharing a band key with one judged before it (in an earlier run, or in the same
    run with a smaller doc_id) fails `dedup.reject_near_duplicates`; the first stays.
    """

    reject_near_duplicates: bool = True
    ngram: int = Field(5, ge=1, description="words per shingle")
    bands: int = Field(14, ge=1, description="LSH bands (more: catches less similar pairs)")
    rows_per_band: int = Field(
        8, ge=1, description="hashes per band (more: needs more similarity to collide)")
    seed: int = Field(1, ge=0, description="seed of the hash functions")


MEASURING_KEYS = ("dedup.ngram", "dedup.bands", "dedup.rows_per_band", "dedup.seed")


class SourceRules(Section):
    """Thresholds of their own for the documents of some sources (a documentation dump beside a
    web crawl): for each rule, the first entry whose `sources` match a document's `source` and
    that sets the rule gives its threshold; other documents keep the section's."""

    sources: list[str] = Field(
        min_length=1, description="globs over documents.source (the input file, or "
        "ingest.source_column): `*` any characters, `?` one; the whole source must match")
    thresholds: dict[str, bool | int | float] = Field(
        min_length=1, description="rule name as in filter_reason (<family>.<key>) -> threshold")


PrefilterFamily = Literal[
    "gopher_quality", "gopher_repetition", "fineweb", "control_chars", "c4", "dedup"
]


FAMILY_NAMES = get_args(PrefilterFamily)


class PrefilterSettings(Section):
    """Heuristic pre-filters (Gopher quality and repetition, FineWeb, C4; METHODS.md §6)."""

    enabled: bool = Field(
        True, description="false: downstream jobs consider every document, not only passed ones"
    )
    mode: Mode = Field("full", description=MODE_FIELD_DESCRIPTION)
    rethreshold: bool = Field(
        False, description="re-apply the rules to the stored statistics of `prefilter` (no text "
        "is read or measured again)"
    )
    families: list[PrefilterFamily] = Field(
        default_factory=lambda: [
            "gopher_quality", "gopher_repetition", "fineweb", "control_chars", "dedup"],
        description="rule families applied (c4 is available, off by default)",
    )
    gopher_quality: GopherQualityRules = Field(default_factory=GopherQualityRules)
    gopher_repetition: GopherRepetitionRules = Field(default_factory=GopherRepetitionRules)
    fineweb: FineWebRules = Field(default_factory=FineWebRules)
    control_chars: ControlCharRules = Field(default_factory=ControlCharRules)
    c4: C4Rules = Field(default_factory=C4Rules)
    dedup: DedupRules = Field(default_factory=DedupRules)
    source_rules: list[SourceRules] = Field(
        default_factory=list, description="per-source thresholds, e.g. looser repetition rules "
        "for documentation; re-threshold to apply a change to stored statistics")

    @model_validator(mode="after")
    def _source_thresholds(self) -> PrefilterSettings:
        """Each override names a threshold a rule compares with, and is valid where it applies:
        checked by the family's own validation (ranges, min <= max) with the override in place;
        the value is stored as that validation gives it (an int for an int threshold)."""
        for index, entry in enumerate(self.source_rules):
            for name, value in entry.thresholds.items():
                where = f"source_rules[{index}].thresholds.{name}"
                family, _, key = name.partition(".")
                section = getattr(self, family, None) if family in FAMILY_NAMES else None
                if section is None or key not in type(section).model_fields:
                    raise ValueError(f"{where}: not a rule; rules are named <family>.<key> as in "
                                     f"filter_reason, e.g. fineweb.max_dup_line_char_share")
                if name in MEASURING_KEYS:
                    raise ValueError(f"{where}: measures the text, the same for every source")
                try:
                    changed = type(section).model_validate(section.model_dump() | {key: value})
                except ValidationError as error:
                    raise ValueError(f"{where}: {error.errors()[0]['msg']}") from None
                entry.thresholds[name] = getattr(changed, key)
        return self

    @field_validator("families")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("list each rule family once")
        return value
