"""The run record: what results.json holds, as typed models.

A run writes its results.json through `Run` and a resume or a report reads it back through
`Run`, so a damaged or foreign file is refused in one line instead of failing deep inside.
docs/results.schema.json is generated from these models (`record.schema()`, kept in step by a
test) for other programs that read the files. Records written by other modules (the privacy audit, the
defenses, an aggregator's details) are kept as open JSON objects: their owners define them."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

SCHEMA_VERSION = 1
Status = Literal["running", "budget", "complete"]
Json = dict[str, Any]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Counts(Record):
    """LLM calls of one purpose (forward, feedback, update, gate, aggregation, evaluation, test)."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0  # paid for: answered by the engine
    completion_tokens: int = 0
    cached_tokens: int = 0  # served by the response cache
    retries: int = 0
    errors: int = 0
    seconds: float = 0.0


class UsageTotals(Counts):
    total_tokens: int = 0
    tokens_used: int = 0  # paid + cached: what the experiment needed
    by_purpose: dict[str, Counts] = {}


class Step(Record):
    """One local step of one client (`textgrad.StepRecord`)."""

    step: int
    batch_accuracy: float
    candidate_accuracy: float | None
    accepted: bool
    reason: str
    prompt_chars: int
    tokens: int
    feedback: str = ""
    outcome: str = ""
    candidates: int = 0
    dropped: list[str] = []
    chosen: str = ""
    scored: dict[str, float] = {}  # prompt -> its accuracy on the client's holdout


class ClientUpload(Record):
    """What a client sent in one round, and how it got there."""

    client: int
    prompt: str
    num_examples: int
    accuracy_before: float
    accuracy_after: float | None
    seconds: float
    steps: list[Step]
    usage: UsageTotals
    privacy: Json | None = None  # what the client's privacy guard did to the upload
    node: str | None = None  # the Flower SuperNode that sent it


class Failure(Record):
    client: int
    error: str
    attempt: int


class Acceptance(Record):
    """`federation.acceptance`: empty when every aggregate is broadcast."""

    before: float | None = None
    after: float | None = None
    accepted: bool | None = None


class Round(Record):
    round: int
    sampled: list[int]
    global_prompt: str
    val_accuracy: float
    val_by_task: dict[str, float]
    prompt_chars: int
    prompt_tokens: int
    uid: Json | None = None  # the prompt's surprisal profile (eval.uid_metrics)
    aggregation: Json
    acceptance: Acceptance = Acceptance()
    clients: list[ClientUpload]
    failures: list[Failure] = []
    defense: Json = {}
    seconds: float
    usage: UsageTotals
    privacy: Json | None = None


class Initial(Record):
    prompt: str
    prompt_tokens: int
    uid: Json | None = None
    val_accuracy: float
    val_by_task: dict[str, float]
    test_accuracy: float
    test_by_task: dict[str, float]
    test_scores: list[float]
    test_examples: str | None = None  # a digest: runs pool only on the same examples


class Tested(Record):
    """A prompt chosen at the end of the run, with its test scores."""

    prompt: str
    round: int
    val_accuracy: float
    test_accuracy: float
    test_by_task: dict[str, float]
    test_scores: list[float]


class Paired(Record):
    """`stats.Paired`: the final prompt against the initial one on the same test examples."""

    n: int
    before: float
    after: float
    diff: float
    low: float
    high: float
    p_value: float | None
    wins: int
    losses: int
    runs: int = 1


class Final(Tested):
    paired: Paired
    last: Tested  # the last round's prompt, beside the best on validation


class Stop(Record):
    """Why an attempt of the run stopped early (`--resume` goes on from there)."""

    time: float
    rounds_done: int
    error: str


class Run(Record):
    schema_version: Literal[1] = SCHEMA_VERSION
    status: Status
    config: Json
    data_fingerprint: str | None = None
    rounds: list[Round]
    usage: UsageTotals
    wall_seconds: float
    initial: Initial | None = None
    final: Final | None = None
    privacy: Json | None = None
    errors: list[Stop] = []

    @model_validator(mode="after")
    def _complete_has_final(self) -> Run:
        if self.status == "complete" and self.final is None:
            raise ValueError("a complete run without 'final'")
        return self


class RecordError(ValueError):
    """A results.json that is not a run's results; the message is one line."""


def read_run(data: object) -> Run:
    """`data` (parsed JSON) as a run record, or RecordError saying what is wrong."""
    try:
        return Run.model_validate(data)
    except ValidationError as error:
        raise RecordError(first_problem(error)) from None


def dump_run(run: Run) -> str:
    """results.json's text: validated, with exactly the fields the run set."""
    checked = read_run(run.model_dump(mode="json", exclude_unset=True))  # assignments too
    return checked.model_dump_json(indent=2, exclude_unset=True) + "\n"


def first_problem(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    if not where and first["type"] == "model_type":
        return "not a JSON object"
    message = first["msg"].removeprefix("Value error, ")
    return f"'{where}': {message[:1].lower()}{message[1:]}" if where else message


def schema() -> str:
    return json.dumps(Run.model_json_schema(), indent=2) + "\n"
