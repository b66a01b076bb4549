"""Notifications: the outbox (written with its cause), the messages people read, and delivery to Slack.

- the outbox: ``outbox`` (enqueue), ``broadcast`` (changes), ``approval_requests`` and
  ``approval_followups`` (asking, reminding, updating after the decision);
- the messages: ``blocks`` (Block Kit primitives) ← ``alert_messages``, ``approval_messages``,
  ``change_messages`` ← ``slack`` (one message per group);
- delivery: ``deliver`` (the API) → ``delivery_run`` (claims, outcomes) and ``message_updates``
  (``chat.update``), ``pacing``, ``slack_api``, ``slack_replay``, ``slack_app`` (the app's scopes).

May import ``approvals``, ``mart``, ``definitions``, ``settings``, ``errors``.
"""
