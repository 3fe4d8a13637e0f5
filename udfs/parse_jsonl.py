"""Parse raw JSONL lines into document fields, or a quarantine reason.

Lines arrive as raw bytes so invalid UTF-8 is caught here instead of being silently replaced.
"""

from __future__ import annotations

import json

import pandas as pd
from pyspark.sql.functions import pandas_udf

PARSED_SCHEMA = (
    "text string, raw_id string, source_value string, meta string, raw string, reason string"
)
PARSED_COLUMNS = ["text", "raw_id", "source_value", "meta", "raw", "reason"]


def _scalar_id(value) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def parse_line(
    line: bytes | None,
    *,
    text_key: str,
    id_key: str | None,
    source_key: str | None,
    raw_max_chars: int,
) -> tuple:
    """One line → (text, raw_id, source_value, meta, raw, reason); reason is None when usable."""
    if line is None:
        return (None, None, None, None, None, "malformed_json: null line")
    raw_bytes = bytes(line)
    raw = raw_bytes[:raw_max_chars * 4].decode("utf-8", errors="replace")[:raw_max_chars]
    try:
        decoded = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (None, None, None, None, raw, f"invalid_utf8: byte {exc.start}")
    if not decoded.strip():
        return (None, None, None, None, raw, "malformed_json: blank line")
    try:
        record = json.loads(decoded)
    except (json.JSONDecodeError, RecursionError) as exc:
        return (None, None, None, None, raw, f"malformed_json: {exc}")
    if not isinstance(record, dict):
        return (None, None, None, None, raw, f"malformed_json: not an object ({type(record).__name__})")
    if text_key not in record:
        return (None, None, None, None, raw, f"missing_text: no {text_key!r} field")
    text = record[text_key]
    if text is None:
        return (None, None, None, None, raw, f"missing_text: {text_key!r} is null")
    if not isinstance(text, str):
        return (None, None, None, None, raw, f"non_string_text: {type(text).__name__}")
    if not text.strip():
        return (None, None, None, None, raw, "empty_text")
    raw_id = None
    if id_key is not None:
        raw_id = _scalar_id(record.get(id_key))
        if raw_id is None:
            return (None, None, None, None, raw, f"missing_id: {id_key!r} absent, null or not a scalar")
    source_value = None
    if source_key is not None and record.get(source_key) is not None:
        source_value = str(record[source_key])
    rest = {k: v for k, v in record.items() if k not in (text_key, id_key, source_key)}
    meta = json.dumps(rest, ensure_ascii=False, sort_keys=True)
    return (text, raw_id, source_value, meta, raw, None)


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
