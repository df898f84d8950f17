"""API faults end to end: a page sent twice, paging that goes round in a circle, a ten-minute outage.

Every fault runs against the three fake CRMs over real loopback HTTP (nothing in
the HTTP layer is mocked), through the connector the pipeline opens from a
config. A fault is either survived (the tables equal a clean full sync's) or
stops its stream cleanly: an error in the stream's SyncResult, the pages
committed before the fault kept with their cursor, and the next run, fault
gone, ending where a clean full sync does. The outage runs on a virtual clock
shared by the fake and the client and moved on only by the client's sleeps, so
ten minutes of it take milliseconds.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillRunning
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import duckdb
import pytest
import yaml

from connectors.contract import API_STREAMS, utc_iso
from connectors.fakes.hubspot import FakeHubSpot, list_after
from connectors.fakes.pipedrive import FakePipedrive, PipedriveStore, list_cursor, v2_time
from connectors.fakes.salesforce import FakeSalesforce
from connectors.fakes.server import FakeServer, Fault, VirtualClock
from connectors.http import ApiError, PagingGuard, Redactor, RequestStats
from connectors.hubspot import settings as hubspot_settings
from connectors.records import Page, TableRows
from pipelines.api_sync import SyncResult, read_cursor, sync_stream
from pipelines.config import Settings, load_settings
from pipelines.warehouse import connect
from tests.conftest import ACCOUNTS, FAST_CLIENT, run_pipeline
from tests.test_hubspot_connector import build_portal, page_route

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
TOKEN = "crm-faults-7c41e2-secret-token"
SOURCE = "crm"
CRM_TABLES = ("deals", "deal_stage_history", "customers")
HUBSPOT_PAGE = 50  # deals per list page with stage history
SF_BATCH = 10
PIPEDRIVE_PAGE = 40  # not a multiple of the 50 deals committed at a time: a page sent twice lands in one commit
PIPEDRIVE_COMMIT = 50
OUTAGE_SECONDS = 600.0
LOOP_TIMES = 1000  # how often a 'loop' fault would send the client round without the guard
SYNC_TIMEOUT = 30.0  # a sync here takes at most a few seconds


# -- the three CRMs --------------------------------------------------------------------------
@dataclass(frozen=True)
class Crm:
    """What the suite needs of one CRM: its fake, its config entry, and where its main listing pages."""

    kind: str
    listing: str  # the stream whose pages the paging faults strike
    make: Callable[[], FakeServer]  # a seeded fake, not started
    source: Callable[[FakeServer], dict]  # its entry in crm_roi.yaml
    page: Callable[[FakeServer, int], str]  # a paging fault's route to the listing's n-th page
    outage_from: Callable[[FakeServer], str]  # a request made only once the listing's first two pages are read
    committed: Callable[[FakeServer], list[str]]  # deal ids in raw.deals when a fault strikes the third page
    position: Callable[[FakeServer], str]  # the position the listing's stored cursor holds then
    read_position: Callable[[str], str] = lambda cursor: cursor


def hubspot() -> FakeHubSpot:
    portal = FakeHubSpot(TOKEN)
    build_portal(portal)  # 119 live deals: list pages of 50, 50, 19
    return portal


def hubspot_live(fake: FakeServer) -> list[int]:
    assert isinstance(fake, FakeHubSpot)
    return sorted(d.id for d in fake.deals.values() if d.archived_at is None)


def salesforce() -> FakeSalesforce:
    return FakeSalesforce.from_canonical(SAMPLE, limit=40, batch_size=SF_BATCH, access_token=TOKEN)


def salesforce_pages(fake: FakeServer) -> list[list[dict]]:
    """The opportunities in queryAll order (SystemModstamp, Id), cut into the fake's batches."""
    assert isinstance(fake, FakeSalesforce)
    ordered = sorted(fake.records["Opportunity"].values(), key=lambda r: (r["SystemModstamp"], r["Id"]))
    return [ordered[i:i + SF_BATCH] for i in range(0, len(ordered), SF_BATCH)]


