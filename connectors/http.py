"""One HTTP client for every CRM API: timeouts, retries, rate limits, redaction.

Every connector goes through `ApiClient`, so the hard-won rules live in one
place: connect/read timeouts on every call; retries with exponential backoff
and jitter on 429, 5xx, connection resets and truncated bodies
(`ChunkedEncodingError` is not a `ConnectionError`), honouring `Retry-After` in
seconds or as an HTTP date; a client-side limiter that stays under the
vendor's budget instead of hammering into 429s, and that takes the vendor's
word (its remaining-requests header, or a 429) when the vendor counts more
requests than we do (another process or app on the same account); quota
exhaustion that stops the sync (no point retrying a daily limit); a guard that
stops a listing whose paging goes round in a circle; and secrets scrubbed from
every message that can reach a log, an exception or Dagster metadata.

Time is injectable (`clock`, `sleep`): retries and limiters then wait on a
test's virtual clock, so a ten-minute outage is tested in milliseconds.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class ApiError(RuntimeError):
    """A request failed for good; the message is safe to log (secrets removed)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class QuotaExhausted(ApiError):
    """The vendor's daily budget is spent: stop, keep the cursor, try again tomorrow."""


class AuthenticationFailed(ApiError):
    """The credentials were refused (after one refresh, where the API has one)."""


class _Retryable(Exception):
    def __init__(self, response: requests.Response):
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class PagingGuard:
    """Stops one listing whose paging goes round in a circle.

    A next-page token the listing has already had (pointing at the page itself,
    or back at a page already read), or a numeric position (a resume id, an
    offset) that does not move past the last one, would have a connector fetch
    the same pages forever. Either raises ApiError, so the sync stops like any
    lasting fault: the pages committed so far and their cursor stay, and the
    next run resumes from there. One guard per listing, fed every token or
    position the listing starts from or is sent.
    """

    def __init__(self, what: str, redact: Callable[[str], str]):
        self._what = what  # "<vendor> <path>", for the message
        self._redact = redact
        self._tokens: set[str] = set()
        self._position: int | None = None

    def token(self, value: str) -> str:
        """`value`, a next-page token; ApiError if this listing has had it before."""
        if value in self._tokens:
            shown = value if len(value) <= 80 else f"{value[:77]}..."
            raise self._loop(f"the API sent paging token '{shown}' again")
        self._tokens.add(value)
        return value

    def position(self, value: int) -> int:
        """`value`, the numeric position the next page starts from; ApiError unless it is past the last one."""
        if self._position is not None and value <= self._position:
            moved = "again" if value == self._position else f"after {self._position} (backwards)"
            raise self._loop(f"the API sent paging position {value} {moved}")
        self._position = value
        return value

    def _loop(self, what: str) -> ApiError:
        return ApiError(self._redact(f"{self._what}: {what} (a paging loop); stopping with what was committed"))


class RateLimiter:
    """A sliding-window limiter: at most `max_calls` requests in any `period` seconds of `clock`."""

    def __init__(self, max_calls: int, period: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.max_calls = max_calls
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self._calls: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for a free slot; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._expire(now)
                if len(self._calls) < self.max_calls:
                    self._calls.append(now)
                    return waited
                pause = self.period - (now - self._calls[0])
            self._sleep(pause)
            waited += pause

    def at_most(self, free: int) -> None:
        """Allow at most `free` more requests until the window moves on: the vendor said so.

        Our count only knows this process's requests; an earlier run, a second
        process or another app on the same account spends the same budget. The
        vendor's remaining-requests header, or a 429 (none left), tells us; the
        requests we cannot see are counted as made now, so a rolling window is
        certain to have room again one period later. A short exponential backoff
        (or HubSpot's `Retry-After: 1` on a 10-second window) is not.
        """
        with self._lock:
            now = self._clock()
            self._expire(now)
            unseen = self.max_calls - len(self._calls) - max(free, 0)
            self._calls.extend([now] * max(unseen, 0))

    def _expire(self, now: float) -> None:
        """Forget the requests that have left the window (called under the lock)."""
        while self._calls and now - self._calls[0] >= self.period:
            self._calls.popleft()


def header_count(response: requests.Response, name: str) -> int | None:
    """A vendor's count header (requests remaining, say) as a number; None when absent or malformed."""
    value = response.headers.get(name, "").strip()
    return int(value) if value.isdigit() else None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: an integer, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (now if now is not None else time.time()))


@dataclass
class RequestStats:
    requests: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0  # waited for a rate limiter's slot
    backoff_seconds: float = 0.0  # waited between attempts of a retried request
    statuses: dict[int, int] = field(default_factory=dict)


