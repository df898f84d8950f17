select * from {{ ref('deals') }}
where (is_closed and closed_at is null) or (is_won and not is_closed)
   or cast(closed_at as date) < cast(created_at as date) or amount < 0 or (amount is not null and currency is null)
