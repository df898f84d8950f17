"""Run one benchmark variant in a child process and read what that process cost.

Why `os.wait4` on the child's pid and not `resource.getrusage(RUSAGE_CHILDREN)`:
RUSAGE_CHILDREN adds up every child the harness ever waited for, so a variant's
CPU time would include all earlier variants (and its max RSS would be the
largest so far). wait4 returns the rusage of exactly this child and of the
descendants it waited for: CPU time is the tree's sum, ru_maxrss the largest
single process in it (KB on Linux).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path


class VariantFailed(RuntimeError):
    """A variant's process exited non-zero; the message holds the end of its stderr."""


@dataclass
class Sample:
    """One run of one variant: its own wall time, CPU time (user + sys) and peak RSS."""

    wall_s: float
    cpu_s: float
    rss_mb: float
    detail: dict = field(default_factory=dict)  # what the variant reported about itself (phases, rows, ...)

    def as_dict(self) -> dict:
        return asdict(self)


def measure(command: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None,
            cwd: Path | None = None, detail: Path | None = None) -> Sample:
    """Run `command` to completion and return its cost; `detail` is a JSON file the child writes.

    stdout and stderr go to `log` (kept for a failed run), never through a pipe the
    harness would have to drain while timing.
    """
    if detail is not None:
        detail.unlink(missing_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env=dict(env or os.environ),
                                   cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    if process.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise VariantFailed(f"{' '.join(command)} exited {process.returncode}; log {log}:\n{tail}")
    reported = json.loads(detail.read_text(encoding="utf-8")) if detail is not None else {}
    return Sample(round(wall, 3), round(usage.ru_utime + usage.ru_stime, 3), round(usage.ru_maxrss / 1024, 1),
                  reported)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of a series of runs (the table shows median [min-max])."""
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def summarise(samples: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Median/min/max of wall time, CPU time and peak RSS over a variant's runs."""
    return {metric: spread([s[metric] for s in samples]) for metric in ("wall_s", "cpu_s", "rss_mb")}


def write_detail(path: str | None, detail: dict) -> None:
    """A variant's report to the harness: one JSON file, written last (its absence means the run failed)."""
    if path:
        Path(path).write_text(json.dumps(detail, indent=1, default=str), encoding="utf-8")
