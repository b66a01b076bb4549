-- Share of the period's new leads (marketing) that turned into a paid order (sales), by region: a ratio.
-- numerator = converted leads, denominator = new leads; Metrics Center computes value = numerator / denominator.
WITH new_leads AS (
    SELECT region, COUNT(*) AS leads
    FROM leads
    WHERE created_at >= DATE '{{ period_start }}' AND created_at < DATE '{{ period_end }}'
    GROUP BY region
),
converted AS (
    SELECT region, COUNT(DISTINCT lead_id) AS converted
    FROM orders
    WHERE lead_id IS NOT NULL AND status = 'paid'
    GROUP BY region
)
SELECT DATE '{{ period_start }}' AS period_start,
       l.region,
       COALESCE(c.converted, 0) AS numerator,
       l.leads AS denominator
FROM new_leads AS l
LEFT JOIN converted AS c ON c.region = l.region
