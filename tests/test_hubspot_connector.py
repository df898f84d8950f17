"""The HubSpot connector against the fake HubSpot portal, over real loopback HTTP.

No mocks of the HTTP layer: every test talks to `FakeHubSpot` through
`requests`, and most run the same sync (and staging/KPI SQL) the pipeline runs.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import duckdb
import pytest
import requests
import yaml

from connectors.fakes.hubspot import FakeHubSpot, expired_token_fault, list_after, rate_limit_fault
from connectors.fakes.server import Fault, VirtualClock
from connectors.http import ApiError, AuthenticationFailed, QuotaExhausted
from connectors.hubspot import HubSpotSource, Progress, stage_flags, stage_history
from connectors.hubspot import settings as hubspot_settings
from connectors.hubspot.helpers import iso_utc
from pipelines.api_sync import read_cursor, sync_stream
from pipelines.config import load_settings
from pipelines.warehouse import connect, open_with_raw
from tests.conftest import ACCOUNTS, FAST_CLIENT, run_pipeline

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
TOKEN = "pat-na1-7f3c2e19-hubspot-test-secret-4d8a"
TOKEN_ENV = "HUBSPOT_TEST_TOKEN"
COLUMNS = {"churned_at": "churn_date", "mrr": "mrr"}
RAW_KEYS = {"deals": "deal_id", "deal_stage_history": "deal_id", "customers": "customer_id"}
MARTS = ("kpi.periodic", "kpi.baseline", "roi.rolling", "roi.summary")
# roi.summary's bootstrap percentiles: each deal's draws follow its id.
INTERVAL = ("incremental_revenue_p05", "incremental_revenue_p50", "incremental_revenue_p95",
            "roi_p05", "roi_p50", "roi_p95")


# -- a small portal --------------------------------------------------------------------------
def build_portal(fake: FakeHubSpot, deals: int = 120) -> list[int]:
    """Four companies (customers, one churned, one without a customer date, a prospect) and
    `deals` deals over two years in the default pipeline: won, lost and open, EUR and USD, some
    without an amount, some with a stage history and a second (non-primary) company; one archived."""
    acme = fake.create_company("Acme Corp", lifecycle="customer", created="2023-11-02T10:00:00Z",
                               customer_since="2024-02-01T09:00:00Z", mrr="500")
    beta = fake.create_company("Beta GmbH", lifecycle="customer", created="2024-01-10T10:00:00Z",
                               customer_since="2024-05-01T00:00:00Z", churned="2025-03-01T12:00:00Z", mrr="300.50")
    gamma = fake.create_company("Gamma Ltd", lifecycle="opportunity", created="2024-03-01T10:00:00Z")
    delta = fake.create_company("Delta SA", lifecycle="customer", created="2024-08-15T08:00:00Z")
    companies = [acme, beta, gamma, delta]
    outcomes = ("closedwon", "closedlost", "closedlost", "qualifiedtobuy", "closedwon", "contractsent")
    start = dt.datetime(2024, 1, 3, 9, tzinfo=dt.UTC)
    ids = []
    for n in range(deals):
        created = start + dt.timedelta(days=600 * n / deals, hours=n % 9)
        stage = outcomes[n % len(outcomes)]
        closed = created + dt.timedelta(days=12 + n % 40) if stage.startswith("closed") else None
        history = [(stage, created.isoformat())]
        if n % 3 == 0:
            history = [("appointmentscheduled", created.isoformat()),
                       ("qualifiedtobuy", (created + dt.timedelta(days=3)).isoformat()),
                       (stage, (closed or created + dt.timedelta(days=5)).isoformat())]
        primary = companies[n % len(companies)]
        others = [min(c for c in companies if c != primary)] if n % 13 == 0 else []
        ids.append(fake.create_deal(
            f"Deal {n}", amount=None if n % 11 == 0 else f"{1000 + 37 * n}.50",
            currency="EUR" if n % 7 == 0 else "USD", company_ids=[primary, *others], owner_id=str(100 + n % 5),
            created=created.isoformat(), closed=closed.isoformat() if closed else None, history=history,
        ))
    fake.archive_deal(ids[5])
    return ids


@pytest.fixture
def fake():
    portal = FakeHubSpot(TOKEN)
    build_portal(portal)
    with portal.running():
        yield portal


def connector(fake: FakeHubSpot, **options: object) -> HubSpotSource:
    options.setdefault("columns", COLUMNS)
    options.setdefault("client_options", FAST_CLIENT)
    return HubSpotSource(TOKEN, base_url=fake.base_url, **options)  # type: ignore[arg-type]


def hubspot(fake: FakeHubSpot, **options: object) -> dict:
    """The API source entry of a crm-roi config."""
    return {"kind": "hubspot", "token": f"env:{TOKEN_ENV}", "base_url": fake.base_url, "columns": COLUMNS, **options}


class Workspace:
    """Configs in one folder sharing the demo's finance GL and FX rates; one DuckDB file per config name."""

    def __init__(self, root: Path):
        self.root = root

    def config(self, name: str, *sources: dict) -> Path:
        config = {
            "as_of": "2026-10-31", "go_live": "2025-01-01", "baseline_months": 12, "gross_margin": 0.6,
            "attribution_share": 0.4, "risk_adjustment": 0.1, "arpa_monthly": 1500,
            "duckdb_path": f"{name}.duckdb",
            "sources": [*sources, {"kind": "files", "path": "fx", "profile": "canonical"}],
            "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS},
        }
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def run(self, name: str, *sources: dict, client_options: dict | None = None,
            full_reload: bool = False) -> dict[str, list]:
        """Run the whole pipeline; return the staging rows, quarantine and marts it produced."""
        con = run_pipeline(load_settings(self.config(name, *sources)), client_options or FAST_CLIENT, full_reload)
        try:
            return snapshot(con)
        finally:
            con.close()

    def db(self, name: str) -> Path:
        return self.root / f"{name}.duckdb"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    (tmp_path / "fx").mkdir()
    shutil.copy(SAMPLE / "fx_rates.csv", tmp_path / "fx" / "fx_rates.csv")
    shutil.copy(SAMPLE / "finance_gl.csv", tmp_path / "finance_gl.csv")
    return Workspace(tmp_path)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    """CRM staging rows (without the batch and source that differ between runs), their quarantine and
    the marts, sorted."""
    tables = {
        f"staging.{t}": con.execute(f"SELECT * EXCLUDE (batch_id, source) FROM staging.{t}").fetchall()
        for t in RAW_KEYS
    }
    tables["quarantine"] = con.execute("SELECT table_name, key, reason FROM quarantine.rejected_rows "
                                       "WHERE table_name IN ('deals', 'deal_stage_history', 'customers')").fetchall()
    for mart in MARTS:
        tables[mart] = con.execute(f"SELECT * EXCLUDE ({', '.join(INTERVAL)}) FROM {mart}"
                                   if mart == "roi.summary" else f"SELECT * FROM {mart}").fetchall()
    tables["roi.summary interval"] = con.execute(f"SELECT {', '.join(INTERVAL)} FROM roi.summary").fetchall()
    return {name: sorted(rows, key=repr) for name, rows in tables.items()}


