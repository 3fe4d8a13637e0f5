"""fastText scoring throughput: the scoring UDF on local[2] against in-process peers.

Peers, on the same documents and the same model, measured in interleaved rounds (best of each):
  raw        the UDF's own kernel (`score_arrow`: newline replacement in Arrow, then a tight
             `f.predict` loop) on an in-memory Arrow array in this process.
  raw_list   `score_texts` on a Python list (the same predict loop, preprocessing in Python).
             The UDF has 2 cores: fasttext_udf_vs_raw = UDF / (2 x the faster of raw, raw_list).
  two_procs  the same kernel in 2 forked processes at once, each on half the documents: what
             2 cores really deliver at that moment (other processes share this machine).
             fasttext_udf_vs_two_processes = UDF / two_procs.
  per_doc    DataTrove's FastTextClassifierFilter emulated in one process (DataTrove is not a
             dependency): BaseFilter.run's per-document stats and timing context, the filter's
             split into one DOCUMENT unit, strip + newline replacement, the fastText wrapper's
             work (`f.predict`, unzip, NumPy array of probabilities), per-label score lists
             averaged with np.mean(...).item() into the document's metadata, the keep test.
             `model.predict(str)` raises under NumPy 2 (shared/NOTES.md), so the wrapper's
             NumPy-2-safe equivalent is used. fasttext_udf_vs_per_doc = UDF / per_doc (one
             process, as DataTrove's ~5.3K docs/s in shared/NOTES.md was measured).
  passthrough  Spark reading the same cached column with no Python, and empty_udf, a UDF of the
           scorer's kind that returns zeros (context: the engine's ceilings for this column).

  udf_shipped  the UDF with the model shipped by addFile: each worker loads its own copy. The
           headline `udf` uses the preloading daemon (spark.preload_fasttext): both workers
           share one copy, as the two forked processes of two_procs do.

Documents are synthetic (~700 characters, 9 lines). The UDF reads a cached DataFrame and
writes to Spark's no-op sink; its workers are warmed up first (one model load each). With
`--quick` (30K documents) each Spark job lasts about a second, so its ~0.3 s fixed cost weighs
on the UDF ratios; the full run (200K documents, the recipe's 2M buckets) is the one to quote.
This machine is shared: compare the peers only within one run, and read the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# Run as `python bench/fasttext.py`: put the repository root where the script's own folder was,
# so that `import fasttext` finds the library rather than this file.
sys.path[0] = str(Path(__file__).resolve().parents[1])
# Spark's Python workers inherit this, so they import the package from any working directory.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [sys.path[0], os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from jobs.core.session import build_session  # noqa: E402
from jobs.fasttext_train import train_classifier  # noqa: E402
from udfs.fasttext_score import (  # noqa: E402
    load_fasttext_model,
    make_fasttext_udf,
    score_arrow,
    score_texts,
)

# Inherited by the forked two_procs workers (fork start method: nothing is pickled).
_SHARED: dict = {}


def synthetic_documents(n: int, seed: int) -> tuple[list[str], list[int]]:
    """Zipf-distributed pseudo-words; the two classes prefer different halves of the vocabulary."""
    rng = random.Random(seed)
    vocabulary = [f"w{index:04d}" + "xyz"[index % 3] * (index % 5) for index in range(6000)]
    cumulative = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(vocabulary))))
    halves = (vocabulary[::2] + vocabulary[1::2], vocabulary[1::2] + vocabulary[::2])
    texts, labels = [], []
    for _ in range(n):
        label = rng.random() < 0.5
        words = rng.choices(halves[label], cum_weights=cumulative, k=90)
        lines = [" ".join(words[start:start + 11]) for start in range(0, len(words), 11)]
        texts.append("\n".join(lines))
        labels.append(int(label))
    return texts, labels


@dataclass
class Document:
    text: str
    id: str
    metadata: dict = field(default_factory=dict)


class FilterStats:
    """The bookkeeping DataTrove's BaseFilter does around every document."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.seconds = 0.0
        self.doc_chars = 0

    @contextlib.contextmanager
    def track_time(self):
        started = time.perf_counter()
        yield
        self.seconds += time.perf_counter() - started


def datatrove_style_filter(model, documents, keep_label="__label__1", min_score=0.5):
    stats = FilterStats()
    for document in documents:
        stats.counts["total"] += 1
        with stats.track_time():
            units = [document.text]  # split_into_parts(text, mode=DOCUMENT)
            label_scores: defaultdict[str, list[float]] = defaultdict(list)
            for unit in units:
                predictions = model.f.predict(unit.strip().replace("\n", " ") + "\n", -1, 0.0,
                                              "strict")
                probabilities, labels = zip(*predictions, strict=True)
                for label, score in zip(labels, np.asarray(probabilities), strict=True):
                    label_scores[label].append(score)
            document.metadata.update(
                {label: np.mean(scores).item() for label, scores in label_scores.items()}
            )
            keep = document.metadata.get(keep_label, -9e9) >= min_score
        if keep:
            stats.counts["forwarded"] += 1
            stats.doc_chars += len(document.text)
            yield document
        else:
            stats.counts["dropped"] += 1


def _score_half(half: int) -> int:
    texts = _SHARED["texts"]
    middle = len(texts) // 2
    return len(score_arrow(texts[:middle] if half == 0 else texts[middle:], _SHARED["model"]))


