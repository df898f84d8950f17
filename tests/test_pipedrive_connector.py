"""The Pipedrive connector against the fake Pipedrive over real loopback HTTP.

The fake holds every `DEAL_STEP`-th demo deal with its stage history, and all
demo customers as organizations (customer since / churn date / MRR custom
fields). No mock touches the HTTP layer: every request is a real request the
fake logs, pages, limits and breaks on demand.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from connectors.contract import API_STREAMS, utc_iso
from connectors.fakes.pipedrive import FakePipedrive, PipedriveStore, field_key
from connectors.fakes.server import Fault
from connectors.http import ApiError
from connectors.pipedrive import PipedriveSource
from pipelines.api_sync import SyncResult, read_cursor, sync_stream
from pipelines.config import Settings, load_settings
from pipelines.definitions import build_defs
from pipelines.warehouse import connect
from tests.conftest import ACCOUNTS, FAST_CLIENT, landed_ts, run_pipeline

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
TOKEN = "pd_5f3a9c1e7b2d4a6f8e0c_test_only"
TOKEN_ENV = "PIPEDRIVE_TEST_TOKEN"
DEAL_STEP = 40  # 138 deals, 1100 organizations
CUSTOMER_COLUMNS = {"started_at": "Customer since", "churned_at": "Churn date", "mrr": "MRR"}
STAGING = ("deals", "deal_stage_history", "customers")
RAW = ("deals", "deal_stage_history", "customers")
FAST_RATE = 480  # the highest budget config allows (OAuth Enterprise), so most tests do not wait


@pytest.fixture(autouse=True)
def token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


@pytest.fixture(scope="module")
def raw_reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    """The raw tables one clean full sync of the seeded account gives (the seed is deterministic)."""
    server = FakePipedrive(PipedriveStore.from_canonical(SAMPLE, deal_step=DEAL_STEP), TOKEN,
                           requests_per_2s=FAST_RATE)
    with pytest.MonkeyPatch.context() as patch, server.running():
        patch.setenv(TOKEN_ENV, TOKEN)
        return full_sync_reference(tmp_path_factory.mktemp("pipedrive"), server, "raw")


@pytest.fixture
def store() -> PipedriveStore:
    return PipedriveStore.from_canonical(SAMPLE, deal_step=DEAL_STEP)


@pytest.fixture
def fake(store: PipedriveStore):
    server = FakePipedrive(store, TOKEN, requests_per_2s=FAST_RATE)
    with server.running():
        yield server


def write_settings(folder: Path, base_url: str, *, db: str = "crm_roi.duckdb", **source: object) -> Settings:
    """A config with the Pipedrive source, fx rates from files and the demo GL."""
    fx = folder / "fx"
    fx.mkdir(parents=True, exist_ok=True)
    (fx / "fx_rates.csv").write_bytes((SAMPLE / "fx_rates.csv").read_bytes())
    pipedrive = {"kind": "pipedrive", "name": "pipedrive", "token": f"env:{TOKEN_ENV}", "base_url": base_url,
                 "requests_per_2s": FAST_RATE, "columns": CUSTOMER_COLUMNS, **source}
    return _settings(folder, [pipedrive, {"kind": "files", "name": "fx", "path": "fx"}], db)


def _settings(folder: Path, sources: list[dict], db: str) -> Settings:
    config = {
        "as_of": "2026-10-31", "go_live": "2025-01-01", "baseline_months": 12, "gross_margin": 0.6,
        "attribution_share": 0.4, "risk_adjustment": 0.1, "discount_rate": 0.1, "arpa_monthly": 1500,
        "duckdb_path": db, "sources": sources,
        "finance": {"path": str(SAMPLE / "finance_gl.csv"), "accounts": ACCOUNTS},
        "data_roots": [".", str(SAMPLE)],
    }
    path = folder / f"{Path(db).stem}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return load_settings(path)


def sync(settings: Settings, client_options: dict | None = None) -> dict[str, SyncResult]:
    """One sync of every Pipedrive stream, as the raw assets run it; the results per stream."""
    (name, config), = settings.api_sources()
    with connect(settings.duckdb_path, settings) as con:
        connector = config.open(client_options or FAST_CLIENT)
        try:
            return {stream: sync_stream(con, name, connector, stream) for stream in API_STREAMS["pipedrive"]}
        finally:
            connector.close()


def table_rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    exclude = "batch_id" if table.startswith("staging.") else "_file, _row_number, _batch_id, _loaded_at"
    return con.execute(f"SELECT * EXCLUDE ({exclude}) FROM {table} ORDER BY ALL").fetchall()


def snapshot(settings: Settings, schema: str) -> dict[str, list[tuple]]:
    with connect(settings.duckdb_path, read_only=True) as con:
        return {t: table_rows(con, f"{schema}.{t}") for t in (STAGING if schema == "staging" else RAW)}


def full_sync_reference(tmp_path: Path, fake: FakePipedrive, schema: str) -> dict[str, list[tuple]]:
    """What one full sync of the fake's current state gives, in a fresh DuckDB file."""
    settings = write_settings(tmp_path / "reference", fake.base_url)
    if schema == "staging":
        run_pipeline(settings).close()
    else:
        assert all(r.error is None for r in sync(settings).values())
    return snapshot(settings, schema)


