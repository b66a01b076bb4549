"""The mart on Postgres and SQLite: migrations, history-preserving publish, atomicity, definitions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from mart_helpers import current_values, publish, register, values_table

from metrics_center.errors import MartError


def test_restatement_supersedes_and_keeps_history(mart):
    register(mart)
    day = date(2026, 11, 26)
    t0 = datetime(2026, 11, 27, 1, tzinfo=UTC)
    first = publish(mart, values_table(day, [("east", 10.0), ("west", 5.0)]), "run_1", t0)
    again = publish(
        mart, values_table(day, [("east", 10.0), ("west", 5.0)]), "run_1", t0 + timedelta(hours=1)
    )
    assert (first.already_published, again.already_published) == (False, True)
    assert again.publication_id == first.publication_id

    restated = publish(mart, values_table(day, [("east", 12.0)]), "run_2", t0 + timedelta(days=1))
    assert restated.superseded == 2
    assert current_values(mart) == {(day, "east"): 12.0}  # west is no longer part of the period
    with mart.connect() as conn:
        history = conn.execute(
            sa.text(
                "SELECT value FROM metric_value_history WHERE valid_from <= :x "
                "AND (valid_to IS NULL OR valid_to > :x) ORDER BY value"
            ),
            {"x": t0 + timedelta(hours=2)},
        ).scalars()
        assert list(history) == [5.0, 10.0]  # "as published on day X" is still answerable
        assert conn.execute(sa.text("SELECT count(*) FROM metric_value_history")).scalar() == 3


def test_failed_publish_leaves_nothing_partial(mart):
    register(mart)
    day = date(2026, 11, 26)
    publish(mart, values_table(day, [("east", 10.0)]), "run_1")
    duplicate_keys = values_table(day, [("east", 1.0), ("east", 2.0)])
    with pytest.raises(MartError, match="rolled back; nothing was written"):
        publish(mart, duplicate_keys, "run_2")
    assert current_values(mart) == {(day, "east"): 10.0}
    with mart.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM publication")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM values__m")).scalar() == 1


def test_definition_versions(mart):
    assert register(mart, 1, "h1") == "new_version"
    assert register(mart, 1, "h1") == "unchanged"
    with pytest.raises(MartError, match="bump `version:`"):
        register(mart, 1, "edited")
    assert register(mart, 2, "h2") == "new_version"
    with pytest.raises(MartError, match="older than the registered version 2"):
        register(mart, 1, "h1")
    with mart.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT version, valid_to IS NULL FROM metric_definition ORDER BY version")
        ).all()
        dictionary = conn.execute(sa.text("SELECT metric_key, current_version FROM metric_dictionary")).all()
    assert [tuple(r) for r in rows] == [(1, False), (2, True)]
    assert [tuple(r) for r in dictionary] == [("m", 2)]
