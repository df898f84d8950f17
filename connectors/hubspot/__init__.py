"""HubSpot CRM v3 source: deals with their stage history, and companies as customers.

`read("deals")` yields pages for the raw tables deals and deal_stage_history;
`read("companies")` yields customers. Every sync makes two passes:

1. Live records. A full sync lists every record (GET, id order, stage history
   inline via propertiesWithHistory). An incremental sync searches for records
   whose hs_lastmodifieddate is at or after the cursor minus the lookback (search
   is eventually consistent), then reads their stage history and primary company
   by id: search returns neither.
2. Archived records, on every sync: archiving does not bump hs_lastmodifieddate,
   so search never sees it. They are emitted with is_deleted 'true'.

Merged-away records vanish from HubSpot and are named only by the survivor's
hs_merged_object_ids. They are passed as `deleted_keys`, which removes what was
loaded for them: the survivor now holds their data, as a full sync would show.

is_closed / is_won come from the deal pipelines' stage metadata (isClosed,
probability 1.0 = won), never from labels. Values are normalised as the
canonical contract asks: "" is null, timestamps (ISO or epoch milliseconds) are
ISO 8601 UTC, a deal without a currency code is in the portal's currency.

The cursor is the newest hs_lastmodifieddate read, never later than the moment
the sync started. Pages in between carry a progress cursor (JSON: phase and
position) so a killed sync resumes at its next page instead of starting over;
the finished sync then stores the plain timestamp.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace

from connectors.contract import API_STREAMS, utc_iso
from connectors.http import RequestStats
from connectors.hubspot import settings
from connectors.hubspot.helpers import (
    HubSpotApi,
    Record,
    company_links,
    epoch_ms,
    iso_utc,
    merged_ids,
    parse_time,
    primary_company,
    text,
)
from connectors.records import Page, TableRows

__all__ = ["HubSpotSource"]

LIVE, ARCHIVED, DONE = "live", "archived", "done"
MAPPABLE_COLUMNS = frozenset({
    *settings.DEAL_COLUMNS, *settings.DEAL_OPTIONAL_COLUMNS, *settings.DEAL_ASSOCIATED_COLUMNS,
    *settings.CUSTOMER_COLUMNS, *settings.CUSTOMER_OPTIONAL_COLUMNS,
})


class HubSpotSource:
    """A HubSpot portal read with a private-app token (scopes crm.objects.deals.read, crm.objects.companies.read)."""

    streams = API_STREAMS["hubspot"]

    def __init__(self, token: str, *, base_url: str = settings.DEFAULT_BASE_URL, requests_per_10s: int = 100,
                 columns: dict[str, str] | None = None, lookback_minutes: int = 60,
                 client_options: dict | None = None):
        columns = dict(columns or {})
        unknown = sorted(set(columns) - MAPPABLE_COLUMNS)
        if unknown:
            raise ValueError(f"columns: HubSpot cannot map {unknown}; mappable: {sorted(MAPPABLE_COLUMNS)}")
        self._api = HubSpotApi(token, base_url, requests_per_10s, dict(client_options or {}))
        self._lookback = dt.timedelta(minutes=lookback_minutes)
        self._home_currency: str | None = None
        self._objects: dict[str, _ObjectStream] = {
            "deals": _Deals(self._api, columns, self._portal_currency),
            "companies": _Companies(self._api, columns),
        }

    @property
    def stats(self) -> RequestStats:
        return self._api.stats

    def close(self) -> None:
        self._api.close()

    def read(self, stream: str, cursor: str | None) -> Iterator[Page]:
        """Pages of canonical rows; `cursor` None is a full sync."""
        if stream not in self._objects:
            raise ValueError(f"unknown HubSpot stream {stream!r}; streams: {self.streams}")
        objects = self._objects[stream]
        progress = Progress.resume(cursor, dt.datetime.now(dt.UTC))
        objects.prepare()
        if progress.phase == LIVE:
            for tables, resume, records in self._live_pages(objects, progress):
                progress = progress.after_page(resume, latest_modified(records))
                yield Page(tables, progress.cursor)
        if progress.phase == ARCHIVED:
            for records, resume in objects.listed(archived=True, after=progress.position):
                progress = progress.after_page(resume)
                yield Page(objects.list_tables(records, archived=True), progress.cursor)

    def _live_pages(self, objects: _ObjectStream,
                    progress: Progress) -> Iterator[tuple[dict[str, TableRows], str | None, list[Record]]]:
        if progress.since is None:
            for records, resume in objects.listed(archived=False, after=progress.position):
                yield objects.list_tables(records, archived=False), resume, records
            return
        since = parse_time(progress.since)
        assert since is not None  # checked by Progress.resume
        after_id = int(progress.position) if progress.position else None
        for hits, resume in self._api.search_pages(
            objects.object_type, epoch_ms(since - self._lookback), objects.search_properties, after_id
        ):
            yield objects.search_tables(hits), resume, hits

    def _portal_currency(self) -> str | None:
        """The portal's home currency, asked for once and only when a deal needs it."""
        if self._home_currency is None:
            self._home_currency = self._api.company_currency()
        return self._home_currency


