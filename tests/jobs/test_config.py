from pathlib import Path

import pytest

from jobs.core.config import ConfigError, load_config

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.mark.parametrize("name", ["local.yaml", "cluster.yaml", "databricks.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(CONF / name)
    assert cfg.bucketize.n_buckets >= 2
    assert cfg.source.endswith(name)


def test_error_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("bucketize:\n  n_buckets: one\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(bad) in str(err.value) and "bucketize.n_buckets" in str(err.value)


def test_unknown_key_is_rejected(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("ingest:\n  text_colum: body\n")
    with pytest.raises(ConfigError, match=r"ingest\.text_colum"):
        load_config(bad)


def test_set_overrides_parse_yaml_values():
    cfg = load_config(CONF / "local.yaml", ["bucketize.n_buckets=5", "score.scorers=[zstd]",
                                            "ingest.id_column=null"])
    assert cfg.bucketize.n_buckets == 5
    assert cfg.ingest.id_column is None


def test_set_override_errors_name_the_key():
    with pytest.raises(ConfigError, match="zip"):
        load_config(CONF / "local.yaml", ["zip.k3=5000"])  # k3 > k2 violates the stage sizes
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["bucketize.n_buckets"])


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


def test_model_ids_must_be_partition_safe(tmp_path):
    bad = tmp_path / "m.yaml"
    bad.write_text("lm_loss:\n  models:\n    - {model_id: 'Big Model', path: /x, benchmark_score: 1}\n")
    with pytest.raises(ConfigError, match=r"lm_loss\.models\.0\.model_id"):
        load_config(bad)