def sync_into(db: Path, source: HubSpotSource) -> dict[str, str | None]:
    """The API half of a run: every stream into raw tables, page by page; returns each stream's error."""
    with connect(db) as con:
        return {stream: sync_stream(con, "hubspot", source, stream).error for stream in source.streams}


def assert_same_tables(actual: dict[str, list], expected: dict[str, list]) -> None:
    """Staging rows and quarantine exactly; KPI and ROI cells to float precision (sums may add up in any order)."""
    assert actual.keys() == expected.keys()
    for table, rows in expected.items():
        assert len(actual[table]) == len(rows), table
        if not table.startswith(("kpi.", "roi.")):
            assert actual[table] == rows, table
            continue
        for got, want in zip(actual[table], rows, strict=True):
            assert got == tuple(pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for v in want), table


def raw_rows(db: Path) -> dict[str, list[tuple]]:
    with connect(db, read_only=True) as con:
        return {t: sorted(con.execute(f"SELECT * EXCLUDE (_source, _file, _row_number, _batch_id, _loaded_at) "
                                      f"FROM raw.{t}").fetchall(), key=repr) for t in RAW_KEYS}


def assert_no_duplicate_keys(db: Path) -> None:
    with connect(db, read_only=True) as con:
        for table in ("deals", "customers"):
            key = RAW_KEYS[table]
            total, distinct = con.execute(f"SELECT count(*), count(DISTINCT {key}) FROM raw.{table}").fetchone()
            assert total == distinct, f"raw.{table} holds a key twice"


def page_route(fake: FakeHubSpot, page: int, size: int = 50) -> str:
    """The query fragment of the request for a page (from 2) of the live deals list."""
    ids = sorted(d.id for d in fake.deals.values() if d.archived_at is None)
    return urlencode({"after": list_after(ids[size * (page - 1) - 1])})


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    start, best = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- (a) a full sync ------------------------------------------------------------------------------
def test_full_sync_maps_hubspot_records_onto_canonical_rows(fake: FakeHubSpot, workspace: Workspace):
    api = workspace.run("api", hubspot(fake))
    fake.export_canonical(workspace.root / "export")
    files = workspace.run("files", {"kind": "files", "path": "export", "profile": "canonical"})
    for table in ("staging.deals", "staging.deal_stage_history", "staging.customers", "quarantine"):
        assert api[table] == files[table], table
    assert api["quarantine"] == []

    with duckdb.connect(str(workspace.db("api")), read_only=True) as con:
        deals = {r[0]: r for r in con.execute(
            "SELECT deal_id, account_id, is_closed, is_won, is_deleted, currency, amount, closed_at, stage "
            "FROM staging.deals").fetchall()}
        customers = {r[0]: r[1:] for r in con.execute(
            "SELECT customer_id, started_at, churned_at, mrr FROM staging.customers").fetchall()}
        history = con.execute("SELECT count(*) FROM staging.deal_stage_history").fetchone()[0]
    assert len(deals) == len(fake.deals)
    for deal in fake.deals.values():
        _, account, closed, won, deleted, currency, amount, closed_at, stage = deals[str(deal.id)]
        assert account == str(deal.company_ids[0])  # the primary company, even when another has a lower id
        assert (closed, won) == (stage in ("closedwon", "closedlost"), stage == "closedwon")
        assert deleted == (deal.archived_at is not None)
        assert currency == (deal.currency or "USD")  # an empty deal_currency_code is the portal currency
        assert amount == (float(deal.amount) if deal.amount is not None else None)
        if closed:  # epoch-ms and ISO close dates alike
            assert closed_at == dt.datetime.fromtimestamp(deal.closed / 1000, dt.UTC).replace(tzinfo=None)
    assert history == sum(len(d.history) for d in fake.deals.values())
    named = {c.name: str(c.id) for c in fake.companies.values()}
    assert named["Gamma Ltd"] not in customers  # a prospect is not a customer
    assert customers[named["Delta SA"]][0] == dt.datetime(2024, 8, 15, 8)  # lifecycle customer, no date: createdate
    assert customers[named["Beta GmbH"]][1:] == (dt.datetime(2025, 3, 1, 12), 300.5)


