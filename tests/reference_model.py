"""Independent pure-Python reference model of the documented row rules, KPIs and ROI.

Why this exists: the real pipeline computes staging, KPI and ROI tables in DuckDB
SQL. A second implementation written straight from the documented definitions
(docs/row-rules.md, docs/tables.md), in a different language and without looking
at that SQL, lets tests cross-check the two on the demo data and on randomly
generated data: a disagreement points at a bug in one of them or at a place
where the definitions are ambiguous.

Scope: one files source with the canonical profile and a single file per stream,
plus one finance GL file. Standard library only, and written for clarity rather
than speed (inputs are at most a few thousand rows).

Public API::

    compute(folder, finance_file, settings) -> {
        "staging_deals": [...], "rejected": [...], "kpi_periodic": [...],
        "kpi_baseline": [one row], "roi_rolling": [...], "roi_summary": [one row],
    }

Dates are ``datetime.date``, timestamps naive UTC ``datetime.datetime``, numbers
``float``/``int`` and null ``None``.
"""

from __future__ import annotations

import calendar
import csv
import dataclasses
import math
import re
import statistics
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

Row = dict[str, Any]
RawRow = dict[str, str]

CRM_COST_PREFIX = "crm_"
PERIODS = ("month", "quarter", "week")

KPI_COLUMNS = (
    "deals_created",
    "deals_won",
    "deals_lost",
    "win_rate",
    "revenue_won",
    "avg_deal_size",
    "sales_cycle_days_median",
    "sales_cycle_days_mean",
    "customers_active_start",
    "customers_new",
    "customers_churned",
    "churn_rate",
    "retention_rate",
    "sales_marketing_spend",
    "cac",
    "csat_avg",
    "adoption_rate",
    "operating_cost",
    "crm_cost",
    "open_deals_start",
    "open_pipeline_value_start",
    "pipeline_velocity",
)
# The KPIs that need customers: null (unknown) when no source provides any.
CUSTOMER_KPIS = (
    "customers_active_start", "customers_new", "customers_churned", "churn_rate", "retention_rate", "cac",
)
# kpi.periodic_by_segment: the deal KPIs of kpi.periodic per owner, pipeline and segment.
SEGMENT_TYPES = ("owner_id", "pipeline", "segment")
SEGMENT_KPIS = KPI_COLUMNS[: KPI_COLUMNS.index("sales_cycle_days_mean") + 1]
BY_SEGMENT_COLUMNS = ("segment_type", "segment", "period_start", "phase", *SEGMENT_KPIS, "low_volume")
PERIODIC_COLUMNS = ("period_start", "period_end", "phase", "is_complete", *KPI_COLUMNS)
BASELINE_COLUMNS = ("window_start", "window_end", "periods", *KPI_COLUMNS)
ROI_COLUMNS = (
    "period_start",
    "incremental_revenue",
    "benefit_revenue",
    "benefit_retention",
    "benefit_cost_savings",
    "benefit_total",
    "cost_total",
    "net_benefit",
    "cumulative_benefit",
    "cumulative_cost",
    "roi",
    "roi_pct",
    "gross_return_ratio",
    "roi_trailing_12m",
    "npv_cumulative",
    "payback_reached",
)
ROLLING_COLUMNS = (*ROI_COLUMNS, "expected_revenue")
SUMMARY_COLUMNS = (
    "as_of",
    "go_live",
    "periods_since_go_live",
    "cumulative_benefit",
    "cumulative_cost",
    "roi",
    "roi_pct",
    "gross_return_ratio",
    "payback_period_months",
    "npv",
)
DEAL_COLUMNS = (
    "deal_id",
    "deal_name",
    "account_id",
    "owner_id",
    "pipeline",
    "stage",
    "is_closed",
    "is_won",
    "is_deleted",
    "amount",
    "currency",
    "amount_base",
    "created_at",
    "closed_at",
    "updated_at",
)


# --------------------------------------------------------------------------
# Value parsing: one strict parser per type, so "does it parse" has one answer.
# --------------------------------------------------------------------------

