"""A fake Salesforce org over real HTTP: REST query/queryAll, Bulk API 2.0 query jobs, OAuth.

It reproduces what a connector must get right (CRM_APIS.md §2): SOQL run
against a mutable in-memory store, 2,000-record batches chained by
`nextRecordsUrl`, `queryAll` returning deleted and merged rows (`IsDeleted`,
`MasterRecordId`) that `query` hides, `CurrencyIsoCode` only in multi-currency
orgs, `IsClosed`/`IsWon` derived from the stage master, one `OpportunityHistory`
row per change of stage, amount or close date, the `Sforce-Limit-Info` usage
header with 403 `REQUEST_LIMIT_EXCEEDED` past the daily limit, 401
`INVALID_SESSION_ID` once a token expires, `QUERY_TIMEOUT` for a query that
scans too wide a `SystemModstamp` range, Bulk jobs with `Sforce-Locator`
(literally "null" at the end), and the vendor's JSON-array error bodies.

`from_canonical` seeds it from the demo's canonical files; `export_canonical`
writes the same records back as canonical CSV, so a test can check that the API
path and the file path give identical KPIs.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import itertools
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.wrappers import Request, Response

from connectors.fakes.server import FakeServer, json_response, request_target

UTC = dt.UTC
ID_PREFIXES = {
    "Account": "001", "Opportunity": "006", "OpportunityHistory": "008", "User": "005",
    "RecordType": "012", "Organization": "00D", "OpportunityStage": "01J", "Job": "750", "Locator": "01g",
}
# Field types, as describe reports them; "reference:X" is a lookup to object X.
_STAMPS = {"CreatedDate": "datetime", "LastModifiedDate": "datetime", "SystemModstamp": "datetime",
           "IsDeleted": "boolean"}
SCHEMA: dict[str, dict[str, str]] = {
    "Opportunity": {
        "Id": "id", "Name": "string", "AccountId": "reference:Account", "OwnerId": "reference:User",
        "StageName": "picklist", "IsClosed": "boolean", "IsWon": "boolean", "Amount": "currency",
        "Probability": "percent", "CloseDate": "date", "Type": "picklist", "Region__c": "picklist", **_STAMPS,
    },
    "OpportunityHistory": {
        "Id": "id", "OpportunityId": "reference:Opportunity", "StageName": "picklist", "Amount": "currency",
        "CloseDate": "date", "Probability": "percent", "CreatedDate": "datetime",
        "SystemModstamp": "datetime", "IsDeleted": "boolean",
    },
    "Account": {
        "Id": "id", "Name": "string", "Type": "picklist", "MasterRecordId": "reference:Account",
        "Customer_Since__c": "datetime", "Churn_Date__c": "date", "MRR__c": "currency", **_STAMPS,
    },
    "RecordType": {"Id": "id", "Name": "string", "DeveloperName": "string", "SobjectType": "string",
                   "IsActive": "boolean", "SystemModstamp": "datetime"},
    "Organization": {"Id": "id", "Name": "string", "DefaultCurrencyIsoCode": "picklist"},
    "OpportunityStage": {"Id": "id", "ApiName": "string", "MasterLabel": "string", "IsClosed": "boolean",
                         "IsWon": "boolean", "IsActive": "boolean", "SortOrder": "int",
                         "DefaultProbability": "percent"},
}
# Restricted picklists: (sObject, field) -> the values a record may hold. Account.Type as
# Salesforce ships it: only the "Customer - ..." values say an account is a customer.
PICKLISTS = {
    ("Account", "Type"): ("Prospect", "Customer - Direct", "Customer - Channel", "Channel Partner / Reseller",
                          "Installation Partner", "Technology Partner", "Partner", "Competitor", "Other"),
}
MAX_URI = 16_384  # bytes of path and query a REST request may have
ACTIVE_CURRENCIES = frozenset({"USD", "EUR", "GBP"})  # a multi-currency org holds only these
HISTORY_TRACKED = ("StageName", "Amount", "CloseDate", "Probability")
DEMO_STAGES = {  # ApiName -> (IsClosed, IsWon, DefaultProbability), in sales order
    "appointmentscheduled": (False, False, 20.0), "qualifiedtobuy": (False, False, 40.0),
    "presentationscheduled": (False, False, 60.0), "contractsent": (False, False, 80.0),
    "closedwon": (True, True, 100.0), "closedlost": (True, False, 0.0),
}


def sf_datetime(moment: dt.datetime) -> str:
    """The REST API's datetime format: 2026-01-01T00:00:00.000+0000."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> dt.datetime:
    """A stored or canonical timestamp ('...+0000', '...Z', or a bare date) as an aware datetime."""
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def salesforce_id(prefix: str, number: int) -> str:
    """An 18-character id: 15 case-sensitive characters plus the 3-character case-insensitive suffix."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    digits = ""
    while number or not digits:
        number, rest = divmod(number, 62)
        digits = alphabet[rest] + digits
    base = prefix + digits.rjust(12, "0")
    suffix = ""
    for chunk in (base[0:5], base[5:10], base[10:15]):
        bits = sum(1 << i for i, char in enumerate(chunk) if char.isupper())
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return base + suffix


class SoqlError(Exception):
    """A query Salesforce rejects: sent back as 400 [{message, errorCode}]."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


