"""Alert sinks: log, webhook (real local HTTP endpoint), warehouse table, and the outbox."""

from __future__ import annotations

import json

import pytest

from analytics_assets.alerts.model import Alert
from analytics_assets.alerts.rules import load_rules
from analytics_assets.alerts.sinks import (
    LogSink,
    TableSink,
    WebhookSink,
    build_sinks,
    dispatch,
    slack_payload,
)
from analytics_assets.alerts.state import SensorState, dump_state, load_state
from analytics_assets.warehouse.duckdb import DuckDBWarehouse


def make_alert(entity: str = "account-000001", rule: str = "drop", **extra) -> Alert:
    return Alert(
        rule=rule, kind="fired", severity=extra.pop("severity", "warning"),
        entity_type="account", entity_id=entity, entity_name=extra.pop("name", None),
        message=extra.pop("message", "numEvents fell 90% to 10"),
        observed_at="2026-11-18T15:00:00+00:00", values={"current": 10, "baseline": 100},
        condition="change_pct", source="pendo.events", sensor="pendo_activity_sensor",
        sinks=extra.pop("sinks", ("log", "table", "webhook")),
    )  # fmt: skip


def fast_webhook(url: str, **kwargs) -> WebhookSink:
    options = {"timeout_seconds": 2.0, "retries": 1, "backoff_seconds": 0.0, **kwargs}
    return WebhookSink(url, **options)


def test_webhook_failure_keeps_the_alert_and_the_next_tick_delivers_it(webhook, lines) -> None:
    sinks = {"log": LogSink(), "webhook": fast_webhook(webhook.url)}
    state = SensorState()
    webhook.fail_next = 2  # both attempts of the first tick fail
    alert = make_alert(sinks=("log", "webhook"))

    first = dispatch([alert], state, sinks, lines)
    assert webhook.received == [] and webhook.attempts == 2
    assert [p.sinks for p in state.outbox] == [["webhook"]]  # the log got it already
    assert first.pending == 1
    # The cursor carries the outbox across a restart of the process.
    state, reset = load_state(dump_state(state))
    assert reset is None

    second = dispatch([], state, sinks, lines)  # next tick, no new alerts
    assert state.outbox == [] and second.pending == 0
    assert [a["id"] for a in webhook.alerts()] == [alert.id]
    assert sum("ALERT" in m for _, m in lines.lines) == 1  # logged once, not again
    assert "HTTP 503 after 2 attempt(s)" in lines.text()


def test_webhook_retries_within_a_tick_and_sends_one_slack_message_per_rule(webhook) -> None:
    webhook.fail_next = 1
    sink = fast_webhook(webhook.url, max_alerts_per_message=2)
    alerts = [make_alert(f"account-{i}") for i in range(3)] + [make_alert("g1", rule="spike")]
    assert sink.deliver(alerts, log=pytest.fail) == []
    assert webhook.attempts == 3  # one retry, then one message per rule
    by_rule = {m["blocks"][0]["text"]["text"]: m for m in webhook.received}
    drop = by_rule["drop: 3 alerts"]
    assert drop["text"] == "[warning] drop: 3 alerts"
    sections = [b for b in drop["blocks"] if b["type"] == "section"]
    assert len(sections) == 2 and "account-0" in sections[0]["text"]["text"]
    assert drop["blocks"][-1]["elements"][0]["text"].startswith("and 1 more")
    assert len(drop["alerts"]) == 3  # structured data for generic JSON receivers


def test_webhook_timeout_and_refusal_are_failures_without_leaking_the_url(webhook, lines) -> None:
    webhook.delay_seconds = 1.0
    sink = fast_webhook(webhook.url, timeout_seconds=0.2, retries=0)
    failed = sink.deliver([make_alert()], lines)
    assert len(failed) == 1 and "timed out after 0.2 s" in lines.text()
    webhook.delay_seconds = 0
    webhook.fail_next, webhook.fail_status = 5, 404  # the receiver refuses: no retry now
    assert len(fast_webhook(webhook.url, retries=3).deliver([make_alert()], lines)) == 1
    assert webhook.attempts == 2 and "HTTP 404 after 4 attempt(s)" not in lines.text()
    assert "T0KEN-SECRET" not in lines.text()


def test_slack_payload_escapes_and_bounds_its_blocks() -> None:
    alerts = [make_alert(name="A&B <Corp>", message="x" * 5000)]
    payload = slack_payload(alerts, include_data=False)
    assert set(payload) == {"text", "blocks"}
    body = payload["blocks"][1]["text"]["text"]
    assert "A&amp;B &lt;Corp&gt;" in body and len(body) <= 2900
    assert len(payload["text"]) <= 3000


