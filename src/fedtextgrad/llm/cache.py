"""A persistent response cache shared by threads and processes (SQLite through diskcache)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import diskcache

from fedtextgrad.errors import FedTextGradError
from fedtextgrad.llm.base import Completion

# A corrupt database, a full disk, a cache_dir that is a file or unwritable: what they raise.
_DAMAGE = (sqlite3.Error, OSError, pickle.UnpicklingError, EOFError)


def default_cache_dir() -> Path:
    root = os.environ.get("FEDTEXTGRAD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "fedtextgrad"
    )
    return Path(root) / "responses"


def cache_key(**request: object) -> str:
    """A stable digest of everything that changes the answer (never Python's salted hash())."""
    canonical = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache:
    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory) if directory else default_cache_dir()
        with self._guarded():
            self._store = diskcache.Cache(str(self.directory), size_limit=2**34)

    def get(self, key: str) -> Completion | None:
        with self._guarded():
            stored = self._store.get(key)
        if stored is None:
            return None
        return Completion(**stored, cached=True)

    def put(self, key: str, completion: Completion) -> None:
        entry = {
            "text": completion.text,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "finish_reason": completion.finish_reason,
        }
        with self._guarded():
            self._store.set(key, entry)

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """A cache that cannot be used stops the run in one line that says where it is."""
        try:
            yield
        except _DAMAGE as error:
            raise FedTextGradError(
                f"the response cache in {self.directory} cannot be used ({error}): free disk "
                "space, or set llm.cache_dir to a new directory (llm.cache = false runs without "
                "a cache)"
            ) from None
