"""The Flower components: `server_app` runs our `Server` with a `FlowerRuntime`, `client_app`
runs our `Client` on the partition its SuperNode was started with.

Run config (see `bundle.py`): `experiment` (the config as JSON), `out-dir` (the run directory on the
SuperLink's host), `resume`, `node-wait` (seconds to wait for all SuperNodes), `nodes` (which
SuperNode key serves which client; empty: any SuperNode may claim a partition).
Node config: `partition-id` (the client id), optionally `data-dir` and `cache-dir`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedtextgrad.config import ExperimentConfig
from fedtextgrad.errors import ConfigError, FedTextGradError
from fedtextgrad.federated.client import ClientUpdate
from fedtextgrad.federated.prepare import Engines, prepare_data
from fedtextgrad.federated.store import RunStore
from fedtextgrad.flower import messages
from fedtextgrad.flower.bundle import read_nodes
from fedtextgrad.flower.runtime import FlowerRuntime

server_app = ServerApp()
client_app = ClientApp()


@server_app.main()
def serve(grid: Grid, context: Context) -> None:
    settings = context.run_config
    store = RunStore(Path(str(settings["out-dir"])))
    try:
        config = messages.config_from_text(str(settings["experiment"]))
        asyncio.run(_serve(grid, config, store, settings))
    except Exception as error:
        # The launcher (or `flwr log`) reads this line; Flower records the run as failed.
        text = (
            str(error)
            if isinstance(error, FedTextGradError)
            else f"{type(error).__name__}: {error}"
        )
        store.event("error", error=text)
        raise


async def _serve(grid: Grid, config: ExperimentConfig, store: RunStore, settings) -> None:
    from fedtextgrad.experiment import run_async  # the same server loop as in-process

    def emit(event: str, **data: object) -> None:
        _show(store.event(event, **data))

    runtime = FlowerRuntime(
        grid,
        config,
        node_wait=float(settings["node-wait"]),
        nodes=read_nodes(settings),
        on_event=emit,
    )
    await run_async(
        config, store.dir, resume=bool(settings["resume"]), runtime=runtime, on_event=_show
    )


def _show(event: dict) -> None:
    """One line per event in the ServerApp's log (`flwr run --stream`, `flwr log`)."""
    print(f"[fedtextgrad] {json.dumps(event, ensure_ascii=False)[:500]}", flush=True)


@client_app.query("partition")
def partition(message: Message, context: Context) -> Message:
    return Message(messages.partition_content(context.node_config), reply_to=message)


@client_app.train("textgrad")
def train(message: Message, context: Context) -> Message:
    try:
        update = asyncio.run(_train(message, context))
        content = messages.update_content(update)
    except Exception as error:  # the server records it as this client's failure for the round
        content = messages.error_content(f"{type(error).__name__}: {error}")
    return Message(content, reply_to=message)


async def _train(message: Message, context: Context) -> ClientUpdate:
    from fedtextgrad.experiment import build_client

    client_id, round_number, prompt, local_steps, history = messages.read_train(message.content)
    partition = int(context.node_config.get("partition-id", -1))
    if partition != client_id:
        raise ConfigError(
            f"this SuperNode holds partition-id={partition}, not client {client_id}: "
            "give every SuperNode its own --node-config 'partition-id=N'"
        )
    config = messages.config_from_text(str(context.run_config["experiment"]), context.node_config)
    data = prepare_data(config)
    engines = _client_engines(config)
    try:
        client = build_client(config, data, engines, client_id)
        return await client.run_round(prompt, round_number, local_steps, history=history)
    finally:
        await engines.aclose()


def _client_engines(config: ExperimentConfig) -> Engines:
    """Clients use the forward and feedback engines only: don't load an aggregator model."""
    feedback = config.engines.resolved["feedback"]
    engines = config.engines.model_copy(update={"aggregator": feedback})
    return Engines.open(config.model_copy(update={"engines": engines}))
