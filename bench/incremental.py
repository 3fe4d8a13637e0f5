"""The daily chain on a grown lake: incremental vs a full recompute, and memory as data grows.

    python bench/incremental.py [--quick] [--docs N] [--work DIR]

A lake of N documents (default 1,000,000; --quick 40,000) of ~1 KB English-like prose, in four
JSONL files, built by the incremental chain (ingest → prefilter → score → bucketize, each
`mode: incremental`); then a daily batch of N/10 new documents lands as a fifth file and:
  incremental  the same incremental chain again: only the new file is read, only the new
               documents are judged, scored and placed (stored thresholds), all appended;
  full         the full chain over all 1.1 N documents into a fresh lake.
Each chain runs as `siftlake pipeline` in its own process (the CLI a scheduler would call);
peak memory is the largest sum of resident memory over that process and all its children (the
Spark driver JVM and the Python workers), sampled every 0.2 s; its seconds per step come from
its log. The 1x run builds the lake of N/4 documents (one file) the same way as the N-document
build. Prints, last:
    BENCH incremental_vs_full <incremental seconds ÷ full seconds> goal<=0.2
    BENCH peak_rss_4x_vs_1x <peak of the N build ÷ peak of the N/4 build> goal<=1.2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "local.yaml"
WORDS = ("the of and to in that with have be river stone light window garden morning village "
         "quiet across small people under water between always never before after during "
         "market bridge north winter summer letter station harbour doctor teacher field road "
         "house evening music story paper number system reason problem family question").split()
INCREMENTAL = ["ingest.mode=incremental", "prefilter.mode=incremental",
               "score.mode=incremental", "bucketize.mode=incremental"]


def write_corpus(path: Path, start: int, count: int, seed: int) -> None:
    """`count` documents of ~1 KB: 9-12 sentences drawn from a pool, plus a unique one."""
    rng = random.Random(seed)
    pool = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 13))).capitalize() + "."
            for _ in range(4000)]
    picks = np.random.default_rng(seed).integers(0, len(pool), size=(count, 12))
    lengths = np.random.default_rng(seed + 1).integers(9, 13, size=count)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            doc_id = start + i
            text = " ".join(pool[j] for j in picks[i, : lengths[i]])
            text += f" The record {doc_id} ends here."
            handle.write(json.dumps({"id": f"doc-{doc_id}", "text": text, "source": "bench"}))
            handle.write("\n")


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            with open(f"/proc/{current}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
    return total


def run_chain(name: str, lake: Path, paths: str, overrides: list[str]) -> tuple[float, int]:
    """(seconds, peak resident bytes) of one `siftlake pipeline` process; its log (timestamped,
    per job) is kept next to the lake."""
    command = [
        sys.executable, "-m", "jobs.cli", "pipeline", "--config", str(CONF),
        "--set", f"lake.root={lake}", "--set", f"ingest.paths=['{paths}']",
        "--set", "pipeline.steps=[ingest, prefilter, score, bucketize]",
        *[arg for o in overrides for arg in ("--set", o)],
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.time()
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    sampler.join()
    slug = name.replace(" ", "-").replace("/", "_")
    (lake.parent / f"chain-{slug}.log").write_text(output)
    if process.returncode != 0:
        print(output[-4000:])
        raise SystemExit(f"{name}: siftlake pipeline exited {process.returncode}")
    summary = [line for line in output.splitlines() if line.startswith("[pipeline]")]
    print(f"{name:<12} {seconds:8.1f} s  peak {peak[0] / 2**30:5.2f} GiB  {summary[-1:]}",
          flush=True)
    print(f"{'':<12} {step_seconds(output, started, seconds)}", flush=True)
    return seconds, peak[0]


def step_seconds(output: str, started: float, seconds: float) -> str:
    """Seconds per step, from the log's `pipeline: running <step>` lines: `start` is Python and
    Spark up to the first step; each step runs until the next one starts (the last, until the
    process ends)."""
    marks = [(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp(), line.split()[-1])
             for line in output.splitlines() if "siftlake pipeline: running " in line]
    if not marks:
        return "steps: not logged"
    times = [started] + [t for t, _ in marks] + [started + seconds]
    names = ["start"] + [step for _, step in marks]
    return "steps: " + ", ".join(f"{step} {b - a:.1f} s" for step, a, b
                                 in zip(names, times, times[1:], strict=False))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docs", type=int, default=None, help="documents in the lake (N)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args()
    n = args.docs or (40_000 if args.quick else 1_000_000)
    work = Path(args.work or tempfile.mkdtemp(prefix="siftlake-bench-incremental-"))
    corpus, daily = work / "corpus", work / "daily"
    corpus.mkdir(parents=True, exist_ok=True)
    daily.mkdir(exist_ok=True)
    try:
        quarter = n // 4
        for part in range(4):
            write_corpus(corpus / f"base-{part}.jsonl", part * quarter, quarter, seed=part)
        write_corpus(daily / "day-1.jsonl", 4 * quarter, n // 10, seed=99)
        print(f"N={4 * quarter:,} documents + daily {n // 10:,}; {work}", flush=True)

        _, peak_1x = run_chain("build N/4", work / "lake-1x", f"{corpus}/base-0.jsonl",
                               INCREMENTAL)
        _, peak_4x = run_chain("build N", work / "lake", f"{corpus}/*.jsonl", INCREMENTAL)
        shutil.move(str(daily / "day-1.jsonl"), corpus / "day-1.jsonl")
        incremental, _ = run_chain("incremental", work / "lake", f"{corpus}/*.jsonl",
                                   INCREMENTAL)
        full, _ = run_chain("full", work / "lake-full", f"{corpus}/*.jsonl", [])
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"BENCH incremental_vs_full {incremental / full:.3f} goal<=0.2")
    print(f"BENCH peak_rss_4x_vs_1x {peak_4x / peak_1x:.3f} goal<=1.2")


if __name__ == "__main__":
    main()
