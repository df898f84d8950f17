"""Salesforce opportunities (with their stage history) and accounts as canonical pages.

`read("opportunities", cursor)` yields one page per queryAll batch: the deals,
and the complete OpportunityHistory of every deal in it (rows are replaced per
deal_id, so a page must carry a deal's whole history). `read("accounts", ...)`
yields every account as a customers row, flagged is_customer when its Type is
one of `customer_types` (staging keeps customers only). Both read
`SystemModstamp >= cursor - lookback`, oldest first, with deleted and merged
records flagged `is_deleted`; the cursor each page carries is the newest
SystemModstamp it holds, never past the sync start.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal

from connectors.contract import API_STREAMS, CANONICAL_STREAMS, DATE, TIMESTAMP, require_tls
from connectors.records import Page, TableRows
from connectors.salesforce.helpers import (
    SalesforceApi,
    changes,
    iso_utc,
    opportunity_history,
    parse_stamp,
    whole_seconds,
)
from connectors.salesforce.settings import (
    ACCOUNT_TYPE_FIELD,
    CURRENCY_FIELD,
    CUSTOMER_COLUMNS_SETTABLE,
    CUSTOMER_FIELDS,
    CUSTOMER_TYPES,
    DEAL_COLUMNS_SETTABLE,
    DEAL_FIELDS,
    PIPELINE_FIELD_DEFAULT,
    PIPELINE_FIELD_RECORD_TYPES,
)

__all__ = ["SalesforceSource"]

_FIELD_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")


class SalesforceSource:
    """A Salesforce org through the REST query API (or Bulk API 2.0 with `use_bulk`).

    Give `token` and `base_url` (the instance URL), or OAuth `client_id`,
    `client_secret` and `refresh_token` (then the token endpoint under
    `login_url` names the instance). `columns` maps a canonical column to
    another field, e.g. {"churned_at": "Churn_Date__c", "amount": "Amount_USD__c"}.
    `customer_types` are the Account.Type values that make an account a customer.
    """

    streams = API_STREAMS["salesforce"]

    def __init__(
        self,
        *,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        refresh_token: str | None = None,
        base_url: str | None = None,
        login_url: str = "https://login.salesforce.com",
        api_version: str = "v61.0",
        use_bulk: bool = False,
        columns: dict[str, str] | None = None,
        customer_types: Iterable[str] = CUSTOMER_TYPES,
        lookback_minutes: int = 60,
        client_options: dict | None = None,
    ):
        oauth = None
        if client_id and client_secret and refresh_token:
            oauth = (client_id, client_secret, refresh_token)
        if not token and oauth is None:
            raise ValueError("Salesforce needs token (with base_url) or client_id, client_secret and refresh_token")
        if token and not base_url and oauth is None:
            raise ValueError("Salesforce base_url (the org's instance URL) is required with a plain token")
        self._columns = _checked_columns(columns or {})
        self._customer_types = frozenset(customer_types)
        self._lookback = dt.timedelta(minutes=lookback_minutes)
        self._api = SalesforceApi(
            token=token, oauth=oauth,
            base_url=require_tls(base_url, "base_url") if base_url else None,
            login_url=require_tls(login_url, "login_url"), api_version=api_version, use_bulk=use_bulk,
            client_options=client_options or {},
        )
        self.stats = self._api.stats
        self._deal_fields: dict[str, str] | None = None
        self._org_currency: str | None = None

    def read(self, stream: str, cursor: str | None) -> Iterator[Page]:
        started = dt.datetime.now(dt.UTC)
        since = None if cursor is None else whole_seconds(parse_stamp(cursor) - self._lookback)
        if stream == "opportunities":
            return self._opportunities(since, started)
        if stream == "accounts":
            return self._accounts(since, started)
        raise ValueError(f"unknown Salesforce stream '{stream}' (expected one of {', '.join(self.streams)})")

    def close(self) -> None:
        self._api.close()

    def _opportunities(self, since: dt.datetime | None, started: dt.datetime) -> Iterator[Page]:
        fields = self._opportunity_fields()
        for batch in changes(self._api, "Opportunity", _select_list(fields), since, started):
            deals = [deal_row(record, fields, self._default_currency) for record in batch.records]
            history = stage_rows(opportunity_history(self._api, [str(r["Id"]) for r in batch.records]))
            yield _page({"deals": TableRows("deal_id", deals),
                         "deal_stage_history": TableRows("deal_id", history)}, batch.cursor)

    def _accounts(self, since: dt.datetime | None, started: dt.datetime) -> Iterator[Page]:
        fields = {**CUSTOMER_FIELDS, **{c: f for c, f in self._columns.items() if c in CUSTOMER_COLUMNS_SETTABLE}}
        select_list = _select_list({**fields, "is_customer": ACCOUNT_TYPE_FIELD})  # is_customer from Type
        for batch in changes(self._api, "Account", select_list, since, started):
            customers = [self._account_row(record, fields) for record in batch.records]
            yield _page({"customers": TableRows("customer_id", customers)}, batch.cursor)

    def _account_row(self, record: dict, fields: dict[str, str]) -> dict[str, str | None]:
        """Every account, prospects and partners too: whether it is a customer may also follow from
        a won opportunity, which staging reads from the deals (the account does not change when one is won)."""
        row = canonical_row(record, fields, "customers")
        row["is_customer"] = to_text(record.get(ACCOUNT_TYPE_FIELD) in self._customer_types, "")
        return row

    def _opportunity_fields(self) -> dict[str, str]:
        """Canonical column -> Opportunity field for this org: describe tells whether it has record
        types (pipeline) and multiple currencies (CurrencyIsoCode exists only then)."""
        if self._deal_fields is None:
            names = self._api.describe("Opportunity")
            fields = dict(DEAL_FIELDS)
            fields["pipeline"] = PIPELINE_FIELD_RECORD_TYPES if "RecordTypeId" in names else PIPELINE_FIELD_DEFAULT
            if CURRENCY_FIELD in names:
                fields["currency"] = CURRENCY_FIELD
            fields.update({c: f for c, f in self._columns.items() if c in DEAL_COLUMNS_SETTABLE})
            self._deal_fields = fields
        return self._deal_fields

    def _default_currency(self) -> str | None:
        """The org's currency, for records that carry none (every record of a single-currency org)."""
        if self._org_currency is None:
            records = next(self._api.query("SELECT DefaultCurrencyIsoCode FROM Organization"))
            self._org_currency = str(records[0]["DefaultCurrencyIsoCode"]) if records else None
        return self._org_currency


