"""load_settings: a mistake in crm_roi.yaml is one line that names the key, before any data moves.

Keys are named the way the user writes them in the file: `sources.0.path`, not
pydantic's internal location (which inserts the union tag: `sources.0.files.path`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, load_settings
from tests.conftest import ACCOUNTS

FINANCE_HEADER = "entry_id,posted_on,account,description,vendor,amount,currency\n"


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A folder with an export folder and a GL file, as a config file beside them expects."""
    (tmp_path / "exports").mkdir()
    (tmp_path / "finance_gl.csv").write_text(FINANCE_HEADER, encoding="utf-8")
    return tmp_path


def base_config() -> dict:
    return {
        "as_of": "2025-06-30",
        "go_live": "2025-01-01",
        "sources": [{"kind": "files", "path": "exports", "profile": "hubspot_export"}],
        "finance": {"path": "finance_gl.csv", "accounts": dict(ACCOUNTS)},
    }


def write_config(folder: Path, config: dict, name: str = "crm_roi.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    message = str(error.value)
    assert "\n" not in message, message
    return message


def with_source(**changes: object) -> dict:
    config = base_config()
    config["sources"] = [{**config["sources"][0], **changes}]
    return config


def without(key: str) -> dict:
    return {k: v for k, v in base_config().items() if k != key}


def test_valid_config_loads(project_dir):
    settings = load_settings(write_config(project_dir, base_config()))
    assert settings.go_live == dt.date(2025, 1, 1)
    assert settings.sources[0].profile == "hubspot_export"
    assert settings.finance.accounts["6100"] == "crm_software"


@pytest.mark.parametrize(
    ("config", "key", "words"),
    [
        pytest.param({**base_config(), "colour": "blue"}, "colour", ["unknown key"],
                     id="unknown-top-level-key"),
        pytest.param(with_source(profle="custom"), "sources.0.profle", ["unknown key"],
                     id="unknown-key-in-source"),
        pytest.param({**base_config(), "go_live": "2025-13-01"}, "go_live", ["date"],
                     id="bad-go-live-month"),
        pytest.param({**base_config(), "go_live": "next tuesday"}, "go_live", ["date"],
                     id="go-live-not-a-date"),
        pytest.param({**base_config(), "finance": {"path": "missing_gl.csv", "accounts": ACCOUNTS}},
                     "finance.path", ["missing_gl.csv", "does not exist"],
                     id="missing-finance-file"),
        pytest.param(with_source(path="no_such_folder"), "sources.0.path",
                     ["no_such_folder", "does not exist"], id="missing-source-folder"),
        pytest.param({**base_config(),
                      "finance": {"path": "finance_gl.csv", "accounts": {"6100": "crm_sofware"}}},
                     "finance.accounts", ["6100", "crm_sofware", "crm_software"],
                     id="unknown-account-category"),
        pytest.param({**base_config(), "period": "fortnight"}, "period", ["month", "quarter"],
                     id="bad-period"),
        pytest.param(with_source(profile="zoho_export"), "sources.0.profile",
                     ["hubspot_export", "custom"], id="unknown-profile"),
        pytest.param(with_source(files={"dealz": "x.csv"}), "sources.0.files",
                     ["dealz", "deals"], id="unknown-stream-in-files-map"),
        pytest.param(with_source(timezone="Europe/Berln"), "sources.0.timezone",
                     ["Europe/Berln"], id="unknown-timezone"),
        pytest.param({**base_config(), "owners": ["data team"]}, "owners",
                     ["'data team'", "team:NAME", "email"], id="owner-neither-team-nor-email"),
        pytest.param(without("go_live"), "go_live", ["missing"], id="missing-go-live"),
        pytest.param(without("sources"), "sources", ["missing"], id="missing-sources"),
        pytest.param(without("finance"), "finance", ["missing"], id="missing-finance"),
    ],
)
def test_config_error_is_one_line_naming_the_key(project_dir, config, key, words):
    path = write_config(project_dir, config)
    message = config_error(path)
    assert message.startswith(f"{path}: {key}: "), message
    for word in words:
        assert word in message, message


def test_a_full_sync_schedule_without_a_live_crm_is_an_error_naming_the_key(project_dir, monkeypatch):
    path = write_config(project_dir, {**base_config(), "full_sync_cron": "0 4 * * 0"})
    assert config_error(path) == (f"{path}: full_sync_cron is set but no source is a live CRM (hubspot, "
                                  "salesforce, pipedrive): export files are reloaded with `crm-roi run --full-reload`")
    monkeypatch.setenv("HUBSPOT_TOKEN", "pat-test")
    with_crm = {**base_config(), "full_sync_cron": "0 4 * * 0",
                "sources": [{"kind": "hubspot", "token": "env:HUBSPOT_TOKEN"}]}
    assert load_settings(write_config(project_dir, with_crm)).full_sync_cron == "0 4 * * 0"


def test_missing_config_file_says_how_to_point_at_one(tmp_path):
    message = config_error(tmp_path / "nowhere.yaml")
    assert "nowhere.yaml" in message
    assert "CRM_ROI_CONFIG" in message


def test_crm_roi_duckdb_overrides_duckdb_path(project_dir, tmp_path_factory, monkeypatch):
    target = tmp_path_factory.mktemp("elsewhere") / "override.duckdb"
    monkeypatch.setenv("CRM_ROI_DUCKDB", str(target))
    path = write_config(project_dir, {**base_config(), "duckdb_path": "in_file.duckdb"})
    assert load_settings(path).duckdb_path == target


def test_crm_roi_config_picks_the_file(project_dir, tmp_path_factory, monkeypatch):
    path = write_config(project_dir, {**base_config(), "go_live": "2024-07-01"}, "team.yaml")
    # A crm_roi.yaml in the working directory must not win over the variable.
    cwd = tmp_path_factory.mktemp("cwd")
    write_config(cwd, {**base_config(), "go_live": "2030-01-01"})
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("CRM_ROI_CONFIG", str(path))
    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)

    settings = load_settings()
    assert settings.go_live == dt.date(2024, 7, 1)


