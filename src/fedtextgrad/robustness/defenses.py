"""Server-side defenses (`[defense]`): screen each round's uploads, then accept the aggregate
only if it does not score below the prompt it would replace.

Screens run cheapest first, and each sees only the survivors of the previous one:
1. limits:     empty, longer than `max_upload_chars` (or the global prompt, if that is longer),
               invisible/control characters, or the answer-format instruction dropped;
2. injection:  instruction-override phrasing ("ignore previous instructions", "always answer 0");
3. outliers:   word overlap with the other uploads far below theirs (median - k·MAD);
4. validation: accuracy on the server's validation data more than `validation_margin` below the
               current global prompt's (one evaluation per distinct upload).
A client's own claims (its reported accuracy) are never trusted. Everything lands in the round
entry under "defense"."""

from __future__ import annotations

import asyncio
import hashlib
import re
import statistics
import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fedtextgrad.config import DefenseConfig
from fedtextgrad.federated.hooks import Scorer, ServerHook
from fedtextgrad.text import split_sentences
from fedtextgrad.textgrad import Objective

if TYPE_CHECKING:
    from fedtextgrad.federated.aggregators import Upload
    from fedtextgrad.federated.client import ClientUpdate
    from fedtextgrad.record import Round

_OVERRIDE = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.\n]{0,40}?"
    r"\b(previous|prior|above|earlier|preceding|all|any|other|system)\b[^.\n]{0,20}?"
    r"\b(instructions?|rules?|prompts?|directions?|guidelines?)\b",
    re.IGNORECASE,
)
_FIXED_ANSWER = re.compile(
    r"\balways\s+(answer|respond|reply|output|say|return)\s+(with\s+)?['\"]?-?\d", re.IGNORECASE
)
_CONDITION = re.compile(r"\b(if|when|whenever|unless|otherwise)\b", re.IGNORECASE)
_ALLOWED_CONTROLS = {"\n", "\t", "\r"}
MAD_FLOOR = 0.05  # word overlap varies this much between honest clients anyway
PREVIEW_CHARS = 300