def flows_requested(fake: FakePipedrive, since: int = 0) -> list[int]:
    return [int(path.split("/")[4]) for _, _, path in fake.log[since:] if "/flow" in path]


def active_deals_by_update(store: PipedriveStore) -> list[int]:
    """Live deal ids in the order the connector reads (and checkpoints) them."""
    live = [d for d in store.deals.values() if d["status"] != "deleted" and not d["is_archived"]]
    return [d["id"] for d in sorted(live, key=lambda d: (d["update_time"], d["id"]))]


# -- (a) full sync ----------------------------------------------------------------
def test_full_sync_maps_deals_history_and_customers(tmp_path: Path, store: PipedriveStore,
                                                    fake: FakePipedrive) -> None:
    fake.page_cap = 50  # page through the v2 lists
    busy = store.add_deal("Busy deal", org_id=next(iter(store.orgs)), pipeline_id=1)
    for n in range(600):  # a flow longer than one v1 page
        store.move_deal(busy, store.stage_id(1, "Contract sent" if n % 2 else "Qualified to buy"))
    store.add_activity(busy)
    results = sync(write_settings(tmp_path, fake.base_url))
    assert all(r.error is None for r in results.values())
    settings = load_settings(tmp_path / "crm_roi.yaml")
    with connect(settings.duckdb_path, read_only=True) as con:
        deals = {r[0]: r for r in con.execute(
            "SELECT deal_id, deal_name, account_id, pipeline, stage, is_closed, is_won, amount, currency, "
            "created_at, closed_at, updated_at, is_deleted FROM raw.deals").fetchall()}
        history = con.execute("SELECT deal_id, stage, entered_at FROM raw.deal_stage_history "
                              "ORDER BY deal_id, entered_at").fetchall()
        customers = {r[0]: r for r in con.execute(
            "SELECT customer_id, name, started_at, churned_at, mrr, is_customer, created_at "
            "FROM raw.customers").fetchall()}
        cursor = read_cursor(con, "pipedrive", "deals")

    assert len(deals) == len(store.deals)
    won = next(d for d in store.deals.values() if d["status"] == "won")
    assert deals[str(won["id"])][1:] == (
        won["title"], str(won["org_id"]), store.pipelines[won["pipeline_id"]]["name"],
        store.stages[won["stage_id"]]["name"], True, True, float(won["value"]), won["currency"],
        *(landed_ts(utc_iso(won[field])) for field in ("add_time", "won_time", "update_time")), False,
    )
    lost = next(d for d in store.deals.values() if d["status"] == "lost")
    assert deals[str(lost["id"])][5:7] == (True, False)
    deleted = [d["id"] for d in store.deals.values() if d["status"] == "deleted"]
    assert deleted and all(deals[str(i)][12] is True and deals[str(i)][5] is False for i in deleted)
    # History: the first stage at add_time, then every move; the 600 moves span two flow pages.
    busy_history = [h for h in history if h[0] == str(busy)]
    assert len(busy_history) == 601 and busy_history[0][1] == "Appointment scheduled"
    assert flows_requested(fake).count(busy) == 2
    # Every organization lands (staging keeps the customers): 1052 demo customers with a customer-since
    # date, and 48 organizations only named by deals; none is flagged a customer by Pipedrive.
    customer_orgs = [o for o in store.orgs.values() if o["custom_fields"].get(field_key("Customer since"))]
    assert (len(customers), len(customer_orgs)) == (len(store.orgs), 1052) == (1100, 1052)
    assert {row[5] for row in customers.values()} == {False}
    churned = next(o for o in customer_orgs if o["custom_fields"].get(field_key("Churn date")))
    row = customers[str(churned["id"])]
    assert row[1:] == (churned["name"], landed_ts(churned["custom_fields"][field_key("Customer since")]),
                       landed_ts(churned["custom_fields"][field_key("Churn date")]),
                       float(churned["custom_fields"][field_key("MRR")]["value"]), False,
                       landed_ts(utc_iso(churned["add_time"])))
    prospect = next(o for o in store.orgs.values() if o not in customer_orgs)
    assert customers[str(prospect["id"])][2:] == (None, None, None, False, landed_ts(utc_iso(prospect["add_time"])))
    assert cursor == utc_iso(max(d["update_time"] for d in store.deals.values()))
    assert not any("api_token" in path for _, _, path in fake.log)