# ISO 8601 extended format: a date, optionally a time (T or space separator,
# seconds and fraction optional) and an offset (Z, +HH, +HHMM, +HH:MM).
_TIMESTAMP_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"([Zz]|[+-]\d{2}(?::?\d{2})?)?)?$"
)
# Plain decimals with an optional leading minus: no exponent, no '+', no
# thousands separators, and so no NaN or inf either.
_NUMBER_RE = re.compile(r"^-?(?:\d+(?:\.\d*)?|\.\d+)$")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO 8601 timestamp into naive UTC.

    Why naive UTC: every comparison in the KPI rules is on UTC instants, so
    normalising once at parse time keeps the rest of the model offset-free. A
    bare date is midnight UTC; a time without an offset is taken as UTC.
    Raises ValueError when the text is not a valid timestamp.
    """
    match = _TIMESTAMP_RE.match(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if hour is None:
        return datetime(int(year), int(month), int(day))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    value = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro
    )
    if offset and offset.upper() != "Z":
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        off_hours, off_minutes = int(digits[:2]), int(digits[2:4] or "0")
        if off_hours > 23 or off_minutes > 59:
            raise ValueError(f"bad UTC offset: {text!r}")
        value -= sign * timedelta(hours=off_hours, minutes=off_minutes)
    return value


def parse_day(text: str) -> date:
    """Parse a date column (posted_on, fx date); a full timestamp gives its UTC date.

    Why: finance exports sometimes write posted_on as a timestamp; the team
    decided to accept it and keep the UTC calendar day.
    """
    return parse_timestamp(text).date()


def parse_number(text: str) -> float:
    """Parse a plain decimal (optional leading '-'); raise ValueError otherwise."""
    if _NUMBER_RE.match(text) is None:
        raise ValueError(f"not a plain decimal: {text!r}")
    return float(text)


def parse_bool(text: str) -> bool:
    """Parse true/false/1/0/yes/no, case-insensitively; raise ValueError otherwise."""
    try:
        return _BOOLEANS[text.lower()]
    except KeyError:
        raise ValueError(f"not a boolean: {text!r}") from None


def _try(parser: Callable[[str], Any], text: str | None) -> Any:
    """Parse text, returning None when it is empty or does not parse.

    Why: deduplication looks at created_at/closed_at before validation, where an
    unparseable value must not crash the model (the row is rejected later).
    """
    if text is None:
        return None
    try:
        return parser(text)
    except ValueError:
        return None


def _cell(raw: RawRow, name: str) -> str | None:
    """The stripped text of a CSV cell; None when the column is absent or the cell empty.

    Why: the rules treat an empty string as null; surrounding whitespace is never
    meaningful in an export file.
    """
    value = raw.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _currency(raw: RawRow, name: str = "currency") -> str | None:
    """A currency code, upper-cased so 'usd' and 'USD' find the same rate."""
    value = _cell(raw, name)
    return value.upper() if value is not None else None


def _field(
    raw: RawRow,
    name: str,
    parser: Callable[[str], Any],
    reasons: list[str],
    *,
    required: bool = False,
) -> Any:
    """Parse one column, appending a rejection reason when it is missing or bad.

    Why one helper: "a required field missing" and "any non-empty value that
    does not parse" are the two generic row rules, shared by every table.
    """
    text = _cell(raw, name)
    if text is None:
        if required:
            reasons.append(f"missing {name}")
        return None
    try:
        return parser(text)
    except ValueError:
        reasons.append(f"unparseable {name}")
        return None


def _read_csv(path: Path, *, required: bool = False) -> list[RawRow]:
    """Read a CSV file as text rows; an absent optional file is an empty stream.

    Why text only: typing is the reference model's job, done by the parsers above.
    """
    if not path.exists():
        if required:
            raise FileNotFoundError(f"required export file is missing: {path}")
        return []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is not None:
            reader.fieldnames = [name.strip() for name in reader.fieldnames]
        return [dict(row) for row in reader]


# --------------------------------------------------------------------------
# Dates and periods
# --------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """Shift a date by whole calendar months, clamping the day to the month's end.

    Why clamp: go_live 2025-03-31 minus one month must be a real date (02-28).
    """
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def period_floor(day: date, period: str) -> date:
    """Start of the calendar month / calendar quarter / ISO week holding day."""
    if period == "month":
        return day.replace(day=1)
    if period == "quarter":
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if period == "week":
        return day - timedelta(days=day.weekday())
    raise ValueError(f"unknown period {period!r}")


def period_next(start: date, period: str) -> date:
    """Start of the period after the one starting at start (= its exclusive end)."""
    if period == "month":
        return add_months(start, 1)
    if period == "quarter":
        return add_months(start, 3)
    if period == "week":
        return start + timedelta(days=7)
    raise ValueError(f"unknown period {period!r}")


def months_per_period(period: str) -> float:
    """Months per period: 1, 3 or 12/52 (a week)."""
    return {"month": 1.0, "quarter": 3.0, "week": 12 / 52}[period]


def _midnight(day: date) -> datetime:
    """Midnight UTC of a day, as a naive UTC timestamp for comparisons."""
    return datetime(day.year, day.month, day.day)


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The subset of crm_roi.yaml that the KPI and ROI rules read."""

    as_of: date
    go_live: date
    baseline_months: int
    period: str
    base_currency: str
    gross_margin: float
    attribution_share: float
    risk_adjustment: float
    discount_rate: float
    arpa_monthly: float | None
    accounts: dict[str, str]
    method: str = "flat"
    control_column: str | None = None
    control_values: tuple[str, ...] = ()
    per_owner: bool = False
    horizon_years: int = 3
    cost_risk_adjustment: float = 0.0

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> Settings:
        """Build settings from the test's dict; as_of None means today (UTC) as documented."""
        as_of = settings.get("as_of") or datetime.now(UTC).date()
        period = settings.get("period", "month")
        if period not in PERIODS:
            raise ValueError(f"unknown period {period!r}")
        arpa = settings.get("arpa_monthly")
        counterfactual = settings.get("counterfactual") or {}
        control = counterfactual.get("control")
        tei = settings.get("tei") or {}
        return cls(
            as_of=as_of,
            go_live=settings["go_live"],
            baseline_months=int(settings.get("baseline_months", 12)),
            period=period,
            base_currency=str(settings.get("base_currency", "USD")).upper(),
            gross_margin=float(settings.get("gross_margin", 1.0)),
            attribution_share=float(settings.get("attribution_share", 1.0)),
            risk_adjustment=float(settings.get("risk_adjustment", 0.0)),
            discount_rate=float(settings.get("discount_rate", 0.10)),
            arpa_monthly=None if arpa is None else float(arpa),
            # YAML may read unquoted account numbers as ints; exports hold text.
            accounts={str(k).strip(): str(v) for k, v in (settings.get("accounts") or {}).items()},
            method=counterfactual.get("method", "flat"),
            control_column=control.get("column", "segment") if control else None,
            control_values=tuple(control.get("values", ())) if control else (),
            per_owner=counterfactual.get("normalise_by") == "active_owners",
            horizon_years=int(tei.get("horizon_years", 3)),
            cost_risk_adjustment=float(tei.get("cost_risk_adjustment", 0.0)),
        )

    @property
    def cutoff(self) -> datetime:
        """Midnight UTC after as_of: an event counts when its timestamp is before this."""
        return _midnight(self.as_of + timedelta(days=1))

    @property
    def cutoff_day(self) -> date:
        """as_of + 1 day, as a date: a period is complete when period_end <= this."""
        return self.as_of + timedelta(days=1)

    @property
    def baseline_start(self) -> date:
        """go_live minus baseline_months calendar months."""
        return add_months(self.go_live, -self.baseline_months)


# --------------------------------------------------------------------------
# Staging: dedup, then validate the surviving row
# --------------------------------------------------------------------------


