-- The monthly KPIs of bench/bare_duckdb.py: live deals closed before the cut-off, amounts in the
-- base currency at the rate on or before the close date; spend and CRM cost from the ledger.
with live as (
    select d.*, d.amount * case when d.currency = '{{ var("base_currency") }}' then 1.0 else fx.rate_to_base end
        as amount_base
    from {{ ref('deals') }} as d
    asof left join {{ ref('fx_rates') }} as fx
        on d.currency = fx.currency and cast(coalesce(d.closed_at, d.created_at) as date) >= fx.date
    where not d.is_deleted
),
closed as (
    select
        cast(date_trunc('month', closed_at) as date) as month,
        count(*) filter (where is_won) as deals_won,
        count(*) filter (where not is_won) as deals_lost,
        coalesce(sum(amount_base) filter (where is_won), 0) as revenue_won,
        avg(amount_base) filter (where is_won) as avg_deal_size,
        median(date_diff('day', cast(created_at as date), cast(closed_at as date))) filter (where is_won)
            as median_cycle_days
    from live
    where is_closed and closed_at < timestamp '{{ var("cutoff") }}'
    group by all
),
accounts as (
    select * from (values {% for account, category in var("accounts").items() %}('{{ account }}', '{{ category }}'){{ "," if not loop.last }}{% endfor %}) as a(account, category)
),
costs as (
    select cast(date_trunc('month', g.posted_on) as date) as month,
           sum(g.amount) filter (where a.category = 'sales_marketing') as sales_marketing_spend,
           sum(g.amount) filter (where a.category like 'crm\_%' escape '\') as crm_cost
    from {{ ref('finance_gl') }} as g
    join accounts as a using (account)
    where g.posted_on < cast('{{ var("cutoff") }}' as date)
    group by all
)
select month, deals_won, deals_lost, deals_won / nullif(deals_won + deals_lost, 0) as win_rate,
       revenue_won, avg_deal_size, median_cycle_days, sales_marketing_spend, crm_cost
from closed full join costs using (month)
order by month