def test_columns_read_custom_fields_by_name_or_key(store: PipedriveStore, fake: FakePipedrive) -> None:
    deal, no_currency = list(store.deals)[:2]
    store.update_deal(deal, contract_value=(9876.5, "EUR"))
    store.update_deal(no_currency, currency=None)
    # A custom field by name, another by its hash key; "Deal type" is an enum (option ids -> labels).
    rows = read_rows(fake, "deals", columns={"amount": "Contract value", "pipeline": field_key("Deal type")})
    assert (rows[str(deal)]["amount"], rows[str(deal)]["currency"]) == ("9876.5", "EUR")
    assert rows[str(deal)]["pipeline"] == ("New business", "Expansion")[store.deals[deal]["pipeline_id"] - 1]
    assert (rows[str(no_currency)]["amount"], rows[str(no_currency)]["currency"]) == (None, None)
    # Without columns, an organization has no started_at: staging counts it from its first won deal.
    customers = read_rows(fake, "organizations")
    assert len(customers) == len(store.orgs)
    org = store.orgs[store.deals[deal]["org_id"]]
    assert customers[str(org["id"])] | {"name": None} == {
        "customer_id": str(org["id"]), "name": None, "started_at": None, "churned_at": None, "mrr": None,
        "is_customer": "false", "created_at": utc_iso(org["add_time"])}
    # A deal without a currency takes the company's default, read once.
    assert read_rows(fake, "deals")[str(no_currency)]["currency"] == "USD"
    assert sum(1 for _, _, path in fake.log if path.startswith("/api/v1/users/me")) == 1
    with pytest.raises(ApiError, match="no field keyed or named 'Renewal date'"):
        read_rows(fake, "deals", columns={"closed_at": "Renewal date"})
    with pytest.raises(ValueError, match="not a canonical"):
        PipedriveSource(TOKEN, columns={"revenue": "Value"})
    # segment has no Pipedrive field of its own: it comes from the one columns names.
    segments = read_rows(fake, "deals", columns={"segment": "Deal type"})
    assert segments[str(deal)]["segment"] == rows[str(deal)]["pipeline"]
    assert read_rows(fake, "deals")[str(deal)].get("segment") is None


def read_rows(fake: FakePipedrive, stream: str, **options: object) -> dict[str, dict]:
    """The first table's rows of a full read, by key."""
    source = PipedriveSource(TOKEN, base_url=fake.base_url, requests_per_2s=FAST_RATE,
                             client_options=FAST_CLIENT, **options)
    try:
        parts = [next(iter(page.tables.values())) for page in source.read(stream, None) if page.tables]
    finally:
        source.close()
    return {row[part.key_column]: row for part in parts for row in part.rows}