def _checked_columns(columns: dict[str, str]) -> dict[str, str]:
    settable = DEAL_COLUMNS_SETTABLE | CUSTOMER_COLUMNS_SETTABLE
    for column, field in columns.items():
        if column not in settable:
            raise ValueError(f"columns: '{column}' cannot be mapped for Salesforce "
                             f"(one of {', '.join(sorted(settable))})")
        if not _FIELD_PATH.fullmatch(field):
            raise ValueError(f"columns.{column}: '{field}' is not a Salesforce field name")
    return dict(columns)


def _select_list(fields: dict[str, str]) -> list[str]:
    return list(dict.fromkeys([*fields.values(), "SystemModstamp"]))


def _page(tables: dict[str, TableRows], cursor: str | None) -> Page:
    return Page(tables={name: part for name, part in tables.items() if part.rows}, cursor=cursor)


def field_value(record: dict, path: str) -> object:
    """A field or relationship path: Bulk CSV has 'RecordType.DeveloperName' flat, REST nests it."""
    if path in record:
        return record[path]
    value: object = record
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def to_text(value: object, kind: str) -> str | None:
    """A canonical text value: 'true'/'false', plain decimals, ISO timestamps with Z."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return format(Decimal(repr(value)), "f")
    text = str(value)
    return iso_utc(text) if kind in (TIMESTAMP, DATE) else text


def canonical_row(record: dict, fields: dict[str, str], table: str) -> dict[str, str | None]:
    kinds = CANONICAL_STREAMS[table].columns
    return {column: to_text(field_value(record, path), kinds.get(column, "")) for column, path in fields.items()}


def deal_row(record: dict, fields: dict[str, str],
             default_currency: Callable[[], str | None]) -> dict[str, str | None]:
    """An Opportunity as a canonical deal; CloseDate is the expected close until the deal is closed."""
    row = canonical_row(record, fields, "deals")
    if row["is_closed"] != "true":
        row["closed_at"] = None
    if row.get("currency") is None:
        row["currency"] = default_currency()
    return row


def stage_rows(history: Iterable[dict]) -> list[dict[str, str | None]]:
    """When each deal entered each stage, from history rows ordered by deal and time.

    OpportunityHistory also logs changes of amount, probability and close date,
    so only a row whose StageName differs from the deal's previous row starts a stage.
    """
    rows: list[dict[str, str | None]] = []
    for deal_id, records in itertools.groupby(history, key=lambda r: r["OpportunityId"]):
        previous = None
        for record in records:
            if record["StageName"] and record["StageName"] != previous:
                rows.append({"deal_id": deal_id, "stage": record["StageName"],
                             "entered_at": iso_utc(str(record["CreatedDate"]))})
            previous = record["StageName"]
    return rows
