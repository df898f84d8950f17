"""Progress of long work: plain lines off a terminal, a bar in one, nothing for short work, and the
one-line error of `crm-roi run` kept."""

from __future__ import annotations

import os
import pty
import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from connectors.fakes.hubspot import FakeHubSpot
from pipelines.api_sync import sync_stream
from pipelines.progress import progress, watch_statement
from pipelines.warehouse import connect
from tests.conftest import CRM_ROI, crm_roi
from tests.test_hubspot_connector import TOKEN, build_portal, connector

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def every_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain lines, one per update (no interval), as a log would get them from long work."""
    monkeypatch.setenv("CRM_ROI_PROGRESS", "lines")
    monkeypatch.setenv("CRM_ROI_PROGRESS_EVERY", "0")


def test_lines_say_done_of_total_and_time_left(every_update, capsys: pytest.CaptureFixture):
    with progress("raw/deals (files_1)", total=4_000_000, unit="bytes") as tracker:
        tracker.update(1_000_000, detail="file 1 of 2: deals_1.csv")
        tracker.advance(3_000_000)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("progress  raw/deals (files_1): 1.0 MB of 4.0 MB (25%), about ")
    assert "s left, file 1 of 2: deals_1.csv" in lines[0]
    assert lines[1].startswith("progress  raw/deals (files_1): 4.0 MB of 4.0 MB (100%), file 1 of 2")
    assert lines[-1].endswith(", done")


def test_short_work_prints_nothing_off_a_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    monkeypatch.delenv("CRM_ROI_PROGRESS", raising=False)
    monkeypatch.delenv("CRM_ROI_PROGRESS_EVERY", raising=False)
    with progress("raw/deals", total=10, unit="rows") as tracker:
        for _ in range(10):
            tracker.advance()
    assert capsys.readouterr() == ("", "")


def test_a_long_statement_reports_its_own_progress(every_update, capsys: pytest.CaptureFixture):
    """One INSERT of a large file is one statement: DuckDB's own progress moves the line while it runs."""
    with duckdb.connect() as con, progress("landing", total=1000, unit="bytes") as tracker:
        with watch_statement(con, tracker, start=0, size=1000):
            con.execute("CREATE TABLE t AS SELECT range AS n, md5(range::VARCHAR) AS h FROM range(60000000)")
        tracker.update(1000)
    shares = [int(m) for m in re.findall(r"\((\d+)%\)", capsys.readouterr().out)]
    assert any(0 < share < 100 for share in shares), shares


def test_a_failing_statement_raises_its_own_error(every_update):
    """A file DuckDB cannot read fails with its own message, not with the progress setting's reset."""
    with duckdb.connect() as con, progress("landing", total=10, unit="bytes") as tracker:
        con.execute("BEGIN TRANSACTION")
        with pytest.raises(duckdb.CatalogException, match="no_such_table"), watch_statement(con, tracker, 0, 10):
            con.execute("INSERT INTO no_such_table SELECT 1")


def test_an_api_sync_shows_records_pages_requests_and_waits(every_update, capsys: pytest.CaptureFixture,
                                                             tmp_path: Path):
    portal = FakeHubSpot(TOKEN)
    build_portal(portal)
    with portal.running():
        source = connector(portal)
        with connect(tmp_path / "sync.duckdb") as con:
            result = sync_stream(con, "hubspot", source, "deals")
            stored = con.execute("SELECT count(*) FROM raw.deals").fetchone()[0]
    lines = capsys.readouterr().out.splitlines()
    assert result.error is None and result.pages > 1
    last = lines[-1]
    assert last.startswith(f"progress  hubspot/deals: {stored:,} records, {result.pages:,} pages, "
                           f"{source.stats.requests:,} requests, {source.stats.retries:,} retries, ")
    assert "s waiting on rate limits and backoff" in last and last.endswith(", done")
    assert len(lines) == result.pages + 1  # one line per page, then the closing one


def test_a_failed_run_keeps_its_one_line_error_with_progress_on(tmp_path: Path):
    shutil.copytree(REPO / "data" / "sample", tmp_path / "exports")
    deals = tmp_path / "exports" / "deals.csv"
    deals.write_text(deals.read_text().replace("created_at", "create_date", 1))
    env = {**os.environ, "CRM_ROI_PROGRESS": "lines", "CRM_ROI_PROGRESS_EVERY": "0"}
    done = crm_roi("run", "--config", "exports/crm_roi.yaml", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "deals.csv" in done.stderr
    assert "progress  raw/" in done.stdout  # progress went to stdout, the error alone to stderr


def test_a_bad_progress_setting_is_one_line(tmp_path: Path):
    env = {**os.environ, "CRM_ROI_PROGRESS": "loud"}
    done = crm_roi("demo", "--db", "d.duckdb", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: CRM_ROI_PROGRESS='loud': expected one of auto, bar, lines, off")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_in_a_terminal_a_bar_is_drawn_and_erased(tmp_path: Path):
    """`crm-roi demo` in a pseudo-terminal, as a person runs it: a bar while loading, then the summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_ROI_PROGRESS")}
    env |= {"TERM": "xterm-256color", "COLUMNS": "120"}
    leader, follower = pty.openpty()
    process = subprocess.Popen([CRM_ROI, "demo", "--db", "d.duckdb"], cwd=tmp_path, env=env,
                               stdin=follower, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(timeout=300) == 0
    os.close(leader)
    text = screen.decode("utf-8", "replace")
    assert "raw/deals (files_1)" in text and "━" in text  # the bar, drawn with rich
    assert "\x1b[2K" in text  # and erased: rich clears its lines when the work ends
    assert "ROI              2.89x (289.3 %)" in text
    assert "progress  " not in text  # no plain lines in a terminal
