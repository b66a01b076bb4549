"""The mart's own guarantees, on Postgres and SQLite: empty days, odd values, ordering, locks, run claims, roles."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa
from builders import metric_spec
from mart_helpers import current_values, publish, register, values_table

from metrics_center.definitions.periods import period_containing
from metrics_center.definitions.spec import Teams
from metrics_center.errors import MartError
from metrics_center.mart.publish import NewerPublicationExists, publish_values
from metrics_center.mart.runs import RunConflict, get_run, start_run
from metrics_center.mart.tables import publication

DAY = date(2026, 11, 26)


def test_an_empty_result_publishes_and_supersedes_the_runs_period(mart):
    """A day with no rows: zero values published (SQLite used to fail on `INSERT … DEFAULT VALUES`)."""
    register(mart)
    publish(mart, values_table(DAY, [("east", 10.0)]), "run_1")
    empty = pa.table(
        {
            "period_start": pa.array([], pa.date32()),
            "region": pa.array([], pa.string()),
            "value": pa.array([], pa.float64()),
        }
    )
    result = publish_values(
        mart,
        metric_key="m",
        definition_version=1,
        grain="day",
        dimensions=["region"],
        values=empty,
        run_id="run_2",
        approved_by="review: bob",
        periods=[DAY],
    )
    assert (result.rows, result.periods, result.superseded) == (0, [DAY], 1)
    assert current_values(mart) == {}  # the approved answer for the day is "no values"
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT row_count FROM publication WHERE run_id = 'run_2'")).scalar() == 0


def test_non_ascii_dimensions_are_stored_as_utf8(mart):
    register(mart)
    publish(mart, values_table(DAY, [("华东", 1.0), ('Zürich "HQ"', 2.0)]), "run_1")
    assert current_values(mart) == {(DAY, "华东"): 1.0, (DAY, 'Zürich "HQ"'): 2.0}
    with mart.connect() as conn:
        if mart.dialect.name == "postgresql":
            raw = (
                conn.execute(sa.text("SELECT dimensions::text FROM metric_value_current ORDER BY value"))
                .scalars()
                .all()
            )
            regions = conn.execute(sa.text("SELECT region FROM metrics.m ORDER BY value")).scalars().all()
        else:
            raw = (
                conn.execute(sa.text("SELECT dimensions FROM metric_value_current ORDER BY value"))
                .scalars()
                .all()
            )
            regions = conn.execute(sa.text("SELECT region FROM metrics__m ORDER BY value")).scalars().all()
    assert regions == ["华东", 'Zürich "HQ"']
    assert "\\u" not in "".join(raw)  # UTF-8 text, not escapes


def test_an_older_run_never_overwrites_a_newer_answer(mart):
    register(mart)
    monday, tuesday = datetime(2026, 11, 30, 9, tzinfo=UTC), datetime(2026, 12, 1, 9, tzinfo=UTC)
    newer = publish_values(
        mart,
        metric_key="m",
        definition_version=1,
        grain="day",
        dimensions=["region"],
        values=values_table(DAY, [("east", 12.0)]),
        run_id="tuesday_restatement",
        approved_by="review: bob",
        data_as_of=tuesday,
    )
    with pytest.raises(NewerPublicationExists) as refused:
        publish_values(
            mart,
            metric_key="m",
            definition_version=1,
            grain="day",
            dimensions=["region"],
            values=values_table(DAY, [("east", 10.0)]),
            run_id="monday_run",
            approved_by="review: carol",
            data_as_of=monday,
        )
    message = str(refused.value)
    assert f"already has values from publication {newer.publication_id} (run tuesday_restatement" in message
    assert "restate=true" in message
    assert current_values(mart) == {(DAY, "east"): 12.0}

    publish_values(  # an explicit restatement may, on purpose
        mart,
        metric_key="m",
        definition_version=1,
        grain="day",
        dimensions=["region"],
        values=values_table(DAY, [("east", 10.0)]),
        run_id="monday_run",
        approved_by="review: carol",
        data_as_of=monday,
        restatement=True,
    )
    assert current_values(mart) == {(DAY, "east"): 10.0}


def test_values_of_an_unregistered_version_are_refused(mart):
    register(mart, 1)
    with pytest.raises(MartError, match="version 2 is not registered"):
        publish_values(
            mart,
            metric_key="m",
            definition_version=2,
            grain="day",
            dimensions=["region"],
            values=values_table(DAY, [("east", 1.0)]),
            run_id="r",
            approved_by="x",
        )


def _hold_write_lock(engine, *, key: str, release: threading.Event, held: threading.Event) -> None:
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.execution_options(metrics_center_write_lock=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
            held.set()
            release.wait(10)


def test_publish_time_is_read_inside_the_lock(mart):
    """A publish that waited for the lock is stamped after the one holding it: history stays monotonic."""
    register(mart)
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(
        target=_hold_write_lock, args=(mart,), kwargs={"key": "m", "release": release, "held": held}
    )
    holder.start()
    assert held.wait(10)
    results = []
    publisher = threading.Thread(
        target=lambda: results.append(publish(mart, values_table(DAY, [("east", 1.0)]), "waiting_run"))
    )
    publisher.start()
    time.sleep(0.6)
    released_at = datetime.now(UTC)
    release.set()
    publisher.join(20)
    holder.join(5)
    assert results and not results[0].already_published
    with mart.connect() as conn:
        published_at = conn.execute(sa.select(publication.c.published_at)).scalar_one()
    if published_at.tzinfo is None:
        published_at = published_at.replace(tzinfo=UTC)
    assert published_at >= released_at - timedelta(milliseconds=50)


def test_concurrent_restatements_leave_one_current_set_and_ordered_history(mart):
    register(mart)
    errors = []

    def restate(i: int) -> None:
        try:
            publish(mart, values_table(DAY, [("east", float(i))]), f"run_{i}")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=restate, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with mart.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT publication_id, valid_from AS published_at, valid_to AS superseded_at "
                "FROM metric_value_history ORDER BY publication_id"
            )
        ).all()
    assert len(rows) == 6 and sum(r.superseded_at is None for r in rows) == 1
    stamps = [r.published_at for r in rows]
    assert stamps == sorted(stamps)  # ids and times agree: each publish saw the previous one's commit
    for older, newer in itertools.pairwise(rows):
        assert older.superseded_at == newer.published_at


def _start(mart, run_id: str, day: date, active: set[str]):
    return start_run(
        mart,
        metric_key="m",
        run_id=run_id,
        definition_version=1,
        definition_hash="h1",
        timezone="UTC",
        periods=[period_containing(day, grain="day")],
        restatement=False,
        is_active=lambda other: other in active,
    )[0]


def test_two_runs_of_one_period_are_refused_other_periods_proceed(mart):
    register(mart)
    _start(mart, "run_a", DAY, active=set())
    _start(mart, "run_other_day", DAY - timedelta(days=1), active={"run_a"})  # another period: fine
    with pytest.raises(
        RunConflict, match=r"m 2026-11-26 is already being computed by run run_a .*then clear this one"
    ):
        _start(mart, "run_b", DAY, active={"run_a"})
    # Once Airflow says run_a is finished (e.g. marked failed), its claim no longer blocks the period.
    record = _start(mart, "run_b", DAY, active=set())
    assert record.state == "computing"
    assert get_run(mart, metric_key="m", run_id="run_a").state == "abandoned"
    # A retry of the same run re-registers it (no conflict with itself).
    assert _start(mart, "run_b", DAY, active={"run_b"}).state == "computing"


def test_tasks_refuse_an_unmigrated_mart(tmp_path):
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import require_current

    engine = create_mart_engine(f"sqlite:///{tmp_path / 'new.db'}")
    with pytest.raises(MartError, match=r"revision \(none: not created\).*run `metrics-center mart upgrade`"):
        require_current(engine)


def test_task_role_without_ddl_rights_runs_a_metric(postgres_mart_url, mart):
    """Document the two roles for real: the migrator owns the schema; tasks only read and write rows."""
    if mart.dialect.name != "postgresql":
        return  # roles are a Postgres feature
    from importlib import resources

    role = f"mc_task_{uuid.uuid4().hex[:8]}"
    grants = resources.files("metrics_center.mart").joinpath("task_role.sql").read_text()
    with mart.begin() as conn:
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        sql = "\n".join(line for line in grants.splitlines() if not line.startswith("--"))
        for statement in filter(str.strip, sql.replace("metrics_center_task", role).split(";")):
            conn.execute(sa.text(statement))
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import require_current

    task_engine = create_mart_engine(sa.make_url(postgres_mart_url).set(username=role))
    try:
        require_current(task_engine)
        register(task_engine)
        _start(task_engine, "run_1", DAY, active=set())
        publish(task_engine, values_table(DAY, [("east", 3.0)]), "run_1")
        assert current_values(task_engine) == {(DAY, "east"): 3.0}
        with (
            pytest.raises(sa.exc.ProgrammingError, match=r"permission denied|must be owner"),
            task_engine.begin() as conn,
        ):
            conn.execute(sa.text("DROP TABLE values__m"))
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"), task_engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE sneaky (x int)"))
    finally:
        task_engine.dispose()
        with mart.begin() as conn:
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))


TEAMS = Teams.model_validate(
    {
        "departments": {"sales": {"name": "Sales"}, "finance": {"name": "Finance"}},
        "people": {
            "alice": {"name": "Alice", "department": "sales"},
            "bob": {"name": "Bob", "department": "sales", "airflow_user": "bob@corp"},
            "carol": {"name": "Carol", "department": "finance"},
            "dave": {"name": "Dave", "department": "finance"},
        },
    }
)


def _answered(mart, *, on_timeout: str, chosen: list[str], responder: str | None, stages=None):
    """Run ``run_1`` computed (result ``abc``), each stage asked and answered as given; returns (spec, stages)."""
    from metrics_center.approvals.rules import record_answer, record_request
    from metrics_center.mart.runs import record_result

    stages = stages or [{"name": "review", "approvers": ["bob"]}]
    spec = metric_spec(approval={"stages": stages, "on_timeout": on_timeout})
    register(mart)
    _start(mart, "run_1", DAY, active=set())
    record_result(mart, metric_key="m", run_id="run_1", result_hash="abc", rows=1)
    for i, stage in enumerate(spec.approval.stages):
        asked = {"metric_key": "m", "run_id": "run_1", "stage": stage, "ti_id": f"ti-{i}", "try_number": 1}
        record_request(mart, **asked, approvers=TEAMS.resolve(stage.approvers), result_hash="abc")
        del asked["metric_key"]
        record_answer(
            mart,
            spec=spec,
            teams=TEAMS,
            **asked,
            chosen=chosen,
            responded_by=responder,
            responded_at=datetime(2026, 11, 27, 10, 2, tzinfo=UTC),
            timed_out=False,
        )
    return spec, spec.approval.stages


@pytest.mark.parametrize(
    ("on_timeout", "chosen", "responder", "accepted", "said"),
    [
        ("approve", ["Approve"], None, True, "review: approved on timeout"),
        (
            "reject",
            ["Approve"],
            None,
            False,
            "review defaulted to Approve on timeout, but the definition now says on_timeout: reject",
        ),
        (
            "approve",
            ["Reject"],
            None,
            False,
            "review timed out at 2026-11-27 10:02 UTC and defaulted to Reject",
        ),
        (
            "reject",
            ["Approve"],
            "mallory",
            False,
            "review was answered by mallory, which does not count: Airflow user mallory is not a person in _teams",
        ),
        ("reject", ["Reject"], "bob@corp", False, "review was rejected by bob at 2026-11-27 10:02 UTC"),
        ("reject", ["Approve"], "bob@corp", True, "review: bob"),  # Airflow user id → person
        (
            "reject",
            ["Approve"],
            "bob",
            False,
            "which does not count: Airflow user bob is not a person in _teams",
        ),
    ],
)
def test_what_counts_as_an_approval(mart, on_timeout, chosen, responder, accepted, said):
    from metrics_center.approvals.rules import NotApproved, approved_by_text, verify_approved

    spec, _ = _answered(mart, on_timeout=on_timeout, chosen=chosen, responder=responder)
    run = get_run(mart, metric_key="m", run_id="run_1")
    if accepted:
        assert approved_by_text(verify_approved(mart, spec=spec, run=run, teams=TEAMS)) == said
    else:
        with pytest.raises(NotApproved, match="nothing published") as refused:
            verify_approved(mart, spec=spec, run=run, teams=TEAMS)
        assert said in str(refused.value)


@pytest.mark.parametrize(
    ("stages", "responder", "said"),
    [
        (  # separation of duties: one person, two stages
            [{"name": "review", "approvers": ["bob"]}, {"name": "sign-off", "approvers": ["bob", "carol"]}],
            "bob@corp",
            "sign-off was answered by bob, which does not count: bob already approved review of this run",
        ),
        (  # four eyes: the owner alone
            [{"name": "review", "approvers": ["alice", "bob"]}],
            "alice",
            "alice owns m and cannot be the only approver of their own number",
        ),
    ],
)
def test_sign_off_rules_hold_whatever_path_the_answer_took(mart, stages, responder, said):
    """Answers given through Airflow's own UI or API are judged by the same rules: refused, never published."""
    from metrics_center.approvals.rules import NotApproved, verify_approved

    spec, _ = _answered(mart, on_timeout="reject", chosen=["Approve"], responder=responder, stages=stages)
    with pytest.raises(NotApproved) as refused:
        verify_approved(mart, spec=spec, run=get_run(mart, metric_key="m", run_id="run_1"), teams=TEAMS)
    assert said in str(refused.value)


def test_a_department_may_be_a_stages_approver(mart):
    from metrics_center.approvals.rules import approved_by_text, verify_approved

    stages = [{"name": "review", "approvers": ["finance"]}]
    spec, _ = _answered(mart, on_timeout="reject", chosen=["Approve"], responder="dave", stages=stages)
    run = get_run(mart, metric_key="m", run_id="run_1")
    assert approved_by_text(verify_approved(mart, spec=spec, run=run, teams=TEAMS)) == "review: dave"


def test_an_answer_to_an_earlier_request_does_not_count(mart):
    """Approved on try 1, then the task was cleared (asked again, try 2) and marked success: not approved."""
    from metrics_center.approvals.rules import NotApproved, record_request, verify_approved

    spec, (stage,) = _answered(mart, on_timeout="reject", chosen=["Approve"], responder="bob@corp")
    record_request(
        mart,
        metric_key="m",
        run_id="run_1",
        stage=stage,
        approvers=["bob"],
        ti_id="ti-0",
        try_number=2,
        result_hash="abc",
    )
    with pytest.raises(NotApproved, match=r"review was asked at .* and has no recorded answer"):
        verify_approved(mart, spec=spec, run=get_run(mart, metric_key="m", run_id="run_1"))