class Defense(ServerHook):
    """Each round's screening and acceptance check. Scores are memoized per prompt in a round,
    so the global prompt is evaluated once for both the screen and the acceptance check."""

    def __init__(self, config: DefenseConfig, objective: Objective, score: Scorer | None = None):
        self.config = config
        self.objective = objective
        self.start_round(0, score)

    def start_round(self, number: int, score: Scorer | None) -> None:
        self._score = score
        self._scores: dict[str, asyncio.Task[dict]] = {}
        self.record: dict = {"enabled": self.config.enabled}
        self._too_long: set[int | str] = set()

    def end_round(self, entry: Round, updates: Sequence[ClientUpdate], prompt: str) -> list[dict]:
        entry.defense = self.record
        for client in entry.clients:  # a flood must not bloat results.json (rewritten each round)
            if client.client in self._too_long:
                client.prompt = _preview(client.prompt)
        return []

    async def score(self, prompt: str) -> dict:
        if prompt not in self._scores:
            self._scores[prompt] = asyncio.ensure_future(self._score(prompt))
        return await self._scores[prompt]

    # -- screening ----------------------------------------------------------------------------

    async def screen(self, uploads: Sequence[Upload], global_prompt: str) -> list[Upload]:
        """The uploads that pass every enabled screen (all of them when defenses are off)."""
        if not self.config.enabled:
            return list(uploads)
        verdicts: dict[int, dict] = {u.client: {"client": u.client} for u in uploads}
        kept = [
            u for u in uploads if self._passes_limits(u.prompt, global_prompt, verdicts[u.client])
        ]
        if self.config.injection_screen:
            kept = [u for u in kept if self._passes_injection(u.prompt, verdicts[u.client])]
        if self.config.outlier_mads is not None:
            kept = self._drop_outliers(kept, verdicts)
        if self.config.validation_margin is not None and kept:
            kept = await self._validate(kept, global_prompt, verdicts)
        for upload in kept:
            verdicts[upload.client].setdefault("verdict", "accepted")
        self.record["uploads"] = list(verdicts.values())
        self.record["rejected"] = [c for c, v in verdicts.items() if v["verdict"] != "accepted"]
        return kept

    def _passes_limits(self, text: str, global_prompt: str, verdict: dict) -> bool:
        limit = max(self.config.max_upload_chars, len(global_prompt))
        verdict["chars"] = len(text)
        if not text.strip():
            return _reject(verdict, "empty upload")
        if len(text) > limit:
            self._too_long.add(verdict["client"])
            return _reject(verdict, f"too long ({len(text)} > {limit} characters)")
        hidden = sorted({c for c in text if _invisible(c)})
        if hidden:
            codes = ", ".join(f"U+{ord(c):04X}" for c in hidden[:3])
            return _reject(verdict, f"invisible or control characters ({codes})")
        if not self.objective.keeps_format(text):
            return _reject(verdict, "dropped the answer-format instruction")
        return True

    def _passes_injection(self, text: str, verdict: dict) -> bool:
        found = injected_instruction(text)
        return _reject(verdict, f"instruction override: '{found}'") if found else True

    def _drop_outliers(self, uploads: list[Upload], verdicts: dict[int, dict]) -> list[Upload]:
        """Reject uploads whose mean word overlap with the others is far below the median's.
        Needs three uploads to tell the odd one out, and never rejects a majority."""
        if len(uploads) < 3:
            return uploads
        words = [set(re.findall(r"\w+", u.prompt.lower())) for u in uploads]
        mean_overlap = [
            statistics.fmean(_jaccard(words[i], words[j]) for j in range(len(words)) if j != i)
            for i in range(len(words))
        ]
        median = statistics.median(mean_overlap)
        mad = statistics.median(abs(s - median) for s in mean_overlap)
        bar = median - self.config.outlier_mads * max(mad, MAD_FLOOR)
        for upload, overlap in zip(uploads, mean_overlap, strict=True):
            verdicts[upload.client]["overlap"] = round(overlap, 4)
        outliers = sorted(
            (i for i, s in enumerate(mean_overlap) if s < bar), key=lambda i: mean_overlap[i]
        )[: (len(uploads) - 1) // 2]
        for i in outliers:
            _reject(
                verdicts[uploads[i].client],
                f"outlier: word overlap {mean_overlap[i]:.2f} < {bar:.2f} (median {median:.2f})",
            )
        return [u for i, u in enumerate(uploads) if i not in outliers]

    async def _validate(
        self, uploads: list[Upload], global_prompt: str, verdicts: dict[int, dict]
    ) -> list[Upload]:
        prompts = [global_prompt, *dict.fromkeys(u.prompt for u in uploads)]
        results = await asyncio.gather(*(self.score(p) for p in prompts))
        scores = {p: r["accuracy"] for p, r in zip(prompts, results, strict=True)}
        bar = scores[global_prompt] - self.config.validation_margin
        self.record["global_val_accuracy"] = scores[global_prompt]
        kept = []
        for upload in uploads:
            verdict, accuracy = verdicts[upload.client], scores[upload.prompt]
            verdict["val_accuracy"] = accuracy
            if accuracy < bar:
                _reject(verdict, f"validation accuracy {accuracy:.2f} < {bar:.2f}")
            else:
                kept.append(upload)
        return kept

    def screen_aggregate(self, aggregate: str, previous: str) -> bool:
        """The aggregator is an LLM too, and can be wrong or compromised: its merge passes the
        uploads' screens (limits, hidden characters, format, injection) before it may replace
        the global prompt."""
        if not self.config.enabled or aggregate == previous:
            return True
        verdict: dict = {"client": "aggregator"}
        passed = self._passes_limits(aggregate, previous, verdict) and (
            not self.config.injection_screen or self._passes_injection(aggregate, verdict)
        )
        if not passed:
            self.record["aggregate"] = {**verdict, "prompt": _preview(aggregate)}
        return passed

    # -- acceptance ---------------------------------------------------------------------------

    async def accepts(self, aggregate: str, val: dict, previous: str) -> bool:
        """Whether the aggregate may replace `previous` (its val score is `val`)."""
        if not (self.config.enabled and self.config.acceptance) or aggregate == previous:
            return True
        before = (await self.score(previous))["accuracy"]
        accepted = val["accuracy"] >= before - self.config.acceptance_margin
        self.record["acceptance"] = {
            "accepted": accepted,
            "aggregate_val_accuracy": val["accuracy"],
            "previous_val_accuracy": before,
        }
        if not accepted:
            self.record["acceptance"]["rejected_prompt"] = _preview(aggregate)
        return accepted


def injected_instruction(text: str) -> str | None:
    """The first instruction-override phrase in `text`. "Always answer 0" counts only when
    unconditional: "if none match, always answer 0" is honest advice."""
    if match := _OVERRIDE.search(text):
        return match.group(0)
    for clause in (c for sentence in split_sentences(text) for c in sentence.split(";")):
        match = _FIXED_ANSWER.search(clause)
        if match and not _CONDITION.search(clause):
            return match.group(0)
    return None


def _reject(verdict: dict, reason: str) -> bool:
    verdict["verdict"], verdict["reason"] = "rejected", reason
    return False


def _invisible(char: str) -> bool:
    """Control and format characters (zero-width, bidi overrides): they hide text from readers."""
    return unicodedata.category(char) in ("Cc", "Cf") and char not in _ALLOWED_CONTROLS


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _preview(text: str) -> str:
    if len(text) <= PREVIEW_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return f"{text[:PREVIEW_CHARS]}… [{len(text)} characters, sha256 {digest}…]"
