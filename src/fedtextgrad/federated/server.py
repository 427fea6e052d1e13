"""The server: T rounds of sample ► broadcast ► collect ► aggregate ► evaluate ► checkpoint.

results.json is rewritten after every round and doubles as the checkpoint: a resumed run picks
up after the last completed round. Client sampling and minibatches are pure functions of
(seed, round), so the resumed schedule is the uninterrupted one, and with the response cache on
the replayed calls cost no tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from fedtextgrad.config import ExperimentConfig, same_experiment
from fedtextgrad.errors import FedTextGradError, RunStateError
from fedtextgrad.federated.aggregators import AggregationContext, aggregate
from fedtextgrad.federated.client import ClientFailure, ClientUpdate, client_histories
from fedtextgrad.federated.hooks import ServerHook
from fedtextgrad.federated.prepare import Engines, FederatedData, sample_clients
from fedtextgrad.federated.runtime import ClientStepSink, Runtime
from fedtextgrad.federated.store import RunStore
from fedtextgrad.llm.usage import Usage, track_usage
from fedtextgrad.metrics import measure
from fedtextgrad.record import (
    SCHEMA_VERSION,
    Acceptance,
    ClientUpload,
    Failure,
    Final,
    Initial,
    Paired,
    Round,
    Run,
    Stop,
    Tested,
    UsageTotals,
)
from fedtextgrad.stats import paired
from fedtextgrad.tasks import Example
from fedtextgrad.textgrad import StepRecord, accuracy, evaluate, judge

EventSink = Callable[[dict], None]


class Server:
    def __init__(
        self,
        config: ExperimentConfig,
        data: FederatedData,
        engines: Engines,
        runtime: Runtime,
        store: RunStore,
        on_event: EventSink | None = None,
        hooks: Sequence[ServerHook] = (),
    ):
        self.config = config
        self.data = data
        self.engines = engines
        self.runtime = runtime
        self.store = store
        self.on_event = on_event
        self.hooks = list(hooks)  # defenses, the privacy audit: parts added to each round
        self._scored: dict[tuple, dict] = {}  # (prompt, examples) -> result: never re-scored

    # -- the loop -----------------------------------------------------------------------------

    async def run(self, *, resume: bool = False) -> Run:
        with self.store.owned():
            return await self._run(resume)

    async def _run(self, resume: bool) -> Run:
        started = time.perf_counter()
        run = self._start_or_resume(resume)
        if run.status == "complete":
            return run
        spent_before = run.wall_seconds
        usage = Usage.from_dict(run.usage.model_dump())
        with (
            track_usage() as session,
            self._errors_recorded(run, usage, session, spent_before, started),
        ):
            if run.initial is None:
                run.initial = await self._initial()
                self._save(run, usage, session, spent_before, started)
            prompt = run.rounds[-1].global_prompt if run.rounds else run.initial.prompt
            for number in range(len(run.rounds) + 1, self.config.federation.rounds + 1):
                if self._over_budget(usage, session):  # a safe point: the last round is saved
                    run.status = "budget"
                    self._save(run, usage, session, spent_before, started)
                    self._emit("budget", rounds_done=number - 1, tokens=run.usage.total_tokens)
                    return run
                entry = await self.round(number, prompt, client_histories(run.rounds))
                prompt = entry.global_prompt
                run.rounds.append(entry)
                for hook in self.hooks:
                    hook.summarize(run)
                self.store.write_prompt(f"round_{number:03d}", prompt)
                self._save(run, usage, session, spent_before, started)
            run.final = await self._final(run)
            run.status = "complete"
            self._save(run, usage, session, spent_before, started)
        self._emit("done", test_accuracy=run.final.test_accuracy)
        return run

    async def round(
        self, number: int, prompt: str, histories: dict[int, dict[str, float]] | None = None
    ) -> Round:
        """sample ► train ► screen ► aggregate ► evaluate ► accept ► record. The hooks (defenses,
        the privacy audit) take part in screen, accept and record."""
        sampled = sample_clients(self.config, number)
        self._emit("round_start", round=number, clients=sampled)
        started = time.perf_counter()
        with track_usage() as usage:
            for hook in self.hooks:
                hook.start_round(number, self._validation)
            updates, failures = await self._train(number, sampled, prompt, histories)
            uploads = [u.upload for u in updates]
            for hook in self.hooks:
                uploads = await hook.screen(uploads, prompt)
            merged = await aggregate(
                self.config.federation.aggregation, uploads, self._aggregation_context(prompt)
            )
            new_prompt, val, acceptance = await self._accept(merged.prompt, prompt)
        entry = Round(
            round=number,
            sampled=sampled,
            global_prompt=new_prompt,
            val_accuracy=val["accuracy"],
            val_by_task=val["by_task"],
            prompt_chars=len(new_prompt),
            prompt_tokens=await self.engines.forward.count_tokens(new_prompt),
            **await self._uid(new_prompt),
            aggregation=merged.info,
            acceptance=acceptance,
            clients=[self._recorded(u) for u in updates],
            failures=failures,
            seconds=round(time.perf_counter() - started, 3),
            usage=UsageTotals.model_validate(usage.to_dict()),
        )
        for hook in self.hooks:
            for event in hook.end_round(entry, updates, prompt):
                self._emit(**event)
        self._emit(
            "round",
            round=number,
            val_accuracy=val["accuracy"],
            prompt_tokens=entry.prompt_tokens,
            seconds=entry.seconds,
            failures=len(failures),
        )
        return entry

    async def _train(
        self,
        number: int,
        sampled: list[int],
        prompt: str,
        histories: dict[int, dict[str, float]] | None,
    ) -> tuple[list[ClientUpdate], list[Failure]]:
        """The sampled clients' updates, in client order (arrival order must not change
        results), retrying the round while fewer than `federation.min_clients` reply."""
        fed = self.config.federation
        failures: list[Failure] = []
        for attempt in range(fed.round_retries + 1):
            outcomes = await self.runtime.train(
                number,
                sampled,
                prompt,
                self.config.train.local_steps,
                self._step_event(number),
                histories,
            )
            updates = [o for o in outcomes if isinstance(o, ClientUpdate)]
            for failure in (o for o in outcomes if isinstance(o, ClientFailure)):
                failures.append(failure.to_record(attempt))
                self._emit(
                    "client_failure", round=number, client=failure.client, error=failure.error
                )
            if len(updates) >= min(fed.min_clients, len(sampled)):
                return sorted(updates, key=lambda u: u.upload.client), failures
        raise FedTextGradError(
            f"round {number}: only {len(updates)} of {len(sampled)} clients replied after "
            f"{fed.round_retries + 1} attempts (need federation.min_clients="
            f"{fed.min_clients}); last errors: {'; '.join(f.error for f in failures[-3:])}"
        )

    async def _accept(self, merged: str, prompt: str) -> tuple[str, dict, Acceptance]:
        """The prompt the round broadcasts, its validation result and the acceptance record:
        the merge, unless a hook refuses it or `federation.acceptance` does; else `prompt`."""
        if not all(hook.screen_aggregate(merged, prompt) for hook in self.hooks):
            merged = prompt
        val = await self.evaluate(merged, self.data.val)
        for hook in self.hooks:
            if not await hook.accepts(merged, val, prompt):
                return prompt, await self.evaluate(prompt, self.data.val), Acceptance()
        acceptance = await self._acceptance(merged, val, prompt)
        if acceptance.accepted is False:
            return prompt, await self.evaluate(prompt, self.data.val), acceptance
        return merged, val, acceptance

    def _recorded(self, update: ClientUpdate) -> ClientUpload:
        """The update's record, with the node that sent it where the runtime knows it (a
        Flower SuperNode)."""
        record = update.to_record()
        node = getattr(self.runtime, "served_by", {}).get(update.upload.client)
        if node is not None:
            record.node = node
        return record

    def _step_event(self, number: int) -> ClientStepSink:
        def emit(client: int, step: StepRecord) -> None:
            record = {k: v for k, v in step.to_dict().items() if k not in ("feedback", "scored")}
            self._emit("step", round=number, client=client, **record)

        return emit

    # -- evaluation ---------------------------------------------------------------------------

    async def evaluate(
        self, prompt: str, examples: Sequence[Example], purpose: str = "evaluation"
    ) -> dict:
        """Accuracy overall and per task (the macro average is the headline when tasks differ),
        and each example's score. A prompt already scored on the same examples is not scored
        again (a round that keeps the old prompt, `select`'s winner, a final prompt seen before)."""
        key = (prompt, tuple(ex.input for ex in examples))
        if key in self._scored:
            return self._scored[key]
        attempts = await evaluate(
            self.engines.forward,
            prompt,
            examples,
            self.data.objective,
            max_tokens=self.config.train.forward_max_tokens,
            purpose=purpose,
        )
        if self.config.train.loss == "llm_judge":  # graded as in training
            attempts = await judge(self.engines.feedback, attempts)
        by_task = {
            name: accuracy([a for a in attempts if a.example.task == name])
            for name in self.data.objective.tasks
        }
        overall = sum(by_task.values()) / len(by_task) if len(by_task) > 1 else accuracy(attempts)
        scores = [a.score for a in attempts]
        self._scored[key] = {
            "accuracy": overall,
            "by_task": by_task,
            "scores": scores,
            "attempts": attempts,  # not for results.json: the replies go to replies/*.jsonl
        }
        return self._scored[key]

    async def _initial(self) -> Initial:
        prompt = self.data.objective.initial_prompt
        self.store.write_prompt("initial", prompt)
        val, test = await asyncio.gather(  # independent: all their calls in flight at once
            self.evaluate(prompt, self.data.val), self.evaluate(prompt, self.data.test, "test")
        )
        self._emit("initial", val_accuracy=val["accuracy"], test_accuracy=test["accuracy"])
        self.store.write_replies("initial_test", test["attempts"])
        return Initial(
            prompt=prompt,
            prompt_tokens=await self.engines.forward.count_tokens(prompt),
            **await self._uid(prompt),
            val_accuracy=val["accuracy"],
            val_by_task=val["by_task"],
            test_accuracy=test["accuracy"],
            test_by_task=test["by_task"],
            test_scores=test["scores"],
            test_examples=self.data.test_digest(),  # runs pool only on the same examples
        )

    async def _final(self, run: Run) -> Final:
        """The run's result is the best prompt on validation, the initial one included (the
        earliest of equals: a tie is no evidence for the longer prompt); the last round's
        prompt is recorded beside it. Both are tested, and the result is compared with the
        initial prompt on the same test examples."""
        initial = run.initial
        assert initial is not None
        candidates = [(initial.val_accuracy, 0, initial.prompt)]
        candidates += [(r.val_accuracy, r.round, r.global_prompt) for r in run.rounds]
        best_val, best_round, best_prompt = max(candidates, key=lambda c: (c[0], -c[1]))
        last_val, last_round, last_prompt = candidates[-1]
        prompts = list(dict.fromkeys([best_prompt, last_prompt]))  # both at once, each once
        scores = await asyncio.gather(*(self.evaluate(p, self.data.test, "test") for p in prompts))
        test = dict(zip(prompts, scores, strict=True))
        before = await self.evaluate(initial.prompt, self.data.test, "test")
        self.store.write_prompt("final", best_prompt)
        self.store.write_prompt("last", last_prompt)
        self.store.write_replies("final_test", test[best_prompt]["attempts"])
        self.store.write_replies("last_test", test[last_prompt]["attempts"])
        return Final(
            **_tested(best_prompt, best_round, best_val, test[best_prompt]).model_dump(),
            paired=Paired(**paired(before["scores"], test[best_prompt]["scores"]).to_dict()),
            last=_tested(last_prompt, last_round, last_val, test[last_prompt]),
        )

    async def _acceptance(self, aggregate: str, val: dict, previous: str) -> Acceptance:
        """`federation.acceptance`: an aggregate is broadcast only if it scores higher than the
        global prompt it replaces on validation ("improves"; a tie is no evidence for a change,
        and each change drifts), or not lower ("no_worse"). The aggregator is an LLM: it can be
        wrong."""
        rule = self.config.federation.acceptance
        if rule == "always" or aggregate == previous:
            return Acceptance()
        before, after = (await self.evaluate(previous, self.data.val))["accuracy"], val["accuracy"]
        accepted = after > before if rule == "improves" else after >= before
        return Acceptance(before=before, after=after, accepted=accepted)

    async def _uid(self, prompt: str) -> dict:
        """The prompt's surprisal profile under the forward engine, when eval.uid_metrics is on."""
        if not self.config.eval.uid_metrics:
            return {}
        return {"uid": (await measure(self.engines.forward, prompt)).to_dict()}

    async def _validation(self, prompt: str) -> dict:
        """What a hook scores a prompt with: the server's validation data."""
        return await self.evaluate(prompt, self.data.val, purpose="defense")

    def _aggregation_context(self, previous: str) -> AggregationContext:
        async def validate(prompt: str) -> float:
            return (await self.evaluate(prompt, self.data.val, purpose="aggregation"))["accuracy"]

        async def validate_tasks(prompt: str) -> dict[str, float]:
            return (await self.evaluate(prompt, self.data.val, purpose="aggregation"))["by_task"]

        return AggregationContext(
            self.data.objective,
            self.engines.aggregator,
            previous,
            max_chars=self.config.train.max_prompt_chars,
            method=self.config.train.method,
            validate=validate,
            validate_tasks=validate_tasks,
        )

    # -- bookkeeping --------------------------------------------------------------------------

    def _start_or_resume(self, resume: bool) -> Run:
        config = self.config.public_dict()
        run = self.store.load()
        fingerprint = self.data.fingerprint()
        if run is None:
            self._emit("start", config=config)
            return Run(
                schema_version=SCHEMA_VERSION,
                status="running",
                config=config,
                data_fingerprint=fingerprint,
                rounds=[],
                usage=UsageTotals.model_validate(Usage().to_dict()),
                wall_seconds=0.0,
            )
        if not resume:
            raise RunStateError(
                f"{self.store.dir} already holds a run: pass --resume to continue it, or use another --out"
            )
        if not same_experiment(run.config, self.config):
            raise RunStateError(
                f"the config differs from the run in {self.store.dir}: resume with the same config, "
                "or use another --out"
            )
        if (run.data_fingerprint or fingerprint) != fingerprint:
            raise RunStateError(
                f"the task data changed since the run in {self.store.dir} started (a task file "
                "or data directory differs): restore it, or start a new run with another --out"
            )
        self._emit("resume", completed_rounds=len(run.rounds), status=run.status)
        if run.status == "budget":  # stopped at the token budget: go on
            run.status = "running"
        return run

    def _over_budget(self, usage: Usage, session: Usage) -> bool:
        """`llm.budget_tokens`: the paid tokens of every attempt of this run, this one's too."""
        budget = self.config.llm.budget_tokens
        return (
            budget is not None
            and usage.total().total_tokens + session.total().total_tokens >= budget
        )

    def _save(self, run: Run, usage: Usage, session: Usage, spent: float, started: float) -> None:
        total = usage.snapshot()
        total.merge(session)
        run.usage = UsageTotals.model_validate(total.to_dict())
        run.wall_seconds = round(spent + time.perf_counter() - started, 3)
        self.store.save(run)

    @contextmanager
    def _errors_recorded(self, run: Run, *save_args: object) -> Iterator[None]:
        """A run that fails keeps its completed rounds and records why it stopped, so the
        failure is visible in results.json and `--resume` continues from there."""
        try:
            yield
        except Exception as error:
            message = str(error)
            if not isinstance(error, FedTextGradError):
                message = f"{type(error).__name__}: {message}"
            stop = Stop(time=round(time.time(), 3), rounds_done=len(run.rounds), error=message)
            run.errors = [*run.errors, stop]  # assigned: a field set is one results.json keeps
            self._save(run, *save_args)
            self._emit("error", error=message)
            raise

    def _emit(self, event: str, **data: object) -> None:
        record = self.store.event(event, **data)
        if self.on_event:
            self.on_event(record)


def _tested(prompt: str, round_number: int, val: float, test: dict) -> Tested:
    return Tested(
        prompt=prompt,
        round=round_number,
        val_accuracy=val,
        test_accuracy=test["accuracy"],
        test_by_task=test["by_task"],
        test_scores=test["scores"],
    )
