"""HTTP, auth, quota and paging for Salesforce: everything between a SOQL string and its records.

Retries, backoff and redaction come from the shared `ApiClient`; this module
adds what is Salesforce's own (CRM_APIS.md §2, §5):
- errors are JSON arrays of {message, errorCode}; the code rides on ApiError
  so callers can react to QUERY_TIMEOUT or FeatureNotEnabled;
- 403 REQUEST_LIMIT_EXCEEDED is the daily quota (stop, keep the cursor),
  except the ConcurrentPerOrgLongTxn variant, which passes and is retried;
- `Sforce-Limit-Info: api-usage=N/M` on every response feeds a guard that
  stops the run before it eats more than its share of the org's daily budget;
- an OAuth refresh-token grant gives the token and the instance URL, and runs
  again once on 401 INVALID_SESSION_ID;
- queryAll (deleted and merged rows too) is followed through nextRecordsUrl
  until done; QUERY_TIMEOUT halves the SystemModstamp window and retries;
- Bulk API 2.0 runs the same SOQL as a queryAll job, read back as CSV with
  Sforce-Locator until "null", and falls back to REST where Bulk is off;
- a nextRecordsUrl or Sforce-Locator the listing has already followed is a
  paging loop (`PagingGuard`): the sync stops instead of reading forever.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import requests

from connectors.contract import require_tls, utc_iso
from connectors.http import (
    ApiClient,
    ApiError,
    AuthenticationFailed,
    PagingGuard,
    QuotaExhausted,
    Redactor,
    RequestStats,
)
from connectors.salesforce.settings import (
    BULK_JOBS,
    BULK_MAX_RECORDS,
    BULK_NOT_ENABLED,
    BULK_POLL_FIRST,
    BULK_POLL_MAX,
    BULK_TIMEOUT,
    HISTORY_FIELDS,
    HISTORY_IDS_PER_QUERY,
    MIN_QUERY_WINDOW,
    QUERY_RESOURCE,
    QUOTA_SHARE_PER_RUN,
    QUOTA_SHARE_TOTAL,
    TOKEN_PATH,
)

log = logging.getLogger(__name__)
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")


# -- time ------------------------------------------------------------------------------------------
def parse_stamp(text: str) -> dt.datetime:
    """A Salesforce or ISO datetime ('...000+0000', '...Z') as an aware UTC datetime."""
    moment = dt.datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def iso_utc(text: str) -> str:
    """A Salesforce datetime (REST '+0000', Bulk 'Z', or epoch milliseconds) as ISO Z; a date stays a date."""
    if text.isdigit():
        return utc_iso(dt.datetime.fromtimestamp(int(text) / 1000, dt.UTC))
    if len(text) == 10:
        return text
    return utc_iso(parse_stamp(text))


def whole_seconds(moment: dt.datetime) -> dt.datetime:
    """SOQL datetime literals have no fractions: bounds are floored to the second."""
    return moment.replace(microsecond=0)


# -- errors and quota --------------------------------------------------------------------------------
def vendor_errors(response: requests.Response) -> list[tuple[str, str]]:
    """The (errorCode, message) pairs of Salesforce's JSON-array error body; [] for anything else."""
    try:
        payload = response.json()
    except ValueError:
        return []
    items = payload if isinstance(payload, list) else [payload]
    # The OAuth endpoint answers {error, error_description} instead.
    return [(str(e.get("errorCode") or e.get("error") or ""), str(e.get("message") or e.get("error_description") or ""))
            for e in items if isinstance(e, dict)]


def classify(response: requests.Response) -> str | None:
    """403 REQUEST_LIMIT_EXCEEDED: the daily quota stops the run; too many long requests at once is retried."""
    if response.status_code != 403:
        return None
    for code, message in vendor_errors(response):
        if code == "REQUEST_LIMIT_EXCEEDED":
            return "retry" if "ConcurrentPerOrg" in message else "quota"
    return None


class SalesforceClient(ApiClient):
    """ApiClient whose errors carry Salesforce's errorCode and message instead of a raw body."""

    def _error(self, response: requests.Response, what: str, kind: type[ApiError] = ApiError) -> ApiError:
        errors = vendor_errors(response)
        if not errors:
            return super()._error(response, what, kind)
        code, message = errors[0]
        path = urlparse(response.url).path
        text = f"{response.request.method} {path}: {what}: HTTP {response.status_code} {code}: {message}"
        return kind(self.redact(text), status=response.status_code, code=code)


