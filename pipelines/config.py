"""The one place that reads `crm_roi.yaml`.

Configuration is validated completely before any data is touched, so a typo in
a key or a path fails the run in a second with one line naming the key, rather
than an hour later in the middle of a load.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from connectors.contract import CANONICAL_STREAMS, require_tls
from connectors.files.dates import DAY_FIRST, DateSetting, format_order
from connectors.salesforce.settings import CUSTOMER_TYPES

if TYPE_CHECKING:
    from connectors.records import ApiSource

DEFAULT_CONFIG_FILE = "crm_roi.yaml"
FINANCE_SOURCE = "finance"  # the source name of the general-ledger lines
DEFAULT_DUCKDB_FILE = "crm_roi.duckdb"

COST_CATEGORIES = (
    "crm_software",
    "crm_implementation",
    "crm_training",
    "crm_support",
    "crm_hardware",
    "sales_marketing",
    "operating_cost",
)
# The canonical streams a files source may provide; finance_gl comes from the finance section.
FILE_STREAMS = tuple(name for name in CANONICAL_STREAMS if name != "finance_gl")
MONTHS_PER_PERIOD = {"month": 1.0, "quarter": 3.0, "week": 12.0 / 52.0}


class ConfigError(ValueError):
    """A user mistake in the configuration, reported as one line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# A run that quarantines more than this share of what it landed for a table fails: a misread export
# (wrong date order, a renamed column) must not quietly become a small number. Real exports carry
# some incomplete rows (prospecting deals without a date), so the default leaves room for them.
RejectedShare = Annotated[float | None, Field(ge=0, le=1)]
PER_SOURCE_SHARE = "This source's own max_rejected_share (default: the top-level value)."


def _strptime_format(value: str | None) -> str | None:
    if value is not None and "%" not in value:
        raise ValueError(f"'{value}' is not a strptime format (e.g. '%d/%m/%Y')")
    return value


DateFormat = Annotated[str | None, AfterValidator(_strptime_format), Field(description=(
    "strptime format of the dates when they are not ISO 8601, e.g. `%d/%m/%Y` (day first): tried on every "
    "date column, and it settles the order of a column whose every value reads either way (06/07/2025). A day "
    "above 12 settles a column by itself (loading stops if that contradicts this). Files read as `canonical` "
    "(and a GL without `columns`) promise ISO dates: they read day/month dates only with this or dayfirst."))]
Dayfirst = Annotated[bool | None, Field(description=(
    "Instead of date_format: `true` reads ambiguous dates like 06/07/2025 as 6 July, `false` as June 7."))]
DecimalSeparator = Annotated[Literal[".", ","], Field(description=(
    "The decimal mark of the amounts: `,` reads European numbers like `1.234,50` or `1 234,50 €` (a "
    "`.` or space then only groups thousands); with the default `.`, such values are quarantined as "
    "unparseable, and `crm-roi init` guesses this from the values."))]
KEY_COLUMNS = tuple(s.key for s in CANONICAL_STREAMS.values() if s.key)
ColumnMap = Annotated[dict[str, str | list[str]], Field(description=(
    "Canonical column -> the one header it is read from, instead of the profile's (matched ignoring case, "
    "spaces and punctuation). A key column "
    f"({', '.join(KEY_COLUMNS)}) may name a list of headers when the export has no id: the key is then the "
    "first 32 hex digits of SHA-256 over their trimmed values joined by U+001F, so it changes if one of "
    "those values is edited in the CRM."))]


class _ReadsExports(_Strict):
    """Checks shared by the config of export files (a files source, the GL): its column map and date order."""

    streams: ClassVar[tuple[str, ...]]

    @model_validator(mode="after")
    def _columns_and_dates(self) -> _ReadsExports:
        known = {col for stream in self.streams for col in CANONICAL_STREAMS[stream].columns}
        for col, header in self.columns.items():
            if col not in known:
                near = difflib.get_close_matches(col, sorted(known), n=1)
                raise ValueError(f"columns: '{col}' is not a canonical column"
                                 + (f" (did you mean {near[0]}?)" if near else ""))
            if isinstance(header, list) and (col not in KEY_COLUMNS or not header):
                raise ValueError(f"columns.{col}: a list of headers (a composite key) is only for a key "
                                 f"column ({', '.join(KEY_COLUMNS)})")
        named = format_order(self.date_format)
        if named and self.dayfirst is not None and (named == DAY_FIRST) != self.dayfirst:
            raise ValueError(f"date_format '{self.date_format}' and dayfirst: {str(self.dayfirst).lower()} "
                             "disagree; keep one")
        return self

    def date_setting(self, key: str) -> DateSetting:
        """The date order settings, named by their place in the config (`key`) for messages."""
        return DateSetting(key, self.date_format, self.dayfirst)


