"""What counts as an approval: the sign-off rules, answering as a person, and the evidence people read.

- ``rules``: stages in order, approvers from ``_teams.yaml``, separation of duties, every request and
  answer recorded in the mart's ``approval_event``; ``publish`` accepts only what these rules accept.
- ``answers``: the one path our page and Slack answer through (runs in Airflow's api-server).
- ``evidence``: the text an approver reads before answering.

May import ``mart``, ``definitions``, ``observability``, ``settings``, ``errors``; never ``notify``,
``tasks``, ``orchestration`` or ``web`` (they build on these rules).
"""