class QuotaGuard:
    """Stops a run before it passes its share of the org's daily API requests.

    Every REST response carries `Sforce-Limit-Info: api-usage=N/M`. The guard is
    handed to ApiClient as its limiter, so `acquire` runs before every attempt
    and raises QuotaExhausted while the pages already read stay committed.
    """

    def __init__(self, per_run: float = QUOTA_SHARE_PER_RUN, total: float = QUOTA_SHARE_TOTAL):
        self.per_run, self.total = per_run, total
        self.used: int | None = None
        self.limit: int | None = None
        self.used_before_run: int | None = None

    def observe(self, response: requests.Response) -> None:
        match = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.used, self.limit = int(match.group(1)), int(match.group(2))
            if self.used_before_run is None:
                self.used_before_run = self.used - 1

    def acquire(self) -> float:
        if self.used is None or self.limit is None or self.used_before_run is None:
            return 0.0
        if self.used + 1 > self.limit * self.total:
            raise QuotaExhausted(f"Salesforce API usage is {self.used}/{self.limit}: stopping before the org "
                                 f"passes {self.total:.0%} of its daily requests")
        if self.used - self.used_before_run + 1 > self.limit * self.per_run:
            raise QuotaExhausted(f"this sync used {self.used - self.used_before_run} of {self.limit} daily "
                                 f"Salesforce API requests: stopping at its {self.per_run:.0%} share")
        return 0.0


