"""Where crm-roi's time goes: `crm-roi run` sampled by py-spy, from outside the process.

py-spy attaches to the run instead of being imported by it, so the profiled
process is crm-roi in its own environment (the dev .venv, without the bench
extra's pandas), exactly as the benchmark times it; `--native` adds DuckDB's
C++ frames under the Python line that called it. Each run is sampled twice:
once into a flamegraph (SVG, open it in a browser) and once into raw stacks,
from which a text summary is written (functions by inclusive and self time).

    python -m bench.run --profile N     # reports into bench/profiles/
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

PROJECT_CODE = ("pipelines/", "connectors/", "bench/")
SAMPLE_RATE = 100  # py-spy's default, per second
TOP = 30


def py_spy() -> str:
    """The py-spy binary of the bench environment (the bench extra installs it beside this Python)."""
    binary = Path(sys.executable).parent / "py-spy"
    if not binary.exists():
        raise SystemExit(f"{binary} not found: install the bench extra (make bench) and run from bench/.venv")
    return str(binary)


def record(command: list[str], output: Path, fmt: str, cwd: Path, env: dict[str, str]) -> None:
    """Run `command` under py-spy, writing `fmt` (flamegraph or raw) to `output`."""
    subprocess.run([py_spy(), "record", "--native", "--rate", str(SAMPLE_RATE), "--format", fmt, "--output",
                    str(output), "--", *command], check=True, cwd=cwd, env=env, stdout=subprocess.DEVNULL)


def summary(collapsed: Path, title: str) -> str:
    """Functions by inclusive time (crm-roi's own code) and by self time (everything, DuckDB included)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]  # per function, not per line
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return f"{title}\nno samples\n"

    def table(counts: Counter[str], keep: bool = True) -> list[str]:
        rows = [(n, f) for f, n in counts.most_common() if keep or any(p in f for p in PROJECT_CODE)][:TOP]
        return [f"  {n / total:6.1%} {n / SAMPLE_RATE:8.2f} s  {frame}" for n, frame in rows]

    return "\n".join([
        title, f"{total:,} samples at {SAMPLE_RATE}/s (~{total / SAMPLE_RATE:.1f} s sampled)", "",
        f"crm-roi's functions by inclusive time (top {TOP}):", *table(inclusive, keep=False), "",
        f"frames by self time, native included (top {TOP}):", *table(own), "",
    ])


def profile_run(command: list[str], out: Path, stem: str, cwd: Path, env: dict[str, str],
                before_each: list | None = None) -> list[Path]:
    """Sample `command` twice (flamegraph, raw stacks); return the SVG, the raw stacks and the text summary.

    `before_each` callables reset the state the command expects (a fresh warehouse, a delta file), so both
    samples profile the same work.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {"flamegraph": out / f"{stem}.svg", "raw": out / f"{stem}.collapsed"}
    for fmt, path in paths.items():
        for prepare in before_each or []:
            prepare()
        record(command, path, fmt, cwd, env)
    text = out / f"{stem}.txt"
    text.write_text(summary(paths["raw"], f"py-spy profile: {' '.join(command)}"), encoding="utf-8")
    return [paths["flamegraph"], paths["raw"], text]
