"""The Salesforce connector against a fake org over real loopback HTTP (nothing in the HTTP layer is mocked).

The fake org is seeded from the demo's canonical files; ids and stamps are
deterministic, so two orgs seeded alike hold the same records, and a sync of
one can be compared with a fresh full sync of the other.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
import yaml

from connectors.contract import API_STREAMS
from connectors.fakes.salesforce import FakeSalesforce
from connectors.fakes.server import Fault
from connectors.salesforce import SalesforceSource
from connectors.salesforce.settings import HISTORY_IDS_PER_QUERY, QUOTA_SHARE_PER_RUN, QUOTA_SHARE_TOTAL
from pipelines.api_sync import SyncResult, read_cursor, sync_stream
from pipelines.config import Settings, load_settings
from pipelines.transform import STAGING_TABLES, build_staging
from pipelines.warehouse import connect, open_with_raw
from tests.conftest import ACCOUNTS, FAST_CLIENT, landed_ts, rows, run_pipeline

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample"
TOKEN = "00DFAKE!AQ4AQ.session-3f9c2b7e"
CLIENT_ID = "3MVG9.consumer-key-8d41"
CLIENT_SECRET = "consumer-secret-51aa9e"
REFRESH = "5Aep861.refresh-c0ffee77"
CREDENTIALS = {"access_token": TOKEN, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
               "refresh_token": REFRESH}
BATCH = 10  # the fake's queryAll batch, small so a few dozen deals span several pages
DEALS = 40
COLUMNS = {"started_at": "Customer_Since__c", "churned_at": "Churn_Date__c", "mrr": "MRR__c"}
# A read timeout short enough that a 'slow' fault trips it quickly.
OPTIONS = {**FAST_CLIENT, "timeout": (2.0, 0.5)}
SOURCE = "salesforce_1"


@pytest.fixture(autouse=True)
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("SF_TOKEN", TOKEN), ("SF_CLIENT_ID", CLIENT_ID), ("SF_CLIENT_SECRET", CLIENT_SECRET),
                        ("SF_REFRESH_TOKEN", REFRESH)):
        monkeypatch.setenv(name, value)


@pytest.fixture
def org():
    """A factory of running fake orgs seeded from the demo (the first `limit` deals)."""
    started: list[FakeSalesforce] = []

    def make(limit: int | None = DEALS, **options: object) -> FakeSalesforce:
        fake = FakeSalesforce.from_canonical(SAMPLE, limit=limit, **{**CREDENTIALS, "batch_size": BATCH, **options})
        started.append(fake.start())  # type: ignore[arg-type]
        return fake

    yield make
    for fake in started:
        fake.stop()


def configure(folder: Path, fake: FakeSalesforce | None, *, auth: str = "token", bulk: bool = False,
              columns: dict | None = None, files: list[dict] | None = None, **settings: object) -> Path:
    """Write a config with the fake org as a Salesforce source (auth: token, oauth or both)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = list(files or [])
    if fake is not None:
        source: dict = {"kind": "salesforce", "login_url": fake.base_url, "bulk": bulk,
                        "columns": COLUMNS if columns is None else columns}
        if auth in ("token", "both"):
            source.update(token="env:SF_TOKEN", base_url=fake.base_url)
        if auth in ("oauth", "both"):
            source.update(client_id="env:SF_CLIENT_ID", client_secret="env:SF_CLIENT_SECRET",
                          refresh_token="env:SF_REFRESH_TOKEN")
        sources.append(source)
    config = {"as_of": "2026-10-31", "go_live": "2025-01-01", "baseline_months": 12, "sources": sources,
              "finance": {"path": str(SAMPLE / "finance_gl.csv"), "accounts": ACCOUNTS},
              "data_roots": [".", str(SAMPLE)], **settings}
    path = folder / "crm_roi.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def sync(config: Path, options: dict = OPTIONS) -> dict[str, SyncResult]:
    """Sync the API source's streams (no staging); a stream's failure is in its result, as in the assets."""
    settings = load_settings(config)
    ((name, source),) = settings.api_sources()
    with connect(settings.duckdb_path, settings) as con:
        connector = source.open(options)
        try:
            return {stream: sync_stream(con, name, connector, stream) for stream in API_STREAMS["salesforce"]}
        finally:
            connector.close()


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """The CRM's staging row sets (batch ids aside) and what quarantine rejected of them."""
    names = ("deals", "deal_stage_history", "customers")
    tables = {t: con.execute(f"SELECT * EXCLUDE (batch_id) FROM staging.{t}").fetchall() for t in names}
    tables["rejected"] = con.execute("SELECT table_name, key, reason FROM quarantine.rejected_rows "
                                     "WHERE list_contains($names, table_name)", {"names": list(names)}).fetchall()
    return {name: sorted(found, key=repr) for name, found in tables.items()}


