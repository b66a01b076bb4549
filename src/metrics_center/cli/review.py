"""``metrics-center validate --against REF``, ``diff`` and ``history``: definition changes for people reviewing them."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from metrics_center import settings
from metrics_center.cli.failures import EXIT_FAILED

if TYPE_CHECKING:
    from datetime import datetime

    from metrics_center.definitions.changes import DefinitionChange
    from metrics_center.definitions.loader import Catalog
    from metrics_center.definitions.review import Review
    from metrics_center.definitions.spec import MetricSpec

Format = Literal["text", "markdown"]


def print_review(
    *, ref: str, metrics_dir: Path, sql_root: Path, catalog: Catalog, only: list[Path] | None
) -> int:
    """Print the problems of the working tree against ``ref`` (stderr) and what changed (stdout); return how many."""
    from metrics_center.definitions.review import GitError, review_against

    try:
        review = review_against(
            ref=ref, metrics_dir=metrics_dir, sql_root=sql_root, catalog=catalog, only=only
        )
    except GitError as exc:
        print(f"metrics-center validate --against {ref}: {exc}", file=sys.stderr)
        return 1
    for problem in review.problems:
        print(problem, file=sys.stderr)
    print(review_summary(review))
    return len(review.problems)


def review_summary(review: Review) -> str:
    """One line per metric that changed against the ref (new, changed, removed), after a count."""
    changed = [r for r in review.reviewed if r.status == "changed"]
    new = [r for r in review.reviewed if r.status == "new"]
    unchanged = len(review.reviewed) - len(changed) - len(new)
    lines = [
        f"against {review.ref}: {len(changed)} changed, {len(new)} new, {len(review.removed)} removed, "
        f"{unchanged} unchanged"
    ]
    for item in changed:
        if item.old_version == item.new_version:
            versions = f"v{item.new_version} (same version)"
        else:
            versions = f"v{item.old_version} → v{item.new_version}"
        lines.append(f"  {item.key} {versions}: {item.change.summary()}")
    for item in new:
        forced = ", breaking: true" if item.change.forced_breaking else ""
        lines.append(
            f"  {item.key} v{item.new_version}: new metric{forced}" + (f" ({item.note})" if item.note else "")
        )
    lines += [f"  {gone.key}: removed (was v{gone.version})" for gone in review.removed]
    return "\n".join(lines)


# --- diff -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a document with its version, and how to name it."""

    label: str
    version: int
    document: dict[str, Any]


class CommandError(Exception):
    """A problem the command explains in one message (no traceback)."""


def _diff(args: argparse.Namespace) -> int:
    from metrics_center.definitions.changes import compare_documents, unified_diff

    metrics_dir = Path(args.metrics_dir) if args.metrics_dir else settings.metrics_dir()
    sql_root = Path(args.sql_root) if args.sql_root else metrics_dir.parent / "sql"
    try:
        path, spec = _working_metric(args.key, metrics_dir=metrics_dir, sql_root=sql_root)
        if args.against:
            old, new, verdict = _against_ref(args.against, path=path, spec=spec, sql_root=sql_root)
        else:
            old, new, verdict = _against_mart(args.url, spec=spec, sql_root=sql_root)
    except CommandError as exc:
        print(f"metrics-center diff: {exc}", file=sys.stderr)
        return EXIT_FAILED
    change = compare_documents(old.document if old else None, new.document)
    print(_classification(args.key, old=old, new=new, change=change, fmt=args.format))
    if verdict:
        print(("> " if args.format == "markdown" else "") + verdict)
    diff = unified_diff(
        old.document if old else None,
        new.document,
        old_label=old.label if old else "(none)",
        new_label=new.label,
    )
    print()
    print(_diff_block(diff, fmt=args.format, max_lines=args.max_lines) if diff else "(no difference)")
    return 0


def _working_metric(key: str, *, metrics_dir: Path, sql_root: Path) -> tuple[Path, MetricSpec]:
    from metrics_center.definitions.loader import load_metric
    from metrics_center.errors import SpecError

    path = next((p for p in (metrics_dir / f"{key}.yaml", metrics_dir / f"{key}.yml") if p.is_file()), None)
    if path is None:
        raise CommandError(
            f"{key!r} is not defined in {metrics_dir} (no {key}.yaml) — check the key, or pass --metrics-dir"
        )
    try:
        return path, load_metric(path, teams=None, sql_root=sql_root)
    except SpecError as exc:
        raise CommandError(f"{path} is not valid; fix it first (metrics-center validate):\n{exc}") from None


