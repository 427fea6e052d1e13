"""One textual-gradient step, as small functions: forward ► score ► feedback ► update (► gate).

Each takes the engine it needs as an argument; nothing global. A malformed reply never crashes a
step: `update` returns the reason it was rejected and the caller keeps the old prompt."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass

from fedtextgrad.llm import LLM
from fedtextgrad.tasks import Example, Task
from fedtextgrad.textgrad import templates

_TAGGED = re.compile(r"<IMPROVED_VARIABLE>(.*?)</IMPROVED_VARIABLE>", re.DOTALL)
LOOP_PENALTY = 0.3  # small models at temperature 0 tend to repeat one instruction until cut off
# A copied prompt is asked for again, sampled: greedy decoding copies it again even when told not
# to (measured with the 1.5B model). Seeded, so the reply is cached and replayed like the others.
COPY_RETRY_SAMPLING = {"temperature": 0.8, "seed": 0}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LIST_ITEM = re.compile(r"(\d+[.)](?=\s|$)|[-*•](?=\s|$))?\s*(.*)")
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

    def keeps_format(self, prompt: str) -> bool:
        text = _normalize(prompt)
        return all(_normalize(t.answer_format) in text for t in self.tasks.values())

    def without_format(self, prompt: str) -> str:
        """The prompt without its answer-format sentence(s), wherever they stand."""
        text = prompt
        for task in self.tasks.values():
            pattern = r"\s+".join(re.escape(word) for word in task.answer_format.split())
            text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
        return re.sub(r"[ \t]+\n|\n{3,}", "\n", text).strip()


@dataclass(frozen=True)
class Attempt:
    example: Example
    response: str
    answer: str | None
    score: float


@dataclass(frozen=True)
class Update:
    prompt: str | None  # None: rejected, keep the old prompt
    reason: str


async def forward(
    llm: LLM, prompt: str, examples: Sequence[Example], *, max_tokens: int, purpose: str = "forward"
) -> list[str]:
    """The forward model answers every example under `prompt`, all requests in flight at once."""
    replies = await asyncio.gather(
        *(
            llm.chat(
                [{"role": "system", "content": prompt}, {"role": "user", "content": ex.input}],
                purpose=purpose,
                max_tokens=max_tokens,
            )
            for ex in examples
        )
    )
    return [reply.text for reply in replies]


def score(
    objective: Objective, examples: Sequence[Example], responses: Sequence[str]
) -> list[Attempt]:
    return [
        Attempt(ex, response, objective.extract(ex, response), objective.score(ex, response))
        for ex, response in zip(examples, responses, strict=True)
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
        return Attempt(attempt.example, attempt.response, attempt.answer, float(correct))

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
    responses = await forward(llm, prompt, examples, max_tokens=max_tokens, purpose=purpose)
    return score(objective, examples, responses)


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
                        target=a.example.target,
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


async def update(
    llm: LLM,
    prompt: str,
    objective: Objective,
    gradient: str,
    *,
    wrong: int,
    total: int,
    memory: Sequence[str] = (),
    rules: Sequence[str] = (),
    max_chars: int,
    max_tokens: int,
) -> Update:
    """Textual gradient descent: the LLM rewrites the prompt from the feedback. One retry, also
    when the reply is the current prompt again (small models copy a prompt that already breaks
    the update's rules, e.g. a merge with ten rules, rather than choose what to change)."""
    listed = templates.update_rules(min(max_chars // 7, len(prompt.split()) + 80), rules)
    request = templates.UPDATE.format(
        role=objective.role,
        prompt=prompt,
        wrong=wrong,
        total=total,
        feedback=gradient,
        memory=templates.UPDATE_MEMORY.format(past="\n\n".join(memory)) if memory else "",
        rules=templates.rules_block(listed, objective.answer_format),
    )
    messages = [
        {"role": "system", "content": templates.UPDATE_SYSTEM},
        {"role": "user", "content": request},
    ]
    # What the model may copy from the request instead of writing a prompt: dropped.
    diagnoses = [line for text in (gradient, *memory) for line in text.splitlines()]
    echoes = [*listed, templates.FORMAT_RULE, *filter(_DIAGNOSIS.match, diagnoses)]
    problem = ""
    for _ in range(2):
        sampling = COPY_RETRY_SAMPLING if problem == templates.COPIED else {}
        reply = await llm.chat(
            messages,
            purpose="update",
            max_tokens=max_tokens,
            frequency_penalty=LOOP_PENALTY,
            **sampling,
        )
        candidate, problem = parse_update(reply.text, objective, max_chars, echoes)
        if candidate is not None and candidate.split() != prompt.split():
            return Update(candidate, "updated")
        if candidate is not None:
            problem = templates.COPIED
        # Retry afresh with a warning; replaying a looping reply would invite more of it.
        warning = templates.UPDATE_RETRY.format(
            problem=problem, answer_format=objective.answer_format
        )
        messages = [messages[0], {"role": "user", "content": f"{request}\n\n{warning}"}]
    if problem == templates.COPIED:
        return Update(None, "the rewrite is the current prompt: nothing to update")
    return Update(None, f"rejected: {problem}")


def parse_update(
    reply: str, objective: Objective, max_chars: int, echoes: Sequence[str] = ()
) -> tuple[str | None, str]:
    """The prompt between the tags, tidied (and without `echoes`: what it copied from the
    request), or None and what is wrong with the reply."""
    match = _TAGGED.search(reply)
    if match is None:
        if "<IMPROVED_VARIABLE>" in reply:
            return None, "the reply was cut off before </IMPROVED_VARIABLE>"
        return None, "the reply has no <IMPROVED_VARIABLE> tags"
    candidate = match.group(1).strip()
    if not objective.keeps_format(candidate):
        return None, "the improved prompt dropped the answer-format instruction"
    body = tidy(objective.without_format(candidate), echoes)
    if not body:
        return None, "the improved prompt is empty"
    candidate = f"{body}\n{objective.answer_format}"  # the format instruction goes last
    if len(candidate) > max_chars:
        return None, f"the improved prompt is too long ({len(candidate)} > {max_chars} characters)"
    return candidate, ""


def tidy(text: str, echoes: Sequence[str] = ()) -> str:
    """Undo what small models do to a prompt they write: looping on one instruction (also as
    "7. X", "8. X", ...), empty list items ("3."), headings with nothing under them, and
    sentences copied from the request (`echoes`). The numbered items left are renumbered."""
    seen = {_normalize(s) for echo in echoes for s in _SENTENCE_END.split(echo)}
    lines: list[tuple[str, str]] = []  # (list marker or "", content)
    for line in text.splitlines():
        marker, content = _LIST_ITEM.match(line.strip()).groups(default="")
        kept = []
        for sentence in _SENTENCE_END.split(content):
            key = _normalize(sentence)
            if key and key not in seen:
                seen.add(key)
                kept.append(sentence)
        if kept:
            lines.append((marker, " ".join(kept)))
    lines = [
        (marker, content)
        for i, (marker, content) in enumerate(lines)
        if not (_is_heading(content) and (i + 1 == len(lines) or _is_heading(lines[i + 1][1])))
    ]
    out, number = [], 0
    for marker, content in lines:
        number = number + 1 if marker[:1].isdigit() else 0
        out.append(f"{number}. {content}" if number else f"{marker} {content}".strip())
    return "\n".join(out)


def _is_heading(line: str) -> bool:
    return line.endswith(":") and len(line.split()) <= 4


def condense(feedback: str) -> str:
    """The diagnosis and the proposed instruction: the part of the feedback the update needs."""
    start = feedback.find("Mistake:")
    return feedback[start:].strip() if start >= 0 else feedback.strip()


def _normalize(text: str) -> str:
    """Case, spacing and end punctuation do not make a sentence new."""
    return " ".join(text.lower().split()).rstrip(".:;!")
