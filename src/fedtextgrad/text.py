"""Text primitives: words with their positions, n-grams, the longest common run of two texts (in
characters or in words), and the tokens that identify a set of examples. Pure functions, no
model; used by the leakage audit and by the local step's filter of example-specific rules."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

# A word: letters (with inner apostrophes/hyphens) or a number (with inner separators: 40,000,
# 3/4, 2.5, 4829-1937). Case is kept; matching is done on the lowercase form.
_TOKEN = re.compile(r"\d+(?:[.,/:-]\d+)*|[^\W\d_]+(?:['’-][^\W\d_]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int

    @property
    def norm(self) -> str:
        return self.text.lower()

    @property
    def is_number(self) -> bool:
        return self.text[0].isdigit()


def tokens(text: str) -> list[Token]:
    return [Token(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def words(text: str) -> list[str]:
    """The lowercase words and numbers of a text, in order."""
    return [t.norm for t in tokens(text)]


def ngrams(seq: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)}


def normalize(text: str) -> str:
    """Lowercase with runs of whitespace as one space: a copy with new line breaks still counts."""
    return " ".join(text.lower().split())


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences (or lines) of a text."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match.start() > start:
            spans.append((start, match.start()))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def split_sentences(text: str) -> list[str]:
    return [text[start:end].strip() for start, end in sentences(text)]


def near_copy(sentence: str, others: Iterable[str], similarity: float = 0.8) -> bool:
    """Whether one of `others` is the sentence, or a rewording this similar (difflib's ratio)."""
    key = sentence.lower()
    return any(
        other.lower() == key
        or difflib.SequenceMatcher(None, key, other.lower()).ratio() >= similarity
        for other in others
    )


def longest_common_run(a: Sequence, others: Iterable[Sequence]) -> tuple[int, int, int]:
    """The longest run of consecutive items (characters of a str, or words of a list) that `a`
    shares with any of `others`. Returns (length, index of that other, start in `a`); (0, -1, -1)
    when nothing is shared.

    Binary search on the length: a shared run of length L contains one of every shorter length,
    so each probe is a set intersection, O(total length) — fast enough to audit every step."""
    others = list(others)
    if not len(a) or not any(len(o) for o in others):
        return 0, -1, -1

    def probe(length: int) -> tuple[int, int] | None:
        grams: dict = {}
        for index, other in enumerate(others):
            for i in range(len(other) - length + 1):
                grams.setdefault(_key(other[i : i + length]), index)
        for i in range(len(a) - length + 1):
            found = grams.get(_key(a[i : i + length]))
            if found is not None:
                return found, i
        return None

    best = (0, -1, -1)
    low, high = 1, min(len(a), max(len(o) for o in others))
    while low <= high:
        middle = (low + high) // 2
        hit = probe(middle)
        if hit is None:
            high = middle - 1
        else:
            best = (middle, *hit)
            low = middle + 1
    return best


def _key(part: Sequence) -> object:
    return part if isinstance(part, str) else tuple(part)


# -- example-specific tokens -------------------------------------------------------------------

_NAME_ZIPF = 5.0  # a capitalized word this common in English ("I", "The") is no name


@lru_cache(maxsize=65536)
def zipf(word: str) -> float:
    """English word frequency on the Zipf scale (7 ≈ "the", 4 ≈ once per 10^5 words, 0 = unseen)."""
    from wordfreq import zipf_frequency  # ~1 s to load its tables: only when needed

    return zipf_frequency(word, "en")


def token_key(token: Token) -> str:
    """How a token is matched: case-insensitive; numbers without thousands separators; words
    without a possessive 's (Marion's is Marion)."""
    if token.is_number:
        return token.norm.replace(",", "")
    return re.sub(r"['’]s$", "", token.norm)


def specific_tokens(
    sources: Iterable[str], known: Iterable[str] = (), common_zipf: float = 4.0
) -> dict[str, str]:
    """Tokens of `sources` (example inputs and targets) that identify them: numbers of two or
    more digits, names (capitalized, not common English), and rare words (Zipf < common_zipf) —
    leaving out every token of the `known` texts. Returns token key -> category."""
    seen = vocabulary(tuple(known))
    found: dict[str, str] = {}
    for source in sources:
        for token, initial in _with_position(source):
            key = token_key(token)
            if key in seen or key in found:
                continue
            category = _category(token, key, initial, common_zipf)
            if category:
                found[key] = category
    return found


@lru_cache(maxsize=16)
def vocabulary(texts: tuple[str, ...]) -> frozenset[str]:
    """The token keys of `texts`. Cached: every client's profile leaves out the same public
    texts (the initial prompt, the server's validation and test examples), tokenized once."""
    return frozenset(token_key(t) for source in texts for t in tokens(source))


def _with_position(source: str) -> list[tuple[Token, bool]]:
    """Each token, and whether it starts a sentence (where capitals say nothing)."""
    result = []
    previous_end = None
    for token in tokens(source):
        gap = source[previous_end : token.start] if previous_end is not None else ""
        initial = previous_end is None or any(mark in gap for mark in ".!?\n")
        result.append((token, initial))
        previous_end = token.end
    return result


def _category(token: Token, key: str, sentence_start: bool, common_zipf: float) -> str:
    if token.is_number:
        return "numbers" if len(key.replace(".", "").replace("/", "")) >= 2 else ""
    frequency = zipf(key)
    capitalized = token.text[0].isupper() and frequency < _NAME_ZIPF
    if capitalized and (not sentence_start or frequency < common_zipf):
        return "names"
    return "rare_words" if frequency < common_zipf and len(key) > 2 else ""