# -- (b) incremental chain == one full sync -------------------------------------------
def mutate_first(store: PipedriveStore) -> dict[str, int]:
    """Creates, updates, closes, deletes (without bumping update_time), merges, archives."""
    today = dt.datetime.now(dt.UTC).date()
    ids = [d["id"] for d in sorted(store.deals.values(), key=lambda d: d["id"])
           if d["status"] != "deleted"]
    open_deals = [i for i in ids if store.deals[i]["status"] == "open"]
    closed = [i for i in ids if store.deals[i]["status"] == "won"]
    org = store.add_org("Newco AB", customer_since=today, mrr=(500.0, "USD"))
    new = store.add_deal("Newco AB - Pro", org_id=org, pipeline_id=1, value=2400.0, currency="EUR")
    store.move_deal(new, store.stage_id(1, "Contract sent"))
    store.close_deal(new, won=True)
    store.update_deal(open_deals[0], value=15000.0, title="Renamed deal")
    store.move_deal(open_deals[0], store.stage_id(2, "Qualified to buy"))  # into the other pipeline
    store.close_deal(open_deals[1], won=False)
    store.delete_deal(ids[0])  # an old deal: its update_time stays years back
    store.merge_deals(ids[1], into_id=ids[2])
    store.archive_deal(closed[0])
    churning = next(o for o in store.orgs.values() if o["custom_fields"].get(field_key("Customer since"))
                    and not o["custom_fields"].get(field_key("Churn date")))
    store.update_org(churning["id"], churn_date=today)
    store.add_activity(open_deals[2])
    return {"new": new, "org": org, "won": closed[1], "open": open_deals[3], "deleted": ids[0]}


def mutate_second(store: PipedriveStore, made: dict[str, int]) -> None:
    store.reopen_deal(made["won"])
    store.move_deal(made["open"], store.stage_id(store.deals[made["open"]]["pipeline_id"], "Contract sent"))
    store.delete_deal(made["new"])
    store.update_org(made["org"], name="Newco Group AB")
    store.add_deal("No currency", org_id=made["org"], pipeline_id=2, value=300.0, currency=None)


def test_incremental_chain_equals_one_full_sync(tmp_path: Path, store: PipedriveStore,
                                                fake: FakePipedrive) -> None:
    settings = write_settings(tmp_path, fake.base_url, lookback_minutes=0)  # no lookback to hide behind
    run_pipeline(settings).close()
    made = mutate_first(store)
    with connect(settings.duckdb_path, read_only=True) as con:
        since = dt.datetime.fromisoformat(read_cursor(con, "pipedrive", "deals"))
    before = len(fake.log)
    run_pipeline(settings).close()
    # Only deals changed at or after the cursor have their flow read again.
    changed = {d["id"] for d in store.deals.values() if d["update_time"] >= since}
    assert set(flows_requested(fake, before)) == changed
    mutate_second(store, made)
    run_pipeline(settings).close()
    chained = snapshot(settings, "staging")

    assert chained == full_sync_reference(tmp_path, fake, "staging")
    deleted = [r for r in chained["deals"] if r[1] in (str(made["new"]), str(made["deleted"]))]
    assert len(deleted) == 2 and all(r[9] for r in deleted)  # is_deleted


def test_a_deleted_organization_is_a_customer_until_the_full_sync_schedule_marks_it_deleted(
        tmp_path: Path, store: PipedriveStore, fake: FakePipedrive) -> None:
    settings = write_settings(tmp_path, fake.base_url)
    config_file = tmp_path / "crm_roi.yaml"
    config_file.write_text(yaml.safe_dump({**yaml.safe_load(config_file.read_text()), "full_sync_cron": "0 4 * * 0"}))
    run_pipeline(settings).close()
    with connect(settings.duckdb_path, read_only=True) as con:
        org = int(con.execute("SELECT min(customer_id::INT) FROM staging.customers").fetchone()[0])
    store.delete_org(org)  # Pipedrive's lists drop it and say nothing: no incremental sync can tell

    def deleted_flag() -> bool:
        with connect(settings.duckdb_path, read_only=True) as con:
            return con.execute("SELECT is_deleted FROM staging.customers WHERE customer_id = ?",
                               [str(org)]).fetchone()[0]

    run_pipeline(settings).close()
    assert deleted_flag() is False
    # The weekly full sync as Dagster runs it: the nightly job with the schedule's run config.
    defs = build_defs(load_settings(config_file))
    graph = defs.resolve_asset_graph()
    api_keys = [k for k in graph.get_all_asset_keys() if k.path[-1] in ("pipedrive_deals", "pipedrive_organizations")]
    assert len(api_keys) == 2 and all(set(graph.get(k).kinds) == {"duckdb", "pipedrive"} for k in api_keys)
    schedule = defs.resolve_schedule_def("full_sync_schedule")
    assert schedule.cron_schedule == "0 4 * * 0"
    with dg.instance_for_test() as instance:
        request, = schedule.evaluate_tick(dg.build_schedule_context(instance=instance)).run_requests
        result = defs.resolve_job_def("nightly").execute_in_process(run_config=request.run_config, instance=instance)
    gone = {event.asset_key.to_user_string(): event.materialization.metadata["records_gone"].value
            for event in result.get_asset_materialization_events()
            if event.asset_key.path[-1].startswith("pipedrive_")}
    assert gone == {"raw/pipedrive_deals": 0, "raw/pipedrive_organizations": 1}
    assert deleted_flag() is True
    reloaded = snapshot(settings, "staging")
    reference = full_sync_reference(tmp_path, fake, "staging")
    assert [r for r in reloaded["customers"] if r[1] != str(org)] == reference["customers"]
    assert reloaded["deals"] == reference["deals"]
    with connect(settings.duckdb_path, read_only=True) as con, \
            connect(tmp_path / "reference" / "crm_roi.duckdb", read_only=True) as ref:
        periodic, expected = (c.execute("SELECT * FROM kpi.periodic ORDER BY ALL").fetchall() for c in (con, ref))
    # It counts nowhere: the KPIs are those of a CRM that never had it (cells to float precision).
    assert periodic == [tuple(pytest.approx(v, rel=1e-9) if isinstance(v, float) else v for v in row)
                        for row in expected]


