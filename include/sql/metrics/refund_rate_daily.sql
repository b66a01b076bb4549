-- Refund rate per region: the day's refunds over its gross paid amount (GMV is already net of refunds).
-- gmv and refunds are the published values of gmv_daily and refunds_daily for the day.
WITH g AS (
    SELECT region, SUM(value) AS gmv FROM gmv GROUP BY region
),
r AS (
    SELECT region, SUM(value) AS refunds FROM refunds GROUP BY region
)
SELECT DATE '{{ period_start }}' AS period_start,
       g.region,
       COALESCE(r.refunds, 0) / (g.gmv + COALESCE(r.refunds, 0)) AS value
FROM g
LEFT JOIN r ON r.region = g.region
WHERE g.gmv + COALESCE(r.refunds, 0) > 0