# -- (b) incremental syncs ----------------------------------------------------------------------
def mutate(fake: FakeHubSpot, ids: list[int], round_: int) -> None:
    """Creates, updates, bulk updates, archives, restores and merges deals and companies."""
    companies = {c.name: c.id for c in fake.companies.values()}
    if round_ == 1:
        fresh = fake.create_company("Epsilon Inc", lifecycle="opportunity")
        fake.create_deal("New deal", stage="qualifiedtobuy", amount="2500", currency="USD", company_ids=[fresh],
                         created="2026-09-01T10:00:00Z")
        fake.update_deal(ids[3], stage="closedwon", closed="2026-09-15T10:00:00Z", amount="9999")  # reopened and won
        fake.update_deals(ids[40:90], owner_id="777")  # a bulk update: one hs_lastmodifieddate for all
        fake.archive_deal(ids[10])  # does not bump hs_lastmodifieddate
        fake.merge_deals(ids[20], ids[21])
        fake.update_company(companies["Gamma Ltd"], lifecycle="customer", customer_since="2026-09-20T00:00:00Z")
        fake.update_company(companies["Acme Corp"], churned="2026-08-31T00:00:00Z")
    else:
        fake.restore_deal(ids[10])
        fake.merge_deals(ids[20], ids[22])  # a second merge into the same survivor
        fake.update_deal(ids[30], company_ids=[companies["Beta GmbH"]], stage="closedlost")
        fake.archive_company(companies["Delta SA"])  # a customer deleted
        fake.merge_companies(companies["Acme Corp"], companies["Beta GmbH"])


def test_incremental_syncs_end_where_one_full_sync_of_the_final_state_does(fake: FakeHubSpot,
                                                                          workspace: Workspace):
    ids = sorted(d.id for d in fake.deals.values())
    source = hubspot(fake, lookback_minutes=0)
    workspace.run("chain", source)
    for round_ in (1, 2):
        mutate(fake, ids, round_)
        before = len(fake.log)
        chained = workspace.run("chain", source)
        calls = [path for _, _, path in fake.log[before:]]
        assert any("/search" in path for path in calls)  # incremental: search, not a re-list
        assert not any("/crm/v3/objects/deals?" in path and "archived=false" in path for path in calls)
    assert_same_tables(chained, workspace.run("full", source))
    assert_no_duplicate_keys(workspace.db("chain"))
    with open_with_raw(workspace.db("chain"), read_only=True) as con:
        cursors = dict(con.execute("SELECT stream, cursor FROM raw.sync_state").fetchall())
        deleted = dict(con.execute("SELECT deal_id, is_deleted FROM staging.deals").fetchall())
        customers = dict(con.execute("SELECT name, is_deleted FROM staging.customers").fetchall())
        quarantined = con.execute("SELECT table_name, key FROM quarantine.rejected_rows "
                                  "WHERE table_name IN ('deals', 'customers')").fetchall()
    assert all(not cursor.startswith("{") for cursor in cursors.values())  # finished syncs store a timestamp
    assert deleted[str(ids[10])] is False  # archived, then restored
    assert customers == {"Acme Corp": False, "Gamma Ltd": False, "Delta SA": True}
    # Merged-away deals and companies (Beta GmbH) are gone, as from a full sync; none is quarantined.
    assert str(ids[21]) not in deleted and str(ids[22]) not in deleted
    assert quarantined == []


