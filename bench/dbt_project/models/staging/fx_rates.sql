select * from {{ read_export('fx_rates', "{'date': 'DATE', 'currency': 'VARCHAR', 'rate_to_base': 'DOUBLE'}") }}
