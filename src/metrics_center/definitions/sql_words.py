"""Words a column may not be called: the columns the mart adds beside the dimensions, and SQL reserved words.

A dimension becomes a column of the metric's relation in the mart (``region``, ``channel``…), read by BI tools
that do not always quote identifiers; so it may be neither one of the columns we add there nor a reserved word of
SQL (Postgres's reserved key words, which cover SQL:2016's common ones and SQLite's that matter).
"""

from __future__ import annotations

#: Columns of a metric's relations besides its dimensions (the mart adds them).
ADDED_COLUMNS = frozenset(
    {
        "period_start",
        "period_end",
        "period",
        "value",
        "numerator",
        "denominator",
        "unit",
        "definition_version",
        "approved_by",
        "published_at",
        "is_current",
        "valid_from",
        "valid_to",
        "superseded_at",
        "publication_id",
        "run_id",
        "metric_key",
        "dimensions",
        "restatement",
    }
)

#: Postgres's reserved key words (Appendix C of its manual, "reserved" and "reserved (can be function or type)").
SQL_RESERVED = frozenset(
    ["all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization", "binary", "both", "case", "cast", "check", "collate", "collation", "column", "concurrently", "constraint", "create", "cross", "current_catalog", "current_date", "current_role", "current_schema", "current_time", "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "false", "fetch", "for", "foreign", "freeze", "from", "full", "grant", "group", "having", "ilike", "in", "initially", "inner", "intersect", "into", "is", "isnull", "join", "lateral", "leading", "left", "like", "limit", "localtime", "localtimestamp", "natural", "not", "notnull", "null", "offset", "on", "only", "or", "order", "outer", "overlaps", "placing", "primary", "references", "returning", "right", "select", "session_user", "similar", "some", "symmetric", "system_user", "table", "tablesample", "then", "to", "trailing", "true", "union", "unique", "user", "using", "variadic", "verbose", "when", "where", "window", "with"]
)
