"""Who may read a metric's values (权限分级): the rule for people, beside the mart's rule for BI roles.

``access: public`` — everyone; ``department`` — the owning department and the ``readers`` listed (departments or
people); ``restricted`` — only the ``readers``. The owner and the approvers of a metric always read it (they are
asked to sign its numbers off). The Metrics Center page and its API apply this to the signed-in Airflow user's
person in ``_teams.yaml``; somebody who is nobody there reads public metrics only. The mart applies the same
rule, by department, to the Postgres roles of ``metrics-center mart grant-reader``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metrics_center.definitions.spec import MetricSpec, Teams


def may_read(spec: MetricSpec, *, teams: Teams | None, person: str | None) -> bool:
    if spec.access == "public":
        return True
    if person is None or teams is None or person not in teams.people:
        return False
    department = teams.people[person].department
    if person == spec.owner or person in teams.resolve(sorted(spec.approvers)):
        return True
    if person in spec.readers or department in spec.readers:
        return True
    return spec.access == "department" and department == spec.department
