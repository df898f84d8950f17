"""The benchmark harness: crm-roi against bare DuckDB, pandas + Pandera and dlt, at N deals.

    make bench          # = bench/.venv/bin/python -m bench.run --sizes 100000,1000000,5000000 --repeat 3
    bench/.venv/bin/python -m bench.run --render-only       # RESULTS.md and the plot again, from results.json
    bench/.venv/bin/python -m bench.run --profile 1000000   # py-spy reports into bench/profiles/

Two environments, both from uv.lock: crm-roi, the bare-DuckDB variant and the
fake server run with --product-python (default .venv/bin/python, what `make
setup` builds: no pandas, as in production); the harness, pandas + Pandera
and dlt run in bench/.venv (dev + bench extras). One environment for all would
slow crm-roi down: `import pandera` imports pandas whenever it is installed.

For each N it generates the canonical exports once (cached under --work by N),
then runs every variant in its own process, --repeat times, in interleaved
rounds (a b c d, a b c d, ...) so a slow spell on the machine hits all variants
alike. Each run's wall time, CPU time and peak RSS are read from that process
alone (bench.measure). The raw runs go to results.json; RESULTS.md and
scaling.png are rendered from it (bench.report), so they can be redone without
re-running anything.

Variants: (a) bare_duckdb, (b) pandas_pandera, (c) crm_roi_full, (d) crm_roi_incremental, (e) dbt_duckdb,
dagster_noop (Dagster's own cost for the job's shape), api (crm-roi and dlt syncing a fake HubSpot).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import platform
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb

from bench import generate, profiling, report
from bench.measure import Sample, measure

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PRODUCT_PYTHON = REPO / ".venv" / "bin" / "python"
SIZE_VARIANTS = ("bare_duckdb", "pandas_pandera", "dbt_duckdb", "crm_roi_full", "crm_roi_incremental")
VARIANTS = (*SIZE_VARIANTS, "dagster_noop", "api")
DELTA_SHARE = 0.01
API_PAGE_SIZE = 50  # HubSpot's list limit with propertiesWithHistory (connectors.hubspot.settings)
API_METADATA_REQUESTS = 2  # crm-roi's sync also reads the deal pipelines and the portal currency, once each
PRODUCT_PATHS = ("pipelines", "sql", "connectors", "pyproject.toml", "uv.lock")
VERSIONED = ("duckdb", "dagster", "pandas", "pandera", "polars", "pyarrow", "dlt", "matplotlib", "py-spy")


def machine() -> dict:
    """What the numbers were measured on: CPU, cores, memory, OS, and how busy the machine was."""
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "unknown")
    memory_kb = next((int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    os_name = next((line.split("=", 1)[1].strip().strip('"') for line in _lines("/etc/os-release")
                    if line.startswith("PRETTY_NAME=")), platform.system())
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gb": round(memory_kb / 1024**2, 1),
            "os": f"{os_name} ({platform.release()})", "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []


VERSIONS_SCRIPT = """
import importlib.metadata, importlib.util, json, platform, sys
found = {"python": platform.python_version()}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        found[name] = "not installed"
print(json.dumps(found))
"""


def versions(python: str) -> dict:
    """Python and the libraries the variants stand on, as installed for `python`."""
    done = subprocess.run([python, "-c", VERSIONS_SCRIPT, *VERSIONED], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def code_version() -> dict:
    """The commit measured, and the product files that differed from it (a dirty tree is not that commit)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", *PRODUCT_PATHS)
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or "unknown",
            "uncommitted": [line[3:] for line in changed.splitlines()]}


def child_env(**extra: str) -> dict[str, str]:
    """The variants' environment: an ephemeral Dagster instance, no config overrides, no dlt telemetry."""
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "CRM_ROI_CONFIG", "CRM_ROI_DUCKDB")}
    return {**env, "RUNTIME__DLTHUB_TELEMETRY": "false", **extra}