@dataclass(frozen=True)
class Progress:
    """Where a sync stands. Stored as the cursor after every page, so a killed sync resumes there."""

    since: str | None  # the finished cursor this sync started from; None: a full sync
    started: str  # when it started: the finished cursor never passes it
    phase: str = LIVE  # live, then archived, then done
    position: str | None = None  # the list `after` token, or the last id read by search
    seen: str | None = None  # newest hs_lastmodifieddate among live records read

    @classmethod
    def resume(cls, cursor: str | None, now: dt.datetime) -> Progress:
        if cursor and cursor.startswith("{"):
            return cls(**json.loads(cursor))
        if cursor is not None and parse_time(cursor) is None:
            raise ValueError(f"not a HubSpot cursor: {cursor!r}")
        return cls(since=cursor, started=utc_iso(now))

    def after_page(self, resume: str | None, modified: str | None = None) -> Progress:
        """The progress once a page is committed; `resume` None means that page was its pass's last."""
        seen = later(self.seen, modified)
        if resume is not None:
            return replace(self, position=resume, seen=seen)
        return replace(self, phase=ARCHIVED if self.phase == LIVE else DONE, position=None, seen=seen)

    @property
    def cursor(self) -> str | None:
        if self.phase != DONE:
            return json.dumps(asdict(self), separators=(",", ":"))
        if self.seen is None:
            return self.since or self.started
        return later(self.since, earlier(self.seen, self.started))


class _ObjectStream:
    """One HubSpot object type, read as pages of canonical rows."""

    object_type: str
    history: tuple[str, ...] = ()
    associations: tuple[str, ...] = ()

    def __init__(self, api: HubSpotApi, properties: Sequence[str], custom: Sequence[str]):
        self._api = api
        self.properties = list(dict.fromkeys(properties))
        self._custom = sorted(set(custom))

    @property
    def search_properties(self) -> list[str]:
        return self.properties

    def listed(self, archived: bool, after: str | None) -> Iterator[tuple[list[Record], str | None]]:
        """Every live (or every archived) record, page by page, from `after` on."""
        return self._api.list_pages(self.object_type, self.properties, history=self.history,
                                    associations=self.associations, archived=archived, after=after)

    def prepare(self) -> None:
        """Fail early, and clearly, when `columns` names a property HubSpot would silently ignore."""
        if self._custom:
            missing = sorted(set(self._custom) - self._api.property_names(self.object_type))
            if missing:
                raise ValueError(f"columns names HubSpot {self.object_type} properties that do not exist: {missing}")

    def list_tables(self, records: list[Record], archived: bool) -> dict[str, TableRows]:
        raise NotImplementedError

    def search_tables(self, hits: list[Record]) -> dict[str, TableRows]:
        return self.list_tables(hits, archived=False)


