"""ZIP kernel and its pandas wrapper, checked against a textbook ZIP recompressing every list."""

from __future__ import annotations

import json
import random
import zlib

import numpy as np
import pandas as pd
import pytest
import zstandard

from udfs.zip_greedy import (
    PYTHON_LIST_FRAMING,
    TEXT_FRAMING,
    _ZlibPrefix,
    _ZstdPrefix,
    list_compression,
    reference_list_bytes,
    serialize,
    zip_select,
)
from udfs.zip_udf import ZIP_SELECTION_COLUMNS, group_budget, select_group

# ----------------------------------------------------------------------------------------------
# Textbook ZIP (METHODS.md section 3): every ratio is computed from the whole serialised list.


def zlib_ratio(raw: bytes) -> float:
    return len(raw) / len(zlib.compress(raw, 9))


def text_list_ratio(texts: list[str]):
    return lambda idx: zlib_ratio("\n\n".join(texts[i] for i in idx).encode("utf-8"))


def zstd_list_ratio(texts: list[str], level: int):
    """The zstd back-end's definition: the prefix alone, plus the last document given the prefix
    (its last window of bytes) as a raw-content dictionary."""
    window = 1 << zstandard.ZstdCompressionParameters.from_level(level).window_log

    def ratio(idx: list[int]) -> float:
        if len(idx) == 1:
            raw = texts[idx[0]].encode()
            return len(raw) / len(zstandard.ZstdCompressor(level=level).compress(raw))
        prefix = "\n\n".join(texts[i] for i in idx[:-1]).encode()
        tail = ("\n\n" + texts[idx[-1]]).encode()
        dictionary = zstandard.ZstdCompressionDict(
            prefix[-window:], dict_type=zstandard.DICT_TYPE_RAWCONTENT
        )
        size = len(zstandard.ZstdCompressor(level=level).compress(prefix)) + len(
            zstandard.ZstdCompressor(level=level, dict_data=dictionary).compress(tail)
        )
        return (len(prefix) + len(tail)) / size

    return ratio


def naive_zip(n, list_ratio, *, k1, k2, k3, budget, char_budget=None, chars=None):
    """Returns [(position, round, rank, ratio)]; positions 0..n-1 are all candidates."""
    pool = list(range(n))
    state = {i: list_ratio([i]) for i in pool}
    selected: list[int] = []
    picks = []
    total_chars = 0
    rnd = 0

    def done():
        return len(selected) >= budget or (char_budget is not None and total_chars >= char_budget)

    while pool and not done():
        rnd += 1
        c1 = sorted(pool, key=lambda i: (state[i], i))[:k1]
        for i in c1:
            state[i] = list_ratio(selected + [i])
        c2 = sorted(c1, key=lambda i: (state[i], i))[:k2]
        pool = [i for i in pool if i not in c2]
        rest, local = sorted(c2), []
        while rest and len(local) < k3 and not done():
            value, best = min((list_ratio(local + [i]), i) for i in rest)
            rest.remove(best)
            local.append(best)
            selected.append(best)
            total_chars += chars[best] if chars else 0
            picks.append((best, rnd, len(local), value))
    return picks


def as_tuples(result) -> list[tuple[int, int, int, float]]:
    return [
        (int(p), int(r), int(k), float(v))
        for p, r, k, v in zip(result.positions, result.rounds, result.ranks, result.ratios,
                              strict=True)
    ]


# ----------------------------------------------------------------------------------------------
# Pools


