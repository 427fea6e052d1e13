"""One textual-gradient step of our method, as small functions: forward ► score ► feedback ►
update (the gate is the trainer's). The paper's variant of feedback and update is in `paper.py`.

Each takes the engine it needs as an argument; nothing global. A malformed reply never crashes a
step: `update` returns the reason it was rejected and the caller keeps the old prompt."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from fedtextgrad.llm import LLM, Completion, Message
from fedtextgrad.tasks import Example, Task
from fedtextgrad.textgrad import repairs, templates

LOOP_PENALTY = 0.3  # small models at temperature 0 tend to repeat one instruction until cut off
# A copied prompt is asked for again, sampled: greedy decoding copies it again even when told not
# to (measured with the 1.5B model). Seeded, so the reply is cached and replayed like the others.
COPY_RETRY_SAMPLING = {"temperature": 0.8, "seed": 0}
CANDIDATE_TEMPERATURE = 0.8  # candidates after the first (greedy) one are sampled, seeded
# Lines of the feedback that diagnose one example; pasted into a prompt they are noise (and
# quote the example). The "Instruction:" lines are left: they are what a rewrite should use.
_DIAGNOSIS = re.compile(r"\s*(Feedback \d+|Mistake|Solution):", re.IGNORECASE)
_FEEDBACK_COMBINE_CHARS = 6000  # beyond this, feedback is merged by the LLM to fit the context


@dataclass(frozen=True)
class Objective:
    """The tasks a prompt must serve (one task, or several in the heterogeneous setting)."""

    tasks: dict[str, Task]

    @classmethod
    def of(cls, *tasks: Task) -> Objective:
        return cls({task.name: task for task in tasks})

    @property
    def role(self) -> str:
        return next(iter(self.tasks.values())).role

    @property
    def answer_format(self) -> str:
        return " ".join(dict.fromkeys(task.answer_format for task in self.tasks.values()))

    @property
    def initial_prompt(self) -> str:
        prompts = list(dict.fromkeys(task.initial_prompt for task in self.tasks.values()))
        if len(prompts) == 1:
            return prompts[0]
        bodies = dict.fromkeys(self.without_format(p) for p in prompts)  # reuse shared text
        return " ".join(bodies) + " " + self.answer_format

    def score(self, example: Example, response: str) -> float:
        return self.tasks[example.task].score(response, example.target)

    def extract(self, example: Example, response: str) -> str | None:
        return self.tasks[example.task].extract(response)

    def target(self, example: Example) -> str:
        return self.tasks[example.task].shown_target(example.target)

    @property
    def formats(self) -> list[str]:
        return list(dict.fromkeys(task.answer_format for task in self.tasks.values()))

    def keeps_format(self, prompt: str) -> bool:
        text = repairs.normalize(prompt)
        return all(repairs.normalize(fmt) in text for fmt in self.formats)

    def without_format(self, prompt: str) -> str:
        """The prompt without its answer-format sentence(s), wherever they stand."""
        return repairs.strip_format(prompt, self.formats)

    def finish(self, rewrite: repairs.Rewrite, max_chars: int) -> tuple[str | None, str]:
        """A repaired body with the answer format attached last, within `max_chars`."""
        if rewrite.body is None:
            return None, rewrite.problem
        prompt = f"{rewrite.body}\n{self.answer_format}"
        if len(prompt) > max_chars:
            return None, f"the improved prompt is too long ({len(prompt)} > {max_chars} characters)"
        return prompt, ""


@dataclass(frozen=True)
class Attempt:
    example: Example
    response: str
    answer: str | None
    score: float
    finish_reason: str = "stop"  # "length": the reply was cut off at max_tokens


@dataclass(frozen=True)
class Update:
    prompt: str | None  # None: rejected, keep the old prompt
    reason: str
    dropped: tuple[str, ...] = ()  # sentences removed for naming the batch's examples


async def forward(
    llm: LLM, prompt: str, examples: Sequence[Example], *, max_tokens: int, purpose: str = "forward"
) -> list[Completion]:
    """The forward model answers every example under `prompt`, all requests in flight at once."""
    return await asyncio.gather(
        *(
            llm.chat(
                [{"role": "system", "content": prompt}, {"role": "user", "content": ex.input}],
                purpose=purpose,
                max_tokens=max_tokens,
            )
            for ex in examples
        )
    )


def score(
    objective: Objective, examples: Sequence[Example], replies: Sequence[Completion]
) -> list[Attempt]:
    return [
        Attempt(
            ex,
            reply.text,
            objective.extract(ex, reply.text),
            objective.score(ex, reply.text),
            reply.finish_reason,
        )
        for ex, reply in zip(examples, replies, strict=True)
    ]


async def judge(llm: LLM, attempts: Sequence[Attempt]) -> list[Attempt]:
    """LLM-judged loss, for answers that exact match cannot grade."""

    async def one(attempt: Attempt) -> Attempt:
        verdict = await llm.ask(
            templates.JUDGE.format(
                question=attempt.example.input,
                target=attempt.example.target,
                response=attempt.response,
            ),
            purpose="judge",
            max_tokens=8,
        )
        correct = verdict.strip().upper().startswith("CORRECT")
        return replace(attempt, score=float(correct))

    return list(await asyncio.gather(*(one(a) for a in attempts)))


async def evaluate(
    llm: LLM,
    prompt: str,
    examples: Sequence[Example],
    objective: Objective,
    *,
    max_tokens: int,
    purpose: str = "evaluation",
) -> list[Attempt]:
    replies = await forward(llm, prompt, examples, max_tokens=max_tokens, purpose=purpose)
    return score(objective, examples, replies)


def accuracy(attempts: Sequence[Attempt]) -> float:
    return sum(a.score for a in attempts) / len(attempts) if attempts else 0.0


async def feedback(
    llm: LLM, prompt: str, objective: Objective, attempts: Sequence[Attempt], *, max_tokens: int
) -> list[str]:
    """Criticism of the prompt, one piece per wrong answer (right answers carry no gradient)."""
    wrong = [a for a in attempts if a.score < 1]
    return list(
        await asyncio.gather(
            *(
                llm.ask(
                    templates.FEEDBACK.format(
                        role=objective.role,
                        prompt=prompt,
                        question=a.example.input,
                        response=a.response,
                        answer=f"'{a.answer}'" if a.answer is not None else "missing",
                        target=objective.target(a.example),
                    ),
                    system=templates.FEEDBACK_SYSTEM,
                    purpose="feedback",
                    max_tokens=max_tokens,
                )
                for a in wrong
            )
        )
    )


async def combine(llm: LLM, pieces: Sequence[str], *, max_tokens: int) -> str:
    """Concatenate the batch's feedback; merge it with the LLM only when it would not fit."""
    joined = "\n\n".join(f"Feedback {i}:\n{condense(p)}" for i, p in enumerate(pieces, 1))
    if len(joined) <= _FEEDBACK_COMBINE_CHARS:
        return joined
    return await llm.ask(
        templates.COMBINE_FEEDBACK.format(
            max_items=5, feedback=joined[: 3 * _FEEDBACK_COMBINE_CHARS]
        ),
        purpose="feedback",
        max_tokens=max_tokens,
    )