def pipedrive() -> FakePipedrive:
    # 134 live deals in list pages of 40, committed 50 at a time (DEALS_PER_PAGE), after 4 deleted ones.
    return FakePipedrive(PipedriveStore.from_canonical(SAMPLE, deal_step=40), TOKEN, requests_per_2s=480,
                         page_cap=PIPEDRIVE_PAGE)


def pipedrive_deals(fake: FakeServer, deleted: bool) -> list[dict]:
    """Live (or deleted) deals in the order the connector lists them: update_time, then id."""
    assert isinstance(fake, FakePipedrive)
    chosen = [d for d in fake.store.deals.values() if (d["status"] == "deleted") == deleted and not d["is_archived"]]
    return sorted(chosen, key=lambda d: (d["update_time"], d["id"]))


def pipedrive_page(fake: FakeServer, page: int) -> str:
    last = pipedrive_deals(fake, deleted=False)[PIPEDRIVE_PAGE * (page - 1) - 1]
    return urlencode({"cursor": list_cursor([v2_time(last["update_time"]), last["id"]])})


CRMS = {
    "hubspot": Crm(
        "hubspot", "deals", hubspot,
        source=lambda fake: {"kind": "hubspot", "token": "env:CRM_TOKEN", "base_url": fake.base_url},
        page=lambda fake, n: page_route(fake, n),  # type: ignore[arg-type]
        outage_from=lambda fake: page_route(fake, 3),  # type: ignore[arg-type]
        committed=lambda fake: [str(i) for i in hubspot_live(fake)[:2 * HUBSPOT_PAGE]],
        position=lambda fake: list_after(hubspot_live(fake)[2 * HUBSPOT_PAGE - 1]),
        read_position=lambda cursor: json.loads(cursor)["position"],  # a progress cursor mid-listing
    ),
    "salesforce": Crm(
        "salesforce", "opportunities", salesforce,
        source=lambda fake: {"kind": "salesforce", "token": "env:CRM_TOKEN", "base_url": fake.base_url,
                             "login_url": fake.base_url},
        page=lambda _, n: f"-{SF_BATCH * (n - 1)} [Opportunity]",  # the fake names a batch's sObject
        outage_from=lambda fake: salesforce_pages(fake)[2][0]["Id"],  # the history query of the third batch
        committed=lambda fake: [r["Id"] for page in salesforce_pages(fake)[:2] for r in page],
        position=lambda fake: salesforce_pages(fake)[1][-1]["SystemModstamp"].replace("+0000", "Z"),
    ),
    "pipedrive": Crm(
        "pipedrive", "deals", pipedrive,
        source=lambda fake: {"kind": "pipedrive", "token": "env:CRM_TOKEN", "base_url": fake.base_url,
                             "requests_per_2s": 480},
        page=pipedrive_page,
        outage_from=lambda fake: pipedrive_page(fake, 3),
        # Two list pages (80 deals) fill one commit of 50; the second commit waited for the third page.
        committed=lambda fake: [str(d["id"]) for d in pipedrive_deals(fake, deleted=True)
                                + pipedrive_deals(fake, deleted=False)[:PIPEDRIVE_COMMIT]],
        position=lambda fake: utc_iso(pipedrive_deals(fake, deleted=False)[PIPEDRIVE_COMMIT - 1]["update_time"]),
    ),
}


@pytest.fixture(params=CRMS.values(), ids=CRMS.keys())
def crm(request: pytest.FixtureRequest) -> Crm:
    return request.param


@pytest.fixture
def fake(crm: Crm):
    server = crm.make()
    with server.running():
        yield server


