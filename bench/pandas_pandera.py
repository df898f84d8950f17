"""Variant (b), what a user would otherwise write: pandas reads the exports, Pandera validates, groupby aggregates.

The same files and column types as the bare-DuckDB variant, validated with
Pandera's pandas backend (lazy=True, so every failure is collected, as a
quarantine needs), and the same monthly KPIs computed with pandas. crm-roi
must sit next to the DuckDB lower bound, not next to this.

    python -m bench.pandas_pandera FOLDER [--detail FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from bench.canonical import BASE_CURRENCY, INTEGER, SCHEMAS, cutoff, kpi_rows
from bench.generate import ACCOUNTS
from bench.measure import write_detail
from connectors.contract import BOOL, DATE, NUMBER, TEXT, TIMESTAMP

# pandas parses ISO timestamps with a Z as microsecond UTC; dates are read the same way.
UtcTime = Annotated[pd.DatetimeTZDtype, "us", "UTC"]
PANDAS_DTYPES = {TEXT: "str", BOOL: "bool", NUMBER: "float64", INTEGER: "int64"}
VALIDATED = ("deals", "deal_stage_history", "finance_gl")  # fx_rates is read too: amounts are converted
CURRENCIES = ["USD", "EUR", "GBP"]


class Deals(pa.DataFrameModel):
    """The deals rules of bare_duckdb.ROW_RULES, as a Pandera model."""

    deal_id: Series[str] = pa.Field(unique=True)
    deal_name: Series[str] = pa.Field(nullable=True)
    account_id: Series[str] = pa.Field(nullable=True)
    owner_id: Series[str] = pa.Field(nullable=True)
    pipeline: Series[str] = pa.Field(nullable=True)
    stage: Series[str] = pa.Field(nullable=True)
    is_closed: Series[bool]
    is_won: Series[bool]
    amount: Series[float] = pa.Field(ge=0, nullable=True)
    currency: Series[str] = pa.Field(isin=CURRENCIES, nullable=True)
    created_at: Series[UtcTime]
    closed_at: Series[UtcTime] = pa.Field(nullable=True)
    updated_at: Series[UtcTime] = pa.Field(nullable=True)
    is_deleted: Series[bool]

    class Config:
        strict = True

    @pa.dataframe_check
    def closed_has_closed_at(cls, df: pd.DataFrame) -> Series[bool]:
        return ~df["is_closed"] | df["closed_at"].notna()

    @pa.dataframe_check
    def won_is_closed(cls, df: pd.DataFrame) -> Series[bool]:
        return ~df["is_won"] | df["is_closed"]

    @pa.dataframe_check
    def closed_after_created(cls, df: pd.DataFrame) -> Series[bool]:
        return df["closed_at"].isna() | (df["closed_at"].dt.floor("D") >= df["created_at"].dt.floor("D"))

    @pa.dataframe_check
    def amount_has_currency(cls, df: pd.DataFrame) -> Series[bool]:
        return df["amount"].isna() | df["currency"].notna()


class StageHistory(pa.DataFrameModel):
    deal_id: Series[str]
    stage: Series[str]
    entered_at: Series[UtcTime]

    class Config:
        strict = True


class FinanceGl(pa.DataFrameModel):
    entry_id: Series[str] = pa.Field(unique=True)
    posted_on: Series[UtcTime]
    account: Series[str]
    description: Series[str] = pa.Field(nullable=True)
    vendor: Series[str] = pa.Field(nullable=True)
    amount: Series[float]
    currency: Series[str] = pa.Field(isin=CURRENCIES)

    class Config:
        strict = True


MODELS: dict[str, type[pa.DataFrameModel]] = {"deals": Deals, "deal_stage_history": StageHistory,
                                              "finance_gl": FinanceGl}


def read(folder: Path, table: str) -> pd.DataFrame:
    """One export with explicit dtypes; timestamp and date columns parsed by read_csv itself."""
    schema = SCHEMAS[table]
    dates = [name for name, kind in schema.items() if kind in (TIMESTAMP, DATE)]
    dtypes = {name: PANDAS_DTYPES[kind] for name, kind in schema.items() if name not in dates}
    frame = pd.read_csv(folder / f"{table}.csv", dtype=dtypes, parse_dates=dates)
    for name in dates:  # dates have no Z: make them UTC like the timestamps
        if frame[name].dt.tz is None:
            frame[name] = frame[name].dt.tz_localize("UTC")
    return frame


def failures(model: type[pa.DataFrameModel], frame: pd.DataFrame) -> int:
    """Rows Pandera rejects (lazy: every check runs, all failures are collected)."""
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return int(errors.failure_cases["index"].nunique())
    return 0


def monthly_kpis(deals: pd.DataFrame, fx: pd.DataFrame, gl: pd.DataFrame, cut: pd.Timestamp) -> pd.DataFrame:
    """revenue won, deals won/lost, win rate, avg deal size, median cycle and GL costs per month."""
    live = deals[~deals["is_deleted"]].copy()
    live["rate_date"] = live["closed_at"].fillna(live["created_at"]).dt.floor("D")
    live = pd.merge_asof(live.sort_values("rate_date"), fx.sort_values("date"), left_on="rate_date",
                         right_on="date", by="currency", direction="backward")
    live["amount_base"] = live["amount"] * live["rate_to_base"].where(live["currency"] != BASE_CURRENCY, 1.0)
    closed = live[live["is_closed"] & (live["closed_at"] < cut)].copy()
    closed["month"] = closed["closed_at"].dt.tz_localize(None).dt.to_period("M").dt.start_time
    closed["cycle_days"] = (closed["closed_at"].dt.floor("D") - closed["created_at"].dt.floor("D")).dt.days
    won = closed[closed["is_won"]].groupby("month").agg(
        deals_won=("deal_id", "size"), revenue_won=("amount_base", "sum"), avg_deal_size=("amount_base", "mean"),
        median_cycle_days=("cycle_days", "median"))
    lost = closed[~closed["is_won"]].groupby("month").size().rename("deals_lost")
    kpis = won.join(lost, how="outer").fillna({"deals_won": 0, "deals_lost": 0, "revenue_won": 0.0})
    kpis["win_rate"] = kpis["deals_won"] / (kpis["deals_won"] + kpis["deals_lost"])
    gl = gl[gl["posted_on"] < cut].assign(category=gl["account"].map(ACCOUNTS))
    gl["month"] = gl["posted_on"].dt.tz_localize(None).dt.to_period("M").dt.start_time
    costs = gl.pivot_table(index="month", columns="category", values="amount", aggfunc="sum")
    return kpis.join(costs, how="outer").sort_index()


def run(folder: Path) -> dict:
    """Read, validate and aggregate; return the phase times, counts and KPI series."""
    started = time.perf_counter()
    frames = {table: read(folder, table) for table in (*VALIDATED, "fx_rates")}
    phases = {"read_s": time.perf_counter() - started}
    started = time.perf_counter()
    rejected = {table: failures(MODELS[table], frames[table]) for table in VALIDATED}
    phases["validate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    cut = pd.Timestamp(cutoff(folder), tz="UTC")
    kpis = monthly_kpis(frames["deals"], frames["fx_rates"], frames["finance_gl"], cut)
    phases["kpi_s"] = time.perf_counter() - started
    won = kpis[kpis["deals_won"].notna()]
    return {"phases": {k: round(v, 3) for k, v in phases.items()},
            "rows": {table: len(frame) for table, frame in frames.items()}, "rule_violations": rejected,
            "kpi": kpi_rows(list(won.index), list(won["revenue_won"]), list(won["deals_won"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="canonical export folder (bench.generate)")
    parser.add_argument("--detail", help="write phase times, row counts and the KPI series here (JSON)")
    args = parser.parse_args()
    write_detail(args.detail, run(args.folder.resolve()))


if __name__ == "__main__":
    main()
