"""What a daily step reports: a materialization and check results for each of its days.

A daily step covers one partition (the schedule's day) or, in a backfill run under the
calendar's ``BackfillPolicy``, a range of them. Dagster 1.13 turns a ranged step's one
output into a materialization per partition that all carry the output's metadata, and
records an ``AssetCheckResult`` of a ranged step against no partition at all. So here each
day's metadata goes to its own partition (``add_asset_metadata(partition_key=...)``) and
each day's check results become ``AssetCheckEvaluation``\\ s that name the day, targeting
that day's materialization, as a one-day run records them. A one-day step yields the same
``MaterializeResult`` it always did.

``each_day`` runs a one-day body once per day of the step, for assets whose API offers
nothing cheaper over a range (the Amplitude export, warehouse-only assets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)


@dataclass(frozen=True)
class DayResult:
    """One day's materialization metadata and check results."""

    partition_key: str
    metadata: Mapping[str, Any]
    check_results: Sequence[dg.AssetCheckResult] = field(default_factory=list)

    @classmethod
    def of(cls, partition_key: str, result: dg.MaterializeResult) -> DayResult:
        return cls(partition_key, dict(result.metadata or {}), list(result.check_results))


def range_cost(cost: Mapping[str, Any], days: Sequence[Any]) -> dict[str, Any]:
    """A step's API figures (``cost``), as each day of it reports them: over a range every
    day's materialization carries the whole range's figures, so they say which days they
    cover (summing them over the days would count the range once per day)."""
    if len(days) == 1:
        return dict(cost)
    return {
        **cost,
        "api_figures_cover": dg.MetadataValue.text(
            f"the {len(days)} days {days[0]} to {days[-1]} (one run)"
        ),
    }


def report_days(
    context: dg.AssetExecutionContext, days: Sequence[DayResult]
) -> Iterator[dg.MaterializeResult | dg.Output | dg.AssetCheckEvaluation]:
    """The events of a step that wrote ``days``: a one-day step's ``MaterializeResult``, or
    for a range one materialization per day with that day's metadata, then each day's
    check results against its day."""
    if context.has_partition_key:
        (day,) = days
        yield dg.MaterializeResult(metadata=day.metadata, check_results=day.check_results)
        return
    for day in days:
        context.add_asset_metadata(day.metadata, partition_key=day.partition_key)
    # The materializations are recorded when this is consumed, before the checks below
    # look up the one each of them targets.
    yield dg.MaterializeResult()
    answered: set[dg.AssetCheckKey] = set()
    for day in days:
        for result in day.check_results:
            evaluation = _evaluation(context, result, day.partition_key)
            key = evaluation.asset_check_key
            if key not in answered:
                # Each check is an output of the step, yielded once whatever its days.
                answered.add(key)
                output = context.assets_def.get_output_name_for_asset_check_key(key)
                yield dg.Output(None, output_name=output)
            yield evaluation


def _evaluation(
    context: dg.AssetExecutionContext, result: dg.AssetCheckResult, partition_key: str
) -> dg.AssetCheckEvaluation:
    asset_key = result.asset_key or context.asset_key
    name = result.check_name
    if name is None:
        raise dg.DagsterInvariantViolationError(
            f"a check result of {asset_key.to_user_string()} has no check_name: a ranged step "
            "records each day's results by name"
        )
    spec = context.assets_def.get_spec_for_check_key(dg.AssetCheckKey(asset_key, name))
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition_key]), limit=1
    ).records
    target = (
        AssetCheckEvaluationTargetMaterializationData(
            run_id=records[0].event_log_entry.run_id,
            storage_id=records[0].storage_id,
            timestamp=records[0].timestamp,
        )
        if records
        else None
    )
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=name,
        passed=result.passed,
        metadata=result.metadata,
        target_materialization_data=target,
        severity=result.severity,
        description=result.description,
        blocking=spec.blocking,
        partition=partition_key if spec.partitions_def is not None else None,
    )


class OneDay:
    """The step's context as a one-day step of ``partition_key`` sees it: the day's key,
    everything else (log, instance, asset key) the step's own."""

    def __init__(self, context: dg.AssetExecutionContext, partition_key: str) -> None:
        self._context = context
        self.partition_key = partition_key
        self.partition_keys = [partition_key]
        self.has_partition_key = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def each_day(
    context: dg.AssetExecutionContext,
    one_day: Callable[[Any], dg.MaterializeResult],
) -> Iterator[dg.MaterializeResult | dg.Output | dg.AssetCheckEvaluation]:
    """``one_day(context)`` for each day of the step, oldest first, reported per day. A day
    that fails stops the step: the days before it are written, and a re-run of the range
    replaces them with the same rows."""
    if context.has_partition_key:
        yield one_day(context)
        return
    days = [DayResult.of(key, one_day(OneDay(context, key))) for key in context.partition_keys]
    yield from report_days(context, days)