def test_relative_paths_resolve_against_the_config_files_folder(
    project_dir, tmp_path_factory, monkeypatch
):
    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("somewhere_else"))
    (project_dir / "data" / "exports").mkdir(parents=True)
    (project_dir / "data" / "finance_gl.csv").write_text(FINANCE_HEADER, encoding="utf-8")
    config = {
        **base_config(),
        "sources": [{"kind": "files", "path": "data/exports"}],
        "finance": {"path": "data/finance_gl.csv", "accounts": ACCOUNTS},
    }

    settings = load_settings(write_config(project_dir, config))
    root = project_dir.resolve()
    assert settings.sources[0].path == root / "data" / "exports"
    assert settings.finance.path == root / "data" / "finance_gl.csv"
    assert settings.duckdb_path == root / "crm_roi.duckdb"

    settings = load_settings(write_config(project_dir, {**config, "duckdb_path": "db/x.duckdb"}))
    assert settings.duckdb_path == root / "db" / "x.duckdb"


# Paths are confined to data_roots (default: the config file's folder).


@pytest.mark.parametrize(
    ("make_config", "key"),
    [
        pytest.param(lambda outside: with_source(path=str(outside)), "sources.0.path", id="source-folder"),
        pytest.param(lambda outside: with_source(path="../" + outside.name), "sources.0.path", id="dot-dot"),
        pytest.param(lambda outside: {**base_config(), "finance": {"path": str(outside / "gl.csv"),
                                                                   "accounts": ACCOUNTS}},
                     "finance.path", id="finance-file"),
        pytest.param(lambda outside: {**base_config(), "duckdb_path": str(outside / "x.duckdb")},
                     "duckdb_path", id="duckdb-file"),
    ],
)
def test_a_path_outside_the_data_roots_is_refused(project_dir, tmp_path_factory, monkeypatch, make_config, key):
    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)
    outside = tmp_path_factory.mktemp("outside")
    (outside / "gl.csv").write_text(FINANCE_HEADER, encoding="utf-8")
    project = project_dir / "project"
    project.mkdir()
    (project / "exports").mkdir()
    (project / "finance_gl.csv").write_text(FINANCE_HEADER, encoding="utf-8")
    # '../outside' from the project folder: make it exist there too, so only confinement can refuse it.
    (project_dir / outside.name).mkdir()

    path = write_config(project, make_config(outside))
    message = config_error(path)
    assert message.startswith(f"{path}: {key}: "), message
    assert "outside data_roots" in message and str(project.resolve()) in message, message