class Harness:
    """Generates the data, runs the variants and collects their samples into one results dict."""

    def __init__(self, work: Path, repeat: int, variants: list[str], product_python: str):
        self.work, self.repeat, self.variants = work, repeat, variants
        self.product = product_python  # crm-roi's environment; the reference variants use this harness's own

    # -- data ------------------------------------------------------------------------
    def dataset(self, deals: int) -> Path:
        """The exports of `deals` deals, generated once per generator version and N, then cached."""
        folder = self.work / "data" / str(deals)
        stamp = folder / ".generated"
        fingerprint = hashlib.sha256(Path(generate.__file__).read_bytes()).hexdigest()[:16]
        if not (stamp.exists() and stamp.read_text() == fingerprint):
            shutil.rmtree(folder, ignore_errors=True)
            generate.generate(folder, deals)
            stamp.write_text(fingerprint)
        for csv in folder.glob("*.csv"):  # every variant reads from the page cache, the first included
            with csv.open("rb") as handle:
                while handle.read(1 << 24):
                    pass
        return folder

    @staticmethod
    def reset_crm_roi(folder: Path) -> None:
        """A folder as before any run: no warehouse files, no delta exports."""
        for path in [*folder.glob("crm_roi*.duckdb*"), *folder.glob("deals_delta_*.csv")]:
            path.unlink()

    # -- one run -----------------------------------------------------------------------
    def _measure(self, label: str, round_: int, command: list[str], detail: Path, **env: str) -> Sample:
        """Measure one run; its output goes to a .log beside its `detail` JSON."""
        print(f"  {label} run {round_ + 1}/{self.repeat}", flush=True)
        sample = measure(command, log=detail.with_suffix(".log"), detail=detail, env=child_env(**env), cwd=REPO)
        print(f"    {sample.wall_s:.2f} s wall, {sample.cpu_s:.2f} s CPU, {sample.rss_mb:.0f} MiB peak RSS", flush=True)
        return sample

    def crm_roi(self, folder: Path, detail: Path | None = None) -> list[str]:
        """`crm-roi run --config <folder>/crm_roi.yaml`, through the wrapper that records Dagster's step times."""
        return [self.product, "-m", "bench.crm_roi_run", *(["--detail", str(detail)] if detail else []), "run",
                "--config", str(folder / "crm_roi.yaml")]

    def full_run_untimed(self, folder: Path) -> None:
        """A fresh warehouse built by a full run that is not measured (what an incremental run starts from)."""
        self.reset_crm_roi(folder)
        subprocess.run(self.crm_roi(folder), check=True, cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL)

    def _run_variant(self, name: str, deals: int, folder: Path, round_: int, state: dict) -> Sample:
        scratch = self.work / "scratch" / str(deals)
        scratch.mkdir(parents=True, exist_ok=True)
        detail = self.work / "logs" / str(deals) / f"{name}_{round_ + 1}.json"
        if name == "bare_duckdb":
            command = [self.product, "-m", "bench.bare_duckdb", str(folder), "--db", str(scratch / "bare.duckdb"),
                       "--detail", str(detail)]
        elif name == "pandas_pandera":
            command = [sys.executable, "-m", "bench.pandas_pandera", str(folder), "--detail", str(detail)]
        elif name == "dbt_duckdb":
            command = [sys.executable, "-m", "bench.dbt_duckdb", str(folder), "--db", str(scratch / "dbt.duckdb"),
                       "--detail", str(detail)]
        elif name == "crm_roi_full":
            self.reset_crm_roi(folder)
            command = self.crm_roi(folder, detail)
        else:  # crm_roi_incremental: from the state a full run left (the timed one of this round, if any)
            if not state.get("fresh_full_run"):
                self.full_run_untimed(folder)
            generate.write_delta(folder, DELTA_SHARE)
            command = self.crm_roi(folder, detail)
        sample = self._measure(f"N={deals:,} {name}", round_, command, detail)
        state["fresh_full_run"] = name == "crm_roi_full"
        if name == "crm_roi_full":
            sample.detail["kpi"] = crm_roi_kpis(folder)
        return sample

    # -- the benchmark -------------------------------------------------------------------
    def sizes(self, sizes: list[int]) -> dict:
        """Every selected per-N variant at every N, in interleaved rounds."""
        selected = [v for v in SIZE_VARIANTS if v in self.variants]
        results = {}
        for deals in sizes if selected else []:
            folder = self.dataset(deals)
            runs: dict[str, list[dict]] = {name: [] for name in selected}
            state: dict = {}
            for round_ in range(self.repeat):
                for name in selected:
                    runs[name].append(self._run_variant(name, deals, folder, round_, state).as_dict())
            self.reset_crm_roi(folder)
            results[str(deals)] = {"data": data_facts(folder, deals), "runs": runs}
        return results

    def dagster_noop(self, deals: int) -> list[dict]:
        """Dagster alone: the job's shape with empty steps (bench.dagster_noop), --repeat times."""
        config = self.dataset(deals) / "crm_roi.yaml"
        details = [self.work / "logs" / "dagster_noop" / f"run_{r + 1}.json" for r in range(self.repeat)]
        return [self._measure("dagster_noop", r, [self.product, "-m", "bench.dagster_noop", "--config", str(config),
                                                  "--detail", str(detail)], detail).as_dict()
                for r, detail in enumerate(details)]

    def api(self, deals: int) -> dict:
        """(e): crm-roi's connector and dlt's rest_api each sync the fake HubSpot, the server in its own process."""
        folder = self.dataset(deals)
        scratch = self.work / "scratch" / "api"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        token = secrets.token_urlsafe(24)
        with (scratch / "server.log").open("wb") as server_log:
            server = subprocess.Popen([self.product, "-m", "bench.fake_server", str(folder)], cwd=REPO, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=server_log,
                                      env=child_env(BENCH_HUBSPOT_TOKEN=token))
        try:
            ready = json.loads(server.stdout.readline() or "null")
            if not ready:
                raise RuntimeError(f"the fake HubSpot did not start; see {scratch / 'server.log'}")
            runs: dict[str, list[dict]] = {"crm_roi": [], "dlt": []}
            python = {"crm_roi": self.product, "dlt": sys.executable}
            for round_ in range(self.repeat):
                for client in runs:
                    server.stdin.write("reset\n")
                    server.stdin.flush()
                    server.stdout.readline()
                    db, detail = scratch / f"{client}.duckdb", scratch / f"{client}_{round_ + 1}.json"
                    for stale in scratch.glob(f"{client}*.duckdb*"):  # crm-roi's raw companion file too
                        stale.unlink()
                    shutil.rmtree(scratch / "dlt", ignore_errors=True)
                    command = [python[client], "-m", "bench.api_sync", client.replace("_", "-"), "--base-url",
                               ready["base_url"], "--db", str(db), "--work", str(scratch / "dlt"), "--detail",
                               str(detail)]
                    sample = self._measure(f"api {client} ({deals:,} deals)", round_, command, detail,
                                           BENCH_HUBSPOT_TOKEN=token)
                    server.stdin.write("log\n")
                    server.stdin.flush()
                    sample.detail["server"] = json.loads(server.stdout.readline())
                    runs[client].append(sample.as_dict())
        finally:
            server.stdin.close()
            server.wait(timeout=60)
        minimum = math.ceil(ready["live"] / API_PAGE_SIZE) + max(1, math.ceil(ready["archived"] / API_PAGE_SIZE))
        return {"deals": deals, "live": ready["live"], "archived": ready["archived"], "page_size": API_PAGE_SIZE,
                "minimum_list_requests": minimum, "metadata_requests": API_METADATA_REQUESTS, "runs": runs}


