"""Pandera schemas for the staging tables: the contract downstream SQL relies on.

The row rules in `sql/staging/` quarantine bad rows; these schemas then prove
that what reached staging honours the contract (types, keys, ranges, the
closed/won logic), so a bug in a model cannot quietly feed the KPIs.
"""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl


class _Base(pa.DataFrameModel):
    class Config:
        strict = False  # extra bookkeeping columns (batch_id) are fine
        coerce = False


class FxRates(_Base):
    source: str
    date: dt.date
    currency: str = pa.Field(str_matches=r"^[A-Z]{3}$")
    rate_to_base: float = pa.Field(gt=0)


class Deals(_Base):
    source: str
    deal_id: str
    is_closed: bool
    is_won: bool
    is_deleted: bool
    amount: float = pa.Field(nullable=True)
    currency: str = pa.Field(nullable=True)
    amount_base: float = pa.Field(nullable=True)
    created_at: dt.datetime
    closed_at: dt.datetime = pa.Field(nullable=True)
    updated_at: dt.datetime

    @pa.dataframe_check(error="is_won implies is_closed")
    def won_deals_are_closed(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(~pl.col("is_won") | pl.col("is_closed"))

    @pa.dataframe_check(error="closed deals have closed_at on or after created_at's date")
    def closed_after_created(cls, data: pa.PolarsData) -> pl.LazyFrame:
        closed = pl.col("closed_at")
        return data.lazyframe.select(
            ~pl.col("is_closed")
            | (closed.is_not_null() & (closed.dt.date() >= pl.col("created_at").dt.date()))
        )

    @pa.dataframe_check(error="an amount is priced in the base currency")
    def amounts_are_priced(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("amount").is_null() | pl.col("amount_base").is_not_null())


class DealAmounts(_Base):
    """A deal without an amount adds 0 to revenue, which understates it."""

    amount: float = pa.Field(nullable=False)


class DealStageHistory(_Base):
    source: str
    deal_id: str
    stage: str
    entered_at: dt.datetime
    exited_at: dt.datetime = pa.Field(nullable=True)

    @pa.dataframe_check(error="exited_at before entered_at")
    @classmethod
    def exit_after_entry(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("exited_at").is_null() | (pl.col("exited_at") >= pl.col("entered_at"))
        )


class Customers(_Base):
    source: str
    customer_id: str
    started_at: dt.datetime
    churned_at: dt.datetime = pa.Field(nullable=True)
    mrr: float = pa.Field(nullable=True)

    @pa.dataframe_check(error="churned_at is not before started_at")
    def churn_after_start(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            pl.col("churned_at").is_null() | (pl.col("churned_at") >= pl.col("started_at"))
        )


class FinanceGl(_Base):
    source: str
    entry_id: str
    posted_on: dt.date
    account: str
    category: str = pa.Field(
        nullable=True,
        isin=[
            "crm_software", "crm_implementation", "crm_training", "crm_support",
            "crm_hardware", "sales_marketing", "operating_cost",
        ],
    )
    amount: float
    currency: str
    amount_base: float


class Csat(_Base):
    source: str
    response_id: str
    responded_at: dt.datetime
    score: float


class CrmUsage(_Base):
    period_start: dt.date
    active_users: float = pa.Field(ge=0)
    licensed_seats: float = pa.Field(ge=0)
