"""Pipedrive as a live source: deals with their stage history, and organizations as customers.

What is read, and why in this order (CRM_APIS.md §3, §5):
- deals: API v2 lists sorted by update_time ascending, from `updated_since` =
  stored cursor - lookback. Pipedrive's `updated_since` is inclusive, so the
  boundary records are read again and upserted, never skipped. Three lists:
  1. deleted deals (`status=deleted`, the last 30 days), read whole every run:
     deleting a deal does not reliably bump its update_time (tap-pipedrive#60),
     so an `updated_since` filter would miss deletions; they are marked is_deleted.
  2. archived deals (`/deals/archived`): archiving hides a deal from lists but it
     still happened, so it keeps counting with its real status.
  3. live deals, whose pages carry the cursor. The small lists come first, so a
     stored cursor never runs ahead of a record that is not yet committed.
- stage history: `/v1/deals/{id}/flow`, for every deal read whose update_time is
  at or after the window start (a stage change bumps it): the deal's first stage
  at add_time plus each `stage_id` change. A page carries each deal's complete history.
- organizations: the v2 list, every one as a customers row. Pipedrive has no notion of a
  customer, so none is flagged is_customer: staging counts one that has a won deal, or a
  value in the field `columns` maps to started_at (e.g. a "Customer since" date).
closed / won / deleted come from the deal's status (open|won|lost|deleted), never from a
stage label. The cursor is the latest update_time committed, never later than the
moment the sync started (a record changed mid-sync is read again next time).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from connectors.contract import API_STREAMS, CANONICAL_STREAMS, utc_iso
from connectors.http import ApiClient, Redactor, RequestStats, header_count
from connectors.pipedrive import settings
from connectors.pipedrive.helpers import (
    FieldRef,
    batches,
    canonical_text,
    classify,
    deal_changes,
    decimal_text,
    iso_time,
    names_by_id,
    parse_time,
    resolve_fields,
    stage_entries,
    v2_pages,
)
from connectors.records import Page, TableRows

log = logging.getLogger(__name__)

_ASCENDING = {"sort_by": "update_time", "sort_direction": "asc"}
_FIELD_LISTS = {"deals": settings.DEAL_FIELDS, "customers": settings.ORGANIZATION_FIELDS}
# Columns an organization's own fields decide; `columns` maps the rest (created_at there is the deals').
_ORGANIZATION_COLUMNS = frozenset({"customer_id", "is_customer", "created_at"})


class PipedriveSource:
    """The Pipedrive connector (see the module docstring); one instance per sync run."""

    streams = API_STREAMS["pipedrive"]

    def __init__(
        self,
        token: str,
        *,
        base_url: str = settings.DEFAULT_BASE_URL,
        requests_per_2s: int = 20,
        columns: Mapping[str, str] | None = None,
        lookback_minutes: int = 60,
        client_options: Mapping[str, object] | None = None,
    ):
        if not token:
            raise ValueError("a Pipedrive API token is required")
        columns = dict(columns or {})
        kinds = {"deals": CANONICAL_STREAMS["deals"].columns,
                 "customers": {c: k for c, k in CANONICAL_STREAMS["customers"].columns.items()
                               if c not in _ORGANIZATION_COLUMNS}}
        unknown = sorted(set(columns).difference(*kinds.values()))
        if unknown:
            raise ValueError(f"columns: '{unknown[0]}' is not a canonical deals or customers column")
        self._columns = {
            table: {c: f for c, f in columns.items() if c in kinds[table]} for table in _FIELD_LISTS
        }
        self._lookback = dt.timedelta(minutes=lookback_minutes)
        self._client = ApiClient(
            base_url,
            # A header, never the api_token query parameter: URLs end up in logs and errors.
            auth_headers=lambda: {"x-api-token": token},
            redactor=Redactor([token]),
            classify=classify,
            remaining=lambda response: header_count(response, settings.RATE_REMAINING_HEADER),
            **dict(client_options or {}),
        )
        # On the client's clock, so a test's virtual clock runs the 2-second window too.
        self._client.limiter = self._client.rate_limiter(requests_per_2s,
                                                         settings.RATE_WINDOW_S + settings.RATE_WINDOW_SLACK_S)
        self._fields: dict[str, dict[str, FieldRef]] = {}
        self._stages: dict[str, str] | None = None
        self._pipelines: dict[str, str] | None = None
        self._currency: str | None = None

    @property
    def stats(self) -> RequestStats:
        return self._client.stats

    def read(self, stream: str, cursor: str | None) -> Iterator[Page]:
        if stream == "deals":
            return self._read_deals(cursor)
        if stream == "organizations":
            return self._read_organizations(cursor)
        raise ValueError(f"unknown Pipedrive stream '{stream}' (expected one of {', '.join(self.streams)})")

    def close(self) -> None:
        self._client.close()

    # -- deals ---------------------------------------------------------------
    def _read_deals(self, cursor: str | None) -> Iterator[Page]:
        checkpoint = _Checkpoint.begin(cursor)
        since = checkpoint.window_start(self._lookback)
        if since and checkpoint.start - since > dt.timedelta(days=settings.DELETED_RETENTION_DAYS):
            log.warning("pipedrive deals: last sync %s is over %d days ago; deals deleted before the last %d "
                        "days are no longer listed and stay in raw.deals as they were until a full reload "
                        "(--full-reload) marks them deleted", cursor,
                        settings.DELETED_RETENTION_DAYS, settings.DELETED_RETENTION_DAYS)
        window = {"updated_since": utc_iso(since, whole_seconds=True)} if since else {}
        yield from self._deal_pages(settings.DEALS, _ASCENDING | {"status": settings.DELETED_STATUS}, since)
        yield from self._deal_pages(settings.ARCHIVED_DEALS, _ASCENDING | window, since)
        yield from self._deal_pages(settings.DEALS, _ASCENDING | window, since, checkpoint)
        yield from checkpoint.closing_page()

    def _deal_pages(self, path: str, params: dict[str, str], since: dt.datetime | None,
                    checkpoint: _Checkpoint | None = None) -> Iterator[Page]:
        records = (deal for page in v2_pages(self._client, path, params) for deal in page)
        for batch in batches(records, settings.DEALS_PER_PAGE):
            # A list page the API sent twice can put a deal in one batch twice: keep one (the later).
            batch = list({deal["id"]: deal for deal in batch}.values())
            deals = [self._deal_row(deal) for deal in batch]
            history = [row for deal in batch if _changed(deal, since) for row in self._history(deal)]
            tables = {"deals": TableRows("deal_id", deals)}
            if history:
                tables["deal_stage_history"] = TableRows("deal_id", history)
            log.info("pipedrive %s: %d deals, %d stage entries", path, len(deals), len(history))
            yield Page(tables=tables, cursor=checkpoint.advance(batch) if checkpoint else None)

    def _deal_row(self, deal: dict) -> dict[str, str | None]:
        status = deal.get("status")
        closed = status in settings.CLOSED_STATUSES
        closed_at = (deal.get(f"{status}_time") or deal.get("close_time")) if closed else None
        row = {
            "deal_id": str(deal["id"]),
            "deal_name": deal.get("title"),
            "account_id": _id_text(deal.get("org_id")),
            "owner_id": _id_text(deal.get("owner_id")),
            "pipeline": _name(self._names("pipelines"), deal.get("pipeline_id")),
            "stage": _name(self._names("stages"), deal.get("stage_id")),
            "is_closed": _bool_text(closed),
            "is_won": _bool_text(status == "won"),
            "amount": decimal_text(deal.get("value")),
            "currency": deal.get("currency") or None,
            "created_at": iso_time(deal.get("add_time")),
            "closed_at": iso_time(closed_at),
            "updated_at": iso_time(deal.get("update_time")),
            "is_deleted": _bool_text(status == settings.DELETED_STATUS or deal.get("is_deleted") is True),
        }
        _apply_columns(row, deal, self._field_refs("deals"), CANONICAL_STREAMS["deals"].columns)
        if row["currency"] is None and row["amount"] is not None:
            row["currency"] = self._company_currency()
        return row

    def _history(self, deal: dict) -> list[dict[str, str | None]]:
        changes = deal_changes(self._client, deal["id"])
        if changes is None:
            return []
        stages = self._names("stages")
        return [
            {"deal_id": str(deal["id"]), "stage": stages.get(stage, stage), "entered_at": entered_at}
            for stage, entered_at in stage_entries(deal, changes)
        ]

    # -- organizations -------------------------------------------------------
    def _read_organizations(self, cursor: str | None) -> Iterator[Page]:
        checkpoint = _Checkpoint.begin(cursor)
        since = checkpoint.window_start(self._lookback)
        params = _ASCENDING | ({"updated_since": utc_iso(since, whole_seconds=True)} if since else {})
        for page in v2_pages(self._client, settings.ORGANIZATIONS, params):
            log.info("pipedrive organizations: %d read", len(page))
            if page:
                rows = [self._customer_row(org) for org in page]
                yield Page(tables={"customers": TableRows("customer_id", rows)}, cursor=checkpoint.advance(page))
        yield from checkpoint.closing_page()

    def _customer_row(self, org: dict) -> dict[str, str | None]:
        """An organization, customer or not: a won deal makes it one, and winning a deal does not
        change the organization, so staging decides from the deals."""
        row = {
            "customer_id": str(org["id"]),
            "name": org.get("name"),
            "started_at": None,
            "churned_at": None,
            "mrr": None,
            "is_customer": "false",
            "created_at": iso_time(org.get("add_time")),
        }
        _apply_columns(row, org, self._field_refs("customers"), CANONICAL_STREAMS["customers"].columns)
        return row

    # -- reference data, read once per run ------------------------------------
    def _names(self, kind: str) -> dict[str, str]:
        if kind == "stages":
            if self._stages is None:
                self._stages = names_by_id(self._client, settings.STAGES)
            return self._stages
        if self._pipelines is None:
            self._pipelines = names_by_id(self._client, settings.PIPELINES)
        return self._pipelines

    def _field_refs(self, table: str) -> dict[str, FieldRef]:
        if table not in self._fields:
            self._fields[table] = resolve_fields(self._client, _FIELD_LISTS[table], self._columns[table])
        return self._fields[table]

    def _company_currency(self) -> str | None:
        """The user's default currency, for the rare record without one (read only if needed)."""
        if self._currency is None:
            body = self._client.get_json(settings.CURRENT_USER)
            self._currency = ((body.get("data") if isinstance(body, dict) else None) or {}).get("default_currency")
        return self._currency


