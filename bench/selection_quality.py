"""What the recommended chain (conf/select.yaml) selects on a labelled corpus.

    python bench/selection_quality.py [--quick] [--work DIR] [--skip-speed]

The bench writes a corpus (jobs/demo/corpus.py: clean stdlib text of five kinds beside the junk
crawls hold) as `corpus.jsonl` with only `id`, `text` and a `url` field, plus a disjoint target
set; the kind of every document stays in the bench. It then runs the real jobs of
conf/select.yaml, from inside the work directory (tables under ./lake), reruns `bucketize`
ranked by `zstd_ratio` for the zstd figure, and joins the labels to what each ranking selected.
It prints each rule's filter rate per kind, the clean loss and junk recall with each rule
switched off (what a rule costs and buys on this corpus), the composition of every selection,
samples of selected and rejected documents (`samples.txt` in the work directory), then `bench/prefilter.py
--quick`'s speed lines (unless --skip-speed) and, last, the BENCH lines:

    selected_junk_share_preselect <= 0.02   mimic_keep_junk_share <= 0.05
    zip_junk_share <= 0.05                  mixture_junk_share <= 0.02
    selected_junk_share_zstd <= 0.05        prefilter_junk_recall >= 0.95
    prefilter_clean_loss <= 0.10            (+ random_junk_share, the base rates, clean kept)

Junk shares are of the selected characters (mixture: weighted by repeats); recall and loss are of
characters. The random baseline is the junk share of the passed pool (what a random selection
of it holds in expectation). Not a `--quick` under a minute: the chain trains models.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # not bench/: bench/fasttext.py would shadow the fasttext package

from jobs.core.base import lake_for  # noqa: E402
from jobs.core.config import DemoSettings, load_config  # noqa: E402
from jobs.core.registry import job_runner  # noqa: E402
from jobs.core.session import build_session  # noqa: E402
from jobs.demo.clean import CLEAN_KINDS  # noqa: E402
from jobs.demo.corpus import TARGET_FILE, demo_records, write_target  # noqa: E402
from jobs.demo.selections import base_rate, chain_selections, composition  # noqa: E402
from jobs.prefilter_rules import RULE_NAMES  # noqa: E402
from jobs.scaling_fit import FitRefused  # noqa: E402

FULL = DemoSettings(n_docstring_docs=1800, n_prose_docs=700, n_boilerplate_docs=60,
                    n_junk_docs=280, n_near_duplicate_docs=100, n_target_docs=250)
QUICK = DemoSettings(n_docstring_docs=500, n_prose_docs=150, n_boilerplate_docs=15,
                     n_junk_docs=70, n_near_duplicate_docs=25, n_target_docs=120)
QUICK_OVERRIDES = ["demo_models.max_docs=600",
                   "lm_loss.sample_limit=600", "mixture.demo_steps=30",
                   "mixture.demo_docs_per_bucket=60"]
GOALS = {"preselect": ("selected_junk_share_preselect", 0.02),
         "zstd": ("selected_junk_share_zstd", 0.05), "zip": ("zip_junk_share", 0.05),
         "mixture": ("mixture_junk_share", 0.02), "mimic": ("mimic_keep_junk_share", 0.05)}


def write_corpus(work: Path, settings: DemoSettings, write: bool = True) -> pd.DataFrame:
    """corpus.jsonl (id, text, url) and target/target.jsonl; returns the labels."""
    pool, target = demo_records(settings)
    labels = [(f"d{i:06d}", kind, kind not in CLEAN_KINDS, len(text))
              for i, (kind, text) in enumerate(pool)]
    if write:
        with open(work / "corpus.jsonl", "w", encoding="utf-8") as handle:
            for i, (_, text) in enumerate(pool):
                handle.write(json.dumps({"id": f"d{i:06d}", "text": text,
                                         "url": f"https://example.org/page/{i}"}) + "\n")
        write_target(work / "target" / TARGET_FILE, target)
    return pd.DataFrame(labels, columns=["doc_id", "kind", "junk", "n_chars"])


def run_chain(cfg, spark, steps: list[str]) -> dict[str, float]:
    seconds = {}
    for step in steps:
        started = time.perf_counter()
        try:
            report = job_runner(step)(spark, cfg)
        except FitRefused as refused:  # the plan needs fittable curves; the others go on
            print(f"[{step}] refused, no mixture: {refused}", flush=True)
            continue
        finally:
            seconds[step] = time.perf_counter() - started
        print(report.summary(), flush=True)
    return seconds


def labelled_verdicts(lake, labels: pd.DataFrame) -> pd.DataFrame:
    """Every document's failed_rules with its label (kind, junk, n_chars)."""
    verdicts = lake.read("prefilter").select("doc_id", "failed_rules").toPandas()
    return verdicts.merge(labels, on="doc_id")


