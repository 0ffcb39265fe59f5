"""``ChangeAlerts`` from YAML: the sensors it builds, its errors, and when it reads secrets."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox

from analytics_assets.alerts.component import PENDO_DAILY_ASSETS, ChangeAlerts
from analytics_assets.alerts.rules import RuleFileError
from analytics_assets.alerts.runner import late_data_selection
from analytics_assets.alerts.sensors import build_sensors
from analytics_assets.alerts.settings import LateData
from analytics_assets.naming import CADENCE_TAG, DAILY, SNAPSHOT, AssetNaming, asset_tags
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

TYPE = "analytics_assets.alerts.component.ChangeAlerts"
SENSORS = [
    "pendo_activity_sensor",
    "pendo_guides_sensor",
    "pendo_metadata_sensor",
    "amplitude_cohorts_sensor",
    "run_failure_alerts_sensor",
]
ACTIVITY_ONLY = """\
version: 1
rules:
  - name: drop
    source: {name: pendo.events, window: 8}
    entity: account
    metric: numEvents
    condition: {type: change_pct, direction: drop, percent: 50}
"""


@dataclass
class Project:
    """A throwaway dg project, with an ``alerts`` folder in its ``defs``."""

    sandbox: DefsFolderSandbox

    @property
    def folder(self) -> Path:
        return self.sandbox.defs_folder_path / "alerts"

    def load(self, attributes: str) -> tuple[ChangeAlerts, dg.Definitions]:
        """Load the component as ``dg`` and ``dagster dev`` do: a defs.yaml in defs/."""
        body = textwrap.indent(textwrap.dedent(attributes).strip() or "{}", "  ")
        (self.folder / "defs.yaml").write_text(f"type: {TYPE}\nattributes:\n{body}\n")
        with self.sandbox.load_component_and_build_defs(defs_path=self.folder) as loaded:
            component, defs = loaded
        assert isinstance(component, ChangeAlerts)
        return component, defs


def messages(error: BaseException) -> str:
    """The error and its causes as a traceback shows them: dg wraps a component's load
    error in its own (a context suppressed with ``from None`` is not shown)."""
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(str(current))
        hidden = current.__suppress_context__
        current = current.__cause__ or (None if hidden else current.__context__)
    return "\n".join(parts)


@pytest.fixture
def project() -> Iterator[Project]:
    with create_defs_folder_sandbox() as sandbox:
        (sandbox.defs_folder_path / "alerts").mkdir()
        yield Project(sandbox)


def test_the_defaults_build_the_same_sensors_as_build_sensors(project: Project) -> None:
    component, defs = project.load("")
    sensors = {s.name: s for s in defs.sensors or []}
    assert list(sensors) == SENSORS == [s.name for s in build_sensors(late_data_job="daily_sync")]
    assert component.timezone == "America/New_York" and component.app_ids == "*"
    for sensor in sensors.values():
        assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
        assert sensor.description
    # Typed resource parameters: each sensor needs only what its rules read.
    assert sensors["pendo_activity_sensor"].required_resource_keys == {"pendo", "warehouse"}
    assert sensors["amplitude_cohorts_sensor"].required_resource_keys == {
        "amplitude",
        "warehouse",
    }
    assert sensors["run_failure_alerts_sensor"].required_resource_keys == {"warehouse"}
    activity = sensors["pendo_activity_sensor"]
    assert activity.minimum_interval_seconds == 300
    assert [t.job_name for t in activity.targets] == ["daily_sync"]
    assert "re-runs daily_sync" in (activity.description or "")


def test_every_field_reaches_the_sensors(project: Project) -> None:
    (project.folder / "my_rules.yaml").write_text(ACTIVITY_ONLY)
    component, defs = project.load(
        """
        rules: my_rules.yaml
        timezone: Europe/Paris
        amplitude_timezone: Asia/Tokyo
        app_ids: [-323232, 5]
        webhook_url_env_var: MY_TEAM_HOOK
        late_data_job: null
        minimum_interval_seconds: 120
        default_status: running
        """,
    )
    sensors = {s.name: s for s in defs.sensors or []}
    assert list(sensors) == ["pendo_activity_sensor", "run_failure_alerts_sensor"]
    activity = sensors["pendo_activity_sensor"]
    assert activity.minimum_interval_seconds == 120
    assert activity.default_status == dg.DefaultSensorStatus.RUNNING
    assert activity.targets == []  # no job: late data is only logged
    assert "Rules: drop." in (activity.description or "")
    assert component.rules_path() == Path("my_rules.yaml")  # relative to the defs folder
    assert component.app_ids == [-323232, 5]


def test_a_typo_in_a_key_fails_naming_the_key(project: Project) -> None:
    with pytest.raises(Exception) as failure:
        project.load("rulez: my_rules.yaml")
    text = messages(failure.value)
    assert "rulez" in text and "defs.yaml:3" in text, text


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        ("timezone: America/Nowhere", "unknown time zone 'America/Nowhere'"),
        ("app_ids: []", "at least one app id"),
        ("webhook_url_env_var: https://hooks.slack.com/x", "NAME of an environment variable"),
        ("default_status: on", "default_status"),
    ],
)
def test_bad_fields_fail_at_load_with_a_reason(
    project: Project, attributes: str, words: str
) -> None:
    with pytest.raises(Exception) as failure:
        project.load(attributes)
    text = messages(failure.value)
    assert words in text and "alerts/defs.yaml:3" in text, text  # the value's own line


def test_a_bad_rules_file_fails_at_load_with_its_file_and_line(project: Project) -> None:
    (project.folder / "rules.yaml").write_text(ACTIVITY_ONLY.replace("percent: 50", "percent: -5"))
    with pytest.raises(Exception) as failure:
        project.load("rules: rules.yaml")
    cause = failure.value
    while not isinstance(cause, RuleFileError) and cause.__cause__ is not None:
        cause = cause.__cause__
    assert isinstance(cause, RuleFileError)
    assert re.search(r"alerts/rules.yaml:7: rules\[0\] \(drop\).condition.percent", str(cause))


def test_the_webhook_variable_is_read_at_tick_time_only(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook
) -> None:
    read: list[str] = []
    real = dg.EnvVar.get_value

    def spy(self: dg.EnvVar, default: str | None = None) -> str | None:
        read.append(self.env_var_name)
        return real(self, default)

    monkeypatch.setattr(dg.EnvVar, "get_value", spy)
    monkeypatch.delenv("TEAM_ALERTS_HOOK", raising=False)
    _, defs = project.load("webhook_url_env_var: TEAM_ALERTS_HOOK")
    assert read == []  # loading the code location reads no secret
    (sensor,) = [s for s in defs.sensors or [] if s.name == "run_failure_alerts_sensor"]

    @dg.op
    def explode() -> None:
        raise RuntimeError("boom")

    @dg.job(name="daily_sync")
    def daily_sync() -> None:
        explode()

    instance = dg.DagsterInstance.ephemeral()
    daily_sync.execute_in_process(instance=instance, raise_on_error=False)
    # Set only after the definitions exist: a URL captured at load would be None.
    monkeypatch.setenv("TEAM_ALERTS_HOOK", webhook.url)
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    with dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse}) as ctx:
        result = sensor(ctx)
    assert isinstance(result, dg.SensorResult) and result.cursor
    assert read == ["TEAM_ALERTS_HOOK"]
    # Only this sensor's: a timed-out request of an earlier test can still land meanwhile.
    (alert,) = [a for a in webhook.alerts() if a["sensor"] == sensor.name]
    assert alert["rule"] == "run_failure" and alert["entity_name"] == "daily_sync"
    assert webhook.url not in str(defs.sensors)  # nor in the sensors' definitions


# ------------------------------------------------------------------------------ late data


def _project_defs(prefix: tuple[str, ...]) -> dg.Definitions:
    """A project like this one: Pendo and Amplitude daily assets under a key prefix, a
    snapshot, and ``daily_sync`` selecting the daily ones by tag, as ``jobs.py`` does."""
    partitions = dg.DailyPartitionsDefinition(start_date="2026-11-01")

    def asset(system: str, name: str, cadence: str) -> dg.AssetsDefinition:
        naming = AssetNaming(system, prefix)

        @dg.asset(
            key=naming.key(name),
            tags=asset_tags(naming, cadence),
            partitions_def=partitions if cadence == DAILY else None,
        )
        def _asset() -> None: ...

        return _asset

    assets = [
        asset("pendo", "visitor_daily_usage", DAILY),
        asset("pendo", "account_daily_usage", DAILY),
        asset("pendo", "accounts", SNAPSHOT),
        asset("amplitude", "events_daily", DAILY),
    ]
    job = dg.define_asset_job("daily_sync", selection=dg.AssetSelection.tag(CADENCE_TAG, DAILY))
    return dg.Definitions(assets=assets, jobs=[job])


def _context(defs: dg.Definitions | None) -> SimpleNamespace:
    lines: list[tuple[str, str]] = []
    log = SimpleNamespace(
        info=lambda m: lines.append(("info", m)), warning=lambda m: lines.append(("warning", m))
    )
    repository = defs.get_repository_def() if defs is not None else None
    return SimpleNamespace(repository_def=repository, log=log, lines=lines)


def test_the_default_selection_finds_the_pendo_daily_assets_by_tag_under_any_prefix() -> None:
    defs = _project_defs(("acme",))
    ctx = _context(defs)
    late = LateData(job="daily_sync", asset_selection=PENDO_DAILY_ASSETS)
    assert late_data_selection(ctx, late, "s") == [
        dg.AssetKey(["acme", "pendo", "account_daily_usage"]),
        dg.AssetKey(["acme", "pendo", "visitor_daily_usage"]),
    ]  # not Amplitude's daily asset, not Pendo's snapshot
    assert ctx.lines == []


def test_explicit_keys_outside_the_job_are_left_out_loudly() -> None:
    ctx = _context(_project_defs(()))
    component = ChangeAlerts(late_data_selection=["pendo/account_daily_usage", "pendo/accounts"])
    late = LateData(job="daily_sync", asset_selection=component.late_data_assets())
    assert late_data_selection(ctx, late, "s") == [dg.AssetKey(["pendo", "account_daily_usage"])]
    assert any("not in daily_sync" in m and "pendo/accounts" in m for _, m in ctx.lines)


def test_a_selection_matching_nothing_requests_no_run_and_says_why() -> None:
    ctx = _context(_project_defs(()))
    late = LateData(job="daily_sync", asset_selection=dg.AssetSelection.tag("team", "nobody"))
    assert late_data_selection(ctx, late, "s") == []
    assert any("matches no asset of daily_sync" in m for _, m in ctx.lines)


def test_without_a_repository_a_tag_selection_runs_the_whole_job() -> None:
    ctx = _context(None)
    late = LateData(job="daily_sync", asset_selection=PENDO_DAILY_ASSETS)
    assert late_data_selection(ctx, late, "s") is None
    keys = [dg.AssetKey(["pendo", "account_daily_usage"])]
    assert late_data_selection(ctx, LateData(job="daily_sync", asset_selection=keys), "s") == keys


def test_every_field_is_documented_in_the_schema_dg_shows() -> None:
    schema = ChangeAlerts.model().model_json_schema()["properties"]
    assert set(schema) == set(ChangeAlerts.model_fields)
    assert all(field.get("description") for field in schema.values()), schema
    assert "polling sensors" in (ChangeAlerts.get_description() or "")


def test_values_may_come_from_templates_and_are_checked_once_resolved(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PENDO_TIMEZONE", "Europe/Paris")
    component, _ = project.load(
        """
        timezone: "{{ env.PENDO_TIMEZONE or 'America/New_York' }}"
        minimum_interval_seconds: "{{ env.ALERTS_INTERVAL or 600 }}"
        """
    )
    assert (component.timezone, component.minimum_interval_seconds) == ("Europe/Paris", 600)
    monkeypatch.setenv("PENDO_TIMEZONE", "Europe/Pariss")
    with pytest.raises(Exception) as failure:
        project.load("timezone: \"{{ env.PENDO_TIMEZONE or 'America/New_York' }}\"")
    assert "unknown time zone 'Europe/Pariss'" in messages(failure.value)


def test_a_url_pasted_as_the_variable_name_is_refused_without_echoing_it(
    project: Project,
) -> None:
    with pytest.raises(Exception) as failure:
        project.load("webhook_url_env_var: https://hooks.slack.com/services/T0/B0/SECRET")
    text = messages(failure.value)
    assert "NAME of an environment variable" in text and "SECRET" not in text
