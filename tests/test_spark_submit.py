"""`spark-submit --py-files siftlake.zip jobs/cli.py pipeline --config local` as README "Running on
a cluster" gives it, on `local[2]` with a tiny demo corpus, in a fresh working directory; the
packaged config is read from inside the zip.

PYTHONPATH is dropped, so the driver and the executors' Python workers import siftlake from the
zip that spark-submit puts on their path (the shared venv's editable install of the main checkout
is only a fallback finder, consulted after the path).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]
SPARK_SUBMIT = Path(sys.executable).with_name("spark-submit")
TINY_DEMO = [
    "demo.n_docstring_docs=60", "demo.n_boilerplate_docs=10", "demo.n_near_duplicate_docs=10",
    "demo.n_junk_docs=10", "demo.n_files=2", "bucketize.n_buckets=4",
]


def py_files_zip(target: Path) -> Path:
    """The `zip -r siftlake.zip jobs udfs` of the README (zip follows links too), without caches."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in ("jobs", "udfs"):
            # followlinks: jobs/conf links to conf/, and the packaged configs must be inside.
            for folder, subfolders, files in os.walk(ROOT / package, followlinks=True):
                subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
                for name in sorted(files):
                    path = Path(folder) / name
                    archive.write(path, path.relative_to(ROOT).as_posix())
    return target


def delta_rows(table: Path) -> int:
    # file_uris + pyarrow, not DeltaTable.to_pandas (which can abort the process at exit here).
    return sum(pq.read_metadata(uri).num_rows for uri in DeltaTable(str(table)).file_uris())


def test_spark_submit_runs_the_pipeline_from_a_py_files_zip(tmp_path):
    archive = py_files_zip(tmp_path / "siftlake.zip")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYSPARK_PYTHON"] = sys.executable
    command = [
        str(SPARK_SUBMIT), "--master", "local[2]", "--driver-memory", "1g",
        "--conf", "spark.ui.enabled=false", "--py-files", str(archive),
        str(ROOT / "jobs" / "cli.py"), "pipeline", "--config", "local",
        # null: keep spark-submit's --master (a master in the YAML would replace it).
        "--set", "spark.master=null", *[a for o in TINY_DEMO for a in ("--set", o)],
    ]
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "[bucketize] rows in" in run.stdout

    lake = tmp_path / "lake"
    # Bytes, not text: the demo corpus holds one line of invalid UTF-8 on purpose.
    lines = sum(
        len(p.read_bytes().splitlines()) for p in (tmp_path / "demo_data" / "corpus").glob("*.jsonl")
    )
    documents, quarantined = delta_rows(lake / "documents"), delta_rows(lake / "quarantine")
    assert documents > 0 and documents + quarantined == lines
    assert delta_rows(lake / "prefilter") == documents
    passed = delta_rows(lake / "scores")
    assert 0 < passed <= documents and delta_rows(lake / "curated") == passed
