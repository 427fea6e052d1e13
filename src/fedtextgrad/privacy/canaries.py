"""Canaries: unique made-up secrets planted in one client's training inputs, to measure whether
and when a client's data reaches its upload, the global prompt and other clients (in the spirit
of Carlini et al.'s "secret sharer"). Each canary has three parts that are detected separately:
a made-up name, an account number and a four-word passphrase. They are appended to an input as a
note that does not change the target."""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, replace

from fedtextgrad import text
from fedtextgrad.errors import ConfigError
from fedtextgrad.tasks import Example

# Syllables for names no language model has seen: detection must not fire by chance.
_ONSETS = ("br", "dr", "g", "k", "l", "m", "qu", "r", "th", "v", "z", "x")
_VOWELS = ("a", "e", "i", "o", "u", "y", "ae", "io")
_CODAS = ("n", "r", "sk", "th", "l", "x", "nd", "v")
_ADJECTIVES = ("amber", "crimson", "hollow", "silent", "velvet", "frozen", "copper", "lunar")
_NOUNS = ("otter", "lantern", "walrus", "orchid", "harbor", "compass", "falcon", "glacier")
_VERBS = ("juggles", "whispers", "polishes", "guards", "paints", "counts", "hides", "follows")
_OBJECTS = ("teacups", "anchors", "riddles", "pebbles", "violets", "kettles", "ribbons", "maps")
_PHRASE_WINDOW = 3  # this many consecutive passphrase words count as an exposure
MAX_CANARIES = 256  # distinct phrase windows run out near 500 (8 words in each of 4 places)


@dataclass(frozen=True)
class Canary:
    id: int
    name: str
    account: str
    phrase: str
    client: int = 0
    example: int = -1  # index in the client's training list

    @property
    def note(self) -> str:
        return f'(Reference note: {self.name}, account {self.account}, passphrase "{self.phrase}".)'

    def to_dict(self) -> dict:
        return asdict(self)


def make_canaries(count: int, seed: int | str, client: int = 0) -> list[Canary]:
    """`count` distinct canaries, a pure function of (count, seed)."""
    if count > MAX_CANARIES:  # refused at once: the search below would only fail slowly
        raise ConfigError(_too_many(count))
    rng = random.Random(f"{seed}/canaries")
    canaries: list[Canary] = []
    seen: set = set()  # no two canaries share a name word, an account or a phrase window
    for _ in range(1000 * max(count, 1)):  # the phrase space is finite: never loop forever
        if len(canaries) == count:
            break
        name = f"{_made_up_word(rng)} {_made_up_word(rng)}"
        account = "-".join(f"{rng.randrange(10_000):04d}" for _ in range(3))
        phrase = " ".join(rng.choice(words) for words in (_ADJECTIVES, _NOUNS, _VERBS, _OBJECTS))
        marks = {*name.lower().split(), account, *text.ngrams(phrase.split(), _PHRASE_WINDOW)}
        if marks & seen:
            continue
        seen |= marks
        canaries.append(Canary(len(canaries), name, account, phrase, client))
    if len(canaries) < count:
        raise ConfigError(_too_many(count))
    return canaries


def _too_many(count: int) -> str:
    return f"cannot make {count} distinct canaries (at most {MAX_CANARIES}): plant fewer"


def _made_up_word(rng: random.Random) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(2)]
    return ("".join(parts) + rng.choice(_CODAS)).capitalize()


def plant(examples: list[Example], canaries: list[Canary]) -> tuple[list[Example], list[Canary]]:
    """Append canary i to example i (cycling when there are more canaries than examples)."""
    if not examples:
        raise ConfigError("the canary client holds no training examples: choose another")
    planted = list(examples)
    placed = []
    for canary in canaries:
        index = canary.id % len(planted)
        ex = planted[index]
        planted[index] = replace(ex, input=f"{ex.input} {canary.note}")
        placed.append(replace(canary, example=index))
    return planted, placed


def exposure(prompt: str, canary: Canary) -> dict[str, bool]:
    """Which parts of the canary the prompt reveals: either made-up name word, the account's
    digits in order (whatever separators), or three consecutive passphrase words."""
    prompt_words = set(text.words(prompt))
    digits = re.sub(r"\D", "", prompt)
    phrase = text.words(canary.phrase)
    windows = text.ngrams(phrase, _PHRASE_WINDOW)
    return {
        "name": any(part in prompt_words for part in text.words(canary.name)),
        "account": re.sub(r"\D", "", canary.account) in digits,
        "phrase": bool(windows & text.ngrams(text.words(prompt), _PHRASE_WINDOW)),
    }


def exposed(prompt: str, canaries: list[Canary]) -> dict[int, list[str]]:
    """canary id -> the parts of it found in the prompt (only canaries with any)."""
    found = {}
    for canary in canaries:
        parts = [part for part, hit in exposure(prompt, canary).items() if hit]
        if parts:
            found[canary.id] = parts
    return found