# -- syncing and comparing -------------------------------------------------------------------
class Workspace:
    """Configs in one folder with the demo's FX rates and GL; one DuckDB file per name."""

    def __init__(self, root: Path, crm: Crm, fake: FakeServer):
        self.root, self.crm, self.fake = root, crm, fake
        (root / "fx").mkdir()
        shutil.copy(SAMPLE / "fx_rates.csv", root / "fx" / "fx_rates.csv")
        shutil.copy(SAMPLE / "finance_gl.csv", root / "finance_gl.csv")

    def settings(self, name: str, api: bool = True, **source_keys: object) -> Settings:
        """The config of the DuckDB file `name`: the CRM (with `source_keys`) and the FX files, or (api False)
        the files alone."""
        sources = [{"kind": "files", "name": "fx", "path": "fx", "profile": "canonical"}]
        if api:
            sources.insert(0, {**self.crm.source(self.fake), "name": SOURCE, **source_keys})
        config = {"as_of": "2026-10-31", "go_live": "2025-01-01", "duckdb_path": f"{name}.duckdb",
                  "sources": sources, "finance": {"path": "finance_gl.csv", "accounts": ACCOUNTS}}
        path = self.root / f"{name}{'' if api else '_files'}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return load_settings(path)

    def sync(self, name: str, client_options: dict, **source_keys: object) -> tuple[dict[str, SyncResult],
                                                                                    RequestStats]:
        """Every stream of the CRM into `name`, as the raw assets sync them; each stream's result, and the
        client's request tally. Bounded: a sync still paging after SYNC_TIMEOUT is stopped and fails the test."""
        settings = self.settings(name, **source_keys)
        ((_, config),) = settings.api_sources()

        def run() -> tuple[dict[str, SyncResult], RequestStats]:
            connector = config.open(client_options)
            try:
                with connect(settings.duckdb_path, settings) as con:
                    results = {s: sync_stream(con, SOURCE, connector, s) for s in API_STREAMS[self.crm.kind]}
                return results, connector.stats
            finally:
                connector.close()

        worker = ThreadPoolExecutor(max_workers=1)
        try:
            return worker.submit(run).result(timeout=SYNC_TIMEOUT)
        except StillRunning:
            self.fake.stop()  # every further request fails, which ends a loop the guard missed
            pytest.fail(f"the sync was still paging after {SYNC_TIMEOUT:.0f} s")
        finally:
            worker.shutdown(wait=True)

    def staged(self, name: str) -> dict[str, list[tuple]]:
        """Staging built from what the syncs into `name` have landed (no new sync), as a snapshot."""
        with run_pipeline(self.settings(name, api=False)) as con:
            return snapshot(con)

    def clean(self, name: str) -> dict[str, list[tuple]]:
        """A sync with no fault injected (a full one into a new file, else from the stored cursors), staged."""
        results, _ = self.sync(name, FAST_CLIENT)
        assert errors(results) == dict.fromkeys(results)
        return self.staged(name)

    def assert_stopped_at_the_third_page(self, name: str) -> None:
        """raw.deals holds what was committed before the listing's third page, once each, and the cursor
        stored with it."""
        with connect(self.root / f"{name}.duckdb", read_only=True) as con:
            deals = [row[0] for row in con.execute("SELECT deal_id FROM raw.deals").fetchall()]
            cursor = read_cursor(con, SOURCE, self.crm.listing)
        assert sorted(deals) == sorted(self.crm.committed(self.fake))
        assert cursor is not None and self.crm.read_position(cursor) == self.crm.position(self.fake)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crm: Crm, fake: FakeServer) -> Workspace:
    monkeypatch.setenv("CRM_TOKEN", TOKEN)
    return Workspace(tmp_path, crm, fake)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """The CRM's staging rows (batch ids aside), what quarantine rejected of them, and their raw rows without
    load-time columns: a duplicate or a missing row changes one of them."""
    found = {f"staging.{t}": con.execute(f"SELECT * EXCLUDE (batch_id) FROM staging.{t}").fetchall()
             for t in CRM_TABLES}
    found |= {f"raw.{t}": con.execute(f"SELECT * EXCLUDE (_file, _row_number, _batch_id, _loaded_at) "
                                      f"FROM raw.{t}").fetchall() for t in CRM_TABLES}
    found["quarantine"] = con.execute("SELECT table_name, key, reason FROM quarantine.rejected_rows "
                                      "WHERE list_contains($tables, table_name)",
                                      {"tables": list(CRM_TABLES)}).fetchall()
    return {name: sorted(rows, key=repr) for name, rows in found.items()}


def errors(results: dict[str, SyncResult]) -> dict[str, str | None]:
    return {stream: result.error for stream, result in results.items()}


def assert_loop_stop(error: str | None) -> None:
    assert error is not None and error.startswith("ApiError: "), error
    assert error.endswith("(a paging loop); stopping with what was committed"), error
    assert TOKEN not in error


