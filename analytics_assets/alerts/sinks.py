"""Where alerts go: the Dagster log, a JSON webhook (Slack-compatible), a warehouse table.

Every sink's ``deliver(alerts, log)`` returns the alerts it could *not* deliver instead of
raising, and ``dispatch`` keeps those in the sensor's outbox (part of the cursor), to be
retried on the next tick before any new alert. So a webhook that is down or a warehouse file
locked by a run delays an alert, never loses it; only an outbox that outgrows its bound (or
an alert refused 50 ticks in a row) drops the oldest, loudly.

Secrets: a webhook URL is a credential (a Slack incoming-webhook URL lets anyone post), so it
is read from an environment variable, through a lookup the caller hands in at each tick
(``dagster.EnvVar`` in the sensors), and appears in no log line, alert or error.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from analytics_assets.alerts.model import Alert
from analytics_assets.alerts.rules import LogSinkSpec, RuleSet, TableSinkSpec, WebhookSinkSpec
from analytics_assets.alerts.state import (
    DEFAULT_MAX_OUTBOX,
    PendingAlert,
    SensorState,
    bound_outbox,
)
from analytics_assets.warehouse.types import STR, TS_US, arrow_schema

if TYPE_CHECKING:
    import pyarrow as pa

MAX_ATTEMPTS = 50
#: The variable a webhook sink reads its URL from when the rule file names none.
DEFAULT_WEBHOOK_URL_ENV = "ANALYTICS_ALERTS_WEBHOOK_URL"
#: Resolves an environment variable's name to its value (None when unset).
EnvLookup = Callable[[str], str | None]
_SEVERITY_ICON = {
    "info": ":information_source:",
    "warning": ":warning:",
    "critical": ":rotating_light:",
}


class Logger(Protocol):
    def info(self, msg: str) -> Any: ...

    def warning(self, msg: str) -> Any: ...

    def error(self, msg: str) -> Any: ...


class Sink(Protocol):
    name: str

    @property
    def active(self) -> bool: ...

    def deliver(self, alerts: Sequence[Alert], log: Logger) -> list[Alert]: ...


# ------------------------------------------------------------------------------ log


@dataclass
class LogSink:
    """The run/sensor log: one line per alert (level by severity), bounded per tick."""

    name: str = "log"
    max_alerts_per_tick: int = 50
    active: bool = True

    def deliver(self, alerts: Sequence[Alert], log: Logger) -> list[Alert]:
        by_rule: dict[str, list[Alert]] = defaultdict(list)
        for alert in alerts:
            by_rule[alert.rule].append(alert)
        rank = {"critical": 0, "warning": 1, "info": 2}
        for rule, items in by_rule.items():
            items.sort(key=lambda a: rank.get(a.severity, 3))  # the cap never hides the worst
            for alert in items[: self.max_alerts_per_tick]:
                line = f"ALERT {alert.title}: {alert.message}"
                if alert.severity == "critical":
                    log.error(line)
                elif alert.severity == "warning":
                    log.warning(line)
                else:
                    log.info(line)
            extra = len(items) - self.max_alerts_per_tick
            if extra > 0:
                log.warning(f"ALERT {rule}: and {extra:,} more (every one is in the alerts table)")
        return []


# ------------------------------------------------------------------------------ table

TABLE_COLUMNS = (
    ("alert_id", STR),
    ("rule", STR),
    ("kind", STR),
    ("severity", STR),
    ("entity_type", STR),
    ("entity_id", STR),
    ("entity_name", STR),
    ("condition", STR),
    ("message", STR),
    ("values_json", STR),
    ("source", STR),
    ("sensor", STR),
    ("observed_at", TS_US),
    ("recorded_at", TS_US),
)
# What each column above means (the Dagster UI shows it), by column name.
TABLE_COLUMN_DESCRIPTIONS = {
    "alert_id": "The alert's id: unique per alert raised, the same on a retried delivery",
    "rule": "The rule that raised it (run_failure for failed runs)",
    "kind": "fired, cleared, summary (a storm held back) or run_failure",
    "severity": "info, warning or critical",
    "entity_type": "What it is about: the rule's entity (account, visitor, ...), rule or run",
    "entity_id": "The entity's id (for a summary the rule's name, for a run its run id)",
    "entity_name": "The entity's name, when known",
    "condition": "The rule's condition type (run_failure for failed runs)",
    "message": "The alert's text, as sent",
    "values_json": "The numbers behind the verdict (current, baseline, change, ...), as JSON",
    "source": "What the rule read (e.g. pendo.events); dagster for failed runs",
    "sensor": "The sensor that raised it",
    "observed_at": "When the data was read (for a failed run, when it failed), UTC",
    "recorded_at": "When the row was appended, UTC",
}


class Warehouse(Protocol):
    def append(self, table: str, data: Any) -> int: ...

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...

    def table_exists(self, table: str) -> bool: ...


@dataclass
class TableSink:
    """``analytics.alerts``: every alert, with its rule, entity, values and time.

    Written through the warehouse resource's ``append``; an alert already in the table (a
    retry after a failure that happened after the insert) is not inserted twice.
    """

    warehouse: Warehouse | None
    name: str = "table"
    table: str = "analytics.alerts"
    stored: int = 0  # alerts this sink added to the table (the tick reports them)

    @property
    def active(self) -> bool:
        return self.warehouse is not None

    def deliver(self, alerts: Sequence[Alert], log: Logger) -> list[Alert]:
        if not alerts or self.warehouse is None:
            return []
        try:
            fresh = self._not_yet_stored(alerts)
            if fresh:
                self.warehouse.append(self.table, _arrow(fresh))
                self.stored += len(fresh)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the alerts for a retry
            log.warning(
                f"alert sink {self.name!r}: could not write {len(alerts)} alert(s) to "
                f"{self.table} ({type(exc).__name__}: {str(exc)[:200]}); kept for the next tick"
            )
            return list(alerts)
        return []

    def _not_yet_stored(self, alerts: Sequence[Alert]) -> list[Alert]:
        assert self.warehouse is not None
        if not self.warehouse.table_exists(self.table):
            return list(alerts)
        ids = sorted({a.id for a in alerts})
        marks = ", ".join("?" for _ in ids)
        found = self.warehouse.query(
            f"SELECT alert_id FROM {self.table} WHERE alert_id IN ({marks})", ids
        )
        stored = set(found["alert_id"].tolist()) if len(found) else set()
        return [a for a in alerts if a.id not in stored]


def _when(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _arrow(alerts: Sequence[Alert]) -> pa.Table:
    import pyarrow as pa

    now = datetime.now(UTC)
    names = [name for name, _ in TABLE_COLUMNS]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for a in alerts:
        row = {
            "alert_id": a.id, "rule": a.rule, "kind": a.kind, "severity": a.severity,
            "entity_type": a.entity_type, "entity_id": a.entity_id,
            "entity_name": a.entity_name, "condition": a.condition, "message": a.message,
            "values_json": a.values_json(), "source": a.source, "sensor": a.sensor,
            "observed_at": _when(a.observed_at), "recorded_at": now,
        }  # fmt: skip
        for name in names:
            columns[name].append(row[name])
    return pa.table(columns, schema=arrow_schema(TABLE_COLUMNS))


# ------------------------------------------------------------------------------ webhook


def _escape(text: str) -> str:
    # Slack mrkdwn treats &, < and > as control characters.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(
    alerts: Sequence[Alert], max_items: int = 20, include_data: bool = True
) -> dict[str, Any]:
    """One message for a batch of alerts of one rule: ``text`` + ``blocks`` (+ ``alerts``).

    ``text`` is the notification fallback Slack shows where blocks are not rendered; other
    JSON receivers get every alert's fields under ``alerts`` (Slack ignores that key).
    """
    first = alerts[0]
    icon = _SEVERITY_ICON.get(first.severity, "")
    count = len(alerts)
    noun = "alert" if count == 1 else "alerts"
    if count == 1:
        text = f"{first.title}: {first.message}"
    else:
        text = f"[{first.severity}] {first.rule}: {count} {noun}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{first.rule}: {count} {noun}"[:150]},
        }
    ]
    for alert in alerts[:max_items]:
        name = f" ({_escape(alert.entity_name)})" if alert.entity_name else ""
        body = (
            f"{icon} *{alert.entity_type} {_escape(alert.entity_id)}*{name}\n"
            f"{_escape(alert.message)}"
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}})
    footer = f"{first.severity} · observed {first.observed_at}"
    if count > max_items:
        footer = f"and {count - max_items:,} more (all in analytics.alerts) · " + footer
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    payload: dict[str, Any] = {"text": text[:3000], "blocks": blocks}
    if include_data:
        payload["alerts"] = [a.to_dict() for a in alerts]
    return payload


@dataclass
class WebhookSink:
    """POST a Slack-compatible JSON message per rule and tick, with a timeout and retries.

    Retries (``retries`` more attempts, exponential backoff from ``backoff_seconds``,
    ``Retry-After`` honoured up to 10 s) cover a blip within the tick; anything longer is
    the outbox's job. The URL never appears in a log line or an error.
    """

    url: str | None
    name: str = "webhook"
    timeout_seconds: float = 10.0
    retries: int = 2
    backoff_seconds: float = 0.5
    max_alerts_per_message: int = 20
    include_data: bool = True
    origin: str = ""  # where the URL came from, for messages (an env var name)
    client_factory: Callable[[float], httpx.Client] = field(
        default=lambda timeout: httpx.Client(timeout=timeout)
    )
    sleep: Callable[[float], None] = time.sleep

    @property
    def active(self) -> bool:
        return bool(self.url)

    def deliver(self, alerts: Sequence[Alert], log: Logger) -> list[Alert]:
        if not alerts or not self.url:
            return []
        by_rule: dict[str, list[Alert]] = defaultdict(list)
        for alert in alerts:
            by_rule[alert.rule].append(alert)
        failed: list[Alert] = []
        with self.client_factory(self.timeout_seconds) as client:
            for rule, items in by_rule.items():
                payload = slack_payload(items, self.max_alerts_per_message, self.include_data)
                problem = self._post(client, payload)
                if problem:
                    log.warning(
                        f"alert sink {self.name!r}: {len(items)} alert(s) of {rule} not "
                        f"delivered ({problem}); kept for the next tick"
                    )
                    failed.extend(items)
        return failed

    def _post(self, client: httpx.Client, payload: dict[str, Any]) -> str | None:
        """None when delivered, else what went wrong (without the URL)."""
        assert self.url
        problem = "not sent"
        for attempt in range(self.retries + 1):
            wait = self.backoff_seconds * 2**attempt
            try:
                response = client.post(self.url, json=payload)
            except httpx.TimeoutException:
                problem = f"timed out after {self.timeout_seconds:g} s"
            except httpx.HTTPError as exc:
                problem = f"connection failed ({type(exc).__name__})"
            else:
                if response.status_code < 300:
                    return None
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    return problem  # the receiver refuses this payload: retrying now won't help
                wait = max(wait, min(_retry_after(response), 10.0))
            if attempt < self.retries:
                self.sleep(wait)
        return f"{problem} after {self.retries + 1} attempt(s)"


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "0")))
    except ValueError:
        return 0.0


# ------------------------------------------------------------------------------ assembly


def build_sinks(
    ruleset: RuleSet,
    *,
    warehouse: Warehouse | None = None,
    environ: Mapping[str, str] | EnvLookup | None = None,
    url_env: str | None = DEFAULT_WEBHOOK_URL_ENV,
) -> dict[str, Sink]:
    """The sinks a rule file declares, bound to the warehouse and an environment.

    A webhook's URL is its ``url``, else the variable its ``url_env`` names, else the
    variable ``url_env`` names here; ``environ`` resolves names (a mapping, or a lookup such
    as ``dagster.EnvVar``'s). Without ``environ`` nothing is resolved: this module never
    reads the process environment itself, so a webhook without ``url`` is off.
    """
    lookup: EnvLookup
    if environ is None:
        lookup = _nothing
    elif isinstance(environ, Mapping):
        lookup = environ.get
    else:
        lookup = environ
    sinks: dict[str, Sink] = {}
    for name, spec in ruleset.sinks.items():
        if isinstance(spec, LogSinkSpec):
            sinks[name] = LogSink(name, spec.max_alerts_per_tick)
        elif isinstance(spec, TableSinkSpec):
            sinks[name] = TableSink(warehouse, name, spec.table)
        elif isinstance(spec, WebhookSinkSpec):
            variable = spec.url_env or url_env
            url = spec.url or (lookup(variable) if variable else None) or None
            sinks[name] = WebhookSink(
                url, name, spec.timeout_seconds, spec.retries, spec.backoff_seconds,
                spec.max_alerts_per_message, spec.include_data,
                origin="url" if spec.url else (variable or "url"),
            )  # fmt: skip
    return sinks


def _nothing(name: str) -> str | None:
    return None


@dataclass
class DispatchReport:
    delivered: int = 0  # alert x sink deliveries that succeeded
    pending: int = 0  # alerts still waiting for some sink
    dropped: int = 0  # alerts dropped from the outbox this tick
    inactive: set[str] = field(default_factory=set)

    def summary(self) -> str:
        parts = [f"{self.delivered} delivered"]
        if self.pending:
            parts.append(f"{self.pending} kept for retry")
        if self.dropped:
            parts.append(f"{self.dropped} dropped")
        if self.inactive:
            parts.append(f"off: {', '.join(sorted(self.inactive))}")
        return ", ".join(parts)


def dispatch(
    alerts: Sequence[Alert],
    state: SensorState,
    sinks: Mapping[str, Sink],
    log: Logger,
    max_outbox: int = DEFAULT_MAX_OUTBOX,
) -> DispatchReport:
    """Deliver the outbox, then ``alerts``, to their sinks; keep what failed in the outbox."""
    report = DispatchReport()
    work = list(state.outbox) + [PendingAlert(a, list(a.sinks)) for a in alerts]
    names = sorted({name for item in work for name in item.sinks})
    for name in names:
        sink = sinks.get(name)
        batch = [item.alert for item in work if name in item.sinks]
        if sink is None or not sink.active:
            # An unconfigured sink (webhook without its URL) is off, not failing: keeping
            # alerts for it would only fill the outbox.
            report.inactive.add(name)
            undelivered: set[str] = set()
        else:
            undelivered = {a.id for a in sink.deliver(batch, log)}
            report.delivered += len(batch) - len(undelivered)
        for item in work:
            if name in item.sinks and item.alert.id not in undelivered:
                item.sinks.remove(name)
    kept = []
    for item in work:
        if not item.sinks:
            continue
        item.attempts += 1
        if item.attempts > MAX_ATTEMPTS:
            log.error(
                f"alert {item.alert.id} ({item.alert.rule}, {item.alert.entity_id}) dropped: "
                f"sinks {item.sinks} refused it {MAX_ATTEMPTS} times"
            )
            state.dropped += 1
            report.dropped += 1
            continue
        kept.append(item)
    state.outbox = kept
    dropped = bound_outbox(state, max_outbox)
    if dropped:
        log.error(f"alert outbox full: dropped the {dropped} oldest undelivered alert(s)")
    report.dropped += dropped
    report.pending = len(state.outbox)
    return report


def alerts_as_json(alerts: Sequence[Alert]) -> str:
    return json.dumps([a.to_dict() for a in alerts], indent=2, default=str)
