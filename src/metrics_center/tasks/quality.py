"""Run the metric's Great Expectations 1.x expectations on the transform result."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from metrics_center.errors import QualityCheckFailed

if TYPE_CHECKING:
    import pandas as pd

    from metrics_center.spec import Expectation


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def run_expectations(
    *, frame: pd.DataFrame, rules: list[Expectation], suite_name: str
) -> list[dict[str, Any]]:
    """Validate ``frame`` against ``rules`` with an ephemeral GX context; one result dict per rule."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.expectations.registry import get_expectation_impl

    if not rules:
        return []
    context = gx.get_context(mode="ephemeral")
    batch = (
        context.data_sources.add_pandas("metrics_center")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe("run")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    results = []
    for rule in rules:
        result = batch.validate(get_expectation_impl(rule.expect)(**rule.kwargs))
        results.append(
            {
                "expectation": rule.expect,
                "kwargs": _jsonable(rule.kwargs),
                "success": bool(result.success),
                "observed": _jsonable(
                    {k: v for k, v in (result.result or {}).items() if k != "partial_unexpected_index_list"}
                ),
            }
        )
    return results


def raise_on_failures(*, metric_key: str, results: list[dict[str, Any]]) -> None:
    failed = [r for r in results if not r["success"]]
    if failed:
        lines = [f"{r['expectation']}({r['kwargs']}) observed {r['observed']}" for r in failed]
        raise QualityCheckFailed(
            f"{metric_key}: {len(failed)} of {len(results)} expectations failed; nothing will be published:\n  "
            + "\n  ".join(lines)
        )
