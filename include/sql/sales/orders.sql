-- Orders placed in the run's period, from the sales database (connection sales_db, SQLite in the demo).
-- period_start/period_end are the business period [start, end) as ISO dates.
SELECT order_id, ordered_at, region, channel, lead_id, amount, status
FROM orders
WHERE ordered_at >= '{{ period_start }}'
  AND ordered_at < '{{ period_end }}'
