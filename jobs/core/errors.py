"""Errors a user fixes without touching the code: the CLI prints one line and exits 2."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Fixed by running another job first or by changing a setting; the message says which."""

    def one_line(self) -> str:
        return "; ".join(line.strip() for line in str(self).splitlines() if line.strip())


class MissingInput(UserError, FileNotFoundError):
    """A model, checkpoint or file the config names is not there."""


def require_local_path(path: str, what: str, fix: str) -> None:
    """Fail on the driver, before any Spark task, when a local path does not exist.

    URIs (s3a://, dbfs:/ ...) are left to the reader: the driver may not see them.
    """
    if "://" in path or path.startswith("dbfs:"):
        return
    if not Path(path).exists():
        raise MissingInput(f"{what}: no file or folder at {path!r}; {fix}")
