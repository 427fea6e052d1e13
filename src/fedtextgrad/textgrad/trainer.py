"""The local optimizer: K textual-gradient steps over one learner's data."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from fedtextgrad.config import TrainConfig
from fedtextgrad.llm import LLM
from fedtextgrad.llm.usage import Usage, track_usage
from fedtextgrad.tasks import Example
from fedtextgrad.textgrad import step as tg
from fedtextgrad.textgrad.step import Objective


@dataclass
class StepRecord:
    step: int
    batch_accuracy: float
    candidate_accuracy: float | None  # the gate's score of the new prompt (batch or validation)
    accepted: bool
    reason: str
    prompt_chars: int
    tokens: int  # LLM tokens the step used (prompt + completion, cached calls included)
    feedback: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


StepSink = Callable[[StepRecord], None]  # told of each step as soon as it is done


@dataclass
class TrainResult:
    prompt: str
    steps: list[StepRecord]
    accuracy_before: float  # the incoming prompt on the first batch
    accuracy_after: float  # the outgoing prompt on the last batch it was scored on
    usage: Usage = field(default_factory=Usage)


class LocalTrainer:
    def __init__(
        self,
        forward_llm: LLM,
        feedback_llm: LLM,
        objective: Objective,
        train: Sequence[Example],
        val: Sequence[Example],
        config: TrainConfig,
        seed: str | int,
        extra_rules: Sequence[str] = (),
    ):
        if not train:
            raise ValueError("a learner needs at least one training example")
        self.forward_llm = forward_llm
        self.feedback_llm = feedback_llm
        self.objective = objective
        self.train_set = list(train)
        self.val_set = list(val)[: config.gate_val_size] if config.gate_val_size else list(val)
        self.config = config
        self.seed = seed
        self.extra_rules = list(extra_rules)  # more rules for the update (e.g. privacy)

    def batches(self, round_number: int, steps: int) -> list[list[Example]]:
        """The minibatches of one round: a seeded shuffle, reshuffled when it runs out.
        A pure function of (seed, round), so a resumed run sees the same batches."""
        rng = random.Random(f"{self.seed}/round{round_number}")
        order: list[Example] = []
        batches = []
        for _ in range(steps):
            if len(order) < self.config.batch_size:
                fresh = list(self.train_set)
                rng.shuffle(fresh)
                order += fresh
            batches.append(order[: self.config.batch_size])
            del order[: self.config.batch_size]
        return batches

    async def train(
        self,
        prompt: str,
        *,
        steps: int,
        round_number: int = 1,
        on_step: StepSink | None = None,
    ) -> TrainResult:
        records: list[StepRecord] = []
        memory: list[str] = []
        before = after = 0.0
        with track_usage() as usage:
            for number, batch in enumerate(self.batches(round_number, steps), 1):
                prompt, record, after = await self.step(prompt, batch, memory, number)
                if number == 1:
                    before = record.batch_accuracy
                records.append(record)
                if on_step:
                    on_step(record)
                if record.feedback and self.config.momentum:
                    memory = (memory + [record.feedback])[-self.config.momentum :]
        return TrainResult(prompt, records, before, after, usage)

    async def step(
        self, prompt: str, batch: list[Example], memory: Sequence[str], number: int
    ) -> tuple[str, StepRecord, float]:
        """forward ► score ► feedback ► update ► gate. Returns the prompt to keep, the record,
        and the kept prompt's accuracy on what the gate scored."""
        cfg = self.config
        with track_usage() as usage:
            attempts = await self._attempts(prompt, batch, "forward")
            batch_acc = tg.accuracy(attempts)
            record = StepRecord(number, batch_acc, None, False, "", len(prompt), 0)
            kept_acc = batch_acc
            if batch_acc == 1.0:
                record.reason = "no errors in the batch: nothing to learn"
            else:
                pieces = await tg.feedback(
                    self.feedback_llm,
                    prompt,
                    self.objective,
                    attempts,
                    max_tokens=cfg.feedback_max_tokens,
                )
                record.feedback = await tg.combine(
                    self.feedback_llm, pieces, max_tokens=cfg.feedback_max_tokens
                )
                wrong = sum(a.score < 1 for a in attempts)
                result = await tg.update(
                    self.feedback_llm,
                    prompt,
                    self.objective,
                    record.feedback,
                    wrong=wrong,
                    total=len(attempts),
                    memory=memory,
                    rules=self.extra_rules,
                    max_chars=cfg.max_prompt_chars,
                    max_tokens=cfg.update_max_tokens,
                )
                if result.prompt is None:
                    record.reason = result.reason
                else:
                    record.accepted, record.candidate_accuracy, record.reason = await self.gate(
                        prompt, result.prompt, batch, batch_acc
                    )
                    if record.accepted:
                        prompt = result.prompt
                        kept_acc = record.candidate_accuracy
                        if kept_acc is None:
                            kept_acc = batch_acc
            record.prompt_chars = len(prompt)
        record.tokens = usage.total().tokens_used
        return prompt, record, kept_acc

    async def gate(
        self, old: str, new: str, batch: list[Example], batch_acc: float
    ) -> tuple[bool, float | None, str]:
        """Keep or revert the new prompt. Returns (accepted, its score, why)."""
        if self.config.gate == "none":
            return True, None, "accepted (no gate)"
        if self.config.gate == "batch":  # FedTextGrad's code: the same minibatch again
            new_acc = tg.accuracy(await self._attempts(new, batch, "gate"))
            accepted = new_acc > batch_acc or new_acc == 1.0
            verdict = "accepted" if accepted else "reverted"
            return accepted, new_acc, f"{verdict}: batch accuracy {batch_acc:.2f} -> {new_acc:.2f}"
        if not self.val_set:  # TextGrad's: revert if validation accuracy fell
            return True, None, "accepted (no validation data for the gate)"
        old_acc, new_acc = [  # both prompts scored at once: neither depends on the other
            tg.accuracy(attempts)
            for attempts in await asyncio.gather(
                self._attempts(old, self.val_set, "gate"), self._attempts(new, self.val_set, "gate")
            )
        ]
        accepted = new_acc >= old_acc
        verdict = "accepted" if accepted else "reverted"
        return accepted, new_acc, f"{verdict}: validation accuracy {old_acc:.2f} -> {new_acc:.2f}"

    async def _attempts(
        self, prompt: str, examples: Sequence[Example], purpose: str
    ) -> list[tg.Attempt]:
        attempts = await tg.evaluate(
            self.forward_llm,
            prompt,
            examples,
            self.objective,
            max_tokens=self.config.forward_max_tokens,
            purpose=purpose,
        )
        if self.config.loss == "llm_judge":
            attempts = await tg.judge(self.feedback_llm, attempts)
        return attempts