class _Rejections:
    """Collects quarantine rows: (table, key, reason)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, table: str, key: str | None, reasons: Iterable[str]) -> None:
        self.rows.append({"table": table, "key": key, "reason": "; ".join(reasons)})


class _KeyProblem(ValueError):
    """Raised by a key function when a row has no usable key (rejected on its own)."""


def _dedup(
    table: str,
    rows: list[RawRow],
    key_of: Callable[[RawRow], Hashable],
    display_key: Callable[[RawRow], str | None],
    rejections: _Rejections,
    version_of: Callable[[RawRow], datetime | None] | None = None,
) -> list[RawRow]:
    """Keep one row per key, before validation, as the row rules order it.

    The row with the latest version timestamp (updated_at) wins; on a tie the
    later row in the file wins; without version_of the last occurrence wins. A
    null version sorts below every timestamp. Rows without a key, and rows
    whose version text does not parse, cannot be placed and are rejected on
    their own without taking part. Survivors keep file order.
    """
    best: dict[Hashable, tuple[tuple[bool, datetime, int], RawRow]] = {}
    for index, raw in enumerate(rows):
        try:
            key = key_of(raw)
        except _KeyProblem as problem:
            rejections.add(table, display_key(raw), [str(problem)])
            continue
        version: datetime | None = None
        if version_of is not None:
            try:
                version = version_of(raw)
            except ValueError:
                rejections.add(table, display_key(raw), ["unparseable updated_at"])
                continue
        rank = (version is not None, version or datetime.min, index)
        if key not in best or rank > best[key][0]:
            best[key] = (rank, raw)
    return [raw for _, raw in sorted(best.values(), key=lambda item: item[0][2])]


def _required_key(name: str) -> Callable[[RawRow], str]:
    """Key function for a single text key column; empty means 'missing <name>'."""

    def key_of(raw: RawRow) -> str:
        value = _cell(raw, name)
        if value is None:
            raise _KeyProblem(f"missing {name}")
        return value

    return key_of


def _updated_at_version(raw: RawRow) -> datetime | None:
    """Version of a non-deal row: its updated_at when the table has one, else None."""
    text = _cell(raw, "updated_at")
    return None if text is None else parse_timestamp(text)


def _deal_version(raw: RawRow) -> datetime | None:
    """Version of a deal row for dedup.

    updated_at when present (ValueError when it does not parse, so the row is
    rejected alone); otherwise the documented default, the later of created_at and
    closed_at. closed_at is only read when is_closed is true (open deals may
    carry an expected close date that means nothing), and values that do not
    parse are skipped here because validation rejects them anyway.
    """
    text = _cell(raw, "updated_at")
    if text is not None:
        return parse_timestamp(text)
    candidates = [_try(parse_timestamp, _cell(raw, "created_at"))]
    if _try(parse_bool, _cell(raw, "is_closed")) is True:
        candidates.append(_try(parse_timestamp, _cell(raw, "closed_at")))
    present = [value for value in candidates if value is not None]
    return max(present) if present else None


@dataclass
class _Rates:
    """fx_rates as a lookup: the most recent rate on or before a day."""

    base_currency: str
    by_currency: dict[str, list[tuple[date, float]]] = field(default_factory=dict)

    def add(self, currency: str, day: date, rate: float) -> None:
        self.by_currency.setdefault(currency, []).append((day, rate))
        self.by_currency[currency].sort()

    def lookup(self, currency: str, day: date) -> float | None:
        """Rate for currency on day; the base currency is always 1; None when none applies."""
        if currency == self.base_currency:
            return 1.0
        rate = None
        for rate_day, value in self.by_currency.get(currency, []):
            if rate_day <= day:
                rate = value
        return rate


def _stage_fx(rows: list[RawRow], base_currency: str, rejections: _Rejections) -> _Rates:
    """Validate fx_rates (date, currency, rate_to_base > 0), deduplicated by (date, currency)."""

    def key_of(raw: RawRow) -> tuple[date, str]:
        day_text, currency = _cell(raw, "date"), _currency(raw)
        if day_text is None:
            raise _KeyProblem("missing date")
        if currency is None:
            raise _KeyProblem("missing currency")
        try:
            return parse_day(day_text), currency
        except ValueError:
            raise _KeyProblem("unparseable date") from None

    def display(raw: RawRow) -> str:
        return f"{_cell(raw, 'date') or ''}|{_currency(raw) or ''}"

    rates = _Rates(base_currency)
    version = _updated_at_version if rows and "updated_at" in rows[0] else None
    for raw in _dedup("fx_rates", rows, key_of, display, rejections, version):
        reasons: list[str] = []
        rate = _field(raw, "rate_to_base", parse_number, reasons, required=True)
        if rate is not None and not rate > 0:
            reasons.append("rate_to_base not > 0")
        if reasons:
            rejections.add("fx_rates", display(raw), reasons)
            continue
        day, currency = key_of(raw)
        rates.add(currency, day, rate)
    return rates


def _stage_deals(rows: list[RawRow], rates: _Rates, rejections: _Rejections) -> list[Row]:
    """Deduplicate and validate deals into staging rows (docs/row-rules.md)."""
    survivors = _dedup(
        "deals",
        rows,
        _required_key("deal_id"),
        lambda r: _cell(r, "deal_id"),
        rejections,
        _deal_version,
    )
    staged: list[Row] = []
    for raw in survivors:
        reasons: list[str] = []
        created = _field(raw, "created_at", parse_timestamp, reasons, required=True)
        is_closed = _field(raw, "is_closed", parse_bool, reasons, required=True)
        is_won = _field(raw, "is_won", parse_bool, reasons, required=True)
        is_deleted = _field(raw, "is_deleted", parse_bool, reasons)
        amount = _field(raw, "amount", parse_number, reasons)
        updated = _field(raw, "updated_at", parse_timestamp, reasons)
        currency = _currency(raw)

        closed = None
        if is_closed is True:
            # closed_at is read only for closed deals.
            if _cell(raw, "closed_at") is None:
                reasons.append("is_closed without closed_at")
            else:
                closed = _field(raw, "closed_at", parse_timestamp, reasons)
        if created is not None and closed is not None and closed.date() < created.date():
            reasons.append("closed_at before created_at")
        if is_won is True and is_closed is False:
            reasons.append("is_won while not is_closed")

        rate = None
        if amount is not None:
            if currency is None:
                reasons.append("amount without currency")
            else:
                rate_at = closed if is_closed is True else created if is_closed is False else None
                if rate_at is not None:
                    rate = rates.lookup(currency, rate_at.date())
                    if rate is None:
                        reasons.append(f"no fx rate for {currency} on {rate_at.date()}")

        if reasons:
            rejections.add("deals", _cell(raw, "deal_id"), reasons)
            continue
        if updated is None:
            updated = max(value for value in (created, closed) if value is not None)
        staged.append(
            {
                "deal_id": _cell(raw, "deal_id"),
                "deal_name": _cell(raw, "deal_name"),
                "account_id": _cell(raw, "account_id"),
                "owner_id": _cell(raw, "owner_id"),
                "pipeline": _cell(raw, "pipeline"),
                "segment": _cell(raw, "segment"),
                "stage": _cell(raw, "stage"),
                "is_closed": is_closed,
                "is_won": is_won,
                "is_deleted": bool(is_deleted),
                "amount": amount,
                "currency": currency,
                "amount_base": None if amount is None else amount * rate,
                "created_at": created,
                "closed_at": closed,
                "updated_at": updated,
            }
        )
    staged.sort(key=lambda row: row["deal_id"])
    return staged


def _stage_customers(rows: list[RawRow], rejections: _Rejections) -> list[Row]:
    """Customers: customer_id and started_at required; churned_at not before started_at."""
    version = _updated_at_version if rows and "updated_at" in rows[0] else None
    survivors = _dedup(
        "customers",
        rows,
        _required_key("customer_id"),
        lambda r: _cell(r, "customer_id"),
        rejections,
        version,
    )
    staged: list[Row] = []
    for raw in survivors:
        reasons: list[str] = []
        started = _field(raw, "started_at", parse_timestamp, reasons, required=True)
        churned = _field(raw, "churned_at", parse_timestamp, reasons)
        mrr = _field(raw, "mrr", parse_number, reasons)
        if started is not None and churned is not None and churned < started:
            reasons.append("churned_at before started_at")
        if reasons:
            rejections.add("customers", _cell(raw, "customer_id"), reasons)
            continue
        staged.append(
            {
                "customer_id": _cell(raw, "customer_id"),
                "started_at": started,
                "churned_at": churned,
                "mrr": mrr,
            }
        )
    return staged


def _stage_finance(
    rows: list[RawRow], rates: _Rates, accounts: dict[str, str], rejections: _Rejections
) -> list[Row]:
    """Finance GL lines: all five fields required, converted at the posted_on rate.

    Lines on unmapped accounts still stage (they are valid rows) but get no
    category, so they count nowhere.
    """
    version = _updated_at_version if rows and "updated_at" in rows[0] else None
    survivors = _dedup(
        "finance_gl",
        rows,
        _required_key("entry_id"),
        lambda r: _cell(r, "entry_id"),
        rejections,
        version,
    )
    staged: list[Row] = []
    for raw in survivors:
        reasons: list[str] = []
        posted_on = _field(raw, "posted_on", parse_day, reasons, required=True)
        account = _field(raw, "account", str, reasons, required=True)
        amount = _field(raw, "amount", parse_number, reasons, required=True)
        currency = _currency(raw)
        if currency is None:
            reasons.append("missing currency")
        rate = None
        if currency is not None and posted_on is not None:
            rate = rates.lookup(currency, posted_on)
            if rate is None:
                reasons.append(f"no fx rate for {currency} on {posted_on}")
        if reasons:
            rejections.add("finance_gl", _cell(raw, "entry_id"), reasons)
            continue
        staged.append(
            {
                "entry_id": _cell(raw, "entry_id"),
                "posted_on": posted_on,
                "account": account,
                "amount": amount,
                "currency": currency,
                "amount_base": amount * rate,
                "category": accounts.get(account),
            }
        )
    return staged


def _stage_csat(rows: list[RawRow], rejections: _Rejections) -> list[Row]:
    """csat responses: response_id, responded_at and score required."""
    version = _updated_at_version if rows and "updated_at" in rows[0] else None
    survivors = _dedup(
        "csat",
        rows,
        _required_key("response_id"),
        lambda r: _cell(r, "response_id"),
        rejections,
        version,
    )
    staged: list[Row] = []
    for raw in survivors:
        reasons: list[str] = []
        responded = _field(raw, "responded_at", parse_timestamp, reasons, required=True)
        score = _field(raw, "score", parse_number, reasons, required=True)
        if reasons:
            rejections.add("csat", _cell(raw, "response_id"), reasons)
            continue
        staged.append(
            {"response_id": _cell(raw, "response_id"), "responded_at": responded, "score": score}
        )
    return staged


def _stage_usage(rows: list[RawRow], rejections: _Rejections) -> list[Row]:
    """crm_usage rows: period_start, active_users, licensed_seats required; no key, no dedup."""
    staged: list[Row] = []
    for raw in rows:
        reasons: list[str] = []
        start = _field(raw, "period_start", parse_timestamp, reasons, required=True)
        active = _field(raw, "active_users", parse_number, reasons, required=True)
        seats = _field(raw, "licensed_seats", parse_number, reasons, required=True)
        if reasons:
            rejections.add("crm_usage", _cell(raw, "period_start"), reasons)
            continue
        staged.append({"period_start": start, "active_users": active, "licensed_seats": seats})
    return staged


# --------------------------------------------------------------------------
# Events as of as_of: what the KPI rules count
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Deal:
    created: datetime | None  # None when created at or after the cut-off
    closed: datetime | None  # None while open as of as_of
    won: bool
    amount_base: float | None
    cycle_days: int | None
    deal_id: str = ""
    owner: str | None = None
    columns: tuple[tuple[str, str | None], ...] = ()  # segment, pipeline, owner_id: a control group's column


@dataclass(frozen=True)
class _Customer:
    started: datetime
    churned: datetime | None  # None when not churned as of as_of


@dataclass
class _Facts:
    """Staged rows reduced to the events that count as of as_of.

    Why a separate step: the cut-off and the "deleted counts nowhere" rule then
    live in one place, and every KPI below only asks "is this event in P".
    """

    deals: list[_Deal]
    customers: list[_Customer]
    finance: list[tuple[date, str, float]]  # (posted_on, category, amount_base)
    csat: list[tuple[datetime, float]]
    usage: list[tuple[datetime, float, float]]

    @classmethod
    def build(
        cls,
        cfg: Settings,
        deals: list[Row],
        customers: list[Row],
        finance: list[Row],
        csat: list[Row],
        usage: list[Row],
    ) -> _Facts:
        cutoff = cfg.cutoff

        def counted(ts: datetime | None) -> datetime | None:
            return ts if ts is not None and ts < cutoff else None

        fact_deals = []
        for deal in deals:
            if deal["is_deleted"]:
                continue
            created = counted(deal["created_at"])
            closed = counted(deal["closed_at"]) if deal["is_closed"] else None
            if created is None and closed is None:
                continue
            cycle = None
            if closed is not None:
                cycle = (deal["closed_at"].date() - deal["created_at"].date()).days
            fact_deals.append(
                _Deal(created, closed, bool(deal["is_won"]), deal["amount_base"], cycle,
                      deal["deal_id"], deal["owner_id"],
                      tuple((c, deal[c]) for c in ("segment", "pipeline", "owner_id")))
            )
        return cls(
            deals=fact_deals,
            customers=[
                _Customer(c["started_at"], counted(c["churned_at"]))
                for c in customers
                if c["started_at"] < cutoff
            ],
            finance=[
                (f["posted_on"], f["category"], f["amount_base"])
                for f in finance
                if f["category"] is not None and f["posted_on"] < cfg.cutoff_day
            ],
            csat=[(c["responded_at"], c["score"]) for c in csat if c["responded_at"] < cutoff],
            usage=[
                (u["period_start"], u["active_users"], u["licensed_seats"])
                for u in usage
                if u["period_start"] < cutoff
            ],
        )


@dataclass
class _Window:
    """Raw KPI ingredients of one window [start, end): counts, sums and samples.

    Why keep ingredients rather than ratios: the baseline pools them over several
    periods (sum of won / sum of closed), which ratios cannot give back.
    """

    deals_created: int
    deals_won: int
    deals_lost: int
    won_with_amount: int
    revenue_won: float
    cycles: list[int]
    active_start: int
    new: int
    churned: int
    sales_marketing_spend: float
    operating_cost: float
    crm_cost: float
    csat_scores: list[float]
    usage_rows: int
    active_users: float
    licensed_seats: float
    open_deals: int  # created before the window, not closed before it
    open_value: float


def _window(facts: _Facts, start: date, end: date) -> _Window:
    """Count the events of [start, end) (UTC), exactly as the KPI definitions say."""
    lo, hi = _midnight(start), _midnight(end)

    def inside(ts: datetime | None) -> bool:
        return ts is not None and lo <= ts < hi

    closed = [d for d in facts.deals if inside(d.closed)]
    won = [d for d in closed if d.won]
    active = [
        c for c in facts.customers if c.started < lo and (c.churned is None or c.churned >= lo)
    ]
    lines = [(cat, amt) for day, cat, amt in facts.finance if start <= day < end]
    usage = [(a, s) for ts, a, s in facts.usage if inside(ts)]
    open_deals = [d for d in facts.deals
                  if d.created is not None and d.created < lo and not (d.closed is not None and d.closed < lo)]
    return _Window(
        deals_created=sum(1 for d in facts.deals if inside(d.created)),
        deals_won=len(won),
        deals_lost=len(closed) - len(won),
        won_with_amount=sum(1 for d in won if d.amount_base is not None),
        revenue_won=math.fsum(d.amount_base for d in won if d.amount_base is not None),
        cycles=[d.cycle_days for d in won if d.cycle_days is not None],
        active_start=len(active),
        new=sum(1 for c in facts.customers if inside(c.started)),
        churned=sum(1 for c in active if inside(c.churned)),
        sales_marketing_spend=math.fsum(a for cat, a in lines if cat == "sales_marketing"),
        operating_cost=math.fsum(a for cat, a in lines if cat == "operating_cost"),
        crm_cost=math.fsum(a for cat, a in lines if cat.startswith(CRM_COST_PREFIX)),
        csat_scores=[score for ts, score in facts.csat if inside(ts)],
        usage_rows=len(usage),
        active_users=math.fsum(a for a, _ in usage),
        licensed_seats=math.fsum(s for _, s in usage),
        open_deals=len(open_deals),
        open_value=math.fsum(d.amount_base for d in open_deals if d.amount_base is not None),
    )


def _ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, null when the denominator is 0 (the null rule)."""
    return None if denominator == 0 else numerator / denominator


