"""The command line as a user meets it: help, packaged configs, one-line errors with exit 2."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from jobs.cli import main
from jobs.core.config import load_config
from jobs.core.registry import JOB_SPECS, TABLE_WRITERS

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_every_job(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in JOB_SPECS) and "init-config NAME" in out


def test_job_help_says_what_it_reads_and_writes_and_its_keys(capsys):
    assert main(["score", "--help"]) == 0
    out = capsys.readouterr().out
    assert "reads:  passed `documents`" in out and "writes: `scores`" in out
    assert "  score.zstd_level = 3\n" in out and "  prefilter.enabled = true\n" in out
    assert "bucketize.n_buckets" not in out  # only the keys score uses
    assert main(["lm_loss", "--help"]) == 0
    out = capsys.readouterr().out
    assert "  lm_loss.stride = null\n" in out and "  lm_loss.models[].model_id = required\n" in out
    for name in JOB_SPECS:  # every section and key a job names exists in the config classes
        assert main([name, "-h"]) == 0


def test_every_table_names_the_job_that_writes_it():
    from jobs import bucketize, lm_loss, mimic, mixture, predictive_strength, score, zip_select
    from jobs.prefilter import PREFILTER_TABLE

    expected = {
        "documents": "ingest", PREFILTER_TABLE: "prefilter", score.SCORES_TABLE: "score",
        bucketize.CURATED_TABLE: "bucketize", lm_loss.MODEL_LOSSES_TABLE: "lm_loss",
        predictive_strength.PREDICTIVE_STRENGTH_TABLE: "predictive_strength",
        zip_select.ZIP_SELECTION_TABLE: "zip_select", mixture.MIXTURE_PLAN_TABLE: "mixture",
        mixture.MIXTURE_TABLE: "mixture", mimic.MIMIC_SCORES_TABLE: "mimic",
        mimic.MIMIC_AGGREGATE_TABLE: "mimic_aggregate",
    }
    assert {table: TABLE_WRITERS.get(table) for table in expected} == expected


@pytest.mark.parametrize("name", ["local", "cluster", "databricks"])
def test_init_config_prints_a_commented_copy_that_loads(name, tmp_path, capsys):
    assert main(["init-config", name]) == 0
    copy = tmp_path / "mine.yaml"
    copy.write_text(capsys.readouterr().out)
    assert sum("#" in line for line in copy.read_text().splitlines()) >= 5  # the comments too
    assert load_config(copy).model_dump() == load_config(name).model_dump()


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_user_error_is_one_line_and_exit_2_traceback_only_with_debug():
    typo = ("score", "--config", "conf/local.yaml", "--set", "bucketize.scor_column=x")
    plain = run_cli(*typo)
    assert plain.returncode == 2
    assert plain.stderr.splitlines() == [
        "siftlake score: --set bucketize.scor_column=x: bucketize.scor_column: unknown key; "
        "did you mean bucketize.score_column?"]
    debug = run_cli(*typo, "--log-level", "DEBUG")
    assert debug.returncode == 2 and "Traceback (most recent call last)" in debug.stderr


def cli_on_empty_lake(spark, tmp_path, *args):
    # The test session is active, so the CLI reuses it; `spark.conf={}` leaves its settings alone.
    return main([*args, "--set", f"lake.root={tmp_path / 'lake'}", "--set", "spark.conf={}"])


def test_missing_table_names_the_job_to_run(spark, tmp_path, capsys):
    assert cli_on_empty_lake(spark, tmp_path, "predictive_strength") == 2
    assert capsys.readouterr().err == (
        f"siftlake predictive_strength: table 'model_losses' not found at "
        f"{tmp_path / 'lake' / 'model_losses'}; run 'siftlake lm_loss' first\n")


def test_missing_model_file_names_the_key_and_the_fix(spark, tmp_path, capsys):
    missing = tmp_path / "no-model"
    models = f"lm_loss.models=[{{model_id: ref, path: '{missing}', benchmark_score: 1}}]"
    status = cli_on_empty_lake(spark, tmp_path, "lm_loss", "--set", "lm_loss.models_manifest=null",
                               "--set", models)
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith(f"siftlake lm_loss: lm_loss: model 'ref': no file or folder at "
                          f"'{missing}'; run 'siftlake demo_models'") and err.count("\n") == 1


def test_a_refused_fit_names_the_setting_and_missing_observations_the_job(spark, tmp_path, capsys):
    from jobs.core.lake import Lake

    curated = spark.createDataFrame([("d1", "q00", 10), ("d2", "q00", 12)],
                                    "doc_id string, quality_bucket string, n_chars long")
    Lake(spark, str(tmp_path / "lake")).write(curated, "curated")
    observations = tmp_path / "observations.csv"
    missing = f"mixture.observations={observations}"
    assert cli_on_empty_lake(spark, tmp_path, "mixture", "--set", missing) == 2
    assert capsys.readouterr().err == (
        f"siftlake mixture: mixture.observations: no file or folder at '{observations}'; "
        "run 'siftlake demo_curves' or set mixture.observations\n")
    # Two budgets of one bucket cannot identify its curve: the fit refuses it.
    pd.DataFrame({"bucket": ["q00", "q00"], "samples_seen": [10, 20], "error": [2.0, 1.5],
                  "pool_size": [5, 5]}).to_csv(observations, index=False)
    assert cli_on_empty_lake(spark, tmp_path, "mixture", "--set", missing) == 2
    err = capsys.readouterr().err
    assert err.startswith("siftlake mixture: scaling-law fit refused for 1 item(s): q00: ")
    assert err.endswith("; set mixture.on_refusal: drop to plan without them, or add "
                        "observations (more budgets, runs past one pass)\n")
    assert err.count("\n") == 1