class FilesSource(_ReadsExports):
    """A folder of CRM export files, read through a column-mapping profile."""

    streams = FILE_STREAMS
    kind: Literal["files"] = Field(description="`files`: a folder of export files.")
    name: str | None = Field(None, description="Name keys are namespaced by; default `files_1`, `files_2`, ...")
    path: Path = Field(description="The folder, relative to the config file.")
    profile: Literal["canonical", "hubspot_export", "salesforce_export", "pipedrive_export", "custom"] = Field(
        "canonical", description="How the files' columns map onto the canonical ones (see docs/connectors.md).")
    files: dict[str, str | None] = Field(default_factory=dict, description=(
        "Canonical stream -> file name or glob (default `<stream>.csv` and `<stream>_*.csv`); "
        "`null`: this source does not provide that stream."))
    columns: ColumnMap = Field(default_factory=dict)
    date_format: DateFormat = None
    dayfirst: Dayfirst = None
    decimal_separator: DecimalSeparator = "."
    won_stages: list[str] = Field(default_factory=list, description="Stage values that mean closed won.")
    lost_stages: list[str] = Field(default_factory=list, description="Stage values that mean closed lost.")
    currency: str | None = Field(None, description="Currency of amounts when the file has no currency column.")
    timezone: str = Field("UTC", description=(
        "IANA time zone of times written without an offset (e.g. HubSpot's portal time zone)."))
    max_rejected_share: RejectedShare = Field(None, description=PER_SOURCE_SHARE)

    @field_validator("path")
    @classmethod
    def _folder_exists(cls, path: Path) -> Path:
        if not path.is_dir():
            raise ValueError(f"folder '{path}' does not exist")
        return path

    @field_validator("files")
    @classmethod
    def _known_streams(cls, files: dict[str, str | None]) -> dict[str, str | None]:
        unknown = sorted(set(files) - set(FILE_STREAMS))
        if unknown:
            raise ValueError(f"unknown stream '{unknown[0]}' (expected one of {', '.join(FILE_STREAMS)})")
        for stream, pattern in files.items():
            if pattern is not None and (Path(pattern).is_absolute() or ".." in Path(pattern).parts):
                raise ValueError(f"{stream}: '{pattern}' must be a file name or glob inside the source folder")
        return files

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{timezone}' (use an IANA name like Europe/Berlin)") from None
        return timezone


def _secret_ref(value: str | None) -> str | None:
    """Secrets are referenced as env:NAME and must be set; the value itself is read only when used."""
    if value is None:
        return None
    if not value.startswith("env:") or not value[4:].replace("_", "a").isalnum():
        raise ValueError("secrets must be given as env:NAME, never written into the file")
    if not os.environ.get(value[4:]):
        raise ValueError(f"environment variable {value[4:]} is not set")
    return value


SecretRef = Annotated[str, AfterValidator(_secret_ref)]
OptionalSecretRef = Annotated[str | None, AfterValidator(_secret_ref)]


def read_secret(ref: str) -> str:
    """The secret behind an env:NAME reference (validated when the config was loaded)."""
    return os.environ[ref.removeprefix("env:")]


