"""What progress reporting costs a large load: progress off against plain lines, alternating.

    .venv/bin/python -m bench.progress_overhead --deals 1000000 --repeat 7

Generates the canonical exports (bench/generate.py) once into --work, then times, each into a
fresh DuckDB file: landing the deals and stage-history files in this process (where progress
adds a watcher thread and DuckDB's progress tracking), and a whole first `crm-roi run` in its
own process. Runs alternate between the two settings, so a machine that gets busier during
the measurement slows both alike; the medians are printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.generate import generate
from pipelines.config import load_settings
from pipelines.raw_files import load_stream, stream_inputs
from pipelines.warehouse import connect

MODES = ("off", "lines")


def _land(config: Path, db: Path) -> float:
    settings = load_settings(config).model_copy(update={"duckdb_path": db})
    with connect(db, settings) as con:
        started = time.perf_counter()
        for stream in ("deals", "deal_stage_history"):
            for spec in stream_inputs(settings, stream):
                load_stream(con, spec)
        return time.perf_counter() - started


def _run(config: Path, db: Path) -> float:
    crm_roi = Path(sys.executable).parent / "crm-roi"
    env = {**os.environ, "CRM_ROI_DUCKDB": str(db)}
    started = time.perf_counter()
    subprocess.run([str(crm_roi), "run", "--config", str(config)], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("bench/.work/progress"))
    parser.add_argument("--steps", default="land,run", help="land (in this process), run (crm-roi run), or both")
    args = parser.parse_args()
    data = args.work / f"data_{args.deals}"
    if not (data / "crm_roi.yaml").is_file():
        generate(data, args.deals)
    config = data / "crm_roi.yaml"
    times: dict[tuple[str, str], list[float]] = {}
    for n in range(args.repeat):
        for step, measure in (("land", _land), ("run", _run)):
            if step not in args.steps.split(","):
                continue
            for mode in MODES:
                os.environ["CRM_ROI_PROGRESS"] = mode
                scratch = args.work / "db"
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir(parents=True)
                seconds = measure(config, scratch / "w.duckdb")
                times.setdefault((step, mode), []).append(seconds)
                print(f"{step:5} {mode:6} #{n + 1}: {seconds:6.2f} s", flush=True)
    for (step, mode), values in times.items():
        print(f"{step:5} {mode:6} median {statistics.median(values):6.2f} s  min {min(values):6.2f} s")


if __name__ == "__main__":
    main()
