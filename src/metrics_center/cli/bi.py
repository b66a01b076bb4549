"""``metrics-center bi superset``: a Superset import bundle of every metric's relation, saved metric and chart."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metrics_center.cli.failures import EXIT_FAILED
from metrics_center.cli.groups import command_group


def _superset(args: argparse.Namespace) -> int:
    from sqlalchemy import make_url

    from metrics_center import settings
    from metrics_center.bi.superset import BundleTarget, superset_bundle
    from metrics_center.definitions.loader import load_catalog

    try:
        url = make_url(args.uri)
    except Exception as exc:
        print(
            f"metrics-center bi superset: --uri {args.uri!r} is not a database URL ({exc}) — give how Superset "
            "connects to the mart, e.g. postgresql://bi_sales@db/metrics",
            file=sys.stderr,
        )
        return EXIT_FAILED
    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    for problems in catalog.problems.values():
        for problem in problems:
            print(f"skipped: {problem}", file=sys.stderr)
    postgres = url.get_backend_name() == "postgresql"
    target = BundleTarget(
        database_name=args.database_name, sqlalchemy_uri=args.uri, schema="metrics" if postgres else None
    )
    specs = [m.spec for m in catalog.metrics.values()]
    out = Path(args.out)
    out.write_bytes(superset_bundle(specs=specs, target=target))
    print(
        f"wrote {out}: database {args.database_name!r}, {len(specs)} dataset(s) with their saved metric, "
        f"{len(specs)} chart(s) and the dashboard {'Metrics Center'!r} — import it with "
        f"`superset import-dashboards -p {out} -u <admin>` or Settings → Import dashboards"
    )
    if url.password:
        print("note: the bundle holds the URI's password; prefer a URI without it and set it in Superset")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    bi_sub = command_group(sub, "bi", help="what BI tools import (Superset bundle)")
    superset = bi_sub.add_parser(
        "superset",
        help="write a Superset import bundle: one dataset per metric with its saved metric, charts, a dashboard",
        description="One dataset per metric (its relation metrics.<key>, typed dimension columns with their "
        "descriptions, period_start as the time column), a saved metric that totals it right (SUM for additive "
        "metrics, SUM(numerator)/SUM(denominator) for ratios), number formats from the unit, one chart per metric "
        "and a 'Metrics Center' dashboard. Reads the definitions under $METRICS_CENTER_HOME.",
    )
    superset.add_argument("--out", default="metrics_center_superset.zip", help="the ZIP to write")
    superset.add_argument(
        "--uri",
        required=True,
        help="how Superset connects to the mart, as a reader role: e.g. postgresql://bi_sales@db/metrics "
        "(give the role with `metrics-center mart grant-reader bi_sales --department sales`)",
    )
    superset.add_argument("--database-name", default="Metrics Center mart", help="its name in Superset")
    superset.set_defaults(func=_superset)