def rule_rates(joined: pd.DataFrame) -> None:
    kinds = sorted(joined["kind"].unique())
    print("filter rate of each rule (share of documents failing it), overall and per kind:")
    print("rule".ljust(44) + "all".rjust(7) + "".join(k[:9].rjust(10) for k in kinds))
    for rule in RULE_NAMES:
        fails = joined["failed_rules"].map(lambda rules, r=rule: r in list(rules))
        if not fails.any():
            continue
        per_kind = [fails[joined["kind"] == k].mean() for k in kinds]
        print(rule.ljust(44) + f"{fails.mean():7.3f}" + "".join(f"{v:10.3f}" for v in per_kind))
    passed = joined["failed_rules"].map(len) == 0
    print("passed".ljust(44) + f"{passed.mean():7.3f}"
          + "".join(f"{passed[joined['kind'] == k].mean():10.3f}" for k in kinds))


def rule_costs(joined: pd.DataFrame) -> None:
    """What each rule costs and buys: clean loss and junk recall (of characters) with that rule
    switched off and every other rule on, from the stored `failed_rules` (nothing re-measured).
    A rule whose removal lowers the loss but keeps the recall is one to review for this corpus."""
    rules = joined["failed_rules"].map(set)
    clean, junk = ~joined["junk"], joined["junk"]
    chars = joined["n_chars"]

    def loss_and_recall(off: set[str]) -> str:
        fails = rules.map(lambda failed: bool(failed - off))
        return (f"{chars[fails & clean].sum() / chars[clean].sum():.4f} "
                f"{chars[fails & junk].sum() / chars[junk].sum():.4f}")

    print(f"clean loss and junk recall with one rule switched off (all on: "
          f"{loss_and_recall(set())}):")
    for rule in sorted(set().union(*rules)):
        print(f"  {rule:48s} {loss_and_recall({rule})}")
    repetition = {"fineweb.max_dup_line_char_share", *(
        f"gopher_repetition.max_dup_{n}gram_char_share" for n in range(5, 11))}
    print(f"  FineWeb duplicated lines + Gopher duplicated 5..10-grams off: "
          f"{loss_and_recall(repetition)}")


def strength_by_kind(lake, labels: pd.DataFrame) -> None:
    """How the references judged each kind: PreSelect's positives are documents with ps = 1."""
    ps = lake.read("predictive_strength").select("doc_id", "ps").toPandas().merge(labels, on="doc_id")
    by_kind = ps.groupby("kind")["ps"]
    print("predictive strength by kind (sampled passed documents): n, mean ps, share ps = 1")
    for kind, values in by_kind:
        print(f"  {kind:15s} {len(values):5d} {values.mean():.3f} {(values == 1).mean():.3f}")


def dump_samples(lake, selections: dict, labels: pd.DataFrame, path: Path, seed: int) -> None:
    """10 selected and 10 rejected (passed but not selected) documents per ranking."""
    texts = lake.read("documents").select("doc_id", "text").toPandas().merge(labels, on="doc_id")
    passed = set(selections["prefilter"]["doc_id"])
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        for name, selection in selections.items():
            if name == "prefilter":
                continue
            chosen = set(selection["doc_id"])
            for title, ids in (("SELECTED", sorted(chosen)), ("REJECTED", sorted(passed - chosen))):
                out.write(f"\n===== {name} {title} =====\n")
                for doc_id in rng.sample(ids, min(10, len(ids))):
                    row = texts[texts["doc_id"] == doc_id].iloc[0]
                    out.write(f"--- {doc_id} [{row.kind}] {row.n_chars} chars\n"
                              f"{row.text[:400]}\n")


