"""From a config to the pieces of an experiment: the data of every party, and the engines."""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, replace

from fedtextgrad.config import ExperimentConfig
from fedtextgrad.errors import ConfigError
from fedtextgrad.llm import LLM, ResponseCache, open_engine
from fedtextgrad.tasks import Example, Task, load_task, partition
from fedtextgrad.textgrad import Objective


@dataclass
class FederatedData:
    objective: Objective
    val: list[Example]  # the server's validation set (all tasks): its own, or the clients'
    test: list[Example]
    client_train: list[list[Example]]
    client_val: list[list[Example]]  # for the clients' validation gate

    def fingerprint(self) -> str:
        """A digest of every party's examples and of the tasks' prompts: a resumed run checks
        that its data is the data the run started with."""
        parts = [self.val, self.test, *self.client_train, *self.client_val]
        tasks = [[t.name, t.initial_prompt, t.answer_format] for t in self.objective.tasks.values()]
        return _digest([tasks, [_rows(part) for part in parts]])

    def test_digest(self) -> str:
        """A digest of the test examples: runs are compared or pooled only on the same ones."""
        return _digest(_rows(self.test))


def _rows(examples: list[Example]) -> list[list[str]]:
    return [[ex.task, ex.input, ex.target] for ex in examples]


def _digest(data: object) -> str:
    return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()[:16]


def prepare_data(config: ExperimentConfig) -> FederatedData:
    """Load the tasks and split them over the clients; a pure function of the config, so every
    process of a distributed run derives the same partitions."""
    tc, fed, ev = config.task, config.federation, config.eval
    own = ev.server_val_size or 0
    tasks = [
        load_task(
            name,
            data_dir=tc.data_dir,
            train_size=tc.train_size,
            val_size=ev.val_size + own if own else ev.val_size,  # val_size is set with own
            test_size=ev.test_size,
            data_seed=tc.data_seed,
        )
        for name in tc.all_names
    ]
    tasks, server_val = _server_validation(tasks, ev.val_size, own)
    objective = Objective.of(*tasks)
    if fed.partition == "by_task":
        owners = [[c for c in range(fed.clients) if c % len(tasks) == t] for t in range(len(tasks))]
        client_train: list[list[Example]] = [[] for _ in range(fed.clients)]
        client_val: list[list[Example]] = [[] for _ in range(fed.clients)]
        for task, members in zip(tasks, owners, strict=True):
            for c, part in zip(
                members, _split(task.train, len(members), "iid", config), strict=True
            ):
                client_train[c] = part
            for c, part in zip(members, _split(task.val, len(members), "iid", config), strict=True):
                client_val[c] = part
    else:
        train = [ex for task in tasks for ex in task.train]
        val = [ex for task in tasks for ex in task.val]
        client_train = _split(train, fed.clients, fed.partition, config)
        client_val = (
            _split(val, fed.clients, "iid", config)
            if len(val) >= fed.clients
            else [[] for _ in range(fed.clients)]
        )
    return FederatedData(
        objective,
        val=server_val,
        test=[ex for task in tasks for ex in task.test],
        client_train=client_train,
        client_val=client_val,
    )


def _server_validation(
    tasks: list[Task], clients: int | None, own: int
) -> tuple[list[Task], list[Example]]:
    """The tasks cut to the clients' validation examples, and the server's: its `own` a task,
    drawn after the clients' so asking for them leaves every client's data as it was; or, with
    none of its own, the clients'."""
    if not own:
        return tasks, [ex for task in tasks for ex in task.val]
    assert clients is not None  # the config requires eval.val_size with eval.server_val_size
    if short := [task.name for task in tasks if len(task.val) < clients + own]:
        raise ConfigError(
            f"task {short[0]} has fewer than eval.val_size + eval.server_val_size "
            f"({clients} + {own}) validation examples: lower them"
        )
    kept = [replace(task, val=task.val[:clients]) for task in tasks]
    return kept, [ex for task in tasks for ex in task.val[clients:]]


def _split(examples, clients: int, method: str, config: ExperimentConfig) -> list[list[Example]]:
    if clients == 1:
        return [list(examples)]
    if len(examples) < clients:
        raise ConfigError(
            f"{len(examples)} examples cannot be split over {clients} clients: "
            "raise task.train_size or lower federation.clients"
        )
    return partition(
        examples, clients, method=method, alpha=config.federation.alpha, seed=config.seed
    )


def sample_clients(config: ExperimentConfig, round_number: int) -> list[int]:
    """⌈C·N⌉ clients, a pure function of (seed, round) so that a resumed run samples the same."""
    fed = config.federation
    count = max(1, math.ceil(fed.sample_fraction * fed.clients))
    rng = random.Random(f"{config.seed}/sample/{round_number}")
    return sorted(rng.sample(range(fed.clients), count))


@dataclass
class Engines:
    forward: LLM
    feedback: LLM
    aggregator: LLM

    @classmethod
    def open(cls, config: ExperimentConfig) -> Engines:
        """One LLM per distinct spec (a model loads once), one response cache for all."""
        cache = ResponseCache(config.llm.cache_dir) if config.llm.cache else None
        opened: dict[str, LLM] = {}
        for spec in config.engines.resolved.values():
            if spec not in opened:
                opened[spec] = open_engine(spec, config.llm, cache=cache)
        return cls(**{role: opened[spec] for role, spec in config.engines.resolved.items()})

    def distinct(self) -> list[LLM]:
        return list({id(e): e for e in (self.forward, self.feedback, self.aggregator)}.values())

    async def aclose(self) -> None:
        for engine in self.distinct():
            await engine.aclose()
