"""``metrics-center pools``: per-department limits on source queries (Airflow pools).

Pools live in Airflow's metadata database, which tasks cannot write in Airflow 3: run ``pools sync`` where the
scheduler runs (``make demo`` and docker-compose's init container do), after every change of ``_teams.yaml``.
Airflow never schedules a task whose pool does not exist, so ``pools list`` names every missing pool.
"""

from __future__ import annotations

import argparse
import sys

from metrics_center import settings
from metrics_center.cli.failures import AIRFLOW_DATABASE
from metrics_center.cli.groups import command_group


def _declared():
    from metrics_center.definitions.loader import load_catalog
    from metrics_center.orchestration.pools import declared_pools, pools_in_use

    catalog = load_catalog(settings.metrics_dir(), sql_root=settings.sql_dir())
    specs = [m.spec for m in catalog.metrics.values()]
    return declared_pools(catalog.teams), pools_in_use(specs, catalog.teams)


def _sync(args: argparse.Namespace) -> int:
    from airflow.models.pool import Pool

    from metrics_center.orchestration.pools import PREFIX

    declared, _used = _declared()
    wanted = {p.name: p for p in declared}
    for pool in declared:
        Pool.create_or_update_pool(pool.name, pool.slots, pool.description, include_deferred=False)
        print(f"{pool.name}: {pool.slots} slot(s)")
    stale = [p.pool for p in Pool.get_pools() if p.pool.startswith(PREFIX) and p.pool not in wanted]
    for name in stale:
        if args.prune:
            Pool.delete_pool(name)
            print(f"{name}: removed (no longer in _teams.yaml)")
        else:
            print(f"{name}: no longer in _teams.yaml (kept; --prune removes it)")
    return 0


def _list(args: argparse.Namespace) -> int:
    from airflow.models.pool import Pool

    declared, used = _declared()
    stats = Pool.slots_stats()
    missing = 0
    for pool in declared:
        stat = stats.get(pool.name)
        if stat is None:
            missing += 1
            print(f"{pool.name}: MISSING in Airflow (declared {pool.slots}); run `metrics-center pools sync`")
            continue
        print(
            f"{pool.name}: {stat['total']} slot(s) (declared {pool.slots}), running {stat['running']}, "
            f"queued {stat['queued']}, open {stat['open']}"
            + ("" if pool.name in used else " — used by no metric")
        )
    if missing:
        print(
            f"{missing} pool(s) missing: their extract tasks are never scheduled until they exist",
            file=sys.stderr,
        )
        return 1
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``pools sync`` and ``pools list``."""
    pools_sub = command_group(sub, "pools", help="per-department limits on source queries (Airflow pools)")
    sync = pools_sub.add_parser(
        "sync",
        help="create or resize the pools _teams.yaml declares (run where the scheduler runs)",
        description=__doc__,
    )
    sync.add_argument(
        "--prune", action="store_true", help="also remove Metrics Center pools no longer declared"
    )
    sync.set_defaults(func=_sync, database=AIRFLOW_DATABASE)
    listing = pools_sub.add_parser("list", help="declared pools vs Airflow's, with their occupancy")
    listing.set_defaults(func=_list, database=AIRFLOW_DATABASE)
