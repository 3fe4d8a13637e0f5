import json

import pandas as pd
import pytest

from udfs.parse_jsonl import parse_lines


def parse(lines, **kw):
    kw.setdefault("id_key", "id")
    return parse_lines(pd.Series(lines, dtype=object), **kw)


def test_good_record_fields_and_meta():
    out = parse([json.dumps({"id": 7, "text": "hello\nworld", "lang": "en", "n": 3}).encode()])
    row = out.iloc[0]
    assert row.reason is None and row.text == "hello\nworld" and row.raw_id == "7"
    assert json.loads(row.meta) == {"lang": "en", "n": 3}


@pytest.mark.parametrize(
    "line, code",
    [
        (b'{"id": 1, "text": "unterminated', "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (b"   ", "malformed_json"),
        (json.dumps({"id": 1}).encode(), "missing_text"),
        (json.dumps({"id": 1, "text": None}).encode(), "missing_text"),
        (json.dumps({"id": 1, "text": " \n "}).encode(), "empty_text"),
        (json.dumps({"id": 1, "text": ["a"]}).encode(), "non_string_text"),
        (json.dumps({"id": 1, "text": 3.5}).encode(), "non_string_text"),
        (b'{"id": 1, "text": "caf\xc3\x28"}', "invalid_utf8"),
        (json.dumps({"text": "no id"}).encode(), "missing_id"),
        (json.dumps({"id": {"a": 1}, "text": "object id"}).encode(), "missing_id"),
        (None, "malformed_json"),
    ],
)
def test_each_bad_line_gets_its_reason(line, code):
    row = parse([line]).iloc[0]
    assert row.reason.split(":")[0] == code
    assert row.text is None


def test_raw_is_kept_truncated_for_quarantine():
    line = json.dumps({"id": 1, "text": 5, "pad": "y" * 10_000}).encode()
    row = parse([line], raw_max_chars=100).iloc[0]
    assert row.reason.startswith("non_string_text") and row.raw == line.decode()[:100]


def test_without_id_key_ids_are_not_required():
    row = parse([json.dumps({"text": "fine"}).encode()], id_key=None).iloc[0]
    assert row.reason is None and row.raw_id is None
