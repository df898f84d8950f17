"""Regenerate docs/img/ from the demo: the report's headline as a browser shows it, and two of its charts.

    make demo && .venv/bin/python scripts/report_screenshots.py

Needs Debian's chromium (/usr/bin/chromium), as the browser tests do. pngquant, when installed,
shrinks the images (palette PNGs) so the repository stays small.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "crm_roi_demo_report"
OUT = REPO / "docs" / "img"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto((REPORT / "roi_report.html").as_uri())
        page.wait_for_function("[...document.querySelectorAll('.chart')].every(c => c.dataset.rendered)")
        page.screenshot(path=str(OUT / "report-headline.png"), clip={"x": 0, "y": 0, "width": 1000, "height": 900})
        browser.close()
    for chart in ("payback", "benefits_costs", "kpis"):
        shutil.copyfile(REPORT / f"{chart}.png", OUT / f"report-{chart}.png")
    if shutil.which("pngquant"):
        for image in OUT.glob("report-*.png"):
            subprocess.run(["pngquant", "--force", "--skip-if-larger", "--output", str(image), "--", str(image)],
                           check=False)


if __name__ == "__main__":
    main()
