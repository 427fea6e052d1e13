"""Server-side aggregation: many client prompts in, one global prompt out.

Each aggregator is a small async function `(uploads, context) -> Aggregate`; register new ones in
AGGREGATORS. `concat`, `summarize` and `uid_summarize` are the paper's; `select` and `retain` are
ours. With
`train.method = "paper"` the merges ask what the paper's requests ask, in the paper's form (no
tags, duplicates kept by concatenation); otherwise they use our request below."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from fedtextgrad import text
from fedtextgrad.llm import LLM
from fedtextgrad.textgrad import Objective, repairs
from fedtextgrad.textgrad import paper_templates as paper

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

# `retain`: one prompt must serve clients whose data differ (the heterogeneous setting). Concatenated
# instructions make a small model follow one of them (issue 31: 1.5B answering, the human
# instructions of three tasks concatenated: 0.97 -> 0.00 on two); each behind the form of input it
# is for ("If the input is two numbers: ..."), it keeps 88-94% of each. Asked to route several
# prompts at once, the 1.5B model kept one and dropped the rest: so each is routed on its own.
ROUTE = """\
A client improved this system prompt for a language model ({role}) on its own data:

<CLIENT_PROMPT>
{prompt}
</CLIENT_PROMPT>

Other clients' data may look different, so the prompt will be one paragraph among several. Rewrite \
it as ONE paragraph of at most {words} words that begins "If the input is <what the inputs this \
prompt is for look like>:" and then says what to do with such an input. Keep every instruction; \
drop explanations, restatements and examples. Do not state an answer format. If the prompt is \
not about any particular kind of input, reply with it unchanged.

Reply with the paragraph only, between <ROUTED> and </ROUTED>."""


@dataclass(frozen=True)
class Upload:
    """What a client sends to the server."""

    client: int
    prompt: str
    num_examples: int
    accuracy_before: float = 0.0  # the global prompt on the client's first minibatch
    accuracy_after: float | None = None  # the upload on the last minibatch; None: not scored


@dataclass
class AggregationContext:
    objective: Objective
    llm: LLM  # the aggregator engine
    previous: str  # the global prompt the clients started from
    max_tokens: int = 1024
    # A merge longer than this is refused, as client updates are (TrainConfig.max_prompt_chars).
    max_chars: int = 4000
    method: str = "ours"  # train.method: whose merge requests
    # Scores a prompt on the server's own validation data (used by `select`).
    validate: Callable[[str], Awaitable[float]] | None = None
    # The same, task by task (used by `retain`: in the heterogeneous setting a task is a client's).
    validate_tasks: Callable[[str], Awaitable[dict[str, float]]] | None = None


@dataclass
class Aggregate:
    prompt: str
    info: dict = field(default_factory=dict)


async def concat(uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    """The paper's concatenation: every client prompt, newline-separated (ours: exact repeats
    once)."""
    prompts = [u.prompt.strip() for u in uploads]
    if ctx.method != "paper":
        prompts = list(dict.fromkeys(prompts))
    return Aggregate("\n".join(prompts), {"merged": len(prompts)})


async def summarize(uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    """The paper's LLM summarization; the answer format is re-attached at the end."""
    return await _merge(uploads, ctx, principle="")


