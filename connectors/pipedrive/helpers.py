"""Pipedrive HTTP policy, paging, custom fields, flow parsing and value formats.

Everything here is shape knowledge about Pipedrive (CRM_APIS.md §3); the
source in `__init__.py` only decides what to read and in which order.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import requests

from connectors.contract import NUMBER, TIMESTAMP, utc_iso
from connectors.http import ApiClient, ApiError, PagingGuard
from connectors.pipedrive import settings


# -- error policy ------------------------------------------------------------
def classify(response: requests.Response) -> str | None:
    """Map Pipedrive's answers onto the shared client's policy.

    A 429 is normally the 2-second window (retry after `Retry-After`), but once
    the company's daily token budget is spent every call fails until midnight
    UTC, so retrying is pointless: that is "quota" (stop, keep the cursor). A
    200 that is not JSON is a maintenance or proxy page: retry it.
    """
    if response.status_code == 429:
        return "quota" if _is_daily_limit(response) else None
    content_type = response.headers.get("Content-Type", "")
    if response.status_code < 300 and "json" not in content_type:
        return "retry"
    return None


def _is_daily_limit(response: requests.Response) -> bool:
    if response.headers.get("x-daily-requests-left", "").strip() == "0":
        return True
    try:
        body = response.json()
    except ValueError:
        return False
    message = f"{body.get('error', '')} {body.get('error_info', '')}" if isinstance(body, dict) else ""
    return "daily" in message.lower()


# -- paging --------------------------------------------------------------------
def _data(client: ApiClient, path: str, body: object) -> list[dict]:
    if not isinstance(body, dict) or body.get("success") is False:
        error = body.get("error") if isinstance(body, dict) else type(body).__name__
        raise ApiError(client.redact(f"GET {path}: Pipedrive answered without data: {error}"))
    return body.get("data") or []


def v2_pages(client: ApiClient, path: str, params: dict[str, str]) -> Iterator[list[dict]]:
    """Pages of a v2 list: follow `additional_data.next_cursor` until it is null (never one sent twice)."""
    guard = PagingGuard(f"Pipedrive {path}", client.redact)
    cursor: str | None = None
    while True:
        query = {**params, "limit": settings.V2_PAGE_SIZE} | ({"cursor": cursor} if cursor else {})
        body = client.get_json(path, params=query)
        data = _data(client, path, body)
        cursor = (body.get("additional_data") or {}).get("next_cursor")
        if cursor:
            guard.token(cursor)
        yield data
        if not cursor:
            return


def v1_pages(client: ApiClient, path: str, params: dict[str, str] | None = None) -> Iterator[list[dict]]:
    """Pages of a v1 list: follow `pagination.next_start` while `more_items_in_collection` (always forward)."""
    guard = PagingGuard(f"Pipedrive {path}", client.redact)
    start = guard.position(0)
    while True:
        query = {**(params or {}), "start": start, "limit": settings.V1_PAGE_SIZE}
        body = client.get_json(path, params=query)
        data = _data(client, path, body)
        pagination = (body.get("additional_data") or {}).get("pagination") or {}
        more = bool(pagination.get("more_items_in_collection"))
        if more:
            start = guard.position(int(pagination.get("next_start", start + settings.V1_PAGE_SIZE)))
        yield data
        if not more:
            return


def batches(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    """Records regrouped into lists of `size` (the last may be shorter)."""
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


# -- reference data and custom fields -----------------------------------------------
def names_by_id(client: ApiClient, path: str) -> dict[str, str]:
    """id -> name for a small v2 list (stages, pipelines)."""
    return {str(item["id"]): item.get("name") or str(item["id"]) for page in v2_pages(client, path, {})
            for item in page}


@dataclass(frozen=True)
class FieldRef:
    """A resolved field: its key, and option id -> label for enum/set fields."""

    key: str
    options: dict[str, str] = field(default_factory=dict)

    def read(self, record: dict) -> object:
        """A standard field sits at the record's root; a custom one under `custom_fields` (v2)."""
        value = record[self.key] if self.key in record else (record.get("custom_fields") or {}).get(self.key)
        if self.options and isinstance(value, int | str) and str(value) in self.options:
            return self.options[str(value)]
        return value


