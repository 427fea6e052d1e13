"""Run an experiment from a config: the Python API behind `fedtextgrad run`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from fedtextgrad.config import ExperimentConfig, load_config
from fedtextgrad.errors import FedTextGradError
from fedtextgrad.federated.client import Client
from fedtextgrad.federated.hooks import ServerHook
from fedtextgrad.federated.prepare import Engines, FederatedData, prepare_data
from fedtextgrad.federated.runtime import InProcessRuntime, Runtime
from fedtextgrad.federated.server import EventSink, Server
from fedtextgrad.federated.store import RunStore
from fedtextgrad.privacy.audit import ClientProfile
from fedtextgrad.privacy.guard import RecordingTrainer, instruction_rules, upload_guard
from fedtextgrad.privacy.monitor import PrivacyMonitor, plant_canaries
from fedtextgrad.record import Run, dump_run
from fedtextgrad.robustness.attacks import as_attacker
from fedtextgrad.robustness.defenses import Defense


@dataclass
class Results:
    """The run's record (`record`, typed; `data`, as JSON, as results.json holds it), with the
    numbers people look at first as properties."""

    record: Run
    out_dir: Path

    @cached_property
    def data(self) -> dict:
        return json.loads(dump_run(self.record))

    @property
    def initial_test_accuracy(self) -> float:
        return self.record.initial.test_accuracy

    @property
    def final_test_accuracy(self) -> float:
        return self.record.final.test_accuracy

    @property
    def final_prompt(self) -> str:
        return self.record.final.prompt

    @property
    def rounds(self) -> list[dict]:
        return self.data["rounds"]

    @property
    def usage(self) -> dict:
        return self.data["usage"]


def build_client(
    config: ExperimentConfig,
    data: FederatedData,
    engines: Engines,
    client_id: int,
    profile: ClientProfile | None = None,
) -> Client:
    """One client as it runs in-process or on its SuperNode: a trainer on its own data (with the
    privacy experiments' canaries), its upload guard, and in robustness experiments its attack.
    `profile`: its privacy profile if already built (in-process, the server's monitor has it)."""
    data = plant_canaries(config, data)
    trainer = RecordingTrainer(  # a LocalTrainer that remembers each step's prompt (audit)
        engines.forward,
        engines.feedback,
        data.objective,
        data.client_train[client_id],
        data.client_val[client_id],
        config.train,
        seed=f"{config.seed}/client{client_id}",
        extra_rules=[*config.train.update_rules, *instruction_rules(config.privacy)],
    )
    guard = upload_guard(config, data, engines.feedback, client_id, trainer, profile)
    fed = config.federation
    return as_attacker(Client(client_id, trainer, guard), fed.clients, fed.attackers, fed.attack)


def build_clients(
    config: ExperimentConfig,
    data: FederatedData,
    engines: Engines,
    profiles: Sequence[ClientProfile] | None = None,
) -> list[Client]:
    return [
        build_client(config, data, engines, c, profiles[c] if profiles else None)
        for c in range(len(data.client_train))
    ]


def server_hooks(config: ExperimentConfig, data: FederatedData) -> list[ServerHook]:
    """What the server's rounds add: the defenses (recorded even when off), and the leakage
    audit and canaries when the privacy settings ask for them."""
    monitor = PrivacyMonitor.from_config(config, data)
    return [Defense(config.defense, data.objective), *([monitor] if monitor else [])]


async def run_async(
    config: ExperimentConfig | str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
    engines: Engines | None = None,
    on_event: EventSink | None = None,
    runtime: str | Runtime = "in-process",
) -> Results:
    """Run (or resume) an experiment and write its run directory. Pass `engines` to use engines
    you opened yourself (they are left open); otherwise they are opened from the config.
    `runtime`: "in-process", "flower" (a local Flower deployment, see docs/flower.md), or a
    `Runtime` object that reaches the clients (the Flower ServerApp passes its own)."""
    if not isinstance(config, ExperimentConfig):
        config = load_config(config)
    if runtime == "flower":
        from fedtextgrad.flower import run_local

        results = await run_local(config, out_dir, resume=resume, on_event=on_event)
        return Results(results, Path(out_dir))
    if isinstance(runtime, str) and runtime != "in-process":
        raise FedTextGradError(f"unknown runtime '{runtime}': use in-process or flower")
    data = prepare_data(config)
    own_engines = engines is None
    engines = engines or Engines.open(config)
    try:
        hooks = server_hooks(config, data)
        if isinstance(runtime, str):  # the clients share the monitor's privacy profiles
            monitors = [h for h in hooks if isinstance(h, PrivacyMonitor)]
            profiles = monitors[0].profiles if monitors else None
            clients = build_clients(config, data, engines, profiles)
            runtime = InProcessRuntime(clients, config.federation.round_timeout)
        server = Server(config, data, engines, runtime, RunStore(out_dir), on_event, hooks)
        results = await server.run(resume=resume)
        if results.status == "complete":  # the run's own report.md and plot
            from fedtextgrad.report import write_run_report  # matplotlib: only when needed

            write_run_report(out_dir, results)
    finally:
        if own_engines:
            await engines.aclose()
    return Results(results, Path(out_dir))


def run(config: ExperimentConfig | str | Path, out_dir: str | Path, **kwargs) -> Results:
    """Synchronous `run_async`, for scripts and notebooks without an event loop."""
    return asyncio.run(run_async(config, out_dir, **kwargs))