def crm_roi_kpis(folder: Path) -> list[dict]:
    """Revenue won and deals won per period from crm-roi's published tables, for the cross-check."""
    with duckdb.connect(str(folder / "crm_roi.published.duckdb"), read_only=True) as con:
        rows = con.execute("SELECT period_start, revenue_won, deals_won FROM kpi.periodic ORDER BY 1").fetchall()
    return [{"month": str(m), "revenue_won": float(r), "deals_won": int(w)} for m, r, w in rows]


def data_facts(folder: Path, deals: int) -> dict:
    """How big N's exports are, so the tables say what was loaded."""
    return {"deals": deals, "csv_mb": {p.stem: round(p.stat().st_size / 1e6, 1) for p in sorted(folder.glob("*.csv"))
                                       if not p.stem.startswith("deals_delta")}}


def profile(deals: int, work: Path, out: Path, product_python: str) -> list[Path]:
    """crm-roi's full run, then its incremental run, under py-spy (bench.profiling); return the report files."""
    harness = Harness(work, 1, [], product_python)
    folder = harness.dataset(deals)
    command, env = harness.crm_roi(folder), child_env()

    def fresh_then_delta() -> None:
        harness.full_run_untimed(folder)
        generate.write_delta(folder, DELTA_SHARE)

    reports = profiling.profile_run(command, out, f"crm_roi_full_{deals}", REPO, env,
                                    [lambda: harness.reset_crm_roi(folder)])
    reports += profiling.profile_run(command, out, f"crm_roi_incremental_{deals}", REPO, env, [fresh_then_delta])
    harness.reset_crm_roi(folder)
    return reports