# -- 1. a page sent twice ----------------------------------------------------------------------
def test_a_page_sent_twice_is_survived(crm: Crm, fake: FakeServer, workspace: Workspace):
    """The listing's third request gets the second page again, with a fresh token that leads on to the third:
    the same records twice, upserted by key, so the tables equal a clean full sync's."""
    reference = workspace.clean("reference")
    fake.inject(Fault(kind="repeat", route=crm.page(fake, 3)))
    results, _ = workspace.sync("repeated", FAST_CLIENT)
    assert errors(results) == dict.fromkeys(results)
    assert not fake.faults and fake.requests_to("again-") == 1  # the fresh token was followed, once
    assert workspace.staged("repeated") == reference


class OnePage:
    """A connector whose one page holds deal 7 twice and a keyless deal, as a repeated vendor page can."""

    streams = ("deals",)
    stats = RequestStats()

    def read(self, stream: str, cursor: str | None) -> Iterator[Page]:
        deal = {"deal_id": "7", "is_closed": "false", "is_won": "false", "created_at": "2026-01-05T00:00:00Z"}
        rows = [{**deal, "stage": "first copy"}, {**deal, "deal_id": None, "stage": "no key"},
                {**deal, "stage": "later copy"}]
        yield Page({"deals": TableRows("deal_id", rows)}, cursor="2026-01-06T00:00:00Z")

    def close(self) -> None:
        pass


def test_a_record_twice_in_one_page_is_stored_once_as_its_later_copy(tmp_path: Path):
    with connect(tmp_path / "crm_roi.duckdb") as con:
        result = sync_stream(con, SOURCE, OnePage(), "deals")
        stored = con.execute("SELECT deal_id, stage FROM raw.deals ORDER BY _row_number").fetchall()
    assert stored == [("7", "later copy"), (None, "no key")]  # the keyless row is left for staging to reject
    assert result.new == {"deals": 1}


# -- 2. paging that goes round in a circle --------------------------------------------------------
LOOPS = {"a token pointing at its own page": 1, "a token pointing back at a page already read": 2}


@pytest.mark.parametrize("back", LOOPS.values(), ids=LOOPS.keys())
def test_paging_that_goes_round_in_a_circle_stops_cleanly(back: int, crm: Crm, fake: FakeServer,
                                                          workspace: Workspace):
    """The listing's third request is answered with an earlier page and that page's own next token, a token
    already followed, for as long as the client keeps asking (LOOP_TIMES). The guard stops at the first
    such token: the two pages committed stay with their cursor, other streams sync, and the next run (fault
    gone) resumes from that cursor to the tables of a clean full sync."""
    reference = workspace.clean("reference")
    fake.inject(Fault(kind="loop", route=crm.page(fake, 3), back=back, times=LOOP_TIMES))
    results, _ = workspace.sync("looped", FAST_CLIENT)
    error = results[crm.listing].error
    assert_loop_stop(error)
    assert "paging token" in str(error) and "again" in str(error)
    assert [r.error for s, r in results.items() if s != crm.listing] == [None]
    assert fake.faults[0].times == LOOP_TIMES - 1  # one looping answer was enough
    workspace.assert_stopped_at_the_third_page("looped")
    fake.faults.clear()
    assert workspace.clean("looped") == reference


SEARCH_LOOPS = {"stays at the last id read": (1, "again"), "goes back to an earlier id": (2, "(backwards)")}