class _Deals(_ObjectStream):
    object_type = "deals"
    history = (settings.STAGE,)

    def __init__(self, api: HubSpotApi, columns: dict[str, str], portal_currency: Callable[[], str | None]):
        wanted = (*settings.DEAL_COLUMNS, *settings.DEAL_OPTIONAL_COLUMNS)
        self._property_of = {**settings.DEAL_COLUMNS, **{k: v for k, v in columns.items() if k in wanted}}
        self._company_property = columns.get("account_id")
        custom = [v for k, v in columns.items() if k in wanted or k == "account_id"]
        super().__init__(api, [*settings.DEAL_FIXED_PROPERTIES, *self._property_of.values(), *custom], custom)
        self.associations = () if self._company_property else ("companies",)
        self._portal_currency = portal_currency
        self._stages: dict[tuple[str | None, str], tuple[str, str]] = {}

    @property
    def search_properties(self) -> list[str]:
        return [settings.MODIFIED]  # the records themselves are read by id, with their history

    def prepare(self) -> None:
        super().prepare()
        self._stages = stage_flags(self._api.pipelines())

    def list_tables(self, records: list[Record], archived: bool) -> dict[str, TableRows]:
        companies = {} if self._company_property else {
            str(r["id"]): primary_company(company_links(r)) for r in records
        }
        return self._tables(records, companies, archived)

    def search_tables(self, hits: list[Record]) -> dict[str, TableRows]:
        ids = [str(hit["id"]) for hit in hits]
        records = self._api.batch_read(self.object_type, ids, self.properties, history=self.history)
        companies = {} if self._company_property else self._api.primary_companies(ids)
        return self._tables(records, companies, archived=False)

    def _tables(self, records: list[Record], companies: dict[str, str | None],
                archived: bool) -> dict[str, TableRows]:
        deals: list[dict[str, str | None]] = []
        history: list[dict[str, str | None]] = []
        merged: list[str] = []
        for record in records:
            deal_id = str(record["id"])
            deals.append(self._row(record, companies.get(deal_id), archived))
            history.extend(stage_history(deal_id, record))
            merged.extend(merged_ids(record))
        return {"deals": TableRows("deal_id", deals, tuple(merged)),
                "deal_stage_history": TableRows("deal_id", history, tuple(merged))}

    def _row(self, record: Record, company: str | None, archived: bool) -> dict[str, str | None]:
        props = record.get("properties") or {}

        def value(column: str) -> str | None:
            name = self._property_of.get(column)
            return text(props.get(name)) if name else None

        pipeline, stage = text(props.get(settings.PIPELINE)), text(props.get(settings.STAGE))
        is_closed, is_won = self._stages.get((pipeline, stage)) or self._stages.get((None, stage)) or (None, None)
        in_home_currency = self._property_of["amount"] in settings.HOME_CURRENCY_AMOUNTS
        return {
            "deal_id": str(record["id"]),
            "deal_name": value("deal_name"),
            "account_id": text(props.get(self._company_property)) if self._company_property else company,
            "owner_id": value("owner_id"),
            "pipeline": pipeline,
            "segment": value("segment"),
            "stage": stage,
            "is_closed": is_closed,
            "is_won": is_won,
            "amount": value("amount"),
            "currency": (None if in_home_currency else value("currency")) or self._portal_currency(),
            "created_at": iso_utc(value("created_at")),
            "closed_at": iso_utc(value("closed_at")),
            "updated_at": iso_utc(props.get(settings.MODIFIED)),
            "is_deleted": "true" if archived or record.get("archived") else "false",
        }


