"""One tick of an alert sensor: fetch the family's snapshots, evaluate its rules, deliver.

``AlertSensorRunner.tick(context, resources)`` is what each sensor of ``alerts/sensors.py``
runs, with the resources its typed parameters received; it also works outside the daemon
(tests, the demo) and hands back the alerts.
"""

from __future__ import annotations

import dataclasses
from contextlib import ExitStack
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from analytics_assets.alerts.engine import AlertContext, SeriesSnapshot, evaluate
from analytics_assets.alerts.model import Alert
from analytics_assets.alerts.reference import writeback_reference
from analytics_assets.alerts.rules import FieldChangedCondition, RuleSpec
from analytics_assets.alerts.settings import (
    MAX_CURSOR_BYTES,
    RETRYABLE,
    Family,
    LateData,
    SensorResources,
    SensorSettings,
    TickOutcome,
    family_of,
    skip_text,
)
from analytics_assets.alerts.sinks import TableSink, build_sinks, dispatch
from analytics_assets.alerts.sources import (
    FetchContext,
    Plan,
    fetch,
    fetch_day_totals,
    fetch_names,
    make_plans,
    plan_for,
)
from analytics_assets.alerts.state import SensorState, bound_outbox, dump_state, load_state
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.http.errors import ApiError
from analytics_assets.naming import table_asset_key
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.warehouse.base import WarehouseResource

# ------------------------------------------------------------------------------ clients


def _client(resource: PendoResource | AmplitudeResource, settings: SensorSettings) -> Any:
    """The resource's client with the sensors' short timeouts and retries (a test double
    bound in the resource's place hands out its own client)."""
    if isinstance(resource, PendoResource | AmplitudeResource):
        return resource.get_client(
            read_timeout=settings.api_timeout_seconds,
            max_attempts=settings.api_attempts,
            max_retry_time=settings.api_retry_seconds,
        )
    return resource.get_client()


def _requests_sent(client: Any) -> int:
    stats = getattr(client, "stats", None)
    try:
        return int(stats.snapshot().requests_sent) if stats is not None else 0
    except AttributeError:
        return 0


class _Clients:
    """Clients opened on first use within a tick, closed at its end."""

    def __init__(
        self, resources: SensorResources, settings: SensorSettings, stack: ExitStack
    ) -> None:
        self.resources, self.settings, self.stack = resources, settings, stack
        self._open: dict[str, Any] = {}

    def get(self, system: str) -> Any:
        if system not in self._open:
            resources = self.resources
            resource = resources.pendo if system == "pendo" else resources.amplitude
            if resource is None:
                raise LookupError(f"the sensor needs the {system!r} resource")
            client = _client(resource, self.settings)
            if hasattr(client, "close"):
                self.stack.callback(client.close)
            self._open[system] = client
        return self._open[system]

    def requests(self) -> int:
        return sum(_requests_sent(c) for c in self._open.values())

    def stats(self) -> dict[str, dict[str, float]]:
        out = {}
        for system, client in self._open.items():
            snapshot = client.stats.snapshot() if hasattr(client, "stats") else None
            cost = getattr(client, "cost_spent", None) or {}
            cost = cost() if callable(cost) else cost
            out[system] = {
                "requests": float(getattr(snapshot, "requests_sent", 0)),
                "bytes": float(getattr(snapshot, "bytes_received", 0)),
                "cost": float(sum(cost.values())),
            }
        return out


# ------------------------------------------------------------------------------ runner


