"""Who counts as a customer when accounts come from a live CRM, worked out by hand.

Salesforce and Pipedrive land every account or organization; staging keeps those that
are or were customers: flagged by the CRM (Salesforce's Account Type), carrying a start
date (the field `columns` maps to started_at), or named by a won deal of the same source.
Everything runs against the fake CRMs over real HTTP on loopback, with the real pipeline.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from connectors.fakes.pipedrive import FakePipedrive, PipedriveStore
from connectors.fakes.salesforce import FakeSalesforce
from pipelines import transform
from pipelines.config import ConfigError, load_settings
from tests.conftest import GL_COLUMNS, deal, gl, rows, run_pipeline, write_csv

ORG = Path(__file__).resolve().parent / "fixtures" / "salesforce_org"
SF_TOKEN = "00DFAKE!AQ4AQ.customers-5e1d"
PD_TOKEN = "pd_customers_0c4b7e_test_only"
UTC = dt.UTC

# tests/fixtures/salesforce_org, by name.
ERIC, SEINFELD = "0015500000Xyy06AAB", "0015500000Ygpq1AAB"
BLUE_COMPETITOR, BLUE_RESELLER = "001q000000wW9BeAAK", "001q000000wW9BZAA0"
RICK, TESTINS, TEST_1234 = "001q0000010PXTEAA4", "001q0000013WMSUAA4", "001q0000010Pe9xAAC"
ALLBOUND, TEST_123, BALTO = "001q0000010QZZ7AAO", "001q0000010PiFMAA0", "001q0000010kZLuAAM"
SEINFELD_WIN = "006q000000HddohAAB"


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_TOKEN", SF_TOKEN)
    monkeypatch.setenv("PD_TOKEN", PD_TOKEN)


def configure(folder: Path, source: dict) -> Path:
    """One CRM source and a ledger of one sales and marketing line: 3,000 USD on 2018-12-10."""
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "finance_gl.csv", GL_COLUMNS, [gl("G1", "2018-12-10", "6200", "3000.00")])
    config = {"as_of": "2019-01-31", "go_live": "2019-01-01", "baseline_months": 12, "sources": [source],
              "finance": {"path": "finance_gl.csv", "accounts": {"6200": "sales_marketing"}}}
    path = folder / "crm_roi.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def customers(con: duckdb.DuckDBPyConnection) -> dict[str, dt.datetime]:
    """staging.customers as customer_id -> started_at."""
    return dict(con.execute("SELECT customer_id, started_at FROM staging.customers").fetchall())


def customer_kpis(con: duckdb.DuckDBPyConnection, since: str) -> list[tuple]:
    return con.execute(
        "SELECT strftime(period_start, '%Y-%m'), customers_new, customers_active_start, cac FROM kpi.periodic "
        "WHERE period_start >= ?::DATE ORDER BY period_start", [since]).fetchall()


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=None)


# -- Salesforce --------------------------------------------------------------------------------------
def salesforce_org() -> FakeSalesforce:
    """The fake org holding tests/fixtures/salesforce_org as the REST API serves it."""
    fake = FakeSalesforce(multi_currency=False, access_token=SF_TOKEN)
    for stage, closed, won, probability in (("Prospecting", False, False, 10.0), ("Closed Won", True, True, 100.0),
                                            ("Closed Lost", True, False, 0.0)):
        fake.add_stage(stage, closed, won, probability)
    for account in _fixture("accounts.csv"):
        fake.create("Account", Id=account["Id"], Name=account["Name"], Type=account["Type"],
                    stamp=account["CreatedDate"])
    for opportunity in _fixture("opportunities.csv"):
        deleted = opportunity.pop("IsDeleted") == "true"
        amount = opportunity.pop("Amount")
        fake.create("Opportunity", Amount=float(amount) if amount else None, **opportunity)
        if deleted:
            fake.delete("Opportunity", opportunity["Id"])
    return fake


def _fixture(name: str) -> list[dict]:
    with (ORG / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def salesforce_source(fake: FakeSalesforce, **keys: object) -> dict:
    return {"kind": "salesforce", "token": "env:SF_TOKEN", "base_url": fake.base_url, "login_url": fake.base_url,
            **keys}


def test_salesforce_prospects_partners_and_competitors_are_not_customers(tmp_path):
    with salesforce_org().running() as fake:
        con = run_pipeline(load_settings(configure(tmp_path, salesforce_source(fake))))
    with con:
        assert con.execute("SELECT count(*) FROM raw.customers").fetchone()[0] == 10  # every account lands
        assert customers(con) == {
            SEINFELD: at("2018-12-19"),  # a Prospect that won "$1m deal" (closed 2018-12-19)
            RICK: at("2018-12-13"),  # Customer - Direct since 2018-02-01, but its first win is "lu test 3"
            TEST_1234: at("2018-12-18"),  # Customer - Channel; won "Test" on 2018-12-18 (one more is open)
            ALLBOUND: at("2018-09-03T10:00:00"),  # Customer - Channel, only a lost deal: from its creation
            TEST_123: at("2018-11-05T15:30:00"),  # Customer - Direct, no opportunity: from its creation
        }
        # Not customers, and not quarantined either: Eric's Test (Prospect, no opportunity), the Blue Test
        # Competitor (a lost deal) and Channel Partner / Reseller, Balto Dog (Partner), and Testins Opp
        # Close (Prospect): its "Testing Opp Close" win is deleted and "Chewbaca" closes before it was
        # created, so that deal is quarantined and counts nowhere.
        assert rows(con, "SELECT table_name, key, reason FROM quarantine.rejected_rows") == [
            {"table_name": "deals", "key": "006q000000HddueAAB", "reason": "closed_at before created_at"}]
        # New: 2018-09 allbound, 2018-11 Test 123, 2018-12 Rick, Test 1234, Seinfeld. CAC of 2018-12 is
        # 3,000 / 3 new customers (all ten accounts, counted from creation, would have given none in 2018-12).
        assert customer_kpis(con, "2018-08-01") == [
            ("2018-08", 0, 0, None), ("2018-09", 1, 0, 0.0), ("2018-10", 0, 1, None), ("2018-11", 1, 1, 0.0),
            ("2018-12", 3, 2, 1000.0), ("2019-01", 0, 5, None)]


def test_a_won_opportunity_makes_a_customer_though_its_account_did_not_change(tmp_path):
    with salesforce_org().running() as fake:
        renewal = fake.create("Opportunity", Name="Eric's first order", AccountId=ERIC, StageName="Prospecting",
                              CloseDate="2019-02-28", CreatedDate="2018-12-20T09:00:00.000+0000")
        config = configure(tmp_path / "incremental", salesforce_source(fake))
        run_pipeline(load_settings(config)).close()
        account = dict(fake.records["Account"][ERIC])
        fake.update("Opportunity", renewal, StageName="Closed Won", CloseDate="2019-01-15")
        fake.update("Account", BALTO, Type="Customer - Channel")  # a partner turned customer
        fake.delete("Opportunity", SEINFELD_WIN)  # Seinfeld's only win, deleted
        assert fake.records["Account"][ERIC] == account  # winning the deal left the account as it was
        with run_pipeline(load_settings(config)) as con:
            incremental = customers(con)
            kpis = customer_kpis(con, "2018-12-01")
        with run_pipeline(load_settings(configure(tmp_path / "full", salesforce_source(fake)))) as full:
            assert customers(full) == incremental
    assert incremental == {
        ERIC: at("2019-01-15"),  # a Prospect with a won opportunity now
        BALTO: at("2018-07-09T12:00:00"),  # Type Customer - Channel, no opportunity: from its creation
        RICK: at("2018-12-13"), TEST_1234: at("2018-12-18"), ALLBOUND: at("2018-09-03T10:00:00"),
        TEST_123: at("2018-11-05T15:30:00"),
    }  # and Seinfeld, a Prospect again without its win, is gone
    # Active at 2018-12-01: Balto (07-09), allbound (09-03), Test 123 (11-05); new in 2018-12: Rick and
    # Test 1234; in 2019-01: Eric's Test.
    assert kpis == [("2018-12", 2, 3, 1500.0), ("2019-01", 1, 5, 0.0)]


def test_customer_types_and_a_customer_since_field_decide_with_the_won_opportunities(tmp_path):
    with salesforce_org().running() as fake:
        fake.update("Account", RICK, Customer_Since__c="2017-06-01T00:00:00.000+0000")
        fake.update("Account", ERIC, Customer_Since__c="2018-08-01T00:00:00.000+0000")
        source = salesforce_source(fake, customer_types=["Customer - Direct"],
                                   columns={"started_at": "Customer_Since__c"})
        with run_pipeline(load_settings(configure(tmp_path, source))) as con:
            assert customers(con) == {
                RICK: at("2017-06-01"),  # the mapped field wins over its first won close
                ERIC: at("2018-08-01"),  # a Prospect whose customer-since field is filled
                SEINFELD: at("2018-12-19"), TEST_1234: at("2018-12-18"),  # won, whatever their Type
                TEST_123: at("2018-11-05T15:30:00"),  # Customer - Direct, from its creation
            }  # allbound, Customer - Channel with only a lost deal, is no customer under these types


def test_customer_types_must_name_values(tmp_path):
    source = {"kind": "salesforce", "token": "env:SF_TOKEN", "base_url": "https://x.my.salesforce.com",
              "customer_types": ["Customer - Direct", ""]}
    with pytest.raises(ConfigError, match=r"sources\.0\.customer_types\.1: String should have at least 1 character"):
        load_settings(configure(tmp_path, source))


# -- Pipedrive ---------------------------------------------------------------------------------------
def pipedrive_account() -> tuple[PipedriveStore, dict[str, int]]:
    """Organizations and their deals (Pipedrive has no customer flag); the ids by name."""
    store = PipedriveStore()
    sales = store.add_pipeline("Sales", ["Qualified", "Proposal"])
    ids: dict[str, int] = {}

    def org(name: str, added: str, *deals: tuple[str | None, str], **custom: object) -> None:
        ids[name] = store.add_org(name, add_time=dt.datetime.fromisoformat(added), **custom)
        for n, (status, when) in enumerate(deals):
            deal = store.add_deal(f"{name} {n}", org_id=ids[name], pipeline_id=sales,
                                  add_time=dt.datetime.fromisoformat(added) + dt.timedelta(days=1))
            ids[f"{name} {n}"] = deal
            if status is not None:
                store.close_deal(deal, won=status == "won", at=dt.datetime.fromisoformat(when))

    org("Acme", "2018-02-01T09:00:00Z", (None, ""))  # a prospect with an open deal
    org("Globex", "2018-03-01T09:00:00Z", ("lost", "2018-08-01T10:00:00Z"), ("won", "2018-12-02T10:00:00Z"),
        ("won", "2018-10-04T14:00:00Z"))
    org("Initech", "2018-04-01T09:00:00Z", ("lost", "2018-09-15T10:00:00Z"))
    org("Umbrella", "2018-05-01T09:00:00Z")
    org("Hooli", "2018-06-01T09:00:00Z", ("won", "2018-11-11T10:00:00Z"))
    org("Stark", "2018-07-01T09:00:00Z", ("won", "2018-11-20T09:30:00Z"))
    org("Wayne", "2018-08-01T09:00:00Z", customer_since=dt.date(2016, 5, 1))
    store.delete_deal(ids["Hooli 0"])
    store.archive_deal(ids["Stark 0"])  # archived, but it was won: it still counts
    return store, ids


def pipedrive_source(server: FakePipedrive, **keys: object) -> dict:
    return {"kind": "pipedrive", "token": "env:PD_TOKEN", "base_url": server.base_url, "requests_per_2s": 480,
            **keys}


def test_pipedrive_organizations_are_customers_from_their_first_won_deal(tmp_path):
    store, ids = pipedrive_account()
    server = FakePipedrive(store, PD_TOKEN, requests_per_2s=480)
    with server.running():
        con = run_pipeline(load_settings(configure(tmp_path / "plain", pipedrive_source(server))))
        mapped = run_pipeline(load_settings(configure(tmp_path / "mapped", pipedrive_source(
            server, columns={"started_at": "Customer since"}))))
    with con, mapped:
        assert con.execute("SELECT count(*) FROM raw.customers").fetchone()[0] == 7  # every organization lands
        # Globex: lost 08-01, won 10-04 and 12-02, so from 10-04; Stark: won 11-20 (archived since).
        # Not: Acme (an open deal), Initech (lost), Umbrella (no deal), Hooli (its win deleted), Wayne
        # (no deal, and its "Customer since" is read only when columns maps it).
        assert customers(con) == {str(ids["Globex"]): at("2018-10-04T14:00:00"),
                                  str(ids["Stark"]): at("2018-11-20T09:30:00")}
        assert customer_kpis(con, "2018-09-01") == [
            ("2018-09", 0, 0, None), ("2018-10", 1, 0, 0.0), ("2018-11", 1, 1, 0.0), ("2018-12", 0, 2, None),
            ("2019-01", 0, 2, None)]
        # With started_at mapped, Wayne counts from its customer-since date; the others have none.
        assert customers(mapped) == {str(ids["Globex"]): at("2018-10-04T14:00:00"),
                                     str(ids["Stark"]): at("2018-11-20T09:30:00"),
                                     str(ids["Wayne"]): at("2016-05-01")}
        assert con.execute("SELECT count(*) FROM quarantine.rejected_rows").fetchone()[0] == 0


def test_pipedrive_a_won_deal_makes_a_customer_of_an_unchanged_organization(tmp_path):
    store, ids = pipedrive_account()
    server = FakePipedrive(store, PD_TOKEN, requests_per_2s=480)
    with server.running():
        config = configure(tmp_path, pipedrive_source(server))
        run_pipeline(load_settings(config)).close()
        organization = dict(store.orgs[ids["Acme"]])
        store.close_deal(ids["Acme 0"], won=True, at=dt.datetime(2019, 1, 10, 16, 0, tzinfo=UTC))
        assert store.orgs[ids["Acme"]] == organization
        with run_pipeline(load_settings(config)) as con:
            assert customers(con) == {str(ids["Acme"]): at("2019-01-10T16:00:00"),
                                      str(ids["Globex"]): at("2018-10-04T14:00:00"),
                                      str(ids["Stark"]): at("2018-11-20T09:30:00")}


# -- an export that says who is a customer ---------------------------------------------------------
def test_an_export_with_is_customer_and_created_at_counts_like_a_crm_also_key_scoped(
        project, tmp_path, tmp_path_factory, monkeypatch):
    columns = ["customer_id", "name", "started_at", "churned_at", "mrr", "is_customer", "created_at"]
    con = project(
        deals=[deal("D1", "2024-03-01", "2024-05-20", won=True, account_id="A1"),
               deal("D2", "2024-03-01", "2024-06-02", won=False, account_id="A2")],
        files={"customers": (columns, [
            {"customer_id": "A1", "is_customer": "false", "created_at": "2024-01-10"},  # won D1: from 05-20
            {"customer_id": "A2", "is_customer": "false", "created_at": "2024-01-11"},  # lost D2 only: no
            {"customer_id": "A3", "is_customer": "true", "created_at": "2024-02-15"},  # flagged: from creation
            {"customer_id": "A4", "started_at": "2024-04-01"},  # no flag: a customer, as in any customers.csv
            {"customer_id": "A5", "is_customer": "maybe", "created_at": "2024-01-12"},
        ])})
    assert customers(con) == {"A1": at("2024-05-20"), "A3": at("2024-02-15"), "A4": at("2024-04-01")}
    assert rows(con, "SELECT key, reason FROM quarantine.rejected_rows WHERE table_name = 'customers'") == [
        {"key": "A5", "reason": "unparseable is_customer"}]
    con.close()
    # A delta: A2 is flagged a customer now, A3 no longer (and has no won deal). Deals did not change, so
    # only the two keys are rebuilt, and the rows are those of a build from scratch.
    write_csv(tmp_path / "exports" / "customers_delta.csv", columns, [
        {"customer_id": "A2", "is_customer": "true", "created_at": "2024-01-11"},
        {"customer_id": "A3", "is_customer": "false", "created_at": "2024-02-15"}])
    scratch_folder = tmp_path_factory.mktemp("scratch") / "project"
    shutil.copytree(tmp_path, scratch_folder, ignore=shutil.ignore_patterns("*.duckdb*", "*.log"))
    scoped = []
    real = transform._rebuild_affected_keys
    monkeypatch.setattr(transform, "_rebuild_affected_keys",
                        lambda con, spec, after: scoped.append(spec.short_name) or real(con, spec, after))
    with run_pipeline(load_settings(tmp_path / "crm_roi.yaml")) as con:
        incremental = customers(con)
    assert scoped == ["customers"]
    with run_pipeline(load_settings(scratch_folder / "crm_roi.yaml")) as scratch:
        assert customers(scratch) == incremental
    assert incremental == {"A1": at("2024-05-20"), "A2": at("2024-01-11"), "A4": at("2024-04-01")}
