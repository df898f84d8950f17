"""Progress of long work (an API sync, a large export load): a bar in a terminal, plain lines in logs.

In a terminal the bar (rich) is drawn on stderr and erased when the work ends, so what stays
on the screen is the run's summary or its one-line error. Anywhere else (a log file, CI, the
output Dagster captures from a step) a plain line goes to stdout at most every
CRM_ROI_PROGRESS_EVERY seconds (default 10), and none for work that ends sooner: a short run's
output, and a test's captured output, stay as they were. CRM_ROI_PROGRESS (auto, bar, lines,
off) overrides the choice.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import duckdb

from pipelines.config import ConfigError

MODES = ("auto", "bar", "lines", "off")
POLL_SECONDS = 0.5


def _mode() -> str:
    mode = os.environ.get("CRM_ROI_PROGRESS", "auto").strip().lower()
    if mode not in MODES:
        raise ConfigError(f"CRM_ROI_PROGRESS={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "lines"
    return mode


def _every() -> float:
    return float(os.environ.get("CRM_ROI_PROGRESS_EVERY", "10"))


def amount(value: float, unit: str) -> str:
    """`value` in `unit`, for people: bytes in kB/MB/GB, anything else as a count."""
    if unit != "bytes":
        return f"{value:,.0f} {unit}"
    for size, name in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if value >= size:
            return f"{value / size:,.1f} {name}"
    return f"{value:,.0f} bytes"


class Tracker:
    """One piece of work; `advance` and `update` are cheap enough to call per page or per file."""

    def __init__(self, description: str, total: float | None, unit: str):
        self.description, self.total, self.unit = description, total, unit
        self.completed = 0.0
        self.detail = ""
        self.started = time.monotonic()

    def advance(self, amount: float = 1, detail: str | None = None) -> None:
        self.update(self.completed + amount, detail)

    def update(self, completed: float, detail: str | None = None) -> None:
        self.completed = completed
        if detail is not None:
            self.detail = detail
        self._show()

    def line(self) -> str:
        """Where the work stands, in one line: done of total, rate, time left when the total is known."""
        elapsed = time.monotonic() - self.started
        done = amount(self.completed, self.unit)
        if self.total:
            share = min(self.completed / self.total, 1.0)
            done = f"{done} of {amount(self.total, self.unit)} ({share:.0%})"
            if 0 < share < 1:
                done += f", about {elapsed * (1 - share) / share:,.0f} s left"
        detail = f", {self.detail}" if self.detail else ""
        return f"{self.description}: {done}{detail}, {elapsed:,.0f} s"

    def _show(self) -> None:
        """Quiet: progress is off."""

    def finish(self) -> None:
        """Quiet: progress is off."""


class _Lines(Tracker):
    """Plain lines, at most one per interval, and a closing one if any was printed."""

    def __init__(self, description: str, total: float | None, unit: str, every: float, out: TextIO):
        super().__init__(description, total, unit)
        self._every, self._out = every, out
        self._last = self.started
        self._printed = False
        self._lock = threading.Lock()

    def _show(self) -> None:
        now = time.monotonic()
        if now - self._last < self._every:
            return
        with self._lock:
            self._last, self._printed = now, True
            print(f"progress  {self.line()}", file=self._out, flush=True)

    def finish(self) -> None:
        if self._printed:
            print(f"progress  {self.line()}, done", file=self._out, flush=True)


class _Bar(Tracker):
    """A rich progress bar on stderr, erased when the work ends."""

    def __init__(self, description: str, total: float | None, unit: str):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        super().__init__(description, total, unit)
        counted = DownloadColumn() if unit == "bytes" else MofNCompleteColumn() if total else \
            TextColumn(f"{{task.completed:,.0f}} {unit}")
        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), counted,
                             TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"),
                             console=Console(file=sys.stderr), transient=True)
        self._task = self._bar.add_task(description, total=total, detail="")
        self._bar.start()

    def _show(self) -> None:
        self._bar.update(self._task, completed=self.completed, detail=self.detail)

    def finish(self) -> None:
        self._bar.stop()


@contextmanager
def progress(description: str, total: float | None = None, unit: str = "items") -> Iterator[Tracker]:
    """Track one piece of work: a bar, plain lines or nothing, by where the output goes (see above)."""
    mode = _mode()
    if mode == "bar":
        tracker: Tracker = _Bar(description, total, unit)
    elif mode == "lines":
        tracker = _Lines(description, total, unit, _every(), sys.stdout)
    else:
        tracker = Tracker(description, total, unit)
    try:
        yield tracker
    finally:
        tracker.finish()


@contextmanager
def watch_statement(con: duckdb.DuckDBPyConnection, tracker: Tracker, start: float, size: float) -> Iterator[None]:
    """While one long statement runs on `con` (landing a large file), move `tracker` from `start`
    by the statement's own progress times `size` (DuckDB reports it from another thread)."""
    if type(tracker) is Tracker:  # progress is off: no thread, no setting
        yield
        return
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(POLL_SECONDS):
            percent = con.query_progress()
            if percent >= 0:
                tracker.update(start + size * min(percent, 100.0) / 100.0)

    watcher = threading.Thread(target=poll, name="crm-roi-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
    con.execute("RESET enable_progress_bar")  # not after a failed statement: its transaction is aborted
