"""A run directory: results.json (rewritten atomically after every round: it is also the
checkpoint), events.jsonl (appended as things happen) and prompts/ as text files. One process
at a time owns it (run.lock), and a run never overwrites files that are not a run's."""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fedtextgrad.artifacts import append_line, refuse_foreign, write_atomic
from fedtextgrad.errors import RunStateError
from fedtextgrad.record import RecordError, Run, dump_run, read_run
from fedtextgrad.redaction import redact_data

if TYPE_CHECKING:
    from fedtextgrad.textgrad import Attempt

LOCK = "run.lock"
# What a run writes into its directory besides results.json and events.jsonl (and flower/, the
# deployment of `--runtime flower`, made before the run owns the directory).
OUTPUTS = ("prompts", "replies", "report.md", "report.html", "accuracy.png")


class RunStore:
    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir)
        self.results_path = self.dir / "results.json"

    @contextmanager
    def owned(self) -> Iterator[None]:
        """Hold the directory for one run: a second process (or run) on it is refused in one
        line. The lock is the kernel's (flock): it goes with the process, even a killed one."""
        refuse_foreign(self.dir, OUTPUTS, ("results.json", "events.jsonl"), "run")
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise RunStateError(
                f"{self.dir} is in use by another run{f' (pid {holder})' if holder else ''}: "
                "wait for it to finish, or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        try:
            yield
        finally:
            os.close(fd)  # releases the lock; the file stays (removing it would race)

    def load(self) -> Run | None:
        """The run's results.json, checked against the run record, or None if there is none."""
        if not self.results_path.exists():
            return None
        return read_results(self.results_path, "remove it, or use another --out")

    def save(self, run: Run) -> None:
        write_atomic(self.results_path, dump_run(run))

    def write_prompt(self, name: str, text: str) -> None:
        write_atomic(self.dir / "prompts" / f"{name}.txt", text + "\n")

    def write_replies(self, name: str, attempts: Sequence[Attempt]) -> None:
        """replies/NAME.jsonl: each example with the model's whole reply, what was read from it
        and its score, so that a result can be audited."""
        lines = (
            json.dumps(
                {
                    "input": a.example.input,
                    "target": a.example.target,
                    "response": a.response,
                    "answer": a.answer,
                    "score": a.score,
                    "finish_reason": a.finish_reason,
                },
                ensure_ascii=False,
            )
            for a in attempts
        )
        write_atomic(self.dir / "replies" / f"{name}.jsonl", "".join(f"{line}\n" for line in lines))

    def event(self, event: str, **data: object) -> dict:
        record = redact_data({"time": round(time.time(), 3), "event": event, **data})
        append_line(self.dir / "events.jsonl", json.dumps(record, ensure_ascii=False))
        return record


def read_results(path: Path, fix: str) -> Run:
    """A results.json checked against the run record; a file that is not one fails in one line
    that ends with `fix`."""
    try:
        return read_run(json.loads(path.read_text()))
    except json.JSONDecodeError:
        raise RunStateError(f"{path} is not valid JSON: {fix}") from None
    except (RecursionError, ValueError) as problem:  # not a run, too deep, a huge integer
        detail = f" ({problem})" if isinstance(problem, RecordError) else ""
        raise RunStateError(f"{path} is not a run's results{detail}: {fix}") from None
