"""Run the metric's Great Expectations 1.x expectations on the transform result.

GX is imported inside the functions only: importing this module is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metrics_center.definitions.gx_rules import gx_error_text, jsonable, quiet_gx, raised_exception_text
from metrics_center.errors import QualityCheckFailed

if TYPE_CHECKING:
    import pandas as pd

    from metrics_center.definitions.spec import Expectation


def _run_one(batch: Any, rule: Expectation) -> dict[str, Any]:
    from great_expectations.expectations.registry import get_expectation_impl

    outcome: dict[str, Any] = {"expectation": rule.expect, "kwargs": jsonable(rule.kwargs)}
    try:
        result = batch.validate(get_expectation_impl(rule.expect)(**rule.kwargs))
    except Exception as exc:  # one broken rule is a failed rule, not a crashed task
        return {
            **outcome,
            "success": False,
            "observed": {"error": gx_error_text(exc, expect=rule.expect, kwargs=rule.kwargs)},
        }
    error = raised_exception_text(result.exception_info)
    if error is not None:
        return {**outcome, "success": False, "observed": {"error": error}}
    observed = {k: v for k, v in (result.result or {}).items() if k != "partial_unexpected_index_list"}
    return {**outcome, "success": bool(result.success), "observed": jsonable(observed)}


def run_expectations(
    *, frame: pd.DataFrame, rules: list[Expectation], suite_name: str
) -> list[dict[str, Any]]:
    """Validate ``frame`` against ``rules`` with an ephemeral GX context; one result dict per rule.

    A rule GX cannot run (bad arguments, an exception) is a failed result with ``observed.error``.
    """
    quiet_gx()
    import great_expectations as gx

    if not rules:
        return []
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # tqdm lines would flood task logs
    batch = (
        context.data_sources.add_pandas("metrics_center")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe("run")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    return [_run_one(batch, rule) for rule in rules]


def raise_on_failures(*, metric_key: str, results: list[dict[str, Any]]) -> None:
    failed = [r for r in results if not r["success"] and r.get("severity", "block") == "block"]
    if failed:
        lines = [f"{r['expectation']}({r['kwargs']}) observed {r['observed']}" for r in failed]
        raise QualityCheckFailed(
            f"{metric_key}: {len(failed)} of {len(results)} checks failed; nothing will be published:\n  "
            + "\n  ".join(lines)
        )
