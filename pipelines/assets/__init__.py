"""Dagster assets by layer: raw -> staging -> kpi -> roi, each a DuckDB schema."""
