-- Refund rate per region: the day's refunds over its gross paid amount (GMV is already net of refunds), as a
-- ratio's two parts: numerator = refunds, denominator = GMV + refunds (value = numerator / denominator).
-- gmv and refunds are the published values of gmv_daily and refunds_daily for the day.
WITH g AS (
    SELECT region, SUM(value) AS gmv FROM gmv GROUP BY region
),
r AS (
    SELECT region, SUM(value) AS refunds FROM refunds GROUP BY region
)
SELECT DATE '{{ period_start }}' AS period_start,
       g.region,
       COALESCE(r.refunds, 0) AS numerator,
       g.gmv + COALESCE(r.refunds, 0) AS denominator
FROM g
LEFT JOIN r ON r.region = g.region
WHERE g.gmv + COALESCE(r.refunds, 0) > 0