def test_a_full_reload_marks_deleted_what_hubspot_purged_so_it_counts_nowhere(fake: FakeHubSpot,
                                                                           workspace: Workspace):
    source = hubspot(fake, lookback_minutes=0, name="crm")
    workspace.run("reloaded", source)
    purged_deal = min(d.id for d in fake.deals.values() if d.stage == "closedwon" and d.amount is not None)
    purged_company = next(c.id for c in fake.companies.values() if c.name == "Delta SA")
    with open_with_raw(workspace.db("reloaded"), read_only=True) as con:
        stored = con.execute("SELECT * EXCLUDE (is_deleted, _file, _row_number, _batch_id, _loaded_at) "
                             "FROM raw.deals WHERE deal_id = ?", [str(purged_deal)]).fetchall()
    fake.purge_deal(purged_deal)  # e.g. 90 days in the recycle bin while no sync ran
    fake.purge_company(purged_company)
    assert workspace.run("reloaded", source) != workspace.run("fresh", source)  # an incremental sync cannot see it

    reloaded = workspace.run("reloaded", source, full_reload=True)
    fresh = workspace.run("fresh", source)
    assert_same_tables({t: reloaded[t] for t in MARTS}, {t: fresh[t] for t in MARTS})
    with open_with_raw(workspace.db("reloaded"), read_only=True) as con:
        deals = dict(con.execute("SELECT deal_id, is_deleted FROM staging.deals").fetchall())
        customers = dict(con.execute("SELECT customer_id, is_deleted FROM staging.customers").fetchall())
        marked = con.execute("SELECT * EXCLUDE (is_deleted, _file, _row_number, _batch_id, _loaded_at) "
                             "FROM raw.deals WHERE _file = 'api:deals (gone from a full sync)' "
                             "AND is_deleted = 'true'").fetchall()
    with open_with_raw(workspace.db("fresh"), read_only=True) as con:
        fresh_deals = dict(con.execute("SELECT deal_id, is_deleted FROM staging.deals").fetchall())
    assert deals == {**fresh_deals, str(purged_deal): True}  # kept, as deleted
    assert customers[str(purged_company)] is True
    assert marked == stored  # the row as it was, now deleted: nothing the sync stored is lost
    assert_no_duplicate_keys(workspace.db("reloaded"))

    def full_sync() -> dict[str, dict[str, int]]:
        with connect(workspace.db("reloaded")) as con:
            return {stream: sync_stream(con, "crm", connector(fake), stream, full=True).gone
                    for stream in ("deals", "companies")}

    assert full_sync() == {"deals": {"deals": 0}, "companies": {"customers": 0}}  # marked once

    # A full sync cut short marks nothing; the sync that resumes it from its cursor, and ends, does.
    fake.purge_deal(max(d.id for d in fake.deals.values() if d.archived_at is None))
    fake.inject(Fault(kind="html", route=page_route(fake, 2)))
    with connect(workspace.db("reloaded")) as con:
        stopped, resumed, next_night = (sync_stream(con, "crm", connector(fake), "deals", full=full)
                                        for full in (True, False, False))
    assert stopped.error is not None and stopped.gone == {}
    assert resumed.error is None and resumed.gone == {"deals": 1}
    assert next_night.gone == {}  # an incremental sync after the full one has ended marks nothing

    for company in list(fake.companies):
        fake.purge_company(company)
    # A CRM that answers with no company at all is more likely a lost permission: nothing is marked.
    assert full_sync()["companies"] == {}
    assert workspace.run("reloaded", source)["staging.customers"] == reloaded["staging.customers"]


