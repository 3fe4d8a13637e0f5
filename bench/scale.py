"""The daily chain (ingest → prefilter → score → bucketize) at 1M and 4M documents (10M with
`--big`) on the embedded default (conf/local.yaml), with per-job wall time and the peak RSS of
the whole process tree (driver Python, JVM and Python workers, sampled from /proc), with the
JVM's own peak RSS, its committed heap (`jstat -gc`) and the driver Python's RSS beside it (the
rest is Python workers).

Input: synthetic JSONL of ~1.2 KB documents, each 12 sentences drawn from a pool of varied
random-word sentences (so documents differ and pass the pre-filter), 1% malformed lines and 1%
reused ids (so the quarantine and duplicate paths run too). It is written by two processes,
deleted afterwards, and every size runs in a fresh Spark session of its own.

    BENCH scale_time_4x <chain time(4M) ÷ time(1M)> goal<=4.4
    BENCH scale_peak_rss_4x <peak RSS of the process tree at 4M ÷ at 1M> goal<=1.2
    BENCH scale_chain_docs_per_s_4m <documents ÷ chain seconds at 4M>
    (--big adds scale_time_10x goal<=11 and scale_peak_rss_10x goal<=1.2, against 1M)

`--quick` runs 5K and 20K documents (the same figures, named as at 1M/4M) in under a minute;
`--sizes` and `--chain` run other sizes or part of the chain (figures per job only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ["ingest", "prefilter", "score", "bucketize"]
STOP_WORDS = ["the", "of", "and", "to", "that", "with", "have", "be", "in", "a", "is", "for"]
SENTENCES_PER_DOC = 12
FILES = 8
PAGE = os.sysconf("SC_PAGE_SIZE")


# -- input ----------------------------------------------------------------------------------------

_POOL: list[str] = []


def sentence_pool(size: int = 50_000) -> list[str]:
    """Sentences of 12-19 random words (the same in every process: a fixed seed), built once."""
    if _POOL:
        return _POOL
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 10, 20_000)
    letters = rng.integers(0, 26, int(lengths.sum())) + ord("a")
    flat = letters.astype(np.uint8).tobytes().decode("ascii")
    ends = np.cumsum(lengths)
    vocab = [flat[end - n:end] for end, n in zip(ends, lengths, strict=True)]
    # Zipf-like word frequencies, with stop words among the most frequent, as in real text.
    words = STOP_WORDS + vocab
    weights = 1.0 / np.arange(1, len(words) + 1)
    sentence_lengths = rng.integers(12, 20, size)
    picks = rng.choice(len(words), int(sentence_lengths.sum()), p=weights / weights.sum())
    start = 0
    for length in sentence_lengths:
        sentence = " ".join(words[i] for i in picks[start:start + length])
        _POOL.append(sentence[0].upper() + sentence[1:] + ".")
        start += length
    return _POOL


def _write_file(args: tuple[str, int, int, int]) -> None:
    path, first, count, seed = args
    pool = sentence_pool()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(pool), (count, SENTENCES_PER_DOC))
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as out:
        for offset, row in enumerate(picks):
            number = first + offset
            if number % 100 == 1:
                out.write('{"id": "broken\n')
                continue
            doc_id = f"d{number - 49}" if number % 100 == 51 else f"d{number}"
            paragraphs = [" ".join(pool[i] for i in row[k:k + 4]) for k in range(0, len(row), 4)]
            text = "\n".join(paragraphs)
            out.write(json.dumps({"id": doc_id, "text": text, "source": f"site{number % 7}"}))
            out.write("\n")


def generate(n_docs: int, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    per_file = -(-n_docs // FILES)
    jobs = [
        (str(folder / f"part-{i:02d}.jsonl"), i * per_file, min(per_file, n_docs - i * per_file), i)
        for i in range(FILES) if i * per_file < n_docs
    ]
    with Pool(2) as pool:
        pool.map(_write_file, jobs)
    return [path for path, *_ in jobs]


# -- measurement ----------------------------------------------------------------------------------

def process_rss(pid: int) -> int:
    """A process's resident set size in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(root: int) -> tuple[int, dict[int, int]]:
    """(sum of the resident set sizes of `root` and all its descendants in bytes, the RSS of each
    Java process among them by pid)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    java: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        rss[int(entry)] = process_rss(int(entry))
        if stat.split(" (", 1)[1].startswith("java)"):
            java.add(int(entry))
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    total, jvms, pending = 0, {}, [root]
    while pending:
        pid = pending.pop()
        total += rss.get(pid, 0)
        if pid in java:
            jvms[pid] = rss.get(pid, 0)
        pending.extend(children.get(pid, []))
    return total, jvms


def heap_committed(pid: int) -> int | None:
    """The JVM's committed heap in bytes (survivor + eden + old capacity, `jstat -gc`), or None
    where jstat is missing or the JVM is gone. The heap grows towards -Xmx (the driver memory
    setting) as the JVM sees fit, so this says how much of a peak the setting still bounds."""
    try:
        out = subprocess.run(["jstat", "-gc", str(pid)], capture_output=True, text=True,
                             timeout=10).stdout.split("\n")
        values = dict(zip(out[0].split(), out[1].split(), strict=False))
        return int(sum(float(values[k]) for k in ("S0C", "S1C", "EC", "OC")) * 1024)
    except (OSError, subprocess.SubprocessError, IndexError, KeyError, ValueError):
        return None


def run_chain(paths: list[str], lake: Path, chain: list[str]) -> dict[str, dict]:
    """Run the chain in a child process (its own Spark session); per job: seconds, peak RSS."""
    command = [sys.executable, __file__, "--chain", ",".join(chain), "--child", str(lake), *paths]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    results: dict[str, dict] = {}
    current: list[str | None] = [None]
    peaks: dict[str, dict[str, int]] = {}

    def sample() -> None:
        last_jstat = 0.0
        while child.poll() is None:
            rss, jvms = tree_rss(child.pid)
            job = current[0]
            if job is not None:
                peak = peaks.setdefault(job, {"rss": 0, "jvm_rss": 0, "heap": 0, "driver": 0})
                peak["rss"] = max(peak["rss"], rss)
                peak["jvm_rss"] = max(peak["jvm_rss"], sum(jvms.values()))
                peak["driver"] = max(peak["driver"], process_rss(child.pid))
                if jvms and time.monotonic() - last_jstat > 5:  # jstat starts a JVM: not often
                    last_jstat = time.monotonic()
                    heap = heap_committed(max(jvms, key=jvms.get))
                    peak["heap"] = max(peak["heap"], heap or 0)
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in child.stdout:
        if line.startswith("JOB_START "):
            current[0] = line.split()[1]
        elif line.startswith("JOB_END "):
            _, name, seconds = line.split()
            peak = peaks.get(name, {"rss": 0, "jvm_rss": 0, "heap": 0, "driver": 0})
            results[name] = {"seconds": float(seconds), "peak_rss": peak["rss"]}
            current[0] = None
            # jstat runs every 5 s at most: a shorter job may have no heap sample.
            heap = f"{peak['heap'] / 2**30:.2f} GiB" if peak["heap"] else "not sampled"
            print(f"  {name:10s} {float(seconds):8.1f} s   peak RSS {peak['rss'] / 2**30:.2f} GiB"
                  f" (JVM {peak['jvm_rss'] / 2**30:.2f} GiB, its heap committed {heap}; "
                  f"driver Python {peak['driver'] / 2**30:.2f} GiB)", flush=True)
        else:
            print("   ", line.rstrip(), flush=True)
    if child.wait() != 0:
        raise SystemExit(f"the chain failed (rc {child.returncode}) at {current[0]}")
    sampler.join()
    return results


def child_main(lake: str, paths: list[str], chain: list[str]) -> None:
    from jobs.core.config import load_config
    from jobs.core.registry import job_runner
    from jobs.core.session import build_session

    cfg = load_config(
        ROOT / "conf" / "local.yaml",
        [f"lake.root={lake}", f"ingest.paths={json.dumps(paths)}"],
    )
    spark = build_session(cfg.spark.master, cfg.spark.app_name, cfg.spark.conf)
    for job in chain:
        print(f"JOB_START {job}", flush=True)
        start = time.perf_counter()
        report = job_runner(job)(spark, cfg)
        print(report.summary().splitlines()[0], flush=True)
        print(f"JOB_END {job} {time.perf_counter() - start:.2f}", flush=True)
    spark.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5K and 20K documents")
    parser.add_argument("--big", action="store_true", help="also 10M documents")
    parser.add_argument("--workdir", default=None, help="input and lake (deleted afterwards)")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated document counts instead (e.g. 4000000)")
    parser.add_argument("--chain", default=",".join(CHAIN), help="jobs to run, in order")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    chain_jobs = args.chain.split(",")
    if args.child:
        child_main(args.child[0], args.child[1:], chain_jobs)
        return
    sizes = [5_000, 20_000] if args.quick else [1_000_000, 4_000_000]
    if args.big and not args.quick:
        sizes.append(10_000_000)
    if args.sizes:
        sizes = [int(n) for n in args.sizes.split(",")]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="siftlake-scale-"))
    chain: dict[int, tuple[float, int]] = {}
    try:
        for n_docs in sizes:
            start = time.perf_counter()
            paths = generate(n_docs, workdir / f"input-{n_docs}")
            size_mb = sum(os.path.getsize(p) for p in paths) / 1e6
            print(f"{n_docs:,} documents: {size_mb:,.0f} MB of JSONL written in "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            results = run_chain(paths, workdir / f"lake-{n_docs}", chain_jobs)
            seconds = sum(f["seconds"] for f in results.values())
            peak = max(f["peak_rss"] for f in results.values())
            chain[n_docs] = (seconds, peak)
            print(f"  chain      {seconds:8.1f} s   peak RSS {peak / 2**30:.2f} GiB   "
                  f"{n_docs / seconds:,.0f} docs/s", flush=True)
            shutil.rmtree(workdir / f"input-{n_docs}")
            shutil.rmtree(workdir / f"lake-{n_docs}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if len(sizes) < 2:
        return
    (t1, r1), (t4, r4) = chain[sizes[0]], chain[sizes[1]]
    print(f"BENCH scale_time_4x {t4 / t1:.3f} goal<=4.4")
    print(f"BENCH scale_peak_rss_4x {r4 / r1:.3f} goal<=1.2")
    label = f"{sizes[1] / 1e6:g}m".replace(".", "_")
    print(f"BENCH scale_chain_docs_per_s_{label} {sizes[1] / t4:.0f}")
    if len(sizes) > 2:
        t10, r10 = chain[sizes[2]]
        print(f"BENCH scale_time_10x {t10 / t1:.3f} goal<=11")
        print(f"BENCH scale_peak_rss_10x {r10 / r1:.3f} goal<=1.2")


if __name__ == "__main__":
    main()