def resolve_fields(client: ApiClient, path: str, wanted: dict[str, str]) -> dict[str, FieldRef]:
    """canonical column -> field, for fields given by key (a 40-char hash) or by name.

    Users know their fields by name ("Churn date"); the API keys custom fields
    by hash, so names are looked up in the v1 field list once per run.
    """
    if not wanted:
        return {}
    by_key: dict[str, FieldRef] = {}
    by_name: dict[str, FieldRef] = {}
    for page in v1_pages(client, path):
        for item in page:
            options = {str(o["id"]): str(o.get("label")) for o in item.get("options") or [] if "id" in o}
            ref = FieldRef(item["key"], options)
            by_key[item["key"]] = ref
            by_name.setdefault(str(item.get("name", "")).strip().casefold(), ref)
    resolved = {}
    for column, name in wanted.items():
        ref = by_key.get(name) or by_name.get(name.strip().casefold())
        if ref is None:
            raise ApiError(f"columns.{column}: Pipedrive has no field keyed or named '{name}' ({path})")
        resolved[column] = ref
    return resolved


# -- stage history from the deal flow ---------------------------------------------------
def deal_changes(client: ApiClient, deal_id: int | str) -> list[dict] | None:
    """Every dealChange of one deal, oldest first; None when its flow is gone (404/410).

    None, not [], so the history already stored for a purged deal is kept rather
    than replaced by a guess.
    """
    path = settings.DEAL_FLOW.format(deal_id=deal_id)
    changes: list[dict] = []
    try:
        for page in v1_pages(client, path, {"items": settings.FLOW_ITEMS}):
            changes.extend(item["data"] for item in page if item.get("object") == "dealChange")
    except ApiError as exc:
        if exc.status in (404, 410):
            return None
        raise
    return sorted(changes, key=lambda c: (parse_time(c.get("log_time")) or _EPOCH, c.get("id") or 0))


def stage_entries(deal: dict, changes: list[dict]) -> list[tuple[str, str | None]]:
    """(stage id, entered at) for the stage the deal was created in and every stage change.

    The flow logs changes, not the creation: the first stage is the first
    change's old value (or the current stage if it never moved), entered at add_time.
    """
    moves = [c for c in changes if c.get("field_key") == settings.STAGE_FIELD_KEY]
    first = moves[0].get("old_value") if moves else deal.get("stage_id")
    entries = [(first, deal.get("add_time"))] + [(c.get("new_value"), c.get("log_time")) for c in moves]
    return [(str(stage), iso_time(at)) for stage, at in entries if stage not in (None, "")]


# -- value formats -------------------------------------------------------------------
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_time(value: object) -> dt.datetime | None:
    """v2 RFC 3339, v1 'YYYY-MM-DD HH:MM:SS' (UTC) or a bare date (midnight UTC)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not a time: {value!r}")
    moment = dt.datetime.fromisoformat(value.strip())
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def iso_time(value: object) -> str | None:
    """Any Pipedrive time as utc_iso text (an unreadable one as given, for staging to reject)."""
    try:
        moment = parse_time(value)
    except ValueError:
        return str(value)
    return utc_iso(moment) if moment else None


def decimal_text(value: object) -> str | None:
    """A number (or a monetary field's {value, currency}) as a plain decimal string."""
    if isinstance(value, dict):
        value = value.get("value")
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return format(Decimal(str(value)), "f")
    except InvalidOperation:
        return str(value)  # staging rejects it with a reason, rather than us dropping it


def canonical_text(kind: str, value: object) -> str | None:
    """A field value as a canonical column of `kind` (a connectors.contract kind) expects it."""
    if value is None or value == "":
        return None
    if kind == TIMESTAMP:
        return iso_time(value)
    if kind == NUMBER:
        return decimal_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return canonical_text(kind, value.get("value"))
    return str(value)
