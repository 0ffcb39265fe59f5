"""The sensors' tick with fake API clients: skips, cursor resets, late data, run failures."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from analytics_assets.alerts.rules import parse_rules
from analytics_assets.alerts.sensors import (
    FAMILIES,
    AlertSensorRunner,
    RunFailureRunner,
    SensorResources,
    build_alert_runners,
    build_sensors,
    make_settings,
)
from analytics_assets.http.errors import AuthenticationError, RateLimitedError, ServerError
from analytics_assets.pendo.pipeline import Pipeline

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)


class FakePendo:
    """Answers the sensors' pipelines from per-account daily events (oldest day first)."""

    def __init__(self, activity: dict[str, list[float]] | None = None, error=None) -> None:
        self.activity = activity or {}
        self.error = error
        self.pipelines: list[list[dict]] = []
        self.new_accounts: list[dict] = []

    def get_client(self) -> FakePendo:
        return self

    def aggregate(self, pipeline: Pipeline) -> list[dict]:
        pipeline = pipeline.steps  # the JSON steps the real client would send
        self.pipelines.append(pipeline)
        if self.error is not None:
            raise self.error
        source = pipeline[0]["source"]
        if "accounts" in source:
            wanted = str(pipeline[1].get("filter", ""))
            return self.new_accounts if "firstvisit" in wanted else []
        ts = source["timeSeries"]
        first_day = datetime.fromtimestamp(ts["first"] / 1000, NY).date()
        days = [first_day + timedelta(days=i) for i in range(ts["count"])]
        starts = [int(datetime(d.year, d.month, d.day, tzinfo=NY).timestamp() * 1000) for d in days]
        group = pipeline[-1]["group"]["group"]
        rows = []
        for account, values in self.activity.items():
            for start, value in zip(starts, values[-len(starts) :], strict=True):
                rows.append({"accountId": account, "day": start, "numEvents": value})
        if group == ["day"]:
            totals: dict[int, float] = {}
            for row in rows:
                totals[row["day"]] = totals.get(row["day"], 0) + row["numEvents"]
            return [{"day": d, "numEvents": n} for d, n in totals.items()]
        return rows


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str):
        return lambda msg: self.lines.append((level, msg))


def context(cursor: str | None = None, instance=None):
    return SimpleNamespace(cursor=cursor, log=Log(), instance=instance, repository_def=None)


def pendo_only(pendo: FakePendo) -> SensorResources:
    """What a Pendo sensor's typed parameters hand the tick, without a warehouse."""
    return SensorResources(pendo=pendo)  # type: ignore[arg-type] - a test double


ACTIVITY_ONLY = """\
version: 1
rules:
  - name: drop
    source: {name: pendo.events, window: 8}
    entity: account
    metric: numEvents
    condition: {type: change_pct, direction: drop, percent: 50}
"""


def runner(rules: str = ACTIVITY_ONLY, **options) -> AlertSensorRunner:
    settings = make_settings(parse_rules(rules), clock=lambda: NOW, pendo_timezone=str(NY),
                             environ={}, **options)  # fmt: skip
    return build_alert_runners(settings)["pendo_activity_sensor"]


def test_alerts_once_and_keeps_the_cursor_small() -> None:
    pendo = FakePendo({"a": [100] * 7 + [10], "b": [100] * 8})
    r = runner()
    first = r.tick(context(), pendo_only(pendo))
    assert [a.entity_id for a in first.alerts] == ["a"]
    assert len(first.cursor) < 200
    # One aggregation for every account, and one to name the account in the alert.
    assert [list(p[0]["source"])[0] for p in pendo.pipelines] == ["events", "accounts"]
    pendo.pipelines.clear()
    second = r.tick(context(first.cursor), pendo_only(pendo))
    assert second.alerts == [] and second.cursor == first.cursor
    assert len(pendo.pipelines) == 1  # a quiet tick: one aggregation


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (RateLimitedError("throttled", status=429, service="pendo", attempts=2),
         "Pendo is throttling this sensor (429 after 2 attempt(s))"),
        (ServerError("unavailable", status=503, service="pendo"), "Pendo failed (HTTP 503)"),
    ],
)  # fmt: skip
def test_a_throttled_or_failing_tick_skips_and_leaves_the_cursor(error, words) -> None:
    r = runner()
    ok = r.tick(context(), pendo_only(FakePendo({"a": [100] * 7 + [10]})))
    ctx = context(ok.cursor)
    outcome = r.tick(ctx, pendo_only(FakePendo(error=error)))
    assert outcome.cursor is None and outcome.alerts == []
    assert words in outcome.skip_reason and "cursor is unchanged" in outcome.skip_reason
    result = outcome.result()
    assert isinstance(result, dg.SkipReason) and words in result.skip_message


