"""A real local Flower deployment (SuperLink, SuperNodes, ServerApp and ClientApp processes on
127.0.0.1) against the scripted toy world served over HTTP (`openai:` engines): no model, so it
checks the plumbing quickly and exactly."""

from __future__ import annotations

import asyncio
import json

import pytest
from scripted import toy_responder

psutil = pytest.importorskip("psutil")
pytest.importorskip("flwr")

from fedtextgrad import FedTextGradError, load_config, run_async  # noqa: E402
from fedtextgrad.federated import prepare_data  # noqa: E402
from fedtextgrad.robustness import FaultServer  # noqa: E402


def settings(url: str, **federation) -> dict:
    return {
        "seed": 2,
        "engines": {"forward": "openai:toy"},
        "task": {"name": "bbh_object_counting", "train_size": 6},
        "train": {"batch_size": 2, "local_steps": 1},
        "federation": {"clients": 2, "rounds": 2, "aggregation": "uid_summarize", **federation},
        "eval": {"val_size": 4, "test_size": 4},
        "llm": {"base_url": url, "api_key": "sk-local", "timeout": 10.0, "cache": False},
    }


@pytest.fixture
def toy_server(monkeypatch):
    # The API key is not shipped to Flower's processes: each one reads its host's environment.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    data = prepare_data(load_config(settings("http://unused")))
    targets = {ex.input: ex.target for ex in data.val + data.test}
    targets |= {ex.input: ex.target for part in data.client_train for ex in part}
    with FaultServer(lambda m: toy_responder(m, targets=targets), retry_after=0) as server:
        yield server


def flower_processes(run_dir) -> list:
    home = str(run_dir.resolve() / "flower")
    found = []
    for process in psutil.process_iter():
        try:
            ours = process.environ().get("FLWR_HOME", "").startswith(home)
            if ours and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def test_a_flower_deployment_reproduces_the_in_process_run(tmp_path, toy_server):
    cfg = load_config(settings(toy_server.url))
    local = asyncio.run(run_async(cfg, tmp_path / "local")).data
    seen = []
    flower = asyncio.run(
        run_async(cfg, tmp_path / "flower", runtime="flower", on_event=seen.append)
    ).data
    assert flower["status"] == "complete"
    assert [r["global_prompt"] for r in flower["rounds"]] == [
        r["global_prompt"] for r in local["rounds"]
    ]
    assert flower["final"]["test_accuracy"] == local["final"]["test_accuracy"] == 1.0
    assert flower["usage"]["calls"] == local["usage"]["calls"]
    assert json.loads((tmp_path / "flower" / "results.json").read_text()) == flower
    kinds = [e["event"] for e in seen]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("round") == 2
    assert "nodes" in kinds  # the ServerApp found both SuperNodes by their partition-id
    logs = tmp_path / "flower" / "flower" / "logs"
    assert {p.name for p in logs.iterdir()} == {
        "superlink.log", "supernode-0.log", "supernode-1.log", "flwr-run.log"
    }  # fmt: skip
    assert flower_processes(tmp_path / "flower") == []


def test_a_server_side_error_reaches_the_caller_as_one_line(tmp_path, toy_server):
    cfg = load_config(settings(toy_server.url, rounds=1))
    asyncio.run(run_async(cfg, tmp_path))  # the run directory now holds a run
    with pytest.raises(FedTextGradError, match="already holds a run: pass --resume"):
        asyncio.run(run_async(cfg, tmp_path, runtime="flower"))
    assert flower_processes(tmp_path) == []


def test_a_clientapp_keeps_its_scored_history_in_the_node_state_across_rounds(toy_server):
    # The ClientApp rebuilds its client every round: the history must survive in context.state.
    from types import SimpleNamespace

    from flwr.app import Context, RecordDict

    from fedtextgrad.flower import apps, messages

    config = settings(toy_server.url)
    config["task"]["train_size"] = 24  # enough for each client's holdout of 4
    text = messages.config_to_text(load_config(config))
    context = Context(0, 0, {"partition-id": 0}, RecordDict(), {"experiment": text})
    for round_number, prompt in ((1, "Answer."), (2, "Count.")):
        content = messages.train_content(0, round_number, prompt, 1)
        asyncio.run(apps._train(SimpleNamespace(content=content), context))
        history = context.state[apps.HISTORY]
        assert "Answer." in history["prompts"]  # round 1's scores, kept through round 2
    assert "Count." in history["prompts"]
