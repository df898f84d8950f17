-- One row per deal: the latest updated_at wins (the usual dbt dedup, every row ranked).
select * exclude (version_rank) from (
    select *, row_number() over (partition by deal_id order by updated_at desc nulls last) as version_rank
    from {{ read_export('deals', "{'deal_id': 'VARCHAR', 'deal_name': 'VARCHAR', 'account_id': 'VARCHAR',
        'owner_id': 'VARCHAR', 'pipeline': 'VARCHAR', 'stage': 'VARCHAR', 'is_closed': 'BOOLEAN', 'is_won': 'BOOLEAN',
        'amount': 'DOUBLE', 'currency': 'VARCHAR', 'created_at': 'TIMESTAMP', 'closed_at': 'TIMESTAMP',
        'updated_at': 'TIMESTAMP', 'is_deleted': 'BOOLEAN'}") }}
)
where version_rank = 1