# -- (c) killed mid-sync, re-run -------------------------------------------------------
def test_sync_killed_mid_stream_resumes_without_duplicates(tmp_path: Path, store: PipedriveStore,
                                                           fake: FakePipedrive) -> None:
    settings = write_settings(tmp_path, fake.base_url)
    stalled = active_deals_by_update(store)[-5]  # in the last page of live deals
    fake.inject(Fault(kind="slow", route=f"/api/v1/deals/{stalled}/flow", delay=30))
    code = ("import sys; from pipelines.config import load_settings; from tests.conftest import run_pipeline; "
            "run_pipeline(load_settings(sys.argv[1]))")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "crm_roi.yaml")], cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while stalled not in flows_requested(fake) and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        assert stalled in flows_requested(fake), "the child never reached the stalled page"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with connect(settings.duckdb_path, read_only=True) as con:
        committed = con.execute("SELECT count(*) FROM raw.deals").fetchone()[0]
        cursor = read_cursor(con, "pipedrive", "deals")
    assert 0 < committed < len(store.deals) and cursor is not None

    con = run_pipeline(settings)
    duplicates = con.execute("SELECT count(*) - count(DISTINCT deal_id) FROM raw.deals").fetchone()[0]
    con.close()
    assert duplicates == 0
    assert snapshot(settings, "staging") == full_sync_reference(tmp_path, fake, "staging")


# -- (d) faults --------------------------------------------------------------------
RATE_BODY = json.dumps({"success": False, "error": "Request over limit", "errorCode": 429})
SURVIVED = {
    "429 with Retry-After": Fault(kind="status", route="/api/v2/deals?", status=429, body=RATE_BODY,
                                  headers={"Retry-After": "1"}, times=2),
    "429 without Retry-After": Fault(kind="status", route="/flow", status=429, body=RATE_BODY, times=3),
    "5xx burst": Fault(kind="status", route="/api/v2/organizations", status=502, body="Bad gateway", times=4),
    "reset mid-body": Fault(kind="reset", route="/api/v2/deals?", times=2),
    "slow past the read timeout": Fault(kind="slow", route="/flow", delay=1.0, times=2),
    "html instead of json": Fault(kind="html", route="/api/v2/stages", times=2),
}


@pytest.mark.parametrize("fault", SURVIVED.values(), ids=SURVIVED.keys())
def test_transient_faults_are_survived(tmp_path: Path, fake: FakePipedrive, fault: Fault,
                                       raw_reference: dict[str, list[tuple]]) -> None:
    fake.inject(dataclasses.replace(fault))  # a copy: the server counts `times` down
    settings = write_settings(tmp_path, fake.base_url)
    results = sync(settings, {**FAST_CLIENT, "timeout": (2.0, 0.5)})
    assert all(r.error is None for r in results.values())
    assert not fake.faults, "the fault was never hit"
    assert snapshot(settings, "raw") == raw_reference


