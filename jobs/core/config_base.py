"""What every config section shares: the strict base class, the run modes, ConfigError."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from jobs.core.errors import UserError

PARTITION_VALUE_PATTERN = r"^[a-z0-9_-]+$"

# full: recompute and replace the job's output; incremental: process only documents (or input
# files) without a result yet and append (see the README's "Scheduled runs").
Mode = Literal["full", "incremental"]
MODE_FIELD_DESCRIPTION = "full: recompute and replace; incremental: only new documents, appended"


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be used; the message names the file and the key."""


class Section(BaseModel):
    # Unknown keys are typos until proven otherwise.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

