"""What a retired metric may no longer do: compute a period. Pure functions over a spec (no I/O).

A retired metric (``status: retired``) keeps its published history — the mart, the dictionary, the CSV download
and its BI relations still read it — but nothing computes or publishes a new period of it: its DAG has no
schedule, and each of its tasks refuses to run with :func:`retired_refusal`'s words.
"""

from __future__ import annotations

from metrics_center.definitions.spec import MetricSpec


def is_retired(spec: MetricSpec) -> bool:
    """Whether ``spec`` may no longer be computed (its history stays readable)."""
    return spec.status == "retired"


def retired_refusal(spec: MetricSpec) -> str | None:
    """Why a task of ``spec`` refuses to compute, naming the replacement and the way back; None unless retired."""
    if not is_retired(spec):
        return None
    instead = (
        f"read {spec.replaced_by} (its replacement) instead"
        if spec.replaced_by
        else f"it names no replacement (replaced_by); ask its owner ({spec.owner})"
    )
    return (
        f"{spec.key} is retired (status: retired in {spec.key}.yaml): it computes and publishes no new period — "
        f"{instead}. Its published history stays readable in the mart, the dictionary and BI. To compute it "
        f"again, set status: active (or deprecated) in {spec.key}.yaml and deploy it."
    )