def staged(config: Path) -> dict[str, list[tuple]]:
    """Staging built from what the syncs so far have landed (no new sync), as a snapshot."""
    settings = load_settings(config)
    with connect(settings.duckdb_path, settings) as con:
        for table in STAGING_TABLES:
            build_staging(con, table)
        return snapshot(con)


def full_sync_snapshot(folder: Path, fake: FakeSalesforce) -> dict[str, list[tuple]]:
    with run_pipeline(load_settings(configure(folder, fake))) as con:
        return snapshot(con)


def opportunity_pages(fake: FakeSalesforce) -> list[list[dict]]:
    """The opportunities in queryAll order, cut into the fake's batches."""
    ordered = sorted(fake.records["Opportunity"].values(), key=lambda r: (r["SystemModstamp"], r["Id"]))
    return [ordered[i:i + fake.batch_size] for i in range(0, len(ordered), fake.batch_size)]


def stamp(value: str) -> str:
    return value.replace("+0000", "Z")


def raw_state(config: Path) -> tuple[str | None, int, int]:
    """(cursor of opportunities, deal rows, distinct deal ids) in the config's DuckDB file."""
    settings = load_settings(config)
    with connect(settings.duckdb_path, settings, read_only=True) as con:
        count, distinct = con.execute("SELECT count(*), count(DISTINCT deal_id) FROM raw.deals").fetchone()
        return read_cursor(con, SOURCE, "opportunities"), count, distinct


# -- (a) full sync -----------------------------------------------------------------------------------
def test_full_sync_maps_opportunities_history_and_accounts(org, tmp_path):
    fake = org()
    fake.delete("Opportunity", sorted(fake.records["Opportunity"])[0])
    with run_pipeline(load_settings(configure(tmp_path, fake))) as con:
        deals = {r["deal_id"]: r for r in rows(con, "SELECT * FROM raw.deals")}
        history = rows(con, "SELECT * FROM raw.deal_stage_history ORDER BY deal_id, entered_at")
        customers = {r["customer_id"]: r for r in rows(con, "SELECT * FROM raw.customers")}
        cursor = read_cursor(con, SOURCE, "opportunities")
    opportunities = fake.records["Opportunity"]
    assert set(deals) == set(opportunities)  # deleted ones too: queryAll
    closed = next(o for o in opportunities.values() if o["IsClosed"] and not o["IsDeleted"])
    assert deals[closed["Id"]]["closed_at"] == landed_ts(closed["CloseDate"])
    assert deals[closed["Id"]]["created_at"] == landed_ts(stamp(closed["CreatedDate"]))  # ...000+0000 -> ...000Z
    assert deals[closed["Id"]]["is_won"] is closed["IsWon"]
    open_deal = next(o for o in opportunities.values() if not o["IsClosed"])
    assert open_deal["CloseDate"] and deals[open_deal["Id"]]["closed_at"] is None  # an expected close is no close
    deleted = [i for i, o in opportunities.items() if o["IsDeleted"]]
    assert deleted and all(deals[i]["is_deleted"] is True for i in deleted)
    assert {d["currency"] for d in deals.values()} >= {"USD", "EUR"}
    assert {d["pipeline"] for d in deals.values()} == {"new_business", "expansion"}
    assert Counter(h["deal_id"] for h in history) == Counter(
        h["OpportunityId"] for h in fake.records["OpportunityHistory"].values())
    churned = next(a for a in fake.records["Account"].values() if a["Churn_Date__c"])
    assert customers[churned["Id"]]["churned_at"] == landed_ts(churned["Churn_Date__c"])
    assert customers[churned["Id"]]["started_at"] == landed_ts(stamp(churned["Customer_Since__c"]))
    assert customers[churned["Id"]]["created_at"] == landed_ts(stamp(churned["CreatedDate"]))
    assert customers[churned["Id"]]["is_customer"] is True  # Type 'Customer - Direct'
    assert set(customers) == set(fake.records["Account"])
    assert cursor == stamp(max(o["SystemModstamp"] for o in opportunities.values()))


