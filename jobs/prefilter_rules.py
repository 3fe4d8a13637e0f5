"""Pre-filter rules: thresholds from config compared with stored statistics, as Spark expressions.

Statistics are measured once (udfs/prefilter.py) and stored in the `prefilter` table; the rules
here only compare columns with config values, so changing a threshold never measures text again.

A rule is named `<family>.<key>`, the config key whose threshold it applies (e.g.
`gopher_quality.min_words`), so a filter reason says what to change. Rules run in this fixed
order, the order of METHODS.md §6: Gopher quality, Gopher repetition (paragraphs, lines, top
n-grams, duplicated n-grams, as DataTrove checks them), FineWeb, C4, control characters,
near-duplicates (jobs/prefilter_dedup.py).
`filter_reason` is the first failed rule in that order; `failed_rules` lists every failed one. A
statistic that cannot be measured (null: a document without words or lines) fails its rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.core.config import PrefilterSettings


@dataclass(frozen=True)
class Rule:
    family: str
    key: str  # the threshold's key in the family's config section
    statistic: str  # the `prefilter` column it reads
    # max: fails above the threshold; min: fails below it; reject: fails when the statistic is
    # true and the key (a switch) is on
    kind: Literal["max", "min", "reject"]

    @property
    def name(self) -> str:
        return f"{self.family}.{self.key}"


def _max(family: str, statistic: str) -> Rule:
    return Rule(family, f"max_{statistic}", statistic, "max")


def _min(family: str, statistic: str) -> Rule:
    return Rule(family, f"min_{statistic}", statistic, "min")


_GQ, _GR, _FW, _C4 = "gopher_quality", "gopher_repetition", "fineweb", "c4"
RULES: tuple[Rule, ...] = (
    Rule(_GQ, "min_words", "n_words", "min"),
    Rule(_GQ, "max_words", "n_words", "max"),
    Rule(_GQ, "min_mean_word_length", "mean_word_length", "min"),
    Rule(_GQ, "max_mean_word_length", "mean_word_length", "max"),
    _max(_GQ, "hash_word_ratio"),
    _max(_GQ, "ellipsis_word_ratio"),
    _max(_GQ, "bullet_line_share"),
    _max(_GQ, "ellipsis_line_share"),
    _min(_GQ, "alpha_word_share"),
    Rule(_GQ, "min_stop_words", "stop_word_count", "min"),
    _max(_GR, "dup_paragraph_share"),
    _max(_GR, "dup_paragraph_char_share"),
    _max(_GR, "dup_line_share"),
    _max(_GR, "dup_line_char_share"),
    *(_max(_GR, f"top_{n}gram_char_share") for n in (2, 3, 4)),
    *(_max(_GR, f"dup_{n}gram_char_share") for n in range(5, 11)),
    _min(_FW, "terminal_punct_line_share"),
    _max(_FW, "short_line_share"),
    Rule(_FW, "max_dup_line_char_share", "dup_line_char_share_no_newlines", "max"),
    _max(_FW, "newlines_per_word"),
    _max(_C4, "no_terminal_punct_line_share"),
    _max(_C4, "few_word_line_share"),
    Rule(_C4, "min_sentences", "n_sentences", "min"),
    Rule(_C4, "reject_lorem_ipsum", "has_lorem_ipsum", "reject"),
    Rule(_C4, "reject_curly_brace", "has_curly_brace", "reject"),
    Rule(_C4, "reject_javascript", "has_javascript", "reject"),
    _max("control_chars", "control_char_share"),
    Rule("dedup", "reject_near_duplicates", "is_near_duplicate", "reject"),
)
RULE_NAMES = tuple(rule.name for rule in RULES)


def threshold(rule: Rule, settings: PrefilterSettings):
    return getattr(getattr(settings, rule.family), rule.key)


def glob_regex(glob: str) -> str:
    """A `sources` glob as a regex for the whole source: `*` any characters, `?` one, the rest
    literal. The same pattern in Java (Spark's rlike) and in Python's re."""
    return "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                         for c in glob) + "$"


def source_matches(globs: list[str]) -> Column:
    pattern = "(?s)" + "|".join(f"(?:{glob_regex(g)})" for g in globs)
    return F.coalesce(F.col("source").rlike(pattern), F.lit(False))


def threshold_column(rule: Rule, settings: PrefilterSettings) -> Column:
    """The rule's threshold per document: the first `source_rules` entry that matches the
    document's source and sets the rule, else the section's value."""
    value = F.lit(threshold(rule, settings))
    for entry in reversed(settings.source_rules):
        if rule.name in entry.thresholds:
            value = F.when(source_matches(entry.sources), F.lit(entry.thresholds[rule.name])) \
                .otherwise(value)
    return value


def active_rules(settings: PrefilterSettings) -> list[Rule]:
    """The rules of the configured families, in rule order; a reject rule only where its switch
    is on, for every source or for some (`source_rules`)."""
    return [
        rule for rule in RULES
        if rule.family in settings.families
        and (rule.kind != "reject" or threshold(rule, settings)
             or any(entry.thresholds.get(rule.name) for entry in settings.source_rules))
    ]


def source_rules_lines(settings: PrefilterSettings, sources: list[str]) -> list[str]:
    """One line per `source_rules` entry: its globs, thresholds and how many of `sources` it
    matches; an entry that matches none (most often a typo) says so."""
    lines = []
    for index, entry in enumerate(settings.source_rules):
        matched = [s for s in sources
                   if any(re.match(glob_regex(g), s, re.S) for g in entry.sources)]
        lines.append(
            f"source_rules[{index}] [{', '.join(entry.sources)}]: "
            + ", ".join(f"{name}={value}" for name, value in entry.thresholds.items())
            + (f"; matches {len(matched)} of {len(sources)} sources" if matched
               else f"; MATCHES NONE of the {len(sources)} sources judged"))
    return lines


def rule_fails(rule: Rule, settings: PrefilterSettings) -> Column:
    """True when the document fails the rule; a null statistic fails."""
    value = F.col(rule.statistic)
    limit = threshold_column(rule, settings)
    if rule.kind == "reject":
        broken = value & limit
    elif rule.kind == "max":
        broken = value > limit
    else:
        broken = value < limit
    return F.coalesce(broken, F.lit(True))


def apply_rules(statistics: DataFrame, settings: PrefilterSettings) -> DataFrame:
    """Add passed, filter_reason (first failed rule, null when passed) and failed_rules."""
    rules = active_rules(settings)
    if rules:
        named = F.array(*[F.when(rule_fails(r, settings), F.lit(r.name)) for r in rules])
        failed = F.filter(named, lambda name: name.isNotNull())
    else:
        failed = F.array().cast("array<string>")
    return (
        statistics.withColumn("failed_rules", failed)
        .withColumn("passed", F.size("failed_rules") == 0)
        .withColumn("filter_reason", F.get("failed_rules", 0))
    )
