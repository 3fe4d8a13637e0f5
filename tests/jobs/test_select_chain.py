"""The chain of conf/select.yaml on a small labelled corpus, with tiny models and few steps.

The labels (clean or junk kind) stay in the test: the corpus the jobs read has id, text and url.
"""

import json
from pathlib import Path

import pandas as pd
import pytest

from jobs.core.base import lake_for
from jobs.core.config import DemoSettings, load_config
from jobs.core.registry import job_runner
from jobs.demo.clean import CLEAN_KINDS
from jobs.demo.corpus import TARGET_FILE, demo_records, write_target
from jobs.demo.selections import base_rate, chain_selections, composition
from tests.cluster_chain import known_law_observations

CONF = Path(__file__).resolve().parents[2] / "conf" / "select.yaml"
CORPUS = DemoSettings(n_docstring_docs=150, n_prose_docs=60, n_boilerplate_docs=8,
                      n_junk_docs=48, n_near_duplicate_docs=12, n_target_docs=40)
TINY = [
    "spark.conf={spark.sql.shuffle.partitions: 4, spark.default.parallelism: 4}",
    "demo_models.k=3", "demo_models.steps=20", "demo_models.vocab_size=300",
    "demo_models.n_positions=32", "demo_models.max_docs=150", "lm_loss.stride=16",
    "preselect.bucket=20000", "preselect.thread=1", "bucketize.n_buckets=4",
    "zip.k1=40", "zip.k2=10", "zip.k3=5", "mixture.demo_steps=8",
    "mixture.demo_docs_per_bucket=16", "mixture.demo_heldout_per_bucket=4",
    "mimic.max_length=31", "mimic.batch_size=8",
]

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def write_corpus(work: Path) -> pd.DataFrame:
    pool, target = demo_records(CORPUS)
    rows = []
    with open(work / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for i, (kind, text) in enumerate(pool):
            handle.write(json.dumps({"id": f"d{i}", "text": text, "url": f"u/{i}"}) + "\n")
            rows.append((f"d{i}", kind, kind not in CLEAN_KINDS, len(text)))
    write_target(work / "target" / TARGET_FILE, target)
    return pd.DataFrame(rows, columns=["doc_id", "kind", "junk", "n_chars"])


def under(work: Path, cfg) -> None:
    """The config's relative paths, placed under `work`. The session's JVM (hence its Python
    workers) started in another directory, so a chdir would not move them; bench/
    selection_quality.py runs the config's own relative paths from a fresh session."""
    for section, key in [("lake", "root"), ("lake", "artifacts"), ("demo", "target_dir"),
                         ("demo_models", "out_dir"), ("lm_loss", "models_manifest"),
                         ("preselect", "model_dir"), ("mixture", "observations"),
                         ("mimic", "reference_path")]:
        setattr(getattr(cfg, section), key, str(work / getattr(getattr(cfg, section), key)))
    cfg.ingest.paths = [str(work / p) for p in cfg.ingest.paths]
    cfg.preselect.target_paths = [str(work / p) for p in cfg.preselect.target_paths]
    cfg.mimic.checkpoints = {k: str(work / v) for k, v in cfg.mimic.checkpoints.items()}


def test_select_chain_keeps_less_junk_than_the_corpus(spark, tmp_path):
    labels = write_corpus(tmp_path)
    cfg = load_config(CONF, ['ingest.paths=["corpus.jsonl"]', "demo.target_dir=target",
                             "preselect.target_paths=[target/*.jsonl]", *TINY])
    under(tmp_path, cfg)
    reports = {}
    for step in cfg.pipeline.steps:
        if step == "mixture":
            # Curves of a few steps on tiny buckets show no repetition decay, so the fit refuses
            # them (as it should); the plan runs on curves of a known law instead.
            cfg.mixture.observations = str(tmp_path / "known_law.csv")
            known_law_observations(Path(cfg.mixture.observations))
        reports[step] = job_runner(step)(spark, cfg)
    assert (tmp_path / "lake" / "curated").is_dir()
    assert reports["ingest"].rows_out == len(labels)
    assert "target_paths" in reports["demo_models"].details["benchmark on"]
    order = reports["demo_models"].details["benchmark by trusted share"]
    assert [part.split(" (")[0] for part in order.split(", ")] == ["demo-1", "demo-2", "demo-3"]
    assert "seed noise" in reports["demo_models"].details
    assert set(reports["demo_models"].details["mimic checkpoints"].split(", ")) == {
        "early", "middle", "final", "reference"}

    selections = chain_selections(lake_for(spark, cfg))
    assert set(selections) == {"prefilter", "bucketize", "zip", "mixture", "mimic"}
    corpus_rate = base_rate(labels)
    assert 0.1 < corpus_rate < 0.6
    for name in ("prefilter", "bucketize", "mimic"):
        chosen = composition(selections[name], labels)
        assert chosen["docs"] > 0, name
        assert chosen["junk_share"] < corpus_rate, (name, chosen)
