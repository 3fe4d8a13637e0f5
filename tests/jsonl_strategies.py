"""Hypothesis strategies for raw JSONL lines: random bytes, random JSON values and random
Unicode (lone surrogates included), shared by the parse kernel's and the ingest job's tests."""

import json

from hypothesis import strategies as st

# JSON values with arbitrary Unicode, lone surrogates included (`json.dumps` escapes them).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
records = st.fixed_dictionaries(
    {}, optional={"id": json_values, "text": st.text() | json_values, "src": json_values}
).flatmap(lambda fixed: st.dictionaries(st.text(max_size=6), json_values, max_size=3).map(
    lambda extra: {**extra, **fixed}))
lines = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    records.map(lambda r: json.dumps(r, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")),
    records.map(lambda r: json.dumps(r).encode()),
    st.text().map(lambda t: t.encode("utf-8", "surrogatepass")),
)