@pytest.mark.parametrize(("back", "moved"), SEARCH_LOOPS.values(), ids=SEARCH_LOOPS.keys())
@pytest.mark.parametrize("crm", [CRMS["hubspot"]], ids=["hubspot"])
def test_a_hubspot_search_that_restarts_at_an_id_already_read_stops_cleanly(
        back: int, moved: str, crm: Crm, fake: FakeServer, workspace: Workspace, monkeypatch: pytest.MonkeyPatch):
    """Incremental HubSpot syncs page a search by hs_object_id > the last id read. A stale answer to the third
    page (the second or the first page again) gives a last id no higher than before: without the guard the
    same query would repeat forever. Search pages of 20 give six pages for 119 deals."""
    monkeypatch.setattr(hubspot_settings, "SEARCH_LIMIT", 20)
    reference = workspace.clean("reference")
    workspace.clean("searched")  # a full sync: the next one searches
    live = hubspot_live(fake)
    fake.inject(Fault(kind="loop", route=f"hs_object_id>{live[39]}", back=back, times=LOOP_TIMES))
    results, _ = workspace.sync("searched", FAST_CLIENT)
    error = results["deals"].error
    assert_loop_stop(error)
    assert "HubSpot /crm/v3/objects/deals/search: the API sent paging position" in str(error)
    assert moved in str(error) and results["companies"].error is None
    assert fake.faults[0].times == LOOP_TIMES - 1
    with connect(workspace.root / "searched.duckdb", read_only=True) as con:
        progress = json.loads(read_cursor(con, SOURCE, "deals"))
    assert (progress["phase"], progress["position"]) == ("live", str(live[39]))  # two search pages committed
    assert progress["since"] is not None
    fake.faults.clear()
    assert workspace.clean("searched") == reference


def test_the_paging_guard_names_the_listing_and_keeps_secrets_out():
    guard = PagingGuard("Pipedrive /api/v2/deals", Redactor([TOKEN]))
    guard.token("page-2")
    guard.token(f"page-3-{TOKEN}")
    with pytest.raises(ApiError) as stopped:
        guard.token(f"page-3-{TOKEN}")
    assert str(stopped.value) == ("Pipedrive /api/v2/deals: the API sent paging token 'page-3-***' again "
                                  "(a paging loop); stopping with what was committed")
    offsets = PagingGuard("Pipedrive /api/v1/deals/7/flow", str)
    offsets.position(0)
    offsets.position(500)
    with pytest.raises(ApiError, match=r"paging position 0 after 500 \(backwards\) \(a paging loop\)"):
        offsets.position(0)


# -- 3. a ten-minute outage ----------------------------------------------------------------------
def test_a_ten_minute_outage_stops_cleanly_with_the_default_retries(crm: Crm, fake: FakeServer,
                                                                   workspace: Workspace):
    """The default policy (6 attempts, backoff up to 60 s) gives up on each stream's first request of the
    outage within seconds of virtual time. The pages committed stay with their cursor; once the outage is
    over the next run completes to the tables of a clean full sync."""
    reference = workspace.clean("reference")
    clock = VirtualClock()
    fake.outage(OUTAGE_SECONDS, clock.now, route=crm.outage_from(fake))
    results, stats = workspace.sync("outage", {"clock": clock.now, "sleep": clock.sleep})
    streams = len(results)
    for error in errors(results).values():  # every stream: its first request of the outage, in one line
        assert error is not None and "gave up after 6 attempts: HTTP 503" in error and "nginx" in error, error
        assert len(error.splitlines()) == 1
    # Each stream: 6 attempts, so 5 retries whose full-jitter backoffs are at most 0.5 + 1 + 2 + 4 + 8 s.
    assert stats.retries == 5 * streams and stats.statuses[503] == 6 * streams
    assert 0 < stats.backoff_seconds <= 15.5 * streams and clock.now() < OUTAGE_SECONDS
    workspace.assert_stopped_at_the_third_page("outage")
    clock.sleep(OUTAGE_SECONDS)  # the outage is over
    assert workspace.clean("outage") == reference


def test_a_ten_minute_outage_is_survived_with_a_retry_budget_that_outlasts_it(crm: Crm, fake: FakeServer,
                                                                              workspace: Workspace):
    """With 40 attempts and backoff up to 120 s (set in the config), the request that meets the outage waits it
    out in one run."""
    reference = workspace.clean("reference")
    clock = VirtualClock()
    fake.outage(OUTAGE_SECONDS, clock.now, route=crm.outage_from(fake))
    results, stats = workspace.sync("outage", {"clock": clock.now, "sleep": clock.sleep},
                                    retry_attempts=40, retry_max_wait_seconds=120)
    assert errors(results) == dict.fromkeys(results)
    # One request met every 503 and retried each; its waits add up to the ten minutes.
    assert stats.retries == stats.statuses[503] < 40
    assert stats.backoff_seconds + stats.throttled_seconds >= OUTAGE_SECONDS
    assert workspace.staged("outage") == reference
