"""The recommended chain as a user runs it, on ~8,000 documents, timed end to end.

    python bench/select_chain.py [--docs 8000] [--work DIR]

Writes a labelled corpus into a fresh work directory and runs, from there, exactly the README's
command in a subprocess:

    siftlake pipeline --config conf/select.yaml --set 'ingest.paths=["corpus.jsonl"]'

`corpus.jsonl` holds `id`, `text` and two other fields (`url`, `crawl`), which go to `meta`. The
clean text is the demo's stdlib kinds (jobs/demo/clean.py) plus, because the stdlib has only
~2,100 clean pages, documentation pages of installed packages built the same way
(`module_page`: a module's docstring with its functions, a page per class), as kind
`package_docs`. The junk is the demo's generators (boilerplate, near-duplicates, spam, menus,
tables, random characters, lorem ipsum, blobs, product pages), sized to about
`--junk-share` of the characters (issue 11's real corpus held ~19%). The target set lies where
select.yaml's `demo_target` step looks for it (`demo_data/target/`), disjoint from the pool, so
that step keeps it. The labels never reach the jobs.

Prints the chain's wall time and, from the finished lake, what each selection holds:

    BENCH select_chain_seconds <wall time of the command> goal<=1200
    BENCH select_chain_docs <documents in the corpus>
    BENCH select_chain_<selection>_junk_share <junk share of the selected characters>
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # not bench/: bench/fasttext.py would shadow the fasttext package

from jobs.core.config import DemoSettings  # noqa: E402
from jobs.demo.clean import CLEAN_KINDS, module_page, read_source  # noqa: E402
from jobs.demo.corpus import TARGET_FILE, demo_records, write_target  # noqa: E402
from jobs.demo.junk import mirrors  # noqa: E402

# Installed with siftlake's own dependencies, so every machine that runs the bench has them.
PACKAGES = ("pandas", "numpy", "pyspark", "pydantic", "networkx", "sympy", "jinja2", "yaml",
            "tqdm", "fsspec", "hypothesis", "_pytest", "pyarrow", "deltalake", "torch")
CLEAN = (*CLEAN_KINDS, "package_docs")


def package_pages(needed: int) -> list[str]:
    """Up to `needed` documentation pages of installed packages, in a fixed order."""
    site = Path(sysconfig.get_paths()["purelib"])
    pages, seen = [], set()
    for package in PACKAGES:
        for path in sorted((site / package).rglob("*.py")):
            parts = path.relative_to(site).with_suffix("").parts
            if any(p.startswith("test") or p == "tests" for p in parts):
                continue
            for page in module_page(".".join(parts), read_source(path)):
                if page not in seen:
                    seen.add(page)
                    pages.append(page)
            if len(pages) >= needed:
                return pages
    return pages


def _junk(n_junk: int, seed: int) -> list[tuple[str, str]]:
    """(kind, text) of about n_junk junk documents of the demo's kinds, boilerplate included."""
    settings = DemoSettings(n_docstring_docs=0, n_prose_docs=0, n_boilerplate_docs=n_junk // 5,
                            n_junk_docs=n_junk - n_junk // 5, n_near_duplicate_docs=0,
                            n_target_docs=0, seed=seed)
    return demo_records(settings)[0]


