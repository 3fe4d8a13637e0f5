"""The daily chain over input that lands in three batches, with the second run killed and
rerun, against a one-shot full run of the same input.

Real Spark, real Delta: ingest (Structured Streaming, availableNow), prefilter, score and
bucketize, all `mode: incremental`. One test, so the suite builds one lake.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from deltalake import DeltaTable

from jobs import pipeline
from jobs.core.config import config_from_dict
from jobs.core.lake import Lake
from tests.jobs.test_prefilter import prose

ROOT = Path(__file__).resolve().parents[2]
TABLES = ("documents", "prefilter", "scores", "curated")
DAILY = ["ingest", "prefilter", "score", "bucketize"]


def write_batch(path: Path, batch: int, rng: random.Random) -> None:
    records = [{"id": f"b{batch}-{i}", "text": prose(rng, 8), "source": "web"} for i in range(8)]
    records.append({"id": f"b{batch}-spam", "text": "Buy cheap watches now! " * 20,
                    "source": "spam"})
    lines = [json.dumps(r) for r in records] + ["{not json"]
    if batch == 3:  # an id ingested two batches ago
        lines.append(json.dumps({"id": "b1-0", "text": prose(rng, 8), "source": "web"}))
    path.write_text("\n".join(lines) + "\n")


def chain_config(lake_root: Path, corpus: Path, incremental: bool):
    mode = {"mode": "incremental"} if incremental else {}
    return config_from_dict({
        "lake": {"root": str(lake_root)},
        "ingest": {"paths": [f"{corpus}/*.jsonl"], "id_column": "id", "source_column": "source",
                   **mode},
        "prefilter": mode, "score": mode,
        "bucketize": {**mode, "n_buckets": 2, "sample_rows": 100},
        "pipeline": {"steps": DAILY},
    }, "test.yaml")


def live_files(lake: Lake, table: str) -> set[str]:
    return set(DeltaTable(lake.path(table)).file_uris())


def rows(lake: Lake, table: str, *columns: str) -> list[tuple]:
    return sorted(tuple(r) for r in lake.read(table).select(*columns).collect())


def uncommitted_batch_started(lake_root: Path) -> bool:
    """The stream planned a micro-batch (offsets written) that it has not committed yet."""
    checkpoints = list((lake_root / "_checkpoints").glob("ingest-*"))
    if not checkpoints:
        return False
    offsets = {p.name for p in (checkpoints[0] / "offsets").glob("[0-9]*")}
    commits = {p.name for p in (checkpoints[0] / "commits").glob("[0-9]*")}
    return bool(offsets - commits)


def killed_daily_run(lake_root: Path, corpus: Path) -> None:
    """`siftlake pipeline` in a child, SIGKILLed (with its JVM and Python workers) while its
    ingest micro-batch is in flight."""
    command = [sys.executable, "-m", "jobs.cli", "pipeline", "--set", f"lake.root={lake_root}",
               "--set", f"ingest.paths=['{corpus}/*.jsonl']",
               "--set", "ingest.id_column=id", "--set", "ingest.source_column=source",
               "--set", f"pipeline.steps={DAILY}", "--set", "spark.master=local[2]",
               *[arg for job in DAILY for arg in ("--set", f"{job}.mode=incremental")]]
    child = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 600
    while not uncommitted_batch_started(lake_root) and child.poll() is None:
        assert time.monotonic() < deadline, "the child never started its micro-batch"
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def test_three_daily_batches_with_a_killed_run_equal_one_full_run(spark, tmp_path):
    rng = random.Random(3)
    landing, corpus = tmp_path / "landing", tmp_path / "corpus"
    landing.mkdir()
    corpus.mkdir()
    for batch in (1, 2, 3):
        write_batch(landing / f"batch-{batch}.jsonl", batch, rng)
    cfg = chain_config(tmp_path / "lake", corpus, incremental=True)
    lake = Lake(spark, cfg.lake.root)
    earlier: dict[str, set[str]] = {}
    for batch in (1, 2, 3):
        shutil.copy(landing / f"batch-{batch}.jsonl", corpus)
        if batch == 2:
            killed_daily_run(tmp_path / "lake", corpus)
        pipeline.run(spark, cfg)
        for table in TABLES:
            assert earlier.get(table, set()) <= live_files(lake, table), f"{table} rewritten"
            earlier[table] = live_files(lake, table)
        ids = rows(lake, "documents", "doc_id")
        assert ids == sorted({(f"b{b}-{i}",) for b in range(1, batch + 1)
                              for i in [*range(8), "spam"]})  # nothing missed, none twice
        scored = rows(lake, "scores", "doc_id")
        assert len(scored) == len(set(scored)) == lake.read("prefilter").where("passed").count()
        assert rows(lake, "curated", "doc_id") == scored
    quarantined = lake.read("quarantine").where("job = 'ingest'")
    assert quarantined.count() == 4  # a bad line per batch, b1-0 again in batch 3

    full = chain_config(tmp_path / "lake-full", corpus, incremental=False)
    pipeline.run(spark, full)
    one_shot = Lake(spark, full.lake.root)
    for table, columns in (("documents", ("doc_id", "text")), ("prefilter", ("doc_id", "passed")),
                           ("scores", ("doc_id", "zstd_ratio")), ("curated", ("doc_id",))):
        assert rows(lake, table, *columns) == rows(one_shot, table, *columns), table
    # The same rows, down to the raw line of the later copy of b1-0 (the daily run keeps no
    # raw line of a usable record and parses a copy's line again) and its line number.
    quarantine = ("split(reason, ':')[0] as code", "raw", "source", "line")
    assert sorted(quarantined.selectExpr(*quarantine).collect()) == sorted(
        one_shot.read("quarantine").where("job = 'ingest'").selectExpr(*quarantine).collect())
    assert quarantined.where("reason = 'duplicate_id'").first().raw.startswith('{"id": "b1-0"')