def test_single_currency_org_uses_its_currency_and_record_types_name_pipelines(org, tmp_path):
    fake = org(multi_currency=False, record_types=True, default_currency="USD")
    with run_pipeline(load_settings(configure(tmp_path, fake))) as con:
        found = con.execute("SELECT DISTINCT currency, pipeline FROM raw.deals").fetchall()
    assert {currency for currency, _ in found} == {"USD"}
    assert {pipeline for _, pipeline in found} == {"new_business", "expansion"}
    assert fake.requests_to("RecordType.DeveloperName") >= 1
    assert fake.requests_to("FROM+Organization") == 1  # the org default, read once


# -- (b) incremental syncs ---------------------------------------------------------------------------
def test_incremental_syncs_with_changes_equal_one_full_sync(org, tmp_path):
    fake = org()
    config = configure(tmp_path / "chain", fake)
    run_pipeline(load_settings(config)).close()
    accounts = sorted(a for a, r in fake.records["Account"].items() if not r["IsDeleted"])
    opportunities = fake.records["Opportunity"]
    open_ids = sorted(i for i, o in opportunities.items() if not o["IsClosed"] and not o["IsDeleted"])
    assert open_ids, "the sample holds an open deal to win"
    closed_ids = sorted(i for i, o in opportunities.items() if o["IsClosed"] and not o["IsDeleted"])
    owner = next(iter(opportunities.values()))["OwnerId"]

    newco = fake.create("Account", Name="Newco GmbH", Type="Customer - Direct", MRR__c=900.0)
    new_deal = fake.create("Opportunity", Name="Newco - Seats", AccountId=newco, OwnerId=owner,
                           StageName="qualifiedtobuy", Amount=5000.0, CloseDate="2026-12-31",
                           Type="new_business", CurrencyIsoCode="EUR")
    fake.update("Opportunity", open_ids[0], StageName="closedwon", CloseDate="2026-11-20")
    fake.update("Opportunity", closed_ids[1], Amount=999.0)  # a history row without a stage change
    fake.delete("Opportunity", closed_ids[0])
    fake.merge_accounts(accounts[0], accounts[1])
    fake.update("Account", accounts[2], Churn_Date__c="2026-11-01")
    first = sync(config)["opportunities"]
    assert first.error is None
    assert first.new["deals"] == 1 and first.updated["deals"] < DEALS // 2  # only changes and the lookback

    fake.update("Opportunity", new_deal, StageName="closedlost", CloseDate="2026-11-25")
    fake.update("Opportunity", open_ids[0], Name="Renamed after winning")
    fake.delete("Account", newco)
    with run_pipeline(load_settings(config)) as con:
        incremental = snapshot(con)
        assert con.execute("SELECT count(*) = count(DISTINCT deal_id) FROM raw.deals").fetchone()[0]

    assert incremental == full_sync_snapshot(tmp_path / "full", fake)
    stages = [r for r in incremental["deal_stage_history"] if r[1] == closed_ids[1]]
    assert len(stages) == len({r[2] for r in stages})  # the amount change added no stage


