"""The shared harness for fake CRM servers: a werkzeug app on a loopback port,
a fault queue, and a sliding-window rate limit with the vendor's headers.

A fake subclasses `FakeServer`, implements `dispatch(request) -> Response`, and
calls `self.take_fault(route)` / `self.rate_limited(key)` where the real API
would fail. Tests drive it through `inject(...)` and read `self.log`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Fault:
    """One injected failure for the next matching request.

    kind: 'status' (send `status` with `body` and `headers`), 'reset' (close the
    connection mid-body), 'slow' (sleep `delay` seconds, then answer normally),
    'html' (a 200 with an HTML page instead of JSON).
    """

    kind: str
    route: str = ""  # substring of the path; "" matches every request
    status: int = 500
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1


class FakeServer:
    """Base class: start/stop on 127.0.0.1:<free port>, fault injection, request log."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.log: list[tuple[float, str, str]] = []  # (time, method, path?query)
        self._windows: dict[str, deque[float]] = {}
        self._lock = threading.RLock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeServer:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        server = self._server
        # A short poll interval makes shutdown (once per test) quick.
        self._thread = threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @contextmanager
    def running(self) -> Iterator[FakeServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    # -- faults and limits -------------------------------------------------
    def inject(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.route in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def window_count(self, key: str, limit: int, period: float) -> tuple[bool, int]:
        """Record a request in `key`'s sliding window; return (over_limit, remaining)."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.setdefault(key, deque())
            while window and now - window[0] >= period:
                window.popleft()
            if len(window) >= limit:
                return True, 0
            window.append(now)
            return False, limit - len(window)

    def requests_to(self, fragment: str) -> int:
        return sum(1 for _, _, path in self.log if fragment in path)

    # -- WSGI --------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def _wsgi(self, environ: dict, start_response):  # type: ignore[no-untyped-def]
        request = Request(environ)
        target = request.full_path.rstrip("?")
        with self._lock:
            self.log.append((time.monotonic(), request.method, target))
        fault = self.take_fault(target)
        if fault is not None:
            if fault.kind == "slow":
                time.sleep(fault.delay)
            elif fault.kind == "reset":
                return _reset_mid_body(start_response)
            elif fault.kind == "html":
                return Response("<html><body>Maintenance</body></html>", 200,
                                content_type="text/html")(environ, start_response)
            else:
                return Response(fault.body, fault.status, headers=fault.headers,
                                content_type="application/json")(environ, start_response)
        return self.dispatch(request)(environ, start_response)


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: tests and the live demo read `FakeServer.log` instead."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status, headers=headers or {}, content_type="application/json")


def _reset_mid_body(start_response):  # type: ignore[no-untyped-def]
    """Promise a long body, send a little of it, then drop the connection."""
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "100000")])

    def body() -> Iterator[bytes]:
        yield b'{"results": ['
        raise ConnectionResetError("fault: connection reset mid-body")

    return body()
