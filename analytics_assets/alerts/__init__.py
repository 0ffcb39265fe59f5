"""Change alerts: rules declared as YAML, a condition engine with transition semantics,
a compact cursor, and sinks (Dagster log, JSON webhook, warehouse table).

The sensors that run them are assembled in ``alerts/sensors.py`` and declared in YAML by the
``ChangeAlerts`` component (``alerts/component.py``; not imported here, so the engine stays
free of Dagster); the rule file format is described in ``rules.py`` and ``README.md``.
"""

from analytics_assets.alerts.engine import (
    AlertContext,
    Evaluation,
    RecordSnapshot,
    SeriesSnapshot,
    evaluate,
)
from analytics_assets.alerts.model import Alert
from analytics_assets.alerts.rules import RuleFileError, RuleSet, RuleSpec, load_rules, parse_rules
from analytics_assets.alerts.sinks import LogSink, TableSink, WebhookSink, build_sinks, dispatch
from analytics_assets.alerts.state import SensorState, dump_state, load_state

__all__ = [
    "Alert",
    "AlertContext",
    "Evaluation",
    "LogSink",
    "RecordSnapshot",
    "RuleFileError",
    "RuleSet",
    "RuleSpec",
    "SensorState",
    "SeriesSnapshot",
    "TableSink",
    "WebhookSink",
    "build_sinks",
    "dispatch",
    "dump_state",
    "evaluate",
    "load_rules",
    "load_state",
    "parse_rules",
]
