"""A fake Pipedrive account over real HTTP (CRM_APIS.md §3 and §7).

Routes: API v2 `deals` (and `deals/archived`), `organizations`, `stages`,
`pipelines` with cursor paging (`additional_data.next_cursor`, null at the
end), `updated_since` (inclusive), `status` and `sort_by`/`sort_direction`;
API v1 `deals/{id}/flow`, `dealFields`, `organizationFields` with start/limit
paging (`more_items_in_collection`, `next_start`) and `users/me`.

Limits as Pipedrive applies them: the `x-api-token` header (or the
`api_token` query parameter) checked on every call (401 `unauthorized
access`); a per-token 2-second window with the `x-ratelimit-*` headers and
429 `Request over limit` plus `Retry-After`; a daily token budget where each
call costs tokens (v2 lists less than v1) and, once spent, 429 with
`x-daily-requests-left: 0` until it is reset.

Quirks reproduced on purpose: deleting a deal does not bump its update_time
(tap-pipedrive#60); deleted deals appear only with `status=deleted`; archived
deals only under `/deals/archived`; the flow is newest first and mixes
activities with deal changes; v1 times are 'YYYY-MM-DD HH:MM:SS' UTC and v2
times RFC 3339; custom fields are keyed by 40-char hashes (v2: under
`custom_fields`, monetary values as {value, currency}, dates as 'YYYY-MM-DD').
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable
from pathlib import Path

from werkzeug.wrappers import Request, Response

from connectors.fakes.server import FakeServer, json_response, request_target

V2_MAX_LIMIT = 500
V1_MAX_LIMIT = 500
# Token costs per call: v2 lists are cheaper than v1 ones (Pipedrive's token-based limits).
TOKEN_COST = {"v2": 10, "v1": 20, "single": 2}
ERROR_INFO = "Please check developers.pipedrive.com for more information about Pipedrive API."

# Custom fields of the seeded account: name -> field type.
DEAL_CUSTOM_FIELDS = {"Contract value": "monetary", "Deal type": "enum"}
DEAL_TYPE_OPTIONS = ("New business", "Expansion")
ORG_CUSTOM_FIELDS = {"Customer since": "date", "Churn date": "date", "MRR": "monetary"}
# The canonical demo's HubSpot-style stages become these Pipedrive stages (won/lost are statuses).
CANONICAL_STAGES = {
    "appointmentscheduled": "Appointment scheduled",
    "qualifiedtobuy": "Qualified to buy",
    "presentationscheduled": "Presentation scheduled",
    "decisionmakerboughtin": "Decision maker bought in",
    "contractsent": "Contract sent",
}
CANONICAL_PIPELINES = {"new_business": "New business", "expansion": "Expansion"}


def field_key(name: str) -> str:
    """Pipedrive keys custom fields by a 40-character hash."""
    return hashlib.sha1(name.encode()).hexdigest()  # an identifier, not a security measure


def list_cursor(key: list) -> str:
    """The v2 cursor that resumes after the record with sort key `key` ([sort value, id]): opaque base64."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def v1_time(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else None


