-- Refunded amount booked in the ISO week over the paid order amount of the week, by region.
WITH paid AS (
    SELECT region, SUM(amount) AS amount
    FROM orders
    WHERE status = 'paid'
    GROUP BY region
),
refunded AS (
    SELECT CAST(region AS VARCHAR) AS region, SUM(CAST(amount AS DOUBLE)) AS amount
    FROM refunds
    WHERE CAST(refunded_at AS TIMESTAMP) >= DATE '{{ period_start }}'
      AND CAST(refunded_at AS TIMESTAMP) < DATE '{{ period_end }}'
    GROUP BY 1
)
SELECT DATE '{{ period_start }}' AS period_start,
       p.region,
       COALESCE(r.amount, 0) / p.amount AS value
FROM paid AS p
LEFT JOIN refunded AS r ON r.region = p.region