# -- (c) a sync killed mid-way --------------------------------------------------------------------
def test_a_killed_sync_resumes_without_losing_or_duplicating_rows(fake: FakeHubSpot, workspace: Workspace):
    source = hubspot(fake)
    config = workspace.config("killed", source)
    stalled = page_route(fake, 3)
    fake.inject(Fault(kind="slow", route=stalled, delay=30))
    child = subprocess.Popen([sys.executable, "-m", "tests.hubspot_sync_child", str(config)], cwd=ROOT,
                             env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not any(stalled in path for _, _, path in fake.log):
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never reached the stalled page"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    _, stderr = child.communicate()
    assert child.returncode == -signal.SIGKILL and TOKEN.encode() not in stderr

    committed = raw_rows(workspace.db("killed"))
    assert len(committed["deals"]) == 100  # pages 1 and 2 were committed, page 3 was in flight
    with connect(workspace.db("killed"), read_only=True) as con:
        progress = json.loads(read_cursor(con, "hubspot_1", "deals"))
    assert progress["phase"] == "live" and progress["position"] == list_after(
        sorted(d.id for d in fake.deals.values() if d.archived_at is None)[99])

    resumed_from = len(fake.log)
    resumed = workspace.run("killed", source)
    first_list = next(path for _, _, path in fake.log[resumed_from:] if path.startswith("/crm/v3/objects/deals?"))
    assert stalled in first_list  # it resumed at page 3 rather than starting over
    assert_same_tables(resumed, workspace.run("fresh", source))
    assert_no_duplicate_keys(workspace.db("killed"))


# -- (d) faults -----------------------------------------------------------------------------------
@pytest.fixture
def expected_raw(fake: FakeHubSpot, tmp_path: Path) -> dict[str, list[tuple]]:
    sync_into(tmp_path / "reference.duckdb", connector(fake))
    fake.log.clear()
    return raw_rows(tmp_path / "reference.duckdb")


DEALS_LIST = "/crm/v3/objects/deals"
SURVIVABLE = {
    "429 with Retry-After": lambda: rate_limit_fault(retry_after="1", route=DEALS_LIST, times=2),
    "429 without Retry-After": lambda: rate_limit_fault(route=DEALS_LIST, times=2),
    "5xx burst": lambda: Fault(kind="status", status=502, body="<html>502 Bad Gateway</html>", route=DEALS_LIST,
                               times=3),
    "reset mid-body": lambda: Fault(kind="reset", route=DEALS_LIST, times=2),
    "slow past the read timeout": lambda: Fault(kind="slow", route=DEALS_LIST, delay=1.0),
    "search 429 (SECONDLY)": lambda: rate_limit_fault("SECONDLY", route="/search", times=2),
}


@pytest.mark.parametrize("fault", SURVIVABLE.values(), ids=SURVIVABLE.keys())
def test_transient_faults_are_survived(fault, fake: FakeHubSpot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A full sync, then an incremental one (which searches), under the fault; then nothing is missing.
    A burst 429 is waited out for a whole window: scaled down to 1 s here, so each takes 1 s, not 10."""
    monkeypatch.setattr(hubspot_settings, "BURST_WINDOW_SECONDS", 1.0)
    db = tmp_path / "faulty.duckdb"
    fake.inject(fault())
    retries = 0
    for incremental in (False, True):
        if incremental:
            fake.update_deals(sorted(fake.deals)[:60], owner_id="555")
        source = connector(fake, client_options={**FAST_CLIENT, "timeout": (2.0, 0.5)})
        assert sync_into(db, source) == {"deals": None, "companies": None}
        retries += source.stats.retries
    assert retries >= 1 and not fake.faults
    reference = tmp_path / "clean.duckdb"
    sync_into(reference, connector(fake))
    assert raw_rows(db) == raw_rows(reference)
    assert_no_duplicate_keys(db)


FATAL = {
    "expired token": (lambda route: expired_token_fault(route=route), AuthenticationFailed, "EXPIRED_AUTHENTICATION"),
    "daily limit": (lambda route: rate_limit_fault("DAILY", route=route), QuotaExhausted, "daily limit"),
    "HTML instead of JSON": (lambda route: Fault(kind="html", route=route), ApiError, "expected JSON"),
}


@pytest.mark.parametrize(("fault", "error", "message"), FATAL.values(), ids=FATAL.keys())
def test_fatal_faults_stop_cleanly_keeping_committed_pages_and_cursor(fault, error, message, fake: FakeHubSpot,
                                                                      tmp_path: Path, expected_raw: dict):
    db = tmp_path / "stopped.duckdb"
    fake.inject(fault(page_route(fake, 2)))
    errors = sync_into(db, connector(fake))
    assert errors["deals"].startswith(error.__name__) and message in errors["deals"]
    assert errors["companies"] is None  # one stream's stop does not stop the others
    assert TOKEN not in errors["deals"]
    first_page = sorted(d.id for d in fake.deals.values() if d.archived_at is None)[:50]
    assert sorted(int(row[0]) for row in raw_rows(db)["deals"]) == first_page
    with connect(db, read_only=True) as con:
        progress = json.loads(read_cursor(con, "hubspot", "deals"))
    assert progress == {**progress, "since": None, "phase": "live", "position": list_after(first_page[-1])}
    sync_into(db, connector(fake))  # the next run picks up where this one stopped
    assert raw_rows(db) == expected_raw
    assert_no_duplicate_keys(db)


def test_the_daily_budget_running_out_stops_before_anything_is_written(fake: FakeHubSpot, tmp_path: Path):
    fake.daily_limit = 0
    errors = sync_into(tmp_path / "quota.duckdb", connector(fake))
    assert all(error.startswith("QuotaExhausted") for error in errors.values())
    assert raw_rows(tmp_path / "quota.duckdb") == {table: [] for table in RAW_KEYS}


def test_a_wrong_token_fails_with_hubspots_reason_and_without_the_token(fake: FakeHubSpot, tmp_path: Path):
    wrong = HubSpotSource("not-the-right-token", base_url=fake.base_url, client_options=FAST_CLIENT)
    errors = sync_into(tmp_path / "wrong.duckdb", wrong)
    assert errors["deals"].startswith("AuthenticationFailed") and "credentials not found" in errors["deals"]
    assert "not-the-right-token" not in errors["deals"]


def test_long_property_lists_stay_under_the_url_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """With more custom properties than a URL holds, the rest are read by id (batch/read), never a 414."""
    names = {column: f"custom_{column}_" + "x" * 60 for column in ("deal_name", "owner_id", "account_id")}
    portal = FakeHubSpot(TOKEN, max_query_chars=400)
    ids = build_portal(portal, deals=30)
    for deal_id in ids:
        portal.update_deal(deal_id, custom={names["deal_name"]: f"Title {deal_id}", names["owner_id"]: "9",
                                            names["account_id"]: "A-1"})
    columns = {**COLUMNS, **names}
    with portal.running():
        everything = ",".join([*hubspot_settings.DEAL_FIXED_PROPERTIES, *hubspot_settings.DEAL_COLUMNS.values(),
                               *names.values()])
        too_long = requests.get(f"{portal.base_url}/crm/v3/objects/deals", params={"properties": everything},
                                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert too_long.status_code == 414
        monkeypatch.setattr(hubspot_settings, "MAX_QUERY_CHARS", 350)
        source = connector(portal, columns=columns)
        rows = [row for page in source.read("deals", None) for row in page.tables["deals"].rows]
        assert 414 not in source.stats.statuses
        assert portal.requests_to("/crm/v3/objects/deals/batch/read") >= 1
    assert all(row["deal_name"] == f"Title {row['deal_id']}" and row["account_id"] == "A-1" for row in rows)
    assert len(rows) == len(ids)


# -- (e) rate budgets and request counts -----------------------------------------------------------
def test_requests_stay_within_hubspots_budgets_and_are_the_fewest_the_page_sizes_allow(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The burst rule scaled down (5 per 1 s instead of 100 per 10 s) so the limiter has to work."""
    monkeypatch.setattr(hubspot_settings, "BURST_WINDOW_SECONDS", 1.0)
    portal = FakeHubSpot(TOKEN, burst_limit=5, burst_window=1.0)
    build_portal(portal)
    live = [d for d in portal.deals.values() if d.archived_at is None]
    archived = len(portal.deals) - len(live)
    pages = lambda n, size: max(1, math.ceil(n / size))  # noqa: E731
    with portal.running():
        db = tmp_path / "budget.duckdb"
        first = connector(portal, requests_per_10s=5, lookback_minutes=0)
        sync_into(db, first)
        full = len(portal.log)
        currency = portal.requests_to("/account-info")
        # pipelines, deals, archived deals, company properties check, companies, archived companies
        assert full == 1 + pages(len(live), 50) + pages(archived, 50) + currency + 1 + 1 + 1

        portal.update_deals([d.id for d in live], owner_id="42")  # every live deal changed
        source = connector(portal, requests_per_10s=5, lookback_minutes=0)
        sync_into(db, source)
        currency = portal.requests_to("/account-info") - currency
        changed = len(live)
        assert len(portal.log) - full == (1 + pages(changed, 200) + pages(changed, 50) + pages(changed, 100)
                                          + pages(archived, 50) + currency + 1 + 1 + 1)
    assert 429 not in first.stats.statuses and 429 not in source.stats.statuses
    search = [t for t, _, path in portal.log if path.endswith("/search")]
    burst = [t for t, _, path in portal.log if not path.endswith("/search")]
    assert max_in_window(burst, 1.0) <= 5
    assert max_in_window(search, 1.0) <= 4


@pytest.mark.parametrize(("spent", "met_429s"), [(10, 1), (6, 0)], ids=["all spent", "6 of 10 spent"])
def test_a_budget_another_app_spent_is_waited_out_not_retried_into(spent: int, met_429s: int, tmp_path: Path):
    """Another app on the account (or the run killed just before this one) spent `spent` of the rolling
    10-second budget a moment ago; our limiter never saw those requests. With 6 spent, the first answer's
    X-HubSpot-RateLimit-Remaining says so, and the sync waits for the window before it runs out: no 429.
    With all 10 spent, the first request meets a 429, which counts the window as full: the sync waits
    one window and goes on, within two attempts a request. HubSpot's `Retry-After: 1` alone would retry
    into the same full window and give up. On a virtual clock shared by the fake's window and the
    client, the ten seconds take none."""
    clock = VirtualClock()
    portal = FakeHubSpot(TOKEN, burst_limit=10)
    portal.clock = clock.now
    build_portal(portal, deals=20)
    with portal.running():
        for _ in range(spent):  # the other app
            other = requests.get(f"{portal.base_url}{hubspot_settings.PIPELINES_PATH}", timeout=5,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
            assert other.status_code == 200
        source = connector(portal, requests_per_10s=10,
                           client_options={**FAST_CLIENT, "clock": clock.now, "sleep": clock.sleep, "max_attempts": 2})
        assert sync_into(tmp_path / "waited.duckdb", source) == {"deals": None, "companies": None}
    assert source.stats.statuses.get(429, 0) == met_429s and source.stats.retries == met_429s
    assert clock.now() >= hubspot_settings.BURST_WINDOW_SECONDS
    burst = [t for t, _, path in portal.log if not path.endswith("/search")]
    assert source.stats.requests - met_429s > 10 - spent  # the sync needed more than the budget left
    assert max_in_window(burst, hubspot_settings.BURST_WINDOW_SECONDS) == 10 + met_429s  # with the 429, if any
    with connect(tmp_path / "waited.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM raw.deals").fetchone()[0] == len(portal.deals)


@pytest.mark.parametrize("short_pages", [False, True], ids=["full pages", "short pages with paging.next"])
def test_search_reads_every_changed_deal_past_the_result_cap_in_number_order(short_pages: bool, tmp_path: Path):
    """1000 deals changed at one instant (a bulk import), a search cap of 500: keyset paging on
    hs_object_id, compared as numbers (7199 < 719869649082), reads all of them; short pages that
    still carry paging.next do not end the read."""
    portal = FakeHubSpot(TOKEN, search_cap=500, short_pages=short_pages)
    ids = build_portal(portal, deals=1000)
    assert {7199, 719869649082} <= set(ids)
    with portal.running():
        db = tmp_path / "search.duckdb"
        sync_into(db, connector(portal, lookback_minutes=0))
        portal.update_deals([i for i in ids if portal.deals[i].archived_at is None], stage="closedlost")
        searches = portal.requests_to("/deals/search")
        sync_into(db, connector(portal, lookback_minutes=0))
        assert portal.requests_to("/deals/search") - searches >= 5
        search_times = [t for t, _, path in portal.log if path.endswith("/search")]
    assert max_in_window(search_times, 1.0) <= 4
    with connect(db, read_only=True) as con:
        stages = dict(con.execute("SELECT deal_id, stage FROM raw.deals").fetchall())
    assert len(stages) == 1000
    assert all(stages[str(i)] == "closedlost" for i in ids if portal.deals[i].archived_at is None)


def test_the_fake_compares_ids_as_numbers_as_hubspot_does():
    portal = FakeHubSpot(TOKEN)
    assert (portal.create_deal("A"), portal.create_deal("B")) == (7199, 719869649082)
    query = {"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": "7199"}]}]}
    with portal.running():
        answer = requests.post(f"{portal.base_url}/crm/v3/objects/deals/search", json=query, timeout=5,
                               headers={"Authorization": f"Bearer {TOKEN}"})
    assert [r["id"] for r in answer.json()["results"]] == ["719869649082"]  # as text it sorts before "7199"


