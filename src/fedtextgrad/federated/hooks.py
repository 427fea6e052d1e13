"""Parts added to a round from above. On the server, the defenses screen the uploads and may
veto the merge, and the privacy audit adds to the record: the server calls every hook at the
round's named points, each default lets everything through and records nothing, so the round
itself knows no defense and no audit (the way Flower wraps a strategy instead of editing it).
On a client, an upload hook (the privacy guard) turns the trained prompt into the upload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from fedtextgrad.federated.aggregators import Upload
    from fedtextgrad.federated.client import ClientUpdate
    from fedtextgrad.record import Round, Run

Scorer = Callable[[str], Awaitable[dict]]  # prompt -> its validation {"accuracy", "by_task"}


class ServerHook:
    def start_round(self, number: int, score: Scorer) -> None:
        """A new round begins; `score` evaluates a prompt on the server's validation data."""

    async def screen(self, uploads: list[Upload], prompt: str) -> list[Upload]:
        """The uploads that may be aggregated (`prompt`: the global prompt they started from)."""
        return uploads

    def screen_aggregate(self, merged: str, prompt: str) -> bool:
        """Whether the merge may be considered at all (checked before it is evaluated)."""
        return True

    async def accepts(self, merged: str, val: dict, prompt: str) -> bool:
        """Whether the merge (validation result `val`) may replace `prompt`."""
        return True

    def end_round(self, entry: Round, updates: Sequence[ClientUpdate], prompt: str) -> list[dict]:
        """Add to the round's record; return events to log (each with its "event" name)."""
        return []

    def summarize(self, run: Run) -> None:
        """Add to the run's record, after each round."""


class UploadHook(Protocol):
    async def prepare_upload(self, prompt: str, global_prompt: str) -> tuple[str, dict | None]:
        """The upload made of the trained `prompt`, and a record of what was done to it."""
        ...
