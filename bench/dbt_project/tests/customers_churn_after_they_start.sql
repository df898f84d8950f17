select * from {{ ref('customers') }} where churned_at < started_at or mrr < 0
