"""The client-side sanitizer: deterministic scrubbing of a prompt before it is uploaded, then
optionally an LLM rewrite (keep the strategy, drop the specifics) scrubbed again.

Scrubbing, in order: sentences that copy a span of the client's examples are dropped; PII-like
patterns (emails, URLs, phone and account numbers, long digit runs) become placeholders; the
client's example-specific tokens and capitalized names the initial prompt does not contain
become placeholders. The answer-format sentence is never touched (it is in the initial prompt)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fedtextgrad import text
from fedtextgrad.llm import LLM
from fedtextgrad.privacy.audit import ClientProfile
from fedtextgrad.text import token_key, zipf
from fedtextgrad.textgrad import Objective, parse_update

_PATTERNS = (  # (what, pattern, placeholder); earlier patterns win
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), "[EMAIL]"),
    ("url", re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.IGNORECASE), "[URL]"),
    # phone and account numbers: 7+ digits in groups joined by spaces, dots, dashes or brackets
    ("phone_or_account", re.compile(r"\+?\(?\d[\d() .-]{5,}\d(?![\d/])"), "[NUMBER]"),
    ("long_digits", re.compile(r"\d{5,}"), "[NUMBER]"),
)
_PLACEHOLDERS = {"numbers": "[NUMBER]", "names": "[NAME]", "rare_words": "[WORD]"}
_MIN_DIGITS = 7  # fewer digits in a phone/account-like match: an ordinary number, keep it

REWRITE = """\
Below is a system prompt for a language model ({role}). It was tuned on private examples and may \
contain their details: names, numbers, items, quoted questions or answers, or placeholders such \
as [NAME] and [NUMBER] where details were removed.

<CURRENT_PROMPT>
{prompt}
</CURRENT_PROMPT>

Rewrite it so that it keeps every general strategy and rule, and drops every example-specific \
detail and placeholder. Do not add new instructions. The last sentence must be exactly: \
{answer_format}

Reply with the rewritten prompt only, between <IMPROVED_VARIABLE> and </IMPROVED_VARIABLE>."""


@dataclass
class Scrubbed:
    prompt: str
    dropped_sentences: int = 0
    replaced: dict[str, int] = field(default_factory=dict)  # what -> how many

    @property
    def changed(self) -> bool:
        return bool(self.dropped_sentences or self.replaced)


def scrub(
    prompt: str, profile: ClientProfile, objective: Objective, *, copy_ngram: int = 5
) -> Scrubbed:
    """Deterministic scrubbing of `prompt` against the client's own data (see module doc)."""
    result = Scrubbed(prompt)
    result.prompt = _drop_copied_sentences(result, profile, copy_ngram)
    for what, pattern, placeholder in _PATTERNS:
        result.prompt = pattern.sub(
            lambda m, w=what, p=placeholder: _pii(m, w, p, result), result.prompt
        )
    result.prompt = _collapse_spaces(_replace_tokens(result, profile))
    if not objective.keeps_format(result.prompt):  # scrubbing must never cost the answer format
        result.prompt = f"{objective.without_format(result.prompt)}\n{objective.answer_format}"
    return result


def _pii(match: re.Match, what: str, placeholder: str, result: Scrubbed) -> str:
    digits = sum(ch.isdigit() for ch in match.group())
    if what == "phone_or_account" and digits < _MIN_DIGITS:
        return match.group()
    result.replaced[what] = result.replaced.get(what, 0) + 1
    return placeholder


def _drop_copied_sentences(result: Scrubbed, profile: ClientProfile, n: int) -> str:
    """Sentences sharing an n-word span with an example quote it: drop them whole."""
    if n not in profile.ngrams:
        raise ValueError(f"the client profile has no {n}-grams: build it with ngram_sizes={n}")
    pieces, last = [], 0
    for start, end in text.sentences(result.prompt):
        if text.ngrams(text.words(result.prompt[start:end]), n) & profile.ngrams[n]:
            result.dropped_sentences += 1
            pieces.append(result.prompt[last:start])
            last = end
    pieces.append(result.prompt[last:])
    return "".join(pieces)


def _collapse_spaces(prompt: str) -> str:
    """One space between words and no blank lines where sentences were dropped."""
    lines = (re.sub(r"[ \t]{2,}", " ", line).strip() for line in prompt.splitlines())
    return "\n".join(line for line in lines if line)


def _replace_tokens(result: Scrubbed, profile: ClientProfile) -> str:
    """Example-specific tokens, and capitalized rare words that look like names."""
    initial = {token_key(t) for t in text.tokens(profile.initial_prompt)}
    pieces, last = [], 0
    for token in text.tokens(result.prompt):
        key = token_key(token)
        category = profile.specific.get(key)
        if category is None and _looks_like_name(token, key, initial):
            category = "names"
        if category is None:
            continue
        pieces += [result.prompt[last : token.start], _PLACEHOLDERS[category]]
        last = token.end
        result.replaced[category] = result.replaced.get(category, 0) + 1
    pieces.append(result.prompt[last:])
    return "".join(pieces)


def _looks_like_name(token: text.Token, key: str, initial: set[str]) -> bool:
    """A capitalized word that is not English (Zipf < 2.5) and not in the initial prompt."""
    if token.is_number or not token.text[0].isupper() or key in initial or token.text.isupper():
        return False
    return zipf(key) < 2.5


async def rewrite(
    llm: LLM, prompt: str, objective: Objective, *, max_chars: int, max_tokens: int
) -> tuple[str | None, str]:
    """The LLM's specifics-free rewrite of `prompt`, or None and why it could not be used."""
    request = REWRITE.format(
        role=objective.role, prompt=prompt, answer_format=objective.answer_format
    )
    reply = await llm.ask(request, purpose="sanitize", max_tokens=max_tokens)
    candidate, problem = parse_update(reply, objective, max_chars)
    return candidate, problem or "rewritten"
