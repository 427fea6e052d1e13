"""The Flower runtime's logic against a stand-in Grid (no processes, no model): the messages,
the node discovery, failures and deadlines, and the whole Server loop over it."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("flwr")

from flwr.app import Error, Message  # noqa: E402
from flwr.cli.config_utils import load_and_validate  # noqa: E402
from flwr.common.config import get_fused_config_from_dir  # noqa: E402
from helpers.flower import (  # noqa: E402, F401
    NODE_UNAVAILABLE,
    FakeGrid,
    config,
    flower_run,
    task_identity,
    toy_engines,
)

from fedtextgrad import FedTextGradError, run_async  # noqa: E402
from fedtextgrad.federated import ClientFailure, ClientUpdate  # noqa: E402
from fedtextgrad.flower import messages  # noqa: E402
from fedtextgrad.flower.bundle import write_app  # noqa: E402
from fedtextgrad.flower.deploy import EventTail  # noqa: E402
from fedtextgrad.flower.runtime import FlowerRuntime  # noqa: E402
from fedtextgrad.llm.usage import track_usage  # noqa: E402


def test_the_config_travels_as_text_without_the_api_key():
    cfg = config()
    text = messages.config_to_text(cfg)
    assert "sk-secret" not in text
    assert messages.config_from_text(text) == cfg.model_copy(
        update={"llm": cfg.llm.model_copy(update={"api_key": None})}
    )
    node = {"data-dir": "/data", "cache-dir": "/c", "threads": 1, "partition-id": 0}
    local = messages.config_from_text(text, node)
    assert (local.task.data_dir, local.llm.cache_dir, local.llm.threads) == ("/data", "/c", 1)


def test_a_client_update_survives_the_trip_and_errors_become_failures():
    cfg = config()
    grid = FakeGrid(cfg, None)
    content = messages.train_content(2, 4, "Be brief.", 3, {"Be brief.": 0.25})
    request = Message(content, dst_node_id=102, message_type=messages.TRAIN)
    assert messages.read_train(request.content) == (2, 4, "Be brief.", 3, {"Be brief.": 0.25})
    update = asyncio.run(grid.clients[2].run_round("Be brief.", 4, 1))
    reply = Message(messages.update_content(update), reply_to=request)
    back = messages.read_reply(2, reply)
    assert isinstance(back, ClientUpdate) and back.to_record() == update.to_record()
    assert reply.content.metric_records["metrics"]["num-examples"] == 2
    wrong = messages.read_reply(1, reply)
    assert isinstance(wrong, ClientFailure) and "from client 2" in wrong.error
    failed = messages.read_reply(2, Message(messages.error_content("boom"), reply_to=request))
    assert failed == ClientFailure(2, "boom")
    gone = messages.read_reply(2, Message(Error(code=5, reason="node gone"), reply_to=request))
    assert isinstance(gone, ClientFailure) and "node gone" in gone.error


def test_the_app_directory_is_a_valid_flower_app_carrying_the_experiment(tmp_path):
    cfg = config()
    app = write_app(tmp_path / "app", cfg, "/runs/x", resume=True, node_wait=12)
    _, warnings = load_and_validate(app / "pyproject.toml", check_module=True)
    assert warnings == []
    run_config = get_fused_config_from_dir(app, {})
    assert run_config["out-dir"] == "/runs/x" and run_config["resume"] is True
    assert run_config["node-wait"] == 12.0
    assert messages.config_from_text(run_config["experiment"]).federation == cfg.federation


def counts(usage: dict) -> dict:
    """Calls and tokens per purpose (latencies differ from run to run)."""
    return {
        p: {k: v for k, v in c.items() if k != "seconds"} for p, c in usage["by_purpose"].items()
    }


def test_the_flower_runtime_gives_the_in_process_results(tmp_path):
    cfg = config()
    local = asyncio.run(run_async(cfg, tmp_path / "local", engines=toy_engines(cfg))).data
    remote, grid = asyncio.run(flower_run(cfg, tmp_path / "flower"))
    for mine, theirs in zip(remote["rounds"], local["rounds"], strict=True):
        assert mine["global_prompt"] == theirs["global_prompt"]
        assert [c["prompt"] for c in mine["clients"]] == [c["prompt"] for c in theirs["clients"]]
        assert mine["failures"] == [] and mine["usage"]["calls"] == theirs["usage"]["calls"]
    assert counts(remote["usage"]) == counts(local["usage"])
    assert remote["final"] == local["final"]
    kinds = [m.metadata.message_type for m in grid.sent]
    assert kinds == [messages.QUERY] * 3 + [messages.TRAIN] * 6  # partitions are asked once


def test_a_silent_node_times_out_and_the_round_goes_on_without_it(tmp_path):
    cfg = config(min_clients=2, round_timeout=0.5, rounds=1)
    data, _ = asyncio.run(flower_run(cfg, tmp_path, silent={1}))
    (entry,) = data["rounds"]
    assert [c["client"] for c in entry["clients"]] == [0, 2]
    assert entry["failures"] == [
        {"client": 1, "error": "no update within the 0.5 s deadline", "attempt": 0}
    ]
    assert data["status"] == "complete"


def test_too_few_replies_retry_the_round_then_fail_clearly(tmp_path):
    cfg = config(min_clients=2, rounds=1, round_retries=1)
    with pytest.raises(Exception, match="only 1 of 3 clients replied after 2 attempts"):
        asyncio.run(flower_run(cfg, tmp_path, broken={0, 1}))
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").open()]
    failures = [e for e in events if e["event"] == "client_failure"]
    assert len(failures) == 4 and all("node gone" in f["error"] for f in failures)


def test_a_missing_partition_is_a_failure_and_foreign_nodes_are_ignored(tmp_path):
    cfg = config(min_clients=1, rounds=1)

    async def go():
        grid = FakeGrid(cfg, asyncio.get_running_loop(), partitions=[0, 2, 7])
        runtime = FlowerRuntime(grid, cfg, node_wait=0.0, poll=0.01)
        with track_usage() as usage:
            outcomes = await runtime.train(1, [0, 1, 2], "Count.", 1)
        return runtime, outcomes, usage

    runtime, outcomes, usage = asyncio.run(go())
    assert runtime.nodes == {0: 100, 2: 102} and runtime.foreign == {107}
    assert [type(o).__name__ for o in outcomes] == ["ClientUpdate", "ClientFailure", "ClientUpdate"]
    assert outcomes[1] == ClientFailure(1, "no SuperNode with partition-id=1 is connected")
    # Remote clients' LLM calls count in the server's usage scopes, as in-process.
    remote_calls = sum(o.usage.total().calls for o in outcomes if isinstance(o, ClientUpdate))
    assert remote_calls > 0 and usage.total().calls == remote_calls


def test_a_gone_node_is_forgotten_and_a_failing_client_app_is_not(tmp_path):
    cfg = config(min_clients=1, rounds=1)

    async def go():
        grid = FakeGrid(cfg, asyncio.get_running_loop(), broken={0}, raising={1})
        runtime = FlowerRuntime(grid, cfg, node_wait=0.0, poll=0.01)
        return runtime, await runtime.train(1, [0, 1, 2], "Count.", 1)

    runtime, outcomes = asyncio.run(go())
    assert outcomes[0] == ClientFailure(0, f"Flower error {NODE_UNAVAILABLE}: node gone")
    assert outcomes[1] == ClientFailure(1, "EngineError: no model")
    assert isinstance(outcomes[2], ClientUpdate)
    assert runtime.nodes == {1: 101, 2: 102}  # node 100 will be looked up again


def test_an_unknown_runtime_is_a_one_line_error(tmp_path):
    with pytest.raises(FedTextGradError, match="unknown runtime 'grpc': use in-process or flower"):
        asyncio.run(run_async(config(), tmp_path, runtime="grpc"))


def test_event_tail_returns_only_whole_new_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "old"}\n')
    tail = EventTail(path)
    assert tail.read() == []
    with path.open("a") as handle:
        handle.write('{"event": "a"}\n{"event": "b", "x"')
    assert tail.read() == [{"event": "a"}]
    with path.open("a") as handle:
        handle.write(": 1}\n")
    assert tail.read() == [{"event": "b", "x": 1}]