def expect_clean_stop(settings: Settings, error: str, reference: dict[str, list[tuple]]) -> None:
    """The stream stopped with a clear error, kept what it committed, and a re-run completes it."""
    with connect(settings.duckdb_path, read_only=True) as con:
        committed = con.execute("SELECT count(*) FROM raw.deals").fetchone()[0]
        cursor = read_cursor(con, "pipedrive", "deals")
    assert committed > 0 and cursor is not None
    assert TOKEN not in error
    results = sync(settings)
    assert all(r.error is None for r in results.values())
    assert snapshot(settings, "raw") == reference


def test_expired_token_mid_sync_stops_with_a_clear_error(tmp_path: Path, store: PipedriveStore, fake: FakePipedrive,
                                                         raw_reference: dict[str, list[tuple]]) -> None:
    revoked = active_deals_by_update(store)[-2]
    fake.inject(Fault(kind="status", route=f"/api/v1/deals/{revoked}/flow", status=401,
                      body=json.dumps({"success": False, "error": "unauthorized access", "errorCode": 401})))
    settings = write_settings(tmp_path, fake.base_url)
    result = sync(settings)["deals"]
    assert result.error is not None and result.error.startswith("AuthenticationFailed")
    assert "unauthorized access" in result.error
    expect_clean_stop(settings, result.error, raw_reference)


def test_wrong_token_fails_before_anything_is_written(tmp_path: Path, fake: FakePipedrive) -> None:
    fake.token = "rotated-by-an-admin"
    settings = write_settings(tmp_path, fake.base_url)
    results = sync(settings)
    assert all(r.error and r.error.startswith("AuthenticationFailed") for r in results.values())
    assert all(TOKEN not in r.error for r in results.values())
    assert snapshot(settings, "raw") == {t: [] for t in RAW}


def test_daily_budget_stops_cleanly_and_keeps_the_cursor(tmp_path: Path, store: PipedriveStore, fake: FakePipedrive,
                                                         raw_reference: dict[str, list[tuple]]) -> None:
    fake.reset_daily_budget(10 * 5 + 20 * (len(store.deals) - 10))  # runs out near the end of the deals
    settings = write_settings(tmp_path, fake.base_url)
    before = len(fake.log)
    results = sync(settings)
    assert results["deals"].error.startswith("QuotaExhausted") and "Daily token budget" in results["deals"].error
    assert results["organizations"].error.startswith("QuotaExhausted")
    # No retries against a spent budget: one refused call per stream.
    paths = [path for _, _, path in fake.log[before:]]
    refused_flow = [p for p in paths if "/flow" in p][-1]
    assert paths.count(refused_flow) == 1 and paths[-1].startswith("/api/v2/organizations")
    assert results["deals"].cursor_after is not None
    fake.reset_daily_budget()
    expect_clean_stop(settings, results["deals"].error, raw_reference)


def test_persistent_html_is_a_clear_error(tmp_path: Path, fake: FakePipedrive) -> None:
    fake.inject(Fault(kind="html", route="/api/v2/organizations", times=100))
    settings = write_settings(tmp_path, fake.base_url)
    results = sync(settings, {**FAST_CLIENT, "max_attempts": 3})
    assert results["deals"].error is None
    assert "gave up after 3 attempts" in results["organizations"].error
    assert "Maintenance" in results["organizations"].error


def test_a_purged_flow_keeps_the_stored_history(tmp_path: Path, store: PipedriveStore,
                                                fake: FakePipedrive) -> None:
    settings = write_settings(tmp_path, fake.base_url)
    sync(settings)
    before = snapshot(settings, "raw")["deal_stage_history"]
    deal = active_deals_by_update(store)[0]
    store.update_deal(deal, title="Touched")
    fake.inject(Fault(kind="status", route=f"/api/v1/deals/{deal}/flow", status=404,
                      body=json.dumps({"success": False, "error": "Deal not found", "errorCode": 404})))
    assert all(r.error is None for r in sync(settings).values())
    assert not fake.faults
    assert snapshot(settings, "raw")["deal_stage_history"] == before


