from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from jobs.core.config import Config, ConfigError, load_config
from jobs.core.config_files import packaged_config_names

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


def flat_values(model: BaseModel, prefix: str = "") -> dict:
    """Every setting as dotted key -> value (sections recursed, lists and mappings kept whole)."""
    values = {}
    for name, field in type(model).model_fields.items():
        if field.exclude:
            continue
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            values |= flat_values(value, f"{prefix}{name}.")
        else:
            values[f"{prefix}{name}"] = value
    return values


def declared_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key of the config classes, sections included (also those without keys yet)."""
    keys = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        keys.append(f"{prefix}{name}")
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += declared_keys(annotation, f"{prefix}{name}.")
    return keys


def test_local_yaml_holds_exactly_the_code_defaults():
    shipped = flat_values(load_config(CONF / "local.yaml"))
    defaults = flat_values(Config())
    drift = [f"{key}: conf/local.yaml has {shipped.get(key)!r}, the code default is "
             f"{defaults.get(key)!r}" for key in sorted(set(shipped) | set(defaults))
             if shipped.get(key) != defaults.get(key)]
    assert not drift, "conf/local.yaml and jobs/core/config.py disagree:\n" + "\n".join(drift)


def test_local_yaml_lists_every_key():
    data = yaml.safe_load((CONF / "local.yaml").read_text(encoding="utf-8"))
    missing = []
    for key in declared_keys(Config):
        node = data
        for part in key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError:
            missing.append(key)
    assert not missing, f"conf/local.yaml does not list: {', '.join(missing)}"


def test_packaged_configs_resolve_by_name():
    assert packaged_config_names() == sorted(p.stem for p in CONF.glob("*.yaml"))
    by_name = load_config("cluster", ["zip.k3=7"])
    by_path = load_config(CONF / "cluster.yaml", ["zip.k3=7"])
    assert by_name.model_dump() == by_path.model_dump() and by_name.zip.k3 == 7
    assert "cluster.yaml" in by_name.source
    with pytest.raises(ConfigError, match=r"did you mean 'cluster'\?.*packaged: cluster, "):
        load_config("clustr")


def test_unknown_key_names_its_origin_and_the_nearest_key(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text("bucketize:\n  scor_column: x\n")
    with pytest.raises(ConfigError) as from_file:
        load_config(typo)
    assert str(from_file.value) == (f"{typo}: bucketize.scor_column: unknown key; "
                                    "did you mean bucketize.score_column?")
    with pytest.raises(ConfigError) as from_set:
        load_config(CONF / "local.yaml", ["bucketize.n_buckets=4", "bucketize.scor_column=x"])
    assert str(from_set.value) == ("--set bucketize.scor_column=x: bucketize.scor_column: "
                                   "unknown key; did you mean bucketize.score_column?")
    with pytest.raises(ConfigError, match=r"--set bucketise\.n_buckets=3: bucketise: unknown key; "
                                          r"did you mean bucketize\?"):
        load_config(None, ["bucketise.n_buckets=3"])
