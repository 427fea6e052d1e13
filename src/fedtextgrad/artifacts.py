"""Every file a run, a sweep or a report writes goes through here: redacted of secrets
(fedtextgrad.redaction), and written so that a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fedtextgrad.errors import RunStateError
from fedtextgrad.redaction import redact

MANIFEST = "sweep.json"  # a sweep's directory: its runs, settings and status


def write_atomic(path: Path, text: str) -> None:
    """Write-then-rename: a crash leaves either the old file or the new one, never half of one."""
    text = redact(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(redact(line) + "\n")


def refuse_foreign(
    directory: Path, outputs: Sequence[str], marks: Sequence[str], what: str
) -> None:
    """Writing `outputs` into a directory that holds some of them but none of the `marks` of a
    `what` (a run, a report) would overwrite someone else's files: refused in one line."""
    clashes = [name for name in outputs if (directory / name).exists()]
    if clashes and not any((directory / mark).exists() for mark in marks):
        raise RunStateError(
            f"{directory} holds {', '.join(clashes)} but no {what}: give --out a new or empty "
            "directory"
        )


def refuse_foreign_report(directory: Path) -> None:
    """A report writes report.md and index.html beside summary.json, which marks it as ours."""
    refuse_foreign(directory, ("report.md", "index.html"), ("summary.json",), "report")
