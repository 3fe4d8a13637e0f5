"""Pre-filter statistics: the Arrow UDF vs its kernel, and the kernel vs a per-document loop.

    python bench/prefilter.py [--quick] [--docs N]

Peers, on the same documents (~1-2 KB of English-like prose, lists and headings, plus the junk
crawls hold: keyword spam, repeated boilerplate, menus, random characters, lorem ipsum, binary
garbage, one-line snippets), in interleaved rounds (best of each):
  raw        the UDF's own kernel (`prefilter_statistics`) over Arrow batches of the UDF's batch
             size, one process.
  per_doc    the same rules the way DataTrove's filters run: one object per filter (Gopher
             quality, Gopher repetition, FineWeb, control characters), each splitting the
             document again, one document per call, stopping at the first failed check
             (tests/udfs/prefilter_reference.py), one process.
  udf        the statistics UDF on local[2], cached input, Spark's no-op sink.
  empty_udf  an Arrow UDF returning the same struct of zeros: the engine's ceiling for any UDF.
and for the near-duplicate band keys (the `dedup` family, udfs/minhash.py):
  minhash_raw      the kernel (`minhash_bands`, 14 bands of 8) over the same Arrow batches.
  minhash_per_doc  MinHash the way DataTrove's signature step runs: per document, a Python
                   hash per 5-gram shingle, then 112 hash functions in NumPy, one process.
  minhash_udf      the band-key UDF on local[2], cached input, no-op sink.

It checks that the per-document loop and the job's verdicts (UDF + the rules in Spark) agree on
every document, then prints, last:
    BENCH prefilter_udf_vs_raw <udf ÷ (2 × raw)> goal>=0.8
    BENCH prefilter_udf_vs_ceiling <udf ÷ 1/(1/empty_udf + 1/(2 × raw))>
    BENCH prefilter_vs_per_doc <raw ÷ per_doc> goal>=2
    BENCH minhash_udf_vs_raw <minhash_udf ÷ (2 × minhash_raw)>
    BENCH minhash_vs_per_doc <minhash_raw ÷ minhash_per_doc>
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import string
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.sql import functions as F  # noqa: E402

from jobs.core.config import PrefilterSettings  # noqa: E402
from jobs.core.session import build_session  # noqa: E402
from jobs.prefilter import measure  # noqa: E402
from jobs.prefilter_rules import active_rules, apply_rules, threshold  # noqa: E402
from tests.udfs.prefilter_reference import passes  # noqa: E402
from udfs.minhash import make_minhash_udf, minhash_bands  # noqa: E402
from udfs.prefilter import (  # noqa: E402
    SPARK_SCHEMA,
    STATISTICS,
    make_prefilter_udf,
    prefilter_statistics,
)

BATCH = 2000  # spark.sql.execution.arrow.maxRecordsPerBatch of the shipped configs
FUNCTION_WORDS = ("the of and to a in is that for it with as was on be by this are have from at "
                  "or an which not but their can more its also has been were when these").split()
BOILERPLATE = ("We use cookies to improve your experience. By continuing you accept our use of "
               "cookies. Read our privacy policy. ")


class Writer:
    """English-like text: Zipf-distributed pseudo-words between real function words."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        syllables = [c + v for c in "bcdfghklmnprstvw" for v in ("a", "e", "i", "o", "u", "ou")]
        self.vocab = ["".join(self.rng.choice(syllables) for _ in range(self.rng.randint(1, 4)))
                      for _ in range(6000)]
        self.zipf = list(itertools.accumulate(1 / (rank + 10) for rank in range(len(self.vocab))))

    def word(self) -> str:
        if self.rng.random() < 0.4:
            return self.rng.choice(FUNCTION_WORDS)
        return self.rng.choices(self.vocab, cum_weights=self.zipf)[0]

    def sentence(self) -> str:
        words = [self.word() for _ in range(self.rng.randint(6, 22))]
        if self.rng.random() < 0.3:
            words[self.rng.randrange(len(words))] += ","
        return " ".join(words).capitalize() + self.rng.choice(".....!?")

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, 6)))

    def document(self) -> str:
        rng = self.rng
        kind = rng.random()
        if kind < 0.70:  # prose, sometimes under a heading
            paragraphs = [self.paragraph() for _ in range(rng.randint(2, 5))]
            if rng.random() < 0.3:
                paragraphs.insert(0, self.sentence().rstrip(".!?"))
            return "\n\n".join(paragraphs)
        if kind < 0.78:  # a how-to with a list
            items = "\n".join(f"- {self.sentence()}" for _ in range(rng.randint(3, 9)))
            return f"{self.sentence()}\n\n{self.paragraph()}\n\n{items}\n\n{self.paragraph()}"
        if kind < 0.83:  # a quotation or snippet
            return self.sentence()
        if kind < 0.87:  # keyword spam
            keys = [self.word() for _ in range(4)]
            return " ".join(rng.choice(keys) for _ in range(rng.randint(150, 300)))
        if kind < 0.91:  # repeated boilerplate around a little text
            return BOILERPLATE * rng.randint(3, 8) + self.paragraph()
        if kind < 0.93:  # navigation menu
            return "\n".join(rng.choice(["Home", "About us", "Contact", "Shop", "Login", "Help"])
                             for _ in range(rng.randint(20, 60)))
        if kind < 0.96:  # random characters
            alphabet = string.ascii_letters + string.digits + string.punctuation + " "
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(600, 1600)))
        if kind < 0.98:
            return ("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 12).strip()
        return "".join(chr(rng.randint(0, 0x24F)) for _ in range(rng.randint(400, 1200)))


def python_checks(settings: PrefilterSettings) -> dict:
    """statistic -> failed? for the per-document loop, from the same rules and thresholds."""
    checks: dict = {}
    for rule in active_rules(settings):
        limit = threshold(rule, settings)
        if rule.kind == "max":
            test = (lambda t: lambda v: v is None or v > t)(limit)
        elif rule.kind == "min":
            test = (lambda t: lambda v: v is None or v < t)(limit)
        else:
            test = bool
        previous = checks.get(rule.statistic)
        checks[rule.statistic] = test if previous is None else (
            lambda a, b: lambda v: a(v) or b(v))(previous, test)
    return checks


def zeros_udf():
    from pyspark.sql.functions import arrow_udf

    @arrow_udf(SPARK_SCHEMA)
    def zeros(texts: pa.Array) -> pa.Array:
        n = len(texts)
        return pa.StructArray.from_arrays(
            [pa.array(np.zeros(n), f.type) if f.type != pa.bool_() else pa.array(np.zeros(n, bool))
             for f in STATISTICS], fields=list(STATISTICS))

    return zeros


def seconds_of(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def minhash_per_doc(text: str, a: np.ndarray, b: np.ndarray) -> list[int]:
    """One document's 14 band keys as a per-document signature step computes them."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    grams = [" ".join(words[i:i + 5]) for i in range(max(1, len(words) - 4))]
    shingles = np.array([zlib.crc32(g.encode()) for g in grams], np.uint64)
    signature = ((shingles[:, None] * a[None, :] + b[None, :]) % np.uint64(2**32)).min(axis=0)
    return [hash(tuple(band)) for band in signature.reshape(14, 8)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=int, default=None)
    args = parser.parse_args()
    n = args.docs or (8_000 if args.quick else 60_000)
    n_per_doc = max(200, n // 20)  # the slow loop gets a slice; its rate is what counts
    rounds = 2 if args.quick else 3
    writer = Writer(0)
    docs = [writer.document() for _ in range(n)]
    arrow_docs = pa.array(docs, pa.string())
    # The rule families of one document alone (the per-document loop has no dedup: that is
    # the band-key peers' business).
    settings = PrefilterSettings(
        families=[f for f in PrefilterSettings().families if f != "dedup"])
    checks, families = python_checks(settings), set(settings.families)
    passes(docs[0], checks, families)  # builds the filters (the control-character class) once

    spark = build_session("local[2]", "bench-prefilter", {
        "spark.sql.shuffle.partitions": "8",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(BATCH),
    })
    df = spark.createDataFrame([(i, t) for i, t in enumerate(docs)], "doc_id long, text string")
    df = df.repartition(8).cache()
    df.count()
    udf, zeros = make_prefilter_udf(), zeros_udf()

    def noop(column) -> None:
        df.select(column).write.format("noop").mode("overwrite").save()

    def raw() -> None:
        for start in range(0, n, BATCH):
            prefilter_statistics(arrow_docs.slice(start, BATCH))

    def minhash_raw() -> None:
        for start in range(0, n, BATCH):
            minhash_bands(arrow_docs.slice(start, BATCH))

    rng = np.random.default_rng(0)
    a, b = (rng.integers(1, 2**32, 112, dtype=np.uint64) for _ in range(2))
    bands_udf = make_minhash_udf(5, 14, 8, 1)

    peers = {
        "raw": (raw, n),
        "per_doc": (lambda: [passes(d, checks, families) for d in docs[:n_per_doc]], n_per_doc),
        "udf": (lambda: noop(udf("text")), n),
        "empty_udf": (lambda: noop(zeros("text")), n),
        "minhash_raw": (minhash_raw, n),
        "minhash_per_doc": (lambda: [minhash_per_doc(d, a, b) for d in docs[:n_per_doc]],
                            n_per_doc),
        "minhash_udf": (lambda: noop(bands_udf("text")), n),
    }
    noop(udf("text"))  # warm the Python workers
    rate = dict.fromkeys(peers, 0.0)
    for _ in range(rounds):
        for name, (run, count) in peers.items():
            rate[name] = max(rate[name], count / seconds_of(run))

    sample = df.where(F.col("doc_id") < n_per_doc).select(
        "doc_id", F.lit("bench").alias("source"), F.length("text").alias("n_chars"), "text")
    measured = measure(sample)  # the job's own plan: one UDF call, its struct expanded
    verdicts = {r.doc_id: r.passed for r in apply_rules(measured, settings).collect()}
    agree = sum(verdicts[i] == passes(docs[i], checks, families) for i in range(n_per_doc))
    passed_share = sum(verdicts.values()) / len(verdicts)
    spark.stop()

    ceiling = 1 / (1 / rate["empty_udf"] + 1 / (2 * rate["raw"]))
    mean_chars = sum(map(len, docs)) / n
    print(f"docs: {n:,} of {mean_chars:,.0f} characters on average; {passed_share:.0%} pass the "
          f"default rules; load average at the end {os.getloadavg()}")
    print(f"verdicts of the job (UDF + rules in Spark) and of the per-document loop agree on "
          f"{agree:,} of {n_per_doc:,} documents")
    print(f"raw kernel (Arrow batches), 1 process: {rate['raw']:10,.0f} docs/s")
    print(f"per-document filters, 1 process:       {rate['per_doc']:10,.0f} docs/s")
    print(f"UDF, local[2], cached -> noop:          {rate['udf']:10,.0f} docs/s")
    print(f"empty UDF (same struct), -> noop:       {rate['empty_udf']:10,.0f} docs/s")
    print(f"additive ceiling 1/(1/empty + 1/(2 raw)): {ceiling:8,.0f} docs/s")
    if agree != n_per_doc:
        raise SystemExit("the per-document loop and the job disagree: fix before comparing speed")
    print(f"BENCH prefilter_udf_vs_raw {rate['udf'] / (2 * rate['raw']):.3f} goal>=0.8")
    print(f"BENCH prefilter_udf_vs_ceiling {rate['udf'] / ceiling:.3f}")
    print(f"BENCH prefilter_vs_per_doc {rate['raw'] / rate['per_doc']:.3f} goal>=2")
    print(f"minhash kernel {rate['minhash_raw']:,.0f}, per document {rate['minhash_per_doc']:,.0f},"
          f" UDF on local[2] {rate['minhash_udf']:,.0f} docs/s")
    print(f"BENCH minhash_udf_vs_raw {rate['minhash_udf'] / (2 * rate['minhash_raw']):.3f}")
    print(f"BENCH minhash_vs_per_doc {rate['minhash_raw'] / rate['minhash_per_doc']:.3f}")


if __name__ == "__main__":
    from bench.same_env import rerun_with_worker_env

    rerun_with_worker_env()
    main()