class _ApiSource(_Strict):
    name: str | None = Field(None, description="Name keys are namespaced by; default `<kind>_1`, ...")
    base_url: str | None = Field(None, description=(
        "The API's address (default: the vendor's); https only, except http on 127.0.0.1/localhost."))
    columns: dict[str, str] = Field(default_factory=dict, description=(
        "Canonical column -> a (custom) property or field of the CRM, e.g. `{churned_at: churn_date}`."))
    lookback_minutes: int = Field(60, ge=0, le=7 * 24 * 60, description=(
        "Re-read this much before the cursor: search indexes are eventually consistent."))
    # The defaults give up after about 15 s of backoff; 40 attempts of up to 120 s outlast a 10-minute outage.
    retry_attempts: int = Field(6, ge=1, le=100, description=(
        "Attempts per request (429, 5xx, dropped connections) before the stream stops for the night."))
    retry_max_wait_seconds: float = Field(60.0, ge=1, le=3600, description="Longest wait between two attempts.")
    max_rejected_share: RejectedShare = Field(None, description=PER_SOURCE_SHARE)

    @field_validator("base_url")
    @classmethod
    def _base_url_over_tls(cls, url: str | None) -> str | None:
        return None if url is None else require_tls(url, "base_url")

    def open(self, client_options: dict | None = None) -> ApiSource:
        """The live connector (connectors/<crm>/); `client_options` tune its HTTP client beyond the config (tests).

        Secrets are read from the environment here, at the last moment, and handed to the
        connector's redactor so they cannot leak into a log line or an error.
        """
        retries = {"max_attempts": self.retry_attempts, "backoff_max": self.retry_max_wait_seconds}
        options = {"columns": dict(self.columns), "lookback_minutes": self.lookback_minutes,
                   "client_options": {**retries, **(client_options or {})}}
        if self.base_url:
            options["base_url"] = self.base_url
        return self._connector(options)

    def _connector(self, options: dict) -> ApiSource:
        raise NotImplementedError


class HubSpotSource(_ApiSource):
    """HubSpot CRM v3 with a private-app token (scopes: crm.objects.deals.read, crm.objects.companies.read)."""

    kind: Literal["hubspot"] = Field(description="`hubspot`: HubSpot CRM v3.")
    token: SecretRef = Field(description="Private-app token, as `env:NAME`.")
    requests_per_10s: int = Field(100, ge=1, le=250, description="The app's burst limit per 10 s.")

    def _connector(self, options: dict) -> ApiSource:
        from connectors.hubspot import HubSpotSource as Connector

        return Connector(read_secret(self.token), requests_per_10s=self.requests_per_10s, **options)


class SalesforceSource(_ApiSource):
    """Salesforce REST (and Bulk API 2.0): an access token, or OAuth refresh credentials."""

    kind: Literal["salesforce"] = Field(description="`salesforce`: Salesforce REST and Bulk API 2.0.")
    token: OptionalSecretRef = Field(None, description="An access token, as `env:NAME` (needs base_url).")
    client_id: OptionalSecretRef = Field(None, description="OAuth client id, as `env:NAME`.")
    client_secret: OptionalSecretRef = Field(None, description="OAuth client secret, as `env:NAME`.")
    refresh_token: OptionalSecretRef = Field(None, description="OAuth refresh token, as `env:NAME`.")
    login_url: str = Field("https://login.salesforce.com", description=(
        "Where the refresh token is sent (test.salesforce.com for a sandbox)."))

    @field_validator("login_url")
    @classmethod
    def _login_over_tls(cls, url: str) -> str:
        """The refresh token is sent to login_url, so it gets the same TLS rule as base_url."""
        return require_tls(url, "login_url")
    api_version: str = Field("v61.0", pattern=r"^v\d+\.\d$", description="REST API version.")
    bulk: bool = Field(False, description="Read opportunities with Bulk API 2.0 (large orgs).")
    customer_types: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        list(CUSTOMER_TYPES), description=(
            "Account `Type` values that make an account a customer (also without a won opportunity, counted "
            "from its creation unless `columns` maps started_at). An account with a won opportunity is a "
            "customer whatever its Type; prospects, partners, competitors and the rest are not."))

    @model_validator(mode="after")
    def _some_credentials(self) -> SalesforceSource:
        refresh = (self.client_id, self.client_secret, self.refresh_token)
        if not self.token and not all(refresh):
            raise ValueError("give token, or client_id + client_secret + refresh_token")
        if self.token and not self.base_url:
            raise ValueError("base_url (the org's instance URL) is required with a plain token")
        return self

    def _connector(self, options: dict) -> ApiSource:
        from connectors.salesforce import SalesforceSource as Connector

        secrets = {key: read_secret(getattr(self, key)) if getattr(self, key) else None
                   for key in ("token", "client_id", "client_secret", "refresh_token")}
        return Connector(login_url=self.login_url, api_version=self.api_version, use_bulk=self.bulk,
                         customer_types=self.customer_types, **secrets, **options)


