"""Looked at as a person would: the Dagster UI and the ROI report in headless Chromium.

Debian's chromium (/usr/bin/chromium, installed by .ci/run) is driven by Playwright; no browser is
downloaded. Every request that is not to a local file or to this machine is blocked and recorded,
so a page that tried to reach the internet fails here rather than hanging on a customer's laptop.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.conftest import crm_roi

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


class Browser:
    """One fresh Chromium profile with every outside request blocked and recorded, and every console error kept."""

    def __init__(self, context: object):
        self.context = context
        self.blocked: list[str] = []
        self.errors: list[str] = []
        context.route("**/*", self._route)

    def _route(self, route: object) -> None:
        url = route.request.url
        parsed = urlparse(url)
        if parsed.scheme in ("file", "data", "blob") or parsed.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def open(self, url: str) -> object:
        page = self.context.new_page()
        page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(url)
        return page


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium), "
                    "as .ci/run does", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1400, "height": 1000},
        )
        try:
            yield Browser(context)
        finally:
            context.close()


def test_the_report_renders_every_chart_offline(demo_published: Path, browser: Browser, tmp_path: Path):
    # Written by the nightly job's report asset, beside the analysts' copy.
    page_file = demo_published.with_name("demo_report") / "roi_report.html"
    page = browser.open(page_file.as_uri())
    charts = page.locator(".chart")
    names = [charts.nth(i).get_attribute("data-chart") for i in range(charts.count())]
    assert names == ["payback", "roi", "revenue", "benefits_costs", "kpis", "sales_cycle", "data_quality"]
    page.wait_for_function("[...document.querySelectorAll('.chart')].every(c => c.dataset.rendered)",
                           timeout=60_000)
    for name in names:
        chart = page.locator(f"#chart-{name}")
        assert chart.get_attribute("data-rendered") == "true", name
        box = chart.locator("svg").first.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150, name
        # Marks drawn, not an empty frame: Vega draws each mark as a path (or text) in its group.
        assert chart.locator("svg g.mark-rect path, svg g.mark-line path, svg g.mark-area path").count() > 0, name
    assert page.locator("#headline .value").first.inner_text() == "2.89x"
    assert "Gross margin 60 %" in page.locator("#assumptions").inner_text()
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert browser.errors == []
    assert browser.blocked == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"dagster-webserver exited ({server.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"dagster-webserver did not answer {url} within {seconds:g} s: {log.read_text()[-2000:]}")


@pytest.fixture
def dagster_ui(tmp_path: Path) -> Iterator[str]:
    """The nightly job materialised into a temp DAGSTER_HOME, then the webserver on a free loopback port."""
    shutil.copytree(REPO / "data" / "sample", tmp_path / "sample")
    config = yaml.safe_load((tmp_path / "sample" / "crm_roi.yaml").read_text())
    config["duckdb_path"] = str(tmp_path / "warehouse.duckdb")
    config["data_roots"] = [str(tmp_path)]
    (tmp_path / "sample" / "crm_roi.yaml").write_text(yaml.safe_dump(config))
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "CRM_ROI_CONFIG": str(tmp_path / "sample" / "crm_roi.yaml")}
    done = crm_roi("run", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    port = _free_port()
    log = tmp_path / "webserver.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
             "-m", "pipelines.definitions"],
            cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_serving(f"http://127.0.0.1:{port}/server_info", server, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _dismiss_welcome(page: object) -> None:
    """The UI greets a new instance with a newsletter dialog; a person would skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
    except Exception:
        return
    skip.click()


@pytest.mark.slow
def test_the_dagster_ui_shows_the_asset_graph_and_the_report_charts(dagster_ui: str, browser: Browser,
                                                                     tmp_path: Path):
    # The global lineage: a node per layer.
    page = browser.open(f"{dagster_ui}/asset-groups")
    _dismiss_welcome(page)
    for group in ("raw", "staging", "kpi", "roi", "publish"):
        page.locator("svg, [data-testid]").get_by_text(group, exact=True).first.wait_for(timeout=90_000)
    page.screenshot(path=str(tmp_path / "lineage.png"))

    # The publish layer: the analysts' copy, then the report, both materialised by the run, with their kinds.
    location = "pipelines.definitions"  # the code location of `dagster-webserver -m pipelines.definitions`
    page = browser.open(f"{dagster_ui}/locations/{location}/asset-groups/publish")
    for label in ("analyst_copy", "report", "Report", "html", "DuckDB"):
        page.get_by_text(label, exact=True).first.wait_for(timeout=90_000)
    page.get_by_text("Materialized", exact=True).nth(1).wait_for(timeout=60_000)  # both nodes' status
    page.screenshot(path=str(tmp_path / "publish-group.png"))

    # The report asset: its charts as images in the metadata, and where the page is.
    page = browser.open(f"{dagster_ui}/assets/publish/report")
    page.get_by_text("roi_report.html").first.wait_for(timeout=90_000)
    page.get_by_text("[Show Markdown]").first.click()
    charts = page.locator("img[src^='data:image/svg+xml;base64,']")
    charts.first.wait_for(timeout=30_000)
    assert charts.count() == 3
    for n in range(3):
        assert charts.nth(n).evaluate("img => img.complete && img.naturalWidth > 300"), n
    assert page.get_by_text("Cumulative benefit against cumulative cost").first.is_visible()
    page.screenshot(path=str(tmp_path / "report-asset.png"))
    assert browser.blocked == []