class Redactor:
    """Replaces every known secret in a text; secrets are added as they are obtained."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets = {s for s in secrets if s}

    def add(self, secret: str | None) -> None:
        if secret:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


class ApiClient:
    """A `requests.Session` with the retry, rate-limit and redaction policy above.

    `auth_headers` is called for every attempt, so a refreshed token is used at
    once. `classify` lets a connector map a vendor's error body onto policy:
    return "quota" (stop cleanly), "auth" (refresh once, then fail), "retry"
    or None (let the status decide). `remaining` reads the vendor's count of
    requests left in the window of the limiter that gated a request (its
    rate-limit header), so other clients' requests are waited for, not run
    into. `clock` and `sleep` time the backoff, the
    limiters made by `rate_limiter` and a connector's pollers, so a test's
    virtual clock runs them all.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth_headers: Callable[[], dict[str, str]],
        limiter: RateLimiter | None = None,
        redactor: Redactor | None = None,
        classify: Callable[[requests.Response], str | None] | None = None,
        remaining: Callable[[requests.Response], int | None] | None = None,
        refresh: Callable[[], None] | None = None,
        timeout: tuple[float, float] = (5.0, 60.0),
        max_attempts: int = 6,
        backoff_max: float = 60.0,
        backoff_multiplier: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.stats = RequestStats()
        self.redact = redactor or Redactor()
        self.clock = clock
        self.sleep = sleep
        self.limiter = limiter  # gates every request of this client (a connector may set it after construction)
        self._auth_headers = auth_headers
        self._classify = classify or (lambda _response: None)
        self._remaining = remaining or (lambda _response: None)
        self._refresh = refresh
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._backoff = wait_random_exponential(multiplier=backoff_multiplier, max=backoff_max)
        self._backoff_max = backoff_max

    def close(self) -> None:
        self.session.close()

    def rate_limiter(self, max_calls: int, period: float) -> RateLimiter:
        """A sliding-window limiter on this client's clock (a test's virtual clock drives it too)."""
        return RateLimiter(max_calls, period, clock=self.clock, sleep=self.sleep)

    def url(self, path_or_url: str) -> str:
        return path_or_url if path_or_url.startswith("http") else f"{self.base_url}{path_or_url}"

    def request(self, method: str, path_or_url: str, limiter: RateLimiter | None = None,
                **kwargs: object) -> requests.Response:
        """Send one logical request (retried as needed); raise ApiError when it cannot succeed."""
        refreshed = False
        retrying = Retrying(
            sleep=self.sleep,
            retry=retry_if_exception_type((_Retryable, *TRANSIENT_ERRORS)),
            stop=stop_after_attempt(self._max_attempts),
            wait=self._wait,
            before_sleep=self._count_retry,
            reraise=True,
        )
        while True:
            try:
                response = retrying(self._attempt, method, path_or_url, limiter, kwargs)
            except _Retryable as exc:
                raise self._error(exc.response, f"gave up after {self._max_attempts} attempts") from None
            except TRANSIENT_ERRORS as exc:
                raise ApiError(self.redact(
                    f"{method} {self.url(path_or_url)}: {type(exc).__name__} after {self._max_attempts} attempts"
                )) from None
            verdict = self._classify(response)
            if verdict == "quota":
                raise self._error(response, "quota exhausted", QuotaExhausted)
            if verdict == "auth" or response.status_code == 401:
                if self._refresh is not None and not refreshed:
                    refreshed = True
                    self._refresh()
                    continue
                raise self._error(response, "authentication failed", AuthenticationFailed)
            if response.status_code >= 400:
                raise self._error(response, "request failed")
            return response

    def get_json(self, path_or_url: str, limiter: RateLimiter | None = None, **kwargs: object) -> object:
        return self._json(self.request("GET", path_or_url, limiter, **kwargs))

    def post_json(self, path_or_url: str, limiter: RateLimiter | None = None, **kwargs: object) -> object:
        return self._json(self.request("POST", path_or_url, limiter, **kwargs))

    def _json(self, response: requests.Response) -> object:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "unknown content type")
            raise ApiError(self.redact(
                f"{response.request.method} {response.url}: expected JSON, got {kind} (HTTP {response.status_code})"
            ), status=response.status_code) from None

    def _attempt(self, method: str, path_or_url: str, limiter: RateLimiter | None,
                 kwargs: dict) -> requests.Response:
        for gate in (self.limiter, limiter):
            if gate is not None:
                self.stats.throttled_seconds += gate.acquire()
        options = {k: v for k, v in kwargs.items() if k != "headers"}
        headers = {**kwargs.get("headers", {}), **self._auth_headers()}
        self.stats.requests += 1
        response = self.session.request(
            method, self.url(path_or_url), headers=headers, timeout=self._timeout, **options
        )
        self.stats.statuses[response.status_code] = self.stats.statuses.get(response.status_code, 0) + 1
        verdict = self._classify(response)
        if verdict in ("quota", "auth"):
            return response
        gate = limiter if limiter is not None else self.limiter
        if isinstance(gate, RateLimiter):
            left = 0 if response.status_code == 429 else self._remaining(response)
            if left is not None:
                gate.at_most(left)
        if response.status_code in RETRY_STATUSES or verdict == "retry":
            raise _Retryable(response)
        if response.status_code < 400:
            # Read the whole body now, so a reset mid-body is retried like any transient error.
            _ = response.content
        return response

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable):
            hinted = retry_after_seconds(exc.response.headers.get("Retry-After"))
            if hinted is not None:
                return min(hinted, self._backoff_max)
        return self._backoff(state)

    def _count_retry(self, state: RetryCallState) -> None:
        self.stats.retries += 1
        self.stats.backoff_seconds += state.upcoming_sleep

    def _error(self, response: requests.Response, what: str, kind: type[ApiError] = ApiError) -> ApiError:
        body = " ".join(response.text[:1000].split())  # one line, even from a CRLF HTML page
        message = f"{response.request.method} {response.url}: {what}: HTTP {response.status_code} {body}"
        return kind(self.redact(message), status=response.status_code)