# -- (e) the rate budget, and the fewest requests ---------------------------------------
def test_requests_stay_in_the_2s_window_and_are_the_fewest_possible(tmp_path: Path) -> None:
    store = PipedriveStore.from_canonical(SAMPLE, deal_step=200)
    server = FakePipedrive(store, TOKEN, requests_per_2s=20)
    with server.running():
        settings = write_settings(tmp_path, server.base_url, requests_per_2s=20)
        results = sync(settings)
        assert all(r.error is None for r in results.values())
        times = sorted(t for t, _, _ in server.log)
        busiest = max(sum(1 for u in times[i:] if u - t < 2.0) for i, t in enumerate(times))
        assert busiest <= 20 and server.throttled == 0

        def pages(n: int) -> int:
            return max(1, math.ceil(n / 500))

        deleted = sum(1 for d in store.deals.values() if d["status"] == "deleted")
        archived = sum(1 for d in store.deals.values() if d["is_archived"] and d["status"] != "deleted")
        live = len(store.deals) - deleted - archived
        fewest = (2  # stages, pipelines
                  + pages(deleted) + pages(archived) + pages(live) + len(store.deals)  # one flow page each
                  + 1 + pages(len(store.orgs)))  # organizationFields, organizations
        assert len(server.log) == fewest
        # A sync with nothing new re-reads only the lookback window's deals (updated_since is inclusive).
        # It starts at once, with a fresh limiter that never saw the first sync's requests: the
        # x-ratelimit-remaining header tells it, so it waits for the window instead of meeting a 429.
        before = len(server.log)
        assert all(r.error is None for r in sync(settings).values())
        assert server.throttled == 0
        latest = max(d["update_time"] for d in store.deals.values())
        boundary = [d["id"] for d in store.deals.values() if d["update_time"] >= latest - dt.timedelta(hours=1)]
        assert len(server.log) - before == 2 + 3 + len(boundary) + 1 + 1


# -- (f) the API and the same records as canonical files give the same KPIs and ROI -------------
def test_kpis_from_the_api_equal_kpis_from_the_exported_files(tmp_path: Path, store: PipedriveStore,
                                                             fake: FakePipedrive) -> None:
    api = run_pipeline(write_settings(tmp_path, fake.base_url))
    export = store.export_canonical(tmp_path / "export")
    (export / "fx_rates.csv").write_bytes((SAMPLE / "fx_rates.csv").read_bytes())
    files = run_pipeline(_settings(tmp_path, [{"kind": "files", "name": "pipedrive", "path": str(export)}],
                                   "files.duckdb"))
    try:
        for table in ("kpi.periodic", "kpi.baseline", "roi.rolling", "roi.summary"):
            expected = files.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            actual = api.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
            assert len(actual) == len(expected) > 0, table
            for got, want in zip(actual, expected, strict=True):
                assert [pytest.approx(v) if isinstance(v, float) else v for v in got] == list(want), table
        assert api.execute("SELECT sum(deals_won) FROM kpi.periodic").fetchone()[0] > 0
    finally:
        api.close()
        files.close()


# -- (g) the token never leaks ----------------------------------------------------------
def test_token_never_reaches_logs_errors_urls_or_the_database(tmp_path: Path, fake: FakePipedrive,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    settings = write_settings(tmp_path, fake.base_url)
    fake.inject(Fault(kind="status", route="/api/v2/pipelines", status=500, body="oops", times=1))
    run_pipeline(settings).close()
    fake.token = "rotated"
    errors = [r.error for r in sync(settings).values()]
    assert all(e and "authentication failed" in e for e in errors)
    database = settings.duckdb_path.read_bytes()
    wal = settings.duckdb_path.with_name(settings.duckdb_path.name + ".wal")
    leaks = {
        "log": TOKEN in caplog.text,
        "errors": any(TOKEN in e for e in errors),
        "urls": any(TOKEN in path for _, _, path in fake.log),
        "duckdb": TOKEN.encode() in database or (wal.exists() and TOKEN.encode() in wal.read_bytes()),
    }
    assert not any(leaks.values()), leaks
    assert "/api/v2/deals" in caplog.text  # the logs were captured


def test_read_rejects_an_unknown_stream() -> None:
    source = PipedriveSource(TOKEN)
    with pytest.raises(ValueError, match="unknown Pipedrive stream 'leads'"):
        source.read("leads", None)
    source.close()