@dataclass
class _Checkpoint:
    """The cursor that is safe to store after a page of an update_time-ascending list.

    It is the latest update_time read so far (everything before it is in this or
    an earlier page), capped at the sync's start and never below the stored
    cursor. Should the API ever return records out of order, no cursor is
    stored until the list has been read to the end.
    """

    start: dt.datetime
    floor: dt.datetime | None
    latest: dt.datetime | None = None
    ordered: bool = True

    @classmethod
    def begin(cls, cursor: str | None) -> _Checkpoint:
        return cls(start=dt.datetime.now(dt.UTC).replace(microsecond=0), floor=parse_time(cursor))

    def window_start(self, lookback: dt.timedelta) -> dt.datetime | None:
        return self.floor - lookback if self.floor else None

    def advance(self, records: Iterable[dict]) -> str | None:
        for record in records:
            moment = parse_time(record.get("update_time"))
            if moment is None:
                continue
            if self.latest is not None and moment < self.latest:
                self.ordered = False
            self.latest = moment if self.latest is None else max(self.latest, moment)
        return self._value() if self.ordered else None

    def closing_page(self) -> Iterator[Page]:
        if not self.ordered and (cursor := self._value()):
            yield Page(cursor=cursor)

    def _value(self) -> str | None:
        if self.latest is None:
            return None
        moment = min(self.latest, self.start)
        return utc_iso(max(moment, self.floor) if self.floor else moment)


def _changed(deal: dict, since: dt.datetime | None) -> bool:
    updated = parse_time(deal.get("update_time"))
    return since is None or updated is None or updated >= since


def _apply_columns(row: dict, record: dict, fields: dict[str, FieldRef], kinds: dict[str, str]) -> None:
    """Read the configured fields into their canonical columns; a monetary field brings its currency."""
    for column, ref in fields.items():
        value = ref.read(record)
        row[column] = canonical_text(kinds[column], value)
        if isinstance(value, dict) and value.get("currency") and "currency" in row and "currency" not in fields:
            row["currency"] = value["currency"]


def _id_text(value: object) -> str | None:
    """An id as text; v1 embeds related objects as {"value": id, "name": ...}."""
    if isinstance(value, dict):
        value = value.get("value", value.get("id"))
    return None if value in (None, "", 0) else str(value)


def _name(names: dict[str, str], value: object) -> str | None:
    key = _id_text(value)
    return names.get(key, key) if key else None


def _bool_text(value: bool) -> str:
    return "true" if value else "false"