def test_the_fake_limits_like_hubspot_with_its_headers_and_bodies():
    portal = FakeHubSpot(TOKEN, burst_limit=2)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with portal.running():
        answers = [requests.get(f"{portal.base_url}/crm/v3/pipelines/deals", headers=auth, timeout=5)
                   for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert answers[0].headers["X-HubSpot-RateLimit-Max"] == "2"
    assert answers[1].headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert answers[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert {a.json()["policyName"] for a in answers[2:]} == {"TEN_SECONDLY_ROLLING"}
    assert ["Retry-After" in a.headers for a in answers[2:]] == [True, False]  # HubSpot sends it only sometimes


# -- (f) KPI and ROI tables: API vs the same records as files -------------------------------------
def test_kpis_from_the_api_equal_those_from_the_same_records_exported_as_files(workspace: Workspace):
    """The demo data served by the fake portal: KPI and ROI tables built from the API equal those built
    from the portal's records exported as canonical files, and those of the demo files themselves (the
    rows the portal could not hold are ones staging rejects anyway), so a live demo shows the same numbers."""
    portal = FakeHubSpot.from_canonical(SAMPLE, token=TOKEN, burst_limit=250)
    with portal.running():
        api = workspace.run("api", hubspot(portal, requests_per_10s=250))
    portal.export_canonical(workspace.root / "export")
    exported = workspace.run("exported", {"kind": "files", "path": "export", "profile": "canonical"})
    assert_same_tables(api, exported)
    demo = workspace.root / "demo"
    demo.mkdir()
    for name in ("deals.csv", "deal_stage_history.csv", "customers.csv"):
        shutil.copy(SAMPLE / name, demo / name)
    original = workspace.run("demo", {"kind": "files", "path": "demo", "profile": "canonical"})
    # The portal gives the deals new ids, so the bootstrap draws other weights: every figure but the
    # interval matches (the interval itself matched the export above, whose ids are the portal's).
    for mart in MARTS:
        assert len(api[mart]) > 0
        assert_same_tables({mart: api[mart]}, {mart: original[mart]})


def test_seeding_from_the_demo_files_keeps_every_deal_hubspot_can_hold(tmp_path: Path):
    portal = FakeHubSpot.from_canonical(SAMPLE)
    exported = portal.export_canonical(tmp_path)
    with duckdb.connect() as con:
        source = con.execute(f"SELECT count(DISTINCT deal_id) FROM read_csv('{SAMPLE / 'deals.csv'}', "
                             "all_varchar=true)").fetchone()[0]
        deals = con.execute(f"SELECT count(*) FROM read_csv('{exported / 'deals.csv'}')").fetchone()[0]
        customers = con.execute(f"SELECT count(*) FROM read_csv('{exported / 'customers.csv'}')").fetchone()[0]
    # Left out: a bad created_at, an amount 'abc', is_won on an open stage.
    assert deals == source - 3
    assert customers == 1052


# -- (g) secrets -------------------------------------------------------------------------------------
def test_the_token_never_reaches_errors_logs_or_the_database(fake: FakeHubSpot, workspace: Workspace,
                                                             caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    workspace.run("secret", hubspot(fake))
    echoed = Fault(kind="status", status=400, body=f'{{"message": "token {TOKEN} is not allowed here"}}')
    errors = []
    for fault in (expired_token_fault(), echoed):
        fake.inject(fault)
        errors.append(sync_into(workspace.db("secret"), connector(fake))["deals"])
    assert "***" in errors[1]  # a body that echoes the token is redacted
    assert all(TOKEN not in error for error in errors)
    assert TOKEN not in caplog.text
    for path in workspace.root.glob("secret.duckdb*"):
        assert TOKEN.encode() not in path.read_bytes()


# -- mapping rules -------------------------------------------------------------------------------------
def test_stage_metadata_alone_decides_closed_and_won():
    pipelines = [{"id": "renewals", "stages": [
        {"id": "101", "label": "Won", "metadata": {"isClosed": "false", "probability": "1.0"}},
        {"id": "102", "label": "Signed", "metadata": {"isClosed": "true", "probability": "1.0"}},
        {"id": "103", "label": "Closed Won", "metadata": {"isClosed": "true", "probability": "0.0"}},
    ]}]
    flags = stage_flags(pipelines)
    assert flags[("renewals", "101")] == ("false", "false")  # a label says nothing
    assert flags[("renewals", "102")] == ("true", "true")
    assert flags[("renewals", "103")] == ("true", "false")
    assert flags[(None, "102")] == ("true", "true")  # stage ids are unique across pipelines


def test_stage_history_is_oldest_first_with_every_timestamp_format():
    record = {"propertiesWithHistory": {"dealstage": [
        {"value": "closedwon", "timestamp": "1700000000000"},
        {"value": "qualifiedtobuy", "timestamp": "2023-11-10T10:00:00+02:00"},
        {"value": "", "timestamp": "2023-11-09T00:00:00Z"},
        {"value": "appointmentscheduled", "timestamp": "2023-11-01"},
    ]}}
    assert stage_history("9", record) == [
        {"deal_id": "9", "stage": "appointmentscheduled", "entered_at": "2023-11-01T00:00:00.000Z"},
        {"deal_id": "9", "stage": "qualifiedtobuy", "entered_at": "2023-11-10T08:00:00.000Z"},
        {"deal_id": "9", "stage": "closedwon", "entered_at": "2023-11-14T22:13:20.000Z"},
    ]


def test_values_are_normalised_and_what_does_not_parse_is_left_for_staging_to_reject():
    assert iso_utc("") is None and iso_utc(None) is None
    assert iso_utc("1572480000000") == "2019-10-31T00:00:00.000Z"
    assert iso_utc("2024-03-01T10:00:00.5-05:00") == "2024-03-01T15:00:00.500Z"
    assert iso_utc("next tuesday") == "next tuesday"


def test_the_cursor_never_passes_the_sync_start_nor_moves_back():
    started = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
    progress = Progress.resume("2026-04-01T00:00:00.000Z", started)
    done = progress.after_page(None, "2026-05-01T12:00:05.000Z").after_page(None)
    assert done.cursor == "2026-05-01T12:00:00.000Z"  # a record changed mid-sync: capped at the start
    done = progress.after_page(None, "2026-03-31T23:30:00.000Z").after_page(None)
    assert done.cursor == "2026-04-01T00:00:00.000Z"  # only lookback records seen: unchanged
    with pytest.raises(ValueError, match="not a HubSpot cursor"):
        Progress.resume("yesterday", started)


# -- configuration --------------------------------------------------------------------------------------
def test_columns_point_canonical_fields_at_custom_properties(fake: FakeHubSpot):
    """amount_in_home_currency is in the portal currency whatever the deal's currency; account_id may
    come from a property, and then no association is read."""
    for deal in fake.deals.values():
        fake.update_deal(deal.id, custom={"amount_in_home_currency": "123.45", "company_code": f"ACC-{deal.id}"})
    source = connector(fake, columns={"amount": "amount_in_home_currency", "account_id": "company_code"})
    rows = [row for page in source.read("deals", None) for row in page.tables["deals"].rows]
    assert {(row["amount"], row["currency"]) for row in rows} == {("123.45", "USD")}
    assert all(row["account_id"] == f"ACC-{row['deal_id']}" for row in rows)
    assert not any("associations" in path for _, _, path in fake.log)


def test_segment_is_read_only_from_the_property_columns_names(fake: FakeHubSpot):
    """HubSpot has no standard region property: without a mapping segment stays empty."""
    for deal in fake.deals.values():
        fake.update_deal(deal.id, custom={"sales_region": "EMEA" if deal.id % 2 else "APAC"})
    mapped = connector(fake, columns={**COLUMNS, "segment": "sales_region"})
    rows = [row for page in mapped.read("deals", None) for row in page.tables["deals"].rows]
    assert rows and all(row["segment"] == ("EMEA" if int(row["deal_id"]) % 2 else "APAC") for row in rows)
    plain = [row for page in connector(fake).read("deals", None) for row in page.tables["deals"].rows]
    assert {row["segment"] for row in plain} == {None}


def test_columns_naming_a_property_hubspot_lacks_fail_before_any_row(fake: FakeHubSpot):
    source = connector(fake, columns={"mrr": "monthly_recurring_revenue"})
    with pytest.raises(ValueError, match="monthly_recurring_revenue"):
        next(source.read("companies", None))
    with pytest.raises(ValueError, match="cannot map"):
        connector(fake, columns={"is_won": "hs_is_closed_won"})
