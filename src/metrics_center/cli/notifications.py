"""``metrics-center notifications``: the outbox — list, deliver what is due, requeue dead rows, read the inbox."""

from __future__ import annotations

import argparse
import json
import sys

from metrics_center.cli.groups import command_group


def _notifications_list(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.tables import notification as n

    engine = create_mart_engine(args.url)
    states = {"undelivered": ["pending", "sending", "dead"], "all": None}.get(args.state, [args.state])
    query = sa.select(n).order_by(n.c.id.desc()).limit(args.limit)
    if states is not None:
        query = query.where(n.c.state.in_(states))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        counts = dict(conn.execute(sa.select(n.c.state, sa.func.count()).group_by(n.c.state)).all())
    for row in reversed(rows):
        to = f"{row.recipient} → {row.channel} {row.address or '(no address)'}"
        when = (
            f"next {row.next_attempt_at:%Y-%m-%d %H:%M}" if row.state != "delivered" else f"ts {row.slack_ts}"
        )
        error = f"  {row.last_error}" if row.last_error and row.state != "delivered" else ""
        print(
            f"{row.id:>6} {row.state:<9} {row.kind:<16} {row.metric_key or '-':<24} {to}  tries {row.attempts}  "
            f"{when}{error}"
        )
    print(", ".join(f"{counts.get(s, 0)} {s}" for s in ("pending", "sending", "delivered", "dead")))
    return 0


def _notifications_deliver(args: argparse.Namespace) -> int:
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.notify.deliver import deliver_pending

    report = deliver_pending(create_mart_engine(args.url), max_attempts=args.max_attempts)
    print(
        f"{report.delivered} delivered in {report.messages} message(s), {report.recovered} recovered, "
        f"{report.retried} to retry, {report.dead} dead now ({report.dead_total} in all), {report.pending} "
        f"pending ({report.unaddressed} without an address)"
    )
    for line in ([report.skipped] if report.skipped else []) + list(report.errors):
        print(f"metrics-center notifications deliver: {line}", file=sys.stderr)
    return 0


def _notifications_requeue(args: argparse.Namespace) -> int:
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.notify.deliver import requeue

    count = requeue(create_mart_engine(args.url), ids=args.ids or None)
    print(f"{count} dead notification(s) pending again; the maintenance DAG delivers them within 5 minutes")
    return 0


def _notifications_inbox(args: argparse.Namespace) -> int:
    from pathlib import Path

    from metrics_center import settings
    from metrics_center.notify.inbox import read_inbox, readable

    folder = Path(args.folder) if args.folder else settings.inbox_dir()
    if folder is None:
        print(
            "metrics-center notifications inbox: no inbox — set METRICS_CENTER_INBOX to a folder (make demo "
            "uses .airflow/inbox), or pass --folder",
            file=sys.stderr,
        )
        return 2
    entries = read_inbox(folder, channel=args.channel)
    for entry in entries[-args.limit :]:
        print(readable(entry), end="")
        if args.wire:
            print(json.dumps(entry.get("wire"), ensure_ascii=False, indent=2))
    print(f"\n{len(entries)} message(s) in {folder}", file=sys.stderr)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    notifications_sub = command_group(
        sub, "notifications", help="the outbox of notifications (Slack, Feishu, DingTalk, WeCom, e-mail)"
    )
    inbox = notifications_sub.add_parser(
        "inbox",
        help="what each channel would have received, where no connection is configured (METRICS_CENTER_INBOX)",
    )
    inbox.add_argument("--channel", choices=["slack", "feishu", "dingtalk", "wecom", "email"])
    inbox.add_argument("--limit", type=int, default=20, help="the last N messages (default 20)")
    inbox.add_argument("--wire", action="store_true", help="also print the body the platform's API would get")
    inbox.add_argument("--folder", help="the inbox folder (default: METRICS_CENTER_INBOX)")
    inbox.set_defaults(func=_notifications_inbox)
    url_help = "mart SQLAlchemy URL (default: connection metrics_mart / SQLite)"
    listing = notifications_sub.add_parser("list", help="show notifications (default: those not delivered)")
    listing.add_argument(
        "--state",
        default="undelivered",
        choices=["undelivered", "pending", "sending", "delivered", "dead", "all"],
    )
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--url", help=url_help)
    listing.set_defaults(func=_notifications_list)
    deliver = notifications_sub.add_parser(
        "deliver",
        help="deliver what is due now (what the maintenance DAG does every 5 minutes)",
        description="Uses the Airflow connections metrics_center_slack, metrics_center_feishu, "
        "metrics_center_smtp and the robots' connections named in _teams.yaml; with METRICS_CENTER_INBOX set, "
        "channels without a connection write to that folder.",
    )
    deliver.add_argument("--max-attempts", type=int, default=10)
    deliver.add_argument("--url", help=url_help)
    deliver.set_defaults(func=_notifications_deliver)
    requeue = notifications_sub.add_parser("requeue", help="make dead notifications pending again")
    requeue.add_argument("ids", nargs="*", type=int, help="notification ids (default: every dead one)")
    requeue.add_argument("--url", help=url_help)
    requeue.set_defaults(func=_notifications_requeue)