class PipedriveSource(_ApiSource):
    """Pipedrive API v2 (deals) and v1 (deal flow) with an API token."""

    kind: Literal["pipedrive"] = Field(description="`pipedrive`: Pipedrive API v2 (deals) and v1 (deal flow).")
    token: SecretRef = Field(description="API token, as `env:NAME` (sent as the x-api-token header).")
    requests_per_2s: int = Field(20, ge=1, le=480, description="The plan's request limit per 2 s.")

    def _connector(self, options: dict) -> ApiSource:
        from connectors.pipedrive import PipedriveSource as Connector

        return Connector(read_secret(self.token), requests_per_2s=self.requests_per_2s, **options)


# Every live CRM: a new one is a config class above (with its connector) and its name here.
API_SOURCE_TYPES = (HubSpotSource, SalesforceSource, PipedriveSource)
SourceConfig = Annotated[Union[FilesSource, *API_SOURCE_TYPES], Field(discriminator="kind")]


class FinanceConfig(_ReadsExports):
    """The general-ledger export and the map from GL account to cost category."""

    streams = ("finance_gl",)
    path: Path = Field(description="The general-ledger export (`finance_gl.csv` layout), relative to the config.")
    accounts: dict[str, str] = Field(description=(
        "GL account -> category: crm_software, crm_implementation, crm_training, crm_support, crm_hardware, "
        "sales_marketing, operating_cost; lines on other accounts count nowhere."))
    columns: ColumnMap = Field(default_factory=dict)
    date_format: DateFormat = None
    dayfirst: Dayfirst = None
    decimal_separator: DecimalSeparator = "."
    max_rejected_share: RejectedShare = Field(None, description=PER_SOURCE_SHARE)

    @field_validator("path")
    @classmethod
    def _file_exists(cls, path: Path) -> Path:
        if not path.is_file():
            raise ValueError(f"file '{path}' does not exist")
        return path

    @field_validator("accounts", mode="before")
    @classmethod
    def _known_categories(cls, accounts: dict) -> dict[str, str]:
        if not isinstance(accounts, dict) or not accounts:
            raise ValueError("must map at least one GL account to a category")
        for account, category in accounts.items():
            if category not in COST_CATEGORIES:
                raise ValueError(
                    f"account {account}: unknown category '{category}' "
                    f"(expected one of {', '.join(COST_CATEGORIES)})"
                )
        return {str(k): v for k, v in accounts.items()}


class ControlGroup(_Strict):
    """The deals that did not get the CRM: their revenue tells what the market did meanwhile."""

    column: Literal["segment", "pipeline", "owner_id"] = Field("segment", description=(
        "The deals column that names the control group."))
    values: list[str] = Field(min_length=1, description=(
        "Values of that column that make a deal part of the control group; every other deal is treated."))


class Counterfactual(_Strict):
    """What revenue would have been without the CRM, against which incremental revenue is measured."""

    method: Literal["flat", "seasonal", "trend", "control"] = Field("flat", description=(
        "`flat`: the baseline's mean revenue per period; `seasonal`: the same period of the last baseline "
        "year, grown by the baseline's year-on-year growth; `trend`: a constant growth rate (and, with 24 "
        "baseline months, seasonal terms) fitted to ln revenue over the baseline; `control`: the treated "
        "deals' baseline scaled by the control group's revenue (see docs/roi-methods.md)."))
    control: ControlGroup | None = Field(None, description=(
        "The control group (method `control`; with another method it adds control to roi.sensitivity)."))
    normalise_by: Literal["active_owners"] | None = Field(None, description=(
        "`active_owners`: apply the method to revenue per active owner (an owner with a deal created or "
        "closed in the period) and multiply by the period's active owners, so a bigger team is not credited "
        "to the CRM."))

    @model_validator(mode="after")
    def _control_needs_a_group(self) -> Counterfactual:
        if self.method == "control" and self.control is None:
            raise ValueError("method control needs control: {column: segment, values: [...]} naming the "
                             "deals that did not get the CRM")
        return self


class Uncertainty(_Strict):
    """The bootstrap behind the p05/p50/p95 columns of roi.summary."""

    draws: int = Field(1000, ge=0, le=100_000, description=(
        "Poisson bootstrap draws over won deals; 0 turns it off (the percentile columns are null)."))
    seed: int = Field(42, ge=0, le=2**31 - 1, description=(
        "Seed of the draws: the same seed gives the same percentiles."))