# -- the API -----------------------------------------------------------------------------------------
class SalesforceApi:
    """One org: the access token (refreshed by OAuth when credentials allow), the quota guard, and SOQL.

    Nothing touches the network until the first query; with refresh credentials
    the first request logs in and learns the instance URL.
    """

    def __init__(self, *, token: str | None, oauth: tuple[str, str, str] | None, base_url: str | None,
                 login_url: str, api_version: str, use_bulk: bool, client_options: dict):
        self.version = api_version
        self.use_bulk = use_bulk
        self.redact = Redactor([token, *(oauth or ())])
        self.guard = QuotaGuard()
        self._token = token
        self._oauth = oauth
        self.client = SalesforceClient(
            base_url or "", auth_headers=self._headers, limiter=self.guard,  # type: ignore[arg-type]
            redactor=self.redact, classify=self._classify, refresh=self._refresh if oauth else None,
            **client_options,
        )
        self._login = SalesforceClient(login_url, auth_headers=lambda: {}, redactor=self.redact, **client_options)
        self._login.stats = self.client.stats  # one tally, token requests included (they cost no API quota)

    @property
    def stats(self) -> RequestStats:
        return self.client.stats

    def close(self) -> None:
        self.client.close()
        self._login.close()

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            self._refresh()
        return {"Authorization": f"Bearer {self._token}"}

    def _classify(self, response: requests.Response) -> str | None:
        self.guard.observe(response)
        return classify(response)

    def _refresh(self) -> None:
        """Refresh-token grant: a new access token, the instance URL, and a rotated refresh token if sent."""
        assert self._oauth is not None, "refresh is wired only with OAuth credentials"
        client_id, client_secret, refresh_token = self._oauth
        form = {"grant_type": "refresh_token", "client_id": client_id, "client_secret": client_secret,
                "refresh_token": refresh_token}
        try:
            payload = self._login.post_json(TOKEN_PATH, data=form)
        except ApiError as exc:
            raise AuthenticationFailed(f"Salesforce OAuth refresh failed: {exc}", status=exc.status) from None
        if not isinstance(payload, dict) or not payload.get("access_token") or not payload.get("instance_url"):
            raise AuthenticationFailed("Salesforce OAuth refresh answered without access_token and instance_url")
        self.redact.add(payload["access_token"])
        self.redact.add(payload.get("refresh_token"))
        self._token = payload["access_token"]
        self.client.base_url = require_tls(payload["instance_url"], "instance_url")
        if payload.get("refresh_token"):
            # Orgs with refresh-token rotation invalidate the old one as soon as it is used.
            self._oauth = (client_id, client_secret, payload["refresh_token"])
        log.info("Salesforce access token refreshed (instance %s)", self.client.base_url)

    def path(self, resource: str) -> str:
        return f"/services/data/{self.version}/{resource}"

    def describe(self, sobject: str) -> set[str]:
        """The object's field names (what this org has: CurrencyIsoCode, RecordTypeId, custom fields)."""
        payload = self.client.get_json(self.path(f"sobjects/{sobject}/describe"))
        fields = payload.get("fields") if isinstance(payload, dict) else None
        if not isinstance(fields, list):
            raise ApiError(f"describe {sobject}: no field list in the answer")
        return {str(f.get("name")) for f in fields if isinstance(f, dict)}

    def query(self, soql: str) -> Iterator[list[dict]]:
        """Run SOQL through queryAll; yield each batch (up to 2,000 records), following nextRecordsUrl."""
        try:
            payload = self.client.get_json(self.path(QUERY_RESOURCE), params={"q": soql})
        except ApiError as exc:
            raise _explained(exc, soql) from None
        guard = PagingGuard(f"Salesforce {self.path(QUERY_RESOURCE)}", self.redact)
        while True:
            records = payload.get("records") if isinstance(payload, dict) else None
            if not isinstance(records, list):
                raise ApiError(f"queryAll answered without a records list [{soql[:120]}]")
            done = payload.get("done") is True
            if not done and not payload.get("nextRecordsUrl"):
                raise ApiError("queryAll answered done=false without a nextRecordsUrl")
            following = None if done else guard.token(str(payload["nextRecordsUrl"]))
            yield [{k: v for k, v in r.items() if k != "attributes"} for r in records]
            if following is None:
                return
            payload = self.client.get_json(following)

    def earliest(self, sobject: str) -> dt.datetime | None:
        """The oldest SystemModstamp: an indexed ORDER BY ... LIMIT 1, cheap where a wide range times out."""
        soql = f"SELECT SystemModstamp FROM {sobject} ORDER BY SystemModstamp ASC LIMIT 1"  # noqa: S608
        records = next(self.query(soql))
        return parse_stamp(records[0]["SystemModstamp"]) if records else None

    def start_bulk(self, soql: str) -> str | None:
        """Create a Bulk API 2.0 queryAll job; None (and REST from then on) when the org has no Bulk API."""
        body = {"operation": "queryAll", "query": soql, "contentType": "CSV", "columnDelimiter": "COMMA",
                "lineEnding": "LF"}
        try:
            job = self.client.post_json(self.path(BULK_JOBS), json=body)
        except ApiError as exc:
            if exc.code not in BULK_NOT_ENABLED:
                raise _explained(exc, soql) from None
            log.warning("Salesforce Bulk API is not enabled for this org (%s): reading through REST", exc.code)
            self.use_bulk = False
            return None
        if not isinstance(job, dict) or not job.get("id"):
            raise ApiError("Bulk API answered a new query job without an id")
        return str(job["id"])

    def bulk_results(self, job_id: str) -> Iterator[list[dict]]:
        """Wait for the job, then yield its CSV results chunk by chunk until Sforce-Locator is "null"."""
        self._wait_for(job_id)
        path = self.path(f"{BULK_JOBS}/{job_id}/results")
        guard = PagingGuard(f"Salesforce {path}", self.redact)
        locator: str | None = None
        while True:
            params: dict[str, object] = {"maxRecords": BULK_MAX_RECORDS}
            if locator:
                params["locator"] = locator
            response = self.client.request("GET", path, params=params)
            locator = response.headers.get("Sforce-Locator")
            if not locator:
                raise ApiError(f"Bulk results of job {job_id} came without a Sforce-Locator header")
            if locator != "null":
                guard.token(locator)
            reader = csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))
            yield [{k: (v if v != "" else None) for k, v in row.items()} for row in reader]
            if locator == "null":
                return

    def _wait_for(self, job_id: str) -> None:
        """Poll the job on the client's clock, so a test's virtual clock runs the wait too."""
        delay, deadline = BULK_POLL_FIRST, self.client.clock() + BULK_TIMEOUT
        while True:
            self.client.sleep(delay)
            job = self.client.get_json(self.path(f"{BULK_JOBS}/{job_id}"))
            state = job.get("state") if isinstance(job, dict) else None
            if state == "JobComplete":
                return
            if state in ("Failed", "Aborted"):
                raise ApiError(f"Bulk query job {job_id} {state}: {job.get('errorMessage')}")  # type: ignore[union-attr]
            if self.client.clock() + delay > deadline:
                raise ApiError(f"Bulk query job {job_id} still {state} after {BULK_TIMEOUT:.0f} s")
            delay = min(delay * 2, BULK_POLL_MAX)


def _explained(error: ApiError, soql: str) -> ApiError:
    """A query Salesforce refuses is almost always a field named in `columns`: say so, with the query."""
    if error.code not in ("MALFORMED_QUERY", "INVALID_FIELD", "INVALID_TYPE"):
        return error
    return ApiError(f"Salesforce rejected the query (check `columns` in the source config): {error} "
                    f"[{soql[:300]}]", status=error.status, code=error.code)


# -- reading changes -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Batch:
    """Records read together, and the cursor that is safe to store once they (and all before) are committed."""

    records: list[dict]
    cursor: str | None


