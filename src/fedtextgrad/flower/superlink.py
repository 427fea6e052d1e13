"""A closed SuperLink: Flower's own SuperLink, with its APIs split over two listeners.

Flower 1.42 serves the Fleet API (SuperNodes), the Control API (`flwr run/list/log/stop`,
`flwr supernode register/list`) and the Runtime API (the SuperExec and the ServerApp) from one
FastAPI app on one port (flwr/superlink/main.py `create_app`, started by
flwr/superlink/cli/flower_superlink.py `_run_superlink_http_api`). Its open-source build lets
every caller of that port use the Control API (flwr/superlink/config_loader.py
`load_control_authn_plugin`: the NoOp plugin unless Flower Enterprise's OIDC is installed), and
in subprocess isolation hands a pending ServerApp task to whoever asks first
(`/v1/runtime/acquire-task`, flwr/supercore/dependencies/superexec.py: no check without a
SuperExec secret). So the same app is served twice:

- the public listener (`--host/--port`, what SuperNodes dial) answers `/v1/fleet/*` and `/health`
  only;
- the operator listener (127.0.0.1:`--operator-port`) answers everything: `flwr` from the
  SuperLink's host (or an SSH tunnel to it) and the SuperExec that starts the ServerApp.

Everything else is Flower's: its argument parsing and checks, its app, its SuperExec."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import uvicorn

from fedtextgrad.errors import ConfigError, FedTextGradError
from fedtextgrad.flower.identity import names_host

OPERATOR_HOST = "127.0.0.1"
DEFAULT_OPERATOR_PORT = 9093
PUBLIC_PREFIXES = ("/v1/fleet/",)  # the SuperNodes' API (flwr/supernode/fleet_http_client.py)
PUBLIC_PATHS = frozenset({"/health"})

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def is_public(path: str) -> bool:
    """Whether the public listener serves `path` (Flower routes by the same decoded path)."""
    return path in PUBLIC_PATHS or (path.startswith(PUBLIC_PREFIXES) and "/.." not in path)


def fleet_only(app: ASGIApp) -> ASGIApp:
    """`app` with every request outside the Fleet API refused (HTTP 403)."""

    async def guarded(scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and is_public(scope["path"]):
            await app(scope, receive, send)
        elif scope["type"] == "http":
            await _refuse(send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    return guarded


REFUSAL = json.dumps(
    {"detail": "this address serves only the Fleet API: run flwr on the SuperLink's host"}
).encode()


async def _refuse(send: Callable) -> None:
    """HTTP 403 with a `detail` that the flwr CLI prints as its error."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(REFUSAL))]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": REFUSAL})


def serve(flower_args: Sequence[str], operator_port: int = DEFAULT_OPERATOR_PORT) -> None:
    """Run a closed SuperLink until SIGINT/SIGTERM; `flower_args` are flower-superlink's."""
    config = flower_config(flower_args)
    require_closed(config)
    public = _listen(config.host, config.port)
    operator = _listen(OPERATOR_HOST, operator_port)
    # Flower's SuperExec dials the SuperLink at config.host:config.port: the operator listener.
    config.host, config.port = OPERATOR_HOST, operator_port
    asyncio.run(_serve(config, public, operator))


def flower_config(flower_args: Sequence[str]):
    """flower-superlink's own parsing of its arguments (its checks and messages included)."""
    flower = _flower_superlink()
    saved = sys.argv
    sys.argv = ["flower-superlink", *flower_args]
    try:
        return flower._parse_superlink_lifespan_config()
    finally:
        sys.argv = saved


def require_closed(config) -> None:
    """TLS and SuperNode authentication are what make the public listener closed."""
    if config.certificates is None:
        raise ConfigError(
            "a closed SuperLink needs TLS: give --ssl-ca-certfile, --ssl-certfile and "
            "--ssl-keyfile instead of --insecure (docs/flower.md, Across machines)"
        )
    if not config.enable_supernode_auth:
        raise ConfigError(
            "a closed SuperLink needs --enable-supernode-auth: without it any SuperNode that "
            "trusts the CA may join; add it and register each SuperNode's key"
        )
    if not names_host(Path(config.ssl_certfile).read_bytes(), OPERATOR_HOST):
        raise ConfigError(
            f"{config.ssl_certfile} does not name {OPERATOR_HOST} in its subjectAltName, which "
            f"the SuperExec and the operator's flwr dial: add IP:{OPERATOR_HOST} and sign it again"
        )


async def _serve(config, public: socket.socket, operator: socket.socket) -> None:
    from flwr.supercore.http_logging import get_uvicorn_log_config
    from flwr.supercore.logger import console_handler, log
    from flwr.superlink.main import create_app

    app = create_app(config, _flower_superlink().SuperLinkLifespan)
    options = {
        "ssl_keyfile": config.ssl_keyfile,
        "ssl_certfile": config.ssl_certfile,
        "log_config": get_uvicorn_log_config(console_handler.level),
        "access_log": True,
    }
    # Flower's lifespan (the SuperExec, its servers) runs once: with the operator listener.
    servers = [
        _Server(uvicorn.Config(app, lifespan="on", **options)),
        _Server(uvicorn.Config(fleet_only(app), lifespan="off", **options)),
    ]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop, servers)
    log(
        logging.INFO,
        "Closed SuperLink: Fleet API on %s:%s; all APIs for the operator on %s:%s only",
        *public.getsockname()[:2],
        *operator.getsockname()[:2],
    )
    tasks = [
        asyncio.ensure_future(servers[0].serve([operator])),
        asyncio.ensure_future(servers[1].serve([public])),
    ]
    # One listener ending (a signal, a failed startup) ends the other.
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    _stop(servers)
    await asyncio.gather(*tasks)
    if not all(server.started for server in servers):
        raise ConfigError("the SuperLink failed to start: see its log above")


def _flower_superlink() -> ModuleType:
    """flwr/superlink/cli/flower_superlink.py (its package exports a function of that name)."""
    return importlib.import_module("flwr.superlink.cli.flower_superlink")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # `_serve` stops both listeners on one signal


def _stop(servers: Sequence[uvicorn.Server]) -> None:
    for server in servers:
        server.should_exit = True


def _listen(host: str, port: int) -> socket.socket:
    """Bind now, so that a taken port is one line before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise FedTextGradError(
            f"cannot listen on {host}:{port} ({error.strerror}): stop what uses it or choose "
            "another port"
        ) from None
    return sock
