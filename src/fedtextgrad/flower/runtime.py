"""The Flower runtime: the same `Runtime` as the in-process one, with a Flower `Grid` as the
transport. Client k is the SuperNode whose key the operator assigned to k (`nodes`, a closed
federation), or, without assignments, the SuperNode started with `--node-config partition-id=k`.

Every missing reply becomes a `ClientFailure` (an error reply, a SuperNode that is gone, no
reply by `federation.round_timeout`), so the `Server` decides as it does in-process: aggregate
what arrived if there are at least `federation.min_clients` updates, else retry the round."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Protocol

from flwr.app import DEFAULT_TTL, Message, RecordDict
from flwr.common.constant import ErrorCode

from fedtextgrad.config import ExperimentConfig
from fedtextgrad.federated.client import ClientFailure, ClientUpdate
from fedtextgrad.federated.runtime import ClientStepSink, Outcome
from fedtextgrad.flower import messages
from fedtextgrad.flower.identity import fingerprint
from fedtextgrad.llm.usage import Usage, record

QUERY_TIMEOUT = 120.0  # a ClientApp process starts per message: imports take a few seconds
EventSink = Callable[..., None]


class Grid(Protocol):
    """The part of `flwr.serverapp.Grid` we use (a fake one stands in for it in unit tests)."""

    def get_nodes(self) -> Iterable: ...
    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]: ...
    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]: ...


class FlowerRuntime:
    def __init__(
        self,
        grid: Grid,
        config: ExperimentConfig,
        *,
        node_wait: float = 300.0,
        poll: float = 0.5,
        nodes: Mapping[int, str] | None = None,
        on_event: EventSink | None = None,
    ):
        self.grid = grid
        self.clients = config.federation.clients
        self.timeout = config.federation.round_timeout
        self.node_wait = node_wait
        self.poll = poll
        self.on_event = on_event
        self.assigned = dict(nodes or {})  # client id -> the key fingerprint of its SuperNode
        self.nodes: dict[int, int] = {}  # client id (partition-id) -> Flower node id
        self.foreign: set[int] = set()  # nodes that serve none of our clients
        self.served_by: dict[int, str] = {}  # client id -> the node of its update, last train()
        self._waited = False

    async def train(
        self,
        round_number: int,
        client_ids: Sequence[int],
        prompt: str,
        local_steps: int,
        on_step: ClientStepSink | None = None,
        histories: Mapping[int, dict[str, float]] | None = None,
    ) -> list[Outcome]:
        """`on_step` hears of a client's steps when its reply arrives (they are not streamed)."""
        # The first round waits for the federation to gather; later ones only look for newcomers.
        await self.discover(wait=0.0 if self._waited else self.node_wait)
        self._waited = True
        ttl = self.timeout or DEFAULT_TTL  # an undelivered message must not run after its round
        self.served_by = {}
        outcomes: dict[int, Outcome] = {}
        sent: dict[int, Message] = {}
        for client in client_ids:
            node = self.nodes.get(client)
            if node is None:
                outcomes[client] = ClientFailure(
                    client, f"no SuperNode with partition-id={client} is connected"
                )
                continue
            history = (histories or {}).get(client)
            content = messages.train_content(client, round_number, prompt, local_steps, history)
            sent[client] = Message(
                content, dst_node_id=node, message_type=messages.TRAIN, ttl=ttl,
                group_id=f"round-{round_number}",
            )  # fmt: skip
        replies = await self.exchange(sent, self.timeout)
        for client in sent:
            reply = replies.get(client)
            if reply is None:
                outcomes[client] = ClientFailure(client, self._silence(client))
                continue
            outcome = messages.read_reply(client, reply)
            if isinstance(outcome, ClientUpdate):
                self.served_by[client] = str(reply.metadata.src_node_id)  # as the SuperLink says
                _credit(outcome.usage)
                if on_step:
                    for step in outcome.steps:
                        on_step(client, step)
            elif reply.has_error() and reply.error.code == ErrorCode.NODE_UNAVAILABLE:
                self.nodes.pop(client, None)  # gone: look for its replacement next round
            outcomes[client] = outcome
        return [outcomes[client] for client in client_ids]

    async def discover(self, wait: float) -> None:
        """Learn which node serves which client, waiting up to `wait` s for all clients."""
        deadline = time.monotonic() + wait
        before = dict(self.nodes)
        while True:
            online = await asyncio.to_thread(self._online_nodes)
            for client, node in list(self.nodes.items()):
                if node not in online:
                    del self.nodes[client]
            unknown = sorted(set(online) - set(self.nodes.values()) - self.foreign)
            if unknown and self.assigned:
                self._match_keys({node: online[node] for node in unknown})
            elif unknown:
                await self._ask_partitions(unknown)
            if len(self.nodes) >= self.clients or time.monotonic() >= deadline:
                break
            await asyncio.sleep(1.0)
        if self.nodes != before or wait > 0:  # at the start, then when the map changes
            self._emit(
                "nodes",
                clients={str(c): str(n) for c, n in sorted(self.nodes.items())},
                missing=[c for c in range(self.clients) if c not in self.nodes],
            )

    async def exchange(
        self, outgoing: dict[int, Message], timeout: float | None
    ) -> dict[int, Message]:
        """Send one message per key and collect the replies that arrive before the deadline
        (Grid.send_and_receive polls every 3 s; we poll faster and keep replies by key)."""
        if not outgoing:
            return {}
        keys = list(outgoing)
        ids = await asyncio.to_thread(self.grid.push_messages, [outgoing[k] for k in keys])
        pending = {mid: key for mid, key in zip(ids, keys, strict=True) if mid}
        replies: dict[int, Message] = {}
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending and (deadline is None or time.monotonic() < deadline):
            for reply in await asyncio.to_thread(self.grid.pull_messages, list(pending)):
                key = pending.pop(reply.metadata.reply_to_message_id, None)
                if key is not None:
                    replies[key] = reply
            if pending:
                await asyncio.sleep(self.poll)
        return replies

    def _match_keys(self, nodes: Mapping[int, bytes]) -> None:
        """A closed federation: a node serves the client its key was assigned to, whatever
        partition-id it claims; a node with any other key serves no one."""
        clients = {key: client for client, key in self.assigned.items()}
        for node, public_key in nodes.items():
            try:
                key = fingerprint(public_key)
            except ValueError:
                key = None
            client = clients.get(key)
            if client is None:
                self.foreign.add(node)
                self._emit("refused_node", node=str(node), key=key, reason="key not assigned")
            else:
                self.nodes[client] = node  # the key decides: re-registering changes the id

    async def _ask_partitions(self, nodes: list[int]) -> None:
        queries = {
            node: Message(
                RecordDict(), dst_node_id=node, message_type=messages.QUERY, ttl=QUERY_TIMEOUT
            )
            for node in nodes
        }
        replies = await self.exchange(queries, QUERY_TIMEOUT)
        for node, reply in replies.items():
            partition = messages.read_partition(reply)
            if partition is None or not 0 <= partition < self.clients:
                self.foreign.add(node)
                self._emit("foreign_node", node=str(node), partition=partition)
            else:
                self.nodes[partition] = node  # a restarted SuperNode replaces its old node id

    def _online_nodes(self) -> dict[int, bytes]:
        """Online node id -> its public key (PEM, as registered with the SuperLink)."""
        return {
            node.node_id: getattr(node, "public_key", b"")
            for node in self.grid.get_nodes()
            if getattr(node, "status", "online") == "online"
        }

    def _silence(self, client: int) -> str:
        if self.timeout is None:
            return "no reply (the message could not be delivered)"
        return f"no update within the {self.timeout:g} s deadline"

    def _emit(self, event: str, **data: object) -> None:
        if self.on_event:
            self.on_event(event, **data)


def _credit(usage: Usage) -> None:
    """Count a remote client's LLM calls in the server's usage scopes (the round's and the
    run's), as they are counted when the client runs in-process."""
    for purpose, counts in usage.by_purpose.items():
        record(Usage(), purpose, **asdict(counts))
