"""The one way an Amplitude asset is declared: its conventions (kinds, owners, the
``amplitude_api`` pool, cadence tags, freshness, step retries, checks per partition) and
the API cost every materialization reports. ``assets.py`` and ``session_assets.py`` build
their assets with it.
"""

# No `from __future__ import annotations`: Dagster reads the asset function's context
# annotation at definition time.
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg

from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.api_session import api_metadata
from analytics_assets.day_results import DayResult, each_day, report_days
from analytics_assets.naming import DAILY, SNAPSHOT, AssetNaming, asset_tags
from analytics_assets.partitions import FRESHNESS_POLICY, DailyCalendar, beta_backfill_policy
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.asset_kinds import WAREHOUSE_KIND
from analytics_assets.warehouse.base import WarehouseResource

KINDS = {"amplitude", WAREHOUSE_KIND}
OWNERS = ["team:data-engineering"]
POOL = "amplitude_api"

Compute = Callable[
    [dg.AssetExecutionContext, AmplitudeResource, WarehouseResource],
    dg.MaterializeResult | list[DayResult],
]
CheckSpecs = Callable[[dg.AssetKey, checks.Partitions], list[dg.AssetCheckSpec]]


def cost_metadata(client: Any, since: Any) -> dict[str, dg.MetadataValue]:
    """The API figures of a materialization, with Amplitude's cost units spent."""
    meta = api_metadata(client, since, "amplitude")
    spent = getattr(client, "cost_spent", None)
    if isinstance(spent, dict):
        meta["amplitude_cost_units"] = dg.MetadataValue.float(float(sum(spent.values())))
    return meta


def amplitude_asset(
    naming: AssetNaming,
    name: str,
    description: str,
    compute: Compute,
    check_specs: CheckSpecs,
    calendar: DailyCalendar | None = None,
    deps: Sequence[dg.AssetKey] = (),
    retry: dg.RetryPolicy | None = None,
    ranged: bool = False,
) -> dg.AssetsDefinition:
    """One Amplitude asset: a daily partition of ``calendar`` when given one, else a
    snapshot. Jobs and their schedules run both (``jobs.py``); no automation condition
    books them a second time. Every asset calls the API in the one pool and, with
    ``retry``, runs again as a step when the API stays down past the transport's retries.
    ``check_specs(key, partitions_def)`` declares its checks. A daily asset's step covers
    its day or a backfill run's range of days (the calendar's ``backfill_policy``):
    ``compute`` is a one-day body run for each day of the step, or with ``ranged`` the
    step's whole body, returning each day's ``DayResult``."""
    key = naming.key(name)
    partitions = calendar.partitions_def if calendar else None

    with beta_backfill_policy():  # Dagster warns at this call, not at the decoration
        as_asset = dg.asset(
            key=key,
            group_name=naming.group,
            kinds=KINDS,
            owners=OWNERS,
            pool=POOL,
            tags=asset_tags(naming, DAILY if calendar else SNAPSHOT),
            description=description,
            partitions_def=partitions,
            backfill_policy=calendar.backfill_policy if calendar else None,
            deps=list(deps),
            freshness_policy=FRESHNESS_POLICY,
            retry_policy=retry,
            check_specs=check_specs(key, partitions),
        )

    @as_asset
    def _asset(
        context: dg.AssetExecutionContext,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> Iterator[Any]:
        if calendar is None:
            yield compute(context, amplitude, warehouse)
        elif ranged:
            yield from report_days(context, compute(context, amplitude, warehouse))
        else:
            yield from each_day(context, lambda day: compute(day, amplitude, warehouse))

    return _asset
