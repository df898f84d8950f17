select * exclude (version_rank) from (
    select *, row_number() over (partition by entry_id) as version_rank
    from {{ read_export('finance_gl', "{'entry_id': 'VARCHAR', 'posted_on': 'DATE', 'account': 'VARCHAR',
        'description': 'VARCHAR', 'vendor': 'VARCHAR', 'amount': 'DOUBLE', 'currency': 'VARCHAR'}") }}
)
where version_rank = 1
