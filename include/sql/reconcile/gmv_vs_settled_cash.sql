-- Finance's number for GMV: the cash settled for the day's orders, net of the day's refunds, by region.
-- Finance exports it the next morning (settlements_<export date>.csv = the day before): the source path
-- uses ds (the run's business day), the rows are filtered on the order day.
SELECT CAST(order_date AS DATE) AS period_start,
       CAST(region AS VARCHAR) AS region,
       SUM(CAST(amount AS DOUBLE)) AS value
FROM settlements
WHERE CAST(order_date AS DATE) = DATE '{{ period_start }}'
GROUP BY 1, 2
