-- Refunded amount booked in the ISO week over the paid order amount of the week, by region: a ratio's two parts
-- (numerator = refunded amount, denominator = paid amount; value = numerator / denominator).
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
       COALESCE(r.amount, 0) AS numerator,
       p.amount AS denominator
FROM paid AS p
LEFT JOIN refunded AS r ON r.region = p.region
