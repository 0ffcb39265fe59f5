"""The sensors against the sandbox over real HTTP, through ``dg.build_sensor_context``.

Each default rule fires on a staged change and stays quiet without one; nothing alerts
twice; conditions re-arm; the cursor survives a restart; a throttled tick skips; the webhook
sink's failure delays an alert but never loses it; late data re-runs a materialized day.
Alerts are read back from the ``analytics.alerts`` table, i.e. through the table sink.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import httpx
import numpy as np
import pytest

from analytics_assets.alerts.sensors import build_sensors
from analytics_assets.amplitude.client import AmplitudeClient
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.crm_writeback.tables import LogRow, append_log
from analytics_assets.pendo.client import MetadataRecord, PendoClient
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.company import Company
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

NY = "America/New_York"
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # Wednesday 10:00 in New York
YESTERDAY_START = "2026-11-17T05:00:00Z"  # local midnight of the last complete day


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    # Scale 3: ~300 accounts, enough guide views in a day for the dismissal-rate rule.
    with SandboxServer(SandboxConfig(seed=7, scale=3, now=NOW)) as server:
        yield server


@pytest.fixture(scope="module")
def company(sandbox: SandboxServer) -> Company:
    cfg = sandbox.config
    return Company(cfg.seed, cfg.scale, "us", cfg.pendo_timezone)


def control(sandbox: SandboxServer, path: str, body: Any = None, method: str = "POST") -> Any:
    response = httpx.request(method, f"{sandbox.urls.control()}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


class Harness:
    """The sensors of one 'deployment': resources, an instance, cursors kept between ticks."""

    def __init__(self, sandbox: SandboxServer, database: str, **options: Any) -> None:
        cfg = sandbox.config
        self.sandbox = sandbox
        self.warehouse = DuckDBWarehouse(database=database)
        self.resources = {
            "pendo": PendoResource(integration_key=cfg.pendo_keys["us"].read,
                                   base_url=sandbox.urls.pendo(), rate_per_second=50),
            "amplitude": AmplitudeResource(
                api_key=cfg.amplitude_keys["us"].api_key,
                secret_key=cfg.amplitude_keys["us"].secret_key,
                base_url=sandbox.urls.amplitude(),
            ),
            "warehouse": self.warehouse,
        }  # fmt: skip
        self.options = {"clock": lambda: NOW, "pendo_timezone": NY, "environ": {}, **options}
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursors: dict[str, str | None] = {}
        self.seen: set[str] = set()
        self.restart()

    def restart(self) -> None:
        """A new process: sensors built again, a new instance; only the cursors are kept."""
        self.sensors = {s.name: s for s in build_sensors(**self.options)}
        self.instance = dg.DagsterInstance.ephemeral()

    def tick(self, name: str) -> dg.SensorResult | dg.SkipReason:
        with dg.build_sensor_context(
            cursor=self.cursors.get(name), instance=self.instance, resources=self.resources
        ) as context:
            result = self.sensors[name](context)
        if isinstance(result, dg.SensorResult) and result.cursor is not None:
            self.cursors[name] = result.cursor
        return result

    def new_alerts(self, rule: str | None = None) -> list[dict[str, Any]]:
        """Alerts stored since the last call (optionally of one rule)."""
        if not self.warehouse.table_exists("analytics.alerts"):
            return []
        rows = self.warehouse.query("SELECT * FROM analytics.alerts ORDER BY entity_id")
        fresh = [r for r in rows.to_dict("records") if r["alert_id"] not in self.seen]
        self.seen.update(r["alert_id"] for r in fresh)
        return [r for r in fresh if rule is None or r["rule"] == rule]


@pytest.fixture
def harness(sandbox: SandboxServer, tmp_path) -> Harness:
    return Harness(sandbox, str(tmp_path / "warehouse.duckdb"))


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["entity_id"] for r in rows]


def busiest_account(company: Company, skip: int = 0) -> str:
    weight = company.account_size * company.account_propensity
    return company.account_id(int(np.argsort(-weight)[skip]))


# ------------------------------------------------------------------------------ activity


def test_a_quiet_account_alerts_once_then_re_arms(sandbox, company, harness) -> None:
    account = busiest_account(company)
    harness.tick("pendo_activity_sensor")  # whatever already holds, once
    harness.new_alerts()
    harness.tick("pendo_activity_sensor")
    assert harness.new_alerts() == []  # no change, no alert
    control(sandbox, "/stage", {"action": "account_quiet", "account_id": account,
                                "from": YESTERDAY_START})  # fmt: skip
    try:
        harness.tick("pendo_activity_sensor")
        (alert,) = harness.new_alerts()
        assert (alert["rule"], alert["entity_id"]) == ("account_activity_dropped", account)
        values = json.loads(alert["values_json"])
        assert values["current"] == 0 and values["change_pct"] == -100
        assert alert["entity_name"] == company.account_name(int(account[8:]))
        harness.tick("pendo_activity_sensor")
        harness.restart()  # the cursor alone carries what was alerted
        harness.tick("pendo_activity_sensor")
        assert harness.new_alerts() == []
        control(sandbox, "/stage", {"action": "account_active", "account_id": account})
        harness.tick("pendo_activity_sensor")
        assert harness.new_alerts() == []  # cleared: re-armed, silently
        control(sandbox, "/stage", {"action": "account_quiet", "account_id": account,
                                    "from": YESTERDAY_START})  # fmt: skip
        harness.tick("pendo_activity_sensor")
        assert ids(harness.new_alerts()) == [account]
    finally:
        control(sandbox, "/stage", {"action": "account_active", "account_id": account})


def test_a_new_account_alerts_once(sandbox, harness) -> None:
    harness.tick("pendo_activity_sensor")
    assert harness.new_alerts("new_account_seen") == []  # every generated account is old
    created = control(sandbox, "/pendo/accounts", {"name": "Brand New Co", "visitors": 2})
    harness.tick("pendo_activity_sensor")
    (alert,) = harness.new_alerts("new_account_seen")
    assert alert["entity_id"] == created["account_id"] and alert["entity_name"] == "Brand New Co"
    assert alert["severity"] == "info"
    harness.tick("pendo_activity_sensor")
    assert harness.new_alerts() == []


# ------------------------------------------------------------------------------ guides


def test_a_guide_dismissal_spike_alerts_and_re_arms(sandbox, company, harness) -> None:
    guide = next(g for g in company.guides if g.name == "Welcome tour")
    spike = {"action": "guide_dismissals", "guide_id": guide.id, "rate": 0.95,
             "from": (NOW - timedelta(hours=24)).isoformat()}  # fmt: skip
    harness.tick("pendo_guides_sensor")
    harness.new_alerts()
    harness.tick("pendo_guides_sensor")
    assert harness.new_alerts() == []
    control(sandbox, "/stage", spike)
    try:
        harness.tick("pendo_guides_sensor")
        (alert,) = harness.new_alerts()
        assert (alert["rule"], alert["entity_id"]) == ("guide_dismissal_spike", guide.id)
        assert alert["entity_name"] == "Welcome tour"
        values = json.loads(alert["values_json"])
        assert values["current"] > 0.8 and values["views"] >= 20
        harness.tick("pendo_guides_sensor")
        assert harness.new_alerts() == []
        control(sandbox, "/stage", {"action": "guide_dismissals_clear", "guide_id": guide.id})
        harness.tick("pendo_guides_sensor")
        assert harness.new_alerts() == []
        control(sandbox, "/stage", spike)
        harness.tick("pendo_guides_sensor")
        assert ids(harness.new_alerts()) == [guide.id]
    finally:
        control(sandbox, "/stage", {"action": "guide_dismissals_clear", "guide_id": guide.id})


# ------------------------------------------------------------------------------ metadata


def write_fields(sandbox: SandboxServer, account: str, **values: Any) -> None:
    """A Pendo metadata write with the read-write key: what 'someone else' does."""
    with PendoClient(sandbox.config.pendo_keys["us"].write, base_url=sandbox.urls.pendo()) as pc:
        outcomes = list(pc.update_metadata("account", [MetadataRecord(account, values)]))
    assert all(o.ok for o in outcomes)


def test_a_writeback_field_changed_by_someone_else_alerts_against_the_log(
    sandbox, company, harness
) -> None:
    account = busiest_account(company, skip=3)
    # What the write-back did: wrote the CRM's values to Pendo and logged them.
    write_fields(sandbox, account, plan="enterprise", seats=40)
    append_log(harness.warehouse, "run-1", [
        LogRow(1, account, json.dumps({"plan": "enterprise", "seats": 40}), "{}", "updated"),
    ], dry_run=False)  # fmt: skip
    harness.tick("pendo_metadata_sensor")
    assert harness.new_alerts() == []  # Pendo agrees with what the write-back wrote
    write_fields(sandbox, account, plan="starter")  # someone edits it in Pendo
    harness.tick("pendo_metadata_sensor")
    (alert,) = harness.new_alerts()
    values = json.loads(alert["values_json"])
    assert (alert["rule"], alert["entity_id"]) == ("writeback_field_changed_in_pendo", account)
    assert values == {"field": "plan", "pendo_value": "starter", "writeback_value": "enterprise",
                      "reference": "analytics.writeback_log"}  # fmt: skip
    harness.tick("pendo_metadata_sensor")
    assert harness.new_alerts() == []
    write_fields(sandbox, account, plan="enterprise")  # the next write-back run restores it
    harness.tick("pendo_metadata_sensor")
    assert harness.new_alerts() == []
    write_fields(sandbox, account, plan="pro")
    harness.tick("pendo_metadata_sensor")
    assert [json.loads(a["values_json"])["pendo_value"] for a in harness.new_alerts()] == ["pro"]


def test_before_any_writeback_a_change_is_judged_against_the_previous_check(
    sandbox, company, harness
) -> None:
    account = busiest_account(company, skip=5)
    write_fields(sandbox, account, csm_owner="Ana")
    harness.tick("pendo_metadata_sensor")  # no writeback_log table: remembers, no alert
    assert harness.new_alerts() == []
    harness.tick("pendo_metadata_sensor")
    assert harness.new_alerts() == []
    write_fields(sandbox, account, csm_owner="Ben")
    harness.tick("pendo_metadata_sensor")
    rows = [r for r in harness.new_alerts() if r["entity_id"] == account]
    assert len(rows) == 1 and "csm_owner='Ben'" in rows[0]["message"]


# ------------------------------------------------------------------------------ cohorts


def test_a_cohort_size_change_alerts_once(sandbox, company, harness) -> None:
    keys = sandbox.config.amplitude_keys["us"]
    with AmplitudeClient(keys.api_key, keys.secret_key, base_url=sandbox.urls.amplitude()) as ac:
        cohort = next(c for c in ac.list_cohorts() if c.get("size") and not c.get("archived"))
        harness.tick("amplitude_cohorts_sensor")  # primes the sizes
        harness.tick("amplitude_cohorts_sensor")
        assert harness.new_alerts() == []
        last = company.n_visitors
        members = [company.visitor_id(i) for i in range(last - 60, last)]
        ac.update_cohort_membership(cohort["id"], add=members, id_type="BY_NAME")
        after = next(c for c in ac.list_cohorts() if c["id"] == cohort["id"])["size"]
    assert after != cohort["size"]
    harness.tick("amplitude_cohorts_sensor")
    (alert,) = harness.new_alerts()
    values = json.loads(alert["values_json"])
    assert (alert["rule"], alert["entity_id"]) == ("cohort_size_changed", cohort["id"])
    assert (values["previous"], values["current"]) == (cohort["size"], after)
    harness.tick("amplitude_cohorts_sensor")
    assert harness.new_alerts() == []


# ------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"kind": "throttle", "count": 50, "service": "pendo"}, "Pendo is throttling"),
        ({"kind": "error", "status": 503, "count": 50, "service": "pendo"}, "HTTP 503"),
    ],
)
def test_a_throttled_or_failing_tick_skips_without_moving_the_cursor(
    sandbox, harness, fault, words
) -> None:
    harness.tick("pendo_activity_sensor")
    before = harness.cursors["pendo_activity_sensor"]
    control(sandbox, "/faults", fault)
    try:
        result = harness.tick("pendo_activity_sensor")
    finally:
        control(sandbox, "/faults", method="DELETE")
    assert isinstance(result, dg.SkipReason)
    assert words in result.skip_message and "cursor is unchanged" in result.skip_message
    assert harness.cursors["pendo_activity_sensor"] == before
    assert isinstance(harness.tick("pendo_activity_sensor"), dg.SensorResult)  # recovers


def test_a_slow_aggregation_skips_with_advice_on_timeouts(sandbox, tmp_path) -> None:
    harness = Harness(sandbox, str(tmp_path / "w.duckdb"), api_timeout_seconds=0.5)
    control(sandbox, "/faults", {"kind": "latency", "latency_seconds": 2, "count": 10,
                                 "service": "pendo"})  # fmt: skip
    try:
        result = harness.tick("pendo_guides_sensor")
    finally:
        control(sandbox, "/faults", method="DELETE")
    assert isinstance(result, dg.SkipReason)
    assert "could not reach Pendo" in result.skip_message
    assert "DAGSTER_SENSOR_GRPC_TIMEOUT_SECONDS" in result.skip_message


def test_a_failing_webhook_delays_the_alert_and_the_next_tick_delivers_it(
    sandbox, company, tmp_path, webhook
) -> None:
    harness = Harness(sandbox, str(tmp_path / "w.duckdb"),
                      environ={"ANALYTICS_ALERTS_WEBHOOK_URL": webhook.url})  # fmt: skip
    account = busiest_account(company, skip=1)
    harness.tick("pendo_activity_sensor")
    harness.new_alerts()
    webhook.received.clear()
    webhook.fail_next = 1000
    control(sandbox, "/stage", {"action": "account_quiet", "account_id": account,
                                "from": YESTERDAY_START})  # fmt: skip
    try:
        harness.tick("pendo_activity_sensor")
        assert ids(harness.new_alerts()) == [account]  # the table has it already
        assert webhook.received == [] and webhook.attempts >= 3
        harness.restart()  # even across a restart: the outbox is in the cursor
        webhook.fail_next = 0
        harness.tick("pendo_activity_sensor")
        delivered = webhook.alerts()
        assert [a["entity_id"] for a in delivered] == [account]
        assert webhook.received[0]["text"].startswith("[warning] account_activity_dropped")
        assert harness.new_alerts() == []  # not stored twice
        harness.tick("pendo_activity_sensor")
        assert len(webhook.alerts()) == 1  # and not sent twice
    finally:
        control(sandbox, "/stage", {"action": "account_active", "account_id": account})


# ------------------------------------------------------------------------------ late data


def test_late_events_re_run_the_day_they_changed(sandbox, company, tmp_path) -> None:
    from analytics_assets.partitions import DailyCalendar
    from analytics_assets.pendo.assets import pendo_assets

    daily = pendo_assets(calendar=DailyCalendar(NY),
                         include=["visitor_daily_usage", "account_daily_usage"])  # fmt: skip
    harness = Harness(sandbox, str(tmp_path / "w.duckdb"), late_data_job="daily_sync")
    day = "2026-11-17"
    result = dg.materialize(
        daily,
        partition_key=day,
        instance=harness.instance,
        resources=harness.resources,
    )
    assert result.success
    assert isinstance(harness.tick("pendo_activity_sensor"), dg.SensorResult)
    result = harness.tick("pendo_activity_sensor")
    assert result.run_requests == []  # the sensor's total agrees with the asset's
    visitor = company.visitor_id(int(company.account_first[int(busiest_account(company)[8:])]))
    control(sandbox, "/stage", {"action": "late_events", "visitor_id": visitor,
                                "time": "2026-11-17T18:00:00Z", "num_events": 250,
                                "arrived": (NOW - timedelta(minutes=5)).isoformat()})  # fmt: skip
    result = harness.tick("pendo_activity_sensor")
    (request,) = result.run_requests
    assert request.partition_key == day
    before = int(request.tags["analytics_assets/events_materialized"])
    assert int(request.tags["analytics_assets/events_now"]) == before + 250


def test_evaluate_once_runs_every_sensor_for_the_demo(sandbox, company, tmp_path) -> None:
    from analytics_assets.alerts.sensors import evaluate_once

    harness = Harness(sandbox, str(tmp_path / "w.duckdb"))
    options = {"clock": lambda: NOW, "pendo_timezone": NY, "environ": {}}
    first = evaluate_once(harness.resources, **options)
    assert set(first) == {
        "pendo_activity_sensor", "pendo_guides_sensor", "pendo_metadata_sensor",
        "amplitude_cohorts_sensor", "run_failure_alerts_sensor",
    }  # fmt: skip
    account = busiest_account(company, skip=2)
    control(sandbox, "/stage", {"action": "account_quiet", "account_id": account,
                                "from": YESTERDAY_START})  # fmt: skip
    try:
        cursors = {name: outcome.cursor for name, outcome in first.items()}
        second = evaluate_once(harness.resources, cursors=cursors, **options)
    finally:
        control(sandbox, "/stage", {"action": "account_active", "account_id": account})
    raised = [(a.rule, a.entity_id) for o in second.values() for a in o.alerts]
    assert [r for r in raised if r[0] != "cohort_size_changed"] == [
        ("account_activity_dropped", account)
    ]
    # The quiet account also left Amplitude's activity-based cohorts: real changes too.
    assert all(rule == "cohort_size_changed" for rule, _ in raised[1:])


def test_the_component_re_runs_only_the_pendo_daily_assets_found_by_tag(
    sandbox, company, tmp_path
) -> None:
    """ChangeAlerts' default late-data selection, resolved at tick time against the code
    location: the Pendo daily assets under the project's key prefix, not Amplitude's."""
    from analytics_assets.alerts.component import ChangeAlerts
    from analytics_assets.naming import CADENCE_TAG, DAILY, AssetNaming, asset_tags
    from analytics_assets.partitions import DailyCalendar
    from analytics_assets.pendo.assets import pendo_assets

    calendar = DailyCalendar(NY)
    pendo_daily = pendo_assets(calendar=calendar, naming=AssetNaming("pendo", ("acme",)),
                               include=["visitor_daily_usage", "account_daily_usage"])  # fmt: skip
    amplitude = AssetNaming("amplitude", ("acme",))

    @dg.asset(key=amplitude.key("events_daily"), tags=asset_tags(amplitude, DAILY),
              partitions_def=calendar.partitions_def)  # fmt: skip
    def amplitude_daily() -> None: ...

    component = ChangeAlerts(timezone=NY, late_data_asset="acme/pendo/account_daily_usage")
    harness = Harness(sandbox, str(tmp_path / "w.duckdb"))
    sensors = build_sensors(**component.sensor_options(), clock=lambda: NOW, environ={})
    defs = dg.Definitions(
        assets=[*pendo_daily, amplitude_daily],
        jobs=[dg.define_asset_job("daily_sync", dg.AssetSelection.tag(CADENCE_TAG, DAILY))],
        sensors=sensors,
        resources=harness.resources,
    )
    (activity,) = [s for s in sensors if s.name == "pendo_activity_sensor"]
    cursor: list[str | None] = [None]

    def tick() -> dg.SensorResult | dg.SkipReason:
        with dg.build_sensor_context(
            cursor=cursor[0], instance=harness.instance, definitions=defs,
            resources=harness.resources,
        ) as context:  # fmt: skip
            result = activity(context)
        if isinstance(result, dg.SensorResult) and result.cursor is not None:
            cursor[0] = result.cursor
        return result

    day = "2026-11-17"
    assert dg.materialize(pendo_daily, partition_key=day, instance=harness.instance,
                          resources=harness.resources).success  # fmt: skip
    tick()
    assert tick().run_requests == []
    visitor = company.visitor_id(int(company.account_first[int(busiest_account(company, 4)[8:])]))
    control(sandbox, "/stage", {"action": "late_events", "visitor_id": visitor,
                                "time": "2026-11-17T19:00:00Z", "num_events": 40,
                                "arrived": (NOW - timedelta(minutes=5)).isoformat()})  # fmt: skip
    (request,) = tick().run_requests
    assert request.partition_key == day
    assert request.run_key.startswith("late-data:acme/pendo/account_daily_usage:2026-11-17:")
    assert [k.to_user_string() for k in request.asset_selection or []] == [
        "acme/pendo/account_daily_usage",
        "acme/pendo/visitor_daily_usage",
    ]


def test_a_tick_that_stores_alerts_records_a_materialization_of_the_alerts_table(
    sandbox, harness
) -> None:
    """``analytics.alerts`` is an asset: a tick that adds alerts is its materialization,
    with the count it added; a tick that adds none records nothing."""
    first = harness.tick("pendo_activity_sensor")  # whatever already holds, once
    stored = harness.new_alerts()
    assert stored, "the seeded world holds some activity condition at the start"
    assert isinstance(first, dg.SensorResult)
    (event,) = first.asset_events
    assert event.asset_key == dg.AssetKey(["analytics", "alerts"])
    assert event.metadata["alerts_added"].value == len(stored)
    assert event.metadata["sensor"].value == "pendo_activity_sensor"

    again = harness.tick("pendo_activity_sensor")
    assert not harness.new_alerts()
    assert not getattr(again, "asset_events", [])


def test_the_alerts_table_is_an_asset_of_the_code_location() -> None:
    from analytics_assets.definitions import defs

    spec = defs.resolve_asset_graph().get(dg.AssetKey(["analytics", "alerts"]))
    assert not spec.is_materializable  # written by the sensors, not by a run
    assert spec.metadata["dagster/table_name"] == "analytics.alerts"