class _Companies(_ObjectStream):
    """Companies that are (or were) customers: started_at is when they became one."""

    object_type = "companies"

    def __init__(self, api: HubSpotApi, columns: dict[str, str]):
        wanted = (*settings.CUSTOMER_COLUMNS, *settings.CUSTOMER_OPTIONAL_COLUMNS)
        configured = {k: v for k, v in columns.items() if k in wanted}
        self._property_of = {**settings.CUSTOMER_COLUMNS, **configured}
        super().__init__(api, [*settings.COMPANY_FIXED_PROPERTIES, *self._property_of.values()],
                         list(configured.values()))

    def list_tables(self, records: list[Record], archived: bool) -> dict[str, TableRows]:
        rows: list[dict[str, str | None]] = []
        merged: list[str] = []
        for record in records:
            row = self._row(record, archived or bool(record.get("archived")))
            if row is not None:
                rows.append(row)
                merged.extend(merged_ids(record))
        return {"customers": TableRows("customer_id", rows, tuple(merged))}

    def _row(self, record: Record, archived: bool) -> dict[str, str | None] | None:
        """The customer row, or None for a company that has never been a customer."""
        props = record.get("properties") or {}

        def value(column: str) -> str | None:
            name = self._property_of.get(column)
            return text(props.get(name)) if name else None

        started = value("started_at")
        if started is None and text(props.get(settings.LIFECYCLE_STAGE)) == settings.CUSTOMER_LIFECYCLE_STAGE:
            started = text(props.get(settings.CREATED))
        if started is None:
            return None
        return {
            "customer_id": str(record["id"]),
            "name": value("name"),
            "started_at": iso_utc(started),
            "churned_at": iso_utc(value("churned_at")),
            "mrr": value("mrr"),
            "is_deleted": "true" if archived else "false",
        }


# -- mapping helpers ---------------------------------------------------------------
def stage_flags(pipelines: list[dict]) -> dict[tuple[str | None, str], tuple[str, str]]:
    """(pipeline id, stage id) -> ('true'/'false' is_closed, is_won) from stage metadata.

    Also keyed (None, stage id): stage ids are unique across a portal's
    pipelines, so a deal whose pipeline and stage disagree still resolves.
    """
    flags: dict[tuple[str | None, str], tuple[str, str]] = {}
    for pipeline in pipelines:
        for stage in pipeline.get("stages", []):
            metadata = stage.get("metadata") or {}
            closed = str(metadata.get("isClosed", "")).lower() == "true"
            try:
                won = closed and float(metadata.get("probability", "")) == 1.0
            except (TypeError, ValueError):
                won = False
            value = (str(closed).lower(), str(won).lower())
            flags[(str(pipeline["id"]), str(stage["id"]))] = value
            flags.setdefault((None, str(stage["id"])), value)
    return flags


def stage_history(deal_id: str, record: Record) -> list[dict[str, str | None]]:
    """Every stage the deal entered, oldest first, from propertiesWithHistory (which lists newest first)."""
    entries = ((record.get("propertiesWithHistory") or {}).get(settings.STAGE)) or []
    rows: dict[tuple[str, str], dict[str, str | None]] = {}
    for entry in entries:
        stage, moment = text(entry.get("value")), parse_time(entry.get("timestamp"))
        if stage is not None and moment is not None:
            rows[(utc_iso(moment), stage)] = {"deal_id": deal_id, "stage": stage, "entered_at": utc_iso(moment)}
    return [rows[key] for key in sorted(rows)]


def latest_modified(records: list[Record]) -> str | None:
    newest = None
    for record in records:
        newest = later(newest, iso_utc((record.get("properties") or {}).get(settings.MODIFIED)))
    return newest


def later(a: str | None, b: str | None) -> str | None:
    return _pick(a, b, max)


def earlier(a: str | None, b: str | None) -> str | None:
    return _pick(a, b, min)


def _pick(a: str | None, b: str | None, choose: Callable) -> str | None:
    """The later/earlier of two timestamps, ignoring missing or unparseable ones."""
    moments = [m for m in (parse_time(a), parse_time(b)) if m is not None]
    return utc_iso(choose(moments)) if moments else None