def test_a_symlink_out_of_the_root_is_refused_but_data_roots_can_admit_it(project_dir, tmp_path_factory, monkeypatch):
    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)
    shared = tmp_path_factory.mktemp("shared_finance")
    (shared / "gl.csv").write_text(FINANCE_HEADER, encoding="utf-8")
    (project_dir / "finance_link.csv").symlink_to(shared / "gl.csv")
    config = {**base_config(), "finance": {"path": "finance_link.csv", "accounts": ACCOUNTS}}

    assert "finance.path: " in config_error(write_config(project_dir, config))

    settings = load_settings(write_config(project_dir, {**config, "data_roots": [".", str(shared)]}))
    assert settings.finance.path.resolve() == (shared / "gl.csv").resolve()


@pytest.mark.parametrize("pattern", ["/etc/passwd", "../*.csv", "sub/../../deals.csv"])
def test_a_files_pattern_cannot_leave_the_source_folder(project_dir, pattern):
    message = config_error(write_config(project_dir, with_source(files={"deals": pattern})))
    assert "sources.0.files" in message and "inside the source folder" in message, message


def test_a_symlinked_export_pointing_outside_the_roots_fails_the_load(project_dir, tmp_path_factory, monkeypatch):
    from connectors.files.reader import ExportFileError
    from pipelines.raw_files import stream_inputs

    monkeypatch.delenv("CRM_ROI_DUCKDB", raising=False)
    secret = tmp_path_factory.mktemp("private") / "deals.csv"
    secret.write_text("deal_id\n1\n", encoding="utf-8")
    (project_dir / "exports" / "deals_2025.csv").symlink_to(secret)
    settings = load_settings(write_config(project_dir, base_config()))

    with pytest.raises(ExportFileError, match=r"deals file: .* is outside data_roots"):
        stream_inputs(settings, "deals")


@pytest.mark.parametrize(
    ("source", "key"),
    [
        ({"kind": "hubspot", "token": "env:CFG_TOKEN", "base_url": "http://api.hubapi.com"}, "sources.0.base_url"),
        ({"kind": "pipedrive", "token": "env:CFG_TOKEN", "base_url": "http://10.0.0.5"}, "sources.0.base_url"),
        ({"kind": "salesforce", "client_id": "env:CFG_TOKEN", "client_secret": "env:CFG_TOKEN",
          "refresh_token": "env:CFG_TOKEN", "login_url": "http://login.salesforce.com"}, "sources.0.login_url"),
    ],
)
def test_tls_cannot_be_switched_off_by_an_http_url(project_dir, monkeypatch, source, key):
    monkeypatch.setenv("CFG_TOKEN", "secret-value")
    message = config_error(write_config(project_dir, {**base_config(), "sources": [source]}))
    assert message.startswith(f"{project_dir / 'crm_roi.yaml'}: {key}: "), message
    assert "must be an https:// URL" in message and "secret-value" not in message


def test_plain_http_is_accepted_only_for_this_machine(project_dir, monkeypatch):
    monkeypatch.setenv("CFG_TOKEN", "secret-value")
    config = {**base_config(), "sources": [{"kind": "hubspot", "token": "env:CFG_TOKEN",
                                            "base_url": "http://127.0.0.1:8080/"}]}
    assert load_settings(write_config(project_dir, config)).sources[0].base_url == "http://127.0.0.1:8080"


def test_owners_reach_every_asset(project_dir):
    from pipelines.definitions import build_defs

    settings = load_settings(write_config(project_dir, {**base_config(),
                                                        "owners": ["team:revops", "ana@example.com"]}))
    graph = build_defs(settings).resolve_asset_graph()
    owners = {tuple(graph.get(key).owners) for key in graph.get_all_asset_keys()}
    assert owners == {("team:revops", "ana@example.com")}