class Tei(_Strict):
    """The Forrester Total Economic Impact view in roi.tei."""

    horizon_years: int = Field(3, ge=1, le=10, description=(
        "Years after go-live the view covers; years not yet observed are projected from the trailing run-rate."))
    cost_risk_adjustment: float = Field(0.0, ge=0, le=1, description=(
        "Uplift on costs for the risk of overruns (TEI style): costs x (1 + this)."))


def _five_fields(cron: str) -> str:
    if len(cron.split()) != 5:
        raise ValueError(f"'{cron}' is not a five-field cron expression")
    return cron


def _owner_names(owners: list[str]) -> list[str]:
    for owner in owners:
        team = owner.removeprefix("team:")
        if not ((owner.startswith("team:") and team.replace("_", "a").replace("-", "a").isalnum())
                or re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", owner)):
            raise ValueError(f"'{owner}' is neither team:NAME (letters, digits, _ and -) nor an email address")
    return owners


Cron = Annotated[str, AfterValidator(_five_fields)]
Owners = Annotated[list[str], AfterValidator(_owner_names)]


class Settings(_Strict):
    """Everything one run needs: the method's parameters, sources and finance."""

    as_of: dt.date | None = Field(None, description=(
        "Date that closes the last period; events after it do not count. Default: today (UTC)."))
    go_live: dt.date = Field(description="The CRM's go-live date.")
    baseline_months: int = Field(12, ge=1, le=120, description="Length of the baseline window before go-live.")
    period: Literal["month", "quarter", "week"] = Field("month", description=(
        "`month`, `quarter` (calendar) or `week` (ISO, Monday)."))
    base_currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="Currency of every money column.")
    gross_margin: float = Field(1.0, ge=0, le=1, description="Share of incremental revenue that is benefit.")
    attribution_share: float = Field(1.0, ge=0, le=1, description="Share of each benefit credited to the CRM.")
    risk_adjustment: float = Field(0.0, ge=0, lt=1, description="Haircut on total benefit (Forrester TEI style).")
    discount_rate: float = Field(0.10, ge=0, le=1, description="Annual rate for NPV.")
    arpa_monthly: float | None = Field(None, ge=0, description=(
        "Revenue per customer per month; enables the retention benefit."))
    counterfactual: Counterfactual = Field(default_factory=Counterfactual, description=(
        "How expected revenue without the CRM is estimated (default `flat`: the baseline mean)."))
    uncertainty: Uncertainty = Field(default_factory=Uncertainty, description=(
        "The bootstrap interval of incremental revenue and ROI."))
    tei: Tei = Field(default_factory=Tei, description="The Total Economic Impact view (roi.tei).")
    max_rejected_share: float = Field(0.2, ge=0, le=1, description=(
        "Largest share of the rows a run lands for one table from one source that may be quarantined; above it "
        "the run fails (a blocking check), the analysts' copy keeps the last good run and the landed rows stay "
        "in raw for the corrected re-run."))
    schedule_cron: Cron = Field("0 2 * * *", description="Cron of the `nightly_schedule` (UTC).")
    full_sync_cron: Cron | None = Field(None, description=(
        "Cron of the `full_sync_schedule` (UTC), e.g. `0 4 * * 0`: the nightly job with every API stream read "
        "in full, the one way to notice records the CRM purged. Needs an API source."))
    owners: Owners = Field(["team:data"], min_length=1, description=(
        "Owners of every Dagster asset, shown in the UI: `team:NAME` or an email address."))
    memory_limit: str = Field("512MB", pattern=r"^\d+(\.\d+)?\s*(MB|GB|MiB|GiB)$", description=(
        "DuckDB's buffer for a run; beyond it DuckDB spills to a temp folder beside the file. Python, Dagster "
        "and Pandera add about 350 MB."))
    duckdb_path: Path = Field(Path(DEFAULT_DUCKDB_FILE), description=(
        "The working DuckDB file, beside the config file (`CRM_ROI_DUCKDB` overrides it); the raw layer goes in "
        "`<name>.raw.duckdb`, the analysts' copy in `<name>.published.duckdb`, the last run's log in `<name>.log`."))
    data_roots: list[Path] | None = Field(None, description=(
        "Folders every path in the file must resolve into (after `..` and symlinks). Default: the config "
        "file's folder."))
    sources: list[SourceConfig] = Field(min_length=1, description="Where deals and customers come from.")
    finance: FinanceConfig = Field(description="The general ledger.")

    @model_validator(mode="after")
    def _full_sync_needs_an_api_source(self) -> Settings:
        if self.full_sync_cron is not None and not self.api_sources():
            raise ValueError("full_sync_cron is set but no source is a live CRM (hubspot, salesforce, "
                             "pipedrive): export files are reloaded with `crm-roi run --full-reload`")
        return self

    @model_validator(mode="after")
    def _counterfactual_fits_the_baseline(self) -> Settings:
        """Methods the baseline window cannot support fail here, before any data is read."""
        method, periods = self.counterfactual.method, self.baseline_periods
        months = periods * self.months_per_period
        if method == "seasonal" and self.period == "week":
            raise ValueError("counterfactual.method: seasonal needs month or quarter periods (weeks do not "
                             "repeat on the same dates each year); use trend or flat with period week")
        if method == "seasonal" and months < 12:
            raise ValueError(f"counterfactual.method: seasonal needs 12 baseline months to find each period's "
                             f"month of the year, the baseline window holds {months:g} whole months "
                             "(raise baseline_months)")
        if method == "trend" and periods < 3:
            raise ValueError(f"counterfactual.method: trend needs at least 3 baseline periods to fit a growth "
                             f"rate, the baseline window holds {periods} (raise baseline_months)")
        return self

    @model_validator(mode="after")
    def _unique_source_names(self) -> Settings:
        names = self.source_names
        if len(set(names)) != len(names):
            raise ValueError("two sources have the same name: give each a distinct name")
        return self

    @model_validator(mode="after")
    def _paths_inside_data_roots(self) -> Settings:
        """A config file must not be a way to read (or overwrite) files anywhere on the machine."""
        if self.data_roots is None:
            return self
        paths = [("finance.path", self.finance.path)]
        paths += [(f"sources.{i}.path", s.path) for i, s in enumerate(self.sources) if isinstance(s, FilesSource)]
        for key, path in paths:
            if not within_roots(path, self.data_roots):
                raise ValueError(outside_roots_message(key, path, self.data_roots))
        return self

    @property
    def source_names(self) -> list[str]:
        """Keys are namespaced by source, so each needs a stable name."""
        counts: dict[str, int] = {}
        names = []
        for source in self.sources:
            counts[source.kind] = counts.get(source.kind, 0) + 1
            names.append(source.name or f"{source.kind}_{counts[source.kind]}")
        return names

    def rejected_share_limits(self) -> dict[str, float]:
        """Source name -> the share of its landed rows one table may quarantine (finance included)."""
        named = [*zip(self.source_names, self.sources, strict=True), (FINANCE_SOURCE, self.finance)]
        return {name: self.max_rejected_share if source.max_rejected_share is None else source.max_rejected_share
                for name, source in named}

    def api_sources(self) -> list[tuple[str, _ApiSource]]:
        return [(n, s) for n, s in zip(self.source_names, self.sources, strict=True)
                if isinstance(s, API_SOURCE_TYPES)]

    @property
    def published_path(self) -> Path:
        """The read-only copy analysts open, beside the working file: crm_roi.duckdb -> crm_roi.published.duckdb."""
        return self.duckdb_path.with_suffix(".published.duckdb")

    @property
    def effective_as_of(self) -> dt.date:
        return self.as_of or dt.datetime.now(dt.UTC).date()

    @property
    def baseline_start(self) -> dt.date:
        """go_live minus baseline_months calendar months (clamped to the month's last day)."""
        months = self.go_live.year * 12 + self.go_live.month - 1 - self.baseline_months
        year, month = divmod(months, 12)
        month += 1
        last_day = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
        return dt.date(year, month, min(self.go_live.day, last_day))

    @property
    def months_per_period(self) -> float:
        return MONTHS_PER_PERIOD[self.period]

    @property
    def baseline_periods(self) -> int:
        """Whole periods inside [baseline_start, go_live): the ones kpi.baseline and the counterfactual use."""
        start, count = period_start(self.baseline_start, self.period), 0
        while (end := next_period_start(start, self.period)) <= self.go_live:
            count += start >= self.baseline_start
            start = end
        return count