def test_table_sink_keeps_every_alert_with_its_fields_and_never_twice(tmp_path, lines) -> None:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    sink = TableSink(warehouse)
    alerts = [make_alert("account-1", name="Acme"), make_alert("account-2")]
    assert sink.deliver(alerts, lines) == []
    assert sink.deliver(alerts[:1], lines) == []  # a retry of something already stored
    rows = warehouse.query(
        "SELECT alert_id, rule, kind, severity, entity_type, entity_id, entity_name, "
        "values_json, observed_at FROM analytics.alerts ORDER BY entity_id"
    )
    assert len(rows) == 2
    first = rows.iloc[0]
    assert (first.rule, first.kind, first.severity, first.entity_type, first.entity_id) == (
        "drop", "fired", "warning", "account", "account-1",
    )  # fmt: skip
    assert first.entity_name == "Acme" and first.alert_id == alerts[0].id
    assert json.loads(first.values_json) == {"baseline": 100, "current": 10}
    assert str(first.observed_at).startswith("2026-11-18 15:00:00")


class BrokenWarehouse:
    def table_exists(self, table: str) -> bool:
        raise OSError("database is locked")


def test_a_failing_table_sink_keeps_its_alerts_while_the_others_deliver(lines) -> None:
    state = SensorState()
    sinks = {"log": LogSink(), "table": TableSink(BrokenWarehouse())}
    report = dispatch([make_alert(sinks=("log", "table"))], state, sinks, lines)
    assert report.delivered == 1 and [p.sinks for p in state.outbox] == [["table"]]
    assert "database is locked" in lines.text()


def test_an_unconfigured_webhook_is_off_rather_than_failing(lines) -> None:
    sinks = build_sinks(load_rules(), warehouse=None, environ={})
    assert not sinks["webhook"].active and not sinks["table"].active
    state = SensorState()
    report = dispatch([make_alert()], state, sinks, lines)
    assert state.outbox == [] and report.inactive == {"webhook", "table"}


def test_the_webhook_url_comes_from_the_environment(webhook) -> None:
    sinks = build_sinks(load_rules(), environ={"ANALYTICS_ALERTS_WEBHOOK_URL": webhook.url})
    assert sinks["webhook"].active and sinks["webhook"].url == webhook.url


def test_an_outbox_that_keeps_failing_is_bounded(lines) -> None:
    state = SensorState()
    sinks = {"webhook": fast_webhook("http://127.0.0.1:9/nowhere", retries=0)}
    alerts = [make_alert(f"a{i}", sinks=("webhook",)) for i in range(30)]
    report = dispatch(alerts, state, sinks, lines, max_outbox=10)
    assert len(state.outbox) == 10 and report.dropped == 20 and state.dropped == 20
    assert state.outbox[-1].alert.entity_id == "a29"  # the newest are kept
    assert "dropped the 20 oldest" in lines.text()


def test_log_sink_levels_follow_severity_and_floods_are_summarised(lines) -> None:
    sink = LogSink(max_alerts_per_tick=2)
    alerts = [make_alert(f"a{i}") for i in range(5)] + [make_alert("c", severity="critical")]
    sink.deliver(alerts, lines)
    levels = [level for level, _ in lines.lines]
    assert levels == ["error", "warning", "warning"]  # the critical one first, never capped
    assert "and 4 more" in lines.lines[2][1]


def test_the_webhook_variable_is_the_rule_files_else_the_sensors_and_never_os_environ(
    monkeypatch,
) -> None:
    from analytics_assets.alerts.rules import parse_rules

    monkeypatch.setenv("ANALYTICS_ALERTS_WEBHOOK_URL", "http://127.0.0.1:9/from-os-environ")
    assert not build_sinks(load_rules())["webhook"].active  # no lookup given: nothing read
    env = {"TEAM_HOOK": "http://127.0.0.1:9/team", "PINNED": "http://127.0.0.1:9/pinned"}
    shipped = build_sinks(load_rules(), environ=env, url_env="TEAM_HOOK")["webhook"]
    assert (shipped.url, shipped.origin) == ("http://127.0.0.1:9/team", "TEAM_HOOK")
    pinned = parse_rules(
        "version: 1\nsinks:\n  hook: {type: webhook, url_env: PINNED}\nrules: []\n"
    )
    sink = build_sinks(pinned, environ=env.get, url_env="TEAM_HOOK")["hook"]
    assert (sink.url, sink.origin) == ("http://127.0.0.1:9/pinned", "PINNED")
    assert not build_sinks(load_rules(), environ=env, url_env=None)["webhook"].active
