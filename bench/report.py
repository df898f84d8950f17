"""RESULTS.md and scaling.png from results.json: every figure and every MET / NOT MET computed, none typed.

Kept apart from the runs so a results file can be re-rendered (`--render-only`)
and an earlier one shown as "before" (`--before`) after the code changed.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from bench.measure import spread, summarise

LABELS = {
    "bare_duckdb": "(a) bare DuckDB",
    "pandas_pandera": "(b) pandas + Pandera",
    "crm_roi_full": "(c) crm-roi full run",
    "crm_roi_incremental": "(d) crm-roi incremental, 1% changed",
    "dbt_duckdb": "(e) dbt-duckdb",
}
# The peers a data team would otherwise pick: crm-roi's full run is to be faster than each.
PEERS = ("pandas_pandera", "dbt_duckdb")
TARGET_N, LARGE_N, SMALL_N, PEER_NS = 5_000_000, 10_000_000, 100_000, (1_000_000, 5_000_000)
FULL_VS_BARE, INCREMENTAL_VS_FULL, DAGSTER_OVERHEAD_S, SMALL_FULL_S = 2.0, 0.20, 3.0, 4.0
MEMORY_MIB, LARGE_MEMORY_MIB = 1024, 1536
KPI_TOLERANCE = 0.01  # revenue sums in a different order differ in the last float digits


def _median(runs: list[dict], pick: Callable[[dict], float]) -> float:
    return statistics.median(pick(run) for run in runs)


def _cell(stats: dict[str, float], digits: int = 2) -> str:
    return f"{stats['median']:,.{digits}f} [{stats['min']:,.{digits}f}-{stats['max']:,.{digits}f}]"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    return "n/a" if not numerator or not denominator else f"{numerator / denominator:.2f}x"


def _wall(size: dict, variant: str) -> float | None:
    runs = size["runs"].get(variant)
    return _median(runs, lambda r: r["wall_s"]) if runs else None


def kpi_mismatches(reference: list[dict], other: list[dict]) -> list[str]:
    """Months of crm-roi's KPI table where another variant's revenue won or deals won differ."""
    theirs = {row["month"]: row for row in other}
    wrong = []
    for row in reference:
        mine = theirs.get(row["month"], {"revenue_won": 0.0, "deals_won": 0})
        if abs(mine["revenue_won"] - row["revenue_won"]) > KPI_TOLERANCE or mine["deals_won"] != row["deals_won"]:
            wrong.append(row["month"])
    return wrong


def api_rates(runs: list[dict]) -> dict[str, float]:
    return spread([run["detail"]["rows"] / run["wall_s"] for run in runs])


def api_requests(run: dict) -> tuple[int, int]:
    """(list requests, all requests) the fake HubSpot logged during one client run."""
    server = run["detail"]["server"]
    return server["by_path"].get("GET /crm/v3/objects/deals", 0), server["requests"]


# -- targets ----------------------------------------------------------------------------
def targets(results: dict) -> list[tuple[str, str, str]]:
    """(target, measured, MET / NOT MET / NOT MEASURED) for each target."""
    sizes = results["sizes"]
    rows = []
    target = sizes.get(str(TARGET_N))

    def not_measured(n: int) -> tuple[str, str]:
        largest = max((int(k) for k in sizes), default=0)
        return f"N = {n:,} not run" + (f" (largest N run: {largest:,})" if largest else ""), "NOT MEASURED"

    def status(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    full, bare = (_wall(target, "crm_roi_full"), _wall(target, "bare_duckdb")) if target else (None, None)
    name = f"full nightly run ≤ {FULL_VS_BARE}x bare DuckDB at {TARGET_N:,} deals"
    rows.append((name, f"{full / bare:.2f}x ({full:.1f} s / {bare:.1f} s)", status(full / bare <= FULL_VS_BARE))
                if full and bare else (name, *not_measured(TARGET_N)))

    for n in PEER_NS:
        size = sizes.get(str(n))
        for peer in PEERS:
            name = f"full run faster than {LABELS[peer].split(') ')[1]} at {n:,} deals"
            mine, theirs = (_wall(size, "crm_roi_full"), _wall(size, peer)) if size else (None, None)
            rows.append((name, f"{mine:.1f} s vs {theirs:.1f} s ({mine / theirs:.2f}x)", status(mine < theirs))
                        if mine and theirs else (name, *not_measured(n)))
    small = sizes.get(str(SMALL_N))
    name = f"full run ≤ {SMALL_FULL_S:g} s at {SMALL_N:,} deals"
    wall = _wall(small, "crm_roi_full") if small else None
    rows.append((name, f"{wall:.1f} s", status(wall <= SMALL_FULL_S)) if wall else (name, *not_measured(SMALL_N)))

    def peak(size: dict | None) -> float | None:
        runs = [r for v in ("crm_roi_full", "crm_roi_incremental") for r in (size or {"runs": {}})["runs"].get(v, [])]
        return max(r["rss_mb"] for r in runs) if runs else None

    name = f"peak memory of crm-roi ≤ {MEMORY_MIB:,} MiB at {TARGET_N:,} deals"
    rss = peak(target)
    rows.append((name, f"{rss:,.0f} MiB (largest of all full and incremental runs)", status(rss <= MEMORY_MIB))
                if rss else (name, *not_measured(TARGET_N)))
    incremental = _wall(target, "crm_roi_incremental") if target else None
    name = f"incremental run (1% changed) ≤ {INCREMENTAL_VS_FULL:.0%} of the full run at {TARGET_N:,} deals"
    rows.append((name, f"{incremental / full:.1%} ({incremental:.1f} s / {full:.1f} s)",
                 status(incremental / full <= INCREMENTAL_VS_FULL)) if incremental and full
                else (name, *not_measured(TARGET_N)))
    rss = peak(sizes.get(str(LARGE_N)))
    name = f"completes at {LARGE_N:,} deals with peak memory ≤ {LARGE_MEMORY_MIB:,} MiB"
    rows.append((name, f"{rss:,.0f} MiB", status(rss <= LARGE_MEMORY_MIB)) if rss
                else (name, *not_measured(LARGE_N)))
    rows.append(_dagster_target(results))
    rows.extend(_api_targets(results.get("api")))
    return rows


def _dagster_target(results: dict) -> tuple[str, str, str]:
    name = f"Dagster's own overhead for the whole job < {DAGSTER_OVERHEAD_S:g} s"
    measured = []
    noop = results.get("dagster_noop")
    if noop:
        measured.append(("no-op job of the same shape", _median(noop, lambda r: r["detail"]["job_wall_s"])))
    for n, size in sorted(results["sizes"].items(), key=lambda item: int(item[0])):
        if size["runs"].get("crm_roi_full"):
            overhead = _median(size["runs"]["crm_roi_full"], lambda r: r["detail"]["dagster"]["overhead_s"])
            measured.append((f"around the steps of the full run at N = {int(n):,}", overhead))
    if not measured:
        return name, "variants dagster_noop and crm_roi_full not run", "NOT MEASURED"
    text = "; ".join(f"{label}: {value:.2f} s" for label, value in measured)
    return name, text, "MET" if all(value < DAGSTER_OVERHEAD_S for _, value in measured) else "NOT MET"


def _api_targets(api: dict | None) -> list[tuple[str, str, str]]:
    requests_name = "API sync: requests made = the minimum the page size allows (plus retries)"
    speed_name = "API sync: rows/s ≥ dlt's rows/s on the same server"
    if not api:
        return [(requests_name, "variant api not run", "NOT MEASURED"), (speed_name, "variant api not run",
                                                                          "NOT MEASURED")]
    minimum = api["minimum_list_requests"] + api["metadata_requests"]
    made = [api_requests(run)[1] - run["detail"]["retries"] for run in api["runs"]["crm_roi"]]
    crm_roi, dlt = (statistics.median(run["detail"]["rows"] / run["wall_s"] for run in api["runs"][c])
                    for c in ("crm_roi", "dlt"))
    return [
        (requests_name, f"{max(made):,} requests less retries (minimum {api['minimum_list_requests']:,} list pages "
                        f"+ {api['metadata_requests']} metadata reads = {minimum:,})",
         "MET" if max(made) <= minimum else "NOT MET"),
        (speed_name, f"crm-roi {crm_roi:,.0f} rows/s, dlt {dlt:,.0f} rows/s ({crm_roi / dlt:.2f}x)",
         "MET" if crm_roi >= dlt else "NOT MET"),
    ]


# -- markdown ---------------------------------------------------------------------------------
def markdown(results: dict, before: dict | None = None) -> str:
    """The whole RESULTS.md."""
    machine = results["machine"]
    lines = [
        "# crm-roi benchmark results",
        "",
        "Generated by `bench/run.py` from `bench/results.json`; do not edit by hand. Re-render with "
        "`python -m bench.run --render-only`, re-measure with the command below.",
        "",
        f"Command: `{results['command']}` (run {results['started']} to {results['finished']}, "
        f"{results['repeat']} run(s) of each variant).",
        "",
        "## Machine and versions",
        "",
        _code_line(results.get("code")),
        "",
        "| CPU | cores | RAM | OS | load average at start (1, 5, 15 min) |",
        "|---|---|---|---|---|",
        f"| {machine['cpu']} | {machine['cores']} | {machine['ram_gb']} GiB | {machine['os']} | "
        f"{', '.join(map(str, machine['load_average_at_start']))} |",
        "",
        *_environments(results["environments"]),
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
        *(f"| {name} | {measured} | **{state}** |" for name, measured, state in targets(results)),
        "",
    ]
    for n, size in sorted(results["sizes"].items(), key=lambda item: int(item[0])):
        lines += _size_section(int(n), size)
    lines += _dagster_section(results)
    if results.get("api"):
        lines += _api_section(results["api"])
    if before:
        lines += _before_after(before, results)
    lines.append(METHOD)
    return "\n".join(lines)


def _environments(environments: dict) -> list[str]:
    """One row per environment: crm-roi's own (the product's dependencies only) and the harness's."""
    names = [name for name in environments["bench"] if name != "executable"]
    lines = ["| environment | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for role, label in (("crm_roi", "crm-roi, (a), fake server"), ("bench", "harness, (b), dlt")):
        env = environments[role]
        lines.append(f"| {label}: `{env['executable']}` | " + " | ".join(env.get(n, "") for n in names) + " |")
    if environments["crm_roi"].get("pandas", "not installed") != "not installed":
        lines += ["", "**Warning:** crm-roi ran in an environment with pandas installed; `import pandera` then "
                  "imports pandas, so its start-up time and memory are above what a production install has."]
    return lines


def _code_line(code: dict | None) -> str:
    if not code:
        return "Code: not recorded."
    if not code["uncommitted"]:
        return f"Code: commit {code['commit']}, product files unchanged from it."
    return (f"Code: commit {code['commit']} with uncommitted changes to {', '.join(code['uncommitted'])} "
            "(the numbers are of that working tree, not of the commit).")


def _size_section(n: int, size: dict) -> list[str]:
    runs = size["runs"]
    files = ", ".join(f"{name} {mb:,} MB" for name, mb in size["data"]["csv_mb"].items())
    lines = [f"## N = {n:,} deals", "", f"Exports: {files}.", "",
             "| variant | wall s, median [min-max] | CPU s (user + sys) | peak RSS MiB |", "|---|---|---|---|"]
    for variant, label in LABELS.items():
        if runs.get(variant):
            stats = summarise(runs[variant])
            lines.append(f"| {label} | {_cell(stats['wall_s'])} | {_cell(stats['cpu_s'])} | "
                         f"{_cell(stats['rss_mb'], 0)} |")
    walls = {v: _wall(size, v) for v in LABELS}
    rss = {v: _median(runs[v], lambda r: r["rss_mb"]) if runs.get(v) else None for v in LABELS}
    lines += ["", "Ratios of medians: "
              f"(c)/(a) wall {_ratio(walls['crm_roi_full'], walls['bare_duckdb'])}, "
              f"RSS {_ratio(rss['crm_roi_full'], rss['bare_duckdb'])}; "
              f"(c)/(b) wall {_ratio(walls['crm_roi_full'], walls['pandas_pandera'])}, "
              f"RSS {_ratio(rss['crm_roi_full'], rss['pandas_pandera'])}; "
              f"(c)/(e) wall {_ratio(walls['crm_roi_full'], walls['dbt_duckdb'])}, "
              f"RSS {_ratio(rss['crm_roi_full'], rss['dbt_duckdb'])}; "
              f"(d)/(c) wall {_ratio(walls['crm_roi_incremental'], walls['crm_roi_full'])}.", ""]
    for variant in ("bare_duckdb", "pandas_pandera", "dbt_duckdb"):
        if runs.get(variant):
            phases = runs[variant][0]["detail"]["phases"]
            medians = {p: _median(runs[variant], lambda r, p=p: r["detail"]["phases"][p]) for p in phases}
            text = ", ".join(f"{p.removesuffix('_s')} {value:.2f} s" for p, value in medians.items())
            lines.append(f"- {LABELS[variant]} phases (median): {text}.")
    for variant in ("crm_roi_full", "crm_roi_incremental"):
        if runs.get(variant):
            job = _median(runs[variant], lambda r: r["detail"]["dagster"]["job_wall_s"])
            steps = _median(runs[variant], lambda r: r["detail"]["dagster"]["step_sum_s"])
            outside = _median(runs[variant], lambda r: r["wall_s"] - r["detail"]["dagster"]["job_wall_s"])
            slowest = sorted(runs[variant][0]["detail"]["dagster"]["steps"].items(), key=lambda kv: -kv[1])[:3]
            lines.append(f"- {LABELS[variant]}: job {job:.2f} s of which steps {steps:.2f} s "
                         f"(slowest in run 1: {', '.join(f'{k} {v:.2f} s' for k, v in slowest)}); "
                         "outside the job (Python start, imports, Dagster instance, config checks, summary) "
                         f"{outside:.2f} s.")
    if runs.get("crm_roi_full"):
        reference = runs["crm_roi_full"][0]["detail"]["kpi"]
        for variant in ("bare_duckdb", "pandas_pandera", "dbt_duckdb"):
            if runs.get(variant):
                wrong = kpi_mismatches(reference, runs[variant][0]["detail"]["kpi"])
                verdict = "equal" if not wrong else f"DIFFERENT in {len(wrong)} months, first {wrong[0]}"
                lines.append(f"- KPI cross-check, {LABELS[variant]} against crm-roi's kpi.periodic "
                             f"(revenue won and deals won, {len(reference)} months): {verdict}.")
    return [*lines, ""]


def _dagster_section(results: dict) -> list[str]:
    lines = ["## Dagster's own overhead", "",
             "Two measures (see *How the numbers are made*): in the real run, the ephemeral instance's creation "
             "plus the job's wall time less the sum of its step durations; and a job of the same shape whose "
             "steps do nothing (instance included).", ""]
    noop = results.get("dagster_noop")
    if noop:
        def noop_cell(key: str) -> str:
            return _cell(spread([r["detail"][key] for r in noop]))

        lines.append(f"- no-op job of the same shape ({noop[0]['detail']['steps']} steps): job "
                     f"{noop_cell('job_wall_s')} s; import dagster {noop_cell('dagster_import_s')} s; import and "
                     f"build crm-roi's definitions {noop_cell('defs_import_and_build_s')} s; whole process "
                     f"{_cell(summarise(noop)['wall_s'])} s.")
    for n, size in sorted(results["sizes"].items(), key=lambda item: int(item[0])):
        for variant in ("crm_roi_full", "crm_roi_incremental"):
            if size["runs"].get(variant):
                runs = size["runs"][variant]

                def cell(key: str, runs: list[dict] = runs) -> str:
                    return _cell(spread([r["detail"]["dagster"][key] for r in runs]))

                lines.append(f"- {LABELS[variant]} at N = {int(n):,}: around the steps {cell('overhead_s')} s "
                             f"(instance {cell('instance_s')} s, job {cell('job_wall_s')} s, steps "
                             f"{cell('step_sum_s')} s); import dagster {cell('dagster_import_s')} s.")
    return [*lines, ""]


def _api_section(api: dict) -> list[str]:
    lines = [f"## API sync (e): {api['deals']:,} deals from the fake HubSpot", "",
             f"The fake serves {api['live']:,} live and {api['archived']:,} archived deals; list pages hold "
             f"{api['page_size']} deals (HubSpot's limit with stage history), so a full sync needs at least "
             f"{api['minimum_list_requests']:,} list requests; crm-roi also reads the deal pipelines and the "
             f"portal currency once ({api['metadata_requests']} requests). The server runs in its own process "
             "(its CPU is not in the clients' figures) with HubSpot's rate limits lifted.", "",
             "| client | wall s | CPU s | peak RSS MiB | deals landed | rows/s | requests: list / all |",
             "|---|---|---|---|---|---|---|"]
    for client, label in (("crm_roi", "crm-roi connector + sync_stream"), ("dlt", "dlt rest_api → duckdb")):
        runs = api["runs"][client]
        stats = summarise(runs)
        listed, total = api_requests(runs[0])
        lines.append(f"| {label} | {_cell(stats['wall_s'])} | {_cell(stats['cpu_s'])} | "
                     f"{_cell(stats['rss_mb'], 0)} | {runs[0]['detail']['rows']:,} | {_cell(api_rates(runs), 0)} | "
                     f"{listed:,} / {total:,} |")
    return [*lines, ""]


def _before_after(before: dict, after: dict) -> list[str]:
    lines = ["## Before / after", "", f"Before: `{before['command']}` ({before['started']}).", "",
             "| N | variant | wall s before → now | peak RSS MiB before → now |", "|---|---|---|---|"]
    for n, size in sorted(after["sizes"].items(), key=lambda item: int(item[0])):
        old = before["sizes"].get(n)
        for variant, label in LABELS.items():
            if old and old["runs"].get(variant) and size["runs"].get(variant):
                was, now = summarise(old["runs"][variant]), summarise(size["runs"][variant])
                lines.append(f"| {int(n):,} | {label} | {was['wall_s']['median']:.2f} → {now['wall_s']['median']:.2f} "
                             f"({_ratio(now['wall_s']['median'], was['wall_s']['median'])}) | "
                             f"{was['rss_mb']['median']:,.0f} → {now['rss_mb']['median']:,.0f} |")
    return [*lines, ""]


METHOD = """## How the numbers are made

- Data: `bench/generate.py` writes the canonical exports of N deals with DuckDB (2 stage-history rows per
  deal, N/10 customers, N/2 GL lines, N/5 survey answers); the same N gives the same files. They are generated
  once per N under `--work` and read once before measuring, so every variant reads from the page cache.
- Each run is its own process, started with `subprocess.Popen` and reaped with `os.wait4(pid)`: wall time
  around it, CPU time = its user + system time (with any children it waited for), peak RSS = `ru_maxrss` of
  the largest process in its tree. Rounds are interleaved (a b c d, a b c d, ...) so a busy spell on the
  machine hits every variant; the tables show median [min-max].
- Two environments from the same `uv.lock`: crm-roi, (a) and the fake server run in `.venv` (`make setup`:
  the product's dependencies and the dev tools, no pandas, as in production); the harness, (b) and dlt in
  `bench/.venv` (plus the `bench` extra). With pandas installed, `import pandera` imports it, which would add
  seconds and some 60 MiB to every crm-roi run.
- (a) `bench/bare_duckdb.py`: a fresh DuckDB file; every CSV loaded with `read_csv(..., columns = {...})`
  (explicit types); the row rules as one SQL count per table; the monthly KPIs (revenue won, deals won and
  lost, win rate, average deal size, median cycle, GL costs) with crm-roi's cut-off and FX rules.
- (b) `bench/pandas_pandera.py`: `pandas.read_csv` of the deals, stage history, GL and FX files with the same
  types; Pandera (pandas backend) DataFrameModels with `lazy=True`; the same KPIs with `groupby`.
- (e) `bench/dbt_duckdb.py`: `dbt build` of `bench/dbt_project` with dbt-duckdb, in process: the same typed
  reads, each deal's latest version by `row_number()` (every row ranked, as dbt projects do), the row rules as
  dbt tests (severity warn, so the KPIs are still built), the same monthly KPIs.
- (c) `crm-roi run --config <N>/crm_roi.yaml` on a fresh warehouse (no DuckDB files, no delta exports),
  `DAGSTER_HOME` unset (ephemeral instance), through `bench/crm_roi_run.py`, which is the console script
  plus a timer around `execute_in_process`.
- (d) after a full run (the round's timed (c) run, else an untimed one), `generate.write_delta(folder, 0.01)`
  adds `deals_delta_001.csv` (1% of the deals changed) and a second `crm-roi run` is timed.
- Dagster's overhead: (1) in each (c)/(d) run, the creation of the ephemeral instance plus the job's wall time
  less the sum of its STEP_SUCCESS durations (Dagster's step timer): instance, run start/end, planning, step
  launch, the event log between steps; (2)
  `bench/dagster_noop.py` mirrors every asset of crm-roi's definitions (keys, dependencies, checks) with a
  body that does nothing and runs that job in-process on an ephemeral instance: the cost of Dagster alone,
  including the events it writes inside each step. Importing dagster is reported beside it.
- KPI cross-check: revenue won and deals won per month of (a) and (b), computed independently, against
  crm-roi's `kpi.periodic` from the (c) run.
- (e) `bench/fake_server.py` serves `FakeHubSpot.from_canonical(<N folder>)` in its own process (rate limits
  lifted, list pages cut from a cached id-sorted list so the fake costs O(page)); `bench/api_sync.py` runs
  either crm-roi's HubSpot connector with `pipelines.api_sync.sync_stream` into a fresh DuckDB file, or dlt's
  `rest_api` source with the same query (limit 50, properties, stage history, company associations, then the
  archived deals; cursor `paging.next.after`; bearer token) into dlt's duckdb destination. Requests are counted
  by the server; rows/s = deals landed / wall time of the client process.

## How to profile

```
bench/.venv/bin/python -m bench.run --profile 1000000     # N deals; data cached under bench/.work/
```

runs `crm-roi run` on a fresh warehouse, then the 1% incremental run, each sampled by py-spy from outside
the process (crm-roi runs in `.venv` as benchmarked; `--native` shows DuckDB's own frames), and writes to
`bench/profiles/` (git-ignored): `crm_roi_full_<N>.svg` (flamegraph: open it in a browser, click to zoom),
`crm_roi_full_<N>.txt` (crm-roi's functions by inclusive time, all frames by self time),
`crm_roi_full_<N>.collapsed` (raw stacks, for speedscope or inferno), and the same for `crm_roi_incremental_<N>`.
Each run is sampled twice (flamegraph, raw stacks), after the same reset.
"""


def plot(results: dict, path: Path) -> None:
    """Wall time and peak RSS against N for (a), (b), (c), log-log, with a line of slope 1 (linear cost)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results["sizes"], key=int)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, metric, title in ((axes[0], "wall_s", "wall time (s)"), (axes[1], "rss_mb", "peak RSS (MiB)")):
        for variant in ("bare_duckdb", "pandas_pandera", "crm_roi_full"):
            points = [(int(n), summarise(results["sizes"][n]["runs"][variant])[metric]) for n in sizes
                      if results["sizes"][n]["runs"].get(variant)]
            if not points:
                continue
            xs = [n for n, _ in points]
            medians = [s["median"] for _, s in points]
            errors = [[s["median"] - s["min"] for _, s in points], [s["max"] - s["median"] for _, s in points]]
            axis.errorbar(xs, medians, yerr=errors, marker="o", capsize=3, label=LABELS[variant])
            if variant == "crm_roi_full" and len(xs) > 1:  # slope 1 through (c) at the largest N
                axis.plot(xs, [medians[-1] * n / xs[-1] for n in xs], "k:", label="linear: cost ∝ N, through (c)")
        axis.set(xscale="log", yscale="log", xlabel="deals (N)", title=title)
        axis.grid(True, which="both", alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.suptitle(f"crm-roi benchmark ({results['machine']['cores']} cores), median and min-max of "
                    f"{results['repeat']} run(s)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