def seconds_of(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30K documents, bucket 100K")
    parser.add_argument("--docs", type=int, default=None)
    parser.add_argument("--bucket", type=int, default=None, help="recipe: 2,000,000")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    n_docs = args.docs or (30_000 if args.quick else 200_000)
    bucket = args.bucket or (100_000 if args.quick else 2_000_000)
    rounds = args.rounds or (2 if args.quick else 5)

    workdir = tempfile.mkdtemp(prefix="bench_fasttext_")
    train_texts, train_labels = synthetic_documents(5_000 if args.quick else 20_000, seed=1)
    meta = train_classifier(
        pd.DataFrame({"text": train_texts, "label": train_labels}), out_dir=workdir,
        bucket=bucket, thread=2, holdout_fraction=0.1,
    )
    model_path = os.path.join(workdir, meta["model_file"])
    print(f"model: bucket={bucket:,}, {meta['model_bytes'] / 1e6:.0f} MB, holdout accuracy "
          f"{meta['holdout']['accuracy']:.3f}")
    texts, _ = synthetic_documents(n_docs, seed=2)
    print(f"{n_docs:,} documents, mean {np.mean([len(t) for t in texts]):.0f} characters")
    try:
        import datatrove  # noqa: F401

        print("note: datatrove is installed, but its emulation below is what was timed")
    except ImportError:
        print("note: datatrove is not installed; per_doc emulates its filter loop")

    model = load_fasttext_model(model_path)
    arrow_texts = pa.array(texts, pa.string())
    _SHARED.update(texts=arrow_texts, model=model)
    documents = [Document(text, str(index)) for index, text in enumerate(texts)]
    pool = multiprocessing.get_context("fork").Pool(2)
    # The executors' daemon preloads the model (spark.preload_fasttext), as the score job does
    # when configured; `udf_shipped` is the other way: a copy per worker via addFile.
    spark = build_session(master="local[2]", app_name="bench-fasttext",
                          preload_fasttext=[model_path])
    try:
        spark.sparkContext.addFile(model_path)
        frame = spark.createDataFrame(pd.DataFrame({"text": texts})).repartition(8).persist()
        frame.count()
        score = make_fasttext_udf(os.path.abspath(model_path))
        shipped = make_fasttext_udf(os.path.basename(model_path))
        # Warm-up touching every partition, so each Python worker has loaded the model.
        frame.sample(0.02, seed=0).select(score("text"), shipped("text")).write.format(
            "noop").mode("overwrite").save()
        pool.map(_score_half, [0, 1])

        @F.arrow_udf("double")
        def zeros(texts: pa.Array) -> pa.Array:
            return pa.array(np.zeros(len(texts)))

        def noop_write(column) -> None:
            frame.select(column).write.format("noop").mode("overwrite").save()

        peers = {
            "raw": lambda: score_arrow(arrow_texts, model),
            "raw_list": lambda: score_texts(texts, model),
            "two_procs": lambda: pool.map(_score_half, [0, 1]),
            "per_doc": lambda: sum(1 for _ in datatrove_style_filter(model, documents)),
            "udf": lambda: noop_write(score("text")),
            "udf_shipped": lambda: noop_write(shipped("text")),
            "passthrough": lambda: noop_write(F.length("text")),
            "empty_udf": lambda: noop_write(zeros("text")),
        }
        # Interleaved rounds, best of each: load from other processes drifts during a run.
        rate = dict.fromkeys(peers, 0.0)
        for _ in range(rounds):
            for name, run in peers.items():
                rate[name] = max(rate[name], n_docs / seconds_of(run))
        sample = frame.limit(500).select("text", score("text").alias("s")).toPandas()
        assert np.array_equal(sample.s.to_numpy(), score_texts(sample.text, model))
    finally:
        pool.terminate()
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print(f"raw kernel, 1 process:            {rate['raw']:10,.0f} docs/s")
    print(f"score_texts on a list, 1 process: {rate['raw_list']:10,.0f} docs/s")
    print(f"raw kernel, 2 processes:          {rate['two_procs']:10,.0f} docs/s")
    print(f"DataTrove-style per-document:     {rate['per_doc']:10,.0f} docs/s (1 process)")
    print(f"scoring UDF, local[2]:            {rate['udf']:10,.0f} docs/s (model preloaded)")
    print(f"same, a model copy per worker:    {rate['udf_shipped']:10,.0f} docs/s (addFile)")
    print(f"Spark pass-through, local[2]:     {rate['passthrough']:10,.0f} docs/s (no Python)")
    print(f"UDF returning zeros:              {rate['empty_udf']:10,.0f} docs/s")
    best_raw = max(rate["raw"], rate["raw_list"])  # the faster in-process form is the yardstick
    print(f"BENCH fasttext_udf_vs_raw {rate['udf'] / (2 * best_raw):.2f} goal>=0.8")
    print(f"BENCH fasttext_udf_vs_two_processes {rate['udf'] / rate['two_procs']:.2f} goal>=0.8")
    print(f"BENCH fasttext_udf_shipped_vs_raw {rate['udf_shipped'] / (2 * best_raw):.2f}")
    print(f"BENCH fasttext_udf_vs_per_doc {rate['udf'] / rate['per_doc']:.2f} goal>=1.5")


if __name__ == "__main__":
    from bench.same_env import rerun_with_worker_env

    rerun_with_worker_env()
    main()
