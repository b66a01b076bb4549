"""Notifications: the outbox (written with its cause), Block Kit rendering and delivery to Slack."""
