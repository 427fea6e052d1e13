"""A Flower deployment on this machine for one run: a SuperLink and one SuperNode per client,
all on 127.0.0.1, without Ray. `flwr run` submits the app; the ServerApp writes the run
directory; every process started here is stopped afterwards (by process group, then checked).

Open (the default): insecure, and any SuperNode may claim a partition. Closed (`closed=True`, the
docs' "Across machines" recipe in miniature): TLS with a throwaway CA, the closed SuperLink
(`superlink.py`: the Fleet API on one port, the Control and Runtime APIs on an operator port),
SuperNode authentication with one registered key per client, and the app names the key that
serves each client.

Layout under <run dir>/flower/: home/ (FLWR_HOME of the SuperLink and `flwr`), home/node-K/
(FLWR_HOME of SuperNode K), app/ (the bundle), logs/ (one log per process), processes.json;
closed: certs/ (ca.crt, server.pem, server.key) and keys/ (node-K, node-K.pub)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from fedtextgrad.config import ExperimentConfig
from fedtextgrad.errors import FedTextGradError
from fedtextgrad.federated.store import RunStore
from fedtextgrad.flower.bundle import write_app
from fedtextgrad.flower.identity import write_certificates, write_node_key
from fedtextgrad.record import Run

HOST = "127.0.0.1"
CONNECTION = "local"  # the SuperLink connection name in FLWR_HOME/config.toml
FLOWER_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.25",  # start ClientApps sooner (default 1 s)
}
STARTUP_TIMEOUT = 60.0
STOP_GRACE = 15.0
FLWR_TIMEOUT = 120.0  # one `flwr` command (it starts a Python process: slow on a busy machine)
_INSTALL_HINT = "install Flower with: pip install 'fedtextgrad[flower]'"


class LocalDeployment:
    def __init__(
        self,
        root: str | Path,
        clients: int,
        threads: int | None = None,
        *,
        closed: bool = False,
    ):
        self.root = Path(root).resolve()
        self.home = self.root / "home"
        self.logs = self.root / "logs"
        self.certs = self.root / "certs"
        self.keys = self.root / "keys"
        self.clients = clients
        self.closed = closed
        # llama.cpp threads spin at barriers: SuperNodes that train at once share the cores.
        self.threads = threads or max(1, (os.cpu_count() or 2) // clients)
        self.processes: dict[str, subprocess.Popen] = {}
        self.address = ""  # what SuperNodes dial
        self.operator = ""  # what `flwr` dials: the same when open, the operator port when closed
        self.nodes: dict[int, str] = {}  # closed: client -> the key fingerprint of its SuperNode
        self.node_ids: dict[str, int] = {}  # closed: SuperNode name -> its registered node id

    # -- start ------------------------------------------------------------------------------

    def start(self) -> None:
        for stale in (self.home, self.logs, self.certs, self.keys):
            shutil.rmtree(stale, ignore_errors=True)
        self.logs.mkdir(parents=True)
        port = _free_port()
        self.address = f"{HOST}:{port}"
        if self.closed:
            self._start_closed_superlink(port)
        else:
            self.operator = self.address
            self._spawn(
                "superlink",
                ["flower-superlink", "--insecure", "--host", HOST, "--port", str(port),
                 "--disable-runtime-dependency-installation"],
                self.home,
            )  # fmt: skip
            self._wait_healthy(f"http://{self.address}/health")
        self._write_flwr_config()
        for client in range(self.clients):
            if key := self.add_supernode(str(client), client):
                self.nodes[client] = key  # the app lets only this key serve the client

    def add_supernode(self, name: str, partition: int, *, register: bool = True) -> str | None:
        """Start SuperNode `name` holding `partition`. Closed: with a key of its own, which the
        operator registers unless `register` is false; returns its fingerprint (open: None)."""
        key = None
        args = ["--insecure"]
        if self.closed:
            path = self.keys / f"node-{name}"
            key = write_node_key(path)
            if register:
                self.node_ids[name] = self.register(Path(f"{path}.pub"))
            args = ["--root-certificates", str(self.certs / "ca.crt"),
                    "--auth-supernode-private-key", str(path)]  # fmt: skip
        self._spawn(
            f"supernode-{name}",
            ["flower-supernode", *args, "--superlink", self.address,
             "--host", HOST, "--port", str(_free_port()),
             "--node-config",
             f"partition-id={partition} threads={self.threads}"],
            self.home / f"node-{name}",
        )  # fmt: skip
        return key

    def register(self, public_key: Path) -> int:
        """Register a SuperNode's key as the operator (`flwr supernode register`): its node id."""
        out = self.flwr("supernode", "register", str(public_key), CONNECTION, "--format", "json")
        return int(json.loads(out)["node-id"])

    def _start_closed_superlink(self, port: int) -> None:
        write_certificates(self.certs)
        operator_port = _free_port()
        self.operator = f"{HOST}:{operator_port}"
        self._spawn(
            "superlink",
            [sys.executable, "-m", "fedtextgrad.flower", "superlink",
             "--operator-port", str(operator_port),
             "--ssl-ca-certfile", str(self.certs / "ca.crt"),
             "--ssl-certfile", str(self.certs / "server.pem"),
             "--ssl-keyfile", str(self.certs / "server.key"),
             "--enable-supernode-auth",
             "--host", HOST, "--port", str(port), "--disable-runtime-dependency-installation"],
            self.home,
        )  # fmt: skip
        self._wait_healthy(f"https://{self.address}/health")

    def _write_flwr_config(self) -> None:
        """The operator's `flwr` connection, in the SuperLink's FLWR_HOME."""
        security = (
            f'root-certificates = "{self.certs / "ca.crt"}"' if self.closed else "insecure = true"
        )
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "{self.operator}"\n{security}\n'
        )

    def flwr(self, *args: str, home: Path | None = None) -> str:
        """Run a `flwr` command as the operator (or with another FLWR_HOME); its stdout."""
        try:
            done = subprocess.run(
                [_executable("flwr"), *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=_environment(home or self.home),
                timeout=FLWR_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise FedTextGradError(
                f"`flwr {' '.join(args[:2])}` did not finish within {FLWR_TIMEOUT:g} s: see "
                f"{self.logs / 'superlink.log'}"
            ) from None
        if done.returncode != 0:
            raise FedTextGradError(f"`flwr {' '.join(args[:2])}` failed: {_last_words(done)}")
        return done.stdout

    def submit(self, app_dir: Path) -> subprocess.Popen:
        """`flwr run` with --stream returns when the run has finished."""
        return self._spawn(
            "flwr-run", ["flwr", "run", str(app_dir), CONNECTION, "--stream"], self.home
        )

    def _spawn(self, name: str, command: list[str], home: Path) -> subprocess.Popen:
        home.mkdir(parents=True, exist_ok=True)
        log = (self.logs / f"{name}.log").open("wb")
        try:
            process = subprocess.Popen(
                [_executable(command[0]), *command[1:]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_environment(home),
                start_new_session=True,  # its own process group: stop() kills its children too
            )
        finally:
            log.close()
        self.processes[name] = process
        (self.root / "processes.json").write_text(
            json.dumps({n: p.pid for n, p in self.processes.items()}, indent=2)
        )
        return process

    def _wait_healthy(self, url: str) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        verify = ssl.create_default_context(cafile=self.certs / "ca.crt") if self.closed else False
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                response = httpx.get(url, timeout=2.0, trust_env=False, verify=verify)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise FedTextGradError(
            f"the Flower SuperLink did not start within {STARTUP_TIMEOUT:g} s: see {self.logs}"
        )

    def check_alive(self, names: tuple[str, ...] = ("superlink",)) -> None:
        for name in names:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise FedTextGradError(
                    f"the Flower {name} exited with status {process.returncode}: "
                    f"see {self.logs / name}.log"
                )

    # -- stop -------------------------------------------------------------------------------

    def stop(self) -> list[int]:
        """Stop every process started here and all their descendants (the SuperLink starts its
        SuperExec in a session of its own); returns the pids still alive afterwards (none,
        unless the system refused to kill them)."""
        started = [p.pid for p in self.processes.values()]
        self._signal_groups(started, signal.SIGTERM)
        for process in self._tree():
            with contextlib.suppress(psutil.Error):
                process.terminate()
        if not self._wait_gone(STOP_GRACE):
            self._signal_groups(started, signal.SIGKILL)
            for process in self.leftovers():
                with contextlib.suppress(psutil.Error):
                    process.kill()
            self._wait_gone(5.0)
        return [p.pid for p in self.leftovers()]

    def leftovers(self) -> list[psutil.Process]:
        """Live processes in our process groups, below our processes, or running with one of
        our FLWR_HOMEs (every Flower process inherits it)."""
        groups = {p.pid for p in self.processes.values()}
        found = {p.pid: p for p in self._tree()}
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(process.pid) in groups or self._ours(process):
                    found[process.pid] = process
        return [p for p in found.values() if _alive(p)]

    def _tree(self) -> list[psutil.Process]:
        tree = []
        for started in self.processes.values():
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(started.pid)
                tree += [root, *root.children(recursive=True)]
        return tree

    def _ours(self, process: psutil.Process) -> bool:
        try:
            home = process.environ().get("FLWR_HOME", "")
        except psutil.Error:
            return False
        return home == str(self.home) or home.startswith(f"{self.home}{os.sep}")

    def _signal_groups(self, groups: list[int], sig: signal.Signals) -> None:
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)

    def _wait_gone(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for process in self.processes.values():
                process.poll()  # reap our direct children so they don't linger as zombies
            if not self.leftovers():
                return True
            time.sleep(0.2)
        return False


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def run_local(
    config: ExperimentConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    on_event: Callable[[dict], None] | None = None,
    node_wait: float = 300.0,
    closed: bool = False,
) -> Run:
    """Run (or resume) an experiment on a local Flower deployment (`closed`: with TLS, the
    closed SuperLink and one registered key per client); returns results.json."""
    out = Path(out_dir).resolve()
    store = RunStore(out)
    with store.owned():  # refuse now, in one line, if another run holds the directory
        pass  # (the ServerApp's process holds it during the run)
    events = EventTail(out / "events.jsonl")
    deployment = LocalDeployment(
        out / "flower", config.federation.clients, config.llm.threads, closed=closed
    )
    error = None
    starting = asyncio.ensure_future(asyncio.to_thread(deployment.start))
    try:
        await asyncio.shield(starting)  # on Ctrl-C, let it finish: stop() then sees every process
        app = write_app(
            deployment.root / "app",
            config,
            out,
            resume=resume,
            node_wait=node_wait,
            nodes=deployment.nodes or None,
        )
        run = deployment.submit(app)
        while True:
            finished = run.poll() is not None
            for event in events.read():
                if event["event"] == "error":
                    error = str(event.get("error", "the server failed: see events.jsonl"))
                if on_event:
                    on_event(event)
            if finished:
                break
            deployment.check_alive()
            await asyncio.sleep(0.5)
    finally:
        await asyncio.wait([starting])
        left = await asyncio.to_thread(deployment.stop)
    if left:
        raise FedTextGradError(
            f"Flower processes {left} did not stop: kill them (kill -9 {' '.join(map(str, left))})"
        )
    if error:
        raise FedTextGradError(error)
    results = store.load()
    if results is None or results.status != "complete":
        raise FedTextGradError(
            f"the Flower run ended before the experiment completed (flwr run exited with "
            f"{run.returncode}): see the logs in {deployment.logs}"
        )
    return results


class EventTail:
    """The events.jsonl lines appended since this object was made (whole lines only)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.decode().splitlines() if line.strip()]


def _last_words(done: subprocess.CompletedProcess) -> str:
    """The last line of text `flwr` printed (its errors come in a box of rules)."""
    lines = [line.strip(" │╭╮╰╯─") for line in f"{done.stdout}\n{done.stderr}".splitlines()]
    return next((line for line in reversed(lines) if line), "no output")


def _environment(home: Path) -> dict[str, str]:
    env = {**os.environ, **FLOWER_ENV, "FLWR_HOME": str(home)}
    # Flower starts its helpers (flower-superexec, flwr-serverapp, ...) from PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _executable(name: str) -> str:
    """Flower's commands from this interpreter's environment first (a venv need not be on PATH)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise FedTextGradError(f"'{name}' was not found: {_INSTALL_HINT}")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]