# -- (c) a killed sync -----------------------------------------------------------------------------------
def test_sync_killed_mid_way_resumes_without_loss_or_duplicates(org, tmp_path):
    fake = org(limit=60)
    pages = opportunity_pages(fake)
    stall = pages[2][0]["Id"]  # the history query of the third page hangs
    fake.inject(Fault(kind="slow", route=stall, delay=30.0, times=5))
    config = configure(tmp_path / "killed", fake)
    log = tmp_path / "child.log"
    with log.open("wb") as output:
        child = subprocess.Popen([sys.executable, "-m", "tests.salesforce_sync_child", str(config)], cwd=REPO,
                                 stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not fake.requests_to(stall) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert fake.requests_to(stall), f"the child never reached the stalled page: {log.read_text()}"
    assert child.returncode == -signal.SIGKILL

    cursor, count, distinct = raw_state(config)
    assert cursor == stamp(pages[1][-1]["SystemModstamp"])  # two pages were committed with their cursor
    assert count == distinct == 2 * BATCH
    fake.faults.clear()
    with run_pipeline(load_settings(config)) as con:
        resumed = snapshot(con)
        assert con.execute("SELECT count(*) = count(DISTINCT deal_id) FROM raw.deals").fetchone()[0]
    assert resumed == full_sync_snapshot(tmp_path / "full", fake)


# -- (d) faults ---------------------------------------------------------------------------------------------
def _errors(status_code: str, message: str) -> str:
    return f'[{{"message":"{message}","errorCode":"{status_code}"}}]'


SURVIVED = {
    "429 with Retry-After": ("token", Fault("status", route="queryAll", status=429, times=2,
                                             headers={"Retry-After": "1"})),
    "429 without Retry-After": ("token", Fault("status", route="queryAll/", status=429, times=2)),
    "5xx burst": ("token", Fault("status", route="queryAll", status=503, times=4,
                                 body="<html>Service Unavailable</html>")),
    "reset mid-body": ("token", Fault("reset", route="queryAll/", times=2)),
    "slow past the read timeout": ("token", Fault("slow", route="OpportunityHistory", delay=1.2)),
    "concurrent long requests": ("token", Fault("status", route="queryAll", status=403, times=2, body=_errors(
        "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."))),
    "session expired mid-sync": ("both", Fault("status", route="OpportunityHistory", status=401,
                                               body=_errors("INVALID_SESSION_ID", "Session expired or invalid"))),
    "429 on the token endpoint": ("oauth", Fault("status", route="oauth2/token", status=429, times=2)),
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict[str, list[tuple]]:
    """A clean full sync of the default small org: what every survived or resumed sync must equal."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SF_TOKEN", TOKEN)
        fake = FakeSalesforce.from_canonical(SAMPLE, limit=DEALS, batch_size=BATCH, **CREDENTIALS)
        with fake.running():
            return full_sync_snapshot(tmp_path_factory.mktemp("baseline"), fake)


@pytest.mark.parametrize("name", list(SURVIVED))
def test_transient_faults_are_survived(org, tmp_path, baseline, name):
    auth, fault = SURVIVED[name]
    fake = org()
    fake.inject(fault)
    config = configure(tmp_path, fake, auth=auth)
    results = sync(config)
    assert {stream: result.error for stream, result in results.items()} == dict.fromkeys(results)
    assert not fake.faults, "the fault was never hit"
    assert staged(config) == baseline


def test_expired_session_is_refreshed_with_the_rotated_refresh_token(org, tmp_path, baseline):
    fake = org(rotate_refresh_tokens=True)
    fake.expire_tokens()  # the configured token is dead from the start
    fake.inject(Fault("status", route="OpportunityHistory", status=401,
                      body=_errors("INVALID_SESSION_ID", "Session expired or invalid")))
    config = configure(tmp_path, fake, auth="both")
    results = sync(config)
    assert [r.error for r in results.values()] == [None, None]
    assert fake.requests_to("oauth2/token") == 2  # the second refresh used the rotated token
    assert staged(config) == baseline


STOPPED = {
    "daily request limit (403)": (Fault("status", status=403, body=_errors(
        "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")), "QuotaExhausted"),
    "HTML instead of JSON": (Fault("html"), "expected JSON"),
    "5xx that does not stop": (Fault("status", status=503, times=50), "gave up after"),
    "expired token, nothing to refresh it": (Fault("status", status=401, body=_errors(
        "INVALID_SESSION_ID", "Session expired or invalid")), "AuthenticationFailed"),
}


@pytest.mark.parametrize("name", list(STOPPED))
def test_lasting_faults_stop_cleanly_keeping_committed_pages(org, tmp_path, baseline, name):
    fault, message = STOPPED[name]
    fake = org()
    pages = opportunity_pages(fake)
    fault.route = pages[2][0]["Id"]  # strikes after two pages are committed
    fake.inject(fault)
    config = configure(tmp_path, fake)
    result = sync(config)["opportunities"]
    assert message in (result.error or "")
    assert raw_state(config) == (stamp(pages[1][-1]["SystemModstamp"]), 2 * BATCH, 2 * BATCH)
    fake.faults.clear()
    assert [r.error for r in sync(config).values()] == [None, None]  # the next run resumes from the cursor
    assert staged(config) == baseline


def test_query_timeout_halves_the_modstamp_window(org, tmp_path, baseline):
    fake = org(query_timeout_days=120)
    config = configure(tmp_path, fake)
    assert [r.error for r in sync(config).values()] == [None, None]
    assert fake.requests_to("LIMIT+1") == 2  # the oldest stamp, once per object
    windows = fake.requests_to("SystemModstamp+%3C+")
    assert windows > 4
    assert staged(config) == baseline


def test_query_timeout_on_a_tiny_window_is_a_clear_error(org, tmp_path):
    fake = org(limit=0, query_timeout_days=0)  # any two stamps apart time out
    for name in ("A", "B", "C"):  # a bulk update: three records milliseconds apart
        fake.create("Opportunity", Name=name, StageName="qualifiedtobuy", CloseDate="2026-12-31")
    result = sync(configure(tmp_path, fake))["opportunities"]
    assert "QUERY_TIMEOUT even for a" in result.error and "bulk: true" in result.error


def test_unknown_field_in_columns_is_a_clear_error(org, tmp_path):
    fake = org()
    results = sync(configure(tmp_path, fake, columns={"churned_at": "Churn_Date"}))
    assert results["opportunities"].error is None
    error = results["accounts"].error or ""
    assert "INVALID_FIELD" in error and "No such column 'Churn_Date'" in error and "columns" in error


def test_segment_comes_from_the_custom_field_columns_names(org, tmp_path):
    # Salesforce has no standard region field on Opportunity; orgs add one (here Region__c).
    fake = org()
    config = configure(tmp_path, fake, columns={**COLUMNS, "segment": "Region__c"})
    assert sync(config)["opportunities"].error is None
    with open_with_raw(load_settings(config).duckdb_path, read_only=True) as con:
        landed = dict(con.execute("SELECT deal_id, segment FROM raw.deals").fetchall())
    regions = {record["Id"]: record["Region__c"] for record in fake.records["Opportunity"].values()}
    assert landed == regions
    assert set(landed.values()) == {"Americas", "EMEA", "APAC"}


# -- (e) request budget ------------------------------------------------------------------------------------
def minimum_requests(fake: FakeSalesforce) -> int:
    """describe + each opportunities batch + the history batches of its id chunks + the account batches."""
    per_deal = Counter(h["OpportunityId"] for h in fake.records["OpportunityHistory"].values())
    pages = opportunity_pages(fake)
    history = sum(
        max(1, math.ceil(sum(per_deal[o["Id"]] for o in page[i:i + HISTORY_IDS_PER_QUERY]) / fake.batch_size))
        for page in pages for i in range(0, len(page), HISTORY_IDS_PER_QUERY)
    )
    return 1 + len(pages) + history + math.ceil(len(fake.records["Account"]) / fake.batch_size)


def test_request_count_is_the_minimum_and_within_the_daily_share(org, tmp_path):
    fake = org(api_limit=1000)
    sync(configure(tmp_path, fake))
    assert len(fake.log) == fake.api_used == minimum_requests(fake)
    # Salesforce's budget is per day (no per-second limit): all of these fall in one window.
    assert fake.api_used <= fake.api_limit * QUOTA_SHARE_PER_RUN


def test_quota_guard_stops_before_the_org_passes_its_total_share(org, tmp_path):
    fake = org(api_limit=100)
    fake.api_used = 72
    config = configure(tmp_path, fake)
    results = sync(config)
    assert "QuotaExhausted" in (results["opportunities"].error or "")
    assert fake.api_used == 100 * QUOTA_SHARE_TOTAL  # stopped at the share, never past it
    cursor, count, distinct = raw_state(config)
    assert cursor is not None and count == distinct > 0  # what was read is kept, with its cursor


def test_quota_guard_stops_a_run_at_its_own_share(org, tmp_path):
    fake = org(api_limit=40)
    results = sync(configure(tmp_path, fake))
    assert "QuotaExhausted" in (results["opportunities"].error or "")
    assert fake.api_used == 40 * QUOTA_SHARE_PER_RUN


# -- Bulk API 2.0 ------------------------------------------------------------------------------------------
def test_bulk_query_jobs_give_the_same_tables(org, tmp_path, baseline):
    fake = org(bulk_chunk=15, bulk_polls=1)
    config = configure(tmp_path, fake, bulk=True)
    connector = SalesforceSource(token=TOKEN, base_url=fake.base_url, use_bulk=True, client_options=OPTIONS)
    cursors = [page.cursor for page in connector.read("opportunities", None)]
    connector.close()
    newest = max(o["SystemModstamp"] for o in fake.records["Opportunity"].values())
    assert cursors == [None, None, stamp(newest)]  # unordered chunks: the cursor moves with the last one
    fake.bulk_polls = 0
    with run_pipeline(load_settings(config), OPTIONS) as con:
        assert snapshot(con) == baseline
    assert fake.requests_to("jobs/query") > 0 and fake.requests_to("locator=") > 0


def test_failed_bulk_job_is_a_clear_error(org, tmp_path):
    fake = org(bulk_polls=0)
    failed = '{"id": "750x", "state": "Failed", "errorMessage": "Query timed out in the Bulk API"}'
    fake.inject(Fault("status", route="jobs/query/750", status=200, body=failed))
    result = sync(configure(tmp_path, fake, bulk=True))["opportunities"]
    assert "Failed: Query timed out in the Bulk API" in (result.error or "")


def test_bulk_not_enabled_falls_back_to_rest(org, tmp_path, baseline):
    fake = org(bulk_enabled=False)
    with run_pipeline(load_settings(configure(tmp_path, fake, bulk=True)), OPTIONS) as con:
        assert snapshot(con) == baseline
    assert fake.requests_to("jobs/query") == 1  # asked once, then REST for both objects


# -- (f) API and export give the same KPIs -------------------------------------------------------------------
def test_kpis_from_the_api_equal_kpis_from_the_same_records_exported(tmp_path):
    fake = FakeSalesforce.from_canonical(SAMPLE, **CREDENTIALS)
    extras = tmp_path / "extras"
    extras.mkdir()
    for name in ("fx_rates.csv", "csat.csv", "crm_usage.csv"):
        shutil.copy(SAMPLE / name, extras / name)
    demo = {"gross_margin": 0.6, "attribution_share": 0.4, "risk_adjustment": 0.1, "arpa_monthly": 1500,
            "data_roots": [str(tmp_path), str(SAMPLE)]}  # the export folders sit beside the config folders
    with fake.running():
        api = run_pipeline(load_settings(configure(
            tmp_path / "api", fake, files=[{"kind": "files", "path": str(extras)}], **demo)))
        assert len(fake.log) == minimum_requests(fake)  # 500-id history chunks pass the fake's 16 KiB URI limit
    export = fake.export_canonical(tmp_path / "export")
    for name in ("fx_rates.csv", "csat.csv", "crm_usage.csv"):
        shutil.copy(SAMPLE / name, export / name)
    files = run_pipeline(load_settings(configure(tmp_path / "files", None, files=[
        {"kind": "files", "path": str(export)}], **demo)))
    with api, files:
        assert api.execute("SELECT count(*) FROM staging.deals").fetchone()[0] > 5000
        for table in ("kpi.periodic", "kpi.baseline", "roi.rolling", "roi.summary"):
            from_api = rows(api, f"SELECT * FROM {table} ORDER BY ALL")
            from_files = rows(files, f"SELECT * FROM {table} ORDER BY ALL")
            assert len(from_api) == len(from_files) > 0, table
            for mine, theirs in zip(from_api, from_files, strict=True):
                assert mine == pytest.approx(theirs, nan_ok=True), table


# -- (g) secrets ------------------------------------------------------------------------------------------
def test_secrets_never_reach_errors_logs_or_the_database(org, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    fake = org(rotate_refresh_tokens=True)
    fake.expire_tokens()  # forces a refresh, which rotates the refresh token
    config = configure(tmp_path, fake, auth="both")
    run_pipeline(load_settings(config), OPTIONS).close()
    issued = {*fake.access_tokens, *fake.refresh_tokens}
    fake.expire_tokens()
    with pytest.raises(Exception) as expired:  # an exception as a caller of the connector sees it
        next(SalesforceSource(token=TOKEN, base_url=fake.base_url, client_options=OPTIONS).read("accounts", None))
    monkeypatch.setenv("SF_CLIENT_SECRET", "wrong-secret-0451")
    failed = sync(config)["opportunities"].error or ""
    assert "AuthenticationFailed" in failed and "invalid_client" in failed
    haystack = [failed, str(expired.value), caplog.text,
                load_settings(config).duckdb_path.read_bytes().decode("latin-1")]
    assert "INVALID_SESSION_ID" in haystack[1]
    for secret in {TOKEN, CLIENT_SECRET, REFRESH, "wrong-secret-0451", *issued}:
        assert not any(secret in text for text in haystack), secret


def test_configuration_mistakes_are_refused_before_any_request():
    with pytest.raises(ValueError, match="base_url"):
        SalesforceSource(token=TOKEN)
    with pytest.raises(ValueError, match="https"):
        SalesforceSource(token=TOKEN, base_url="http://example.com")
    with pytest.raises(ValueError, match="cannot be mapped"):
        SalesforceSource(token=TOKEN, base_url="https://x.my.salesforce.com", columns={"is_won": "Won__c"})
    with pytest.raises(ValueError, match="not a Salesforce field"):
        SalesforceSource(token=TOKEN, base_url="https://x.my.salesforce.com", columns={"amount": "Amount) OR"})
    with pytest.raises(ValueError, match="unknown Salesforce stream"):
        SalesforceSource(token=TOKEN, base_url="https://x.my.salesforce.com").read("deals", None)


def test_oauth_config_logs_in_and_learns_the_instance_url(org, tmp_path):
    """No base_url: the token endpoint under login_url names the instance (the connector a run opens)."""
    fake = org()
    settings: Settings = load_settings(configure(tmp_path, fake, auth="oauth"))
    connector = settings.api_sources()[0][1].open(OPTIONS)
    try:
        assert isinstance(connector, SalesforceSource)
        assert connector.streams == API_STREAMS["salesforce"]
        assert sum(len(p.tables["customers"].rows) for p in connector.read("accounts", None)) == len(
            fake.records["Account"])
        assert connector.stats.requests == 1 + math.ceil(len(fake.records["Account"]) / BATCH)  # login + pages
    finally:
        connector.close()
