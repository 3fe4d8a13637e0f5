"""The Databricks asset bundle (databricks.yml + resources/*.yml), loaded with the typed job
resources of the `databricks-bundles` package (an unknown or mistyped field fails to load).

The Databricks CLI cannot run here, so this checks what `databricks bundle validate` would not:
that every task runs a siftlake job that exists, with arguments siftlake's CLI and config accept,
in the order the README's daily and calibration chains give.
"""

from __future__ import annotations

import re
import tomllib
from glob import glob
from pathlib import Path

import pytest
import yaml
from databricks.bundles.jobs import Job

from jobs.cli import build_parser
from jobs.core.config import load_config
from jobs.core.registry import JOBS

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = yaml.safe_load((ROOT / "databricks.yml").read_text(encoding="utf-8"))
VARIABLE = re.compile(r"\$\{var\.([a-z_]+)\}")
JOB_PARAMETER = re.compile(r"\{\{job\.parameters\.([a-z_]+)\}\}")
GPU_JOBS = {"lm_loss", "mimic"}
# Each chain as README "Scheduled runs" gives it: every step depends on the one before.
CHAINS = {
    "siftlake_daily": [["ingest", "prefilter", "score", "bucketize"]],
    "siftlake_calibration": [
        ["lm_loss", "predictive_strength", "train_classifier", "score", "bucketize", "mixture"],
        ["mimic", "mimic_aggregate"],
    ],
    "siftlake_maintenance": [["maintain"]],
}


def resource_files() -> list[Path]:
    return sorted(
        Path(p) for pattern in BUNDLE["include"] for p in glob(str(ROOT / pattern))
    )


def bundle_jobs() -> dict[str, tuple[Path, dict]]:
    jobs = {}
    for path in resource_files():
        for key, job in yaml.safe_load(path.read_text(encoding="utf-8"))["resources"]["jobs"].items():
            assert key not in jobs, f"job {key} defined twice"
            jobs[key] = (path, job)
    return jobs


JOBS_IN_BUNDLE = bundle_jobs()


def resolve_variables(value):
    """What the CLI does with `${var.x}`: the variable's default (targets set none here)."""
    if isinstance(value, str):
        return VARIABLE.sub(lambda m: str(BUNDLE["variables"][m.group(1)]["default"]), value)
    if isinstance(value, dict):
        return {k: resolve_variables(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_variables(v) for v in value]
    return value


def test_bundle_builds_the_wheel_and_declares_every_variable_it_uses():
    assert BUNDLE["bundle"]["name"] == "siftlake"
    artifact = BUNDLE["artifacts"]["siftlake_wheel"]
    assert artifact["type"] == "whl" and "wheel" in artifact["build"]
    wheel_glob = artifact["files"][0]["source"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert Path(wheel_glob).name.startswith(project["name"] + "-")
    assert set(CHAINS) == set(JOBS_IN_BUNDLE), "a job was added or removed: list its chain here"
    texts = [(ROOT / "databricks.yml").read_text()] + [p.read_text() for p in resource_files()]
    used = {name for text in texts for name in VARIABLE.findall(text)}
    assert used <= set(BUNDLE["variables"]), f"undeclared: {used - set(BUNDLE['variables'])}"


def test_the_wheel_leaves_a_runtimes_own_spark_alone():
    """A Databricks runtime brings its Spark: requiring PyPI's pyspark would install it over."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    base = [re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in project["dependencies"]]
    assert not {"pyspark", "delta-spark"} & set(base)
    spark_extra = {r.split("==")[0] for r in project["optional-dependencies"]["spark"]}
    assert {"pyspark", "delta-spark"} <= spark_extra
    assert "siftlake[spark]" in project["optional-dependencies"]["dev"]


def test_entry_point_is_the_siftlake_cli():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert scripts["siftlake"] == "jobs.cli:main"


@pytest.mark.parametrize("key", sorted(JOBS_IN_BUNDLE))
def test_job_loads_typed_and_its_tasks_run_siftlake_jobs_in_chain_order(key):
    path, raw = JOBS_IN_BUNDLE[key]
    job = Job.from_dict(raw)  # raises on an unknown field or a wrong type
    parameters = {p.name for p in job.parameters}
    assert parameters == {"config", "lake_root"}
    assert len(job.schedule.quartz_cron_expression.split()) in (6, 7)
    clusters = {c.job_cluster_key: resolve_variables(c.new_cluster.as_dict()) for c in job.job_clusters}

    tasks = {t.task_key: t for t in job.tasks}
    assert len(tasks) == len(job.tasks), "duplicate task_key"
    for task in job.tasks:
        wheel = task.python_wheel_task
        assert wheel.package_name == "siftlake" and wheel.entry_point == "siftlake"
        assert task.max_retries >= 1 and task.min_retry_interval_millis > 0
        # The task's library is the wheel the artifact builds (paths are relative to the file).
        libraries = [(path.parent / lib.whl).resolve() for lib in task.libraries]
        artifact = (ROOT / BUNDLE["artifacts"]["siftlake_wheel"]["files"][0]["source"]).resolve()
        assert libraries == [artifact]

        args = list(wheel.parameters)
        job_name = args[0]
        assert job_name in JOBS, f"{key}.{task.task_key}: siftlake has no job {job_name!r}"
        assert set(JOB_PARAMETER.findall(" ".join(args))) <= parameters
        assert args[1:5] == [
            "--config", "{{job.parameters.config}}", "--set", "lake.root={{job.parameters.lake_root}}"
        ]
        # siftlake's own parser and config accept every argument (a misspelt key fails here).
        parsed = build_parser().parse_args([JOB_PARAMETER.sub("x", a) for a in args])
        load_config(None, parsed.overrides)

        runtime = clusters[task.job_cluster_key]["spark_version"]
        assert ("gpu" in runtime) == (job_name in GPU_JOBS), f"{task.task_key} on {runtime}"
        for dependency in task.depends_on:
            assert dependency.task_key in tasks, f"{task.task_key} needs {dependency.task_key}"

    order = topological_order({k: [d.task_key for d in t.depends_on] for k, t in tasks.items()})
    job_of = {k: t.python_wheel_task.parameters[0] for k, t in tasks.items()}
    for chain in CHAINS[key]:
        keys = [next(k for k in tasks if job_of[k] == name) for name in chain]
        assert [order.index(k) for k in keys] == sorted(order.index(k) for k in keys)
        for earlier, later in zip(keys, keys[1:], strict=False):
            assert earlier in [d.task_key for d in tasks[later].depends_on]
    assert sorted(job_of.values()) == sorted(name for chain in CHAINS[key] for name in chain)


def topological_order(needs: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    ready = sorted(k for k, deps in needs.items() if not deps)
    remaining = {k: set(deps) for k, deps in needs.items() if deps}
    while ready:
        done = ready.pop(0)
        order.append(done)
        for key in sorted(remaining):
            remaining[key].discard(done)
            if not remaining[key]:
                del remaining[key]
                ready.append(key)
    assert not remaining, f"dependency cycle among {sorted(remaining)}"
    return order


def test_topological_order_finds_a_cycle():
    with pytest.raises(AssertionError, match="cycle"):
        topological_order({"a": ["b"], "b": ["a"], "c": []})