def _against_ref(
    ref: str, *, path: Path, spec: MetricSpec, sql_root: Path
) -> tuple[Side | None, Side, str | None]:
    import tempfile

    from metrics_center.definitions.changes import compare_documents
    from metrics_center.definitions.review import (
        GitError,
        file_document,
        read_ref,
        ref_document,
        spec_from_text,
        version_problems,
    )

    new_doc, new_hash = file_document(spec, sql_root=sql_root)
    new = Side("working tree", spec.version, new_doc)
    try:
        ref_metrics, ref_sql = read_ref(ref=ref, folders=[path.parent, sql_root])
    except GitError as exc:
        raise CommandError(str(exc)) from None
    data = ref_metrics.read(path.name)
    if data is None:
        return None, new, f"new metric: {path.name} does not exist at {ref}"
    old_spec = spec_from_text(data)
    if old_spec is None:
        raise CommandError(f"{path.name} at {ref} does not pass today's schema; cannot compare with it")
    with tempfile.TemporaryDirectory(prefix="mc-ref-sql-") as scratch:
        try:
            old_doc, old_hash = ref_document(old_spec, ref_sql=ref_sql, scratch=Path(scratch))
        except OSError as exc:
            raise CommandError(
                f"{path.name} at {ref} uses SQL missing there ({exc}); cannot compare"
            ) from None
    change = compare_documents(old_doc, new_doc)
    problems = version_problems(
        path, old=old_spec, new=spec, change=change, meaning_changed=old_hash != new_hash, ref=ref
    )
    verdict = "\n".join(f"problem: {p}" for p in problems) or None
    return Side(ref, old_spec.version, old_doc), new, verdict


def _against_mart(
    url: str | None, *, spec: MetricSpec, sql_root: Path
) -> tuple[Side | None, Side, str | None]:
    from metrics_center.definitions.meaning import load_definition

    definition = load_definition(spec, sql_root=sql_root)
    new = Side("working tree", spec.version, definition.document)
    rows = _registered(url, key=spec.key)
    if not rows:
        return None, new, f"new metric: {spec.key} has no version registered in the mart yet"
    newest = rows[-1]
    old = Side(f"mart v{newest.version}", newest.version, newest.definition)
    if spec.version < newest.version:
        verdict = f"problem: version {spec.version} is lower than the registered version {newest.version} — the mart refuses it"
    elif spec.version == newest.version and definition.meaning_hash != newest.definition_hash:
        verdict = (
            f"problem: the meaning changed but version {spec.version} is already registered with another meaning "
            f"— set version: {newest.version + 1} and say what changed in change_note"
        )
    elif spec.version == newest.version:
        verdict = "no change of meaning since the registered version"
    else:
        verdict = None
    return old, new, verdict


def _classification(key: str, *, old: Side | None, new: Side, change: DefinitionChange, fmt: Format) -> str:
    if old is None:
        what = "new metric" + (" (breaking: true)" if change.forced_breaking else "")
        head = f"{key} v{new.version} ({new.label})"
    else:
        what = change.summary()
        head = f"{key} v{old.version} ({old.label}) → v{new.version} ({new.label})"
    if fmt == "markdown":
        label, _, rest = what.partition(": ")
        return f"**{head}**: **{label}**" + (f": {rest}" if rest else "")
    return f"{head}: {what}"


def _diff_block(diff: str, *, fmt: Format, max_lines: int) -> str:
    from metrics_center.definitions.changes import truncate_diff

    if max_lines > 0:
        diff, _ = truncate_diff(diff, max_lines=max_lines)
    diff = diff.rstrip("\n")
    if fmt == "text":
        return diff
    longest = max((len(run) for run in diff.replace("\n", " ").split() if set(run) == {"`"}), default=0)
    fence = "`" * max(3, longest + 1)  # a ``` inside the SQL must not close the block
    return f"{fence}diff\n{diff}\n{fence}"


# --- history ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    version: int
    definition_hash: str
    definition: dict[str, Any]
    change_note: str | None
    valid_from: datetime | None
    valid_to: datetime | None


def _registered(url: str | None, *, key: str) -> list[Registered]:
    """Every registered version of ``key``, oldest first."""
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    from metrics_center.errors import MartError
    from metrics_center.mart.engine import create_mart_engine
    from metrics_center.mart.tables import metric_definition as t

    try:
        engine = create_mart_engine(url)
    except (SQLAlchemyError, ValueError, MartError) as exc:
        raise CommandError(
            f"cannot open the mart ({exc}); pass --url or set METRICS_CENTER_MART_URL"
        ) from None
    where = engine.url.render_as_string(hide_password=True)
    # Only the columns used here: history works on marts before and after later migrations.
    columns = (
        t.c.version,
        t.c.definition_hash,
        t.c.definition,
        t.c.change_note,
        t.c.valid_from,
        t.c.valid_to,
    )
    query = sa.select(*columns).where(t.c.metric_key == key).order_by(t.c.version)
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise CommandError(
            f"cannot read metric_definition in the mart at {where} ({reason}) — check --url, and run "
            "metrics-center mart upgrade if the mart is new"
        ) from None
    finally:
        engine.dispose()
    return [
        Registered(r.version, r.definition_hash, r.definition, r.change_note, r.valid_from, r.valid_to)
        for r in rows
    ]


