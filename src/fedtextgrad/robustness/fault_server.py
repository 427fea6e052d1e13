"""An OpenAI-compatible chat endpoint on 127.0.0.1 that injects faults on demand.

It is the real thing over real sockets (stdlib `http.server` in a thread), so fault drills and
tests exercise the same HTTP client, timeouts and error mapping as a remote endpoint would::

    with FaultServer(lambda messages: "Answer: 3") as server:
        server.inject("503", "429", "reset")      # the next three requests fail, in this order
        llm = open_engine("openai:m", LLMSettings(base_url=server.url, timeout=2))

Requests with no queued fault (and no `always` fault) are answered by `responder(messages)`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Responder = Callable[[list[dict]], str]

_ERRORS = {  # fault -> (status, OpenAI-style error body)
    "500": (500, "server_error", "injected internal error", None),
    "502": (502, "server_error", "injected bad gateway", None),
    "503": (503, "server_error", "injected overload", None),
    "429": (429, "rate_limit_error", "injected rate limit", "rate_limit_exceeded"),
    "quota": (429, "insufficient_quota", "You exceeded your current quota", "insufficient_quota"),
    "401": (401, "invalid_request_error", "Incorrect API key provided", "invalid_api_key"),
    "404": (404, "invalid_request_error", "The model does not exist", "model_not_found"),
    "408": (408, "timeout", "request timeout", None),
    "409": (409, "conflict", "a concurrent request is being processed", None),
    "400_context": (
        400,
        "invalid_request_error",
        "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens.",
        "context_length_exceeded",
    ),
}
# Faults that break the transport or the reply itself rather than answering with an error status.
_BROKEN = ("reset", "hang", "truncated", "invalid_json", "html", "empty_body", "empty_reply")
_BROKEN += ("no_choices", "echo_key")  # echo_key: a 400 that quotes the caller's API key
# Replies that are odd but valid: the reply is used as it is.
ODD = ("content_parts", "null_usage", "echo_key_reply")
FAULTS = (*_ERRORS, *_BROKEN, *ODD)
TRANSIENT = ("500", "502", "503", "429", "408", "409", "reset", "hang", "truncated")
TRANSIENT += ("invalid_json", "html")
TRANSIENT += ("empty_body", "empty_reply", "no_choices")
PERMANENT = ("401", "404", "400_context", "quota", "echo_key")


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    time: float
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict | None
    fault: str | None
    connection: int = 0  # the client's port: requests on one connection share it


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a fan-out connects at once, as to a real endpoint (default 5)


class FaultServer:
    def __init__(
        self,
        responder: Responder | None = None,
        *,
        retry_after: float = 1.0,
        hang_seconds: float = 60.0,
    ):
        self.responder = responder or (lambda messages: "Answer: 0")
        self.retry_after = retry_after
        self.hang_seconds = hang_seconds
        self.always: str | None = None  # a fault for every request (an endpoint that is down)
        self.requests: list[Seen] = []
        self._queue: deque[str] = deque()
        self._every: tuple[int, tuple[str, ...], int | None] | None = None
        self._count = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------------

    def inject(self, *faults: str) -> None:
        """Queue faults: each one answers exactly one upcoming request, in order."""
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}: use {', '.join(FAULTS)}")
        with self._lock:
            self._queue.extend(faults)

    def every(self, n: int, *faults: str, times: int | None = None) -> None:
        """Fail every n-th request, cycling through `faults` (a flaky endpoint under load),
        `times` times in all (None: forever)."""
        unknown = [f for f in faults if f not in FAULTS]
        if unknown or not faults:
            raise ValueError(f"unknown faults {unknown}: use {', '.join(FAULTS)}")
        with self._lock:
            self._every, self._count = (n, faults, times), 0  # counts from now on

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FaultServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _HTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_fault(self) -> str | None:
        with self._lock:
            self._count += 1
            if self._queue:
                return self._queue.popleft()
            if self._every is not None and self._count % self._every[0] == 0:
                n, faults, times = self._every
                served = self._count // n - 1
                if times is None or served < times:
                    return faults[served % len(faults)]
            return self.always


class _Handler(BaseHTTPRequestHandler):
    owner: FaultServer
    protocol_version = (
        "HTTP/1.1"  # keep-alive, as real endpoints: stale connections are a fault too
    )

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests read self.requests
        return None

    def do_GET(self) -> None:
        self._json(200, {"object": "list", "data": [{"id": "fault-server", "object": "model"}]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        fault = self.owner._next_fault()
        self.owner.requests.append(
            Seen(
                time.monotonic(),
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                body,
                fault,
                self.client_address[1],
            )
        )
        if fault in _ERRORS:
            status, kind, message, code = _ERRORS[fault]
            headers = {"Retry-After": f"{self.owner.retry_after:g}"} if status == 429 else {}
            error = {"message": message, "type": kind, "code": code}
            return self._json(status, {"error": error}, headers)
        if fault == "echo_key":  # as careless proxies do: the key comes back in the message
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            error = {"message": f"key {key} may not use this model", "code": "bad_key"}
            return self._json(400, {"error": error})
        if fault == "reset":
            return self._reset()
        if fault == "hang":
            self.owner._stopping.wait(self.owner.hang_seconds)
            return self._reset()
        if not self.path.rstrip("/").endswith("/chat/completions") or body is None:
            return self._json(404, {"error": {"message": f"no route {self.path}", "code": None}})
        text = "" if fault == "empty_reply" else self.owner.responder(body.get("messages", []))
        reply = _completion(body, text)
        if fault == "no_choices":
            reply["choices"] = []
        elif fault == "content_parts":  # as some gateways send multimodal-style content
            reply["choices"][0]["message"]["content"] = [{"type": "text", "text": text}]
        elif fault == "null_usage":
            reply["usage"] = {"prompt_tokens": None, "completion_tokens": None}
        elif fault == "echo_key_reply":  # a compromised or careless endpoint quoting the key
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            reply["choices"][0]["message"]["content"] = f"{text}\n(debug: key {key[:-1]})"
        payload = json.dumps(reply).encode()
        if fault == "truncated":
            payload = payload[: len(payload) // 2]
        elif fault in ("invalid_json", "html"):
            payload = b"<html><body>502 Bad Gateway</body></html>"
        elif fault == "empty_body":
            payload = b""
        kind = "text/html" if fault == "html" else "application/json"
        self._send(200, payload, content_type=kind)

    def _json(self, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _send(
        self,
        status: int,
        payload: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up first (it timed out): nothing to answer
            self.close_connection = True

    def _reset(self) -> None:
        """Close with a TCP RST instead of a reply (SO_LINGER 0), as a crashed proxy does."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the socket was reset on purpose
            super().finish()


def _completion(request: dict, text: str) -> dict:
    prompt_words = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    return {
        "id": "chatcmpl-fault-server",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fault-server"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_words + len(text.split()),
        },
    }


def main() -> None:
    """`python -m fedtextgrad.robustness.fault_server 503 429 reset`: serve until Ctrl-C, failing
    the first requests with the faults named (a manual fault drill for a real run)."""
    import sys

    with FaultServer(lambda messages: "Answer: 0") as server:
        try:
            server.inject(*sys.argv[1:])
        except ValueError as error:
            sys.exit(f"error: {error}")
        print(f"OpenAI-compatible fault server at {server.url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
