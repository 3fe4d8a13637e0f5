"""The whole chain on local-cluster[2,1,1024], checked from outside through the Delta tables."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
from deltalake import DeltaTable

SCRIPT = Path(__file__).with_name("cluster_chain.py")


def table(work, name):
    return DeltaTable(str(work / "lake" / name)).to_pyarrow_table()


def test_full_chain_on_local_cluster(tmp_path):
    result_file = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), str(result_file)],
        capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    result = json.loads(result_file.read_text())

    # Two executor JVMs, and the Python workers hang off them, not off the driver.
    assert result["executors"] == 2
    jvms = result["worker_jvms"]
    assert len({j.split(":")[0] for j in jvms}) == 2, jvms
    assert all("CoarseGrainedExecutorBackend" in j for j in jvms), jvms

    reports = result["reports"]
    for name, report in reports.items():
        counted = report["rows_out"] + report["rows_quarantined"] + report["rows_filtered"]
        assert report["rows_in"] == counted, name
    documents = table(tmp_path, "documents")
    n_docs = documents.num_rows
    # The demo builders report what they made and what they left out.
    assert reports["demo_corpus"]["rows_out"] == reports["ingest"]["rows_in"]
    assert reports["ingest"]["rows_quarantined"] == 9 and n_docs == 240
    # Later jobs see the documents that passed the pre-filter; the rest count as filtered.
    n_passed = sum(table(tmp_path, "prefilter").column("passed").to_pylist())
    assert reports["demo_models"]["rows_in"] == n_docs
    assert reports["demo_models"]["rows_out"] == min(200, n_passed)  # demo_models.max_docs
    assert 0 < n_passed < n_docs and reports["prefilter"]["rows_out"] == n_passed
    assert reports["score"]["rows_filtered"] == n_docs - n_passed

    losses = table(tmp_path, "model_losses")
    assert set(losses.column("model_id").to_pylist()) == {"demo-1", "demo-2", "demo-3"}
    assert losses.num_rows == 3 * n_passed
    assert pc.min(losses.column("bpc")).as_py() > 0

    ps = table(tmp_path, "predictive_strength")
    values = ps.column("ps").to_pylist()
    assert ps.num_rows == n_passed and all(0 <= v <= 1 for v in values)
    assert set(ps.column("n_models").to_pylist()) == {3}

    scores = table(tmp_path, "scores")
    fasttext = scores.column("fasttext_score").to_pylist()
    assert scores.num_rows == n_passed and all(0 <= v <= 1 for v in fasttext)
    assert json.loads((tmp_path / "fasttext" / "metadata.json").read_text())["holdout"]

    curated = DeltaTable(str(tmp_path / "lake" / "curated"))
    assert curated.metadata().partition_columns == ["quality_bucket"]
    assert set(curated.to_pyarrow_table().column("quality_bucket").to_pylist()) == {
        "q00", "q01", "q02", "q03"}

    selection = table(tmp_path, "zip_selection")
    assert 0 < selection.num_rows <= n_passed
    # Reports tell what was written: the selected documents, the rest counted as not selected.
    assert reports["zip_select"]["rows_out"] == len(set(selection.column("doc_id").to_pylist()))
    assert reports["zip_select"]["rows_filtered"] == n_passed - reports["zip_select"]["rows_out"]
    metadata = json.loads((tmp_path / "fasttext" / "metadata.json").read_text())
    trained = reports["train_classifier"]
    assert trained["rows_out"] == metadata["counts"]["total"]
    assert trained["rows_in"] == n_passed and "left out to balance" in trained["details"][
        "positives (ps >= positive_threshold)"]

    plan = table(tmp_path, "mixture_plan").to_pandas()
    mixture = table(tmp_path, "mixture").to_pandas()
    chosen = set(plan.loc[plan["selected"], "quality_bucket"])
    assert chosen and set(mixture["quality_bucket"]) == chosen
    assert reports["mixture"]["rows_out"] == len(mixture)
    assert reports["mixture"]["rows_filtered"] == n_passed - len(mixture)
    assert (tmp_path / "artifacts" / "mixture" / "error_vs_compute.png").stat().st_size > 0

    mimic = table(tmp_path, "mimic_scores")
    assert set(mimic.column("checkpoint").to_pylist()) == {"early", "middle"}
    assert mimic.num_rows == 2 * n_passed
    aggregate = table(tmp_path, "mimic_aggregate")
    assert aggregate.num_rows == n_passed
