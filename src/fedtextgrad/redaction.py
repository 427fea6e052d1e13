"""What is secret, decided in one place.

A config key is secret when its last part names a credential (`api_key`, `token`, `password`,
`secret`). Its values are masked wherever config is written, and every value a run resolves for
one (from a config, a sweep or the environment) is registered here, so that `redact` can take it,
and near-copies of it, out of any text on its way to an artifact or the console: results,
events, prompts, reports, sweep manifests, error lines, and the endpoint's own replies.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
_SECRET_LEAF = re.compile(r"(api_?key|token|password|secret)$", re.IGNORECASE)
_WORD = re.compile(r"[\w\-+/=~](?:[\w\-.+/=~]*[\w\-+/=~])?")  # key-like, no end dot
_known: set[str] = set()
_grams: set[str] = set()  # the 6-character pieces of the known secrets: a cheap first filter


def is_secret_key(dotted: str) -> bool:
    return bool(_SECRET_LEAF.search(dotted.rsplit(".", 1)[-1]))


def register(value: object, *, always: bool = False) -> None:
    """Remember a secret value so that `redact` removes it from everything written later.
    `always`: even if it looks like a placeholder (a password in a URL is never one)."""
    if isinstance(value, str) and value.strip() and (always or _secret_like(value.strip())):
        secret = value.strip()
        _known.add(secret)
        _grams.update(secret[i : i + 6] for i in range(len(secret) - 5))


def _secret_like(value: str) -> bool:
    """Keys are long, or mix letters with digits or signs. A short plain word or number is a
    placeholder ("EMPTY", "ollama", "x", "1": what local servers are given), and masking it
    would corrupt answers, prompts and JSON keys ("test" in "test_accuracy")."""
    if len(value) >= 8:
        return True
    return any(c.isalnum() for c in value) and not (value.isalpha() or value.isdigit())


def mask_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of flat dotted `settings` with secret values masked (and registered)."""
    masked = {}
    for key, value in settings.items():
        if is_secret_key(key) and value is not None:
            register(value)
            value = MASK
        masked[key] = value
    return masked


def mask_url(url: str) -> str:
    """The URL with the password of its user part masked: https://user:***@host/v1."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    return parts._replace(netloc=f"{user}{MASK}@{parts.netloc.rsplit('@', 1)[1]}").geturl()


def redact(text: str) -> str:
    """`text` without any registered secret, nor a word that is a near-copy of one."""
    if not _known or not text:
        return text
    text = _WORD.sub(lambda match: MASK if _near_copy(match.group()) else match.group(), text)
    for secret in sorted(_known, key=len, reverse=True):  # what words do not cover
        if len(secret) >= 6:
            text = text.replace(secret, MASK)
        else:  # a short key masks only where it stands alone, not inside every word
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)
    return text


def redact_data(value: Any) -> Any:
    """`redact` applied to every string inside JSON-like data."""
    if not _known:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


def _near_copy(word: str) -> bool:
    """A truncated, extended or slightly altered copy of a secret (an echo, a typo, a prefix):
    it shares a run of at least 6 characters and most of the secret with it."""
    if not any(word[i : i + 6] in _grams for i in range(len(word) - 5)):
        return False
    for secret in _known:
        if len(secret) < 6:
            continue
        match = SequenceMatcher(None, word, secret, autojunk=False).find_longest_match()
        if match.size >= 6 and match.size >= 0.6 * min(len(secret), len(word)):
            return True
    return False