def test_a_bad_key_is_an_error_not_a_skip() -> None:
    error = AuthenticationError("bad key", status=403, service="pendo")
    with pytest.raises(AuthenticationError):
        runner().tick(context(), pendo_only(FakePendo(error=error)))


def test_a_corrupt_cursor_is_reset_with_a_warning_and_the_tick_goes_on() -> None:
    ctx = context(cursor="{{{garbage")
    outcome = runner().tick(ctx, pendo_only(FakePendo({"a": [100] * 7 + [10]})))
    assert [a.entity_id for a in outcome.alerts] == ["a"]
    warnings = [m for level, m in ctx.log.lines if level == "warning"]
    assert any("cursor reset" in m and "alert once more" in m for m in warnings)


def test_plans_beyond_the_cap_take_turns_across_ticks() -> None:
    rules = "version: 1\nrules:\n" + "".join(
        f"""\
  - name: r{i}
    source: {{name: pendo.events, window: {8 + i}}}
    entity: account
    metric: numEvents
    condition: {{type: change_pct, direction: drop, percent: 50}}
"""
        for i in range(5)
    )
    r = runner(rules)
    assert r.calls_per_tick() == FAMILIES["pendo_activity"].max_calls == 3
    pendo = FakePendo({"a": [100] * 12})
    cursor = None
    windows = []
    for _ in range(3):
        pendo.pipelines.clear()
        outcome = r.tick(context(cursor), pendo_only(pendo))
        cursor = outcome.cursor
        windows.append([p[0]["source"]["timeSeries"]["count"] for p in pendo.pipelines])
    assert windows == [[8, 9, 10], [11, 12, 8], [9, 10, 11]]


def _materialize(instance: dg.DagsterInstance, day: str, total: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=["pendo", "account_daily_usage"],
            partition=day,
            metadata={"pendo_events_total": total},
        )
    )


def test_late_data_requests_a_run_for_each_day_whose_total_changed() -> None:
    instance = dg.DagsterInstance.ephemeral()
    days = [(date(2026, 11, 10) + timedelta(days=i)).isoformat() for i in range(8)]
    activity = {"a": [100.0] * 8, "b": [50.0] * 8}
    for day in days:
        _materialize(instance, day, 150)
    _materialize(instance, "2026-11-16", 140)  # the newest materialization wins
    r = runner(late_data_job="daily_sync")
    outcome = r.tick(context(instance=instance), pendo_only(FakePendo(activity)))
    assert [rr.partition_key for rr in outcome.run_requests] == ["2026-11-16"]
    request = outcome.run_requests[0]
    assert request.run_key == "late-data:pendo/account_daily_usage:2026-11-16:150"
    assert request.tags["analytics_assets/events_materialized"] == "140"
    assert isinstance(outcome.result(), dg.SensorResult)


def test_late_data_without_a_job_is_logged_and_without_a_record_is_ignored() -> None:
    instance = dg.DagsterInstance.ephemeral()
    _materialize(instance, "2026-11-17", 1)
    ctx = context(instance=instance)
    settings_runner = runner(late_data_asset_key=["pendo", "account_daily_usage"])
    outcome = settings_runner.tick(ctx, pendo_only(FakePendo({"a": [100.0] * 8})))
    assert outcome.run_requests == []
    assert any("late data for 2026-11-17: 100 events" in m for _, m in ctx.log.lines)


