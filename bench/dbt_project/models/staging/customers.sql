select * exclude (version_rank) from (
    select *, row_number() over (partition by customer_id) as version_rank
    from {{ read_export('customers', "{'customer_id': 'VARCHAR', 'name': 'VARCHAR', 'started_at': 'TIMESTAMP',
        'churned_at': 'TIMESTAMP', 'mrr': 'DOUBLE'}") }}
)
where version_rank = 1
