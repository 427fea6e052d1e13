"""The paper's step (`train.method = "paper"`): TextGrad's two-hop gradient over every example of
the batch and its TGD update with momentum over past values. Forward, score and the batch gate
are shared with our method (`step.py`, `trainer.py`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fedtextgrad.llm import LLM
from fedtextgrad.textgrad import paper_templates as T
from fedtextgrad.textgrad import repairs
from fedtextgrad.textgrad.step import Attempt, Objective, Update


async def feedback(
    llm: LLM, prompt: str, objective: Objective, attempts: Sequence[Attempt], *, max_tokens: int
) -> str:
    """loss -> response -> prompt for every example, right or wrong; the pieces, each in its
    context, concatenated (TextGrad's aggregation of a batch's gradients)."""

    async def one(a: Attempt) -> str:
        on_response = await llm.ask(
            T.RESPONSE_FEEDBACK.format(
                question=a.example.input,
                response=a.response,
                target=objective.target(a.example),
                verdict=int(a.score),
            ),
            system=T.SYSTEM,
            purpose="feedback",
            max_tokens=max_tokens,
        )
        on_prompt = await llm.ask(
            T.PROMPT_FEEDBACK.format(
                role=objective.role,
                prompt=prompt,
                question=a.example.input,
                response=a.response,
                response_feedback=on_response,
            ),
            system=T.SYSTEM,
            purpose="feedback",
            max_tokens=max_tokens,
        )
        return T.CONTEXT.format(question=a.example.input, response=a.response, feedback=on_prompt)

    return "\n".join(await asyncio.gather(*(one(a) for a in attempts)))


async def update(
    llm: LLM,
    prompt: str,
    objective: Objective,
    gradient: str,
    *,
    past_values: Sequence[str] = (),
    max_chars: int,
    max_tokens: int,
) -> Update:
    """TGD: one rewrite between <IMPROVED_VARIABLE> tags. Where TextGrad raises on a reply
    without tags, the step keeps the old prompt. The format sentence is put last, once (the
    paper re-appends it after merges; its constraint asks the update to keep it)."""
    momentum = T.MOMENTUM.format(past="\n\n".join(past_values)) if past_values else ""
    request = T.UPDATE.format(
        role=objective.role,
        prompt=prompt,
        context=gradient,
        momentum=momentum,
        answer_format=objective.answer_format,
    )
    reply = await llm.ask(request, system=T.UPDATE_SYSTEM, purpose="update", max_tokens=max_tokens)
    span, truncated = repairs.last_tagged(reply, "IMPROVED_VARIABLE")
    if truncated or not span:
        return Update(None, "rejected: the reply has no complete <IMPROVED_VARIABLE> span")
    body = repairs.strip_format(span, objective.formats)  # no other repair: the paper has none
    candidate, problem = objective.finish(
        repairs.Rewrite(body or None, "the prompt is empty"), max_chars
    )
    if candidate is None:
        return Update(None, f"rejected: {problem}")
    if candidate.split() == prompt.split():
        return Update(None, "the rewrite is the current prompt: nothing to update")
    return Update(candidate, "updated")
