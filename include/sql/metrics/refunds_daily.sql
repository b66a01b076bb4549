-- Refunds booked in the day, by region and channel (finance's export of the next morning).
SELECT DATE '{{ period_start }}' AS period_start,
       CAST(region AS VARCHAR) AS region,
       CAST(channel AS VARCHAR) AS channel,
       SUM(CAST(amount AS DOUBLE)) AS value
FROM refunds
WHERE CAST(refunded_at AS TIMESTAMP) >= DATE '{{ period_start }}'
  AND CAST(refunded_at AS TIMESTAMP) < DATE '{{ period_end }}'
GROUP BY 2, 3
