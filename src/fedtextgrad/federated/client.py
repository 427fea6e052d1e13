"""A client: private data and a local trainer. Given the global prompt, it runs K local steps and
returns an update. The same class serves the in-process and the Flower runtimes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from fedtextgrad.federated.aggregators import Upload
from fedtextgrad.federated.hooks import UploadHook
from fedtextgrad.llm.usage import Usage
from fedtextgrad.record import ClientUpload, Failure, Round, Step, UsageTotals
from fedtextgrad.textgrad import LocalTrainer, StepRecord
from fedtextgrad.textgrad.trainer import StepSink


@dataclass
class ClientUpdate:
    upload: Upload
    steps: list[StepRecord]
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    privacy: dict | None = None  # what the client's privacy guard did to the upload

    def to_record(self) -> ClientUpload:
        u = self.upload
        return ClientUpload(
            client=u.client,
            prompt=u.prompt,
            num_examples=u.num_examples,
            accuracy_before=u.accuracy_before,
            accuracy_after=u.accuracy_after,
            seconds=round(self.seconds, 3),
            steps=[Step.model_validate(s.to_dict()) for s in self.steps],
            usage=UsageTotals.model_validate(self.usage.to_dict()),
            **({"privacy": self.privacy} if self.privacy is not None else {}),
        )

    @classmethod
    def from_record(cls, record: ClientUpload) -> ClientUpdate:
        upload = Upload(
            record.client,
            record.prompt,
            record.num_examples,
            record.accuracy_before,
            record.accuracy_after,
        )
        steps = [StepRecord(**s.model_dump()) for s in record.steps]
        usage = Usage.from_dict(record.usage.model_dump())
        return cls(upload, steps, usage, record.seconds, record.privacy)


def client_histories(rounds: Sequence[Round]) -> dict[int, dict[str, float]]:
    """Each client's scored prompts in the round records so far (`StepRecord.scored`)."""
    histories: dict[int, dict[str, float]] = {}
    for entry in rounds:
        for client in entry.clients:
            for step in client.steps:
                histories.setdefault(client.client, {}).update(step.scored)
    return histories


@dataclass
class ClientFailure:
    client: int
    error: str

    def to_record(self, attempt: int) -> Failure:
        return Failure(client=self.client, error=self.error, attempt=attempt)


class Client:
    def __init__(self, client_id: int, trainer: LocalTrainer, guard: UploadHook | None = None):
        self.id = client_id
        self.trainer = trainer
        self.guard = guard  # privacy: turns the trained prompt into the upload

    async def run_round(
        self,
        global_prompt: str,
        round_number: int,
        local_steps: int,
        on_step: StepSink | None = None,
        history: dict[str, float] | None = None,
    ) -> ClientUpdate:
        started = time.perf_counter()
        result = await self.trainer.train(
            global_prompt,
            steps=local_steps,
            round_number=round_number,
            on_step=on_step,
            history=history,
        )
        prompt, privacy = result.prompt, None
        if self.guard is not None:
            prompt, privacy = await self.guard.prepare_upload(result.prompt, global_prompt)
        upload = Upload(
            self.id,
            prompt,
            len(self.trainer.train_set),
            result.accuracy_before,
            result.accuracy_after,
        )
        seconds = time.perf_counter() - started
        return ClientUpdate(upload, result.steps, result.usage, seconds, privacy)