async def uid_summarize(uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    """Summarization guided by the Uniform Information Density principle (the paper's method)."""
    return await _merge(uploads, ctx, principle=UID_PRINCIPLE)


async def _routed_merge(uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    """A paragraph per kind of input. The uploads' paragraphs that already begin with their input
    ("If the input is ...") are kept, one per input: a client's edit wins over the copy the others
    left as it was in the previous global prompt, and two edits are joined. The rest is rewritten
    into such paragraphs, each in its share of 1.5x the longest upload's words (kept as it is if
    the rewrite comes back cut off or without its input), and joins the paragraph for its input if
    there is one: a client's own new text as one, and each line it kept of the previous global
    prompt on its own (such a line is an earlier upload: routed with the rest, several clients'
    rules would land under one input)."""
    objective = ctx.objective
    bodies = list(dict.fromkeys(objective.without_format(u.prompt).strip() for u in uploads))
    previous = _previous_lines(ctx)
    units = [unit for body in bodies for unit in _units(body, previous)]
    slots: dict[str, str] = {}  # the input a paragraph is for (or the paragraph) -> paragraph
    for paragraph in filter(_condition, units):
        slot = _condition(paragraph)
        if slot not in slots or slots[slot] in previous:
            slots[slot] = paragraph
        elif paragraph not in previous:  # two clients edited it
            slots[slot] = _join(slots[slot], paragraph)
    loose = list(dict.fromkeys(u for u in units if not _condition(u)))
    budget = route_words(max(len(body.split()) for body in bodies), [len(u.split()) for u in loose])
    routed = asyncio.gather(
        *(_route(u, words, ctx) for u, words in zip(loose, budget, strict=True))
    )
    for paragraph in await routed:
        slot = _condition(paragraph)
        if slot is None:
            slots.setdefault(paragraph, paragraph)
        else:
            slots[slot] = _join(slots[slot], paragraph) if slot in slots else paragraph
    prompt = "\n".join([*slots.values(), objective.answer_format])
    return Aggregate(prompt, {"merged": len(bodies), "paragraphs": len(slots)})


def route_words(longest: int, lengths: list[int]) -> list[int]:
    """Each routed paragraph's word budget: its share of 1.5x the longest upload's words, by the
    words it is rewritten from."""
    total = max(1, sum(lengths))
    return [max(12, longest * 3 * n // (2 * total)) for n in lengths]


def route_tokens(words: int) -> int:
    """Room for a routed paragraph and its tags, not for a reply that repeats itself."""
    return 3 * words + 32


async def _route(text: str, words: int, ctx: AggregationContext) -> str:
    """`text` as one paragraph that begins with the input it is for, or as it is."""
    request = ROUTE.format(role=ctx.objective.role, prompt=text, words=words)
    message = {"role": "user", "content": request}
    reply = await ctx.llm.chat([message], purpose="aggregation", max_tokens=route_tokens(words))
    span, truncated = repairs.last_tagged(reply.text, "ROUTED")
    if span is None and "<ROUTED>" not in reply.text:  # small models often leave the tags out
        span, truncated = reply.text.strip(), reply.finish_reason == "length"
    paragraph = " ".join(repairs.tidy(ctx.objective.without_format(span or "")).split())
    return paragraph if _condition(paragraph) and not truncated else text


def _units(body: str, previous: set[str]) -> list[str]:
    """What a merge routes or lists on its own: an upload's routed paragraphs, the lines it kept
    of the previous global prompt, each, and the rest of it, as one."""
    paragraphs = _paragraphs(body)
    own = " ".join(p for p in paragraphs if not _condition(p) and p not in previous)
    return [p for p in paragraphs if _condition(p) or p in previous] + ([own] if own else [])


def _previous_lines(ctx: AggregationContext) -> set[str]:
    return set(_paragraphs(ctx.objective.without_format(ctx.previous)))


def _paragraphs(body: str) -> list[str]:
    """The body's lines; a bullet belongs to a routed paragraph or a heading ("Rules:") above."""
    paragraphs: list[str] = []
    takes_bullets = False
    for line in filter(None, map(str.strip, body.splitlines())):
        if takes_bullets and re.match(r"[-*•]|\d+[.)]\s", line):
            paragraphs[-1] += f" {line}"
        else:
            paragraphs.append(line)
            takes_bullets = bool(_condition(line)) or line.endswith(":")
    return paragraphs


# "If the input is two numbers: add them." -> "two numbers", "add them."; a comma ends the
# input only where no colon does within its sentence ("a date, time, or duration: ...").
_ROUTED = re.compile(
    r"If the input is ([^:.\n]+):(.*)|If the input is ([^,.\n]+),(.*)", re.I | re.S
)


def _split(paragraph: str) -> tuple[str | None, str]:
    """The input a routed paragraph is for (lower case, or None) and its instructions."""
    found = _ROUTED.match(paragraph)
    if not found:
        return None, paragraph
    condition, instruction = (found[1], found[2]) if found[1] else (found[3], found[4])
    return " ".join(condition.lower().split()), instruction.strip()


def _condition(paragraph: str) -> str | None:
    return _split(paragraph)[0]


def _join(paragraph: str, routed: str) -> str:
    """The paragraph, then the routed paragraph's instructions it has no near copy of."""
    have = text.split_sentences(_split(paragraph)[1])
    new = [s for s in text.split_sentences(_split(routed)[1]) if not text.near_copy(s, have)]
    return " ".join([paragraph, *(s[:1].upper() + s[1:] for s in new)])


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


RETAIN_MARGIN = 0.05  # `retain`: what a merge may lose on a task against that task's best upload


async def retain(uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    """Ours: a routed merge that keeps what each client learned. The merge and every upload are
    scored task by task on the server's validation data; on each task where the merge falls
    behind the best upload by more than RETAIN_MARGIN, that upload's sentences the merge dropped
    are put back. Of the merge, the repaired merge, the concatenation and the uploads, the kept one
    loses least on its worst task (retention: its accuracy over the best upload's), then on the
    next worst, and so on; then it is the shortest."""
    if ctx.validate_tasks is None:
        raise ValueError("the retain aggregator needs server validation data")
    merged = await _routed_merge(uploads, ctx)
    distinct = list(dict.fromkeys(u.prompt for u in uploads))
    scored = list(dict.fromkeys([*distinct, merged.prompt]))  # a fallback merge is an upload
    scores = dict(zip(scored, await _by_task(ctx, scored), strict=True))
    best = {task: max(scores[p][task] for p in distinct) for task in scores[merged.prompt]}
    lost = [t for t, acc in scores[merged.prompt].items() if acc < best[t] - RETAIN_MARGIN]
    info: dict = {"merge": merged.info, "lost": lost}
    if not lost:
        return Aggregate(merged.prompt, info)
    owners = [max(distinct, key=lambda p: scores[p][task]) for task in lost]
    options = {
        "merge": merged.prompt,
        "repaired merge": _put_back(merged.prompt, owners, ctx.objective),
        "concatenation": _concatenation(distinct, ctx),
        **{f"upload {i}": upload for i, upload in enumerate(distinct, 1)},
    }
    options = {k: p for k, p in options.items() if len(p) <= ctx.max_chars}
    if not options:  # all over the cap: `aggregate` falls back, as for any merge too long
        return Aggregate(merged.prompt, info)
    fresh = [p for p in dict.fromkeys(options.values()) if p not in scores]
    scores |= dict(zip(fresh, await _by_task(ctx, fresh), strict=True))

    def retentions(prompt: str) -> list[float]:  # the worst task first
        # Rounded: 0.1 / 0.3 > 0.3 / 0.9 in floating point, and a tie must go to the next task.
        return sorted(round(scores[prompt][t] / best[t], 9) if best[t] else 1.0 for t in best)

    ranked = {k: retentions(p) for k, p in options.items()}
    kept = max(options, key=lambda k: (ranked[k], -len(options[k])))
    info |= {"retention": {k: [round(r, 3) for r in rs] for k, rs in ranked.items()}}
    return Aggregate(options[kept], info | {"kept": kept})


async def _by_task(ctx: AggregationContext, prompts: list[str]) -> list[dict[str, float]]:
    assert ctx.validate_tasks is not None
    return list(await asyncio.gather(*(ctx.validate_tasks(p) for p in prompts)))


def _concatenation(uploads: list[str], ctx: AggregationContext) -> str:
    """Every upload's units, each distinct one once on a line of its own (a later round routes
    each as one), then the format once."""
    objective, previous = ctx.objective, _previous_lines(ctx)
    lines = (unit for u in uploads for unit in _units(objective.without_format(u), previous))
    return "\n".join([*dict.fromkeys(lines), objective.answer_format])


def _put_back(merged: str, uploads: list[str], objective: Objective) -> str:
    """The merge, then the uploads' lines with their sentences the merge has no near copy of (a
    line per line: a routed prompt's paragraphs are its structure), then the format."""
    body = objective.without_format(merged).strip()
    kept = text.split_sentences(body)
    lines = [body] if body else []
    for upload in dict.fromkeys(uploads):
        for line in _paragraphs(objective.without_format(upload)):
            missing = [s for s in text.split_sentences(line) if not text.near_copy(s, kept)]
            kept += missing
            lines += [" ".join(missing)] if missing else []
    return "\n".join([*lines, objective.answer_format])


Aggregator = Callable[[Sequence[Upload], AggregationContext], Awaitable[Aggregate]]
AGGREGATORS: dict[str, Aggregator] = {
    "concat": concat,
    "summarize": summarize,
    "uid_summarize": uid_summarize,
    "select": select,
    "retain": retain,
}


async def aggregate(method: str, uploads: Sequence[Upload], ctx: AggregationContext) -> Aggregate:
    if not uploads:
        result = Aggregate(ctx.previous, {"note": "no uploads: the global prompt is unchanged"})
    elif len({u.prompt for u in uploads}) == 1:  # nothing to merge; merging would only add noise
        result = Aggregate(uploads[0].prompt, {"note": "all uploads identical"})
    else:
        result = await AGGREGATORS[method](uploads, ctx)
    if len(result.prompt) > ctx.max_chars:  # refused, not cut: a cut prompt loses rules silently
        result = await _fallback(
            uploads,
            ctx,
            f"merged prompt too long ({len(result.prompt)} > {ctx.max_chars} characters)",
        )
    result.info["method"] = method
    return result


async def _merge(uploads: Sequence[Upload], ctx: AggregationContext, principle: str) -> Aggregate:
    objective = ctx.objective
    if ctx.method == "paper":
        reply = await ctx.llm.ask(
            _paper_request(uploads, principle), purpose="aggregation", max_tokens=ctx.max_tokens
        )
        span, truncated = reply, False  # the paper's reply is the merged prompt itself
    else:
        bodies = [objective.without_format(u.prompt) for u in uploads]
        listing = "\n\n".join(
            f"<CLIENT_PROMPT {i}>\n{body}\n</CLIENT_PROMPT {i}>" for i, body in enumerate(bodies, 1)
        )
        request = SUMMARIZE.format(role=objective.role, principle=principle, prompts=listing)
        # A merge keeps every client's rules: room for all of them (~3 characters a token).
        tokens = max(ctx.max_tokens, sum(map(len, bodies)) // 3)
        reply = await ctx.llm.ask(request, purpose="aggregation", max_tokens=tokens)
        span, truncated = repairs.last_tagged(reply, "MERGED_PROMPT")
    if truncated:  # a reply cut off at max_tokens: its text is an unfinished merge
        why = "merge reply cut off before </MERGED_PROMPT>"
        return await _fallback(uploads, ctx, why, truncated=True)
    merged = repairs.tidy(objective.without_format(span)) if span else ""
    if not merged:
        return await _fallback(uploads, ctx, "malformed merge reply")
    return Aggregate(f"{merged}\n{objective.answer_format}", {"merged": len(uploads)})


def _paper_request(uploads: Sequence[Upload], principle: str) -> str:
    """The paper's request lists the client prompts whole (format sentence included)."""
    listing = "\n".join(f"{i}. {u.prompt}" for i, u in enumerate(uploads, 1))
    request = paper.SUMMARIZE.format(prompts=listing)
    return f"{request}\n\n{paper.UID_SENTENCE}" if principle else request


async def _fallback(
    uploads: Sequence[Upload], ctx: AggregationContext, why: str, *, truncated: bool = False
) -> Aggregate:
    """A failed merge must neither lose the run nor the clients' learning: the best of the
    previous global prompt and the uploads on the server's own validation data (ties keep the
    previous one; a client's self-reported accuracy is never trusted). Without validation data,
    the previous prompt: the round is a no-op."""
    info: dict = {"truncated": True} if truncated else {}
    candidates = [ctx.previous]
    candidates += [u.prompt for u in uploads if len(u.prompt) <= ctx.max_chars]
    candidates = list(dict.fromkeys(candidates))
    if ctx.validate is None or len(candidates) == 1:
        return Aggregate(
            ctx.previous, {"fallback": f"{why}; kept the previous global prompt", **info}
        )
    scores = await asyncio.gather(*(ctx.validate(c) for c in candidates))
    best = max(range(len(candidates)), key=lambda i: (scores[i], -i))
    kept = "the previous global prompt" if best == 0 else "an upload"
    info |= {"fallback": f"{why}; kept {kept}, the best on validation", "scores": scores}
    return Aggregate(candidates[best], info)