def speed_lines() -> list[str]:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "prefilter.py"), "--quick"],
                          capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if line.startswith("BENCH")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--skip-speed", action="store_true", help="skip bench/prefilter.py")
    parser.add_argument("--resume-from", default=None, metavar="STEP",
                        help="keep the work directory's corpus and tables; run from STEP on")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="selection_quality_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    labels = write_corpus(work, QUICK if args.quick else FULL, write=not args.resume_from)
    os.chdir(work)  # the config's relative paths (lake/, artifacts/) resolve here
    overrides = ['ingest.paths=["corpus.jsonl"]', "demo.target_dir=target",
                 "preselect.target_paths=[target/*.jsonl]"]
    cfg = load_config(ROOT / "conf" / "select.yaml", overrides + (QUICK_OVERRIDES if args.quick
                                                                  else []))
    spark = build_session(cfg.spark.master, cfg.spark.app_name, cfg.spark.conf)
    started = time.perf_counter()
    steps = cfg.pipeline.steps
    seconds = run_chain(cfg, spark, steps[steps.index(args.resume_from):] if args.resume_from
                        else steps)
    total = time.perf_counter() - started
    lake = lake_for(spark, cfg)
    selections = chain_selections(lake)
    selections["preselect"] = selections.pop("bucketize")
    zstd_cfg = load_config(ROOT / "conf" / "select.yaml", overrides + [
        "bucketize.score_column=zstd_ratio", "bucketize.direction=lower_is_better"])
    job_runner("bucketize")(spark, zstd_cfg)
    selections["zstd"] = chain_selections(lake)["bucketize"]
    print(f"\nwork directory {work}; {len(labels):,} documents, {labels['n_chars'].sum():,} chars; "
          f"chain {total:.0f} s: " + ", ".join(f"{s} {t:.0f}" for s, t in seconds.items()))
    verdicts = labelled_verdicts(lake, labels)
    rule_rates(verdicts)
    rule_costs(verdicts)
    strength_by_kind(lake, labels)
    passed = composition(selections["prefilter"], labels)
    failed = labels[~labels["doc_id"].isin(selections["prefilter"]["doc_id"])]
    junk_chars = labels.loc[labels["junk"], "n_chars"].sum()
    clean_chars = labels.loc[~labels["junk"], "n_chars"].sum()
    recall = failed.loc[failed["junk"], "n_chars"].sum() / junk_chars
    clean_loss = failed.loc[~failed["junk"], "n_chars"].sum() / clean_chars
    print("\nselection: docs, junk share of chars, clean chars kept, chars by kind")
    results = {}
    for name, selection in selections.items():
        results[name] = composition(selection, labels)
        r = results[name]
        print(f"{name:10s} {r['docs']:6d} junk {r['junk_share']:.4f} clean kept "
              f"{r['clean_kept']:.4f} {r['by_kind']}")
    dump_samples(lake, selections, labels, work / "samples.txt", seed=0)
    print(f"samples of selected / rejected documents: {work / 'samples.txt'}")
    lines = speed_lines() if not args.skip_speed else []
    spark.stop()
    print(f"BENCH corpus_junk_share {base_rate(labels):.4f}")
    print(f"BENCH random_junk_share {passed['junk_share']:.4f}")
    print(f"BENCH prefilter_junk_recall {recall:.4f} goal>=0.95")
    print(f"BENCH prefilter_clean_loss {clean_loss:.4f} goal<=0.10")
    for name, (bench, goal) in GOALS.items():
        if name in results:
            print(f"BENCH {bench} {results[name]['junk_share']:.4f} goal<={goal}")
            print(f"BENCH {bench.replace('junk_share', 'clean_kept')} "
                  f"{results[name]['clean_kept']:.4f}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
