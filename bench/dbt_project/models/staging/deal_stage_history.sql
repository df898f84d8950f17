select distinct *
from {{ read_export('deal_stage_history', "{'deal_id': 'VARCHAR', 'stage': 'VARCHAR', 'entered_at': 'TIMESTAMP'}") }}