def _history(args: argparse.Namespace) -> int:
    try:
        rows = _registered(args.url, key=args.key)
    except CommandError as exc:
        print(f"metrics-center history: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not rows:
        print(
            f"metrics-center history: {args.key} has no version registered in the mart — a version is "
            "registered by its DAG's first run; check the key and --url",
            file=sys.stderr,
        )
        return 1
    print(
        history_report(args.key, rows, fmt=args.format, max_lines=args.max_lines, with_diffs=not args.no_diff)
    )
    return 0


def history_report(key: str, rows: list[Registered], *, fmt: Format, max_lines: int, with_diffs: bool) -> str:
    """The versions table (oldest first), then the diff of each version against the one before."""
    from metrics_center.definitions.changes import compare_documents, unified_diff

    changes = [
        compare_documents(prev.definition if prev else None, row.definition) for prev, row in _pairs(rows)
    ]
    verdicts = [
        ("first version" + (" (breaking: true)" if c.forced_breaking else "")) if i == 0 else c.summary()
        for i, c in enumerate(changes)
    ]
    out: list[str] = []
    if fmt == "markdown":
        out += [
            f"**{key}**: {len(rows)} version(s) in the mart",
            "",
            "| version | valid from | valid to | meaning | change | change note |",
            "|---|---|---|---|---|---|",
        ]
        out += [
            f"| v{r.version} | {_when(r.valid_from)} | {_when(r.valid_to) if r.valid_to else 'current'} | "
            f"`{r.definition_hash[:12]}` | {_cell(v)} | {_cell(r.change_note or '')} |"
            for r, v in zip(rows, verdicts, strict=True)
        ]
    else:
        out.append(f"{key}: {len(rows)} version(s) in the mart")
        for r, v in zip(rows, verdicts, strict=True):
            until = _when(r.valid_to) if r.valid_to else "current"
            out += [
                "",
                f"v{r.version}  {_when(r.valid_from)} → {until}  meaning {r.definition_hash[:12]}  {v}",
                f"    change note: {r.change_note or '(none)'}",
            ]
    if with_diffs:
        for prev, row in _pairs(rows):
            if prev is None:
                continue
            diff = unified_diff(
                prev.definition, row.definition, old_label=f"v{prev.version}", new_label=f"v{row.version}"
            )
            title = f"v{prev.version} → v{row.version}"
            out += ["", f"### {title}" if fmt == "markdown" else f"{title}:", ""]
            out.append(_diff_block(diff, fmt=fmt, max_lines=max_lines) if diff else "(no difference)")
    return "\n".join(out)


def _pairs(rows: list[Registered]) -> list[tuple[Registered | None, Registered]]:
    return list(zip([None, *rows[:-1]], rows, strict=True))


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    if moment.tzinfo is not None:
        from datetime import UTC

        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"  # the mart stores UTC (SQLite returns it naive)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


# --- registration -----------------------------------------------------------------------------------


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``diff`` and ``history``."""
    url_help = "mart SQLAlchemy URL (default: connection metrics_mart / SQLite)"
    diff = sub.add_parser(
        "diff",
        help="a metric's definition (YAML and SQL) against a git ref or its newest registered version",
        description="Prints a one-line classification (breaking or not, and which changes), then a unified diff "
        "of the YAML fields and every SQL file the definition uses — paste it into a pull request.",
    )
    diff.add_argument("key", help="metric key (the file <key>.yaml in the metrics folder)")
    against = diff.add_mutually_exclusive_group()
    against.add_argument("--against", metavar="REF", help="compare with a git ref (e.g. origin/main)")
    against.add_argument(
        "--url", help=f"compare with the newest version in the mart at this URL ({url_help})"
    )
    diff.add_argument("--metrics-dir", help="metrics folder (default: $METRICS_CENTER_HOME/metrics)")
    diff.add_argument("--sql-root", help="folder of SQL files (default: <metrics folder>/../sql)")
    _output_options(diff)
    diff.set_defaults(func=_diff)

    history = sub.add_parser(
        "history",
        help="every registered version of a metric, and what changed between consecutive versions",
    )
    history.add_argument("key", help="metric key")
    history.add_argument("--url", help=url_help)
    history.add_argument("--no-diff", action="store_true", help="only the list of versions")
    _output_options(history)
    history.set_defaults(func=_history)


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=["text", "markdown"],
        default="text",
        help="markdown: bold classification and ```diff blocks, for a pull request (default: text)",
    )
    parser.add_argument(
        "--max-lines",
        type=int,
        default=0,
        metavar="N",
        help="cut each diff after N lines (default: no limit)",
    )
