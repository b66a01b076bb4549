-- GMV: paid (not cancelled) orders of the day minus the refunds booked that day, by region and channel.
WITH paid AS (
    SELECT region, channel, SUM(amount) AS amount
    FROM orders
    WHERE status = 'paid'
    GROUP BY region, channel
),
refunded AS (
    SELECT CAST(region AS VARCHAR) AS region, CAST(channel AS VARCHAR) AS channel, SUM(CAST(amount AS DOUBLE)) AS amount
    FROM refunds
    WHERE CAST(refunded_at AS TIMESTAMP) >= DATE '{{ period_start }}'
      AND CAST(refunded_at AS TIMESTAMP) < DATE '{{ period_end }}'
    GROUP BY 1, 2
)
SELECT DATE '{{ period_start }}' AS period_start,
       p.region,
       p.channel,
       p.amount - COALESCE(r.amount, 0) AS value
FROM paid AS p
LEFT JOIN refunded AS r ON r.region = p.region AND r.channel = p.channel
