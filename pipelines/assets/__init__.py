"""Dagster assets by layer: raw -> staging -> kpi -> roi, each a DuckDB schema."""

import dagster as dg

# DuckDB admits one writing process: every asset takes the one slot of this pool (dagster.yaml).
POOL = "duckdb"


def table_key(table: str) -> dg.AssetKey:
    """The asset of a table: 'kpi.periodic' -> kpi/periodic (raw streams too: 'raw.deals' -> raw/deals)."""
    return dg.AssetKey(table.split("."))
