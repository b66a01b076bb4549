"""``metrics-center demo``: the demo company's data and its published past."""

from __future__ import annotations

import argparse
from datetime import date, timedelta
from pathlib import Path

from metrics_center import settings
from metrics_center.cli.groups import command_group


def _iso_date(text: str) -> date:
    """``--end``: an ISO date, or argparse's one-line usage error."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; write YYYY-MM-DD, e.g. 2026-03-31"
        ) from None


def _demo_seed(args: argparse.Namespace) -> int:
    from metrics_center.demo.seed import sales_db_connection_uri, seed_demo

    root = Path(args.root) if args.root else settings.data_root()
    end = args.end or date.today()
    summary = seed_demo(root=root, end=end, days=args.days)
    print(
        f"demo data {summary.start}..{summary.end - timedelta(days=1)} in {root}: {summary.orders} orders, "
        f"{summary.refunds} refunds, {summary.leads} leads\n"
        f"sales_db connection: AIRFLOW_CONN_SALES_DB={sales_db_connection_uri(root)}"
    )
    return 0


def _demo_history(args: argparse.Namespace) -> int:
    import logging

    from metrics_center.definitions.loader import load_catalog
    from metrics_center.demo.history import seed_history
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.migrate import upgrade

    # Each of ~150 extracts logs its rendered SQL (useful in a task log, noise here).
    logging.getLogger("metrics_center.tasks.extract").setLevel(logging.WARNING)

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    engine = create_mart_engine(args.url)
    upgrade(engine)
    end = args.end or date.today()
    specs = [m.spec for m in catalog.metrics.values()]
    for item in seed_history(engine=engine, specs=specs, first=end - timedelta(days=args.days), end=end):
        print(f"{item.key}: published {item.periods} past period(s), {item.rows} value(s)")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    demo_sub = command_group(sub, "demo", help="the demo company")
    seed = demo_sub.add_parser("seed", help="write the demo departments' data (deterministic)")
    seed.add_argument("--root", help="default: $METRICS_CENTER_DATA_ROOT")
    seed.add_argument("--end", type=_iso_date, help="ISO date after the last day of data (default: today)")
    seed.add_argument("--days", type=int, default=90)
    seed.set_defaults(func=_demo_seed)
    history = demo_sub.add_parser("history", help="publish past periods of every metric (marked as seeded)")
    history.add_argument("--end", type=_iso_date, help="the demo's end date (default: today)")
    history.add_argument("--days", type=int, default=75, help="how far back to start")
    history.add_argument("--url", help="mart SQLAlchemy URL (default: connection metrics_mart / SQLite)")
    history.set_defaults(func=_demo_history)