def build_corpus(work: Path, n_docs: int, junk_share: float) -> pd.DataFrame:
    """corpus.jsonl and demo_data/target/target.jsonl under `work`; returns the labels."""
    stdlib = DemoSettings(n_docstring_docs=1100, n_prose_docs=700, n_boilerplate_docs=0,
                          n_junk_docs=0, n_near_duplicate_docs=0, n_target_docs=200)
    clean, target = demo_records(stdlib)
    sample = _junk(600, seed=1)
    junk_size = sum(len(t) for _, t in sample) / len(sample)
    clean_size = sum(len(t) for _, t in clean) / len(clean)
    # n_clean * clean_size * share / (1 - share) junk characters, in junk documents of junk_size;
    # a tenth of the junk budget goes to near-duplicates (mirrors are page-sized).
    ratio = clean_size * junk_share / (1 - junk_share) / junk_size
    n_clean = int(n_docs / (1 + ratio))
    clean += [("package_docs", t) for t in package_pages(max(0, n_clean - len(clean)))]
    clean_chars = sum(len(t) for _, t in clean)
    n_mirrors = int(0.1 * clean_chars * junk_share / (1 - junk_share) / clean_size)
    n_junk = int(0.9 * clean_chars * junk_share / (1 - junk_share) / junk_size)
    rng = random.Random(0)
    ordered = clean + _junk(n_junk, seed=0)
    rng.shuffle(ordered)
    place = {text: i for i, (_, text) in enumerate(ordered)}
    # A mirror lands somewhere after the page it copies, as a crawl meets a copy later.
    keyed = [(float(i), record) for i, record in enumerate(ordered)] + [
        (rng.uniform(place[clean[source][1]] + 0.5, len(ordered) + 0.5), ("near_duplicate", copy))
        for source, copy in mirrors(rng, [t for _, t in clean], n_mirrors)]
    keyed.sort(key=lambda pair: pair[0])
    labels = []
    with open(work / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for i, (_, (kind, text)) in enumerate(keyed):
            doc_id = f"d{i:06d}"
            handle.write(json.dumps({"id": doc_id, "text": text, "url": f"https://example.org/{i}",
                                     "crawl": "2026-49"}) + "\n")
            labels.append((doc_id, kind, kind not in CLEAN, len(text)))
    write_target(work / "demo_data" / "target" / TARGET_FILE, target)
    return pd.DataFrame(labels, columns=["doc_id", "kind", "junk", "n_chars"])


def selections(work: Path, labels: pd.DataFrame) -> dict[str, dict]:
    """What each selection of the finished lake holds (a Spark session of its own)."""
    from jobs.core.base import lake_for
    from jobs.core.config import load_config
    from jobs.core.session import build_session
    from jobs.demo.selections import chain_selections, composition

    os.chdir(work)
    cfg = load_config(ROOT / "conf" / "select.yaml", [])
    spark = build_session(cfg.spark.master, "select-chain-bench", cfg.spark.conf)
    try:
        chosen = chain_selections(lake_for(spark, cfg))
    finally:
        spark.stop()
    chosen["preselect"] = chosen.pop("bucketize")
    return {name: composition(frame, labels) for name, frame in chosen.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=8000)
    parser.add_argument("--junk-share", type=float, default=0.19)
    parser.add_argument("--work", default=None, help="work directory (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="select_chain_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    labels = build_corpus(work, args.docs, args.junk_share)
    share = labels.loc[labels["junk"], "n_chars"].sum() / labels["n_chars"].sum()
    print(f"corpus {work / 'corpus.jsonl'}: {len(labels):,} documents, "
          f"{labels['n_chars'].sum():,} characters, junk share {share:.3f}; by kind "
          f"{labels['kind'].value_counts().to_dict()}", flush=True)
    command = [str(Path(sys.executable).parent / "siftlake"), "pipeline", "--config",
               str(ROOT / "conf" / "select.yaml"), "--set", 'ingest.paths=["corpus.jsonl"]']
    started = time.perf_counter()
    with open(work / "pipeline.log", "w") as log:
        done = subprocess.run(command, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    print(f"{' '.join(command)}: exit {done.returncode} in {seconds:.0f} s "
          f"(log: {work / 'pipeline.log'})", flush=True)
    if done.returncode != 0:
        sys.exit(done.returncode)
    results = selections(work, labels)
    for name, r in results.items():
        print(f"{name:10s} {r['docs']:6d} junk {r['junk_share']:.4f} clean kept "
              f"{r['clean_kept']:.4f} {r['by_kind']}")
    print(f"BENCH select_chain_seconds {seconds:.0f} goal<=1200")
    print(f"BENCH select_chain_docs {len(labels)}")
    print(f"BENCH select_chain_corpus_junk_share {share:.4f}")
    for name, r in results.items():
        print(f"BENCH select_chain_{name}_junk_share {r['junk_share']:.4f}")


if __name__ == "__main__":
    main()
