"""A closed federation's parts, without processes: the SuperLink's public listener serves the Fleet
API only, keys and their assignment to clients, and the ServerApp serving each client from its
assigned SuperNode only (and recording which node served it). The real deployment is in
test_flower_deployment.py."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from types import SimpleNamespace

import httpx
import pytest

pytest.importorskip("flwr")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from flwr.common.config import get_fused_config_from_dir  # noqa: E402
from helpers.flower import FakeGrid, config, task_identity, toy_engines  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from fedtextgrad import FedTextGradError, run_async  # noqa: E402
from fedtextgrad.flower import messages  # noqa: E402
from fedtextgrad.flower.__main__ import cli  # noqa: E402
from fedtextgrad.flower.bundle import read_nodes, write_app  # noqa: E402
from fedtextgrad.flower.identity import (  # noqa: E402
    assignments,
    fingerprint,
    names_host,
    write_certificates,
    write_node_key,
)
from fedtextgrad.flower.runtime import FlowerRuntime  # noqa: E402
from fedtextgrad.flower.superlink import fleet_only, flower_config, is_public, require_closed  # noqa: E402

_ = task_identity  # its autouse fixture gives the messages made here a run id, too

# -- the SuperLink's public listener --------------------------------------------------------------

PROTOBUF = {"content-type": "application/protobuf"}


class Client:
    """Requests to an ASGI app in this process (no lifespan: the public listener never runs
    Flower's, the operator listener does)."""

    def __init__(self, app):
        self.app = app

    def request(self, method: str, path: str) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="https://link") as client:
                return await client.request(method, path, content=b"", headers=PROTOBUF)

        return asyncio.run(go())


@pytest.fixture(scope="module")
def public_listener():
    from flwr.superlink.main import create_app

    return Client(fleet_only(create_app()))


@pytest.mark.parametrize(
    "path",
    [
        "/v1/control/start-run",  # flwr run: an app whose ServerApp runs on the SuperLink's host
        "/v1/control/list-runs",  # flwr ls
        "/v1/control/stream-logs",  # flwr log
        "/v1/control/register-node",  # flwr supernode register
        "/v1/control/list-nodes",  # flwr supernode list
        "/v1/runtime/acquire-task",  # take the ServerApp's task (and its token) before SuperExec
        "/v1/runtime/responses",
        "/docs",
        "/openapi.json",
    ],
)
def test_the_public_listener_refuses_all_but_the_fleet_api(public_listener, path):
    response = public_listener.request("POST", path)
    assert response.status_code == 403
    assert "serves only the Fleet API" in response.json()["detail"]


def test_the_public_listener_serves_the_fleet_api_and_health(public_listener):
    assert public_listener.request("GET", "/health").status_code == 200
    # Reaches Flower's Fleet API, which refuses an unsigned request itself.
    response = public_listener.request("POST", "/v1/fleet/get-run")
    assert (response.status_code, response.json()["detail"]) == (
        401, "Invalid SuperNode authentication"
    )  # fmt: skip


def test_flower_alone_answers_the_control_api_to_anyone():
    """Why the listener exists: Flower 1.42's open-source SuperLink authenticates no Control API
    caller (the NoOp account plugin), so one port serves flwr to whoever reaches it."""
    from flwr.superlink.main import create_app

    response = Client(create_app()).request("POST", "/v1/control/list-runs")
    assert response.status_code == 200


def test_only_fleet_paths_are_public():
    assert is_public("/v1/fleet/pull-messages") and is_public("/health")
    for path in ("/v1/fleet/../control/start-run", "/v1/fleetx/a", "/v1/control/", "/", ""):
        assert not is_public(path)


def superlink_args(certs, *extra: str) -> list[str]:
    return [
        "--ssl-ca-certfile", str(certs / "ca.crt"),
        "--ssl-certfile", str(certs / "server.pem"),
        "--ssl-keyfile", str(certs / "server.key"),
        *extra,
    ]  # fmt: skip


def test_a_closed_superlink_needs_tls_supernode_auth_and_a_loopback_name(tmp_path):
    with pytest.raises(FedTextGradError, match="needs TLS"):
        require_closed(flower_config(["--insecure"]))
    write_certificates(tmp_path / "ok")
    with pytest.raises(FedTextGradError, match="needs --enable-supernode-auth"):
        require_closed(flower_config(superlink_args(tmp_path / "ok")))
    require_closed(flower_config(superlink_args(tmp_path / "ok", "--enable-supernode-auth")))
    # The certificate of the old recipe named only the public address: SuperExec dials 127.0.0.1.
    write_certificates(tmp_path / "public", hosts=["link.example.org", "10.0.0.5"])
    with pytest.raises(FedTextGradError, match="does not name 127.0.0.1 in its subjectAltName"):
        require_closed(
            flower_config(superlink_args(tmp_path / "public", "--enable-supernode-auth"))
        )


def test_local_certificates_name_the_loopback_address(tmp_path):
    write_certificates(tmp_path)
    pem = (tmp_path / "server.pem").read_bytes()
    assert names_host(pem, "127.0.0.1") and names_host(pem, "localhost")
    assert not names_host(pem, "10.0.0.5")
    assert (tmp_path / "server.key").stat().st_mode & 0o077 == 0


# -- keys and assignments -------------------------------------------------------------------------


def test_a_fingerprint_is_the_one_ssh_keygen_prints(tmp_path):
    key = write_node_key(tmp_path / "node")
    assert (tmp_path / "node").stat().st_mode & 0o077 == 0
    from flwr.cli.supernode.register import try_load_public_key

    # What the SuperLink stores (PEM) and the .pub file give the same fingerprint.
    assert fingerprint(try_load_public_key(tmp_path / "node.pub")) == key
    if shutil.which("ssh-keygen"):
        printed = subprocess.run(
            ["ssh-keygen", "-lf", str(tmp_path / "node.pub")], capture_output=True, text=True
        ).stdout
        assert printed.split()[1] == key
    with pytest.raises(ValueError):
        fingerprint(b"not a key")