def v2_time(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _parse_iso(text: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except (AttributeError, ValueError):
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class PipedriveStore:
    """A seeded, mutable Pipedrive account. Every mutation stamps update_time like the real one.

    Records are kept in their v2 shape with datetimes; the server renders them.
    """

    def __init__(self, clock: Callable[[], dt.datetime] = _utc_now, default_currency: str = "USD"):
        self.clock = clock
        self.default_currency = default_currency
        self.lock = threading.RLock()
        self.pipelines: dict[int, dict] = {}
        self.stages: dict[int, dict] = {}
        self.deals: dict[int, dict] = {}
        self.orgs: dict[int, dict] = {}
        self.flows: dict[int, list[dict]] = {}  # deal id -> flow items, oldest first
        self._ids = itertools.count(1)
        self._change_ids = itertools.count(1)
        self.deal_fields = _field_list(DEAL_CUSTOM_FIELDS, _DEAL_STANDARD_FIELDS)
        self.org_fields = _field_list(ORG_CUSTOM_FIELDS, _ORG_STANDARD_FIELDS)

    # -- setup ---------------------------------------------------------------
    def add_pipeline(self, name: str, stage_names: list[str]) -> int:
        with self.lock:
            pipeline_id = len(self.pipelines) + 1
            now = self.clock()
            self.pipelines[pipeline_id] = {"id": pipeline_id, "name": name, "order_nr": pipeline_id,
                                           "add_time": now, "update_time": now}
            for order, stage_name in enumerate(stage_names, 1):
                stage_id = len(self.stages) + 1
                self.stages[stage_id] = {"id": stage_id, "name": stage_name, "pipeline_id": pipeline_id,
                                         "order_nr": order, "add_time": now, "update_time": now}
            return pipeline_id

    def stage_id(self, pipeline_id: int, name: str) -> int:
        return next(s["id"] for s in self.stages.values() if s["pipeline_id"] == pipeline_id and s["name"] == name)

    def first_stage(self, pipeline_id: int) -> int:
        return min((s for s in self.stages.values() if s["pipeline_id"] == pipeline_id),
                   key=lambda s: s["order_nr"])["id"]

    # -- organizations -------------------------------------------------------
    def add_org(self, name: str, *, add_time: dt.datetime | None = None, owner_id: int = 1,
                update_time: dt.datetime | None = None, **custom: object) -> int:
        """A new organization; custom fields by name, e.g. customer_since=date(...), mrr=(100, 'USD')."""
        with self.lock:
            org_id = next(self._ids)
            now = self.clock()
            self.orgs[org_id] = {"id": org_id, "name": name, "owner_id": owner_id, "add_time": add_time or now,
                                 "update_time": update_time or now, "is_deleted": False, "custom_fields": {}}
            self._set_custom(self.orgs[org_id], ORG_CUSTOM_FIELDS, custom)
            return org_id

    def update_org(self, org_id: int, *, name: str | None = None, **custom: object) -> None:
        with self.lock:
            org = self.orgs[org_id]
            if name is not None:
                org["name"] = name
            self._set_custom(org, ORG_CUSTOM_FIELDS, custom)
            org["update_time"] = self.clock()

    def delete_org(self, org_id: int) -> None:
        """Delete like Pipedrive: the organization drops out of every list, and no list says so."""
        with self.lock:
            self.orgs[org_id]["is_deleted"] = True

    # -- deals ---------------------------------------------------------------
    def add_deal(self, title: str, *, org_id: int | None, pipeline_id: int, value: float | None = 1000.0,
                 currency: str | None = "USD", owner_id: int = 1, stage_id: int | None = None,
                 add_time: dt.datetime | None = None, **custom: object) -> int:
        with self.lock:
            deal_id = next(self._ids)
            now = self.clock()
            self.deals[deal_id] = {
                "id": deal_id, "title": title, "creator_user_id": owner_id, "owner_id": owner_id,
                "person_id": None, "org_id": org_id, "pipeline_id": pipeline_id,
                "stage_id": stage_id or self.first_stage(pipeline_id), "value": value, "currency": currency,
                "add_time": add_time or now, "update_time": add_time or now, "stage_change_time": None,
                "status": "open", "is_deleted": False, "is_archived": False, "archive_time": None,
                "won_time": None, "lost_time": None, "close_time": None, "lost_reason": None,
                "expected_close_date": None, "probability": None, "visible_to": 3, "label_ids": [],
                "custom_fields": {},
            }
            self.flows[deal_id] = []
            self._set_custom(self.deals[deal_id], DEAL_CUSTOM_FIELDS, custom)
            return deal_id

    def update_deal(self, deal_id: int, at: dt.datetime | None = None, **changes: object) -> None:
        """Change standard fields (title, value, currency, org_id, owner_id) or custom ones by name."""
        with self.lock:
            deal, at = self.deals[deal_id], at or self.clock()
            custom = {k: v for k, v in changes.items() if k not in deal}
            for key, value in changes.items():
                if key in deal:
                    self._log(deal_id, key, deal[key], value, at)
                    deal[key] = value
            self._set_custom(deal, DEAL_CUSTOM_FIELDS, custom)
            deal["update_time"] = at

    def move_deal(self, deal_id: int, stage_id: int, at: dt.datetime | None = None) -> None:
        """Move to another stage (of any pipeline), logged in the flow as a stage_id change."""
        with self.lock:
            deal, at = self.deals[deal_id], at or self.clock()
            self._log(deal_id, "stage_id", deal["stage_id"], stage_id, at)
            if self.stages[stage_id]["pipeline_id"] != deal["pipeline_id"]:
                self._log(deal_id, "pipeline_id", deal["pipeline_id"], self.stages[stage_id]["pipeline_id"], at)
                deal["pipeline_id"] = self.stages[stage_id]["pipeline_id"]
            deal["stage_id"] = stage_id
            deal["stage_change_time"] = deal["update_time"] = at

    def close_deal(self, deal_id: int, won: bool, at: dt.datetime | None = None) -> None:
        with self.lock:
            deal, at = self.deals[deal_id], at or self.clock()
            status = "won" if won else "lost"
            self._log(deal_id, "status", deal["status"], status, at)
            deal["status"] = status
            deal["won_time" if won else "lost_time"] = deal["close_time"] = at
            deal["update_time"] = at

    def reopen_deal(self, deal_id: int) -> None:
        with self.lock:
            deal, at = self.deals[deal_id], self.clock()
            self._log(deal_id, "status", deal["status"], "open", at)
            deal.update(status="open", won_time=None, lost_time=None, close_time=None, update_time=at)

    def delete_deal(self, deal_id: int) -> None:
        """Delete like Pipedrive: status 'deleted', and update_time left as it was (tap-pipedrive#60)."""
        with self.lock:
            self.deals[deal_id].update(status="deleted", is_deleted=True)

    def merge_deals(self, merged_id: int, into_id: int) -> None:
        """Merge a duplicate into another deal: the duplicate is deleted, the survivor updated."""
        with self.lock:
            self.delete_deal(merged_id)
            self.deals[into_id]["update_time"] = self.clock()

    def archive_deal(self, deal_id: int) -> None:
        with self.lock:
            now = self.clock()
            self.deals[deal_id].update(is_archived=True, archive_time=now, update_time=now)

    def add_activity(self, deal_id: int, subject: str = "Call") -> None:
        """A flow item that is not a deal change (the connector must skip it)."""
        with self.lock:
            at = self.clock()
            self.flows[deal_id].append({"object": "activity", "timestamp": at,
                                        "data": {"id": next(self._change_ids), "subject": subject,
                                                 "deal_id": deal_id, "add_time": at}})

    def _log(self, deal_id: int, key: str, old: object, new: object, at: dt.datetime) -> None:
        if old == new:
            return
        self.flows[deal_id].append({"object": "dealChange", "timestamp": at, "data": {
            "id": next(self._change_ids), "item_id": deal_id, "user_id": 1, "field_key": key,
            "old_value": None if old is None else str(old), "new_value": None if new is None else str(new),
            "is_bulk_update_flag": None, "log_time": at, "change_source": "app", "additional_data": {},
        }})

    def _set_custom(self, record: dict, fields: dict[str, str], values: dict[str, object]) -> None:
        """Custom values by snake_case name, stored as v2 renders them."""
        names = {re.sub(r"\W+", "_", name.lower()).strip("_"): name for name in fields}
        for attr, value in values.items():
            name = names[attr]
            kind = fields[name]
            if value is None:
                stored = None
            elif kind == "date":
                stored = value.isoformat()
            elif kind == "monetary":
                amount, currency = value
                stored = {"value": amount, "currency": currency}
            elif kind == "enum":
                stored = DEAL_TYPE_OPTIONS.index(value) + 1
            else:
                stored = value
            record["custom_fields"][field_key(name)] = stored

    def custom(self, record: dict, name: str) -> object:
        return record["custom_fields"].get(field_key(name))

    # -- canonical demo data in, canonical export files out ---------------------------
    @classmethod
    def from_canonical(cls, folder: Path, deal_step: int = 1, **options: object) -> PipedriveStore:
        """An account holding the demo's canonical deals (every `deal_step`-th), their stage
        history and all customers, as Pipedrive would hold them.

        Rows an API cannot hold (no id, unparseable dates or amounts) are left out;
        won/lost closing stages become statuses, the last open stage stays the deal's stage.
        """
        store = cls(**options)
        pipelines = {key: store.add_pipeline(name, list(CANONICAL_STAGES.values()))
                     for key, name in CANONICAL_PIPELINES.items()}
        deals = _latest_valid_deals(folder / "deals.csv")[::deal_step]
        history = _read_history(folder / "deal_stage_history.csv")
        customers = _csv_rows(folder / "customers.csv")
        orgs: dict[str, int] = {}
        for row in customers:
            started = _parse_iso(row["started_at"])
            churned = _parse_iso(row["churned_at"] or "")
            orgs[row["customer_id"]] = store.add_org(
                row["name"], add_time=started, update_time=max(filter(None, (started, churned))),
                customer_since=started.date(), churn_date=churned.date() if churned else None,
                mrr=(float(row["mrr"]), "USD") if row["mrr"] else None,
            )
        for row in deals:
            created = _parse_iso(row["created_at"])
            if row["account_id"] not in orgs:
                orgs[row["account_id"]] = store.add_org(row["deal_name"].split(" - ")[0], add_time=created,
                                                        update_time=created)
            store._seed_deal(row, orgs[row["account_id"]], pipelines[row["pipeline"]],
                             history.get(row["deal_id"], []))
        return store

    def _seed_deal(self, row: dict, org_id: int, pipeline_id: int,
                   history: list[tuple[str, dt.datetime]]) -> None:
        created, updated = _parse_iso(row["created_at"]), _parse_iso(row["updated_at"])
        open_stages = [(CANONICAL_STAGES[s], at) for s, at in history if s in CANONICAL_STAGES]
        current = CANONICAL_STAGES.get(row["stage"])
        if current and (not open_stages or open_stages[-1][0] != current):
            open_stages.append((current, updated))
        first = self.stage_id(pipeline_id, open_stages[0][0]) if open_stages else None
        deal_id = self.add_deal(
            row["deal_name"], org_id=org_id, pipeline_id=pipeline_id, stage_id=first,
            value=float(row["amount"]) if row["amount"] else None, currency=row["currency"] or None,
            owner_id=int(re.sub(r"\D", "", row["owner_id"]) or 1), add_time=created,
            deal_type=self.pipelines[pipeline_id]["name"],
        )
        for stage, at in open_stages[1:]:
            self.move_deal(deal_id, self.stage_id(pipeline_id, stage), at=at)
        if row["is_closed"] == "true":
            self.close_deal(deal_id, won=row["is_won"] == "true", at=_parse_iso(row["closed_at"]))
        self.deals[deal_id]["update_time"] = updated or created
        if row.get("is_deleted") == "true":
            self.delete_deal(deal_id)

    def export_canonical(self, folder: Path) -> Path:
        """This account as canonical export files (deals, deal_stage_history, customers),
        written straight from the store, independently of the connector. Every organization is
        a customers row, flagged no customer (Pipedrive has no such notion), with its
        "Customer since" as started_at and its add_time as created_at."""
        folder.mkdir(parents=True, exist_ok=True)
        deal_rows, history_rows = [], []
        for deal in self.deals.values():
            status = deal["status"]
            closed_at = deal["won_time"] if status == "won" else deal["lost_time"] if status == "lost" else None
            deal_rows.append({
                "deal_id": deal["id"], "deal_name": deal["title"], "account_id": deal["org_id"] or "",
                "owner_id": deal["owner_id"], "pipeline": self.pipelines[deal["pipeline_id"]]["name"],
                "stage": self.stages[deal["stage_id"]]["name"], "is_closed": str(closed_at is not None).lower(),
                "is_won": str(status == "won").lower(), "amount": "" if deal["value"] is None else deal["value"],
                "currency": deal["currency"] or ("" if deal["value"] is None else self.default_currency),
                "created_at": v2_time(deal["add_time"]),
                "closed_at": v2_time(closed_at) or "", "updated_at": v2_time(deal["update_time"]),
                "is_deleted": str(status == "deleted").lower(),
            })
            moves = [i["data"] for i in self.flows[deal["id"]]
                     if i["object"] == "dealChange" and i["data"]["field_key"] == "stage_id"]
            first = int(moves[0]["old_value"]) if moves else deal["stage_id"]
            history_rows.append({"deal_id": deal["id"], "stage": self.stages[first]["name"],
                                 "entered_at": v2_time(deal["add_time"])})
            history_rows += [{"deal_id": deal["id"], "stage": self.stages[int(m["new_value"])]["name"],
                              "entered_at": v2_time(m["log_time"])} for m in moves]
        customers = [
            {"customer_id": org["id"], "name": org["name"], "started_at": _midnight(self.custom(org, "Customer since")),
             "churned_at": _midnight(self.custom(org, "Churn date")),
             "mrr": (self.custom(org, "MRR") or {}).get("value", ""),
             "is_customer": "false", "created_at": v2_time(org["add_time"])}
            for org in self.orgs.values() if not org["is_deleted"]
        ]
        _write_csv(folder / "deals.csv", deal_rows)
        _write_csv(folder / "deal_stage_history.csv", history_rows)
        _write_csv(folder / "customers.csv", customers)
        return folder


class FakePipedrive(FakeServer):
    """The HTTP face of a `PipedriveStore`, with Pipedrive's auth, paging and limits.

    `page_cap` lowers the v2 page size below the requested limit, so tests can
    page through a small account; `daily_budget` (tokens) enables the daily limit.
    """

    def __init__(self, store: PipedriveStore, token: str, *, requests_per_2s: int = 20,
                 daily_budget: int | None = None, page_cap: int = V2_MAX_LIMIT):
        super().__init__()
        self.store = store
        self.token = token
        self.requests_per_2s = requests_per_2s
        self.daily_budget = daily_budget
        self.tokens_spent = 0
        self.page_cap = page_cap
        self.throttled = 0

    def reset_daily_budget(self, budget: int | None = None) -> None:
        with self._lock:
            self.tokens_spent = 0
            self.daily_budget = budget

    # -- routing -----------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        supplied = request.headers.get("x-api-token") or request.args.get("api_token")
        if supplied != self.token:
            return _error(401, "unauthorized access")
        kind, handler, arg = self._route(request.path)
        if handler is None:
            return _error(404, f"Unknown method {request.path}")
        if request.method != "GET":
            return _error(405, "Method not allowed")
        limited, remaining = self._charge(kind)
        if limited is not None:
            return limited
        with self.store.lock:
            response = handler(request, arg)
        response.headers.update(self._rate_headers(remaining))
        return response

    def _route(self, path: str) -> tuple[str, Callable | None, object]:
        routes: dict[str, tuple[str, Callable]] = {
            "/api/v2/deals": ("v2", self._deals),
            "/api/v2/deals/archived": ("v2", self._archived_deals),
            "/api/v2/organizations": ("v2", self._organizations),
            "/api/v2/stages": ("v2", self._stages),
            "/api/v2/pipelines": ("v2", self._pipelines),
            "/api/v1/dealFields": ("v1", self._deal_fields),
            "/api/v1/organizationFields": ("v1", self._org_fields),
            "/api/v1/users/me": ("single", self._me),
        }
        if path in routes:
            kind, handler = routes[path]
            return kind, handler, None
        flow = re.fullmatch(r"/api/v1/deals/(\d+)/flow", path)
        if flow:
            return "v1", self._flow, int(flow.group(1))
        return "", None, None

    # -- limits --------------------------------------------------------------
    def _charge(self, kind: str) -> tuple[Response | None, int]:
        """Spend the call's tokens from the daily budget and a slot in the 2-second window.

        Returns the 429 to send, if any, and the slots left in the window.
        """
        with self._lock:
            if self.daily_budget is not None and self.tokens_spent + TOKEN_COST[kind] > self.daily_budget:
                midnight = dt.datetime.combine(dt.date.today() + dt.timedelta(days=1), dt.time(), dt.UTC)
                wait = int((midnight - dt.datetime.now(dt.UTC)).total_seconds()) + 1
                return _error(429, "Daily token budget exceeded",
                              "Your company has used its daily API token budget; it resets at midnight UTC.",
                              headers={"x-daily-requests-left": "0", "Retry-After": str(wait)}), 0
            over, remaining = self.window_count(self.token, self.requests_per_2s, 2.0)
            if over:
                self.throttled += 1
                return _error(429, "Request over limit", headers=self._rate_headers(0) | {"Retry-After": "2"}), 0
            self.tokens_spent += TOKEN_COST[kind]
        return None, remaining

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        return {"x-ratelimit-limit": str(self.requests_per_2s), "x-ratelimit-remaining": str(remaining),
                "x-ratelimit-reset": "2"}

    # -- v2 lists ------------------------------------------------------------
    def _deals(self, request: Request, _: object) -> Response:
        statuses = _statuses(request.args.get("status"))
        if statuses is None:
            return _error(400, "Validation failed: status: must be one of open, won, lost, deleted")
        # Deleted deals are listed here whether or not they had been archived.
        records = [d for d in self.store.deals.values()
                   if d["status"] in statuses and (d["status"] == "deleted" or not d["is_archived"])]
        return self._v2_list(request, records, _render_times)

    def _archived_deals(self, request: Request, _: object) -> Response:
        statuses = _statuses(request.args.get("status"))
        if statuses is None:
            return _error(400, "Validation failed: status: must be one of open, won, lost, deleted")
        records = [d for d in self.store.deals.values() if d["is_archived"] and d["status"] in statuses]
        return self._v2_list(request, records, _render_times)

    def _organizations(self, request: Request, _: object) -> Response:
        records = [o for o in self.store.orgs.values() if not o["is_deleted"]]
        return self._v2_list(request, records, _render_times)

    def _stages(self, request: Request, _: object) -> Response:
        return self._v2_list(request, list(self.store.stages.values()), _render_times)

    def _pipelines(self, request: Request, _: object) -> Response:
        return self._v2_list(request, list(self.store.pipelines.values()), _render_times)

    def _v2_list(self, request: Request, records: list[dict], render: Callable[[dict], dict]) -> Response:
        """Filter by updated_since (inclusive), sort, and page with an opaque keyset cursor."""
        args = request.args
        turn = self.turn_page(request_target(request), args.get("cursor"))
        try:
            limit = int(args.get("limit", 100))
            since = _parse_iso(args["updated_since"]) if "updated_since" in args else None
            after = json.loads(base64.urlsafe_b64decode(turn.position)) if turn.position else None
        except (ValueError, KeyError):
            return _error(400, "Validation failed: limit, updated_since or cursor is malformed")
        sort_by = args.get("sort_by", "id")
        descending = args.get("sort_direction", "asc") == "desc"
        if not 1 <= limit <= V2_MAX_LIMIT or sort_by not in ("id", "update_time", "add_time") or (
                "updated_since" in args and since is None):
            return _error(400, "Validation failed: limit must be 1..500; sort_by id, update_time or add_time; "
                               "updated_since RFC 3339")

        def key(record: dict) -> list:
            return [v2_time(record[sort_by]) if sort_by != "id" else record["id"], record["id"]]

        chosen = sorted((r for r in records if since is None or r["update_time"] >= since),
                        key=key, reverse=descending)
        if after is not None:
            chosen = [r for r in chosen if (key(r) < after if descending else key(r) > after)]
        page = chosen[:min(limit, self.page_cap)]
        more = len(chosen) > len(page)
        next_cursor = self.next_page_token(turn, list_cursor(key(page[-1])) if more else None)
        return json_response({"success": True, "data": [render(r) for r in page],
                              "additional_data": {"next_cursor": next_cursor}})

    # -- v1 lists ------------------------------------------------------------
    def _flow(self, request: Request, deal_id: object) -> Response:
        if deal_id not in self.store.deals:
            return _error(404, "Deal not found")
        items = self.store.flows[deal_id]
        wanted = request.args.get("items")
        if wanted:
            items = [i for i in items if i["object"] in wanted.split(",")]
        rendered = [{"object": i["object"], "timestamp": v1_time(i["timestamp"]),
                     "data": {k: v1_time(v) if isinstance(v, dt.datetime) else v for k, v in i["data"].items()}}
                    for i in reversed(items)]
        return _v1_list(request, rendered)

    def _deal_fields(self, request: Request, _: object) -> Response:
        return _v1_list(request, self.store.deal_fields)

    def _org_fields(self, request: Request, _: object) -> Response:
        return _v1_list(request, self.store.org_fields)

    def _me(self, _request: Request, _: object) -> Response:
        return json_response({"success": True, "data": {
            "id": 1, "name": "Fake Admin", "default_currency": self.store.default_currency, "is_admin": 1}})


# -- helpers -------------------------------------------------------------------
_DEAL_STANDARD_FIELDS = {"title": "varchar", "value": "monetary", "currency": "varchar", "stage_id": "stage",
                         "pipeline_id": "double", "status": "status", "add_time": "date", "update_time": "date",
                         "won_time": "date", "lost_time": "date", "close_time": "date", "org_id": "org",
                         "owner_id": "user"}  # field types as v1 /dealFields names them
_ORG_STANDARD_FIELDS = {"name": "varchar", "add_time": "date", "update_time": "date", "owner_id": "user"}


def _field_list(custom: dict[str, str], standard: dict[str, str]) -> list[dict]:
    """v1 field definitions: standard fields keyed by name, custom ones by hash."""
    fields = [{"key": key, "name": key.replace("_", " ").capitalize(), "field_type": kind, "edit_flag": False}
              for key, kind in standard.items()]
    fields += [{"key": field_key(name), "name": name, "field_type": kind, "edit_flag": True,
                **({"options": [{"id": i, "label": label} for i, label in enumerate(DEAL_TYPE_OPTIONS, 1)]}
                   if kind == "enum" else {})}
               for name, kind in custom.items()]
    return [{"id": n, "order_nr": n, "active_flag": True, **f} for n, f in enumerate(fields, 1)]


def _midnight(date_text: object) -> str:
    return f"{date_text}T00:00:00Z" if date_text else ""


def _render_times(record: dict) -> dict:
    return {k: v2_time(v) if isinstance(v, dt.datetime) else v for k, v in record.items()}


def _statuses(value: str | None) -> set[str] | None:
    if not value:
        return {"open", "won", "lost"}
    statuses = set(value.split(","))
    return statuses if statuses <= {"open", "won", "lost", "deleted"} else None


def _v1_list(request: Request, items: list[dict]) -> Response:
    try:
        start = int(request.args.get("start", 0))
        limit = min(int(request.args.get("limit", 100)), V1_MAX_LIMIT)
    except ValueError:
        return _error(400, "start and limit must be integers")
    page = items[start:start + limit]
    more = start + limit < len(items)
    pagination = {"start": start, "limit": limit, "more_items_in_collection": more}
    if more:
        pagination["next_start"] = start + limit
    return json_response({"success": True, "data": page, "additional_data": {"pagination": pagination}})


def _error(status: int, error: str, info: str = ERROR_INFO, headers: dict[str, str] | None = None) -> Response:
    return json_response({"success": False, "error": error, "errorCode": status, "error_info": info,
                          "data": None, "additional_data": None}, status, headers)


def _latest_valid_deals(path: Path) -> list[dict]:
    """The newest version of each canonical deal that an API could hold, in first-seen order."""
    latest: dict[str, dict] = {}
    for row in _csv_rows(path):
        times = [row["created_at"], row["updated_at"]] + ([row["closed_at"]] if row["is_closed"] == "true" else [])
        if not row["deal_id"] or any(_parse_iso(t) is None for t in times) or not _is_amount(row["amount"]):
            continue
        if row["is_won"] == "true" and row["is_closed"] != "true":
            continue
        current = latest.get(row["deal_id"])
        if current is None or _parse_iso(row["updated_at"]) >= _parse_iso(current["updated_at"]):
            latest[row["deal_id"]] = row
    return list(latest.values())


def _is_amount(text: str) -> bool:
    return not text or re.fullmatch(r"-?\d+(\.\d+)?", text) is not None


def _read_history(path: Path) -> dict[str, list[tuple[str, dt.datetime]]]:
    history: dict[str, list[tuple[str, dt.datetime]]] = {}
    for row in _csv_rows(path):
        history.setdefault(row["deal_id"], []).append((row["stage"], _parse_iso(row["entered_at"])))
    return {deal: sorted(entries, key=lambda e: e[1]) for deal, entries in history.items()}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