def select(sobject: str, fields: Iterable[str], since: dt.datetime | None, until: dt.datetime | None,
           ordered: bool) -> str:
    """SOQL for records changed in [since, until). Object and field names come from settings or from
    `columns` checked against a field-name pattern; the bounds are formatted datetimes."""
    bounds = []
    if since is not None:
        bounds.append(f"SystemModstamp >= {utc_iso(since, whole_seconds=True)}")
    if until is not None:
        bounds.append(f"SystemModstamp < {utc_iso(until, whole_seconds=True)}")
    soql = f"SELECT {', '.join(fields)} FROM {sobject}"  # noqa: S608
    if bounds:
        soql += " WHERE " + " AND ".join(bounds)
    return soql + (" ORDER BY SystemModstamp ASC, Id ASC" if ordered else "")


def changes(api: SalesforceApi, sobject: str, fields: list[str], since: dt.datetime | None,
            started: dt.datetime) -> Iterator[Batch]:
    """Every record of `sobject` with SystemModstamp >= since (all when None), deleted ones included.

    No cursor ever passes `started`, the sync's start: a record changed while
    the sync runs is read again by the next one.
    """
    if api.use_bulk:
        job = api.start_bulk(select(sobject, fields, since, None, ordered=False))
        if job is not None:
            yield from _bulk_batches(api, job, started)
            return
    yield from _rest_batches(api, sobject, fields, since, started)


def _cursor(stamp: str | dt.datetime, started: dt.datetime) -> str:
    moment = parse_stamp(stamp) if isinstance(stamp, str) else stamp
    return utc_iso(min(moment, started))


def _rest_batches(api: SalesforceApi, sobject: str, fields: list[str], since: dt.datetime | None,
                  started: dt.datetime) -> Iterator[Batch]:
    """Oldest first (SystemModstamp, then Id), so each batch's last stamp is a safe cursor.

    A QUERY_TIMEOUT halves the SystemModstamp window (from the oldest record
    when the query had no lower bound) and the rest is read window by window.
    """
    low, span = since, None
    while True:
        high = None if span is None or low is None or low + span >= started else low + span
        pages = api.query(select(sobject, fields, low, high, ordered=True))
        try:
            first = next(pages)
        except ApiError as exc:
            if exc.code != "QUERY_TIMEOUT":
                raise
            if low is None:
                oldest = api.earliest(sobject)
                if oldest is None:
                    return
                low = whole_seconds(oldest)
            span = _halved((high or started) - low, sobject)
            continue
        for records in itertools.chain([first], pages):
            if records:
                yield Batch(records, _cursor(records[-1]["SystemModstamp"], started))
        if high is None:
            return
        low = high


def _halved(width: dt.timedelta, sobject: str) -> dt.timedelta:
    half = dt.timedelta(seconds=int(width.total_seconds()) // 2)
    if half < MIN_QUERY_WINDOW:
        raise ApiError(f"{sobject}: QUERY_TIMEOUT even for a {width} SystemModstamp window; "
                       "try the Bulk API (bulk: true)", code="QUERY_TIMEOUT")
    log.warning("%s: QUERY_TIMEOUT, reading SystemModstamp windows of %s", sobject, half)
    return half


def _bulk_batches(api: SalesforceApi, job_id: str, started: dt.datetime) -> Iterator[Batch]:
    """Bulk results come in no useful order (ORDER BY would defeat PK chunking), so only the last
    chunk carries the cursor: a run killed midway re-reads the job's rows, upserted, not duplicated."""
    newest: dt.datetime | None = None
    held: list[dict] | None = None
    for records in api.bulk_results(job_id):
        if held is not None:
            yield Batch(held, None)
        for record in records:
            stamp = parse_stamp(record["SystemModstamp"])
            newest = stamp if newest is None or stamp > newest else newest
        held = records
    if newest is not None:
        yield Batch(held or [], _cursor(newest, started))


def opportunity_history(api: SalesforceApi, ids: list[str]) -> Iterator[dict]:
    """Every OpportunityHistory row of these opportunities (deleted ones too), oldest first per deal.

    The ids go into `OpportunityId IN (...)` lists short enough for a URL.
    """
    for start in range(0, len(ids), HISTORY_IDS_PER_QUERY):
        chunk = ids[start:start + HISTORY_IDS_PER_QUERY]
        if not all(_RECORD_ID.fullmatch(i) for i in chunk):
            raise ApiError("an Opportunity Id from Salesforce is not a record id")
        quoted = ", ".join(f"'{i}'" for i in chunk)
        soql = (f"SELECT {', '.join(HISTORY_FIELDS)} FROM OpportunityHistory "  # noqa: S608 (ids checked above)
                f"WHERE OpportunityId IN ({quoted}) ORDER BY OpportunityId ASC, CreatedDate ASC, Id ASC")
        for records in api.query(soql):
            yield from records