def _rates_and_samples(
    won: int,
    lost: int,
    revenue: float,
    with_amount: int,
    cycles: list[int],
    active_start: float,
    churned: float,
    spend: float,
    new: float,
    scores: list[float],
    usage_rows: int,
    active_users: float,
    seats: float,
) -> Row:
    """The ratio KPIs, shared by a single period and by the pooled baseline."""
    churn_rate = _ratio(churned, active_start)
    return {
        "win_rate": _ratio(won, won + lost),
        "avg_deal_size": _ratio(revenue, with_amount),
        "sales_cycle_days_median": float(statistics.median(cycles)) if cycles else None,
        "sales_cycle_days_mean": float(statistics.fmean(cycles)) if cycles else None,
        "churn_rate": churn_rate,
        "retention_rate": None if churn_rate is None else 1 - churn_rate,
        "cac": _ratio(spend, new),
        "csat_avg": statistics.fmean(scores) if scores else None,
        # No usage rows -> null; rows whose seats sum to 0 -> null as well (0/0).
        "adoption_rate": _ratio(active_users, seats) if usage_rows else None,
    }


def _period_kpis(w: _Window) -> Row:
    """One kpi.periodic row's KPI columns from a window's ingredients."""
    row: Row = {
        "deals_created": w.deals_created,
        "deals_won": w.deals_won,
        "deals_lost": w.deals_lost,
        "revenue_won": w.revenue_won,
        "customers_active_start": w.active_start,
        "customers_new": w.new,
        "customers_churned": w.churned,
        "sales_marketing_spend": w.sales_marketing_spend,
        "operating_cost": w.operating_cost,
        "crm_cost": w.crm_cost,
        "open_deals_start": w.open_deals,
        "open_pipeline_value_start": w.open_value,
    }
    row.update(
        _rates_and_samples(
            w.deals_won,
            w.deals_lost,
            w.revenue_won,
            w.won_with_amount,
            w.cycles,
            w.active_start,
            w.churned,
            w.sales_marketing_spend,
            w.new,
            w.csat_scores,
            w.usage_rows,
            w.active_users,
            w.licensed_seats,
        )
    )
    row["pipeline_velocity"] = _velocity(row)
    return {name: row[name] for name in KPI_COLUMNS}


def _velocity(row: Row) -> float | None:
    """Open deals x win rate x average deal size / mean cycle days; null when a term is null or 0."""
    terms = (row["open_deals_start"], row["win_rate"], row["avg_deal_size"], row["sales_cycle_days_mean"])
    if any(t is None or t == 0 for t in terms):
        return None
    open_deals, win_rate, size, cycle = terms
    return open_deals * win_rate * size / cycle


