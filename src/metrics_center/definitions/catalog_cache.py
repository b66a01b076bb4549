"""The validated catalog of a metrics folder, cached between DAG parses.

Airflow's dag-processor parses the DAG file in a fresh process every cycle (every 30 s by default), so
reading and validating 1,000 YAML files (~1 s) is paid again and again for files that rarely change.
The cache is keyed by everything validation reads — the path, size and modification time of every file
under the metrics and SQL folders, the code of the modules that validate, the settings that change a
result and the locale the problems are written in — so any edit, added or removed file, upgrade, setting or
language change misses it and validates afresh.
It lives under ``$AIRFLOW_HOME/metrics_center_cache`` (``METRICS_CENTER_PARSE_CACHE=false`` turns it off),
is written atomically, and a cache that cannot be read is ignored and rewritten: never an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from metrics_center import settings
from metrics_center.i18n.translate import current

if TYPE_CHECKING:
    from metrics_center.definitions.loader import Catalog

log = logging.getLogger(__name__)
#: Where a metrics folder keeps its unit tests (metric_tests.TESTS_FOLDER; not imported: no YAML/pydantic here).
UNIT_TESTS_FOLDER = "tests"
#: Files whose content decides what a valid catalog is: the whole definitions package.
_VALIDATING = ("*.py", "*.json")
_KEEP = 3  # cache files kept per folder (older keys are removed)


def enabled() -> bool:
    return os.environ.get("METRICS_CENTER_PARSE_CACHE", "true").lower() not in ("false", "0", "no")


def _fingerprint(metrics_dir: Path, sql_root: Path) -> str:
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(p for pattern in _VALIDATING for p in package.glob(pattern)):
        stat = path.stat()
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for key in ("METRICS_CENTER_TIMEZONE", "METRICS_CENTER_DATA_ROOT"):
        digest.update(f"{key}={os.environ.get(key, '')}\n".encode())
    # Problems are written in the locale current while validating (English while Airflow parses DAGs): a
    # catalog validated in one language is never served to a reader of another.
    digest.update(f"locale={current().locale}\n".encode())
    for root in (metrics_dir, sql_root):
        digest.update(f"root {root.resolve()}\n".encode())
        for dirpath, dirnames, filenames in os.walk(root):
            if root == metrics_dir and dirpath == str(metrics_dir):
                # Unit tests (<metrics>/tests/) are never loaded as metrics: editing one keeps the cache.
                dirnames[:] = [d for d in dirnames if d != UNIT_TESTS_FOLDER]
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def _folder(metrics_dir: Path) -> Path:
    tag = hashlib.sha256(str(metrics_dir.resolve()).encode()).hexdigest()[:12]
    return settings.airflow_home() / "metrics_center_cache" / tag


def cached_catalog(metrics_dir: Path, *, sql_root: Path) -> Catalog:
    """``load_catalog(metrics_dir, sql_root=…)`` for the whole folder, from the cache when nothing changed."""
    from metrics_center.definitions.loader import load_catalog

    if not enabled():
        return load_catalog(metrics_dir, sql_root=sql_root)
    try:
        key = _fingerprint(metrics_dir, sql_root)
    except OSError:
        return load_catalog(metrics_dir, sql_root=sql_root)
    folder = _folder(metrics_dir)
    path = folder / f"catalog-{key}.pickle"
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)  # written by this code, in this deployment's own AIRFLOW_HOME
    except FileNotFoundError:
        pass
    except Exception as exc:  # a truncated or foreign file: validate afresh and replace it
        log.warning("ignoring the unreadable catalog cache %s (%s)", path, exc)
    catalog = load_catalog(metrics_dir, sql_root=sql_root)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".catalog-", delete=False) as tmp:
            pickle.dump(catalog, tmp, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp.name, path)
        for old in sorted(folder.glob("catalog-*.pickle"), key=lambda p: p.stat().st_mtime)[:-_KEEP]:
            old.unlink(missing_ok=True)
    except OSError as exc:  # a read-only home: parse without the cache
        log.warning("cannot write the catalog cache under %s (%s)", folder, exc)
    return catalog
