"""The MinHash band-key kernel: normalisation, batch independence, LSH collision rates."""

import random

import numpy as np
import pandas as pd
import pyarrow as pa

from udfs.minhash import minhash_bands, minhash_bands_series

WORDS = [f"w{i}" for i in range(5000)]


def keys(texts, **settings):
    return minhash_bands(pa.array(texts, pa.string()), **settings).to_pylist()


def test_case_punctuation_and_spacing_do_not_hide_a_copy():
    text = "The river runs, quietly; under the old stone bridge at dawn."
    variants = [text.upper(), "  the RIVER runs quietly under\nthe old stone bridge at dawn ",
                text.replace(",", " ,")]
    first, *others = keys([text, *variants])
    assert all(other == first for other in others)
    assert len(first) == 14 and len(set(first)) == 14  # the band index is in each key
    assert keys([text.replace("river", "rivers")])[0] != first


def test_no_words_give_null_and_short_texts_one_shingle():
    out = keys([None, "", "  \n ", "...", "one two", "one two", "two one"])
    assert out[:4] == [None] * 4
    assert out[4] == out[5] and out[4] != out[6] and len(out[4]) == 14


def test_keys_do_not_depend_on_the_batch_a_text_arrives_in():
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS[:300]) for _ in range(rng.randint(1, 120)))
             for _ in range(60)]
    together = keys(texts)
    apart = [keys([t])[0] for t in texts]
    assert together == apart == keys(list(reversed(texts)))[::-1]
    assert minhash_bands_series(pd.Series(texts)).map(list).tolist() == together


def test_band_collisions_follow_the_lsh_curve():
    """Pairs of Jaccard similarity s share a band with probability 1 - (1 - s^r)^b."""
    rng = random.Random(1)
    bands, rows = 14, 8
    for replaced, trials in ((0.0, 20), (0.02, 200), (0.2, 200)):
        hits, similarity = 0, []
        for _ in range(trials):
            words = [rng.choice(WORDS) for _ in range(300)]
            copy = [rng.choice(WORDS) if rng.random() < replaced else w for w in words]
            a, b = keys([" ".join(words), " ".join(copy)], bands=bands, rows=rows)
            hits += bool(set(a) & set(b))
            grams = [{tuple(x[i:i + 5]) for i in range(len(x) - 4)} for x in (words, copy)]
            similarity.append(len(grams[0] & grams[1]) / len(grams[0] | grams[1]))
        expected = np.mean([1 - (1 - s**rows) ** bands for s in similarity])
        assert abs(hits / trials - expected) < 0.08, (replaced, hits / trials, expected)
    # 2% of words replaced (s ~ 0.82) is nearly always caught; 20% (s ~ 0.35) nearly never.
    assert expected < 0.05