def test_every_client_gets_exactly_one_key(tmp_path):
    keys = [write_node_key(tmp_path / f"k{i}") for i in range(2)]
    assert assignments([f"0={tmp_path / 'k0.pub'}", f"1={keys[1]}"], 2) == {0: keys[0], 1: keys[1]}
    assert assignments([], 2) == {}  # an open federation
    for options, problem in [
        ([f"0={keys[0]}"], r"clients \[1\] have no key"),
        ([f"0={keys[0]}", f"1={keys[0]}"], "one key is given to two clients"),
        ([f"0={keys[0]}", f"0={keys[1]}"], "client 0 is given twice"),
        ([f"2={keys[0]}"], "the experiment has clients 0..1"),
        ([keys[0]], "is not CLIENT=KEY"),
        (["0=missing.pub"], "neither a public key file nor a SHA256: fingerprint"),
        ([f"0={tmp_path / 'k0'}"], "is not a public key"),  # the private key, by mistake
        (["0=SHA256:short"], "is not a SHA256 fingerprint"),
    ]:
        with pytest.raises(FedTextGradError, match=problem):
            assignments(options, 2)


def test_the_app_command_writes_the_assignments_into_the_run_config(tmp_path):
    keys = [write_node_key(tmp_path / f"k{i}") for i in range(3)]
    experiment = tmp_path / "experiment.toml"
    experiment.write_text('[task]\nname = "bbh_object_counting"\n\n[federation]\nclients = 3\n')
    args = ["app", str(experiment), "--out", "/runs/x", "--dir", str(tmp_path / "app")]
    nodes = [f"--node={i}={tmp_path / f'k{i}.pub'}" for i in range(3)]
    partial = CliRunner().invoke(cli, [*args, *nodes[:2]])
    assert "clients [2] have no key" in str(partial.exception)
    result = CliRunner().invoke(cli, [*args, *nodes])
    assert result.exit_code == 0, result.output
    run_config = get_fused_config_from_dir(tmp_path / "app", {})
    assert read_nodes(run_config) == dict(enumerate(keys))
    write_app(tmp_path / "open", config(), "/runs/y")
    assert read_nodes(get_fused_config_from_dir(tmp_path / "open", {})) == {}
    assert read_nodes({}) == {}  # an app written before assignments existed


# -- the ServerApp in a closed federation ---------------------------------------------------------


def public_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class KeyedGrid(FakeGrid):
    """FakeGrid whose nodes carry public keys, as Flower's NodeInfo does."""

    def __init__(self, cfg, loop, keys: dict[int, bytes], **options):
        super().__init__(cfg, loop, partitions=list(keys), **options)
        self.keys = keys

    def get_nodes(self):
        return [
            SimpleNamespace(node_id=100 + p, status="online", public_key=key)
            for p, key in self.keys.items()
        ]


def test_only_the_assigned_node_serves_a_client_and_the_record_names_it(tmp_path):
    cfg = config(rounds=1)
    keys = {p: public_pem() for p in (0, 1, 2, 7)}  # node 107: a key the operator did not assign
    assigned = {client: fingerprint(keys[client]) for client in range(3)}
    seen: list[tuple[str, dict]] = []

    async def go():
        grid = KeyedGrid(cfg, asyncio.get_running_loop(), keys)
        runtime = FlowerRuntime(
            grid, cfg, node_wait=0.0, poll=0.01, nodes=assigned,
            on_event=lambda event, **data: seen.append((event, data)),
        )  # fmt: skip
        results = await run_async(cfg, tmp_path, engines=toy_engines(cfg), runtime=runtime)
        return results.data, grid

    data, grid = asyncio.run(go())
    assert {m.metadata.dst_node_id for m in grid.sent} == {100, 101, 102}  # none to node 107
    assert all(m.metadata.message_type == messages.TRAIN for m in grid.sent)  # keys, not claims
    served = [(c["client"], c["node"]) for c in data["rounds"][0]["clients"]]
    assert served == [(0, "100"), (1, "101"), (2, "102")]
    refused = [data for event, data in seen if event == "refused_node"]
    assert refused == [{"node": "107", "key": fingerprint(keys[7]), "reason": "key not assigned"}]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rounds"][0]["clients"][0]["node"] == "100"


def test_a_client_without_its_assigned_node_fails_rather_than_being_taken_over(tmp_path):
    cfg = config(rounds=1, min_clients=1)
    keys = {1: public_pem(), 2: public_pem(), 5: public_pem()}  # node 105 wants client 0's slot
    assigned = {0: fingerprint(public_pem()), 1: fingerprint(keys[1]), 2: fingerprint(keys[2])}

    async def go():
        grid = KeyedGrid(cfg, asyncio.get_running_loop(), keys)
        runtime = FlowerRuntime(grid, cfg, node_wait=0.0, poll=0.01, nodes=assigned)
        return runtime, await runtime.train(1, [0, 1, 2], "Count.", 1)

    runtime, outcomes = asyncio.run(go())
    assert outcomes[0].error == "no SuperNode with partition-id=0 is connected"
    assert runtime.nodes == {1: 101, 2: 102} and runtime.foreign == {105}
    assert runtime.served_by == {1: "101", 2: "102"}


def test_the_in_process_record_names_no_node(tmp_path):
    cfg = config(rounds=1)
    data = asyncio.run(run_async(cfg, tmp_path, engines=toy_engines(cfg))).data
    assert all("node" not in c for c in data["rounds"][0]["clients"])
