"""Export-file connector: reads CRM and finance export files into DuckDB.

Plain Python and DuckDB; no Dagster. Profiles map each CRM's export layout onto
the canonical columns, so everything downstream sees one shape.
"""
