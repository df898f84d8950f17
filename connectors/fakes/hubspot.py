"""A fake HubSpot CRM v3 portal: real HTTP on 127.0.0.1, HubSpot's shapes, limits and quirks.

The store is typed (ids as ints, times as epoch milliseconds, amounts as
Decimal); HubSpot's string rendering happens only on the way out, with the
quirks real portals show: property values are strings, null may come as "",
dates as ISO or epoch-ms strings, a deal's currency code may be empty (it is
then in the portal currency), ids of very different lengths (7199 next to
719869649082) so string and number order disagree, archived records that keep
their old hs_lastmodifieddate, merged records that vanish except for the
survivor's hs_merged_object_ids, optional short pages that still carry
paging.next.

Endpoints: pipelines, properties, list (limit <= 100, <= 50 with
propertiesWithHistory, `archived`, `associations`), search (limit <= 200,
typed filters, 400 past the 10,000-result cap, no archived records), batch
read (<= 100 inputs, <= 50 with history), v4 deal->company associations batch
read, account details. Limits: the rolling 10-second burst budget with the
X-HubSpot-RateLimit-* headers, search's own per-second budget, a daily budget;
429 bodies carry policyName; 401 INVALID_AUTHENTICATION for a wrong token;
414 for a query string over 8,000 characters.

`from_canonical(folder)` seeds a portal from canonical export files (the demo
data) and `export_canonical(folder)` writes the store back out as canonical
files, so a pipeline run on the API and one on the files can be compared.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlencode

from werkzeug.wrappers import Request, Response

from connectors.fakes.server import FakeServer, Fault, json_response, request_target

PORTAL_CURRENCY = "USD"
CHURN_PROPERTY = "churn_date"  # custom company properties the demo maps to churned_at and mrr
MRR_PROPERTY = "mrr"
NUMBER, DATETIME, STRING = "number", "datetime", "string"
DEAL_PROPERTY_TYPES = {
    "hs_object_id": NUMBER, "dealname": STRING, "amount": NUMBER, "amount_in_home_currency": NUMBER,
    "deal_currency_code": STRING, "dealstage": STRING, "pipeline": STRING, "hubspot_owner_id": STRING,
    "createdate": DATETIME, "closedate": DATETIME, "hs_lastmodifieddate": DATETIME,
    "hs_merged_object_ids": STRING, "hs_is_closed": STRING, "hs_is_closed_won": STRING,
}
COMPANY_PROPERTY_TYPES = {
    "hs_object_id": NUMBER, "name": STRING, "lifecyclestage": STRING, "createdate": DATETIME,
    "hs_lastmodifieddate": DATETIME, "hs_lifecyclestage_customer_date": DATETIME,
    "hs_merged_object_ids": STRING, CHURN_PROPERTY: DATETIME, MRR_PROPERTY: NUMBER,
}
# Returned when a request names no properties (and always: id, created, modified).
DEFAULT_PROPERTIES = {
    "deals": ("dealname", "amount", "closedate", "pipeline", "dealstage", "createdate",
              "hs_lastmodifieddate", "hs_object_id"),
    "companies": ("name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"),
}
ALWAYS = ("createdate", "hs_lastmodifieddate", "hs_object_id")
# HubSpot's default sales pipeline: (stage id, label, isClosed, probability).
DEFAULT_STAGES = (
    ("appointmentscheduled", "Appointment Scheduled", False, 0.2),
    ("qualifiedtobuy", "Qualified To Buy", False, 0.4),
    ("presentationscheduled", "Presentation Scheduled", False, 0.6),
    ("decisionmakerboughtin", "Decision Maker Bought-In", False, 0.8),
    ("contractsent", "Contract Sent", False, 0.9),
    ("closedwon", "Closed Won", True, 1.0),
    ("closedlost", "Closed Lost", True, 0.0),
)
SEARCH_MAX_GROUPS, SEARCH_MAX_FILTERS_PER_GROUP, SEARCH_MAX_FILTERS = 5, 10, 25
HISTORY_BATCH_MESSAGE = ("The maximum number of inputs supported in a batch request for property histories "
                         "is 50. Please reduce the number of items and try again")
RATE_LIMIT_MESSAGES = {
    "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
    "SECONDLY": "You have reached your secondly limit.",
    "DAILY": "You have reached your daily limit.",
}


@dataclass
class Stage:
    id: str
    label: str
    is_closed: bool
    probability: float


@dataclass
class Pipeline:
    id: str
    label: str
    stages: list[Stage]

    def stage(self, stage_id: str) -> Stage | None:
        return next((s for s in self.stages if s.id == stage_id), None)


@dataclass
class FakeDeal:
    id: int
    name: str
    pipeline: str
    stage: str
    created: int  # epoch ms, like every time in the store
    modified: int
    amount: Decimal | None = None
    currency: str | None = None  # None: the portal currency
    owner_id: str | None = None
    closed: int | None = None
    company_ids: list[int] = field(default_factory=list)  # the first is the primary company
    history: list[tuple[str, int]] = field(default_factory=list)  # (stage, entered), oldest first
    custom: dict[str, str] = field(default_factory=dict)
    archived_at: int | None = None
    merged_ids: list[int] = field(default_factory=list)


@dataclass
class FakeCompany:
    id: int
    name: str
    created: int
    modified: int
    lifecycle: str = "lead"
    customer_since: int | None = None
    churned: int | None = None
    mrr: Decimal | None = None
    archived_at: int | None = None
    merged_ids: list[int] = field(default_factory=list)


class FakeHubSpot(FakeServer):
    """A HubSpot portal in memory. Mutate it between syncs with the create/update/archive/merge helpers."""

    def __init__(self, token: str = "fake-hubspot-token", *, currency: str = PORTAL_CURRENCY,
                 burst_limit: int = 100, burst_window: float = 10.0, search_per_second: int = 5,
                 daily_limit: int = 250_000, max_query_chars: int = 8000, search_cap: int = 10_000,
                 short_pages: bool = False, seed: int = 7):
        super().__init__()
        self.token = token
        self.currency = currency
        self.burst_limit, self.burst_window = burst_limit, burst_window
        self.search_per_second = search_per_second
        self.daily_limit, self.daily_used = daily_limit, 0
        self.max_query_chars = max_query_chars
        self.search_cap = search_cap
        self.short_pages = short_pages
        self.pipelines: dict[str, Pipeline] = {
            "default": Pipeline("default", "Sales Pipeline", [Stage(*s) for s in DEFAULT_STAGES]),
        }
        self.deals: dict[int, FakeDeal] = {}
        self.companies: dict[int, FakeCompany] = {}
        self._rng = random.Random(seed)
        self._preset_ids = [7199, 719869649082]  # string order and number order disagree
        self._issued_ids: set[int] = set()
        self._custom_deal_properties: set[str] = set()
        self._last_ms = 0
        self._throttled = 0

    # == the store ======================================================================
    def now(self) -> int:
        """Epoch ms, strictly increasing, so every change gets its own hs_lastmodifieddate."""
        with self._lock:
            self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
            return self._last_ms

    def new_id(self, kind: str = "companies") -> int:
        """A fresh id of 4 to 12 digits; the first two deals get 7199 and 719869649082."""
        with self._lock:
            while True:
                if kind == "deals" and self._preset_ids:
                    candidate = self._preset_ids.pop(0)
                else:
                    digits = self._rng.randint(4, 12)
                    candidate = self._rng.randrange(10 ** (digits - 1), 10 ** digits)
                if candidate not in self._issued_ids:
                    self._issued_ids.add(candidate)
                    return candidate

    def create_deal(self, name: str, *, pipeline: str = "default", stage: str | None = None,
                    amount: str | Decimal | None = None, currency: str | None = None,
                    company_ids: Iterable[int] = (), owner_id: str | None = None,
                    created: str | int | None = None, closed: str | int | None = None,
                    history: Sequence[tuple[str, str | int]] = (), custom: dict[str, str] | None = None) -> int:
        """A new deal; `history` lists the (stage, entered) it went through, the last being its stage."""
        with self._lock:
            at = self.now()
            created_ms = _ms(created) if created is not None else at
            entered = [(s, _ms(t)) for s, t in history]
            stage = stage or (entered[-1][0] if entered else self.pipelines[pipeline].stages[0].id)
            deal = FakeDeal(self.new_id("deals"), name, pipeline, stage, created_ms, at, _decimal(amount), currency,
                            owner_id, _ms(closed) if closed is not None else None, list(company_ids),
                            entered or [(stage, created_ms)], dict(custom or {}))
            self._custom_deal_properties |= deal.custom.keys()
            self._close_if_needed(deal, at)
            self.deals[deal.id] = deal
            return deal.id

    def update_deal(self, deal_id: int, **changes: object) -> None:
        """Change fields (name, pipeline, stage, amount, currency, owner_id, closed, company_ids, custom)."""
        self.update_deals([deal_id], **changes)

    def update_deals(self, deal_ids: Iterable[int], **changes: object) -> None:
        """A bulk update: every deal gets the same hs_lastmodifieddate, as in a HubSpot import."""
        with self._lock:
            at = self.now()
            for deal_id in deal_ids:
                deal = self.deals[deal_id]
                for name, value in changes.items():
                    if name == "stage" and value != deal.stage:
                        deal.history.append((str(value), at))
                    if name == "custom":
                        deal.custom.update(value)  # type: ignore[arg-type]
                        self._custom_deal_properties |= deal.custom.keys()
                        continue
                    setattr(deal, name, _typed_field(name, value))
                self._close_if_needed(deal, at)
                deal.modified = at

    def archive_deal(self, deal_id: int) -> None:
        """Move a deal to the recycle bin. Like HubSpot, this does not touch hs_lastmodifieddate."""
        with self._lock:
            self.deals[deal_id].archived_at = self.now()

    def restore_deal(self, deal_id: int) -> None:
        with self._lock:
            deal = self.deals[deal_id]
            deal.archived_at, deal.modified = None, self.now()

    def purge_deal(self, deal_id: int) -> None:
        """Delete for good, as HubSpot does with a deal 90 days in the recycle bin: no list returns it again."""
        with self._lock:
            del self.deals[deal_id]

    def merge_deals(self, primary_id: int, merged_id: int) -> None:
        """Merge `merged_id` into `primary_id`: it vanishes; the survivor lists it in hs_merged_object_ids."""
        self._merge(self.deals, primary_id, merged_id)

    def create_company(self, name: str, *, lifecycle: str = "lead", customer_since: str | int | None = None,
                       churned: str | int | None = None, mrr: str | Decimal | None = None,
                       created: str | int | None = None) -> int:
        with self._lock:
            at = self.now()
            company = FakeCompany(self.new_id(), name, _ms(created) if created is not None else at, at, lifecycle,
                                  _ms(customer_since) if customer_since is not None else None,
                                  _ms(churned) if churned is not None else None, _decimal(mrr))
            self.companies[company.id] = company
            return company.id

    def update_company(self, company_id: int, **changes: object) -> None:
        """Change fields (name, lifecycle, customer_since, churned, mrr)."""
        with self._lock:
            company = self.companies[company_id]
            for name, value in changes.items():
                setattr(company, name, _typed_field(name, value))
            company.modified = self.now()

    def archive_company(self, company_id: int) -> None:
        with self._lock:
            self.companies[company_id].archived_at = self.now()

    def purge_company(self, company_id: int) -> None:
        with self._lock:
            del self.companies[company_id]

    def merge_companies(self, primary_id: int, merged_id: int) -> None:
        self._merge(self.companies, primary_id, merged_id)

    def _merge(self, records: dict, primary_id: int, merged_id: int) -> None:
        with self._lock:
            gone = records.pop(merged_id)
            primary = records[primary_id]
            primary.merged_ids += [gone.id, *gone.merged_ids]
            primary.modified = self.now()

    def stage_of(self, deal: FakeDeal) -> Stage | None:
        pipeline = self.pipelines.get(deal.pipeline)
        return pipeline.stage(deal.stage) if pipeline else None

    def _close_if_needed(self, deal: FakeDeal, at: int) -> None:
        """HubSpot sets the close date when a deal enters a closed stage without one."""
        stage = self.stage_of(deal)
        if stage is not None and stage.is_closed and deal.closed is None:
            deal.closed = at

    # == canonical files ===============================================================
    @classmethod
    def from_canonical(cls, folder: Path, **options: object) -> FakeHubSpot:
        """A portal holding the deals, stage history and customers of a canonical export folder.

        Ids become HubSpot-style numbers (the first two deals get 7199 and
        719869649082); pipelines and stage metadata are derived from
        the deals' is_closed/is_won. Rows HubSpot could not hold are left out:
        no id, an unparseable date or amount, or flags that contradict their
        stage. Of repeated deal ids the latest updated_at wins.
        """
        fake = cls(**options)  # type: ignore[arg-type]
        deals = _latest_deals(_read_csv(folder / "deals.csv"))
        history: dict[str, list[tuple[str, int]]] = {}
        for row in _read_csv(folder / "deal_stage_history.csv"):
            entered = _maybe_ms(row.get("entered_at"))
            if row.get("deal_id") and row.get("stage") and entered is not None:
                history.setdefault(row["deal_id"], []).append((row["stage"], entered))
        fake.pipelines = _pipelines_from(deals, history)
        deal_ids = {row["deal_id"]: fake.new_id("deals") for row in deals}
        customers = [row for row in _read_csv(folder / "customers.csv")
                     if row.get("customer_id") and _maybe_ms(row.get("started_at")) is not None]
        accounts = list(dict.fromkeys([row["customer_id"] for row in customers]
                                      + [row["account_id"] for row in deals if row.get("account_id")]))
        company_ids = {account: fake.new_id() for account in accounts}
        owners = {owner: str(81_000_000 + n) for n, owner in
                  enumerate(dict.fromkeys(row["owner_id"] for row in deals if row.get("owner_id")))}
        first_deal: dict[str, dict[str, str]] = {}
        for row in deals:
            first_deal.setdefault(row.get("account_id") or "", row)
            stage = fake.pipelines[row["pipeline"]].stage(row["stage"])
            if stage is None or (stage.is_closed, stage.probability == 1.0) != (row["is_closed"], row["is_won"]):
                continue
            created = _ms(row["created_at"])
            deal = FakeDeal(
                deal_ids[row["deal_id"]], row.get("deal_name") or "", row["pipeline"], row["stage"], created,
                _ms(row["updated_at"]), _decimal(row.get("amount") or None), row.get("currency") or None,
                owners.get(row.get("owner_id") or ""), _maybe_ms(row.get("closed_at")),
                [company_ids[row["account_id"]]] if row.get("account_id") else [],
                sorted(history.get(row["deal_id"]) or [(row["stage"], created)], key=lambda entry: entry[1]),
            )
            if row["is_deleted"]:
                deal.archived_at = deal.modified
            fake.deals[deal.id] = deal
        by_customer = {row["customer_id"]: row for row in customers}
        for account, company_id in company_ids.items():
            fake.companies[company_id] = _company_from(company_id, by_customer.get(account),
                                                       first_deal.get(account))
        return fake

    def export_canonical(self, folder: Path) -> Path:
        """Write the store as canonical deals.csv, deal_stage_history.csv and customers.csv."""
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            deals = sorted(self.deals.values(), key=lambda d: d.id)
            companies = sorted(self.companies.values(), key=lambda c: c.id)
            deal_rows, history_rows = [], []
            for deal in deals:
                stage = self.stage_of(deal)
                closed, won = (stage.is_closed, stage.probability == 1.0) if stage else (None, None)
                deal_rows.append({
                    "deal_id": deal.id, "deal_name": deal.name,
                    "account_id": deal.company_ids[0] if deal.company_ids else "",
                    "owner_id": deal.owner_id or "", "pipeline": deal.pipeline, "stage": deal.stage,
                    "is_closed": _flag(closed), "is_won": _flag(won), "amount": _number_text(deal.amount) or "",
                    "currency": deal.currency or self.currency, "created_at": _iso(deal.created),
                    "closed_at": _iso(deal.closed) if deal.closed is not None else "",
                    "updated_at": _iso(deal.modified), "is_deleted": _flag(deal.archived_at is not None),
                })
                history_rows += [{"deal_id": deal.id, "stage": s, "entered_at": _iso(at)} for s, at in deal.history]
            customer_rows = [
                {"customer_id": c.id, "name": c.name, "started_at": _iso(started),
                 "churned_at": _iso(c.churned) if c.churned is not None else "", "mrr": _number_text(c.mrr) or "",
                 "is_deleted": _flag(c.archived_at is not None)}
                for c in companies if (started := _customer_start(c)) is not None
            ]
        _write_csv(folder / "deals.csv", deal_rows)
        _write_csv(folder / "deal_stage_history.csv", history_rows, header=("deal_id", "stage", "entered_at"))
        _write_csv(folder / "customers.csv", customer_rows,
                   header=("customer_id", "name", "started_at", "churned_at", "mrr", "is_deleted"))
        return folder

    # == HTTP =============================================================================
    def dispatch(self, request: Request) -> Response:
        if len(request.query_string) > self.max_query_chars:
            return Response("<html><body><h1>414 Request-URI Too Large</h1></body></html>", 414,
                            content_type="text/html")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "INVALID_AUTHENTICATION",
                          "Authentication credentials not found. This API supports OAuth 2.0 authentication "
                          "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")
        with self._lock:
            self.daily_used += 1
            if self.daily_used > self.daily_limit:
                return self._rate_limited("DAILY")
        if request.method == "POST" and request.path.endswith("/search"):
            over, _ = self.window_count("search", self.search_per_second, 1.0)
            if over:
                return self._rate_limited("SECONDLY")
            headers: dict[str, str] = {}
        else:
            over, remaining = self.window_count("burst", self.burst_limit, self.burst_window)
            if over:
                return self._rate_limited("TEN_SECONDLY_ROLLING")
            headers = self._limit_headers(remaining)
        for method, pattern, handler in self._routes():
            match = re.fullmatch(pattern, request.path)
            if match and request.method == method:
                with self._lock:
                    response = handler(request, *match.groups())
                response.headers.update(headers)
                return response
        return _error(404, "OBJECT_NOT_FOUND", f"No route for {request.method} {request.path}")

    def _routes(self) -> list[tuple[str, str, Callable[..., Response]]]:
        return [
            ("GET", r"/crm/v3/pipelines/deals", self._pipelines),
            ("GET", r"/crm/v3/properties/(deals|companies)", self._properties),
            ("GET", r"/crm/v3/objects/(deals|companies)", self._list),
            ("POST", r"/crm/v3/objects/(deals|companies)/search", self._search),
            ("POST", r"/crm/v3/objects/(deals|companies)/batch/read", self._batch_read),
            ("POST", r"/crm/v4/associations/deals/companies/batch/read", self._deal_companies),
            ("GET", r"/account-info/v3/details", self._account),
        ]

    def _limit_headers(self, remaining: int) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - self.daily_used)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(self.burst_window * 1000)),
            "X-HubSpot-RateLimit-Max": str(self.burst_limit),
            "X-HubSpot-RateLimit-Remaining": str(remaining),
            "X-HubSpot-Correlation-Id": str(uuid.uuid4()),
        }

    def _rate_limited(self, policy: str) -> Response:
        """A 429 with HubSpot's body; Retry-After only on every other burst 429, as HubSpot is inconsistent."""
        with self._lock:
            self._throttled += 1
            hint = policy != "DAILY" and self._throttled % 2 == 1
        return json_response(rate_limit_body(policy), 429, {"Retry-After": "1"} if hint else None)

    # -- handlers -------------------------------------------------------------------
    def _account(self, _request: Request) -> Response:
        return json_response({
            "portalId": 4242424, "accountType": "STANDARD", "timeZone": "US/Eastern",
            "companyCurrency": self.currency, "additionalCurrencies": ["EUR", "GBP"],
            "utcOffset": "-05:00", "utcOffsetMilliseconds": -18_000_000, "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        })

    def _pipelines(self, _request: Request) -> Response:
        created = _iso(1_600_000_000_000)
        return json_response({"results": [
            {"id": p.id, "label": p.label, "displayOrder": order, "archived": False,
             "createdAt": created, "updatedAt": created,
             "stages": [{"id": s.id, "label": s.label, "displayOrder": n, "archived": False,
                         "createdAt": created, "updatedAt": created,
                         "metadata": {"isClosed": _flag(s.is_closed), "probability": f"{s.probability:.1f}"},
                         "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT"} for n, s in enumerate(p.stages)]}
            for order, p in enumerate(self.pipelines.values())
        ]})

    def _properties(self, _request: Request, object_type: str) -> Response:
        types = self._property_types(object_type)
        return json_response({"results": [
            {"name": name, "label": name.replace("_", " ").title(), "type": kind,
             "fieldType": {"number": "number", "datetime": "date"}.get(kind, "text"),
             "groupName": f"{object_type[:-1]}information", "hubspotDefined": name.startswith("hs_")}
            for name, kind in types.items()
        ]})

    def _list(self, request: Request, object_type: str) -> Response:
        args = request.args
        history = _csv(args.get("propertiesWithHistory"))
        turn = self.turn_page(request_target(request), args.get("after") or None)
        try:
            limit = int(args.get("limit", "10"))
            start = int(base64.b64decode(turn.position).decode().strip()) if turn.position else 0
        except ValueError:
            return _error(400, "VALIDATION_ERROR", "Invalid input: limit or after")
        most = 50 if history else 100
        if not 1 <= limit <= most:
            return _error(400, "VALIDATION_ERROR", f"limit must be between 1 and {most}")
        archived = args.get("archived", "false") == "true"
        records = [r for r in self._records(object_type, archived) if r.id > start]
        page = records[:self._page_size(limit, len(records))]
        body: dict = {"results": [self._render(object_type, r, _csv(args.get("properties")), history,
                                               _csv(args.get("associations"))) for r in page]}
        token = self.next_page_token(turn, list_after(page[-1].id) if len(records) > len(page) else None)
        if token is not None:
            body["paging"] = {"next": {"after": token, "link": f"?{urlencode({'after': token})}"}}
        return json_response(body)

    def _search(self, request: Request, object_type: str) -> Response:
        query = request.get_json(silent=True)
        if not isinstance(query, dict):
            return _error(400, "VALIDATION_ERROR", "Invalid input JSON")
        groups = query.get("filterGroups") or []
        filters = [f for g in groups for f in g.get("filters", [])]
        try:
            limit, offset = int(query.get("limit", 10)), int(query.get("after") or 0)
        except (TypeError, ValueError):
            return _error(400, "VALIDATION_ERROR", "limit and after must be numbers")
        if not 1 <= limit <= 200:
            return _error(400, "VALIDATION_ERROR", "limit must be between 1 and 200")
        if (len(groups) > SEARCH_MAX_GROUPS or len(filters) > SEARCH_MAX_FILTERS
                or any(len(g.get("filters", [])) > SEARCH_MAX_FILTERS_PER_GROUP for g in groups)):
            return _error(400, "VALIDATION_ERROR", "Too many filterGroups or filters")
        if offset + limit > self.search_cap:
            return _error(400, "VALIDATION_ERROR",
                          f"Search cannot page beyond {self.search_cap} results (after={offset}, limit={limit})")
        # Keyset pages (hs_object_id GT the last id read) are a listing whose position is that id;
        # a paging fault ('hs_object_id>ID' in its route) answers from an earlier id, as a stale replica would.
        bound = next((f.get("value") for f in filters if _is_id_bound(f)), None)
        turn = self.turn_page(f"{request.path}?hs_object_id>{bound}", bound)
        if turn.position != bound:
            groups = _rebound(groups, turn.position)
        types = self._property_types(object_type)
        try:
            matches = [r for r in self._records(object_type, archived=False)
                       if self._matches(object_type, r, groups, types)]
        except (KeyError, ValueError, InvalidOperation) as exc:
            return _error(400, "VALIDATION_ERROR", f"Invalid filter: {exc}")
        for sort in reversed(query.get("sorts") or []):
            name, descending = _sort_spec(sort)
            matches.sort(key=lambda r, n=name: self._sort_key(object_type, r, n, types), reverse=descending)
        page = matches[offset:offset + self._page_size(limit, len(matches) - offset)]
        self.next_page_token(turn, str(max(r.id for r in page)) if page else None)  # the next page's bound
        body: dict = {"total": len(matches),
                      "results": [self._render(object_type, r, query.get("properties") or []) for r in page]}
        if offset + len(page) < len(matches):
            body["paging"] = {"next": {"after": str(offset + len(page))}}
        return json_response(body)

    def _batch_read(self, request: Request, object_type: str) -> Response:
        query = request.get_json(silent=True) or {}
        inputs = [str(i.get("id")) for i in query.get("inputs", [])]
        history = query.get("propertiesWithHistory") or []
        if history and len(inputs) > 50:
            return _error(400, "VALIDATION_ERROR", HISTORY_BATCH_MESSAGE)
        if len(inputs) > 100:
            return _error(400, "VALIDATION_ERROR", "Batch read is limited to 100 inputs")
        archived = request.args.get("archived", "false") == "true"
        found = {str(r.id): r for r in self._records(object_type, archived)}
        results = [self._render(object_type, found[i], query.get("properties") or [], history)
                   for i in inputs if i in found]
        missing = [i for i in inputs if i not in found]
        return self._batch_answer(results, missing, f"Could not get some {object_type[:-1].upper()} objects, "
                                  "they may be deleted or not exist. Check that ids are valid.")

    def _deal_companies(self, request: Request) -> Response:
        inputs = [str(i.get("id")) for i in (request.get_json(silent=True) or {}).get("inputs", [])]
        if len(inputs) > 100:
            return _error(400, "VALIDATION_ERROR", "Associations batch read is limited to 100 inputs")
        results, missing = [], []
        for deal_id in inputs:
            deal = self.deals.get(int(deal_id)) if deal_id.isdigit() else None
            if deal is None or deal.archived_at is not None or not deal.company_ids:
                missing.append(deal_id)
                continue
            results.append({"from": {"id": deal_id}, "to": [
                {"toObjectId": company, "associationTypes": (
                    [{"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"}] if n == 0 else [])
                    + [{"category": "HUBSPOT_DEFINED", "typeId": 341, "label": None}]}
                for n, company in enumerate(deal.company_ids)
            ]})
        return self._batch_answer(results, missing, "No associations found")

    # -- rendering ------------------------------------------------------------------
    def _records(self, object_type: str, archived: bool) -> list[FakeDeal] | list[FakeCompany]:
        store = self.deals if object_type == "deals" else self.companies
        return sorted((r for r in store.values() if (r.archived_at is not None) == archived),  # type: ignore[attr-defined]
                      key=lambda r: r.id)

    def _page_size(self, limit: int, available: int) -> int:
        """With short_pages, a page that is not the last holds one record less than asked for."""
        return limit - 1 if self.short_pages and available > limit > 1 else limit

    def _property_types(self, object_type: str) -> dict[str, str]:
        if object_type == "companies":
            return dict(COMPANY_PROPERTY_TYPES)
        return {name: STRING for name in self._custom_deal_properties} | DEAL_PROPERTY_TYPES

    def _values(self, object_type: str, record: FakeDeal | FakeCompany) -> dict[str, str | None]:
        """Every property of a record as HubSpot renders it (strings; "" or None for no value)."""
        values = self._deal_values(record) if isinstance(record, FakeDeal) else self._company_values(record)
        blank = "" if record.id % 2 else None  # some portals send "" where they mean null
        return {name: blank if values.get(name) is None else values[name]
                for name in self._property_types(object_type)}

    def _deal_values(self, deal: FakeDeal) -> dict[str, str | None]:
        stage = self.stage_of(deal)
        code = deal.currency
        if code == self.currency and deal.id % 5 == 0:
            code = None  # single-currency habits: no code means the portal currency
        return {
            **deal.custom,
            "hs_object_id": str(deal.id), "dealname": deal.name, "pipeline": deal.pipeline,
            "dealstage": deal.stage, "amount": _number_text(deal.amount), "deal_currency_code": code,
            "hubspot_owner_id": deal.owner_id, "createdate": _iso(deal.created),
            "closedate": _date_text(deal.closed, epoch=deal.id % 3 == 0),
            "hs_lastmodifieddate": _iso(deal.modified),
            "hs_merged_object_ids": ";".join(map(str, deal.merged_ids)) or None,
            "hs_is_closed": _flag(stage.is_closed) if stage else None,
            "hs_is_closed_won": _flag(stage.is_closed and stage.probability == 1.0) if stage else None,
        }

    def _company_values(self, company: FakeCompany) -> dict[str, str | None]:
        return {
            "hs_object_id": str(company.id), "name": company.name, "lifecyclestage": company.lifecycle,
            "createdate": _iso(company.created), "hs_lastmodifieddate": _iso(company.modified),
            "hs_lifecyclestage_customer_date": _date_text(company.customer_since, epoch=company.id % 3 == 0),
            "hs_merged_object_ids": ";".join(map(str, company.merged_ids)) or None,
            CHURN_PROPERTY: _date_text(company.churned), MRR_PROPERTY: _number_text(company.mrr),
        }

    def _render(self, object_type: str, record: FakeDeal | FakeCompany, properties: Sequence[str],
                history: Sequence[str] = (), associations: Sequence[str] = ()) -> dict:
        values = self._values(object_type, record)
        wanted = list(dict.fromkeys([*(properties or DEFAULT_PROPERTIES[object_type]), *ALWAYS]))
        rendered: dict = {
            "id": str(record.id),
            "properties": {name: values[name] for name in wanted if name in values},  # unknown names: ignored
            "createdAt": _iso(record.created), "updatedAt": _iso(record.modified),
            "archived": record.archived_at is not None,
        }
        if record.archived_at is not None:
            rendered["archivedAt"] = _iso(record.archived_at)
        if history:
            rendered["propertiesWithHistory"] = {
                name: self._history(record, name, values) for name in history if name in values
            }
        if isinstance(record, FakeDeal) and "companies" in associations and record.company_ids:
            links = [{"id": str(record.company_ids[0]), "type": "deal_to_company"}]
            links += [{"id": str(c), "type": "deal_to_company_unlabeled"} for c in record.company_ids]
            rendered["associations"] = {"companies": {"results": links}}
        return rendered

    def _history(self, record: FakeDeal | FakeCompany, name: str, values: dict[str, str | None]) -> list[dict]:
        """A property's history, newest first (dealstage keeps every change; others just the current value)."""
        if isinstance(record, FakeDeal) and name == "dealstage":
            changes = [(stage, at) for stage, at in record.history]
        else:
            changes = [(values[name], record.modified)] if values.get(name) else []
        return [{"value": value, "timestamp": _iso(at), "sourceType": "CRM_UI", "sourceId": "userId:4242",
                 "updatedByUserId": 4242} for value, at in reversed(changes)]

    # -- search ---------------------------------------------------------------------
    def _matches(self, object_type: str, record: FakeDeal | FakeCompany, groups: list[dict],
                 types: dict[str, str]) -> bool:
        if not groups:
            return True
        values = self._values(object_type, record)
        return any(all(_test(values.get(f["propertyName"]), f, types.get(f["propertyName"], STRING))
                       for f in group.get("filters", [])) for group in groups)

    def _sort_key(self, object_type: str, record: FakeDeal | FakeCompany, name: str,
                  types: dict[str, str]) -> tuple:
        value = self._values(object_type, record).get(name)
        return (value in (None, ""), _typed(value, types.get(name, STRING)) if value not in (None, "") else 0)

    def _batch_answer(self, results: list[dict], missing: list[str], message: str) -> Response:
        stamp = _iso(self.now())
        body: dict = {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
        if missing:
            body["numErrors"] = 1
            body["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND", "message": message,
                               "context": {"ids": missing}}]
        return json_response(body, 207 if missing else 200)


# == faults tests and the demo inject ====================================================
def rate_limit_body(policy: str) -> dict:
    return {"status": "error", "message": RATE_LIMIT_MESSAGES[policy], "errorType": "RATE_LIMIT",
            "correlationId": str(uuid.uuid4()), "policyName": policy, "requestId": str(uuid.uuid4())}


def rate_limit_fault(policy: str = "TEN_SECONDLY_ROLLING", *, retry_after: str | None = None,
                     route: str = "", times: int = 1) -> Fault:
    """A HubSpot 429: a burst limit (retry) or, with policy DAILY, the daily limit (stop for today)."""
    return Fault(kind="status", route=route, status=429, body=json.dumps(rate_limit_body(policy)),
                 headers={"Retry-After": retry_after} if retry_after else {}, times=times)


def expired_token_fault(route: str = "", times: int = 1) -> Fault:
    return Fault(kind="status", route=route, status=401, times=times, body=json.dumps({
        "status": "error", "category": "EXPIRED_AUTHENTICATION", "correlationId": str(uuid.uuid4()),
        "message": "The OAuth token used to make this call expired 2 minute(s) ago.",
    }))


def list_after(record_id: int) -> str:
    """The list cursor that resumes after `record_id`: opaque base64 text, like HubSpot's ("NTI1Cg==")."""
    return base64.b64encode(f"{record_id}\n".encode()).decode()


# == module helpers =====================================================================
def _error(status: int, category: str, message: str) -> Response:
    return json_response({"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                          "category": category}, status)


def _ms(value: str | int) -> int:
    if isinstance(value, int):
        return value
    moment = dt.datetime.fromisoformat(value.strip())
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return int(moment.timestamp() * 1000)


def _maybe_ms(value: str | None) -> int | None:
    try:
        return _ms(value) if value else None
    except ValueError:
        return None


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _date_text(ms: int | None, epoch: bool = False) -> str | None:
    if ms is None:
        return None
    return str(ms) if epoch else _iso(ms)


def _decimal(value: str | Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _number_text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()


def _csv(value: str | None) -> list[str]:
    return [part for part in (value or "").split(",") if part]


def _typed_field(name: str, value: object) -> object:
    """A field value from a test's friendly form (ISO strings for times, strings for money)."""
    if name in ("created", "closed", "customer_since", "churned") and value is not None:
        return _ms(value)  # type: ignore[arg-type]
    if name in ("amount", "mrr"):
        return _decimal(value)  # type: ignore[arg-type]
    if name == "company_ids":
        return list(value)  # type: ignore[call-overload]
    return value


def _typed(value: object, kind: str) -> object:
    text = str(value)
    if kind == NUMBER:
        return Decimal(text)
    if kind == DATETIME:
        return int(text) if text.lstrip("-").isdigit() else _ms(text)
    return text


def _test(value: str | None, condition: dict, kind: str) -> bool:
    """One search filter, compared by the property's type (numbers as numbers, as HubSpot does)."""
    operator = condition["operator"]
    present = value not in (None, "")
    if operator == "HAS_PROPERTY":
        return present
    if operator == "NOT_HAS_PROPERTY":
        return not present
    if not present:
        return False
    actual = _typed(value, kind)
    if operator in ("IN", "NOT_IN"):
        return (actual in {_typed(v, kind) for v in condition["values"]}) == (operator == "IN")
    if operator == "BETWEEN":
        return _typed(condition["value"], kind) <= actual <= _typed(condition["highValue"], kind)  # type: ignore[operator]
    expected = _typed(condition["value"], kind)
    comparisons = {"EQ": actual == expected, "NEQ": actual != expected}
    if operator in comparisons:
        return comparisons[operator]
    return {"LT": actual < expected, "LTE": actual <= expected,  # type: ignore[operator]
            "GT": actual > expected, "GTE": actual >= expected}[operator]  # type: ignore[operator]


def _is_id_bound(condition: dict) -> bool:
    """The keyset condition of a search page: hs_object_id GT the last id read."""
    return condition.get("propertyName") == "hs_object_id" and condition.get("operator") == "GT"


def _rebound(groups: list[dict], bound: str | None) -> list[dict]:
    """Filter groups with their hs_object_id GT condition moved to `bound` (None: dropped, from the first id)."""
    moved = []
    for group in groups:
        filters = [{**f, "value": bound} if _is_id_bound(f) else f
                   for f in group.get("filters", []) if bound is not None or not _is_id_bound(f)]
        moved.append({**group, "filters": filters})
    return moved


def _sort_spec(sort: str | dict) -> tuple[str, bool]:
    """Sorts come as {"propertyName", "direction"} (the docs) or as strings (the spec)."""
    if isinstance(sort, dict):
        return sort["propertyName"], sort.get("direction", "ASCENDING") == "DESCENDING"
    return sort.lstrip("-"), sort.startswith("-")


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, rows: list[dict], header: Iterable[str] | None = None) -> None:
    columns = list(header or (rows[0].keys() if rows else []))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _latest_deals(rows: list[dict[str, str]]) -> list[dict]:
    """One row per deal id (latest updated_at; a tie goes to the later row), typed, unholdable rows dropped."""
    latest: dict[str, tuple[int, int, dict]] = {}
    for line, row in enumerate(rows):
        if not row.get("deal_id") or not row.get("pipeline") or not row.get("stage"):
            continue
        created, updated = _maybe_ms(row.get("created_at")), _maybe_ms(row.get("updated_at"))
        flags = [(row.get(name) or "").strip().lower() for name in ("is_closed", "is_won", "is_deleted")]
        try:
            _decimal(row.get("amount") or None)
        except InvalidOperation:
            continue
        if created is None or (row.get("closed_at") and _maybe_ms(row["closed_at"]) is None):
            continue
        if any(flag not in ("true", "false", "") for flag in flags):
            continue
        typed = {**row, "is_closed": flags[0] == "true", "is_won": flags[1] == "true",
                 "is_deleted": flags[2] == "true", "updated_at": row.get("updated_at") if updated else
                 row["created_at"]}
        version = (updated or created, line)
        if row["deal_id"] not in latest or version > latest[row["deal_id"]][:2]:
            latest[row["deal_id"]] = (*version, typed)
    return [entry[2] for entry in latest.values()]


def _pipelines_from(deals: list[dict], history: dict[str, list[tuple[str, int]]]) -> dict[str, Pipeline]:
    """Pipelines whose stage metadata agrees with most deals: closed stages from is_closed, won from is_won."""
    votes: dict[str, dict[str, list[tuple[bool, bool]]]] = {}
    for row in deals:
        stages = votes.setdefault(row["pipeline"], {})
        for stage, _ in sorted(history.get(row["deal_id"], []), key=lambda entry: entry[1]):
            stages.setdefault(stage, [])
        stages.setdefault(row["stage"], []).append((row["is_closed"], row["is_won"]))
    known = [s[0] for s in DEFAULT_STAGES]
    pipelines = {}
    for pipeline_id, stages in votes.items():
        ordered = sorted(stages, key=lambda s: (known.index(s) if s in known else len(known), s))
        flags = {s: max(set(v), key=v.count) if v else (False, False) for s, v in stages.items()}
        open_stages = [s for s in ordered if not flags[s][0]]
        pipelines[pipeline_id] = Pipeline(pipeline_id, pipeline_id.replace("_", " ").title(), [
            Stage(s, s, flags[s][0],
                  (1.0 if flags[s][1] else 0.0) if flags[s][0]
                  else round(min(0.9, max(0.1, (open_stages.index(s) + 1) / (len(open_stages) + 1))), 1))
            for s in ordered
        ])
    return pipelines


def _company_from(company_id: int, customer: dict[str, str] | None, first_deal: dict[str, str] | None) -> FakeCompany:
    """A company for a canonical customer (lifecycle customer) or for a deal's account that is not one yet."""
    times = [t for t in (_maybe_ms((first_deal or {}).get("created_at")),
                         _maybe_ms((customer or {}).get("started_at"))) if t is not None]
    created = min(times)
    if customer is None:
        name = (first_deal or {}).get("deal_name", "").split(" - ")[0]
        return FakeCompany(company_id, name, created, created, "opportunity")
    since = _ms(customer["started_at"])
    churned = _maybe_ms(customer.get("churned_at"))
    try:
        mrr = _decimal(customer.get("mrr") or None)
    except InvalidOperation:
        mrr = None
    return FakeCompany(company_id, customer.get("name") or "", created, max(t for t in (created, since, churned or 0)),
                       "customer", since, churned, mrr)


def _customer_start(company: FakeCompany) -> int | None:
    if company.customer_since is not None:
        return company.customer_since
    return company.created if company.lifecycle == "customer" else None
