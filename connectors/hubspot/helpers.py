"""HTTP, paging and value formats of HubSpot CRM v3.

Every request goes through the shared `ApiClient` (retries, backoff,
Retry-After, redaction). HubSpot has two separate budgets, so there are two
limiters: the rolling 10-second one for every endpoint but search (kept in
step with the account's own count, `X-HubSpot-RateLimit-Remaining`), and a
per-second one for search alone. `classify` tells a daily-limit 429 (stop,
keep the cursor) from a burst 429 (retry). Every listing runs under a
`PagingGuard`: a list `after` token sent twice, or a search that restarts at an
id no higher than the last, stops the sync instead of looping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import urlencode

import requests

from connectors.contract import utc_iso
from connectors.http import ApiClient, PagingGuard, RateLimiter, Redactor, RequestStats, header_count
from connectors.hubspot import settings

Record = dict  # one SimplePublicObject: {"id", "properties", "archived", ...}


def classify(response: requests.Response) -> str | None:
    """Map HubSpot's error bodies onto the client's policy (see ApiClient)."""
    if response.status_code == 429:
        try:
            policy = response.json().get("policyName")
        except (ValueError, AttributeError):
            policy = None
        return "quota" if policy == settings.DAILY_POLICY else None
    if response.status_code == 530:  # Cloudflare's answer to a malformed token
        return "auth"
    return None


def burst_remaining(response: requests.Response) -> int | None:
    """Requests left in the account's rolling 10-second window, which every app on the account spends.

    Search has its own per-second budget, which this header does not count.
    """
    if response.request.path_url.split("?")[0].endswith("/search"):
        return None
    return header_count(response, settings.BURST_REMAINING_HEADER)


_LIMITERS: dict[tuple, tuple[RateLimiter, RateLimiter]] = {}
_LIMITERS_LOCK = threading.Lock()


def account_limiters(base_url: str, token: str, requests_per_10s: int,
                     client: ApiClient) -> tuple[RateLimiter, RateLimiter]:
    """The (burst, search) limiters of one HubSpot account, on `client`'s clock.

    HubSpot's budgets are per account, not per client: every connector in this
    process that reads the same portal with the same token (on the same clock)
    shares one pair, so back-to-back syncs (or streams) do not each assume a
    fresh window.
    """
    key = (base_url.rstrip("/"), hashlib.sha256(token.encode()).hexdigest(), requests_per_10s,
           client.clock, client.sleep)
    with _LIMITERS_LOCK:
        if key not in _LIMITERS:
            _LIMITERS[key] = (
                client.rate_limiter(requests_per_10s,
                                    settings.BURST_WINDOW_SECONDS + settings.LATENCY_MARGIN_SECONDS),
                client.rate_limiter(settings.SEARCH_REQUESTS_PER_SECOND, 1.0 + settings.LATENCY_MARGIN_SECONDS),
            )
        return _LIMITERS[key]


class HubSpotApi:
    """The few HubSpot endpoints the connector reads, each paged to the end."""

    def __init__(self, token: str, base_url: str, requests_per_10s: int, client_options: dict):
        self.client = ApiClient(
            base_url,
            auth_headers=lambda: {"Authorization": f"Bearer {token}"},
            redactor=Redactor([token]),
            classify=classify,
            remaining=burst_remaining,
            **client_options,
        )
        self._burst, self._search = account_limiters(base_url, token, requests_per_10s, self.client)

    @property
    def stats(self) -> RequestStats:
        return self.client.stats

    def close(self) -> None:
        self.client.close()

    # -- metadata ----------------------------------------------------------------
    def pipelines(self) -> list[dict]:
        return self._get(settings.PIPELINES_PATH).get("results", [])

    def company_currency(self) -> str | None:
        return self._get(settings.ACCOUNT_DETAILS_PATH).get("companyCurrency")

    def property_names(self, object_type: str) -> set[str]:
        results = self._get(settings.PROPERTIES_PATH.format(object_type=object_type)).get("results", [])
        return {prop["name"] for prop in results}

    # -- records -----------------------------------------------------------------
    def list_pages(self, object_type: str, properties: Sequence[str], *, history: Sequence[str] = (),
                   associations: Sequence[str] = (), archived: bool = False,
                   after: str | None = None) -> Iterator[tuple[list[Record], str | None]]:
        """GET list pages in id order: (records, the `after` to resume from, None after the last page).

        Properties that do not fit the URL budget are read for the page's ids
        through batch/read and merged in, so no request ever earns a 414.
        """
        params: dict[str, str | int] = {
            "limit": settings.HISTORY_LIST_LIMIT if history else settings.LIST_LIMIT,
            "archived": str(archived).lower(),
        }
        if history:
            params["propertiesWithHistory"] = ",".join(history)
        if associations:
            params["associations"] = ",".join(associations)
        in_url, overflow = fit_query(params, "properties", properties, settings.MAX_QUERY_CHARS)
        params["properties"] = ",".join(in_url)
        path = settings.OBJECTS_PATH.format(object_type=object_type)
        guard = PagingGuard(f"HubSpot {path}", self.client.redact)
        if after:
            guard.token(after)
        while True:
            answer = self._get(path, params={**params, **({"after": after} if after else {})})
            records = answer.get("results", [])
            after = next_after(answer)
            if after is not None:
                guard.token(after)
            if overflow and records:
                extra = self.batch_read(object_type, [r["id"] for r in records], overflow, archived=archived)
                by_id = {r["id"]: r.get("properties") or {} for r in extra}
                for record in records:
                    record.setdefault("properties", {}).update(by_id.get(record["id"], {}))
            yield records, after
            if after is None:
                return

    def search_pages(self, object_type: str, modified_since_ms: int, properties: Sequence[str],
                     after_id: int | None = None) -> Iterator[tuple[list[Record], str | None]]:
        """Records modified at or after a time, in id order: (records, id to resume after, None after the last).

        Each page is a fresh query for ids above the last one read (compared
        as numbers: hs_object_id is a number property), rather than the offset
        `after`: an offset query stops at 10,000 results and skips a record
        whenever one before it is deleted mid-sync. Paging goes on while HubSpot
        says there is more (`paging.next`), never by counting a short page.
        The last id read must grow from page to page: a page that does not move
        past it (a stale answer) stops the listing rather than repeat it forever.
        """
        offset: str | None = None
        path = settings.SEARCH_PATH.format(object_type=object_type)
        guard = PagingGuard(f"HubSpot {path}", self.client.redact)
        if after_id is not None:
            guard.position(after_id)
        while True:
            filters = [{"propertyName": settings.MODIFIED, "operator": "GTE", "value": str(modified_since_ms)}]
            if after_id is not None:
                filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": str(after_id)})
            body: dict = {
                "filterGroups": [{"filters": filters}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": list(properties),
                "limit": settings.SEARCH_LIMIT,
            }
            if offset:
                body["after"] = offset
            answer = self._post(path, json=body, limiter=self._search)
            records = answer.get("results", [])
            if records:
                after_id = guard.position(max(int(record["id"]) for record in records))
            more = next_after(answer)
            # Resume from the last id read ("" = from the start, if nothing was read yet).
            yield records, None if more is None else ("" if after_id is None else str(after_id))
            if more is None:
                return
            # An empty page that still promises more gives no id to continue from: follow its offset.
            offset = None if records else guard.token(more)

    def batch_read(self, object_type: str, ids: Sequence[str], properties: Sequence[str], *,
                   history: Sequence[str] = (), archived: bool = False) -> list[Record]:
        """Records by id (ids HubSpot no longer has are simply absent)."""
        size = settings.HISTORY_BATCH_READ_LIMIT if history else settings.BATCH_READ_LIMIT
        path = settings.BATCH_READ_PATH.format(object_type=object_type)
        records: list[Record] = []
        for chunk in chunked(ids, size):
            body: dict = {"inputs": [{"id": i} for i in chunk], "properties": list(properties)}
            if history:
                body["propertiesWithHistory"] = list(history)
            params = {"archived": "true"} if archived else None
            records.extend(self._post(path, params=params, json=body).get("results", []))
        return records

    def primary_companies(self, deal_ids: Sequence[str]) -> dict[str, str]:
        """deal id -> its primary company id, from the v4 associations batch read."""
        found: dict[str, str] = {}
        for chunk in chunked(deal_ids, settings.ASSOCIATION_BATCH_LIMIT):
            answer = self._post(settings.DEAL_COMPANIES_PATH, json={"inputs": [{"id": i} for i in chunk]})
            for result in answer.get("results", []):
                links = [
                    (str(target["toObjectId"]),
                     any(kind.get("typeId") == settings.PRIMARY_COMPANY_TYPE_ID
                         for kind in target.get("associationTypes", [])))
                    for target in result.get("to", [])
                ]
                company = primary_company(links)
                if company is not None:
                    found[str(result["from"]["id"])] = company
        return found

    # -- plumbing ----------------------------------------------------------------
    def _get(self, path: str, **kwargs: object) -> dict:
        return self.client.get_json(path, limiter=self._burst, **kwargs)  # type: ignore[return-value]

    def _post(self, path: str, limiter: RateLimiter | None = None, **kwargs: object) -> dict:
        return self.client.post_json(path, limiter=limiter or self._burst, **kwargs)  # type: ignore[return-value]


# -- pure helpers ---------------------------------------------------------------------
def next_after(answer: dict) -> str | None:
    return ((answer.get("paging") or {}).get("next") or {}).get("after") or None


def chunked(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def fit_query(params: dict, name: str, values: Sequence[str], budget: int) -> tuple[list[str], list[str]]:
    """Split `values` into those that fit `name=` in the query string within `budget` characters, and the rest."""
    fitted: list[str] = []
    for position, value in enumerate(values):
        if len(urlencode({**params, name: ",".join([*fitted, value])})) > budget:
            return fitted, list(values[position:])
        fitted.append(value)
    return fitted, []


def company_links(record: Record) -> list[tuple[str, bool]]:
    """(company id, is primary) from a v3 record's `associations` (the primary is also listed unlabeled)."""
    results = (((record.get("associations") or {}).get("companies") or {}).get("results")) or []
    return [(str(link["id"]), link.get("type") == settings.PRIMARY_COMPANY_TYPE) for link in results]


def primary_company(links: Iterable[tuple[str, bool]]) -> str | None:
    """The primary company; without one, the lowest id, so the choice is stable across syncs."""
    links = list(links)
    primaries = [company for company, primary in links if primary]
    candidates = primaries or [company for company, _ in links]
    return min(candidates, key=int) if candidates else None


def merged_ids(record: Record) -> list[str]:
    value = text((record.get("properties") or {}).get(settings.MERGED_IDS))
    return [part.strip() for part in value.split(";") if part.strip()] if value else []


def text(value: object) -> str | None:
    """A property value: HubSpot sends strings, and "" where it means null."""
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def parse_time(value: object) -> dt.datetime | None:
    """A HubSpot date or datetime (ISO 8601, a bare date, or epoch milliseconds) as aware UTC."""
    raw = text(value)
    if raw is None:
        return None
    if raw.lstrip("-").isdigit():
        return dt.datetime.fromtimestamp(int(raw) / 1000, dt.UTC)
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def iso_utc(value: object) -> str | None:
    """ISO 8601 UTC with milliseconds; a value that does not parse is passed on for staging to reject."""
    moment = parse_time(value)
    return utc_iso(moment) if moment is not None else text(value)


def epoch_ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)