def update_request(
    prompt: str,
    objective: Objective,
    gradient: str,
    *,
    wrong: int,
    total: int,
    memory: Sequence[str] = (),
    history: Sequence[tuple[str, float]] = (),
    rules: Sequence[str] = (),
    max_chars: int,
) -> tuple[list[Message], list[str]]:
    """The update's messages, and what a reply may copy from them instead of writing a prompt
    (the request's rules, the feedback's diagnosis lines): echoes to drop."""
    listed = _listed_rules(prompt, rules, max_chars)
    past = templates.UPDATE_MEMORY.format(past="\n\n".join(memory)) if memory else ""
    request = templates.UPDATE.format(
        role=objective.role,
        prompt=prompt,
        wrong=wrong,
        total=total,
        feedback=gradient,
        memory=past + templates.history_block(history),
        rules=templates.rules_block(listed, objective.answer_format),
    )
    diagnoses = [line for text in (gradient, *memory) for line in text.splitlines()]
    echoes = [*echoes_of(templates.UPDATE, listed), *filter(_DIAGNOSIS.match, diagnoses)]
    return _update_messages(request), echoes


def echoes_of(template: str, listed: Sequence[str]) -> list[str]:
    """What a reply may copy from a request made of `template` instead of writing a prompt: its
    listed rules, the format rule, and the template's own sentences (lines of four or more words
    with no placeholder)."""
    own = [line for line in template.splitlines() if "{" not in line and len(line.split()) >= 4]
    return [*listed, templates.FORMAT_RULE, *own]


