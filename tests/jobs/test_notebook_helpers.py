"""The notebooks' decisions that need no Spark: when a stage builds demo inputs, and how the
overrides widget is split. tests/test_notebooks.py runs the notebooks themselves."""

from pathlib import Path

from jobs.core.config import load_config
from jobs.core.notebook import (
    Stage,
    ensure_demo_corpus,
    ensure_demo_curves,
    ensure_demo_models,
    parse_overrides,
)
from jobs.core.paths import with_absolute_paths

DEMO_STEPS = (ensure_demo_corpus, ensure_demo_models, ensure_demo_curves)


class RecordingStage(Stage):
    """A Stage that records the jobs it is asked to run instead of running them."""

    def run(self, *jobs):
        self.ran = [*getattr(self, "ran", []), *jobs]
        return list(jobs)


def stage_for(name: str, base: Path, overrides=()) -> RecordingStage:
    return RecordingStage(None, with_absolute_paths(load_config(name, list(overrides)), base))


def test_local_config_builds_each_missing_demo_input_once(tmp_path):
    stage = stage_for("local", tmp_path)
    assert [step(stage) for step in DEMO_STEPS] == ["demo_corpus", "demo_models", "demo_curves"]
    for produced in (stage.cfg.lm_loss.models_manifest, stage.cfg.mixture.observations):
        Path(produced).parent.mkdir(parents=True, exist_ok=True)
        Path(produced).write_text("")
    again = stage_for("local", tmp_path)
    # The corpus job skips an existing corpus itself; models and curves are not retrained.
    assert [step(again) for step in DEMO_STEPS] == ["demo_corpus", None, None]


def test_real_inputs_are_never_replaced_by_demo_data(tmp_path):
    # Missing files of a real setup stay missing, so the job reading them fails and says so.
    stage = stage_for("databricks", tmp_path, [
        f"mixture.observations={tmp_path / 'curves.csv'}",
        f"lm_loss.models_manifest={tmp_path / 'models.yaml'}",
    ])
    assert [step(stage) for step in DEMO_STEPS] == [None, None, None]
    assert not hasattr(stage, "ran")


def test_override_items_split_on_semicolons_and_lines_not_commas():
    assert parse_overrides("a=1; s=[x, y]\n b=2 ;") == ["a=1", "s=[x, y]", "b=2"]
