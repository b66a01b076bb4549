"""What BI tools show beside a deprecated or retired metric: its relation's and value column's comments say so at
the next registration of the same version (no new version needed), and the published history stays readable."""

from __future__ import annotations

import os
import uuid
from datetime import date

import pyarrow as pa
import pytest
import sqlalchemy as sa
from builders import metric_spec

from metrics_center.bi.superset import BundleTarget, saved_metric, superset_bundle
from metrics_center.mart.comments import lifecycle_words, relation_comments
from metrics_center.mart.definitions import register_definition
from metrics_center.mart.engine import create_mart_engine
from metrics_center.mart.publish import publish_values
from metrics_center.mart.roles import grant_reader

PG_ADMIN_URL = os.environ.get("METRICS_CENTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DAY = date(2026, 11, 26)


def _register(mart, spec) -> str:
    return register_definition(
        mart, spec=spec, definition={"spec": spec.model_dump(mode="json")}, definition_hash=f"h{spec.version}"
    )


def _publish(mart, spec) -> None:
    table = pa.table(
        {"period_start": pa.array([DAY, DAY], pa.date32()), "region": ["east", "west"], "value": [1.5, 2.5]}
    )
    publish_values(
        mart,
        metric_key=spec.key,
        definition_version=spec.version,
        grain=spec.grain,
        dimensions=list(spec.dimensions),
        values=table,
        run_id="manual__before",
        approved_by="review: bob",
    )


def _comments(mart, relation: str) -> tuple[str, str, int]:
    """The relation's comment, its value column's, and its oid (a rebuilt view gets a new one)."""
    with mart.connect() as conn:
        return tuple(
            conn.execute(
                sa.text(
                    "SELECT obj_description(CAST(:r AS regclass), 'pg_class'), col_description(a.attrelid, a.attnum),"
                    " CAST(CAST(:r AS regclass) AS oid) FROM pg_attribute a"
                    " WHERE a.attrelid = CAST(:r AS regclass) AND a.attname = 'value'"
                ),
                {"r": relation},
            ).one()
        )


def test_the_words_of_each_status_name_the_replacement_by_name_and_key():
    gmv = metric_spec(key="gmv", name="GMV", dimensions=["region"], aggregation="sum")
    assert lifecycle_words(gmv) == ""
    deprecated = gmv.model_copy(update={"status": "deprecated", "replaced_by": "net_gmv"})
    assert lifecycle_words(deprecated, replacement="Net GMV") == (
        "DEPRECATED — use Net GMV (net_gmv) instead; still published until it is retired."
    )
    assert lifecycle_words(deprecated.model_copy(update={"replaced_by": None})) == (
        "DEPRECATED — it will be retired; no replacement is named."
    )
    retired = gmv.model_copy(update={"status": "retired", "replaced_by": "net_gmv"})
    assert lifecycle_words(retired) == (
        "RETIRED — use net_gmv instead; no new values are published, the history stays readable."
    )
    columns, relations = relation_comments(retired, replacement="Net GMV")
    assert columns["current"]["value"].startswith("RETIRED — use Net GMV (net_gmv) instead")
    assert relations["history"].startswith("RETIRED — use Net GMV (net_gmv) instead")
    # Superset: the dataset, and the saved metric's warning wherever the metric is picked.
    assert saved_metric(gmv)["warning_text"] is None
    assert saved_metric(deprecated, replacement="Net GMV")["warning_text"].startswith(
        "DEPRECATED — use Net GMV"
    )
    net = metric_spec(key="net_gmv", name="Net GMV", dimensions=["region"])
    bundle = superset_bundle(
        specs=[deprecated, net], target=BundleTarget(sqlalchemy_uri="postgresql://bi@db/metrics")
    )
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        dataset = archive.read("metrics_center_bundle/datasets/metrics_center_mart/gmv.yaml").decode()
    assert "DEPRECATED — use Net GMV (net_gmv) instead" in dataset


@pytest.mark.parametrize("mart", ["postgres"], indirect=True)
def test_deprecating_rewrites_the_bi_comments_without_a_new_version_and_keeps_the_history(mart):
    net = metric_spec(key="net_gmv", name="Net GMV", dimensions=["region"])
    gmv = metric_spec(key="gmv", name="GMV", dimensions=["region"])
    _register(mart, net)
    assert _register(mart, gmv) == "new_version"
    _publish(mart, gmv)
    active_comment, active_value, oid = _comments(mart, "metrics.gmv")
    assert "DEPRECATED" not in active_comment and "DEPRECATED" not in active_value
    assert _register(mart, gmv) == "unchanged" and _comments(mart, "metrics.gmv")[2] == oid  # not rebuilt

    deprecated = gmv.model_copy(update={"status": "deprecated", "replaced_by": "net_gmv"})
    assert _register(mart, deprecated) == "unchanged"  # no new version …
    comment, value, new_oid = _comments(mart, "metrics.gmv")  # … yet the words say it, with the name
    words = "DEPRECATED — use Net GMV (net_gmv) instead; still published until it is retired."
    assert comment.startswith(words) and value.startswith(words) and new_oid != oid
    assert _comments(mart, "metrics.gmv_history")[0].startswith(words)
    assert _register(mart, deprecated) == "unchanged"
    assert _comments(mart, "metrics.gmv")[2] == new_oid  # the words are current: nothing rebuilt again

    retired = gmv.model_copy(update={"status": "retired", "replaced_by": "net_gmv"})
    assert _register(mart, retired) == "unchanged"
    assert _comments(mart, "metrics.gmv")[0].startswith("RETIRED — use Net GMV (net_gmv) instead")
    with mart.connect() as conn:  # the history stays readable through the relation BI reads
        rows = conn.execute(sa.text("SELECT region, value FROM metrics.gmv ORDER BY region")).all()
    assert [tuple(r) for r in rows] == [("east", 1.5), ("west", 2.5)]


@pytest.fixture
def reader_role(mart):
    name = f"mc_dept_{uuid.uuid4().hex[:8]}"
    yield name
    admin = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    owner = sa.create_engine(admin.url.set(database=mart.url.database), isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(sa.text(f'DROP OWNED BY "{name}"'))
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))
    owner.dispose()
    admin.dispose()


@pytest.mark.parametrize("mart", ["postgres"], indirect=True)
def test_new_words_keep_the_readers_the_registered_version_allowed(mart, reader_role):
    """A YAML that also opened the metric to everyone (no new version) changes the words, not who reads it."""
    payroll = metric_spec(
        key="payroll", department="finance", access="restricted", readers=["finance"], dimensions=["region"]
    )
    _register(mart, payroll)
    grant_reader(engine=mart, role=reader_role, department="sales")
    opened = payroll.model_copy(update={"status": "deprecated", "access": "public", "readers": []})
    assert _register(mart, opened) == "unchanged"
    assert _comments(mart, "metrics.payroll")[0].startswith("DEPRECATED — it will be retired")
    sales = create_mart_engine(mart.url.set(username=reader_role, password=None))
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), sales.connect() as conn:
        conn.execute(sa.text("SELECT * FROM metrics.payroll")).all()
    sales.dispose()


@pytest.mark.parametrize("mart", ["sqlite"], indirect=True)
def test_sqlite_has_no_comments_and_registers_a_deprecation_as_unchanged(mart):
    gmv = metric_spec(key="gmv", dimensions=["region"])
    _register(mart, gmv)
    _publish(mart, gmv)
    assert _register(mart, gmv.model_copy(update={"status": "deprecated"})) == "unchanged"
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM metrics__gmv")).scalar() == 2
