"""The local optimizer: K textual-gradient steps over one learner's data.

One step is the paper's: forward ► score ► feedback ► update ► gate. `train.method` decides how
feedback and update are asked — ours: contrastive feedback on the wrong answers and several
candidate rewrites; the paper's: TextGrad's two-hop feedback on every example and one rewrite.
`train.gate` decides which candidate, if any, replaces the prompt."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from fedtextgrad import text
from fedtextgrad.config import TrainConfig
from fedtextgrad.llm import LLM
from fedtextgrad.llm.usage import Usage, track_usage
from fedtextgrad.tasks import Example
from fedtextgrad.textgrad import paper
from fedtextgrad.textgrad import step as tg
from fedtextgrad.textgrad.step import Attempt, Objective, Update


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REVERTED = "reverted"  # the gate kept the old prompt
    REJECTED = "rejected"  # no usable rewrite
    UNCHANGED = "unchanged"  # every rewrite was the current prompt
    NO_ERRORS = "no_errors"  # nothing to learn from the batch


@dataclass
class StepRecord:
    step: int
    batch_accuracy: float
    candidate_accuracy: float | None  # the gate's score of the best candidate
    accepted: bool
    reason: str  # the outcome's detail, for people
    prompt_chars: int
    tokens: int  # LLM tokens the step used (prompt + completion, cached calls included)
    feedback: str = ""
    outcome: str = ""  # an Outcome
    candidates: int = 0  # distinct rewrites the gate compared
    dropped: list[str] = field(default_factory=list)  # sentences naming the batch's examples
    chosen: str = ""  # where the kept candidate came from: "rewrite" or "induced" (ours)
    scored: dict[str, float] = field(default_factory=dict)  # prompt -> its holdout accuracy

    def to_dict(self) -> dict:
        return asdict(self)


StepSink = Callable[[StepRecord], None]  # told of each step as soon as it is done


@dataclass
class TrainResult:
    prompt: str
    steps: list[StepRecord]
    accuracy_before: float  # the incoming prompt on the first minibatch
    accuracy_after: float | None  # the outgoing prompt on the last minibatch; None: not scored
    usage: Usage = field(default_factory=Usage)


@dataclass
class Memory:
    """What the update sees of this round's earlier steps (`train.momentum`)."""

    feedback: list[str] = field(default_factory=list)  # ours: past feedback
    values: list[str] = field(default_factory=list)  # the paper's momentum: past prompts


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
        self.config = config
        self.seed = seed
        self.extra_rules = list(extra_rules)  # more rules for the update (e.g. privacy)
        self.val_set = list(val)[: config.gate_val_size] if config.gate_val_size else list(val)
        self.train_set, self.holdout = self._hold_out(list(train))
        # Ours, `train.history`: every prompt the select gate scored, with its accuracy on the
        # fixed holdout (so scores compare): the optimizer sees the best. The server keeps it in
        # the step records and hands it back each round, so a client holds no state.
        self.history: dict[str, float] = {}

    def _hold_out(self, train: list[Example]) -> tuple[list[Example], list[Example]]:
        """The select gate scores on the minibatch plus a fixed slice of the learner's own
        training data that no minibatch draws from (when there is enough data to spare)."""
        size = self.config.holdout if self.config.resolved_gate == "select" else 0
        if not size or len(train) < size + self.config.batch_size:
            return train, []
        order = list(train)
        random.Random(f"{self.seed}/holdout").shuffle(order)
        held = {id(ex) for ex in order[:size]}
        return [ex for ex in train if id(ex) not in held], order[:size]

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
        history: dict[str, float] | None = None,
    ) -> TrainResult:
        """K steps from `prompt`; `history`: the prompts this learner scored in earlier rounds."""
        records: list[StepRecord] = []
        memory = Memory()
        self.history = dict(history or {})
        after: float | None = None
        with track_usage() as usage:
            for number, batch in enumerate(self.batches(round_number, steps), 1):
                new, record, after = await self.step(prompt, batch, memory, number)
                if record.feedback:
                    memory.feedback.append(record.feedback)
                if new != prompt:
                    memory.values.append(prompt)
                prompt = new
                records.append(record)
                if on_step:
                    on_step(record)
        return TrainResult(prompt, records, records[0].batch_accuracy, after, usage)

    async def step(
        self, prompt: str, batch: list[Example], memory: Memory, number: int
    ) -> tuple[str, StepRecord, float | None]:
        """forward ► score ► feedback ► update ► gate. Returns the prompt to keep, the record,
        and the kept prompt's accuracy on this minibatch (None when the gate did not score it)."""
        with track_usage() as usage:
            attempts = await self._attempts(prompt, batch, "forward")  # forward ► score
            record = StepRecord(number, tg.accuracy(attempts), None, False, "", len(prompt), 0)
            kept_score: float | None = record.batch_accuracy
            if record.batch_accuracy == 1.0:
                record.outcome = Outcome.NO_ERRORS
                record.reason = "no errors in the batch: nothing to learn"
            elif candidates := await self._propose(prompt, attempts, memory, record):
                prompt, kept_score = await self._gate(prompt, candidates, attempts, record)
        record.prompt_chars = len(prompt)
        record.tokens = usage.total().tokens_used
        return prompt, record, kept_score

    # -- feedback ► update ----------------------------------------------------------------------

    async def _propose(
        self, prompt: str, attempts: list[Attempt], memory: Memory, record: StepRecord
    ) -> dict[str, str]:
        """The method's feedback and update: the distinct usable rewrites (maybe none), each
        with its source ("rewrite", or "induced" from the batch's pairs)."""
        cfg, llm = self.config, self.feedback_llm
        proposals: list[tuple[Update, str]]  # (update, where it came from)
        momentum = slice(-cfg.momentum, None) if cfg.momentum else slice(0)
        specific = self._specific(attempts, prompt)
        limits = {"max_chars": cfg.max_prompt_chars, "max_tokens": cfg.update_max_tokens}
        if cfg.method == "induce":  # the baseline: no feedback, one induced instruction
            induced = await self._induce(prompt, attempts, specific, limits)
            proposals = [(u, "induced") for u in induced]
        elif cfg.method == "paper":
            record.feedback = await paper.feedback(
                llm, prompt, self.objective, attempts, max_tokens=cfg.feedback_max_tokens
            )
            update = await paper.update(
                llm,
                prompt,
                self.objective,
                record.feedback,
                past_values=memory.values[momentum],
                max_chars=cfg.max_prompt_chars,
                max_tokens=cfg.update_max_tokens,
            )
            proposals = [(update, "rewrite")]
        else:
            pieces = await tg.feedback(
                llm, prompt, self.objective, attempts, max_tokens=cfg.feedback_max_tokens
            )
            record.feedback = await tg.combine(llm, pieces, max_tokens=cfg.feedback_max_tokens)
            rewrites, induced = await asyncio.gather(
                tg.update(
                    llm,
                    prompt,
                    self.objective,
                    record.feedback,
                    wrong=sum(a.score < 1 for a in attempts),
                    total=len(attempts),
                    memory=memory.feedback[momentum],
                    history=self._history(),
                    rules=self.extra_rules,
                    specific=specific,
                    candidates=cfg.candidates,
                    **limits,
                ),
                self._induce(prompt, attempts, specific, limits),
            )
            proposals = [(u, "rewrite") for u in rewrites] + [(u, "induced") for u in induced]
        record.dropped = list(dict.fromkeys(s for u, _ in proposals for s in u.dropped))
        candidates: dict[str, str] = {}  # prompt -> where it came from; the first of equals
        for u, source in proposals:
            if u.prompt is not None:
                candidates.setdefault(u.prompt, source)
        if not candidates:
            reasons = [u.reason for u, _ in proposals]
            copied = all(r.startswith("the rewrite is the current") for r in reasons)
            record.outcome = Outcome.UNCHANGED if copied else Outcome.REJECTED
            record.reason = reasons[0]
        return candidates

    async def _induce(
        self, prompt: str, attempts: list[Attempt], specific: set[str], limits: dict
    ) -> list[Update]:
        """The instruction induced from the batch's pairs: ours' extra candidate (`train.induce`),
        and the whole of the `induce` baseline."""
        if not self.config.induce and self.config.method != "induce":
            return []
        llm, rules = self.feedback_llm, self.extra_rules
        return [
            await tg.induce(
                llm, prompt, self.objective, attempts, rules=rules, specific=specific, **limits
            )
        ]

    def _specific(self, attempts: Sequence[Attempt], prompt: str) -> set[str]:
        """Tokens that identify the batch's examples (their rare words, names, numbers of two
        or more digits) and that neither the prompt nor the task's wording contains. A target
        that several examples share is a label of the task ("not the same"), not an example's."""
        if not self.config.general_rules:
            return set()
        sources = [s for a in attempts for s in (a.example.input, a.example.target)]
        targets = [a.example.target for a in attempts]
        labels = [t for t in dict.fromkeys(targets) if targets.count(t) > 1]
        known = [prompt, self.objective.role, *self.objective.formats, *labels]
        return set(text.specific_tokens(sources, known))

    def _history(self) -> list[tuple[str, float]]:
        """The best prompts scored so far, worst first (OPRO's order)."""
        if not self.config.history:
            return []
        return sorted(self.history.items(), key=lambda item: item[1])[-self.config.history :]

    # -- gate ---------------------------------------------------------------------------------

    async def _gate(
        self,
        prompt: str,
        sources: dict[str, str],
        attempts: list[Attempt],
        record: StepRecord,
    ) -> tuple[str, float | None]:
        """Keep the best candidate if the gate prefers it to the old prompt. Returns the kept
        prompt and its minibatch accuracy (None when not scored)."""
        cfg, batch = self.config, [a.example for a in attempts]
        candidates = list(sources)
        record.candidates = len(candidates)
        if cfg.resolved_gate == "none":
            record.accepted, record.outcome = True, Outcome.ACCEPTED
            record.reason, record.chosen = "accepted (no gate)", sources[candidates[0]]
            return candidates[0], None
        where = {"select": "batch+holdout", "batch": "batch", "validation": "validation"}
        scored_on = {
            "select": batch + self.holdout,
            "batch": batch,
            "validation": self.val_set,
        }[cfg.resolved_gate]
        if not scored_on:
            record.accepted, record.outcome = True, Outcome.ACCEPTED
            record.reason = "accepted (no validation data for the gate)"
            record.chosen = sources[candidates[0]]
            return candidates[0], None
        old_attempts, *scored = await asyncio.gather(
            self._attempts(prompt, scored_on, "gate")
            if cfg.resolved_gate != "batch"
            else _done(attempts),
            *(self._attempts(c, scored_on, "gate") for c in candidates),
        )
        old = tg.accuracy(old_attempts)
        scores = [tg.accuracy(s) for s in scored]
        if self.holdout and cfg.resolved_gate == "select":  # the holdout comes last
            held = [old_attempts, *scored]
            record.scored = {
                p: tg.accuracy(a[len(batch) :])
                for p, a in zip([prompt, *candidates], held, strict=True)
            }
            self.history |= record.scored
        best = max(range(len(candidates)), key=lambda i: (scores[i], -len(candidates[i])))
        new = scores[best]
        accepted = {
            "select": new > old + cfg.margin,
            "batch": new > old or new == 1.0,  # FedTextGrad's code
            "validation": new >= old,  # TextGrad's: revert only if it fell
        }[cfg.resolved_gate]
        of = f" (best of {len(candidates)})" if len(candidates) > 1 else ""
        verdict = Outcome.ACCEPTED if accepted else Outcome.REVERTED
        record.accepted, record.outcome, record.candidate_accuracy = accepted, verdict, new
        record.reason = f"{verdict}: {where[cfg.resolved_gate]} accuracy {old:.2f} -> {new:.2f}{of}"
        kept, kept_attempts = (
            (candidates[best], scored[best]) if accepted else (prompt, old_attempts)
        )
        record.chosen = sources[candidates[best]] if accepted else ""
        if cfg.resolved_gate == "validation":
            return kept, (None if accepted else record.batch_accuracy)
        return kept, tg.accuracy(kept_attempts[: len(batch)])  # the minibatch comes first

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


async def _done(value):
    return value
