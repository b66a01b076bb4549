"""One typed relation per metric, as BI tools read it: columns, labels, ratios, comments, and who may read it.

Registration builds ``metrics.<key>`` / ``metrics.<key>_history`` (``metrics__…`` on SQLite) from the definition;
publishing fills the metric's typed storage; a reader granted for a department reads exactly what that
department may — enforced by Postgres, tried here as the reader roles themselves.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import date

import pyarrow as pa
import pytest
import sqlalchemy as sa
from builders import metric_spec

from metrics_center.mart.definitions import register_definition
from metrics_center.mart.engine import create_mart_engine
from metrics_center.mart.publish import publish_values
from metrics_center.mart.roles import grant_reader

PG_ADMIN_URL = os.environ.get("METRICS_CENTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
postgres_only = pytest.mark.parametrize("mart", ["postgres"], indirect=True)
MONDAY = date(2026, 11, 23)


def _relation(mart, key: str, *, history: bool = False) -> str:
    suffix = "_history" if history else ""
    return f"metrics.{key}{suffix}" if mart.dialect.name == "postgresql" else f"metrics__{key}{suffix}"


def _register(mart, **overrides):
    spec = metric_spec(**{"dimensions": ["region"], **overrides})
    register_definition(
        mart, spec=spec, definition={"spec": spec.model_dump(mode="json")}, definition_hash=str(spec.version)
    )
    return spec


def _publish(mart, spec, rows: list[dict], *, day: date, run_id: str):
    table = pa.Table.from_pylist(
        [{"period_start": day, **row} for row in rows],
        schema=pa.schema(
            [("period_start", pa.date32())]
            + [(d, pa.string()) for d in spec.dimensions]
            + [(c, pa.float64()) for c in spec.value_columns]
        ),
    )
    return publish_values(
        mart,
        metric_key=spec.key,
        definition_version=spec.version,
        grain=spec.grain,
        dimensions=list(spec.dimensions),
        values=table,
        run_id=run_id,
        approved_by="review: bob",
    )


def _rows(mart, sql: str) -> list[tuple]:
    with mart.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def _columns(mart, relation: str) -> list[str]:
    with mart.connect() as conn:
        return list(conn.execute(sa.text(f"SELECT * FROM {relation} WHERE 1 = 0")).keys())


def test_a_ratio_metric_reads_as_typed_columns_with_its_parts_and_a_period_label(mart):
    spec = _register(
        mart,
        key="refund_rate",
        grain="week",
        unit="ratio",
        aggregation="ratio",
        dimensions=[{"name": "region", "description": "Sales region of the order."}, "channel"],
    )
    _publish(
        mart,
        spec,
        [
            {"region": "east", "channel": "app", "numerator": 10.0, "denominator": 100.0, "value": 0.1},
            {"region": "west", "channel": "app", "numerator": 30.0, "denominator": 50.0, "value": 0.6},
        ],
        day=MONDAY,
        run_id="r1",
    )
    relation = _relation(mart, "refund_rate")
    assert _columns(mart, relation) == [
        "period_start",
        "period_end",
        "period",
        "region",
        "channel",
        "value",
        "numerator",
        "denominator",
        "unit",
        "definition_version",
        "approved_by",
        "published_at",
    ]
    rows = _rows(
        mart, f"SELECT period, region, channel, value, unit, approved_by FROM {relation} ORDER BY region"
    )
    assert rows == [
        ("2026-W48", "east", "app", 0.1, "ratio", "review: bob"),
        ("2026-W48", "west", "app", 0.6, "ratio", "review: bob"),
    ]
    # The all-region rate a BI tool should show: SUM(numerator) / SUM(denominator), not SUM or AVG of values.
    [(rate, wrong_sum, wrong_avg)] = _rows(
        mart, f"SELECT SUM(numerator) / SUM(denominator), SUM(value), AVG(value) FROM {relation}"
    )
    assert (round(rate, 6), round(wrong_sum, 6), round(wrong_avg, 6)) == (0.266667, 0.7, 0.35)
    [(aggregation, grain, relation_name)] = _rows(
        mart, "SELECT aggregation, grain, relation FROM metric_dictionary WHERE metric_key = 'refund_rate'"
    )
    assert (aggregation, grain, relation_name) == ("ratio", "week", relation)


@pytest.mark.parametrize(
    ("grain", "day", "label"),
    [
        ("day", date(2026, 11, 27), "2026-11-27"),
        ("month", date(2026, 11, 1), "2026-11"),
        ("week", date(2026, 12, 28), "2026-W53"),
        ("week", date(2027, 1, 4), "2027-W01"),
    ],
)
def test_period_labels_read_as_people_write_them(mart, grain, day, label):
    spec = _register(mart, key=f"m_{grain}", grain=grain)
    _publish(mart, spec, [{"region": "east", "value": 1.0}], day=day, run_id="r1")
    assert _rows(mart, f"SELECT period FROM {_relation(mart, spec.key)}") == [(label,)]


def test_a_version_that_changes_dimensions_replaces_the_relation_and_keeps_history(mart):
    v1 = _register(mart, dimensions=["region", "channel"])
    _publish(mart, v1, [{"region": "east", "channel": "app", "value": 1.0}], day=MONDAY, run_id="r1")
    v2 = _register(mart, version=2, dimensions=["region", "store"])
    _publish(mart, v2, [{"region": "east", "store": "s1", "value": 2.0}], day=MONDAY, run_id="r2")
    current, history = _relation(mart, "m"), _relation(mart, "m", history=True)
    assert "store" in _columns(mart, current) and "channel" not in _columns(mart, current)
    assert _rows(mart, f"SELECT region, store, value FROM {current}") == [("east", "s1", 2.0)]
    rows = _rows(mart, f"SELECT definition_version, store, value, is_current FROM {history} ORDER BY 1")
    assert [(v, s, x, bool(c)) for v, s, x, c in rows] == [(1, None, 1.0, False), (2, "s1", 2.0, True)]
    # The tall view keeps each version's own dimensions.
    tall = _rows(mart, "SELECT definition_version, dimensions FROM metric_value_history ORDER BY 1")
    dims = [d if isinstance(d, dict) else json.loads(d) for _, d in tall]
    assert dims == [{"channel": "app", "region": "east"}, {"region": "east", "store": "s1"}]


@postgres_only
def test_every_column_of_every_view_and_relation_says_what_it_holds(mart):
    """What Superset copies into its dataset descriptions: no column a BI user reads goes without a comment."""
    _register(
        mart, key="gmv", aggregation="sum", dimensions=[{"name": "region", "description": "Sales region."}]
    )
    _register(mart, key="rate", aggregation="ratio", dimensions=["region", "channel"], grain="month")
    with mart.connect() as conn:
        missing = (
            conn.execute(
                sa.text(
                    "SELECT n.nspname || '.' || c.relname || '.' || a.attname FROM pg_attribute a"
                    " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname IN ('metrics', 'metrics_mart') AND c.relkind = 'v' AND a.attnum > 0"
                    " AND NOT a.attisdropped AND coalesce(col_description(c.oid, a.attnum), '') = ''"
                    " AND c.relname <> 'metric_value_all' ORDER BY 1"
                )
            )
            .scalars()
            .all()
        )
        views = (
            conn.execute(
                sa.text(
                    "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname IN ('metrics', 'metrics_mart') AND c.relkind = 'v'"
                    " AND coalesce(obj_description(c.oid), '') = '' ORDER BY 1"
                )
            )
            .scalars()
            .all()
        )
        value = conn.execute(sa.text("SELECT col_description('metrics.rate'::regclass, 6)")).scalar()
        region = conn.execute(
            sa.text(
                "SELECT col_description('metrics.gmv'::regclass, a.attnum) FROM pg_attribute a"
                " WHERE a.attrelid = 'metrics.gmv'::regclass AND a.attname = 'region'"
            )
        ).scalar()
    assert missing == [] and views == []
    assert "SUM(numerator) / SUM(denominator)" in value and "Unit: CNY" in value
    assert region == "Sales region."


# --- department access (权限分级), enforced by Postgres -------------------------------------------------------


@pytest.fixture
def reader_roles(mart):
    names: list[str] = []

    def new() -> str:
        names.append(f"mc_dept_{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield new
    admin = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    owner = sa.create_engine(admin.url.set(database=mart.url.database), isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'DROP OWNED BY "{name}"'))
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))
    owner.dispose()
    admin.dispose()


def _as(mart, role: str) -> sa.Engine:
    return create_mart_engine(mart.url.set(username=role, password=None))


def _denied(engine: sa.Engine, sql: str) -> None:
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), engine.connect() as conn:
        conn.execute(sa.text(sql)).all()


@postgres_only
def test_a_sales_reader_gets_nothing_of_finances_restricted_metric_and_everything_public(mart, reader_roles):
    public = _register(mart, key="gmv", department="sales")
    secret = _register(mart, key="payroll", department="finance", access="restricted", readers=["finance"])
    own = _register(mart, key="pipeline", department="sales", access="department")
    for spec in (public, secret, own):
        _publish(mart, spec, [{"region": "east", "value": 1.0}], day=MONDAY, run_id=f"r_{spec.key}")
    with mart.begin() as conn:  # an anomaly of the secret metric, as a quality check would store it
        conn.execute(
            sa.text(
                "INSERT INTO anomaly (metric_key, run_id, period_start, dimensions, value, method, baseline_points,"
                " definition_version, detected_at)"
                " VALUES ('payroll', 'r', :d, '{\"region\": \"east\"}', 1, 'zscore', 7, 1, now())"
            ),
            {"d": MONDAY},
        )
    sales, finance, everyone = reader_roles(), reader_roles(), reader_roles()
    grant_reader(engine=mart, role=sales, department="sales")
    grant_reader(engine=mart, role=finance, department="finance")
    grant_reader(engine=mart, role=everyone)

    reader = _as(mart, sales)
    try:
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT value FROM metrics.gmv")).scalars().all() == [1.0]
            assert conn.execute(sa.text("SELECT value FROM metrics.pipeline_history")).scalars().all() == [
                1.0
            ]
            for view in (
                "metric_value_current",
                "metric_value_history",
                "metric_dictionary",
                "metric_anomaly",
            ):
                keys = (
                    conn.execute(sa.text(f"SELECT DISTINCT metric_key FROM metrics_mart.{view}"))
                    .scalars()
                    .all()
                )
                assert "payroll" not in keys, view
            assert conn.execute(sa.text("SELECT count(*) FROM metrics_mart.metric_anomaly")).scalar() == 0
            keys = conn.execute(sa.text("SELECT metric_key FROM metrics_mart.metric_dictionary ORDER BY 1"))
            assert keys.scalars().all() == ["gmv", "pipeline"]
        for relation in (
            "metrics.payroll",
            "metrics.payroll_history",
            "metrics_mart.values__payroll",
            "metrics_mart.metric_value_all",
            "metrics_mart.anomaly",
            "metrics_mart.metric_definition",
        ):
            _denied(reader, f"SELECT * FROM {relation}")
        # The DDL tasks may start is not a reader's: it could rebuild relations and their grants.
        _denied(
            reader, """SELECT metrics_mart.ensure_metric_relations('{"key": "payroll", "grain": "day"}')"""
        )
    finally:
        reader.dispose()
    for role, expected in ((finance, ["gmv", "payroll"]), (everyone, ["gmv", "payroll", "pipeline"])):
        engine = _as(mart, role)
        try:
            with engine.connect() as conn:
                keys = conn.execute(
                    sa.text("SELECT DISTINCT metric_key FROM metrics_mart.metric_value_current")
                )
                assert sorted(keys.scalars()) == expected, role
        finally:
            engine.dispose()


@postgres_only
def test_a_change_of_access_applies_at_the_next_registration_and_grants_survive_new_columns(
    mart, reader_roles
):
    v1 = _register(mart, key="margin", department="finance", access="restricted", readers=["finance"])
    _publish(mart, v1, [{"region": "east", "value": 1.0}], day=MONDAY, run_id="r1")
    sales = reader_roles()
    grant_reader(engine=mart, role=sales, department="sales")
    reader = _as(mart, sales)
    try:
        _denied(reader, "SELECT * FROM metrics.margin")
        # v2 opens the metric to sales and adds a dimension: its relation is rebuilt, and granted again.
        v2 = _register(
            mart,
            key="margin",
            version=2,
            department="finance",
            access="department",
            readers=["sales"],
            dimensions=["region", "channel"],
        )
        _publish(mart, v2, [{"region": "east", "channel": "app", "value": 2.0}], day=MONDAY, run_id="r2")
        with reader.connect() as conn:
            assert conn.execute(sa.text("SELECT channel, value FROM metrics.margin")).one() == ("app", 2.0)
            assert (
                conn.execute(sa.text("SELECT count(*) FROM metrics_mart.metric_value_current")).scalar() == 1
            )
        _register(
            mart,
            key="margin",
            version=3,
            department="finance",
            access="restricted",
            readers=["finance"],
            dimensions=["region", "channel"],
        )
        _denied(reader, "SELECT * FROM metrics.margin")
        with reader.connect() as conn:
            assert (
                conn.execute(sa.text("SELECT count(*) FROM metrics_mart.metric_value_current")).scalar() == 0
            )
    finally:
        reader.dispose()


@postgres_only
@pytest.mark.parametrize(
    ("spec", "refused"),
    [
        ({"key": "m; DROP TABLE publication", "grain": "day"}, "is not a metric key"),
        (
            {"key": "m", "grain": "day", "stored_dimensions": ['a" text); DROP TABLE publication; --']},
            "is not a dimension name",
        ),
        ({"key": "m", "grain": "hour"}, "is not day, week or month"),
        ({"key": "m", "grain": "day", "comments": {"current": {"value; DROP": "x"}}}, "is not a column name"),
    ],
)
def test_the_ddl_function_refuses_what_is_no_identifier(mart, spec, refused):
    """What the task role may call with the owner's rights builds from checked identifiers only."""
    with pytest.raises(sa.exc.DBAPIError, match=refused), mart.begin() as conn:
        conn.execute(
            sa.text("SELECT metrics_mart.ensure_metric_relations(CAST(:s AS jsonb))"),
            {"s": json.dumps(spec)},
        )
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('metrics_mart.publication') IS NOT NULL")).scalar()


@postgres_only
def test_a_comment_with_quotes_is_a_literal_not_sql(mart):
    _register(mart, key="quoted", description="Revenue'); DROP TABLE publication; --")
    with mart.connect() as conn:
        comment = conn.execute(sa.text("SELECT obj_description('metrics.quoted'::regclass)")).scalar()
        assert "DROP TABLE publication" in comment
        assert conn.execute(sa.text("SELECT to_regclass('metrics_mart.publication') IS NOT NULL")).scalar()