# --------------------------------------------------------------------------
# KPI tables
# --------------------------------------------------------------------------


def _periods(first_day: date, last_day: date, period: str) -> list[tuple[date, date]]:
    """Every calendar period from the one holding first_day to the one holding last_day."""
    out = []
    start = period_floor(first_day, period)
    while start <= last_day:
        end = period_next(start, period)
        out.append((start, end))
        start = end
    return out


def _kpi_periodic(facts: _Facts, cfg: Settings) -> list[tuple[Row, _Window]]:
    """kpi.periodic rows (with their ingredients), baseline start through as_of's period."""
    rows = []
    for start, end in _periods(cfg.baseline_start, cfg.as_of, cfg.period):
        window = _window(facts, start, end)
        row: Row = {
            "period_start": start,
            "period_end": end,
            "phase": "post_go_live" if start >= cfg.go_live else "baseline",
            "is_complete": end <= cfg.cutoff_day,
        }
        row.update(_period_kpis(window))
        rows.append((row, window))
    return rows


def _kpi_periodic_by_segment(facts: _Facts, deals: list[Row], cfg: Settings) -> list[Row]:
    """kpi.periodic_by_segment: every period for every owner, pipeline and (non-null) segment a live deal has."""
    rows = []
    for segment_type in SEGMENT_TYPES:
        values = {d[segment_type] for d in deals if not d["is_deleted"]}
        if segment_type == "segment":
            values.discard(None)
        for value in sorted(values, key=lambda v: (v is None, v or "")):
            mine = dataclasses.replace(facts, deals=[d for d in facts.deals if dict(d.columns)[segment_type] == value])
            for start, end in _periods(cfg.baseline_start, cfg.as_of, cfg.period):
                window = _window(mine, start, end)
                kpis = _period_kpis(window)
                rows.append({
                    "segment_type": segment_type, "segment": value, "period_start": start,
                    "phase": "post_go_live" if start >= cfg.go_live else "baseline",
                    **{k: kpis[k] for k in SEGMENT_KPIS},
                    "low_volume": window.deals_won + window.deals_lost < 10,
                })
    return rows


def _kpi_baseline(periodic: list[tuple[Row, _Window]], cfg: Settings) -> Row:
    """kpi.baseline: flows averaged per period, rates pooled, over whole baseline periods."""
    inside = [
        (row, w)
        for row, w in periodic
        if row["period_start"] >= cfg.baseline_start and row["period_end"] <= cfg.go_live
    ]
    windows = [w for _, w in inside]
    n = len(windows)

    def mean(values: Iterable[float]) -> float | None:
        return math.fsum(values) / n if n else None

    won = sum(w.deals_won for w in windows)
    revenue = math.fsum(w.revenue_won for w in windows)
    active = sum(w.active_start for w in windows)
    churned = sum(w.churned for w in windows)
    spend = math.fsum(w.sales_marketing_spend for w in windows)
    new = sum(w.new for w in windows)
    row: Row = {
        "window_start": inside[0][0]["period_start"] if inside else None,
        "window_end": inside[-1][0]["period_end"] if inside else None,
        "periods": n,
        "deals_created": mean(w.deals_created for w in windows),
        "deals_won": mean(w.deals_won for w in windows),
        "deals_lost": mean(w.deals_lost for w in windows),
        "revenue_won": mean(w.revenue_won for w in windows),
        "customers_active_start": mean(w.active_start for w in windows),
        "customers_new": mean(w.new for w in windows),
        "customers_churned": mean(w.churned for w in windows),
        "sales_marketing_spend": mean(w.sales_marketing_spend for w in windows),
        "operating_cost": mean(w.operating_cost for w in windows),
        "crm_cost": mean(w.crm_cost for w in windows),
        "open_deals_start": mean(w.open_deals for w in windows),
        "open_pipeline_value_start": mean(w.open_value for w in windows),
    }
    row.update(
        _rates_and_samples(
            won,
            sum(w.deals_lost for w in windows),
            revenue,
            sum(w.won_with_amount for w in windows),
            [c for w in windows for c in w.cycles],
            active,
            churned,
            spend,
            new,
            [s for w in windows for s in w.csat_scores],
            sum(w.usage_rows for w in windows),
            math.fsum(w.active_users for w in windows),
            math.fsum(w.licensed_seats for w in windows),
        )
    )
    row["pipeline_velocity"] = _velocity(row)
    return {name: row[name] for name in BASELINE_COLUMNS}


# --------------------------------------------------------------------------
# ROI tables
# --------------------------------------------------------------------------


def _roi_rolling(
    facts: _Facts, baseline: Row, cfg: Settings, valued: dict[date, tuple[float, float | None]]
) -> list[Row]:
    """roi.rolling: complete periods from the earlier of go-live and the first CRM cost.

    valued maps a period to (revenue, E) under the configured counterfactual; a period
    without an entry (before the baseline start) has neither.
    """
    crm_days = [day for day, cat, _ in facts.finance if cat.startswith(CRM_COST_PREFIX)]
    anchor = min([cfg.go_live, *crm_days])
    mpp = months_per_period(cfg.period)
    share = cfg.gross_margin * cfg.attribution_share
    base_operating = baseline["operating_cost"]
    base_churn = baseline["churn_rate"]

    rows: list[Row] = []
    customers_saved = 0.0
    start = period_floor(anchor, cfg.period)
    while (end := period_next(start, cfg.period)) <= cfg.cutoff_day:
        w = _window(facts, start, end)
        revenue, expected = valued.get(start, (None, None))
        if start < cfg.go_live:
            incremental: float | None = 0.0
            b_revenue = b_retention = b_savings = 0.0
            expected = revenue  # before go-live E is the actual revenue
        else:
            # A missing baseline (no whole baseline period) gives no measurable
            # benefit: incremental revenue is unknown and the benefit terms are 0.
            incremental = None if expected is None or revenue is None else revenue - expected
            b_revenue = 0.0 if incremental is None else incremental * share
            churn = _ratio(w.churned, w.active_start)
            if base_churn is not None and churn is not None:
                customers_saved += (base_churn - churn) * w.active_start
            b_retention = (
                0.0
                if cfg.arpa_monthly is None
                else customers_saved * cfg.arpa_monthly * mpp * share
            )
            b_savings = (
                0.0
                if base_operating is None
                else (base_operating - w.operating_cost) * cfg.attribution_share
            )
        total = (b_revenue + b_retention + b_savings) * (1 - cfg.risk_adjustment)
        rows.append(
            {
                "period_start": start,
                "expected_revenue": expected,
                "incremental_revenue": incremental,
                "benefit_revenue": b_revenue,
                "benefit_retention": b_retention,
                "benefit_cost_savings": b_savings,
                "benefit_total": total,
                "cost_total": w.crm_cost,
                "net_benefit": total - w.crm_cost,
            }
        )
        start = end

    for k, row in enumerate(rows):
        upto = rows[: k + 1]
        benefit = math.fsum(r["benefit_total"] for r in upto)
        cost = math.fsum(r["cost_total"] for r in upto)
        roi = _ratio(benefit - cost, cost)
        trailing_from = add_months(row["period_start"], -12)
        trailing = [r for r in upto if r["period_start"] > trailing_from]
        t_benefit = math.fsum(r["benefit_total"] for r in trailing)
        t_cost = math.fsum(r["cost_total"] for r in trailing)
        row.update(
            {
                "cumulative_benefit": benefit,
                "cumulative_cost": cost,
                "roi": roi,
                "roi_pct": None if roi is None else 100 * roi,
                "gross_return_ratio": _ratio(benefit, cost),
                "roi_trailing_12m": _ratio(t_benefit - t_cost, t_cost),
                "npv_cumulative": math.fsum(
                    r["net_benefit"] / (1 + cfg.discount_rate) ** (j * mpp / 12)
                    for j, r in enumerate(upto)
                ),
                "payback_reached": benefit >= cost,
            }
        )
    return [{name: row[name] for name in ROLLING_COLUMNS} for row in rows]


