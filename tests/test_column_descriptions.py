"""Every column of every table the code location writes carries a description, as the
Dagster UI's column schema shows it (issue 17, item 6).

Nothing is materialized: the assets' schemas are built by ``table_metadata`` itself (what
each materialization records) from the columns each asset declares, and the tables that
no asset computes (the write-back logs, the alerts) are read from their ``AssetSpec``s.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

import analytics_assets
from analytics_assets.alerts.sensors import alert_table_specs
from analytics_assets.amplitude import assets as amplitude
from analytics_assets.amplitude import session_assets as sessions
from analytics_assets.analytics import assets as analytics
from analytics_assets.crm_writeback.table_assets import writeback_table_specs
from analytics_assets.definitions import defs
from analytics_assets.pendo import assets as pendo
from analytics_assets.pendo import specs as pendo_specs
from analytics_assets.pendo.history import HISTORY_ASSETS, history_columns
from analytics_assets.warehouse.loading import table_metadata
from analytics_assets.warehouse.types import Column, JsonField

SCHEMA = "dagster/column_schema"


class _NoRows:
    """Just enough warehouse for ``table_metadata``: an empty table."""

    backend = "duckdb"

    def records(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        return [{"n": 0}] if "count(*)" in sql else []

    def columns(self, table: str) -> list[tuple[str, str]]:
        raise AssertionError(f"{table}: the schema was read from the warehouse, not declared")


def _undescribed(columns: Iterable[dg.TableColumn | Column | JsonField]) -> list[str]:
    return [c.name for c in columns if not (c.description or "").strip()]


def _ui_schema(columns: Sequence[Column]) -> dg.TableSchema:
    """The column schema a materialization records for a table of ``columns``."""
    return table_metadata(_NoRows(), "schema.table", columns)[SCHEMA]  # type: ignore[arg-type]


def _declared_columns(key: dg.AssetKey) -> Sequence[Column] | None:
    """The columns the asset ``key`` writes and hands to ``table_metadata``."""
    system, name = key.path[-2], key.path[-1]
    if system == "pendo":
        if name in pendo.SNAPSHOT_ASSETS:
            return pendo.SNAPSHOT_ASSETS[name].columns
        if name in pendo.DAILY_ASSETS:
            return [pendo_specs.DAY, *pendo.DAILY_ASSETS[name].columns]
        if name in HISTORY_ASSETS:
            spec = HISTORY_ASSETS[name]
            return history_columns(spec, pendo.SNAPSHOT_ASSETS[spec.source].columns)
        if name.startswith("report_"):
            return pendo.REPORT_COLUMNS
    if system == "amplitude":
        if name.startswith(amplitude.CHART_PREFIX):
            return amplitude.CHART_COLUMNS
        return {
            amplitude.DAILY_ACTIVE_USERS: amplitude.USERS_COLUMNS,
            amplitude.EVENT_TYPE_DAILY_TOTALS: amplitude.TOTALS_COLUMNS,
            amplitude.EVENTS: amplitude.EVENTS_COLUMNS,
            amplitude.COHORTS: amplitude.COHORT_COLUMNS,
            amplitude.COHORT_MEMBERSHIP: amplitude.MEMBERSHIP_COLUMNS,
            sessions.SESSION_DAILY_STATS: sessions.SESSION_COLUMNS,
            sessions.ANNOTATIONS: sessions.ANNOTATION_COLUMNS,
            sessions.USER_PROPERTIES_DAILY: sessions.USER_COLUMNS,
        }.get(name)
    if system == "analytics":
        return {
            "account_daily_usage": analytics.USAGE_COLUMNS,
            "account_health": analytics.HEALTH_COLUMNS,
        }.get(name)
    return None


@pytest.fixture(scope="module")
def graph() -> Any:
    return defs.resolve_asset_graph()


def test_every_materialized_table_describes_its_columns(graph: Any) -> None:
    unknown, undescribed = [], {}
    for key in graph.get_all_asset_keys():
        if not graph.get(key).is_materializable:
            continue
        columns = _declared_columns(key)
        if columns is None:
            unknown.append(key.to_user_string())
            continue
        schema = _ui_schema(columns)
        assert [c.name for c in schema.columns] == [c.name for c in columns]
        if missing := _undescribed(schema.columns):
            undescribed[key.to_user_string()] = missing
    assert not unknown, f"assets whose columns this test does not know (add them): {unknown}"
    assert not undescribed, f"columns without a description, by asset: {undescribed}"


def test_every_declared_column_schema_is_described(graph: Any) -> None:
    """AssetSpecs (write-back logs, alerts) carry their schema in their definition."""
    specs = [graph.get(k) for k in graph.get_all_asset_keys()]
    declared = {
        node.key.to_user_string(): node.metadata[SCHEMA]
        for node in specs
        if SCHEMA in (node.metadata or {})
    }
    # Every destination's log, whatever the write-back in defs/ sends to.
    for spec in [*writeback_table_specs(("pendo", "amplitude")), *alert_table_specs()]:
        declared[spec.key.to_user_string()] = spec.metadata[SCHEMA]
    assert {"analytics/writeback_log", "analytics/alerts"} <= set(declared)
    undescribed = {name: m for name, s in declared.items() if (m := _undescribed(s.columns))}
    assert not undescribed, f"columns without a description, by asset: {undescribed}"


def test_the_export_fields_carry_their_descriptions() -> None:
    assert not _undescribed(amplitude.EXPORT_FIELDS), "export fields without a description"
    by_name = {c.name: c.description for c in _ui_schema(amplitude.EVENTS_COLUMNS).columns}
    for field in amplitude.EXPORT_FIELDS:
        assert by_name[field.name] == field.description


def _column_lists(value: Any) -> Iterable[Sequence[Column | JsonField]]:
    if isinstance(value, Column | JsonField):
        yield [value]
    elif type(value) in (list, tuple) and value:
        if all(isinstance(v, Column | JsonField) for v in value):
            yield value
    elif isinstance(value, dict):
        for spec in value.values():
            if isinstance(spec, pendo_specs.DailySpec | pendo_specs.SnapshotSpec):
                yield spec.columns


def test_every_module_level_column_is_described() -> None:
    """Column lists, specs and export fields declared anywhere in the package."""
    undescribed: dict[str, list[str]] = {}
    for module in pkgutil.walk_packages(analytics_assets.__path__, "analytics_assets."):
        if ".sandbox" in module.name:
            continue
        loaded = importlib.import_module(module.name)
        for attr, value in vars(loaded).items():
            for columns in _column_lists(value):
                if missing := _undescribed(columns):
                    undescribed.setdefault(f"{module.name}.{attr}", []).extend(missing)
    assert not undescribed, f"columns without a description: {undescribed}"


def test_every_materialization_is_given_the_declared_columns() -> None:
    """Without declared columns ``table_metadata`` reads the schema from the warehouse,
    which knows no descriptions: every call must pass them (not None)."""
    root = Path(analytics_assets.__file__).parent
    bare = []
    for path in sorted(root.rglob("*.py")):
        if "sandbox" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in ("table_metadata", "_materialize"):
                continue
            given = [k.value for k in node.keywords if k.arg == "columns"]
            given += node.args[2:3]
            if not given or (isinstance(given[0], ast.Constant) and given[0].value is None):
                bare.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not bare, f"table_metadata without declared columns at {bare}"