def test_late_data_uses_a_tiny_totals_call_when_no_rule_reads_activity_by_day() -> None:
    rules = """\
version: 1
rules:
  - name: new
    source: pendo.accounts
    entity: account
    condition: {type: first_seen}
"""
    instance = dg.DagsterInstance.ephemeral()
    _materialize(instance, "2026-11-17", 10)
    pendo = FakePendo({"a": [5.0] * 7})
    r = runner(rules, late_data_job="daily_sync")
    assert r.calls_per_tick() == 2
    outcome = r.tick(context(instance=instance), pendo_only(pendo))
    assert [rr.partition_key for rr in outcome.run_requests] == ["2026-11-17"]
    totals_pipeline = pendo.pipelines[-1]
    assert totals_pipeline[-1]["group"]["group"] == ["day"]


def test_build_sensors_gives_every_family_a_described_sensor_that_loads() -> None:
    sensors = build_sensors(late_data_job="daily_sync")
    names = [s.name for s in sensors]
    assert names == [
        "pendo_activity_sensor",
        "pendo_guides_sensor",
        "pendo_metadata_sensor",
        "amplitude_cohorts_sensor",
        "run_failure_alerts_sensor",
    ]
    for sensor in sensors:
        assert sensor.description and sensor.default_status == dg.DefaultSensorStatus.STOPPED
    activity = sensors[0]
    assert "at most 2 API calls per tick" in activity.description
    assert activity.minimum_interval_seconds == 300

    @dg.op
    def noop() -> None: ...

    @dg.job(name="daily_sync")
    def daily_sync() -> None:
        noop()

    defs = dg.Definitions(
        jobs=[daily_sync],
        sensors=sensors,
        resources={"pendo": FakePendo(), "amplitude": object(), "warehouse": object()},
    )
    dg.Definitions.validate_loadable(defs)


def test_run_failure_sensor_alerts_once_per_failed_run_of_the_watched_job() -> None:
    @dg.op
    def explode() -> None:
        raise RuntimeError("the Pendo export broke")

    @dg.job(name="daily_sync")
    def daily_sync() -> None:
        explode()

    @dg.job(name="other_job")
    def other_job() -> None:
        explode()

    instance = dg.DagsterInstance.ephemeral()
    daily_sync.execute_in_process(instance=instance, raise_on_error=False,
                                  tags={"dagster/partition": "2026-11-17"})  # fmt: skip
    other_job.execute_in_process(instance=instance, raise_on_error=False)
    settings = make_settings(clock=lambda: NOW, environ={})
    r = RunFailureRunner(settings)
    ctx = context(instance=instance)
    first = r.tick(ctx)
    (alert,) = first.alerts
    assert alert.severity == "critical" and alert.entity_type == "run"
    assert alert.entity_name == "daily_sync 2026-11-17"
    assert alert.message.endswith(
        "of daily_sync for partition 2026-11-17 failed: explode: RuntimeError: the Pendo "
        "export broke"
    )
    assert any(level == "error" and "daily_sync" in m for level, m in ctx.log.lines)
    second = r.tick(context(first.cursor, instance=instance))
    assert second.alerts == []
    daily_sync.execute_in_process(instance=instance, raise_on_error=False)
    third = r.tick(context(second.cursor, instance=instance))
    assert len(third.alerts) == 1 and third.alerts[0].entity_id != alert.entity_id


def test_a_rule_file_given_is_used_and_checked(tmp_path, monkeypatch) -> None:
    from analytics_assets.alerts.rules import RuleFileError

    good = tmp_path / "rules.yaml"
    good.write_text(ACTIVITY_ONLY)
    # The environment variable of old is ignored: the file arrives as an argument.
    monkeypatch.setenv("ANALYTICS_ALERTS_RULES", str(tmp_path / "missing.yaml"))
    assert [s.name for s in build_sensors(good)] == [
        "pendo_activity_sensor",
        "run_failure_alerts_sensor",
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text(ACTIVITY_ONLY.replace("percent: 50", "percent: -5"))
    with pytest.raises(RuleFileError, match=r"bad.yaml:7: rules\[0\] \(drop\).condition"):
        build_sensors(bad)
