"""Who may read a metric (权限分级), as the Metrics Center page and its API decide for a signed-in person."""

from __future__ import annotations

import pytest
from builders import metric_spec
from fastapi import HTTPException

from metrics_center.definitions.access import may_read
from metrics_center.definitions.spec import Teams

TEAMS = Teams.model_validate(
    {
        "departments": {"sales": {"name": "Sales"}, "finance": {"name": "Finance"}, "hr": {"name": "HR"}},
        "people": {
            "alice": {"name": "Alice", "department": "sales"},
            "bob": {"name": "Bob", "department": "sales"},
            "carol": {"name": "Carol", "department": "finance"},
            "hana": {"name": "Hana", "department": "hr"},
            "ivan": {"name": "Ivan", "department": "hr"},
        },
    }
)


def _spec(**overrides):
    return metric_spec(**{"department": "finance", "owner": "carol", **overrides})


@pytest.mark.parametrize(
    ("access", "readers", "person", "expected"),
    [
        ("public", [], None, True),  # nobody in _teams.yaml reads public metrics
        ("department", [], "carol", True),  # its department
        ("department", [], "hana", False),
        ("department", ["hr"], "hana", True),  # a department listed as reader
        ("restricted", ["ivan"], "ivan", True),  # a person listed
        ("restricted", ["ivan"], "hana", False),  # the same department, not listed
        ("restricted", ["hr"], None, False),  # nobody in _teams.yaml
        ("restricted", ["hr"], "bob", True),  # bob approves it (builders: stage approver bob)
        ("restricted", ["hr"], "alice", False),
    ],
)
def test_the_rule(access, readers, person, expected):
    spec = _spec(access=access, readers=readers)
    assert may_read(spec, teams=TEAMS, person=person) is expected


def test_the_page_refuses_a_metric_the_person_may_not_read_and_lists_only_the_others():
    from types import SimpleNamespace

    from metrics_center.web.auth import Viewer, readable, require_metric

    catalog = SimpleNamespace(
        teams=TEAMS,
        metrics={
            "payroll": SimpleNamespace(spec=_spec(key="payroll", access="restricted", readers=["hr"])),
            "gmv": SimpleNamespace(spec=_spec(key="gmv")),
        },
    )
    alice = Viewer(user=None, user_id="alice", person="alice", name="Alice")
    hana = Viewer(user=None, user_id="hana", person="hana", name="Hana")
    assert readable(alice, catalog, ["payroll", "gmv"]) == ["gmv"]
    assert readable(hana, catalog, ["payroll", "gmv"]) == ["payroll", "gmv"]
    with pytest.raises(HTTPException) as refused:
        require_metric(catalog, "payroll", viewer=alice)
    assert refused.value.status_code == 403
    assert "readable by hr only (access: restricted); ask its owner carol" in refused.value.detail
    assert require_metric(catalog, "payroll", viewer=hana).key == "payroll"
