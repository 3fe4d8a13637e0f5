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


@pytest.mark.parametrize(
    "line, field",
    [
        (b'{"id": 1, "text": "bad \\ud800 text"}', "text"),
        (b'{"id": "\\udc00", "text": "fine"}', "id"),
        (b'{"id": 1, "text": "fine", "src": "\\udbff"}', "src"),
        (b'{"id": 1, "text": "fine", "m": {"tags": ["ok", "\\ud800x"]}}', "m.tags[1]"),
        (b'{"id": 1, "text": "fine", "\\ud800key": 1}', "\\ud800key"),
    ],
)
def test_lone_surrogate_anywhere_is_quarantined_naming_the_field(line, field):
    row = parse([line], source_key="src").iloc[0]
    assert row.reason == f"invalid_unicode: {field}"
    assert row.text is None and row.meta is None
    row.reason.encode("utf-8")  # the reason itself must survive Arrow


def test_surrogate_pair_escape_is_a_valid_character():
    row = parse([b'{"id": 1, "text": "smile \\ud83d\\ude00"}']).iloc[0]
    assert row.reason is None and row.text == "smile \U0001F600"


@pytest.mark.parametrize(
    "text", ["\x00\x00\x00", "\u200b\ufeff", "\u3000 \u2028\t", "\u00a0\r\n", "\u2060\u200d"]
)
def test_text_without_visible_characters_is_empty(text):
    row = parse([json.dumps({"id": 1, "text": text}).encode()]).iloc[0]
    assert row.reason == "empty_text"


def test_one_visible_character_is_enough():
    row = parse([json.dumps({"id": 1, "text": "\x00\u200b.\u3000"}).encode()]).iloc[0]
    assert row.reason is None


def test_raw_only_for_rejected_lines():
    good, bad = json.dumps({"id": 1, "text": "kept"}).encode(), b"{oops"
    out = parse([good, bad])
    assert out.raw.iloc[0] is None and out.raw.iloc[1] == "{oops"
