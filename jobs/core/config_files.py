"""Loading configs: a packaged config by name or a YAML file, `--set` overrides, and errors that
name the file (or the `--set`) and the dotted key, with the nearest known key for a typo."""

from __future__ import annotations

import copy
import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from jobs.core.config import Config, ConfigError, ModelSpec

# The shipped configs live in the package (jobs/conf, a link to the repo's conf/ in a checkout),
# so an installed wheel resolves `--config cluster` as a checkout resolves conf/cluster.yaml.
PACKAGED_DIR = "conf"


def packaged_config_names() -> list[str]:
    folder = resources.files("jobs").joinpath(PACKAGED_DIR)
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir()
                  if entry.name.endswith(".yaml"))


def is_packaged_name(spec: str) -> bool:
    """A bare name (`local`, `cluster`) means a packaged config; anything else is a path."""
    return "/" not in spec and "\\" not in spec and not spec.endswith((".yaml", ".yml"))


def config_text(spec: str | Path) -> tuple[str, str]:
    """(source shown in errors, YAML text) of a packaged config name or a file path."""
    spec = str(spec)
    if is_packaged_name(spec):
        names = packaged_config_names()
        if spec not in names:
            close = difflib.get_close_matches(spec, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"--config {spec}: no packaged config of that name; {hint}packaged: "
                f"{', '.join(names)} (a file needs a path, e.g. ./{spec}.yaml)"
            )
        text = resources.files("jobs").joinpath(PACKAGED_DIR, f"{spec}.yaml").read_text("utf-8")
        return f"{PACKAGED_DIR}/{spec}.yaml (packaged)", text
    try:
        return spec, Path(spec).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{spec}: cannot read config: {exc.strerror}") from None


def load_config(spec: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Validate a packaged config (`local`), a YAML file, or with `None` the built-in defaults
    (the same values as `conf/local.yaml`), then apply `--set` overrides."""
    if spec is None:
        return config_from_dict({}, "<defaults>", overrides)
    source, text = config_text(spec)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    return config_from_dict(data, source, overrides)


def config_from_dict(data: dict[str, Any], source: str = "<dict>", overrides=()) -> Config:
    data = copy.deepcopy(data or {})  # overrides must not edit the caller's nested sections
    for assignment in overrides:
        _apply_override(data, assignment)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc, overrides)) from None
    cfg.source = source
    return cfg


def declared_models(cfg: Config) -> list[ModelSpec]:
    """`lm_loss.models` plus the entries of `lm_loss.models_manifest` (a YAML list or {models:})."""
    specs = list(cfg.lm_loss.models)
    manifest = cfg.lm_loss.models_manifest
    if manifest:
        try:
            data = yaml.safe_load(Path(manifest).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"{cfg.source}: lm_loss.models_manifest: cannot read {manifest} ({exc.strerror}); "
                "run `siftlake demo_models` or list lm_loss.models"
            ) from None
        entries = data.get("models") if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise ConfigError(f"{manifest}: models: expected a list of models")
        for index, entry in enumerate(entries):
            try:
                specs.append(ModelSpec.model_validate(entry))
            except ValidationError as exc:
                raise ConfigError(_format_errors(f"{manifest}: models.{index}", exc)) from None
    seen: set[str] = set()
    for spec in specs:
        if spec.model_id in seen:
            raise ConfigError(f"{cfg.source}: lm_loss.models: model_id {spec.model_id!r} twice")
        seen.add(spec.model_id)
    if not specs:
        raise ConfigError(f"{cfg.source}: lm_loss.models: no models declared")
    return specs


def nearest_key(loc: tuple) -> str | None:
    """The known key closest to an unknown one at `loc` (e.g. bucketize.score_column)."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list of sections (lm_loss.models.0)
            continue
        field = model.model_fields.get(part) if model else None
        model = _section_type(field.annotation) if field else None
        if model is None:
            return None
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    if not close:
        return None
    return ".".join([*(str(part) for part in loc[:-1]), close[0]])


def _section_type(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def _override_key(assignment: str) -> list[str]:
    return assignment.split("=", 1)[0].strip().split(".")


def _origin(loc: tuple, source: str, overrides) -> str:
    """The `--set` that produced the value at `loc` (or contains it), else the file."""
    path = [str(part) for part in loc]
    for assignment in reversed(list(overrides)):
        key = _override_key(assignment)
        if key[: len(path)] == path or path[: len(key)] == key:
            return f"--set {assignment}"
    return source


def _format_errors(source: str, error: ValidationError, overrides=()) -> str:
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(part) for part in loc) or "<root>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            close = nearest_key(loc)
            message = "unknown key" + (f"; did you mean {close}?" if close else "")
        lines.append(f"{_origin(loc, source, overrides)}: {key}: {message}")
    return "\n".join(lines)


def _apply_override(data: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value")
    key, raw_value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {assignment!r}: empty key segment")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value is not valid YAML: {exc}") from exc
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def describe_keys(key: str) -> list[tuple[str, str, str]]:
    """(dotted key, default, description) of a key or of every key under a section."""
    parts = key.split(".")
    model: type[BaseModel] | None = Config
    for part in parts[:-1]:
        model = _section_type(model.model_fields[part].annotation)
    return _field_docs(model, parts[-1], ".".join(parts[:-1]))


def _field_docs(model: type[BaseModel], name: str, prefix: str) -> list[tuple[str, str, str]]:
    field = model.model_fields[name]
    key = f"{prefix}.{name}" if prefix else name
    section = _section_type(field.annotation)
    if field.is_required():
        return [(key, "required", field.description or "")]
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return [doc for child in section.model_fields
                for doc in _field_docs(section, child, key)]
    docs = [(key, _shown(default), field.description or "")]
    if section is not None:  # a list of sections, e.g. lm_loss.models: one line per item key
        docs += [doc for child in section.model_fields
                 for doc in _field_docs(section, child, f"{key}[]")]
    return docs


def _shown(value: Any) -> str:
    return value if isinstance(value, str) and value else json.dumps(value, ensure_ascii=False)
