"""A Flower grid faked in-process (nodes that train with our in-process clients, or stay silent,
or fail), its config and engines. Import it after `pytest.importorskip("flwr")`."""

from __future__ import annotations

import asyncio
import contextvars
from types import SimpleNamespace

import pytest
from flwr.app import Error, Message
from flwr.supercore.task_identity import TaskIdentity

from fedtextgrad import load_config, run_async
from fedtextgrad.experiment import build_clients
from fedtextgrad.federated import Engines, prepare_data
from fedtextgrad.flower import messages
from fedtextgrad.flower.runtime import FlowerRuntime
from fedtextgrad.llm import scripted_engine
from helpers.scripted import toy_responder

NODE_UNAVAILABLE = 5


@pytest.fixture(autouse=True)
def task_identity():
    """Messages take their run id from the process's task identity (set by Flower's runners)."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def config(**federation):
    return load_config(
        {
            "seed": 3,
            "task": {"name": "bbh_object_counting", "train_size": 6},
            "train": {"batch_size": 2, "local_steps": 1},
            "federation": {"clients": 3, "rounds": 2, "aggregation": "concat", **federation},
            "eval": {"val_size": 3, "test_size": 3},
            "llm": {"cache": False, "api_key": "sk-secret"},
        }
    )


def toy_engines(cfg) -> Engines:
    data = prepare_data(cfg)
    examples = data.val + data.test + [ex for part in data.client_train for ex in part]
    targets = {ex.input: ex.target for ex in examples}
    llm = scripted_engine(lambda m: toy_responder(m, targets=targets))
    return Engines(llm, llm, llm)


class FakeGrid:
    """Nodes 100+k hold partition k and train with in-process Clients on the test's loop.
    `silent` nodes never answer a train message; `broken` ones answer with a Flower error
    (their node is gone), `raising` ones with our error record (the ClientApp failed)."""

    def __init__(self, cfg, loop, *, partitions=None, silent=(), broken=(), raising=()):
        self.clients = build_clients(cfg, prepare_data(cfg), toy_engines(cfg))
        self.loop = loop
        self.partitions = partitions if partitions is not None else list(range(len(self.clients)))
        self.silent, self.broken, self.raising = set(silent), set(broken), set(raising)
        self.replies: dict[str, Message] = {}
        self.sent: list[Message] = []

    def get_nodes(self):
        return [SimpleNamespace(node_id=100 + p, status="online") for p in self.partitions]

    def push_messages(self, outgoing):
        ids = []
        for message in outgoing:
            message.metadata.__dict__["_message_id"] = message.object_id
            self.sent.append(message)
            reply = self._answer(message, message.metadata.dst_node_id - 100)
            if reply is not None:
                self.replies[message.object_id] = reply
            ids.append(message.object_id)
        return ids

    def pull_messages(self, ids):
        return [self.replies.pop(i) for i in ids if i in self.replies]

    def _answer(self, message, partition):
        if message.metadata.message_type == messages.QUERY:
            content = messages.partition_content({"partition-id": partition})
            return Message(content, reply_to=message)
        if partition in self.silent:
            return None
        if partition in self.broken:
            return Message(Error(code=NODE_UNAVAILABLE, reason="node gone"), reply_to=message)
        if partition in self.raising:
            return Message(messages.error_content("EngineError: no model"), reply_to=message)
        client_id, round_number, prompt, steps, history = messages.read_train(message.content)
        work = self.clients[partition].run_round(prompt, round_number, steps, history=history)
        # A fresh context: the server's usage scopes see the client's calls only through the
        # reply, as across a real network.
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, work, self.loop)
        return Message(messages.update_content(future.result()), reply_to=message)


async def flower_run(cfg, out, **grid_options):
    grid = FakeGrid(cfg, asyncio.get_running_loop(), **grid_options)
    runtime = FlowerRuntime(grid, cfg, node_wait=0.0, poll=0.01)
    results = await run_async(cfg, out, engines=toy_engines(cfg), runtime=runtime)
    return results.data, grid
