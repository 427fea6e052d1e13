"""The client side: what turns a trained prompt into the upload (sanitizer, upload policy), the
instruction defense's rules, and a trainer that remembers the prompt after each local step so
that a canary's arrival can be dated to (round, step).

The records a guard writes are measurement for the experimenter: a deployed client would keep
its audit to itself rather than report counts of its own specifics to the server."""

from __future__ import annotations

from collections.abc import Sequence

from fedtextgrad.config import PrivacyConfig, TrainConfig
from fedtextgrad.llm import LLM
from fedtextgrad.privacy import canaries as cn
from fedtextgrad.privacy.audit import Audit, ClientProfile, audit
from fedtextgrad.privacy.sanitize import rewrite, scrub
from fedtextgrad.textgrad import LocalTrainer, Objective

INSTRUCTION_RULES = (
    "State general strategies only: never include a name, number, item, quotation, question or "
    "answer taken from the training questions or the feedback, not even as an example.",
    "Describe each mistake by its kind (e.g. 'counting items of another kind'), never by the "
    "question it happened in.",
)
_SHOWN_TOKENS = 5  # example-specific tokens named in a refusal reason


class RecordingTrainer(LocalTrainer):
    """A LocalTrainer that keeps the prompt it holds after each step of its last `train` call."""

    step_prompts: list[str]

    async def train(self, prompt: str, **kwargs):
        self.step_prompts = []
        return await super().train(prompt, **kwargs)

    async def step(self, prompt, batch, memory, number):
        kept, record, accuracy = await super().step(prompt, batch, memory, number)
        self.step_prompts.append(kept)
        return kept, record, accuracy


class UploadGuard:
    """One client's privacy hook: sanitize, then apply the upload policy, then report."""

    def __init__(
        self,
        config: PrivacyConfig,
        profile: ClientProfile,
        objective: Objective,
        llm: LLM,
        train: TrainConfig,
        trainer: LocalTrainer | None = None,
        canaries: Sequence[cn.Canary] = (),
    ):
        self.config = config
        self.profile = profile
        self.objective = objective
        self.llm = llm  # for the optional rewrite: the client's own feedback engine
        self.train = train
        self.trainer = trainer
        self.canaries = list(canaries)  # measurement only: no defense looks at them

    async def prepare_upload(self, trained: str, incoming: str) -> tuple[str, dict]:
        """The prompt to send instead of `trained`, and what was done to it."""
        cfg = self.config
        known = f"{incoming}\n{self.profile.initial_prompt}"  # what the server already has
        record: dict = {"audit": self._summary(audit(trained, self.profile, known))}
        candidate = trained
        if cfg.sanitize != "off" and trained != incoming:
            candidate, record["sanitizer"] = await self._sanitize(trained)
            record["audit_sanitized"] = self._summary(audit(candidate, self.profile, known))
        blocked = False
        if cfg.upload_policy == "block":
            reasons = self._refusals(audit(candidate, self.profile, known))
            record["policy"] = {"allowed": not reasons, "reasons": reasons}
            blocked = bool(reasons)
        if blocked:  # nothing new leaves the client: it returns what it received
            candidate, record["sent"] = incoming, "incoming"
        else:
            record["sent"] = "trained" if candidate == trained else "sanitized"
        record["steps"] = self._steps()
        return candidate, record

    async def _sanitize(self, prompt: str) -> tuple[str, dict]:
        first = scrub(prompt, self.profile, self.objective, copy_ngram=self.config.copy_ngram)
        info = {"dropped_sentences": first.dropped_sentences, "replaced": dict(first.replaced)}
        result = first.prompt
        if self.config.sanitize == "rules+llm":
            rewritten, info["rewrite"] = await rewrite(
                self.llm,
                first.prompt,
                self.objective,
                max_chars=self.train.max_prompt_chars,
                max_tokens=self.train.update_max_tokens,
            )
            if rewritten is not None:  # the LLM saw only scrubbed text; scrub its words again
                again = scrub(
                    rewritten, self.profile, self.objective, copy_ngram=self.config.copy_ngram
                )
                result = again.prompt
                info["replaced_after_rewrite"] = dict(again.replaced)
        return result, info

    def _refusals(self, found: Audit) -> list[str]:
        cfg = self.config
        reasons = []
        if found.specific_count > cfg.max_specific_tokens:
            shown = ", ".join(sorted(found.specific_tokens)[:_SHOWN_TOKENS])
            reasons.append(
                f"{found.specific_count} new example-specific tokens ({shown}) > "
                f"privacy.max_specific_tokens={cfg.max_specific_tokens}"
            )
        copies = found.shared_ngrams.get(cfg.copy_ngram, 0)
        if copies > cfg.max_copied_ngrams:
            reasons.append(
                f"{copies} {cfg.copy_ngram}-word spans copied from examples > "
                f"privacy.max_copied_ngrams={cfg.max_copied_ngrams}"
            )
        return reasons

    def _summary(self, found: Audit) -> dict:
        return {
            "specific_count": found.specific_count,
            "specific": found.specific,
            "copied_ngrams": found.shared_ngrams.get(self.config.copy_ngram, 0),
            "lcs_words": found.lcs_words,
        }

    def _steps(self) -> list[dict]:
        """Per local step: the kept prompt's leakage and canaries (against the initial prompt)."""
        prompts = getattr(self.trainer, "step_prompts", [])
        steps = []
        for number, prompt in enumerate(prompts, 1):
            found = audit(prompt, self.profile)
            entry = {
                "step": number,
                "specific_count": found.specific_count,
                "copied_ngrams": found.shared_ngrams.get(self.config.copy_ngram, 0),
            }
            if self.canaries:
                entry["canaries"] = {
                    str(k): v for k, v in cn.exposed(prompt, self.canaries).items()
                }
            steps.append(entry)
        return steps


def instruction_rules(config: PrivacyConfig) -> tuple[str, ...]:
    """The update's extra rules under the instruction defense (none without it)."""
    return INSTRUCTION_RULES if config.instruction_defense else ()


def upload_guard(
    experiment, data, llm: LLM, client: int, trainer: LocalTrainer, profile: ClientProfile | None
):
    """The client's upload guard, or None when no privacy feature is on. `data` must be the
    clients' data as they hold it, canaries included; `profile` is built from it if None."""
    from fedtextgrad.privacy.monitor import client_profile, planted_canaries

    pc = experiment.privacy
    if not (pc.audit or pc.canaries or pc.sanitize != "off" or pc.upload_policy != "off"):
        return None
    return UploadGuard(
        pc,
        profile or client_profile(experiment, data, client),
        data.objective,
        llm,
        experiment.train,
        trainer,
        planted_canaries(experiment, data),
    )
