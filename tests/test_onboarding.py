"""Bringing your own export: `crm-roi init`, `crm-roi validate`, then `crm-roi run`, as real processes.

tests/fixtures/onboarding/zenith/ is a folder of exports from a CRM crm-roi has no
profile for (semicolon-delimited, day-first dates, its own headers, two broken rows,
a ledger and an unrelated contacts file); salesforce_synced/ is a real Salesforce
Opportunity table as a connector syncs it (fivetran/dbt_salesforce seed). Every
expected guess and number below is read off those files by hand.
"""

from __future__ import annotations

import datetime as dt
import shutil
from importlib.metadata import version
from pathlib import Path

import duckdb
import pytest
import yaml

from tests.conftest import crm_roi, write_config

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
ZENITH_COLUMNS = {
    "deal_id": "Opportunity Ref", "deal_name": "Opportunity Title", "account_id": "Client",
    "owner_id": "Account Manager", "stage": "Sales Stage", "amount": "Deal Value", "created_at": "Opened On",
    "closed_at": "Closing Date",
}
LEDGER_COLUMNS = {
    "entry_id": "Journal No", "posted_on": "Posting Date", "account": "Nominal Code", "description": "Narrative",
    "vendor": "Supplier", "amount": "Net Amount",
}


def files_under(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time: what 'nothing written' compares."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def zenith(tmp_path: Path) -> Path:
    shutil.copytree(FIXTURES / "onboarding" / "zenith", tmp_path / "exports")
    return tmp_path


@pytest.mark.slow
def test_init_on_an_unfamiliar_folder_writes_a_config_that_validates_and_runs(zenith: Path):
    started = crm_roi("init", "exports", cwd=zenith)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("wrote exports/crm_roi.yaml")
    text = (zenith / "exports" / "crm_roi.yaml").read_text(encoding="utf-8")
    config = yaml.safe_load(text)
    source = config["sources"][0]
    assert source["profile"] == "custom"
    assert source["files"] == {"deals": "Zenith_Opportunities_2025.csv"}
    assert source["columns"] == ZENITH_COLUMNS
    # 'Closing Date' holds 13/09/2024 and 'Opened On' 15/01/2024: day first.
    assert source["date_format"] == "%d/%m/%Y"
    assert (source["won_stages"], source["lost_stages"]) == (["Closed - Won"], ["Closed - Lost"])
    assert config["finance"]["columns"] == LEDGER_COLUMNS
    assert config["finance"]["date_format"] == "%d/%m/%Y"
    # Office rent (7000) is left out, commented, for the user to decide.
    assert config["finance"]["accounts"] == {"6100": "crm_software", "6110": "crm_implementation",
                                             "6120": "crm_training", "6200": "sales_marketing"}
    # The first deal opened 15/01/2024: the placeholder go-live is 12 months later.
    assert config["go_live"] == dt.date(2025, 1, 1)
    assert '# guessed from "Closing Date"' in text
    assert '# guessed from "Opened On", close to "Opened"' in text
    assert "# not read: contacts.csv" in text
    assert '# stage values in Zenith_Opportunities_2025.csv "Sales Stage": "Closed - Won" (9)' in text
    go_live_line = next(line for line in text.splitlines() if line.startswith("go_live:"))
    assert "TODO" in go_live_line

    before = files_under(zenith)
    checked = crm_roi("validate", "--config", "exports/crm_roi.yaml", cwd=zenith)
    assert checked.returncode == 0, checked.stdout
    assert files_under(zenith) == before
    # ZN-1013's value is 'TBC' (line 14); ZN-1014 has no opened date (line 15).
    assert ("deals exports/Zenith_Opportunities_2025.csv: 14 rows read, 2 would be quarantined: "
            "missing created_at (1, line 15); unparseable amount (1, line 14)") in checked.stdout
    assert "Opened On day first (from the values)" in checked.stdout

    ran = crm_roi("run", "--config", "exports/crm_roi.yaml", cwd=zenith)
    assert ran.returncode == 0, ran.stderr
    assert "deals loaded     12; quarantined rows: deals 2" in ran.stdout
    with duckdb.connect(str(zenith / "exports" / "crm_roi.published.duckdb"), read_only=True) as con:
        dates = {deal: (created, closed) for deal, created, closed in con.execute(
            "SELECT deal_id, created_at, closed_at FROM staging.deals").fetchall()}
        rejected = con.execute("SELECT key, reason FROM quarantine.rejected_rows ORDER BY key").fetchall()
        crm_cost, sales_marketing = con.execute(
            "SELECT sum(crm_cost), sum(sales_marketing_spend) FROM kpi.periodic").fetchone()
    assert len(dates) == 12
    # Day first: 01/08/2024 is 1 August, 05/04/2024 is 5 April.
    assert dates["ZN-1006"] == (dt.datetime(2024, 8, 1), dt.datetime(2024, 9, 13))
    assert dates["ZN-1003"] == (dt.datetime(2024, 3, 22), dt.datetime(2024, 4, 5))
    assert rejected == [("ZN-1013", "unparseable amount"), ("ZN-1014", "missing created_at")]
    # CRM costs: implementation 18,000 + licence 9,600 + training 1,200; sales and marketing: 3,000 + 1,500 + 1,700.
    assert crm_cost == pytest.approx(28_800)
    assert sales_marketing == pytest.approx(6_200)


def test_init_never_overwrites_a_config_unless_forced(zenith: Path):
    existing = zenith / "exports" / "crm_roi.yaml"
    existing.write_text("go_live: 2020-01-01\n", encoding="utf-8")
    refused = crm_roi("init", "exports", cwd=zenith)
    assert refused.returncode == 1
    assert refused.stderr == ("error: exports/crm_roi.yaml already exists; pass --force to overwrite it, "
                              "or --out FILE\n")
    assert existing.read_text(encoding="utf-8") == "go_live: 2020-01-01\n"
    forced = crm_roi("init", "exports", "--force", cwd=zenith)
    assert forced.returncode == 0, forced.stderr
    assert yaml.safe_load(existing.read_text(encoding="utf-8"))["sources"][0]["columns"] == ZENITH_COLUMNS


def test_validate_fails_where_the_run_would_fail_its_rejected_share_check(zenith: Path):
    # 2 of Zenith's 14 deals are quarantined: 14.3%, within the default 20% but not within 10%.
    assert crm_roi("init", "exports", cwd=zenith).returncode == 0
    config = zenith / "exports" / "crm_roi.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "max_rejected_share: 0.1\n", encoding="utf-8")
    checked = crm_roi("validate", "--config", "exports/crm_roi.yaml", cwd=zenith)
    assert checked.returncode == 1
    assert ("error  staging.deals: 14.3% of the 14 rows source files_1 landed were quarantined (max_rejected_share "
            "0.1); top reasons: missing created_at (1), unparseable amount (1)") in checked.stdout.splitlines()


def test_init_out_of_the_folder_writes_paths_and_roots_that_resolve(zenith: Path):
    done = crm_roi("init", "exports", "--out", "config/team.yaml", cwd=zenith)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((zenith / "config" / "team.yaml").read_text(encoding="utf-8"))
    assert config["sources"][0]["path"] == "../exports"
    assert config["finance"]["path"] == "../exports/ledger_2025.csv"
    assert config["data_roots"] == [".", "../exports"]
    checked = crm_roi("validate", "--config", "config/team.yaml", cwd=zenith)
    assert checked.returncode == 0, checked.stdout


def test_init_recognises_a_real_salesforce_opportunity_table(tmp_path: Path):
    # The seed's snake_case headers: id, name, type, stage_name, created_date, close_date; amount,
    # is_closed, is_won and is_deleted are canonical names already, so they need no map.
    shutil.copytree(FIXTURES / "onboarding" / "salesforce_synced", tmp_path / "exports")
    done = crm_roi("init", "exports", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((tmp_path / "exports" / "crm_roi.yaml").read_text(encoding="utf-8"))
    assert config["sources"][0]["files"] == {"deals": "sf_opportunity_data.csv"}
    assert config["sources"][0]["columns"] == {
        "deal_id": "id", "deal_name": "name", "pipeline": "type", "stage": "stage_name",
        "created_at": "created_date", "closed_at": "close_date"}
    # No ledger in the folder: the config says so, and validate stops on it with one line.
    assert "TODO path: \"TODO.csv\"" in done.stdout
    checked = crm_roi("validate", "--config", "exports/crm_roi.yaml", cwd=tmp_path)
    assert checked.returncode == 1
    assert checked.stdout.splitlines()[0] == (
        "error  exports/crm_roi.yaml: finance.path: file "
        f"'{(tmp_path / 'exports' / 'TODO.csv').resolve()}' does not exist")


def test_init_on_canonical_exports_needs_no_map_and_keeps_iso_dates(tmp_path: Path):
    # The demo exports: canonical headers, ISO dates. finance_gl.csv holds one '31/02/2025' among 363
    # ISO dates: a bad row for staging to quarantine, not a reason to read the ledger day first.
    shutil.copytree(REPO / "data" / "sample", tmp_path / "exports")
    (tmp_path / "exports" / "crm_roi.yaml").unlink()
    done = crm_roi("init", "exports", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((tmp_path / "exports" / "crm_roi.yaml").read_text(encoding="utf-8"))
    source = config["sources"][0]
    assert source["profile"] == "canonical"
    assert "columns" not in source and "date_format" not in source
    assert source["files"] == {s: f"{s}.csv" for s in ("deals", "deal_stage_history", "customers", "fx_rates",
                                                        "csat", "crm_usage")}
    assert "date_format" not in config["finance"]
    assert config["base_currency"] == "USD"
    # From the descriptions: 6100 'CRM subscription', 6110 'CRM implementation', 6120 'CRM end-user
    # training', 6130 'CRM premium support', 6200 'Paid search'; 6140 (tablets) and 6300 name no CRM.
    assert config["finance"]["accounts"] == {"6100": "crm_software", "6110": "crm_implementation",
                                             "6120": "crm_training", "6130": "crm_support",
                                             "6200": "sales_marketing"}


def test_init_recognises_a_hubspot_export_by_its_headers(tmp_path: Path):
    shutil.copytree(FIXTURES / "exports" / "hubspot_export", tmp_path / "exports")
    (tmp_path / "exports" / "gl.csv").write_text("entry_id,posted_on,account,amount\nG1,2020-01-10,6100,5\n",
                                                encoding="utf-8")
    done = crm_roi("init", "exports", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((tmp_path / "exports" / "crm_roi.yaml").read_text(encoding="utf-8"))
    assert config["sources"][0]["profile"] == "hubspot_export"
    assert "columns" not in config["sources"][0]
    # The profile knows 'Closed Won' and 'Closed Lost': no stage lists to fill.
    assert "won_stages" not in config["sources"][0]


def test_init_on_a_folder_without_deals_is_one_line(tmp_path: Path):
    (tmp_path / "exports").mkdir()
    (tmp_path / "exports" / "contacts.csv").write_text("Email,Phone\na@b.example,1\n", encoding="utf-8")
    done = crm_roi("init", "exports", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == ("error: exports: no export here looks like deals (an id, created and close dates, an "
                           "amount, a stage); found: contacts.csv (Email, Phone)\n")
    assert not (tmp_path / "exports" / "crm_roi.yaml").exists()


def ambiguous_dates(tmp_path: Path) -> None:
    """A custom export whose every date reads either way, and a config without date_format."""
    shutil.copytree(FIXTURES / "dates" / "ambiguous", tmp_path / "exports")
    (tmp_path / "gl.csv").write_text("entry_id,posted_on,account,amount\nG1,2025-01-10,6100,500\n", encoding="utf-8")
    config = {"go_live": "2025-01-01", "finance": {"path": "gl.csv", "accounts": {"6100": "crm_software"}},
              "sources": [{"kind": "files", "path": "exports", "profile": "custom", "won_stages": ["Won"],
                           "files": {"deals": "opportunities.csv"},
                           "columns": {"deal_id": "deal_ref", "stage": "status", "amount": "value",
                                       "created_at": "opened", "closed_at": "closed"}}]}
    write_config(tmp_path, config)


AMBIGUOUS = ("column 'opened' (deals.created_at): every date reads either way (e.g. '02/01/2025'); set "
             "sources.0.date_format: '%d/%m/%Y' (day first) or '%m/%d/%Y' (month first), or sources.0.dayfirst: "
             "true or false")


def test_validate_reports_a_date_error_exits_1_and_touches_no_duckdb_file(tmp_path: Path):
    ambiguous_dates(tmp_path)
    duckdb.connect(str(tmp_path / "crm_roi.duckdb")).close()  # a warehouse from an earlier run
    before = files_under(tmp_path)
    done = crm_roi("validate", cwd=tmp_path)
    assert done.returncode == 1
    assert files_under(tmp_path) == before
    assert f"error  deals exports/opportunities.csv: {AMBIGUOUS}" in done.stdout.splitlines()
    assert done.stdout.splitlines()[-1] == "1 error(s): fix them and validate again"


@pytest.mark.slow
def test_run_on_ambiguous_dates_stops_with_one_line(tmp_path: Path):
    ambiguous_dates(tmp_path)
    done = crm_roi("run", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"error: opportunities.csv: {AMBIGUOUS}"), line


def test_version_is_the_package_version(tmp_path: Path):
    done = crm_roi("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout == f"crm-roi {version('crm-roi')}\n"


def test_init_reads_a_pipeline_stage_header_as_the_stage_and_a_pipeline_header_as_the_pipeline():
    from pipelines.starter_config import guess_columns

    guesses = guess_columns("deals", ("Opportunity Ref", "Pipeline", "Pipeline Stage", "Deal Value"))
    assert {col: g.header for col, g in guesses.items()} == {
        "deal_id": "Opportunity Ref", "pipeline": "Pipeline", "stage": "Pipeline Stage", "amount": "Deal Value"}
