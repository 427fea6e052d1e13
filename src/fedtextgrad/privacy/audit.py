"""The leakage audit: how much of a client's training data a prompt reveals. Pure and fast
(no model): verbatim overlap (longest common substring in characters and in words, shared word
n-grams) and example-specific tokens (numbers, names, rare words of the client's examples that
the initial prompt does not contain).

What it cannot see: paraphrase ("a girl who sold clips to her friends"), facts about the data
distribution, or anything carried in the choice among prompts rather than in their text."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fedtextgrad import text
from fedtextgrad.tasks import Example
from fedtextgrad.text import token_key

_SNIPPET_CHARS = 80


@dataclass(frozen=True)
class ClientProfile:
    """What the audit needs to know about one client's data, computed once."""

    texts: tuple[str, ...]  # normalized example inputs
    example_words: tuple[tuple[str, ...], ...]
    ngrams: dict[int, frozenset[tuple[str, ...]]]  # example n-grams minus template and initial
    specific: dict[str, str]  # token key -> category
    initial_prompt: str


@dataclass
class Audit:
    lcs_chars: int = 0
    lcs_words: int = 0
    lcs_example: int = -1  # index of the example the longest run comes from
    lcs_text: str = ""
    shared_ngrams: dict[int, int] = field(default_factory=dict)
    specific: dict[str, list[str]] = field(default_factory=dict)

    @property
    def specific_count(self) -> int:
        return sum(len(found) for found in self.specific.values())

    @property
    def specific_tokens(self) -> set[str]:
        return {token for found in self.specific.values() for token in found}

    def leaks(self, ngram: int) -> bool:
        """Anything example-specific, or a copied span of `ngram` words."""
        return self.specific_count > 0 or self.shared_ngrams.get(ngram, 0) > 0

    def to_dict(self) -> dict:
        return {
            "lcs_chars": self.lcs_chars,
            "lcs_words": self.lcs_words,
            "lcs_example": self.lcs_example,
            "lcs_text": self.lcs_text,
            "shared_ngrams": {str(n): count for n, count in self.shared_ngrams.items()},
            "specific_count": self.specific_count,
            "specific": self.specific,
        }


def build_profile(
    examples: Sequence[Example],
    initial_prompt: str,
    *,
    public: Sequence[Example] = (),
    ngram_sizes: Iterable[int] = (3, 5, 8),
    common_zipf: float = 4.0,
) -> ClientProfile:
    """Index a client's examples. N-grams found in the initial prompt, or in at least half of the
    examples (and two or more: "How many ... do I have?"), are task template, not data. `public`
    examples of the same task (the server's own validation and test data in a simulation) mark
    task vocabulary: a token found there identifies no client example."""
    texts = tuple(text.normalize(ex.input) for ex in examples)
    example_words = tuple(tuple(text.words(ex.input)) for ex in examples)
    initial_words = text.words(initial_prompt)
    grams = {}
    for n in sorted(set(ngram_sizes)):
        counts = Counter(g for ws in example_words for g in text.ngrams(ws, n))
        template = {g for g, c in counts.items() if c >= 2 and c * 2 >= len(examples)}
        grams[n] = frozenset(set(counts) - template - text.ngrams(initial_words, n))
    return ClientProfile(
        texts,
        example_words,
        grams,
        specific_tokens(examples, initial_prompt, public, common_zipf),
        initial_prompt,
    )


def specific_tokens(
    examples: Sequence[Example],
    initial_prompt: str,
    public: Sequence[Example] = (),
    common_zipf: float = 4.0,
) -> dict[str, str]:
    """The tokens of the examples (inputs and targets) that identify them, leaving out
    everything the initial prompt or the public examples already say (`text.specific_tokens`)."""
    return text.specific_tokens(
        (source for ex in examples for source in (ex.input, ex.target)),
        [initial_prompt, *(f"{ex.input} {ex.target}" for ex in public)],
        common_zipf,
    )


def audit(prompt: str, profile: ClientProfile, baseline: str | None = None) -> Audit:
    """What `prompt` shares with the client's examples beyond what `baseline` (default: the
    initial prompt) already shares."""
    baseline = profile.initial_prompt if baseline is None else baseline
    prompt_words = text.words(prompt)
    baseline_words = text.words(baseline)
    chars, example, start = text.longest_common_run(text.normalize(prompt), profile.texts)
    word_run, _, _ = text.longest_common_run(prompt_words, profile.example_words)
    shared = {
        n: len((text.ngrams(prompt_words, n) & grams) - text.ngrams(baseline_words, n))
        for n, grams in profile.ngrams.items()
    }
    baseline_keys = {token_key(t) for t in text.tokens(baseline)}
    specific: dict[str, list[str]] = {}
    for key in sorted({token_key(t) for t in text.tokens(prompt)} - baseline_keys):
        category = profile.specific.get(key)
        if category:
            specific.setdefault(category, []).append(key)
    snippet = text.normalize(prompt)[start : start + min(chars, _SNIPPET_CHARS)] if chars else ""
    return Audit(chars, word_run, example, snippet, shared, specific)