def make_pool(n_fresh: int, n_dups: int, seed: int, words_per_doc=(20, 70)) -> list[str]:
    """Fresh documents from a shared vocabulary plus near-duplicates of a few templates."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
             for _ in range(400)]
    docs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(*words_per_doc)))
            for _ in range(n_fresh)]
    templates = docs[:4]
    for j in range(n_dups):
        words = templates[j % len(templates)].split()
        words[rng.randrange(len(words))] = rng.choice(vocab)
        docs.append(" ".join(words))
    rng.shuffle(docs)
    return docs


POOL = make_pool(40, 20, seed=1)


@pytest.mark.parametrize(
    "k1,k2,k3,budget",
    [(60, 10, 5, 20), (20, 8, 4, 12), (7, 3, 1, 6), (30, 6, 6, 25), (12, 12, 2, 9)],
)
def test_zlib_picks_equal_textbook_zip(k1, k2, k3, budget):
    pieces, framing = serialize(POOL, "text")
    fast = zip_select(pieces, k1=k1, k2=k2, k3=k3, budget=budget, framing=framing)
    slow = naive_zip(len(POOL), text_list_ratio(POOL), k1=k1, k2=k2, k3=k3, budget=budget)
    assert as_tuples(fast) == slow
    assert len(slow) == min(budget, len(slow)) and fast.stop_reason in ("budget", "pool_exhausted")
    # The whole selection's ratio is the textbook ratio of the picks joined in order.
    joined = "\n\n".join(POOL[p] for p, *_ in slow).encode()
    assert fast.selection_ratio == zlib_ratio(joined)


def test_zlib_picks_equal_textbook_zip_beyond_deflate_window_and_block():
    # ~75 KB selected: the prefix outgrows deflate's 32 KiB window and spans several blocks.
    pool = make_pool(260, 60, seed=7, words_per_doc=(80, 160))
    pieces, _ = serialize(pool, "text")
    fast = zip_select(pieces, k1=40, k2=20, k3=10, budget=120)
    slow = naive_zip(len(pool), text_list_ratio(pool), k1=40, k2=20, k3=10, budget=120)
    assert as_tuples(fast) == slow
    assert sum(len(pool[p]) for p, *_ in slow) > 2 * 32 * 1024


@pytest.mark.parametrize("k1,k2,k3,budget,level", [(60, 10, 5, 20, 3), (9, 4, 3, 11, 19)])
def test_zstd_picks_equal_textbook_definition(k1, k2, k3, budget, level):
    pieces, framing = serialize(POOL, "text")
    fast = zip_select(pieces, k1=k1, k2=k2, k3=k3, budget=budget, framing=framing,
                      backend="zstd", zstd_level=level)
    slow = naive_zip(len(POOL), zstd_list_ratio(POOL, level), k1=k1, k2=k2, k3=k3, budget=budget)
    assert as_tuples(fast) == slow


def test_sharegpt_serialisation_is_the_reference_str_of_the_list():
    records = [
        {"id": "a", "conversations": [{"from": "human", "value": "Say \"hi\" — it's 'ok'\n"},
                                      {"from": "gpt", "value": "héllo 你好"}]},
        {"id": "b", "conversations": [{"from": "human", "value": "x" * 50}], "score": 1.5},
    ]
    pieces, framing = serialize([json.dumps(r, ensure_ascii=False) for r in records], "sharegpt")
    assert framing.join(pieces) == str(records).encode("utf-8")
    assert reference_list_bytes(records) == str(records).encode("utf-8")
    assert framing.join(pieces[:1]) == str(records[:1]).encode("utf-8")


def test_sharegpt_picks_equal_textbook_zip_on_str_of_list():
    rng = random.Random(3)
    records = [
        {"conversations": [{"from": "human", "value": text[: len(text) // 2]},
                           {"from": "gpt", "value": text[len(text) // 2:]}], "n": rng.randint(0, 9)}
        for text in POOL[:45]
    ]
    pieces, framing = serialize([json.dumps(r) for r in records], "sharegpt")
    fast = zip_select(pieces, k1=30, k2=8, k3=4, budget=14, framing=framing)

    def ratio(idx):
        return zlib_ratio(str([records[i] for i in idx]).encode("utf-8"))

    assert as_tuples(fast) == naive_zip(len(records), ratio, k1=30, k2=8, k3=4, budget=14)


def test_character_budget_stops_once_reached_and_matches_textbook():
    pieces, _ = serialize(POOL, "text")
    chars = [len(t) for t in POOL]
    fast = zip_select(pieces, k1=40, k2=10, k3=5, budget=len(POOL), char_budget=2500,
                      char_lengths=chars)
    slow = naive_zip(len(POOL), text_list_ratio(POOL), k1=40, k2=10, k3=5, budget=len(POOL),
                     char_budget=2500, chars=chars)
    assert as_tuples(fast) == slow
    picked = [chars[p] for p, *_ in slow]
    assert sum(picked) >= 2500 > sum(picked[:-1])
    assert fast.stop_reason == "char_budget"


def test_selection_is_denser_than_random_subsets_on_planted_near_duplicates():
    pool = make_pool(40, 40, seed=11)
    pieces, _ = serialize(pool, "text")
    result = zip_select(pieces, k1=80, k2=20, k3=10, budget=20)
    chosen = zlib_ratio("\n\n".join(pool[p] for p in result.positions).encode())
    rng = random.Random(0)
    randoms = [zlib_ratio("\n\n".join(rng.sample(pool, 20)).encode()) for _ in range(30)]
    assert chosen < min(randoms)


def test_budget_larger_than_pool_ends_when_the_pool_is_exhausted():
    pool = POOL[:30]
    pieces, _ = serialize(pool, "text")
    fast = zip_select(pieces, k1=10, k2=6, k3=3, budget=100)
    slow = naive_zip(30, text_list_ratio(pool), k1=10, k2=6, k3=3, budget=100)
    assert as_tuples(fast) == slow
    # Each round removes k2 = 6 and keeps k3 = 3: 5 rounds, 15 picks, all distinct.
    assert fast.stop_reason == "pool_exhausted" and fast.n_rounds == 5
    assert len(set(fast.positions.tolist())) == 15


def test_k1_larger_than_pool_takes_the_whole_pool_each_round():
    pool = POOL[:25]
    pieces, _ = serialize(pool, "text")
    fast = zip_select(pieces, k1=10_000, k2=5, k3=2, budget=8)
    assert as_tuples(fast) == naive_zip(25, text_list_ratio(pool), k1=10_000, k2=5, k3=2, budget=8)


def test_ties_go_to_the_lowest_position():
    pieces, _ = serialize(["same words here"] * 12, "text")
    result = zip_select(pieces, k1=12, k2=6, k3=3, budget=6)
    # Round 1 keeps positions 0..5 and picks 0, 1, 2; round 2 keeps 6..11 and picks 6, 7, 8.
    assert result.positions.tolist() == [0, 1, 2, 6, 7, 8]
    assert result.rounds.tolist() == [1, 1, 1, 2, 2, 2] and result.ranks.tolist() == [1, 2, 3] * 2


def test_null_and_empty_documents_are_never_candidates():
    texts = [None, POOL[0], "", POOL[1], float("nan"), POOL[2], POOL[3], POOL[4]]
    pieces, _ = serialize(texts, "text")
    result = zip_select(pieces, k1=10, k2=5, k3=5, budget=5)
    real = [1, 3, 5, 6, 7]
    slow = naive_zip(5, text_list_ratio([texts[i] for i in real]), k1=10, k2=5, k3=5, budget=5)
    assert result.positions.tolist() == [real[p] for p, *_ in slow]
    assert result.unscorable.tolist() == [0, 2, 4]


def test_empty_pool_and_zero_budget():
    empty = zip_select([], k1=3, k2=2, k3=1, budget=5)
    assert empty.positions.size == 0 and empty.stop_reason == "pool_exhausted"
    assert empty.selection_ratio is None
    nothing = zip_select([None, b""], k1=3, k2=2, k3=1, budget=5)
    assert nothing.positions.size == 0 and nothing.unscorable.tolist() == [0, 1]
    zero = zip_select(serialize(POOL, "text")[0], k1=3, k2=2, k3=1, budget=0)
    assert zero.positions.size == 0 and zero.n_rounds == 0 and zero.stop_reason == "budget"


def test_progress_callback_reports_every_round():
    seen = []
    pieces, _ = serialize(POOL, "text")
    result = zip_select(pieces, k1=20, k2=6, k3=3, budget=10, on_round=seen.append)
    assert [p.round for p in seen] == list(range(1, result.n_rounds + 1))
    assert [p.n_selected for p in seen] == [3, 6, 9, 10]
    assert seen[-1].pool_left == len(POOL) - 4 * 6


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(k1=5, k2=6, k3=1, budget=1), "k3 <= k2 <= k1"),
        (dict(k1=5, k2=2, k3=3, budget=1), "k3 <= k2 <= k1"),
        (dict(k1=0, k2=0, k3=0, budget=1), "k1 must be a positive integer"),
        (dict(k1=5, k2=2, k3=1, budget=-1), "budget"),
        (dict(k1=5, k2=2, k3=1, budget=1, backend="gzip"), "backend"),
        (dict(k1=5, k2=2, k3=1, budget=1, backend="zstd", zstd_level=0), "zstd_level"),
        (dict(k1=5, k2=2, k3=1, budget=1, char_lengths=[1]), "char_lengths"),
    ],
)
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zip_select([b"a", b"b"], **kwargs)


def test_bad_sharegpt_record_names_the_document():
    with pytest.raises(ValueError, match="doc_id 'd2'"):
        serialize(['{"conversations": []}', "{not json"], "sharegpt", ids=["d1", "d2"])
    with pytest.raises(ValueError, match="must be a dict"):
        serialize(["[1, 2]"], "sharegpt")


# ----------------------------------------------------------------------------------------------
# The compressed-prefix evaluators against one-shot compression


def test_zlib_prefix_copy_gives_one_shot_sizes():
    pool = make_pool(120, 0, seed=5, words_per_doc=(60, 200))
    pieces = [t.encode() for t in pool]
    for framing, opener, sep, closer in ((TEXT_FRAMING, b"", b"\n\n", b""),
                                         (PYTHON_LIST_FRAMING, b"[", b", ", b"]")):
        prefix = _ZlibPrefix(framing)
        for count in range(0, 100, 9):
            while prefix.n_docs < count:
                prefix.append(pieces[prefix.n_docs])
            candidates = pieces[100:106]
            got = prefix.ratios([c + closer for c in candidates])
            for candidate, value in zip(candidates, got, strict=True):
                assert value == zlib_ratio(opener + sep.join(pieces[:count] + [candidate]) + closer)
        whole = opener + sep.join(pieces) + closer
        assert list_compression(pieces, framing) == (len(whole), len(zlib.compress(whole, 9)))


def test_zstd_prefix_sees_beyond_deflates_window():
    pool = make_pool(200, 0, seed=9, words_per_doc=(60, 200))
    early = pool[0].encode()
    filler = [t.encode() for t in pool[1:150]]
    assert sum(len(f) for f in filler) > 64 * 1024  # `early` lies far outside deflate's window
    raw_prefix = len(b"\n\n".join([early, *filler]))
    added_bytes = {}
    prefixes = {"zlib": _ZlibPrefix(TEXT_FRAMING), "zstd": _ZstdPrefix(TEXT_FRAMING, 3)}
    for name, prefix in prefixes.items():
        for piece in [early, *filler]:
            prefix.append(piece)
        (with_repeat,) = prefix.ratios([early])
        # compressed size = raw / ratio, for the list with and without the repeated document
        with_size = (raw_prefix + 2 + len(early)) / with_repeat
        added_bytes[name] = with_size - raw_prefix / prefix.ratio()
    # Measured: zlib adds ~176 bytes for this 519-byte document, zstd ~21.
    assert added_bytes["zlib"] > 0.2 * len(early)
    assert added_bytes["zstd"] < 0.25 * added_bytes["zlib"]


def test_zstd_prefix_ratio_is_close_to_one_frame_of_the_whole_list():
    pool = make_pool(80, 10, seed=2)
    prefix = _ZstdPrefix(TEXT_FRAMING, 3)
    for text in pool[:60]:
        prefix.append(text.encode())
    for text, got in zip(pool[60:], prefix.ratios([t.encode() for t in pool[60:]]), strict=True):
        whole = "\n\n".join(pool[:60] + [text]).encode()
        one_frame = len(whole) / len(zstandard.ZstdCompressor(level=3).compress(whole))
        assert abs(got / one_frame - 1) < 0.02


# ----------------------------------------------------------------------------------------------
# The per-group pandas function


def test_group_budget_is_the_ceiling_of_the_fraction():
    assert group_budget(30, 999, unit="documents", fraction=0.1, total=None) == (3, None)
    assert group_budget(31, 999, unit="documents", fraction=0.1, total=None) == (4, None)
    assert group_budget(31, 999, unit="characters", fraction=0.1, total=None) == (31, 100)
    assert group_budget(31, 999, unit="documents", fraction=None, total=50) == (31, None)
    with pytest.raises(ValueError, match="exactly one"):
        group_budget(3, 3, unit="documents", fraction=0.1, total=4)


def test_select_group_matches_textbook_zip_in_doc_id_order_whatever_the_row_order():
    ids = [f"doc-{i:03d}" for i in range(len(POOL))]
    pdf = pd.DataFrame({"doc_id": ids, "text": POOL, "group": "q00"})
    shuffled = pdf.sample(frac=1.0, random_state=4).reset_index(drop=True)
    out = select_group(shuffled, k1=30, k2=8, k3=4, budget_fraction=0.2)
    slow = naive_zip(len(POOL), text_list_ratio(POOL), k1=30, k2=8, k3=4, budget=12)
    assert list(out.columns) == ZIP_SELECTION_COLUMNS
    assert out["doc_id"].tolist() == [ids[p] for p, *_ in slow]
    assert out["round"].tolist() == [r for _, r, _, _ in slow]
    assert out["rank"].tolist() == [k for _, _, k, _ in slow]
    assert set(out["group"]) == {"q00"} and set(out["stage"]) == {"group"}
    assert out["round"].dtype == np.int32 and out["rank"].dtype == np.int32


def test_select_group_edge_cases():
    empty = select_group(pd.DataFrame(columns=["doc_id", "text", "group"]), k1=3, k2=2, k3=1,
                         budget_fraction=0.5)
    assert empty.empty and list(empty.columns) == ZIP_SELECTION_COLUMNS
    twice = pd.DataFrame({"doc_id": ["a", "a"], "text": ["x", "y"], "group": "0"})
    with pytest.raises(ValueError, match="duplicate doc_id"):
        select_group(twice, k1=3, k2=2, k3=1, budget_fraction=0.5)
