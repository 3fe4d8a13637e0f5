from pathlib import Path

from pydantic import BaseModel

from jobs.core.config import Config, load_config
from jobs.core.paths import PATH_KEYS, with_absolute_paths

# Field names that name a file or folder; a new one must be listed in PATH_KEYS.
PATH_LIKE = ("path", "paths", "dir", "root", "artifacts", "manifest", "observations",
             "checkpoints", "fasttext_model", "preload_fasttext")


def test_relative_paths_resolve_against_the_base_and_the_rest_stay(tmp_path):
    cfg = load_config("local", [
        "lake.root=s3a://bucket/lake", f"lake.artifacts={tmp_path / 'abs'}",
        "lm_loss.models=[{model_id: m1, path: models/m1, benchmark_score: 0.1}]",
    ])
    resolved = with_absolute_paths(cfg, tmp_path)
    assert resolved.lake.root == "s3a://bucket/lake"
    assert resolved.lake.artifacts == str(tmp_path / "abs")
    assert resolved.ingest.paths == [str(tmp_path / p) for p in cfg.ingest.paths]
    assert resolved.lm_loss.models[0].path == str(tmp_path / "models" / "m1")
    assert resolved.mimic.checkpoints == {
        name: str(tmp_path / path) for name, path in cfg.mimic.checkpoints.items()
    }
    assert all(Path(p).is_absolute() for p in [resolved.demo.corpus_dir, resolved.preselect.model_dir])
    assert resolved.source == cfg.source and resolved.zip == cfg.zip


def test_every_path_field_of_the_config_is_listed():
    listed = {key.replace(".*", "") for key in PATH_KEYS}

    def walk(model: type[BaseModel], prefix: str):
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from walk(annotation, f"{prefix}{name}.")
            elif name.endswith(PATH_LIKE):
                yield f"{prefix}{name}"

    found = set(walk(Config, "")) | {"lm_loss.models.path"}
    assert found - {"source"} == listed