def _shown(path: str) -> str:
    """A path as the command line showed it: relative to the repo when inside it."""
    return os.path.relpath(path, REPO) if Path(os.path.abspath(path)).is_relative_to(REPO) else path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sizes", default="100000,1000000,5000000", help="comma-separated N (deals)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant and N")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--api-deals", type=int, default=100_000, help="deals the fake HubSpot serves (variant api)")
    parser.add_argument("--work", type=Path, default=BENCH / ".work", help="generated data, logs, scratch files")
    parser.add_argument("--out", type=Path, default=BENCH, help="folder for results.json, RESULTS.md, scaling.png")
    parser.add_argument("--before", type=Path, help="an earlier results.json, shown as 'before' in RESULTS.md")
    parser.add_argument("--no-plot", action="store_true", help="skip scaling.png (no matplotlib needed)")
    parser.add_argument("--render-only", action="store_true", help="re-render RESULTS.md and the plot, run nothing")
    parser.add_argument("--profile", type=int, metavar="N", help="profile crm-roi at N deals instead of benchmarking")
    parser.add_argument("--profile-dir", type=Path, default=BENCH / "profiles", help="where --profile writes")
    parser.add_argument("--product-python", default=str(PRODUCT_PYTHON if PRODUCT_PYTHON.exists() else sys.executable),
                        help="Python of crm-roi's own environment (default .venv/bin/python, from `make setup`)")
    args = parser.parse_args(argv)
    args.sizes = [int(n) for n in args.sizes.split(",") if n]
    args.variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {VARIANTS}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Benchmark (or profile, or re-render) as the arguments say."""
    args = parse_args(argv)
    if args.profile:
        for path in profile(args.profile, args.work, args.profile_dir, args.product_python):
            print(path)
        return
    results_file = args.out / "results.json"
    if not args.render_only:
        args.out.mkdir(parents=True, exist_ok=True)
        harness = Harness(args.work, args.repeat, args.variants, args.product_python)
        started = dt.datetime.now(dt.UTC)
        results: dict = {"schema": 1, "started": started.isoformat(timespec="seconds"),
                         "command": " ".join([_shown(sys.executable), "-m bench.run",
                                              *(argv if argv is not None else sys.argv[1:])]),
                         "machine": machine(), "code": code_version(),
                         "environments": {"crm_roi": {"executable": args.product_python,
                                                      **versions(args.product_python)},
                                          "bench": {"executable": sys.executable, **versions(sys.executable)}},
                         "repeat": args.repeat,
                         "variants": args.variants, "sizes": harness.sizes(args.sizes)}
        if "dagster_noop" in args.variants:
            results["dagster_noop"] = harness.dagster_noop(min(args.sizes))
        if "api" in args.variants:
            results["api"] = harness.api(args.api_deals)
        results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        results_file.write_text(json.dumps(results, indent=1), encoding="utf-8")
    results = json.loads(results_file.read_text(encoding="utf-8"))
    before = json.loads(args.before.read_text(encoding="utf-8")) if args.before else None
    (args.out / "RESULTS.md").write_text(report.markdown(results, before), encoding="utf-8")
    if not args.no_plot:
        report.plot(results, args.out / "scaling.png")
    print(f"wrote {args.out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