def period_start(day: dt.date, period: str) -> dt.date:
    """The first day of the calendar month, calendar quarter or ISO week holding `day`."""
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    month = day.month if period == "month" else 3 * ((day.month - 1) // 3) + 1
    return dt.date(day.year, month, 1)


def next_period_start(start: dt.date, period: str) -> dt.date:
    if period == "week":
        return start + dt.timedelta(days=7)
    months = start.year * 12 + start.month - 1 + (1 if period == "month" else 3)
    return dt.date(months // 12, months % 12 + 1, 1)


def within_roots(path: Path, roots: list[Path]) -> bool:
    """True when `path`, with symlinks and '..' resolved, lies inside one of `roots`."""
    real = path.resolve()
    return any(real.is_relative_to(root.resolve()) for root in roots)


def outside_roots_message(key: str, path: Path, roots: list[Path]) -> str:
    return f"{key}: '{path}' is outside data_roots ({', '.join(str(r) for r in roots)})"


def config_path(explicit: str | Path | None = None) -> Path:
    """The config file: an explicit path, else CRM_ROI_CONFIG, else ./crm_roi.yaml."""
    return Path(explicit or os.environ.get("CRM_ROI_CONFIG") or DEFAULT_CONFIG_FILE)


def _resolve_paths(raw: dict, base: Path) -> dict:
    """Relative paths in the file are relative to the file, not to the shell's cwd."""
    def resolve(value: object) -> object:
        return str(base / value) if isinstance(value, str) and not Path(value).is_absolute() else value

    raw = dict(raw)
    if "sources" not in raw:
        return raw
    raw["sources"] = [
        {**s, "path": resolve(s.get("path"))} if isinstance(s, dict) and "path" in s else s
        for s in raw.get("sources") or []
    ]
    if isinstance(raw.get("finance"), dict) and "path" in raw["finance"]:
        raw["finance"] = {**raw["finance"], "path": resolve(raw["finance"]["path"])}
    if "duckdb_path" in raw:
        raw["duckdb_path"] = resolve(raw["duckdb_path"])
    else:
        raw["duckdb_path"] = str(base / DEFAULT_DUCKDB_FILE)
    roots = raw.get("data_roots")
    raw["data_roots"] = [resolve(r) for r in roots] if isinstance(roots, list) else roots or [str(base)]
    return raw


def one_line_error(error: ValidationError, file: Path) -> str:
    """The first problem of a YAML file, as `<file>: <key>: <what is wrong>`."""
    # An unknown key is usually the typo behind the other errors: report it first.
    first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    # Drop the union's tag ('files') that pydantic puts after a list index.
    loc = [p for i, p in enumerate(first["loc"]) if not (i and isinstance(first["loc"][i - 1], int))]
    where = ".".join(str(p) for p in loc)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    # A whole-model check has no location: its message names the key.
    return f"{file}: {where}: {message}" if where else f"{file}: {message}"


def read_mapping(file: Path) -> dict:
    """The top-level mapping of a YAML file (crm_roi.yaml, tenants.yaml), or a one-line ConfigError."""
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of keys at the top level")
    return raw


def load_settings(path: str | Path | None = None, duckdb_override: bool = True) -> Settings:
    """Read and validate the configuration; raise ConfigError with one clear line.

    `duckdb_override`: whether CRM_ROI_DUCKDB may replace the file's duckdb_path (not for a tenant's
    config: one variable would point every tenant at the same file).
    """
    file = config_path(path)
    if not file.is_file():
        raise ConfigError(f"config file '{file}' not found (set CRM_ROI_CONFIG or pass --config)")
    raw = _resolve_paths(read_mapping(file), file.resolve().parent)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(one_line_error(exc, file)) from None
    # The operator's CRM_ROI_DUCKDB is trusted (it is not in the file), so data_roots does not bind it.
    if duckdb_override and (db := os.environ.get("CRM_ROI_DUCKDB")):
        return settings.model_copy(update={"duckdb_path": Path(db)})
    if not within_roots(settings.duckdb_path, settings.data_roots or []):
        raise ConfigError(f"{file}: " + outside_roots_message("duckdb_path", settings.duckdb_path, settings.data_roots))
    return settings
