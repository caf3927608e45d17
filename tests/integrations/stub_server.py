"""An in-process HTTP stub of another service for tests: a real ThreadingHTTPServer on
127.0.0.1 (random port) speaking JSON, configurable per route (answer, delay, first N
failures, or a handler function), every request recorded, and `stop()` for a service that is
gone (connection refused).

    with running_stub() as stub:
        stub.route("GET", "/api/v1/clinics/c1", body={"id": "c1", ...})
        stub.route("GET", "/api/v1/clinics/c1/services", status=503)       # always failing
        stub.route("GET", "/api/v1/users/u1/pets", body=[], fail_times=2)  # 2 x 503, then ok
        stub.route("GET", "/slow", body={}, delay=1.2)                      # past a timeout
        stub.route("POST", "/api/v1/payments/create", handler=lambda req: (201, {...}))
        settings.CLINIC_SERVICE_URL = stub.url
        ...
        assert stub.count("GET", "/api/v1/clinics/c1") == 1
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Handler = Callable[[RecordedRequest], tuple[int, Any]]


@dataclass
class Route:
    status: int = 200
    body: Any = None
    delay: float = 0.0  # seconds to sleep before answering (every answer, failures included)
    fail_times: int = 0  # answer `fail_status` this many times first
    fail_status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    handler: Handler | None = None  # computes (status, body) from the request instead
    calls: int = 0


class StubServer:
    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Route] = {}
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._server.daemon_threads = True
        self._server.stub = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StubServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open (keep-alive) connections: later calls get connection
        refused, as from a service that is gone."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def route(self, method: str, path: str, **options: Any) -> Route:
        """Set (or replace) the answer to `method path`; unknown routes answer 404."""
        route = Route(**options)
        with self._lock:
            self._routes[(method.upper(), path)] = route
        return route

    def count(self, method: str, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.method == method.upper() and r.path == path)

    def _answer(self, request: RecordedRequest) -> tuple[int, Any, dict[str, str], float]:
        with self._lock:
            self.requests.append(request)
            route = self._routes.get((request.method, request.path))
            if route is None:
                return 404, {"detail": "not found"}, {}, 0.0
            route.calls += 1
            failing = route.calls <= route.fail_times
        if failing:
            return route.fail_status, {"detail": "stub failure"}, {}, route.delay
        if route.handler is not None:
            status, body = route.handler(request)
            return status, body, dict(route.headers), route.delay
        return route.status, route.body, dict(route.headers), route.delay


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms wait for a delayed ACK before the body

    def setup(self) -> None:
        super().setup()
        stub = self.server.stub  # type: ignore[attr-defined]
        with stub._lock:
            stub._connections.add(self.connection)

    def finish(self) -> None:
        stub = self.server.stub  # type: ignore[attr-defined]
        with stub._lock:
            stub._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        status, answer, headers, delay = self.server.stub._answer(request)  # type: ignore[attr-defined]
        if delay:
            time.sleep(delay)
        if isinstance(answer, bytes):  # sent as it is (an answer json.dumps cannot make)
            payload = answer
        else:
            payload = b"" if answer is None and status == 204 else json.dumps(answer).encode()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return


@contextlib.contextmanager
def running_stub() -> Iterator[StubServer]:
    stub = StubServer().start()
    try:
        yield stub
    finally:
        stub.stop()


@pytest.fixture
def stub_server() -> Iterator[StubServer]:
    with running_stub() as stub:
        yield stub