def _listed_rules(prompt: str, rules: Sequence[str], max_chars: int) -> list[str]:
    return templates.update_rules(min(max_chars // 7, len(prompt.split()) + 80), rules)


def _update_messages(request: str) -> list[Message]:
    return [
        {"role": "system", "content": templates.UPDATE_SYSTEM},
        {"role": "user", "content": request},
    ]


async def induce(
    llm: LLM,
    prompt: str,
    objective: Objective,
    attempts: Sequence[Attempt],
    *,
    rules: Sequence[str] = (),
    specific: Collection[str] = (),
    max_chars: int,
    max_tokens: int,
) -> Update:
    """Instruction induction: a fresh prompt stating the instruction that maps the batch's
    inputs to their expected outputs. Every pair counts, right answers too: each shows the task."""
    listed = _listed_rules(prompt, rules, max_chars)
    pairs = "\n\n".join(
        templates.INDUCE_PAIR.format(input=a.example.input, target=objective.target(a.example))
        for a in attempts
    )
    request = templates.INDUCE.format(
        role=objective.role,
        pairs=pairs,
        rules=templates.rules_block(listed, objective.answer_format),
    )
    echoes = echoes_of(templates.INDUCE, listed)
    return await rewrite(
        llm,
        _update_messages(request),
        prompt,
        objective,
        echoes,
        specific,
        {},
        max_chars=max_chars,
        max_tokens=max_tokens,
    )


async def update(
    llm: LLM,
    prompt: str,
    objective: Objective,
    gradient: str,
    *,
    wrong: int,
    total: int,
    memory: Sequence[str] = (),
    history: Sequence[tuple[str, float]] = (),
    rules: Sequence[str] = (),
    specific: Collection[str] = (),
    candidates: int = 1,
    max_chars: int,
    max_tokens: int,
) -> list[Update]:
    """Textual gradient descent: the LLM rewrites the prompt from the feedback, `candidates`
    times (the first greedy, the others sampled with fixed seeds, so all are cached and
    replayed). Sentences naming the batch's `specific` tokens are dropped from each rewrite."""
    messages, echoes = update_request(
        prompt,
        objective,
        gradient,
        wrong=wrong,
        total=total,
        memory=memory,
        history=history,
        rules=rules,
        max_chars=max_chars,
    )
    samplings = [{}] + [
        {"temperature": CANDIDATE_TEMPERATURE, "seed": i} for i in range(1, candidates)
    ]
    return list(
        await asyncio.gather(
            *(
                rewrite(
                    llm,
                    messages,
                    prompt,
                    objective,
                    echoes,
                    specific,
                    sampling,
                    max_chars=max_chars,
                    max_tokens=max_tokens,
                )
                for sampling in samplings
            )
        )
    )


async def rewrite(
    llm: LLM,
    messages: list[Message],
    prompt: str,
    objective: Objective,
    echoes: Sequence[str],
    specific: Collection[str],
    sampling: dict,
    *,
    max_chars: int,
    max_tokens: int,
) -> Update:
    """One rewrite, with one retry when the reply is unusable or the current prompt again (small
    models copy a prompt that already breaks the update's rules rather than choose what to
    change); the retry of a copy is sampled, since greedy decoding copies again."""
    request = messages[-1]["content"]
    problem = ""
    for _ in range(2):
        reply = await llm.chat(
            messages,
            purpose="update",
            max_tokens=max_tokens,
            frequency_penalty=LOOP_PENALTY,
            **(COPY_RETRY_SAMPLING if problem == templates.COPIED and not sampling else sampling),
        )
        parsed = repairs.parse_rewrite(
            reply.text, objective.formats, echoes=echoes, specific=specific, before=prompt
        )
        candidate, problem = objective.finish(parsed, max_chars)
        if candidate is not None and candidate.split() != prompt.split():
            return Update(candidate, "updated", parsed.dropped)
        if candidate is not None:
            problem = templates.COPIED
        # Retry afresh with a warning; replaying a looping reply would invite more of it.
        warning = templates.UPDATE_RETRY.format(
            problem=problem, answer_format=objective.answer_format
        )
        messages = [messages[0], {"role": "user", "content": f"{request}\n\n{warning}"}]
    if problem == templates.COPIED:
        return Update(None, "the rewrite is the current prompt: nothing to update", parsed.dropped)
    return Update(None, f"rejected: {problem}", parsed.dropped)


def parse_update(
    reply: str, objective: Objective, max_chars: int, echoes: Sequence[str] = ()
) -> tuple[str | None, str]:
    """The prompt between the tags, repaired (`repairs.parse_rewrite`), with the answer format
    last; or None and what is wrong with the reply."""
    return objective.finish(
        repairs.parse_rewrite(reply, objective.formats, echoes=echoes), max_chars
    )


def condense(feedback: str) -> str:
    """The diagnosis and the proposed instruction: the part of the feedback the update needs."""
    start = feedback.find("Mistake:")
    return feedback[start:].strip() if start >= 0 else feedback.strip()
