"""Server-side aggregation: many client prompts in, one global prompt out.

Each aggregator is a small async function `(uploads, context) -> Aggregate`; register new ones in
AGGREGATORS. `concat`, `summarize` and `uid_summarize` are the paper's; `select` is ours."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from fedtextgrad.llm import LLM
from fedtextgrad.textgrad import Objective, tidy

_MERGED = re.compile(r"<MERGED_PROMPT>(.*?)(?:</MERGED_PROMPT>|$)", re.DOTALL)

SUMMARIZE = """\
Several clients each improved a system prompt for a language model ({role}) on their own data. \
Merge their prompts into ONE cohesive system prompt.
- Keep every distinct instruction, strategy and rule that appears in any of them; remove only \
exact repetitions.
- Do not add new instructions of your own.
{principle}
The answer-format instruction is added automatically at the end: do not include it.

{prompts}

Reply with the merged prompt only, between <MERGED_PROMPT> and </MERGED_PROMPT>."""

UID_PRINCIPLE = """\
- Follow the Uniform Information Density principle: spread the information evenly across the \
prompt. Give each essential instruction its own short, clear sentence; avoid dense sentences that \
pack several rules together, and avoid filler that carries no information. Keep the essential \
information of every client rather than summarizing it away."""


@dataclass(frozen=True)
class Upload:
    """What a client sends to the server."""

    client: int
    prompt: str
    num_examples: int
    accuracy_before: float = 0.0
    accuracy_after: float = 0.0


@dataclass
class AggregationContext:
    objective: Objective
    llm: LLM  # the aggregator engine
    previous: str  # the global prompt the clients started from
    max_tokens: int = 1024
    # Scores a prompt on the server's own validation data (used by `select`).
    validate: Callable[[str], Awaitable[float]] | None = None


@dataclass
class Aggregate:
    prompt: str
    info: dict = field(default_factory=dict)


async def concat(uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    """The paper's concatenation: every client prompt, newline-separated (exact repeats once)."""
    prompts = list(dict.fromkeys(u.prompt.strip() for u in uploads))
    return Aggregate("\n".join(prompts), {"merged": len(prompts)})


async def summarize(uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    """The paper's LLM summarization; the answer format is re-attached at the end."""
    return await _merge(uploads, ctx, principle="")


async def uid_summarize(uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    """Summarization guided by the Uniform Information Density principle (the paper's method)."""
    return await _merge(uploads, ctx, principle=UID_PRINCIPLE)


async def select(uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    """Ours: score every distinct upload and the UID merge on the server's validation data and
    keep the best (ties go to the shorter prompt). It costs one evaluation per candidate and
    cannot do worse on that data than any single client."""
    if ctx.validate is None:
        raise ValueError("the select aggregator needs server validation data")
    merged = await uid_summarize(uploads, ctx)
    candidates = list(dict.fromkeys([*(u.prompt for u in uploads), merged.prompt]))
    scores = await asyncio.gather(*(ctx.validate(c) for c in candidates))  # all at once
    best = max(range(len(candidates)), key=lambda i: (scores[i], -len(candidates[i])))
    return Aggregate(candidates[best], {"scores": scores, "chosen": best, "merge": merged.info})


Aggregator = Callable[[Sequence[Upload], AggregationContext], Awaitable[Aggregate]]
AGGREGATORS: dict[str, Aggregator] = {
    "concat": concat,
    "summarize": summarize,
    "uid_summarize": uid_summarize,
    "select": select,
}


async def aggregate(method: str, uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    if not uploads:
        result = Aggregate(ctx.previous, {"note": "no uploads: the global prompt is unchanged"})
    elif len({u.prompt for u in uploads}) == 1:  # nothing to merge; merging would only add noise
        result = Aggregate(uploads[0].prompt, {"note": "all uploads identical"})
    else:
        result = await AGGREGATORS[method](uploads, ctx)
    result.info["method"] = method
    return result


async def _merge(uploads: Sequence[Upload], ctx: AggregationContext, principle: str) -> Aggregate:
    fmt = ctx.objective.answer_format
    bodies = [ctx.objective.without_format(u.prompt) for u in uploads]
    listing = "\n\n".join(
        f"<CLIENT_PROMPT {i}>\n{body}\n</CLIENT_PROMPT {i}>" for i, body in enumerate(bodies, 1)
    )
    request = SUMMARIZE.format(role=ctx.objective.role, principle=principle, prompts=listing)
    reply = await ctx.llm.ask(request, purpose="aggregation", max_tokens=ctx.max_tokens)
    match = _MERGED.search(reply)
    merged = tidy(ctx.objective.without_format(match.group(1))) if match else ""
    if not merged:  # a malformed reply must not lose the round: fall back to the best client
        best = max(uploads, key=lambda u: u.accuracy_after)
        return Aggregate(best.prompt, {"fallback": "malformed merge reply; kept the best upload"})
    return Aggregate(f"{merged}\n{fmt}", {"merged": len(uploads)})
