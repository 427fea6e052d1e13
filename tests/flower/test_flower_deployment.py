"""A real local Flower deployment (SuperLink, SuperNodes, ServerApp and ClientApp processes on
127.0.0.1) against the scripted toy world served over HTTP (`openai:` engines): no model, so it
checks the plumbing quickly and exactly."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from helpers.scripted import toy_responder

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
    assert all(c["node"] for r in flower["rounds"] for c in r["clients"])  # who served it
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


def test_a_server_error_during_a_round_reaches_the_caller_as_one_line(tmp_path, toy_server):
    # Raised inside the ServerApp's round, it once surfaced as KeyError: 'message'.
    config = settings(toy_server.url, rounds=1, min_clients=2, round_retries=0)
    config["llm"]["max_retries"] = 0
    cfg = load_config(config)
    answer = toy_server.responder

    def critic_down(messages):
        if "<SYSTEM_PROMPT>" in messages[-1]["content"]:  # every client's feedback request
            raise RuntimeError("the critic is down")
        return answer(messages)

    toy_server.responder = critic_down
    with pytest.raises(FedTextGradError, match=r"^round 1: only 0 of 2 clients replied"):
        asyncio.run(run_async(cfg, tmp_path, runtime="flower"))
    assert flower_processes(tmp_path) == []


def test_a_clientapp_trains_with_the_history_its_message_carries(toy_server):
    # The ClientApp holds no state between rounds: the server hands each client its history.
    from types import SimpleNamespace

    from flwr.app import Context, RecordDict

    from fedtextgrad.flower import apps, messages

    config = settings(toy_server.url)
    config["task"]["train_size"] = 24  # enough for each client's holdout of 4
    text = messages.config_to_text(load_config(config))
    context = Context(0, 0, {"partition-id": 0}, RecordDict(), {"experiment": text})
    history = {"Answer carefully.": 0.75}
    content = messages.train_content(0, 2, "Count.", 1, history)
    update = asyncio.run(apps._train(SimpleNamespace(content=content), context))
    assert "Count." in update.steps[0].scored  # this round's scores, for the server to keep
    updates = [r for r in toy_server.requests if "<CURRENT_PROMPT>" in json.dumps(r.body)]
    assert updates and all("Answer carefully." in json.dumps(r.body) for r in updates)


# -- a closed deployment (docs/flower.md, "Across machines", in miniature) ------------------------


def client_host(tmp_path, deployment) -> object:
    """The FLWR_HOME of a host that holds only ca.crt and the address SuperNodes dial."""
    home = tmp_path / "client-host"
    home.mkdir()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "link"\n\n[superlink.link]\n'
        f'address = "{deployment.address}"\nroot-certificates = "{deployment.certs / "ca.crt"}"\n'
    )
    return home


def wait_online(deployment, node_id: int, timeout: float = 120.0) -> None:
    """Until the operator's `flwr supernode list` shows the node online."""
    from fedtextgrad.flower.deploy import CONNECTION

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = json.loads(deployment.flwr("supernode", "list", CONNECTION, "--format", "json"))
        if any(n["node-id"] == str(node_id) and n["status"] == "online" for n in listed["nodes"]):
            return
        time.sleep(1.0)
    raise AssertionError(f"node {node_id} did not come online")


def read_events(run_dir) -> list[dict]:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


NAMES = ("0", "1", "unregistered", "unassigned")


def test_a_closed_deployment_refuses_intruders_and_records_the_serving_nodes(tmp_path, toy_server):
    from fedtextgrad.flower.bundle import write_app
    from fedtextgrad.flower.deploy import LocalDeployment
    from fedtextgrad.flower.identity import write_node_key

    cfg = load_config(settings(toy_server.url, rounds=1))
    deployment = LocalDeployment(tmp_path / "flower", 2, closed=True)
    try:
        deployment.start()
        # A client host reaches only the Fleet API: no runs, logs, listings or registrations.
        home = client_host(tmp_path, deployment)
        own_key = write_node_key(tmp_path / "own-key")
        assert own_key.startswith("SHA256:")
        foreign_app = write_app(tmp_path / "foreign-app", cfg, str(tmp_path / "foreign-run"))
        for command in (
            ("run", str(foreign_app), "link"),
            ("ls", "link"),
            ("log", "1", "link"),
            ("supernode", "register", str(tmp_path / "own-key.pub"), "link"),
            ("supernode", "list", "link"),
        ):
            with pytest.raises(FedTextGradError, match="serves only the Fleet API"):
                deployment.flwr(*command, home=home)
        # Two intruders claim client 0: one with a key nobody registered, one registered by the
        # operator (for another purpose) but not assigned to client 0 in the app.
        deployment.add_supernode("unregistered", 0, register=False)
        deployment.add_supernode("unassigned", 0)
        wait_online(deployment, deployment.node_ids["unassigned"])  # the ServerApp will see it
        app = write_app(deployment.root / "app", cfg, str(tmp_path / "run"), nodes=deployment.nodes)
        run = deployment.submit(app)
        assert run.wait(timeout=600) == 0, (deployment.logs / "flwr-run.log").read_text()[-2000:]
        unregistered = deployment.processes["supernode-unregistered"]
        assert unregistered.wait(timeout=60) != 0  # the SuperLink refused to activate it
    finally:
        assert deployment.stop() == []
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "complete" and not results["rounds"][0]["failures"]
    served = [(c["client"], c["node"]) for c in results["rounds"][0]["clients"]]
    assert served == [(0, str(deployment.node_ids["0"])), (1, str(deployment.node_ids["1"]))]
    refused = [e for e in read_events(tmp_path / "run") if e["event"] == "refused_node"]
    assert [e["node"] for e in refused] == [str(deployment.node_ids["unassigned"])]
    logs = {name: (deployment.logs / f"supernode-{name}.log").read_text() for name in NAMES}
    assert "Failed to activate SuperNode" in logs["unregistered"]
    assert "Receiving" in logs["0"] and "Receiving" not in logs["unassigned"]
    assert not (tmp_path / "foreign-run").exists()  # the client host's app never ran
