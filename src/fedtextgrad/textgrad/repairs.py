"""Repairs of the optimizer's replies: what small models do to a prompt they write, undone.

Each repair is a pure function named for what it fixes. `parse_rewrite` applies them in order:
take the tagged span, drop the answer-format sentence wherever it stands (it is re-attached
last), drop what was copied from the request, drop rules that name the batch's examples, undo
loops and empty list items, then check the length."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from fedtextgrad import text

_MARKER = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
_HEADING = re.compile(r"^[a-z][a-z ]{0,30}:\s+")  # lowercase: matched on normalized text
# A line the optimizer wrote as if answering ("Answer: The system prompt should state ..."):
# found in a BBH object-counting run's final prompt (issue 30, session 11).
_ANSWER = re.compile(r"\s*answer\s*:", re.IGNORECASE)
_LIST_ITEM = re.compile(r"(\d+[.)](?=\s|$)|[-*•](?=\s|$))?\s*(.*)")
_FORMAT_NGRAM = 5  # a sentence sharing this many consecutive words with the format restates it


@dataclass(frozen=True)
class Rewrite:
    """A parsed rewrite: the new body (without the answer format), or None and why not."""

    body: str | None
    problem: str = ""
    dropped: tuple[str, ...] = ()  # sentences removed for naming the batch's examples


def last_tagged(reply: str, tag: str) -> tuple[str | None, bool]:
    """The last complete <tag>...</tag> span, and whether a later span was cut off. A reply that
    first mentions the tags ("reply between <X> and </X>") still yields its real answer."""
    spans = re.findall(rf"<{tag}>(.*?)</{tag}>", reply, re.DOTALL)
    opened = reply.rfind(f"<{tag}>")
    truncated = opened >= 0 and f"</{tag}>" not in reply[opened:]
    return (spans[-1].strip() if spans else None), truncated


def strip_format(prompt: str, formats: Sequence[str]) -> str:
    """The prompt without any sentence that states or restates an answer format (in full, without
    its final period, or a part of it): the format is re-attached, once, at the end."""
    for fmt in formats:
        words = [re.escape(word) for word in fmt.rstrip(".").split()]
        prompt = re.sub(r"\s+".join(words) + r"\.?", " ", prompt, flags=re.IGNORECASE)
    grams = {g for fmt in formats for g in text.ngrams(text.words(fmt), _FORMAT_NGRAM)}
    kept = _map_sentences(prompt, lambda s: not (text.ngrams(text.words(s), _FORMAT_NGRAM) & grams))
    return re.sub(r"[ \t]+\n|\n{3,}", "\n", kept).strip()


def drop_specific(
    prompt: str, specific: Collection[str], before: str = ""
) -> tuple[str, list[str]]:
    """Sentences new since `before` that name any of the `specific` tokens (the batch's
    items, names, numbers) are dropped: they are rules about one question, not general rules."""
    if not specific:
        return prompt, []
    old = {normalize(s) for s in text.split_sentences(before)}
    dropped: list[str] = []

    def general(sentence: str) -> bool:
        if normalize(sentence) in old:
            return True
        named = {text.token_key(t) for t in text.tokens(sentence)} & set(specific)
        if named:
            dropped.append(sentence.strip())
        return not named

    return _map_sentences(prompt, general), dropped


def tidy(prompt: str, echoes: Sequence[str] = ()) -> str:
    """Undo looping on one instruction (also as "7. X", "8. X", ...), empty list items ("3."),
    headings with nothing under them, lines that answer ("Answer: ...") and sentences copied
    from the request (`echoes`). The numbered items left are renumbered."""
    seen = {normalize(s) for echo in echoes for s in text.split_sentences(echo)}

    def first_time(sentence: str) -> bool:
        key = normalize(sentence)
        bare = normalize(_HEADING.sub("", key))  # "Rules: - X" and "System prompt: X" copy X
        new = bool(key) and key not in seen and bare not in seen
        seen.add(key)
        return new

    kept = _map_sentences(prompt, first_time).splitlines()
    kept = [line for line in kept if not _ANSWER.match(line)]  # an answer, not an instruction
    lines = [_LIST_ITEM.match(line).groups(default="") for line in kept if line.strip()]
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


def parse_rewrite(
    reply: str,
    formats: Sequence[str],
    *,
    tag: str = "IMPROVED_VARIABLE",
    echoes: Sequence[str] = (),
    specific: Collection[str] = (),
    before: str = "",
) -> Rewrite:
    """All repairs, in order; the body is None when nothing usable is left."""
    span, truncated = last_tagged(reply, tag)
    if truncated:  # an earlier complete span may only be the tags mentioned in passing
        return Rewrite(None, f"the reply was cut off before </{tag}>")
    if span is None:
        return Rewrite(None, f"the reply has no <{tag}> tags")
    body, dropped = drop_specific(strip_format(span, formats), specific, before)
    body = tidy(body, echoes)
    if not body:
        problem = "every new rule named the batch's examples" if dropped else "the prompt is empty"
        return Rewrite(None, problem, tuple(dropped))
    return Rewrite(body, "", tuple(dropped))


def _map_sentences(prompt: str, keep) -> str:
    """The prompt with only the sentences `keep` accepts; lines left empty go."""
    lines = []
    for line in prompt.splitlines():
        marker, content = _LIST_ITEM.match(line.strip()).groups(default="")
        kept = [s for s in text.split_sentences(content) if keep(s)]
        if kept:
            lines.append(f"{marker} {' '.join(kept)}".strip())
        elif not content.strip() and not marker:
            lines.append("")
    return "\n".join(lines).strip()


def _is_heading(line: str) -> bool:
    return line.endswith(":") and len(line.split()) <= 4


def normalize(sentence: str) -> str:
    """Case, spacing, a list marker and end punctuation do not make a sentence new."""
    return _MARKER.sub("", " ".join(sentence.lower().split())).rstrip(".:;!")
