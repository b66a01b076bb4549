"""``metrics-center validate`` and ``schema``: check metric files, print the JSON Schema for editors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from metrics_center import settings
from metrics_center.cli.failures import EXIT_FAILED
from metrics_center.i18n.translate import _


def json_schemas() -> dict[str, dict]:
    from metrics_center.definitions.spec import MetricSpec, Teams

    metric = MetricSpec.model_json_schema()
    metric["title"] = "Metrics Center metric definition"
    teams = Teams.model_json_schema()
    teams["title"] = "Metrics Center teams file (_teams.yaml)"
    return {"metric": metric, "teams": teams}


def _validate(args: argparse.Namespace) -> int:
    from metrics_center.definitions.loader import load_catalog

    paths = [Path(p) for p in args.paths] or [settings.metrics_dir()]
    problems = 0
    warnings = 0
    checked = 0
    missing = [str(target) for target in paths if not target.exists()]
    if missing:
        print(
            "metrics-center validate: "
            + _(
                "{paths} does not exist — give metric files or metrics folders (default: {default})",
                paths=", ".join(missing),
                default="$METRICS_CENTER_HOME/metrics",
            ),
            file=sys.stderr,
        )
        return EXIT_FAILED
    for target in paths:
        if target.is_dir():
            metrics_dir, only = target, None
        else:
            metrics_dir, only = target.parent, [target.resolve()]
        sql_root = Path(args.sql_root) if args.sql_root else metrics_dir.parent / "sql"
        # A CLI may import Great Expectations (DAG parsing may not): build every rule through GX's model.
        # The whole folder is loaded even for one file: metric sources are checked against the others.
        catalog = load_catalog(metrics_dir, sql_root=sql_root, check_with_gx=True)
        reported = {
            path: file_problems
            for path, file_problems in catalog.problems.items()
            if only is None or path.resolve() in only or path.name.startswith("_")
        }
        for path, file_warnings in catalog.warnings.items():
            if only is None or path.resolve() in only:
                for warning in file_warnings:  # e.g. reading a deprecated metric: said, not counted
                    print(_("warning: {warning}", warning=warning), file=sys.stderr)
                    warnings += 1
        if only is None:
            checked += len(catalog.metrics) + sum(1 for p in reported if not p.name.startswith("_"))
        else:
            checked += len(only)
        for file_problems in reported.values():
            for problem in file_problems:
                print(problem, file=sys.stderr)
                problems += 1
        if args.against:
            from metrics_center.cli.review import print_review

            problems += print_review(
                ref=args.against, metrics_dir=metrics_dir, sql_root=sql_root, catalog=catalog, only=only
            )
    if problems:
        # "(s)" rather than n_: the English line is matched as it is by scripts (and tests).
        print(
            _("{problems} problem(s) in {checked} metric file(s)", problems=problems, checked=checked),
            file=sys.stderr,
        )
        return 1
    if warnings:
        print(
            _("ok: {checked} metric file(s) valid, {warnings} warning(s)", checked=checked, warnings=warnings)
        )
    else:
        print(_("ok: {checked} metric file(s) valid", checked=checked))
    return 0


def _schema(args: argparse.Namespace) -> int:
    schemas = json_schemas()
    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for name, schema in schemas.items():
            (out / f"{name}.schema.json").write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {', '.join(f'{n}.schema.json' for n in schemas)} to {out}")
    else:
        print(json.dumps(schemas[args.kind], indent=2, ensure_ascii=False))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    validate = sub.add_parser("validate", help="check metric files; print path:line: key: problem — fix")
    validate.add_argument(
        "paths", nargs="*", help="metric files or folders (default: $METRICS_CENTER_HOME/metrics)"
    )
    validate.add_argument("--sql-root", help="folder of SQL files (default: <metrics folder>/../sql)")
    validate.add_argument(
        "--against",
        metavar="REF",
        help="also review changes against a git ref (e.g. origin/main): a meaning change needs a version bump "
        "and a new change_note; versions only go up",
    )
    validate.set_defaults(func=_validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of metric (or teams) files")
    schema.add_argument("kind", nargs="?", choices=["metric", "teams"], default="metric")
    schema.add_argument(
        "--write", metavar="DIR", help="write metric.schema.json and teams.schema.json to DIR"
    )
    schema.set_defaults(func=_schema)