def _roi_summary(periodic: list[Row], rolling: list[Row], cfg: Settings) -> Row:
    """roi.summary: the last roi.rolling row's totals plus payback and period count."""
    last = rolling[-1] if rolling else {}
    post = [r for r in rolling if r["period_start"] >= cfg.go_live]
    payback = next(
        (i * months_per_period(cfg.period) for i, r in enumerate(post, 1) if r["payback_reached"]),
        None,
    )
    return {
        "as_of": cfg.as_of,
        "go_live": cfg.go_live,
        "periods_since_go_live": sum(
            1 for r in periodic if r["is_complete"] and r["period_start"] >= cfg.go_live
        ),
        "cumulative_benefit": last.get("cumulative_benefit"),
        "cumulative_cost": last.get("cumulative_cost"),
        "roi": last.get("roi"),
        "roi_pct": last.get("roi_pct"),
        "gross_return_ratio": last.get("gross_return_ratio"),
        "payback_period_months": payback,
        "npv": last.get("npv_cumulative"),
    }


# --------------------------------------------------------------------------
# Counterfactual methods, bootstrap, sensitivity, TEI
# --------------------------------------------------------------------------

METHODS = ("flat", "seasonal", "trend", "control")
COUNTERFACTUAL_COLUMNS = (
    "method",
    "period_start",
    "in_baseline",
    "revenue_won",
    "control_revenue_won",
    "active_owners",
    "control_active_owners",
    "expected_revenue",
)
SUMMARY_METHOD_COLUMNS = (
    "counterfactual_method",
    "incremental_revenue",
    "control_pretrend_slope",
    "tei_npv",
    "tei_roi",
)
SUMMARY_INTERVAL_COLUMNS = (
    "incremental_revenue_p05",
    "incremental_revenue_p50",
    "incremental_revenue_p95",
    "roi_p05",
    "roi_p50",
    "roi_p95",
)
SENSITIVITY_COLUMNS = ("assumption", "setting", "value", "roi", "roi_pct", "delta_roi")
TEI_COLUMNS = (
    "year",
    "year_start",
    "year_end",
    "is_projected",
    "benefits",
    "costs",
    "pv_benefits",
    "pv_costs",
    "cumulative_npv",
)
BOOTSTRAP_COLUMNS = ("draw", "incremental_revenue", "roi")

# weight(deal_id, draw) -> the deal's Poisson weight in that draw (the test reads them from DuckDB).
Weights = Callable[[str, int], int]


class UnsupportedMethod(ValueError):
    """The configured counterfactual method cannot be used on this data."""


def _periods_per_year(period: str) -> int:
    return {"month": 12, "quarter": 4, "week": 52}[period]


def _in_control(deal: _Deal, cfg: Settings) -> bool:
    """DESIGN: deals whose `column` value is in `values` are the control group, the rest treated."""
    return cfg.control_column is not None and dict(deal.columns).get(cfg.control_column) in cfg.control_values


@dataclass
class _PeriodFacts:
    """What the counterfactual methods need of one complete period."""

    start: date
    in_baseline: bool
    revenue: float  # every won deal (kpi.periodic's revenue_won)
    treated: float
    control: float
    owners: int
    treated_owners: int
    control_owners: int


def _period_facts(facts: _Facts, cfg: Settings) -> list[_PeriodFacts]:
    """Every complete period from the one holding the baseline start, with revenue and owners by group."""
    out = []
    for start, end in _periods(cfg.baseline_start, cfg.as_of, cfg.period):
        if end > cfg.cutoff_day:
            continue
        lo, hi = _midnight(start), _midnight(end)

        def inside(ts: datetime | None, lo: datetime = lo, hi: datetime = hi) -> bool:
            return ts is not None and lo <= ts < hi

        won = [d for d in facts.deals if d.won and inside(d.closed)]
        active = [d for d in facts.deals if inside(d.created) or inside(d.closed)]

        def owners(deals: list[_Deal]) -> int:
            return len({d.owner for d in deals if d.owner is not None})

        out.append(_PeriodFacts(
            start=start,
            in_baseline=start >= cfg.baseline_start and end <= cfg.go_live,
            revenue=math.fsum(d.amount_base for d in won if d.amount_base is not None),
            treated=math.fsum(d.amount_base for d in won if d.amount_base is not None and not _in_control(d, cfg)),
            control=math.fsum(d.amount_base for d in won if d.amount_base is not None and _in_control(d, cfg)),
            owners=owners(active),
            treated_owners=owners([d for d in active if not _in_control(d, cfg)]),
            control_owners=owners([d for d in active if _in_control(d, cfg)]),
        ))
    return out


