"""Parse raw JSONL lines into document fields, or a quarantine reason.

Lines arrive as raw bytes so invalid UTF-8 is caught here instead of being silently replaced.
`json.loads` accepts a lone surrogate escape (`"\\ud800"`) and returns a string that Arrow and
every UTF-8 encoder refuse later, far from the record; such records are quarantined here with
the field that holds it.
"""

from __future__ import annotations

import json
import unicodedata

import pandas as pd
from pyspark.sql.functions import pandas_udf

PARSED_SCHEMA = (
    "text string, raw_id string, source_value string, meta string, raw string, reason string"
)
PARSED_COLUMNS = ["text", "raw_id", "source_value", "meta", "raw", "reason"]

# Characters that show nothing: whitespace and separators (Z*), controls (Cc, which hold \t \n
# \r and NUL) and format characters (Cf: zero-width space U+200B, BOM U+FEFF, joiners, ...).
# jobs/ingest.py applies the same classes to columnar inputs (VISIBLE_CHAR_REGEX there).
INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})


def has_visible_content(text: str) -> bool:
    """True when some character is neither whitespace, a control nor a format character."""
    return any(unicodedata.category(ch) not in INVISIBLE_CATEGORIES for ch in text)


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _printable(name: str) -> str:
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def surrogate_path(value) -> str | None:
    """Where in a decoded JSON value a lone surrogate sits (`meta.tags[2]`), else None.

    Iterative: a record nested almost to json's recursion limit must not overflow here.
    """
    pending = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                return path or "<value>"
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                name = f"{path}.{key}" if path else key
                if _has_surrogate(key):
                    return _printable(name)
                children.append((child, name))
            pending.extend(reversed(children))
    return None


def _scalar_id(value) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def _quarantined(raw: str, reason: str) -> tuple:
    return (None, None, None, None, raw, reason)


def parse_line(
    line: bytes | None,
    *,
    text_key: str,
    id_key: str | None,
    source_key: str | None,
    raw_max_chars: int,
) -> tuple:
    """One line → (text, raw_id, source_value, meta, raw, reason).

    reason is None when the record is usable; raw (the line, truncated) is kept only for
    records with a reason, so usable documents do not carry a second copy of their text.
    """
    if line is None:
        return _quarantined(None, "malformed_json: null line")
    raw_bytes = bytes(line)
    raw = raw_bytes[:raw_max_chars * 4].decode("utf-8", errors="replace")[:raw_max_chars]
    try:
        decoded = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _quarantined(raw, f"invalid_utf8: byte {exc.start}")
    if not decoded.strip():
        return _quarantined(raw, "malformed_json: blank line")
    try:
        record = json.loads(decoded)
    except (json.JSONDecodeError, RecursionError) as exc:
        return _quarantined(raw, f"malformed_json: {exc}")
    if not isinstance(record, dict):
        return _quarantined(raw, f"malformed_json: not an object ({type(record).__name__})")
    # Strict UTF-8 decoding never yields a surrogate: only a `\u` escape can.
    if "\\u" in decoded:
        field = surrogate_path(record)
        if field is not None:
            return _quarantined(raw, f"invalid_unicode: {field}")
    if text_key not in record:
        return _quarantined(raw, f"missing_text: no {text_key!r} field")
    text = record[text_key]
    if text is None:
        return _quarantined(raw, f"missing_text: {text_key!r} is null")
    if not isinstance(text, str):
        return _quarantined(raw, f"non_string_text: {type(text).__name__}")
    if not has_visible_content(text):
        return _quarantined(raw, "empty_text")
    raw_id = None
    if id_key is not None:
        raw_id = _scalar_id(record.get(id_key))
        if raw_id is None:
            return _quarantined(raw, f"missing_id: {id_key!r} absent, null or not a scalar")
    source_value = None
    if source_key is not None and record.get(source_key) is not None:
        source_value = str(record[source_key])
    rest = {k: v for k, v in record.items() if k not in (text_key, id_key, source_key)}
    try:
        meta = json.dumps(rest, ensure_ascii=False, sort_keys=True)
    except RecursionError:
        return _quarantined(raw, "malformed_json: nested too deeply")
    return (text, raw_id, source_value, meta, None, None)


def parse_lines(
    lines: pd.Series,
    *,
    text_key: str = "text",
    id_key: str | None = None,
    source_key: str | None = None,
    raw_max_chars: int = 4096,
) -> pd.DataFrame:
    rows = [
        parse_line(
            line, text_key=text_key, id_key=id_key, source_key=source_key,
            raw_max_chars=raw_max_chars,
        )
        for line in lines.array
    ]
    return pd.DataFrame(rows, columns=PARSED_COLUMNS, index=lines.index, dtype=object)


def make_parse_udf(text_key: str, id_key: str | None, source_key: str | None, raw_max_chars: int):
    @pandas_udf(PARSED_SCHEMA)
    def parse_jsonl(lines: pd.Series) -> pd.DataFrame:
        return parse_lines(
            lines, text_key=text_key, id_key=id_key, source_key=source_key,
            raw_max_chars=raw_max_chars,
        )

    return parse_jsonl