# -- a SOQL subset: SELECT f, ... FROM X [WHERE c AND c ...] [ORDER BY f [ASC|DESC], ...] [LIMIT n] ------
_TOKENS = re.compile(r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<symbol><=|>=|!=|<>|=|<|>|\(|\)|,)
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
)""", re.VERBOSE)


@dataclass
class Soql:
    fields: list[str]
    sobject: str
    where: list[tuple[str, str, object]] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    limit: int | None = None


def parse_soql(text: str) -> Soql:
    tokens: list[tuple[str, str]] = []
    position, text = 0, text.strip()
    while position < len(text):
        match = _TOKENS.match(text, position)
        if not match or match.end() == position:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[position:position + 20]}'")
        tokens.append((match.lastgroup or "", match.group(match.lastgroup or 0)))
        position = match.end()
    return _Parser(tokens).query()


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens, self.at = tokens, 0

    def peek(self) -> str:
        return self.tokens[self.at][1].upper() if self.at < len(self.tokens) else ""

    def take(self, kind: str | None = None, word: str | None = None) -> str:
        if self.at >= len(self.tokens):
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        found_kind, value = self.tokens[self.at]
        if (kind and found_kind != kind) or (word and value.upper() != word):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{value}'")
        self.at += 1
        return value

    def query(self) -> Soql:
        self.take(word="SELECT")
        fields = [self.take("word")]
        while self.peek() == ",":
            self.take()
            fields.append(self.take("word"))
        self.take(word="FROM")
        query = Soql(fields, self.take("word"))
        if self.peek() == "WHERE":
            self.take()
            query.where.append(self.condition())
            while self.peek() == "AND":
                self.take()
                query.where.append(self.condition())
        if self.peek() == "ORDER":
            self.take()
            self.take(word="BY")
            while True:
                name = self.take("word")
                descending = self.peek() == "DESC"
                if self.peek() in ("ASC", "DESC"):
                    self.take()
                query.order.append((name, descending))
                if self.peek() != ",":
                    break
                self.take()
        if self.peek() == "LIMIT":
            self.take()
            query.limit = int(self.take("number"))
        if self.at < len(self.tokens):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{self.tokens[self.at][1]}'")
        return query

    def condition(self) -> tuple[str, str, object]:
        name = self.take("word")
        if self.peek() in ("IN", "NOT"):
            operator = "IN"
            if self.take().upper() == "NOT":
                self.take(word="IN")
                operator = "NOT IN"
            self.take(word="(")
            values = [self.literal()]
            while self.peek() == ",":
                self.take()
                values.append(self.literal())
            self.take(word=")")
            return name, operator, values
        operator = self.take("symbol")
        return name, "!=" if operator == "<>" else operator, self.literal()

    def literal(self) -> object:
        kind, value = self.tokens[self.at] if self.at < len(self.tokens) else ("", "")
        self.take()
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", value[1:-1])
        if kind == "datetime":
            return dt.datetime.fromisoformat(value)
        if kind == "date":
            return dt.date.fromisoformat(value)
        if kind == "number":
            return float(value)
        if kind == "word" and value.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value.lower()]
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{value}'")


@dataclass
class _Job:
    """A Bulk API 2.0 query job: its rows are fixed when it is created, like a real snapshot."""

    info: dict
    header: list[str]
    rows: list[list[str]]
    polls_left: int


class FakeSalesforce(FakeServer):
    """A Salesforce org on 127.0.0.1. Mutate it with `create`/`update`/`delete`/`merge_accounts`."""

    def __init__(
        self,
        *,
        api_version: str = "v61.0",
        access_token: str = "00DFAKE!AQ4AQ.fake-session-token",
        client_id: str = "3MVG9fake-consumer-key",
        client_secret: str = "fake-consumer-secret-7d1e",
        refresh_token: str = "5Aep861fake-refresh-token",
        rotate_refresh_tokens: bool = False,
        multi_currency: bool = True,
        record_types: bool = False,
        default_currency: str = "USD",
        batch_size: int = 2000,
        bulk_enabled: bool = True,
        bulk_chunk: int = 10_000,
        bulk_polls: int = 1,
        api_limit: int = 15_000,
        query_timeout_days: float | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC),
    ):
        super().__init__()
        self.api_version = api_version
        self.client_id, self.client_secret = client_id, client_secret
        self.access_tokens = {access_token}
        self.refresh_tokens = {refresh_token}
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.multi_currency = multi_currency
        self.record_types = record_types
        self.batch_size = batch_size
        self.bulk_enabled = bulk_enabled
        self.bulk_chunk = bulk_chunk
        self.bulk_polls = bulk_polls
        self.api_limit = api_limit
        self.api_used = 0
        self.query_timeout_days = query_timeout_days
        self._clock = clock
        self._last_stamp = dt.datetime.min.replace(tzinfo=UTC)
        self._numbers = itertools.count(1)
        self._cursors: dict[str, tuple[str, list[dict]]] = {}  # query locator -> (sObject, records)
        self._jobs: dict[str, _Job] = {}
        self.schema = {name: dict(fields) for name, fields in SCHEMA.items()}
        for name in ("Opportunity", "Account", "OpportunityHistory"):
            if multi_currency:
                self.schema[name]["CurrencyIsoCode"] = "picklist"
        if record_types:
            self.schema["Opportunity"]["RecordTypeId"] = "reference:RecordType"
        self.records: dict[str, dict[str, dict]] = {name: {} for name in self.schema}
        self.default_currency = default_currency
        self.create("Organization", Name="Acme", DefaultCurrencyIsoCode=default_currency)

    # -- the store ---------------------------------------------------------------------------------
    def now(self) -> str:
        """A modification stamp, strictly after the previous one (like SystemModstamp, ms precision)."""
        moment = max(self._clock().astimezone(UTC), self._last_stamp + dt.timedelta(milliseconds=1))
        self._last_stamp = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        return sf_datetime(self._last_stamp)

    def new_id(self, sobject: str) -> str:
        return salesforce_id(ID_PREFIXES[sobject], next(self._numbers))

    def create(self, sobject: str, **values: object) -> str:
        """Insert a record (fields by API name; `stamp` sets its timestamps, default now).

        An opportunity gets its first history row, as in Salesforce.
        """
        with self._lock:
            _check_picklists(sobject, values)
            record_id = str(values.pop("Id", None) or self.new_id(sobject))
            stamp = str(values.pop("stamp", None) or self.now())
            record = {name: None for name in self.schema[sobject]}
            if "IsDeleted" in record:
                record["IsDeleted"] = False
            for name in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
                if name in record:
                    record[name] = stamp
            record.update(values, Id=record_id)
            self.records[sobject][record["Id"]] = record
            if sobject == "Opportunity":
                self._apply_stage(record)
                self._add_history(record, str(record["CreatedDate"]))
            return record["Id"]

    def update(self, sobject: str, record_id: str, **values: object) -> None:
        """Change fields as a user would: stamps move, tracked opportunity changes add history."""
        with self._lock:
            _check_picklists(sobject, values)
            record = self.records[sobject][record_id]
            changed = any(record.get(name) != value for name, value in values.items() if name in HISTORY_TRACKED)
            record.update(values)
            stamp = self.now()
            record["SystemModstamp"] = stamp
            if "LastModifiedDate" in record:
                record["LastModifiedDate"] = stamp
            if sobject == "Opportunity":
                self._apply_stage(record)
                if changed:
                    self._add_history(record, stamp)

    def delete(self, sobject: str, record_id: str, master: str | None = None) -> None:
        """Move a record to the recycle bin: only queryAll sees it, with IsDeleted (and MasterRecordId)."""
        with self._lock:
            stamp = self.now()
            record = self.records[sobject][record_id]
            record.update(IsDeleted=True, SystemModstamp=stamp, LastModifiedDate=stamp)
            if master:
                record["MasterRecordId"] = master
            if sobject == "Opportunity":
                for row in self._history_of(record_id):
                    row.update(IsDeleted=True, SystemModstamp=stamp)

    def merge_accounts(self, master: str, loser: str) -> None:
        """Merge `loser` into `master`: its opportunities move to the master, then it is deleted."""
        with self._lock:
            for opportunity in list(self.records["Opportunity"].values()):
                if opportunity["AccountId"] == loser:
                    self.update("Opportunity", opportunity["Id"], AccountId=master)
            self.update("Account", master)
            self.delete("Account", loser, master=master)

    def expire_tokens(self) -> None:
        """Every access token stops working (a session timeout); refresh tokens still do."""
        with self._lock:
            self.access_tokens.clear()

    def add_stage(self, api_name: str, is_closed: bool, is_won: bool, probability: float) -> None:
        self.create("OpportunityStage", ApiName=api_name, MasterLabel=api_name, IsClosed=is_closed,
                    IsWon=is_won, IsActive=True, SortOrder=len(self.records["OpportunityStage"]) + 1,
                    DefaultProbability=probability)

    def _stage(self, name: str) -> dict:
        for stage in self.records["OpportunityStage"].values():
            if stage["ApiName"] == name:
                return stage
        raise ValueError(f"no opportunity stage '{name}' (add it with add_stage)")

    def _apply_stage(self, record: dict) -> None:
        stage = self._stage(str(record["StageName"]))
        record["IsClosed"], record["IsWon"] = stage["IsClosed"], stage["IsWon"]
        if record.get("Probability") is None:
            record["Probability"] = stage["DefaultProbability"]
        if self.multi_currency and record.get("CurrencyIsoCode") is None:
            record["CurrencyIsoCode"] = self.default_currency

    def _add_history(self, opportunity: dict, stamp: str) -> None:
        values = {name: opportunity.get(name) for name in HISTORY_TRACKED}
        if self.multi_currency:
            values["CurrencyIsoCode"] = opportunity.get("CurrencyIsoCode")
        self.create("OpportunityHistory", OpportunityId=opportunity["Id"], stamp=stamp, **values)

    def _history_of(self, opportunity_id: str) -> list[dict]:
        return [r for r in self.records["OpportunityHistory"].values() if r["OpportunityId"] == opportunity_id]

    # -- seeding from, and exporting to, canonical files ---------------------------------------------
    @classmethod
    def from_canonical(cls, folder: Path | str, limit: int | None = None, **options: object) -> FakeSalesforce:
        """An org holding the canonical deals (latest version each), their stage history and customers.

        Rows Salesforce could not hold are skipped (no id, unparseable dates or amounts, won
        but open, closed without a close date, an inactive currency). Ids become Salesforce
        ids; an open deal's CloseDate is its expected close (created + 30 days), which the
        connector must ignore. `limit` keeps that many deals spread evenly over the file (old and
        recent, open and closed) and only the accounts they name. Every customer is an account of
        Type "Customer - Direct" created when it started, with that start in Customer_Since__c.
        """
        folder = Path(folder)
        org = cls(**options)  # type: ignore[arg-type]
        for name, (is_closed, is_won, probability) in DEMO_STAGES.items():
            org.add_stage(name, is_closed, is_won, probability)
        deals = _latest_deals(_read_csv(folder / "deals.csv"))
        deals = [d for d in deals if org._holdable(d)]
        if limit is not None:
            deals = deals[:: max(1, len(deals) // max(limit, 1))][:limit]
        history: dict[str, list[dict]] = {}
        for row in _read_csv(folder / "deal_stage_history.csv"):
            history.setdefault(row["deal_id"], []).append(row)
        ids: dict[str, str] = {}

        def sf_id(sobject: str, key: str) -> str:
            if f"{sobject}:{key}" not in ids:
                ids[f"{sobject}:{key}"] = org.new_id(sobject)
            return ids[f"{sobject}:{key}"]

        if org.record_types:
            for pipeline in sorted({d["pipeline"] for d in deals}):
                org.create("RecordType", Id=sf_id("RecordType", pipeline), Name=pipeline,
                           DeveloperName=pipeline, SobjectType="Opportunity", IsActive=True)
        wanted = {d["account_id"] for d in deals} if limit is not None else None
        for row in _read_csv(folder / "customers.csv"):
            if wanted is not None and row["customer_id"] not in wanted:
                continue
            started, churned = parse_datetime(row["started_at"]), row["churned_at"]
            stamp = max(started, parse_datetime(churned)) if churned else started
            org.create("Account", Id=sf_id("Account", row["customer_id"]), Name=row["name"],
                       Type="Customer - Direct", CreatedDate=sf_datetime(started),
                       Customer_Since__c=sf_datetime(started), Churn_Date__c=churned[:10] or None,
                       MRR__c=float(row["mrr"]) if row["mrr"] else None, stamp=org._seed_stamp(stamp))
        for row in deals:
            org._seed_deal(row, history.get(row["deal_id"], []), sf_id)
        return org

    def _holdable(self, row: dict) -> bool:
        try:
            parse_datetime(row["created_at"])
            if row["amount"]:
                float(row["amount"])
            stage = self._stage(row["stage"])
        except ValueError:
            return False
        closed = row["is_closed"] == "true"
        currencies = ACTIVE_CURRENCIES if self.multi_currency else {self.default_currency}
        return bool(row["deal_id"]) and (stage["IsClosed"], stage["IsWon"]) == (closed, row["is_won"] == "true") \
            and (not closed or bool(row["closed_at"])) and row["currency"] in currencies

    def _seed_stamp(self, moment: dt.datetime) -> str:
        """Seeded records keep their history's timestamps, but nothing is stamped in the future."""
        return sf_datetime(min(moment, self._clock().astimezone(UTC) - dt.timedelta(seconds=1)))

    def _seed_deal(self, row: dict, history: list[dict], sf_id: Callable[[str, str], str]) -> None:
        created = parse_datetime(row["created_at"])
        updated = parse_datetime(row["updated_at"]) if row["updated_at"] else created
        close = row["closed_at"][:10] if row["is_closed"] == "true" else (created + dt.timedelta(days=30)).date()
        values: dict[str, object] = {
            "Name": row["deal_name"], "AccountId": sf_id("Account", row["account_id"]),
            "OwnerId": sf_id("User", row["owner_id"]), "StageName": row["stage"], "Type": row["pipeline"],
            "Amount": float(row["amount"]) if row["amount"] else None, "CloseDate": str(close),
            "IsDeleted": row.get("is_deleted") == "true", "CreatedDate": sf_datetime(created),
            "Region__c": row.get("segment") or None,  # a custom field, as orgs add for sales regions
        }
        if self.multi_currency:
            values["CurrencyIsoCode"] = row["currency"]
        if self.record_types:
            values["RecordTypeId"] = sf_id("RecordType", row["pipeline"])
        record_id = sf_id("Opportunity", row["deal_id"])
        self.records["Opportunity"][record_id] = {name: None for name in self.schema["Opportunity"]}
        record = self.records["Opportunity"][record_id]
        record.update(values, Id=record_id, LastModifiedDate=self._seed_stamp(updated),
                      SystemModstamp=self._seed_stamp(updated))
        self._apply_stage(record)
        entries = sorted(history, key=lambda h: parse_datetime(h["entered_at"])) or [
            {"stage": row["stage"], "entered_at": row["created_at"]}]
        if entries[-1]["stage"] != row["stage"]:
            entries.append({"stage": row["stage"], "entered_at": row["updated_at"] or row["created_at"]})
        for entry in entries:
            stamp = sf_datetime(parse_datetime(entry["entered_at"]))
            self.create("OpportunityHistory", OpportunityId=record_id, StageName=entry["stage"],
                        Amount=record["Amount"], CloseDate=record["CloseDate"], IsDeleted=record["IsDeleted"],
                        Probability=self._stage(entry["stage"])["DefaultProbability"], stamp=stamp,
                        **({"CurrencyIsoCode": record["CurrencyIsoCode"]} if self.multi_currency else {}))

    def export_canonical(self, folder: Path | str) -> Path:
        """Write the org's records as canonical deals, deal_stage_history and customers CSV files.

        This is what an export of the same org holds: currency is the record's (or the
        org default), closed_at is the CloseDate of closed deals only, pipeline is the
        record type's developer name (or Type), a stage is entered when a history row
        first shows it, deleted deals are flagged and deleted accounts are left out. Every
        other account is a customers row, as an account export with a "customer?" column
        holds it: started_at from Customer_Since__c, is_customer from a "Customer - ..." Type,
        created_at the CreatedDate.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        record_types = {r["Id"]: r["DeveloperName"] for r in self.records["RecordType"].values()}
        history: dict[str, list[dict]] = {}
        for row in sorted(self.records["OpportunityHistory"].values(), key=lambda r: (r["CreatedDate"], r["Id"])):
            history.setdefault(row["OpportunityId"], []).append(row)
        deals, stages, customers = [], [], []
        for o in sorted(self.records["Opportunity"].values(), key=lambda r: r["Id"]):
            pipeline = record_types.get(o.get("RecordTypeId") or "") if self.record_types else o["Type"]
            deals.append({
                "deal_id": o["Id"], "deal_name": o["Name"], "account_id": o["AccountId"], "owner_id": o["OwnerId"],
                "pipeline": pipeline, "stage": o["StageName"], "is_closed": _text(o["IsClosed"]),
                "is_won": _text(o["IsWon"]), "amount": _text(o["Amount"]),
                "currency": o.get("CurrencyIsoCode") or self.default_currency,
                "created_at": _iso(o["CreatedDate"]), "closed_at": o["CloseDate"] if o["IsClosed"] else "",
                "updated_at": _iso(o["SystemModstamp"]), "is_deleted": _text(o["IsDeleted"]),
            })
            previous = None
            for h in history.get(o["Id"], []):
                if h["StageName"] != previous:
                    stages.append({"deal_id": o["Id"], "stage": h["StageName"], "entered_at": _iso(h["CreatedDate"])})
                previous = h["StageName"]
        for a in sorted(self.records["Account"].values(), key=lambda r: r["Id"]):
            if not a["IsDeleted"]:
                customers.append({"customer_id": a["Id"], "name": a["Name"],
                                  "started_at": _iso(a["Customer_Since__c"] or ""),
                                  "churned_at": a["Churn_Date__c"] or "", "mrr": _text(a["MRR__c"]),
                                  "is_customer": _text(str(a["Type"]).startswith("Customer - ")),
                                  "created_at": _iso(a["CreatedDate"])})
        for name, rows in (("deals", deals), ("deal_stage_history", stages), ("customers", customers)):
            with (folder / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["deal_id"])
                writer.writeheader()
                writer.writerows(rows)
        return folder

    # -- SOQL over the store ---------------------------------------------------------------------------
    def run(self, text: str, include_deleted: bool) -> tuple[Soql, list[dict]]:
        """Parse, check and run a query; return it with the matching records in order."""
        query = parse_soql(text)
        sobject = next((name for name in self.schema if name.lower() == query.sobject.lower()), None)
        if sobject is None:
            raise SoqlError("INVALID_TYPE", f"sObject type '{query.sobject}' is not supported.")
        query.sobject = sobject
        query.fields = [self._field_path(sobject, name) for name in query.fields]
        conditions = [(self._field_path(sobject, n), op, value) for n, op, value in query.where]
        query.order = [(self._field_path(sobject, n), desc) for n, desc in query.order]
        for name, _, value in conditions:
            self._check_literal(sobject, name, value)
        conditions = [(n, op, frozenset(v) if isinstance(v, list) else v) for n, op, v in conditions]
        rows = [r for r in self.records[sobject].values()
                if (include_deleted or not r.get("IsDeleted"))
                and all(self._matches(sobject, r, c) for c in conditions)]
        rows.sort(key=lambda r: r["Id"])
        for name, descending in reversed(query.order):
            rows.sort(key=lambda r, n=name: _sort_key(self._value(sobject, r, n)), reverse=descending)
        if query.limit is not None:
            rows = rows[: query.limit]
        if (self.query_timeout_days is not None and "SystemModstamp" in self.schema[sobject]
                and not any(op in ("IN", "NOT IN") for _, op, _ in conditions) and rows):
            stamps = [parse_datetime(r["SystemModstamp"]) for r in rows]
            if max(stamps) - min(stamps) > dt.timedelta(days=self.query_timeout_days):
                raise SoqlError("QUERY_TIMEOUT", "Your query request was running for too long.")
        return query, rows

    def _field_path(self, sobject: str, name: str) -> str:
        """The canonical spelling of a field or relationship path (SOQL is case-insensitive)."""
        head, _, rest = name.partition(".")
        fields = self.schema[sobject]
        if rest:
            for field_name, kind in fields.items():
                if kind.startswith("reference:") and field_name[:-2].lower() == head.lower():
                    return f"{field_name[:-2]}.{self._field_path(kind.split(':')[1], rest)}"
        else:
            for field_name in fields:
                if field_name.lower() == name.lower():
                    return field_name
        raise SoqlError("INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'. If you are attempting "
                        "to use a custom field, be sure to append the '__c' after the custom field name. "
                        "Please reference your WSDL or the describe call for the appropriate names.")

    def _kind(self, sobject: str, path: str) -> str:
        head, _, rest = path.partition(".")
        if rest:
            return self._kind(self.schema[sobject][head + "Id"].split(":")[1], rest)
        return self.schema[sobject][head]

    def _value(self, sobject: str, record: dict | None, path: str) -> object:
        head, _, rest = path.partition(".")
        if record is None:
            return None
        if not rest:
            return record.get(head)
        target = self.schema[sobject][head + "Id"].split(":")[1]
        return self._value(target, self.records[target].get(record.get(head + "Id") or ""), rest)

    def _check_literal(self, sobject: str, path: str, value: object) -> None:
        kind = self._kind(sobject, path)
        expected = {"datetime": dt.datetime, "date": dt.date, "boolean": bool}.get(kind)
        for item in value if isinstance(value, list) else [value]:
            if item is None:
                continue
            if expected is not None and type(item) is not expected:
                raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{path}' must be of type "
                                f"{kind} and should not be enclosed in quotes")
            if expected is None and not isinstance(item, str | float):
                raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{path}' must be of "
                                f"type {kind}")

    def _matches(self, sobject: str, record: dict, condition: tuple[str, str, object]) -> bool:
        path, operator, literal = condition
        value = _comparable(self._kind(sobject, path), self._value(sobject, record, path))
        if operator in ("IN", "NOT IN"):
            return (value in literal) == (operator == "IN")  # type: ignore[operator]
        if operator in ("=", "!="):
            return (value == literal) == (operator == "=")
        if value is None or literal is None:
            return False
        return {"<": value < literal, "<=": value <= literal, ">": value > literal,  # type: ignore[operator]
                ">=": value >= literal}[operator]  # type: ignore[operator]

    # -- HTTP ------------------------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path == "/services/oauth2/token" and request.method == "POST":
            return self._token(request)
        prefix = f"/services/data/{self.api_version}/"
        if len(request.full_path) > MAX_URI:
            return _errors(414, "URI_TOO_LONG", "Request-URI Too Long")
        if not path.startswith(prefix):
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.access_tokens:
            return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        with self._lock:
            self.api_used += 1
            usage = {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.api_limit}"}
            if self.api_used > self.api_limit:
                response = _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            else:
                try:
                    response = self._route(request, path.removeprefix(prefix))
                except SoqlError as error:
                    response = _errors(400, error.code, str(error))
        response.headers.update(usage)
        return response

    def _route(self, request: Request, resource: str) -> Response:
        parts = resource.split("/")
        if parts[0] in ("query", "queryAll") and len(parts) == 1:
            return self._query(request, parts[0], request.args.get("q", ""))
        if parts[0] in ("query", "queryAll") and len(parts) == 2:
            return self._batch(request, parts[0], parts[1])
        if parts[0] == "sobjects" and len(parts) == 3 and parts[2] == "describe":
            return self._describe(parts[1])
        if parts[:2] == ["jobs", "query"]:
            return self._bulk(request, parts[2:])
        return _errors(404, "NOT_FOUND", "The requested resource does not exist")

    def _token(self, request: Request) -> Response:
        form = request.form
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return json_response({"error": "invalid_client", "error_description": "invalid client credentials"}, 400)
        if form.get("grant_type") != "refresh_token":
            return json_response({"error": "unsupported_grant_type", "error_description": "grant type not supported"},
                                 400)
        if form.get("refresh_token") not in self.refresh_tokens:
            return json_response({"error": "invalid_grant", "error_description": "expired access/refresh token"}, 400)
        with self._lock:
            token = f"00DFAKE!{secrets.token_urlsafe(24)}"
            self.access_tokens.add(token)
            payload = {"access_token": token, "instance_url": self.base_url, "token_type": "Bearer",
                       "id": f"{self.base_url}/id/00DFAKE/005FAKE", "scope": "api refresh_token",
                       "issued_at": str(int(self._clock().timestamp() * 1000)),
                       "signature": secrets.token_urlsafe(16)}
            if self.rotate_refresh_tokens:
                self.refresh_tokens = {f"5Aep861{secrets.token_urlsafe(24)}"}
                payload["refresh_token"] = next(iter(self.refresh_tokens))
        return json_response(payload)

    def _query(self, request: Request, resource: str, text: str) -> Response:
        query, rows = self.run(text, include_deleted=resource == "queryAll")
        records = [self._rest_record(query, row) for row in rows]
        locator = salesforce_id(ID_PREFIXES["Locator"], next(self._numbers))[:15]
        self._cursors[locator] = (query.sobject, records)
        return self._batch(request, resource, f"{locator}-0")

    def _batch(self, request: Request, resource: str, token: str) -> Response:
        """The batch at `token` ('<locator>-<offset>'); paging faults match '<target> [<sObject>]'."""
        locator = str(self.resolve_page_token(token)).rpartition("-")[0]
        if locator not in self._cursors:
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        turn = self.turn_page(f"{request_target(request)} [{self._cursors[locator][0]}]", token)
        locator, _, offset = str(turn.position).rpartition("-")
        if not offset.isdigit():
            return _errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        records = self._cursors[locator][1]
        start = int(offset)
        end = start + self.batch_size
        following = self.next_page_token(turn, f"{locator}-{end}" if end < len(records) else None)
        payload: dict[str, object] = {"totalSize": len(records), "done": following is None,
                                      "records": records[start:end]}
        if following is not None:
            payload["nextRecordsUrl"] = f"/services/data/{self.api_version}/{resource}/{following}"
        else:
            del self._cursors[locator]
        return json_response(payload)

    def _rest_record(self, query: Soql, row: dict) -> dict:
        record: dict[str, object] = {"attributes": self._attributes(query.sobject, row["Id"])}
        for path in query.fields:
            target, node, parts = query.sobject, record, path.split(".")
            for relation in parts[:-1]:
                target = self.schema[target][relation + "Id"].split(":")[1]
                if relation not in node:
                    parent = self._value(query.sobject, row, path.rsplit(".", 1)[0] + ".Id")
                    node[relation] = {"attributes": self._attributes(target, str(parent))} if parent else None
                if node[relation] is None:
                    break
                node = node[relation]  # type: ignore[assignment]
            else:
                node[parts[-1]] = self._value(query.sobject, row, path)
        return record

    def _attributes(self, sobject: str, record_id: str) -> dict:
        return {"type": sobject, "url": f"/services/data/{self.api_version}/sobjects/{sobject}/{record_id}"}

    def _describe(self, sobject: str) -> Response:
        if sobject not in self.schema:
            return _errors(404, "NOT_FOUND", f"The requested resource does not exist: {sobject}")
        fields = [{"name": name, "label": name, "type": kind.split(":")[0], "custom": name.endswith("__c"),
                   "nillable": kind not in ("id", "boolean"),
                   "referenceTo": [kind.split(":")[1]] if kind.startswith("reference:") else [],
                   "relationshipName": name[:-2] if kind.startswith("reference:") else None,
                   "restrictedPicklist": (sobject, name) in PICKLISTS,
                   "picklistValues": [{"value": v, "label": v, "active": True, "defaultValue": False}
                                      for v in PICKLISTS.get((sobject, name), ())]}
                  for name, kind in self.schema[sobject].items()]
        record_types = [{"name": r["Name"], "developerName": r["DeveloperName"], "recordTypeId": r["Id"],
                         "active": r["IsActive"], "master": False}
                        for r in self.records["RecordType"].values() if r["SobjectType"] == sobject]
        master = {"name": "Master", "developerName": "Master", "recordTypeId": "012000000000000AAA",
                  "active": True, "master": True}
        return json_response({"name": sobject, "label": sobject, "custom": False, "queryable": True,
                              "fields": fields, "recordTypeInfos": [*record_types, master]})

    # -- Bulk API 2.0 ----------------------------------------------------------------------------------
    def _bulk(self, request: Request, rest: list[str]) -> Response:
        if not self.bulk_enabled:
            return _errors(400, "FeatureNotEnabled", "Async API not enabled")
        if not rest and request.method == "POST":
            return self._create_job(request.get_json(silent=True) or {})
        job = self._jobs.get(rest[0]) if rest else None
        if job is None:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        if len(rest) == 1:
            if job.polls_left > 0:
                job.polls_left -= 1
                return json_response({**job.info, "state": "InProgress"})
            return json_response({**job.info, "state": "JobComplete", "numberRecordsProcessed": len(job.rows)})
        if job.polls_left > 0:
            return _errors(412, "JOB_NOT_COMPLETE", "Job is not complete")
        return self._results(job, request.args)

    def _create_job(self, body: dict) -> Response:
        operation = body.get("operation")
        if operation not in ("query", "queryAll") or body.get("contentType", "CSV") != "CSV":
            return _errors(400, "INVALIDJOB", "operation must be query or queryAll, contentType CSV")
        query, rows = self.run(str(body.get("query", "")), include_deleted=operation == "queryAll")
        job_id = salesforce_id(ID_PREFIXES["Job"], next(self._numbers))
        info = {"id": job_id, "operation": operation, "object": query.sobject, "createdById": "005FAKE",
                "createdDate": self.now(), "state": "UploadComplete", "concurrencyMode": "Parallel",
                "contentType": "CSV", "apiVersion": float(self.api_version[1:]), "lineEnding": "LF",
                "columnDelimiter": "COMMA"}
        cells = [[_csv_cell(self._kind(query.sobject, p), self._value(query.sobject, r, p)) for p in query.fields]
                 for r in rows]
        self._jobs[job_id] = _Job(info, query.fields, cells, self.bulk_polls)
        return json_response(info)

    def _results(self, job: _Job, args: dict) -> Response:
        start = int(base64.b64decode(args["locator"]).decode()) if args.get("locator") else 0
        size = min(int(args.get("maxRecords") or self.bulk_chunk), self.bulk_chunk)
        end = start + size
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(job.header)
        writer.writerows(job.rows[start:end])
        locator = base64.b64encode(str(end).encode()).decode() if end < len(job.rows) else "null"
        return Response(out.getvalue(), 200, content_type="text/csv; charset=UTF-8",
                        headers={"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(len(job.rows[start:end]))})


def _check_picklists(sobject: str, values: dict) -> None:
    """A restricted picklist refuses any other value (INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST)."""
    for name, value in values.items():
        allowed = PICKLISTS.get((sobject, name))
        if allowed is not None and value is not None and value not in allowed:
            raise ValueError(f"{sobject}.{name}: bad value for restricted picklist field: {value}")


def _errors(status: int, code: str, message: str) -> Response:
    return json_response([{"message": message, "errorCode": code}], status)


def _comparable(kind: str, value: object) -> object:
    if value is None:
        return None
    if kind == "datetime":
        return parse_datetime(str(value))
    if kind == "date":
        return dt.date.fromisoformat(str(value))
    return value


def _sort_key(value: object) -> tuple[bool, object]:
    """SOQL sorts nulls first in ascending order."""
    return (value is not None, value if value is not None else "")


def _csv_cell(kind: str, value: object) -> str:
    """Bulk API 2.0 CSV: empty for null, lower-case booleans, datetimes in UTC with Z."""
    if value is None:
        return ""
    if kind == "datetime":
        return str(value).replace("+0000", "Z")
    return _text(value)


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _iso(stamp: str) -> str:
    return stamp.replace("+0000", "Z")


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _latest_deals(rows: Iterable[dict]) -> list[dict]:
    """One row per deal_id: the latest updated_at wins, a tie goes to the later row (staging's rule)."""
    latest: dict[str, tuple[str, dict]] = {}
    for row in rows:
        current = latest.get(row["deal_id"])
        if current is None or row["updated_at"] >= current[0]:
            latest[row["deal_id"]] = (row["updated_at"], row)
    return [row for _, row in latest.values()]
