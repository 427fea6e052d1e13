"""The in-process runtime: all clients in one process, run concurrently on one event loop, so
the engines' parallel slots stay busy. (The Flower runtime differs only in transport.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Protocol

from fedtextgrad.federated.client import Client, ClientFailure, ClientUpdate
from fedtextgrad.textgrad import StepRecord

Outcome = ClientUpdate | ClientFailure
ClientStepSink = Callable[[int, StepRecord], None]  # (client id, its step just done)


class Runtime(Protocol):
    async def train(
        self,
        round_number: int,
        client_ids: Sequence[int],
        prompt: str,
        local_steps: int,
        on_step: ClientStepSink | None = None,
        histories: Mapping[int, dict[str, float]] | None = None,  # client -> its scored prompts
    ) -> list[Outcome]: ...


class InProcessRuntime:
    def __init__(self, clients: Sequence[Client], timeout: float | None = None):
        self.clients = {client.id: client for client in clients}
        self.timeout = timeout

    async def train(
        self,
        round_number: int,
        client_ids: Sequence[int],
        prompt: str,
        local_steps: int,
        on_step: ClientStepSink | None = None,
        histories: Mapping[int, dict[str, float]] | None = None,
    ) -> list[Outcome]:
        async def one(client_id: int) -> Outcome:
            client = self.clients[client_id]
            sink = partial(on_step, client_id) if on_step else None
            history = (histories or {}).get(client_id)
            try:
                return await asyncio.wait_for(
                    client.run_round(prompt, round_number, local_steps, sink, history),
                    self.timeout,
                )
            except TimeoutError:
                return ClientFailure(client_id, f"no update within the {self.timeout:g} s deadline")
            except Exception as error:  # one client's failure must not stop the round
                return ClientFailure(client_id, f"{type(error).__name__}: {error}")

        return list(await asyncio.gather(*(one(c) for c in client_ids)))