def _solve(matrix: list[list[float]], vector: list[float]) -> list[float]:
    """Solve a small linear system by Gauss-Jordan elimination with partial pivoting."""
    n = len(vector)
    a = [[*row, v] for row, v in zip(matrix, vector, strict=True)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(n):
            if r != col:
                factor = a[r][col] / a[col][col]
                a[r] = [x - factor * y for x, y in zip(a[r], a[col], strict=True)]
    return [a[i][n] / a[i][i] for i in range(n)]


def _least_squares(x: list[list[float]], y: list[float]) -> list[float]:
    """beta minimising |y - X beta|^2, from the normal equations X'X beta = X'y."""
    k = len(x[0])
    xtx = [[math.fsum(row[i] * row[j] for row in x) for j in range(k)] for i in range(k)]
    xty = [math.fsum(row[i] * v for row, v in zip(x, y, strict=True)) for i in range(k)]
    return _solve(xtx, xty)


def _periods_since(first: date, day: date, period: str) -> int:
    """Whole periods from the period starting on `first` to the one starting on `day`."""
    if period == "week":
        return (day - first).days // 7
    months = (day.year - first.year) * 12 + day.month - first.month
    return months // (1 if period == "month" else 3)


def _season(day: date, period: str) -> int:
    return day.month if period == "month" else (day.month - 1) // 3 + 1


def _expected(method: str, rows: list[tuple[_PeriodFacts, float, float, float]], cfg: Settings) -> list[float | None]:
    """E(P) for every row, each row being (period, level y, control level yc, scale).

    Written from DESIGN's definitions; the seasonal terms of trend are effect-coded dummies
    (each season's term is a coefficient, the last one minus the sum of the others), solved by
    the normal equations.
    """
    base = [(i, r) for i, r in enumerate(rows) if r[0].in_baseline]
    n = len(base)
    per_year = _periods_per_year(cfg.period)
    if n == 0:
        return [None] * len(rows)
    first = base[0][1][0].start
    if method == "flat":
        mean = math.fsum(r[1] for _, r in base) / n
        return [mean * r[3] for r in rows]
    if method == "control":
        treated = math.fsum(r[1] for _, r in base) / n
        control = math.fsum(r[2] for _, r in base) / n
        return [None if control == 0 else treated * r[2] / control * r[3] for r in rows]
    if method == "seasonal":
        last_year = [r for _, r in base[-per_year:]]
        growth = 1.0
        if n >= 2 * per_year:
            before = math.fsum(r[1] for _, r in base[-2 * per_year:-per_year])
            growth = math.fsum(r[1] for r in last_year) / before if before else None
        out: list[float | None] = []
        for r in rows:
            same = next(q for q in last_year if _season(q[0].start, cfg.period) == _season(r[0].start, cfg.period))
            years = ((r[0].start.year - same[0].start.year) * 12 + r[0].start.month - same[0].start.month) // 12
            out.append(None if growth is None else same[1] * growth**years * r[3])
        return out
    # trend: ln y = a + b t (+ s_season), t = periods since the first baseline period.
    seasons = cfg.period != "week" and n >= 2 * per_year

    def design(day: date) -> list[float]:
        row = [1.0, float(_periods_since(first, day, cfg.period))]
        if seasons:
            s = _season(day, cfg.period)
            row += [1.0 if s == m else -1.0 if s == per_year else 0.0 for m in range(1, per_year)]
        return row

    fitted = [(design(r[0].start), math.log(r[1])) for _, r in base if r[1] > 0]
    beta = _least_squares([x for x, _ in fitted], [y for _, y in fitted])
    return [math.exp(math.fsum(b * v for b, v in zip(beta, design(r[0].start), strict=True))) * r[3] for r in rows]


def _levels(method: str, facts: list[_PeriodFacts], cfg: Settings, revenue: list[float], control: list[float]
            ) -> list[tuple[_PeriodFacts, float, float, float]]:
    """(period, y, yc, scale): revenue, or revenue per active owner scaled back by the owners."""
    out = []
    for f, rev, ctl in zip(facts, revenue, control, strict=True):
        owners = f.treated_owners if method == "control" else f.owners
        if cfg.per_owner:
            out.append((f, rev / owners if owners else 0.0, ctl / f.control_owners if f.control_owners else 0.0,
                        float(owners)))
        else:
            out.append((f, rev, ctl, 1.0))
    return out


def _method_revenue(method: str, f: _PeriodFacts) -> float:
    return f.treated if method == "control" else f.revenue


def _supported(method: str, facts: list[_PeriodFacts], deals: list[_Deal], cfg: Settings) -> bool:
    """Whether DESIGN lets the method run on this data (and configuration)."""
    base = [f for f in facts if f.in_baseline]
    per_year = _periods_per_year(cfg.period)
    if method == "seasonal":
        if cfg.period == "week" or len(base) < per_year:
            return False
        return len(base) < 2 * per_year or math.fsum(f.revenue for f in base[-2 * per_year:-per_year]) > 0
    if method == "trend":
        return len(base) >= 3 and all(f.revenue > 0 for f in base)
    if method == "control":
        if cfg.control_column is None:
            return False
        groups = {_in_control(d, cfg) for d in deals}
        return groups == {True, False} and bool(base) and math.fsum(f.control for f in base) / len(base) > 0
    return True


def _counterfactual(facts: _Facts, cfg: Settings) -> list[Row]:
    """roi.counterfactual: E per complete period under every method the data supports."""
    periods = _period_facts(facts, cfg)
    methods = [m for m in METHODS if _supported(m, periods, facts.deals, cfg)]
    if cfg.method not in methods:
        raise UnsupportedMethod(cfg.method)
    out = []
    for method in methods:
        revenue = [_method_revenue(method, f) for f in periods]
        control = [f.control for f in periods]
        expected = _expected(method, _levels(method, periods, cfg, revenue, control), cfg)
        for f, e in zip(periods, expected, strict=True):
            is_control = method == "control"
            out.append({
                "method": method,
                "period_start": f.start,
                "in_baseline": f.in_baseline,
                "revenue_won": _method_revenue(method, f),
                "control_revenue_won": f.control if is_control else None,
                "active_owners": f.treated_owners if is_control else f.owners,
                "control_active_owners": f.control_owners if is_control else None,
                "expected_revenue": e,
            })
    return out


def _pretrend_slope(counterfactual: list[Row], cfg: Settings) -> float | None:
    """Least-squares slope per year of ln(treated / control revenue) over baseline periods where both > 0."""
    points = [(r["period_start"], math.log(r["revenue_won"] / r["control_revenue_won"])) for r in counterfactual
              if r["method"] == "control" and r["in_baseline"] and r["revenue_won"] > 0
              and r["control_revenue_won"] > 0]
    if cfg.method != "control" or len(points) < 2:
        return None
    first = points[0][0]
    slope = _least_squares([[1.0, float(_periods_since(first, day, cfg.period))] for day, _ in points],
                           [y for _, y in points])[1]
    return slope * _periods_per_year(cfg.period)


def _roi_at(incremental: float, rolling: list[Row], facts: _Facts, baseline: Row, cfg: Settings,
            margin: float, share: float, risk: float) -> float | None:
    """Net ROI at as_of with this incremental revenue and these settings, every benefit valued anew."""
    mpp = months_per_period(cfg.period)
    saved = savings = 0.0
    retention = 0.0
    for row in rolling:
        if row["period_start"] < cfg.go_live:
            continue
        w = _window(facts, row["period_start"], period_next(row["period_start"], cfg.period))
        churn = _ratio(w.churned, w.active_start)
        if baseline["churn_rate"] is not None and churn is not None:
            saved += (baseline["churn_rate"] - churn) * w.active_start
        if cfg.arpa_monthly is not None:
            retention += saved * cfg.arpa_monthly * mpp * margin * share
        if baseline["operating_cost"] is not None:
            savings += (baseline["operating_cost"] - w.operating_cost) * share
    benefit = (incremental * margin * share + retention + savings) * (1 - risk)
    cost = math.fsum(r["cost_total"] for r in rolling)
    return _ratio(benefit - cost, cost)


def _post_incremental(rows: Iterable[Row], rolling: list[Row], cfg: Settings) -> float | None:
    """Cumulative revenue - E after go-live over the roi.rolling periods; None when an E is missing."""
    periods = {r["period_start"] for r in rolling if r["period_start"] >= cfg.go_live}
    chosen = [r for r in rows if r["period_start"] in periods]
    if any(r["expected_revenue"] is None for r in chosen):
        return None
    return math.fsum(r["revenue_won"] - r["expected_revenue"] for r in chosen)


def _sensitivity(counterfactual: list[Row], rolling: list[Row], facts: _Facts, baseline: Row,
                 cfg: Settings) -> list[Row]:
    """roi.sensitivity: one assumption moved at a time, and every supported method."""
    def incremental(method: str) -> float:
        value = _post_incremental([r for r in counterfactual if r["method"] == method], rolling, cfg)
        return value or 0.0

    base_inc = incremental(cfg.method)
    gm, share, risk = cfg.gross_margin, cfg.attribution_share, cfg.risk_adjustment

    def roi(inc: float, m: float, s: float, r: float) -> float | None:
        return _roi_at(inc, rolling, facts, baseline, cfg, m, s, r)

    configured = roi(base_inc, gm, share, risk)
    moves = [
        ("gross_margin", "x0.8", min(1.0, gm * 0.8), (min(1.0, gm * 0.8), share, risk)),
        ("gross_margin", "x1.2", min(1.0, gm * 1.2), (min(1.0, gm * 1.2), share, risk)),
        ("attribution_share", "x0.8", min(1.0, share * 0.8), (gm, min(1.0, share * 0.8), risk)),
        ("attribution_share", "x1.2", min(1.0, share * 1.2), (gm, min(1.0, share * 1.2), risk)),
        ("risk_adjustment", "-0.1", max(0.0, risk - 0.1), (gm, share, max(0.0, risk - 0.1))),
        ("risk_adjustment", "+0.1", min(1.0, risk + 0.1), (gm, share, min(1.0, risk + 0.1))),
    ]
    out = []
    for assumption, setting, value, (m, s, r) in moves:
        out.append((assumption, setting, value, roi(base_inc, m, s, r)))
    for method in METHODS:
        if any(r["method"] == method for r in counterfactual):
            out.append(("counterfactual", method, None, roi(incremental(method), gm, share, risk)))
    return [{"assumption": a, "setting": st, "value": v, "roi": x, "roi_pct": None if x is None else 100 * x,
             "delta_roi": None if x is None or configured is None else x - configured} for a, st, v, x in out]


def _add_years(day: date, years: int) -> date:
    return add_months(day, 12 * years)


def _tei(rolling: list[Row], cfg: Settings) -> list[Row]:
    """roi.tei: year 0 before go-live, year y = [go_live + y-1 years, go_live + y years)."""
    mpp = months_per_period(cfg.period)
    per_year = _periods_per_year(cfg.period)
    post = [r for r in rolling if r["period_start"] >= cfg.go_live]
    trailing = post[-per_year:]
    months = len(trailing) * mpp
    rate_b = math.fsum(r["benefit_total"] for r in trailing) / months if months else None
    rate_c = math.fsum(r["cost_total"] for r in trailing) / months if months else None
    out: list[Row] = []
    cumulative: float | None = 0.0
    for year in range(cfg.horizon_years + 1):
        if year == 0:
            start = min([cfg.go_live, *(r["period_start"] for r in rolling)])
            end = cfg.go_live
        else:
            start, end = _add_years(cfg.go_live, year - 1), _add_years(cfg.go_live, year)
        rows = [r for r in rolling if start <= r["period_start"] < end]
        benefits: float | None = math.fsum(r["benefit_total"] for r in rows)
        costs: float | None = math.fsum(r["cost_total"] for r in rows)
        unobserved = max(0, per_year - len(rows)) * mpp
        projected = year > 0 and unobserved > 0
        if projected:
            benefits = None if rate_b is None else benefits + rate_b * unobserved
            costs = None if rate_c is None else costs + rate_c * unobserved
        costs = None if costs is None else costs * (1 + cfg.cost_risk_adjustment)
        factor = (1 + cfg.discount_rate) ** year
        pv_b = None if benefits is None else benefits / factor
        pv_c = None if costs is None else costs / factor
        cumulative = None if cumulative is None or pv_b is None or pv_c is None else cumulative + pv_b - pv_c
        out.append({"year": year, "year_start": start, "year_end": end, "is_projected": projected,
                    "benefits": benefits, "costs": costs, "pv_benefits": pv_b, "pv_costs": pv_c,
                    "cumulative_npv": cumulative})
    return out


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between order statistics (Hyndman & Fan type 7)."""
    if not values:
        return None
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def _bootstrap(draws: int, weights: Weights, facts: _Facts, rolling: list[Row], baseline: Row,
               cfg: Settings) -> list[Row]:
    """roi.bootstrap: each won deal weighted in each draw; revenue, E and ROI again (the rest held)."""
    periods = _period_facts(facts, cfg)
    out = []
    for draw in range(1, draws + 1):
        treated, control = [], []
        for f in periods:
            end = _midnight(period_next(f.start, cfg.period))
            won = [d for d in facts.deals if d.won and d.closed is not None and _midnight(f.start) <= d.closed < end
                   and d.amount_base is not None]
            treated.append(math.fsum(weights(d.deal_id, draw) * d.amount_base for d in won if not _in_control(d, cfg)))
            control.append(math.fsum(weights(d.deal_id, draw) * d.amount_base for d in won if _in_control(d, cfg)))
        revenue = treated if cfg.method == "control" else [t + c for t, c in zip(treated, control, strict=True)]
        expected = _expected(cfg.method, _levels(cfg.method, periods, cfg, revenue, control), cfg)
        rows = [{"period_start": f.start, "revenue_won": rev, "expected_revenue": e}
                for f, rev, e in zip(periods, revenue, expected, strict=True)]
        incremental = _post_incremental(rows, rolling, cfg)
        roi = None if incremental is None else _roi_at(
            incremental, rolling, facts, baseline, cfg, cfg.gross_margin, cfg.attribution_share, cfg.risk_adjustment)
        out.append({"draw": draw, "incremental_revenue": incremental, "roi": roi})
    return out


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def compute(
    folder: Path, finance_file: Path, settings: dict[str, Any], weights: Weights | None = None
) -> dict[str, list[Row]]:
    """Compute staging deals, rejections, KPI and ROI tables from canonical files.

    folder holds deals.csv (required) and optionally customers.csv, fx_rates.csv,
    csat.csv and crm_usage.csv (deal_stage_history.csv feeds no KPI and is not
    read); finance_file is the finance GL export. settings uses crm_roi.yaml's
    keys (as_of and go_live as dates; accounts maps account -> category).
    weights gives the bootstrap's Poisson weights (uncertainty.draws of them per
    deal); without it the bootstrap and the summary's percentiles are left out.
    Raises UnsupportedMethod when the configured counterfactual cannot run.
    """
    folder, finance_file = Path(folder), Path(finance_file)
    cfg = Settings.from_dict(settings)
    rejections = _Rejections()

    rates = _stage_fx(_read_csv(folder / "fx_rates.csv"), cfg.base_currency, rejections)
    deals = _stage_deals(_read_csv(folder / "deals.csv", required=True), rates, rejections)
    raw_customers = _read_csv(folder / "customers.csv")
    customers = _stage_customers(raw_customers, rejections)
    finance = _stage_finance(
        _read_csv(finance_file, required=True), rates, cfg.accounts, rejections
    )
    csat = _stage_csat(_read_csv(folder / "csat.csv"), rejections)
    usage = _stage_usage(_read_csv(folder / "crm_usage.csv"), rejections)

    facts = _Facts.build(cfg, deals, customers, finance, csat, usage)
    periodic = _kpi_periodic(facts, cfg)
    baseline = _kpi_baseline(periodic, cfg)
    if not raw_customers:  # no source provides customers: their KPIs are unknown, not 0
        for row in [baseline, *(row for row, _ in periodic)]:
            row.update(dict.fromkeys(CUSTOMER_KPIS))
    periodic_rows = [row for row, _ in periodic]
    counterfactual = _counterfactual(facts, cfg)
    valued = {r["period_start"]: (r["revenue_won"], r["expected_revenue"])
              for r in counterfactual if r["method"] == cfg.method}
    rolling = _roi_rolling(facts, baseline, cfg, valued)
    summary = _roi_summary(periodic_rows, rolling, cfg)
    tei = _tei(rolling, cfg)
    draws = int((settings.get("uncertainty") or {}).get("draws", 1000))
    bootstrap = [] if weights is None else _bootstrap(draws, weights, facts, rolling, baseline, cfg)
    post = [r for r in rolling if r["period_start"] >= cfg.go_live]
    pv_costs = math.fsum(r["pv_costs"] for r in tei) if all(r["pv_costs"] is not None for r in tei) else None
    tei_npv = tei[-1]["cumulative_npv"]
    summary |= {
        "counterfactual_method": cfg.method,
        "incremental_revenue": math.fsum(r["incremental_revenue"] or 0.0 for r in post) if post else None,
        "control_pretrend_slope": _pretrend_slope(counterfactual, cfg),
        "tei_npv": tei_npv,
        "tei_roi": None if tei_npv is None or not pv_costs else tei_npv / pv_costs,
    }
    for column, q in (("incremental_revenue", 0.05), ("incremental_revenue", 0.5), ("incremental_revenue", 0.95),
                      ("roi", 0.05), ("roi", 0.5), ("roi", 0.95)):
        values = [r[column] for r in bootstrap if r[column] is not None]
        summary[f"{column}_p{round(100 * q):02d}"] = _percentile(values, q) if weights else None
    return {
        "staging_deals": [{name: d[name] for name in DEAL_COLUMNS} for d in deals],
        "rejected": rejections.rows,
        "kpi_periodic": [{name: r[name] for name in PERIODIC_COLUMNS} for r in periodic_rows],
        "kpi_periodic_by_segment": _kpi_periodic_by_segment(facts, deals, cfg),
        "kpi_baseline": [baseline],
        "roi_rolling": rolling,
        "roi_summary": [summary],
        "roi_counterfactual": counterfactual,
        "roi_sensitivity": _sensitivity(counterfactual, rolling, facts, baseline, cfg),
        "roi_tei": tei,
        "roi_bootstrap": bootstrap,
    }
