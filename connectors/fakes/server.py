"""The shared harness for fake CRM servers: a werkzeug app on a loopback port,
a fault queue, paging faults, a timed outage, and a sliding-window rate limit.

A fake subclasses `FakeServer`, implements `dispatch(request) -> Response`, and
calls `self.window_count(key, ...)` where the real API would rate-limit. Where
it serves a page of a listing it calls `turn_page` (which page to serve) and
`next_page_token` (what to send on), so the paging faults work on every fake.
Tests drive it through `inject(...)` and `outage(...)` and read `self.log`; a
`VirtualClock` lets a test run minutes of outage and backoff in no real time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

PAGING_FAULTS = frozenset({"repeat", "loop"})
# What a load balancer sends while every backend is down: HTML, no Retry-After.
OUTAGE_PAGE = ("<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
               "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n"
               "</body>\r\n</html>\r\n")


@dataclass
class Fault:
    """One injected failure for the next `times` matching requests.

    kind: 'status' (send `status` with `body` and `headers`), 'reset' (close the
    connection mid-body), 'slow' (sleep `delay` seconds, then answer normally),
    'html' (a 200 with an HTML page instead of JSON).

    Paging faults strike a page of a listing, where the fake calls `turn_page`
    (`route` is matched against the target it names there). Both serve the page
    `back` pages before the requested one instead: 'repeat' with a fresh
    next-page token that leads on to the requested page (the same records twice,
    nothing lost); 'loop' with that page's own next-page token, which points at
    a page already read (back=1: at the requested page itself), so a client
    that follows tokens blindly goes round for as long as the fault lasts.
    """

    kind: str
    route: str = ""  # substring of the path; "" matches every request
    status: int = 500
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1
    back: int = 1  # paging faults: how many pages before the requested one the page served is


@dataclass(frozen=True)
class PageTurn:
    """A page request as the fake serves it (see `FakeServer.turn_page`)."""

    requested: str | None  # the position asked for (None: the listing's first page)
    position: str | None  # the position to serve from: earlier than `requested` under a paging fault
    repeat: bool  # a 'repeat' struck: send a fresh next-page token that leads to `requested`


@dataclass
class _Outage:
    seconds: float
    clock: Callable[[], float]
    route: str
    began: float | None = None


class VirtualClock:
    """Seconds that pass only when something sleeps on this clock.

    Give `now` to a fake (`outage(..., clock=clock.now)`) and `now` and `sleep`
    to a client (client options `clock` and `sleep`): the client's backoff and
    rate limiting then move time on, so a ten-minute outage takes milliseconds.
    """

    def __init__(self) -> None:
        self._now = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)


class FakeServer:
    """Base class: start/stop on 127.0.0.1:<free port>, fault injection, request log."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        self.log: list[tuple[float, str, str]] = []  # (time, method, path?query)
        # What the rate windows and the log count time on: a test may give it a VirtualClock's `now`,
        # so that the fake's windows pass only as the client sleeps. An outage keeps its own clock,
        # so that the clean syncs before and after it run on real time.
        self.clock: Callable[[], float] = time.monotonic
        self._windows: dict[str, deque[float]] = {}
        self._aliases: dict[str, str | None] = {}  # a 'repeat' fault's fresh token -> the position it leads to
        self._came_from: dict[str, str | None] = {}  # a next-page token sent -> the position of the page it came with
        self._outage: _Outage | None = None
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

    def take_fault(self, path: str, paging: bool = False) -> Fault | None:
        """The first request fault (or, with `paging`, paging fault) whose route is in `path`, counted down."""
        with self._lock:
            for fault in self.faults:
                if (fault.kind in PAGING_FAULTS) == paging and fault.route in path:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def outage(self, seconds: float, clock: Callable[[], float] = time.monotonic, route: str = "") -> None:
        """Go down for `seconds` of `clock`, from the first request whose target contains `route` on.

        Meanwhile every request gets a load balancer's 503 page: an outage, not
        one failed request, so only a client that keeps retrying long enough
        gets through.
        """
        with self._lock:
            self._outage = _Outage(seconds, clock, route)

    # -- paging --------------------------------------------------------------
    def resolve_page_token(self, token: str | None) -> str | None:
        """The position a page token stands for (a 'repeat' fault's fresh token leads to a real one)."""
        with self._lock:
            return self._aliases.get(token, token) if token is not None else None

    def turn_page(self, target: str, token: str | None) -> PageTurn:
        """Which page to serve for a request of a listing's page by `token` (None: the first page).

        Normally the one asked for; a paging fault whose route is in `target`
        serves the page `back` pages before it (as far back as this server has
        served the listing). Serve from `.position`, then send on
        `next_page_token(turn, the page's own next token)`.
        """
        requested = self.resolve_page_token(token)
        with self._lock:
            fault = self.take_fault(target, paging=True)
            position = requested
            for _ in range(fault.back if fault else 0):
                if position not in self._came_from:
                    break
                position = self._came_from[position]
        return PageTurn(requested, position, fault is not None and fault.kind == "repeat")

    def next_page_token(self, turn: PageTurn, token: str | None) -> str | None:
        """The next-page token to send with the page served: `token`, or after a 'repeat' a fresh one."""
        with self._lock:
            if token is not None:
                self._came_from.setdefault(token, turn.position)
            if not turn.repeat:
                return token
            fresh = f"again-{uuid.uuid4().hex[:12]}"
            self._aliases[fresh] = turn.requested
            return fresh

    def window_count(self, key: str, limit: int, period: float) -> tuple[bool, int]:
        """Record a request in `key`'s sliding window; return (over_limit, remaining)."""
        now = self.clock()
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
        target = request_target(request)
        with self._lock:
            self.log.append((self.clock(), request.method, target))
        if self._down(target):
            return Response(OUTAGE_PAGE, 503, content_type="text/html")(environ, start_response)
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

    def _down(self, target: str) -> bool:
        with self._lock:
            outage = self._outage
            if outage is None:
                return False
            now = outage.clock()
            if outage.began is None:
                if outage.route not in target:
                    return False
                outage.began = now
            if now - outage.began < outage.seconds:
                return True
            self._outage = None
            return False


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: tests and the live demo read `FakeServer.log` instead."""

    def log_request(self, *args: object, **kwargs: object) -> None:
        pass


def request_target(request: Request) -> str:
    """Path and query, as faults' routes are matched against it and `FakeServer.log` records it."""
    return request.full_path.rstrip("?")


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload), status, headers=headers or {}, content_type="application/json")


def _reset_mid_body(start_response):  # type: ignore[no-untyped-def]
    """Promise a long body, send a little of it, then drop the connection."""
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "100000")])

    def body() -> Iterator[bytes]:
        yield b'{"results": ['
        raise ConnectionResetError("fault: connection reset mid-body")

    return body()