class AlertSensorRunner:
    """The tick of one family's sensor, usable without Dagster's daemon (tests, the demo)."""

    def __init__(self, family: Family, settings: SensorSettings) -> None:
        self.family = family
        self.settings = settings
        self.name = f"{family.name}_sensor"

    # -- what it evaluates

    def rules(self) -> list[RuleSpec]:
        return [r for r in self.settings.rules.rules if family_of(r) == self.family.name]

    def plans(self) -> list[Plan]:
        return list(make_plans(self.rules()).values())

    def systems(self) -> set[str]:
        """The APIs a tick may call: the family's own (names, late data) and its plans'."""
        return {self.family.system, *(plan.system for plan in self.plans())}

    def late_data(self) -> LateData | None:
        return self.settings.late_data if self.family.name == "pendo_activity" else None

    def _totals_plan(self) -> Plan | None:
        """A plan whose snapshot already carries account events per complete day."""
        late = self.late_data()
        if late is None:
            return None
        for plan in self.plans():
            spec = plan.spec
            if (
                plan.key.kind == "series" and spec.name == "pendo.events"
                and plan.key.entity == "account" and spec.period == "day"
                and not spec.include_current and not spec.filter
                and spec.window >= late.lookback_days and "numEvents" in plan.metrics
            ):  # fmt: skip
                return plan
        return None

    def calls_per_tick(self) -> int:
        plans = min(len(self.plans()), self.family.max_calls)
        if self.late_data() is not None and self._totals_plan() is None:
            plans += 1
        return plans

    def description(self) -> str:
        names = ", ".join(r.name for r in self.rules()) or "none"
        calls = self.calls_per_tick()
        extra = {
            "pendo_activity": " (+1 to name the accounts of alerts when some fire)",
            "pendo_metadata": " (+1 to name the accounts of alerts when some fire)",
            "pendo_guides": " (+1 guide list to name guides when alerts fire)",
        }.get(self.family.name, "")
        text = (
            f"Polls {self.family.what} every {self.settings.minimum_interval_seconds // 60} min: "
            f"at most {calls} API call{'s' if calls != 1 else ''} per tick{extra}. "
            f"Alerts on transitions only. Rules: {names}."
        )
        late = self.late_data()
        if late is not None:
            target = late.job_name or "nothing (no job configured: logged only)"
            asset = late.asset_key.to_user_string()
            text += (
                f" Late data: re-runs {target} for days of the last {late.lookback_days} "
                f"whose events differ from {late.metadata_key} of {asset}."
            )
        return text

    # -- one tick

    def tick(self, context: Any, resources: SensorResources | None = None) -> TickOutcome:
        """One evaluation: ``context`` gives the cursor, log and instance; ``resources``
        are the clients' resources and the warehouse (the sensor's typed parameters)."""
        settings = self.settings
        resources = resources or SensorResources()
        state, reset = load_state(context.cursor)
        if reset:
            context.log.warning(
                f"{self.name}: cursor reset ({reset}); conditions already holding will alert "
                "once more"
            )
        rules = self.rules()
        plans = self.plans()
        chosen, rotation = _rotate(plans, state, self.family.max_calls)
        totals_plan = self._totals_plan()
        now = settings.clock()
        ctx = FetchContext(now, settings.pendo_timezone, settings.amplitude_timezone,
                           settings.app_ids)  # fmt: skip
        outcome = TickOutcome()
        with ExitStack() as stack:
            clients = _Clients(resources, settings, stack)
            try:
                snapshots = {
                    p.key: fetch(p, ctx, **{p.system: clients.get(p.system)}) for p in chosen
                }
                totals = self._day_totals(snapshots, totals_plan, clients, ctx)
                alerts = self._evaluate(context, rules, snapshots, state, resources.warehouse)
                alerts = self._name(alerts, clients, context)
            except RETRYABLE as exc:
                service = getattr(exc, "service", None) or self.family.system
                text = skip_text(service.capitalize(), exc)
                context.log.warning(f"{self.name}: {text}")
                return TickOutcome(skip_reason=text, api_requests=clients.requests(),
                                   api_stats=clients.stats())  # fmt: skip
            outcome.api_requests = clients.requests()
            outcome.api_stats = clients.stats()
        if rotation is not None:
            state.extra["rot"] = rotation
        outcome.run_requests = self._late_runs(context, totals)
        # Built per tick: the webhook URL is looked up now, never when the location loads.
        sinks = build_sinks(settings.rules, warehouse=resources.warehouse,
                            environ=settings.lookup_env(),
                            url_env=settings.webhook_url_env_var)  # fmt: skip
        report = dispatch(alerts, state, sinks, context.log, settings.max_outbox)
        outcome.asset_events = [
            dg.AssetMaterialization(
                asset_key=table_asset_key(sink.table),
                metadata={
                    "alerts_added": dg.MetadataValue.int(sink.stored),
                    "sensor": dg.MetadataValue.text(self.name),
                    "dagster/table_name": dg.MetadataValue.text(sink.table),
                },
            )
            for sink in sinks.values()
            if isinstance(sink, TableSink) and sink.stored
        ]
        outcome.alerts = alerts
        outcome.cursor = self._dump(state, context)
        evaluated = ", ".join(p.describe() for p in chosen) or "no rules"
        outcome.skip_reason = (
            f"{len(alerts)} alert(s) ({report.summary()}); {outcome.api_requests} API "
            f"request(s) for {evaluated}"
        )
        return outcome

    def _evaluate(
        self, context: Any, rules: list[RuleSpec], snapshots: dict, state: SensorState,
        warehouse: WarehouseResource | None,
    ) -> list[Alert]:  # fmt: skip
        ruleset = self.settings.rules
        alerts: list[Alert] = []
        live = {r.name for r in rules}
        for name in list(state.rules):
            if name not in live:
                del state.rules[name]  # a rule removed from the file: forget it
        for rule in rules:
            snapshot = snapshots.get(plan_for(rule))
            if snapshot is None:
                continue  # this rule's turn comes on another tick
            snapshot = self._with_reference(rule, snapshot, context, warehouse)
            if snapshot is None:
                continue
            ctx = AlertContext(ruleset.severity(rule), ruleset.sinks_of(rule), self.name)
            result = evaluate(rule, snapshot, state.rules.get(rule.name), ctx,
                              log=context.log.info)  # fmt: skip
            state.rules[rule.name] = result.state
            if result.note:
                context.log.info(f"{self.name}: rule {rule.name}: {result.note}")
            alerts.extend(result.alerts)
        return alerts

    def _with_reference(
        self, rule: RuleSpec, snapshot: Any, context: Any, warehouse: WarehouseResource | None
    ) -> Any:
        cond = rule.condition
        if not isinstance(cond, FieldChangedCondition) or cond.reference == "previous":
            return snapshot
        try:
            reference = writeback_reference(warehouse, cond.writeback_table,
                                            cond.fields)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - e.g. the DuckDB file is held by a run
            context.log.warning(
                f"rule {rule.name}: could not read {cond.writeback_table} "
                f"({type(exc).__name__}: {str(exc)[:200]}); rule skipped this tick"
            )
            return None
        if reference is None:
            if cond.reference == "writeback_log":
                context.log.info(f"rule {rule.name}: no {cond.writeback_table} yet; skipped")
                return None
            return snapshot  # auto: before the first write-back, compare with last time
        return dataclasses.replace(snapshot, reference=reference,
                                   reference_label=cond.writeback_table)  # fmt: skip

    def _name(self, alerts: list[Alert], clients: _Clients, context: Any) -> list[Alert]:
        """Give alerts their entity's display name, with one extra call at most per type."""
        missing = {a.entity_type for a in alerts if a.entity_name is None and a.kind == "fired"}
        names: dict[tuple[str, str], str] = {}
        try:
            if "account" in missing and self.family.system == "pendo":
                ids = [a.entity_id for a in alerts if a.entity_type == "account"]
                found = fetch_names(clients.get("pendo"), "account", ids)
                names.update({("account", k): v for k, v in found.items()})
            if "guide" in missing:
                client = clients.get("pendo")
                guides = client.list_guides() if hasattr(client, "list_guides") else []
                for guide in guides:
                    if guide.get("id") and guide.get("name"):
                        names[("guide", str(guide["id"]))] = str(guide["name"])
        except ApiError as exc:  # a name is a nicety: never lose a tick over it
            context.log.info(f"{self.name}: could not look up names ({type(exc).__name__})")
            return alerts
        return [
            dataclasses.replace(a, entity_name=names.get((a.entity_type, a.entity_id)))
            if a.entity_name is None and (a.entity_type, a.entity_id) in names
            else a
            for a in alerts
        ]

    # -- late data

    def _day_totals(self, snapshots, plan: Plan | None, clients, ctx) -> SeriesSnapshot | None:
        late = self.late_data()
        if late is None:
            return None
        if plan is not None and plan.key in snapshots:
            return snapshots[plan.key]
        if plan is not None:
            return None  # the activity plan's turn is another tick
        return fetch_day_totals(clients.get("pendo"), ctx, late.lookback_days)

    def _late_runs(self, context: Any, totals: SeriesSnapshot | None) -> list[dg.RunRequest]:
        late = self.late_data()
        if late is None or totals is None or "numEvents" not in totals.totals:
            return []
        tz = ZoneInfo(totals.timezone)
        values = totals.totals["numEvents"]
        starts = totals.bucket_starts[-late.lookback_days :]
        values = values[-late.lookback_days :]
        requests = []
        try:
            instance = context.instance
        except Exception:  # noqa: BLE001 - a context built without an instance (a script)
            context.log.info(f"{self.name}: no Dagster instance: late data not checked")
            return []
        unresolved = object()
        selection: Any = unresolved  # resolved once, and only when a day needs a run
        for start, now_total in zip(starts, values, strict=True):
            day = datetime.fromtimestamp(start / 1000, tz).date().isoformat()
            recorded = _recorded_total(instance, late, day)
            if recorded is None or int(round(now_total)) == recorded:
                continue
            now_int = int(round(now_total))
            context.log.info(
                f"{self.name}: late data for {day}: {now_int:,} events in Pendo now, "
                f"{recorded:,} when {late.asset_key.to_user_string()} was materialized"
            )
            if late.job_name is None:
                continue
            if selection is unresolved:
                selection = late_data_selection(context, late, self.name)
            if selection == []:
                continue  # nothing of the job to re-run: said once, in the log
            requests.append(
                dg.RunRequest(
                    run_key=f"late-data:{late.asset_key.to_user_string()}:{day}:{now_int}",
                    partition_key=day,
                    asset_selection=selection,
                    tags={
                        "analytics_assets/trigger": "late_data",
                        "analytics_assets/events_materialized": str(recorded),
                        "analytics_assets/events_now": str(now_int),
                    },
                )
            )
        return requests

    def _dump(self, state: SensorState, context: Any) -> str:
        text = dump_state(state)
        if len(text) > MAX_CURSOR_BYTES and state.outbox:
            # The outbox is the only part that can grow without bound in practice; the
            # alerts it drops are in the warehouse table when that sink works.
            dropped = bound_outbox(state, max(0, len(state.outbox) // 4))
            context.log.error(
                f"{self.name}: cursor over {MAX_CURSOR_BYTES // 1024} KB; dropped {dropped} "
                "undelivered alerts from the outbox"
            )
            text = dump_state(state)
        return text


def _rotate(plans: list[Plan], state: SensorState, cap: int) -> tuple[list[Plan], int | None]:
    """The plans of this tick: all of them, or ``cap`` of them in turn across ticks."""
    if len(plans) <= cap:
        return plans, None
    start = int(state.extra.get("rot", 0)) % len(plans)
    chosen = [plans[(start + i) % len(plans)] for i in range(cap)]
    return chosen, (start + cap) % len(plans)


def late_data_selection(context: Any, late: LateData, sensor: str) -> list[dg.AssetKey] | None:
    """The assets a late-data run materializes: None for the whole job, [] for no run.

    An ``AssetSelection`` (the Pendo daily assets, by tags) is resolved here, at tick time,
    against the code location's asset graph: the sensor is built by its own component and
    cannot see the assets the others build, and tags keep working under any key prefix.
    Keys outside the job are left out: a run request naming one would fail the tick.
    """
    wanted = late.asset_selection
    if wanted is None or late.job_name is None:
        return None
    repository = context.repository_def
    if repository is None:  # a script's context: nothing to resolve against
        if isinstance(wanted, dg.AssetSelection):
            context.log.info(f"{sensor}: no repository to resolve the late-data selection; "
                             "runs re-materialize the whole job")  # fmt: skip
            return None
        return list(wanted)
    in_job = repository.get_job(late.job_name).asset_layer.selected_asset_keys
    if isinstance(wanted, dg.AssetSelection):
        keys = set(wanted.resolve(repository.asset_graph))
    else:
        keys = set(wanted)
        outside = sorted(k.to_user_string() for k in keys - in_job)
        if outside:
            context.log.warning(f"{sensor}: late-data assets not in {late.job_name}, left "
                                f"out: {', '.join(outside)}")  # fmt: skip
    chosen = sorted(keys & in_job, key=lambda k: k.to_user_string())
    if not chosen:
        context.log.warning(
            f"{sensor}: the late-data selection matches no asset of {late.job_name}; no "
            "run requested (check late_data_selection and the assets' tags)"
        )
    return chosen


def _recorded_total(instance: dg.DagsterInstance, late: LateData, day: str) -> int | None:
    """``metadata_key`` of the newest materialization of the asset for that partition."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=late.asset_key, asset_partitions=[day]), limit=1
    )
    if not result.records:
        return None
    materialization = result.records[0].asset_materialization
    value = materialization.metadata.get(late.metadata_key) if materialization else None
    raw = getattr(value, "value", value)
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None
