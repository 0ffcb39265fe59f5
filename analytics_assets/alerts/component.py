"""``ChangeAlerts``: the alert sensors, declared in YAML.

The component reads its rule file once, when the code location loads (a bad file stops the
load, naming the file, line and reason); everything else arrives through its fields. The
webhook URL is a secret: the YAML holds only the *name* of its environment variable, and the
value is looked up through ``dagster.EnvVar`` at each tick, so it never enters config, the
definitions or a log line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field, field_validator

from analytics_assets.alerts.rules import default_rules_path, load_rules
from analytics_assets.alerts.sensors import alert_table_specs, build_sensors
from analytics_assets.alerts.settings import DEFAULT_INTERVAL_SECONDS, LateData
from analytics_assets.alerts.sinks import DEFAULT_WEBHOOK_URL_ENV
from analytics_assets.component_fields import LocatedErrors
from analytics_assets.naming import CADENCE_TAG, DAILY, SYSTEM_TAG
from analytics_assets.partitions import DEFAULT_TIMEZONE, check_timezone

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# The Pendo daily assets, whatever their key prefix: every asset of this package carries
# these tags (naming.asset_tags), so the selection follows PendoSync's naming.
PENDO_DAILY_ASSETS = dg.AssetSelection.tag(SYSTEM_TAG, "pendo") & dg.AssetSelection.tag(
    CADENCE_TAG, DAILY
)


class ChangeAlerts(LocatedErrors, dg.Component, dg.Resolvable, dg.Model):
    """Change alerts: polling sensors that stand in for the webhooks Pendo and Amplitude
    lack, evaluating alert rules (YAML) and raising alerts on transitions only, to the
    Dagster log, the ``analytics.alerts`` table and a Slack-compatible webhook.

    Builds ``pendo_activity_sensor``, ``pendo_guides_sensor``, ``pendo_metadata_sensor``,
    ``amplitude_cohorts_sensor`` (each only when the rules give it something to watch) and
    ``run_failure_alerts_sensor``. They use the resources ``pendo`` (``PendoSync``),
    ``amplitude`` (``AmplitudeSync``; only if the rules read Amplitude) and ``warehouse``
    (``Warehouse``). ``pendo_activity_sensor`` also re-runs a daily partition of
    ``late_data_job`` whose Pendo events changed after it was materialized. Sensors start
    stopped: turning them on is an operator's decision.
    """

    rules: str | None = Field(
        default=None,
        description="Path to a rules YAML file (relative to this defs.yaml's folder); default: "
        "the shipped analytics_assets/alerts/default_rules.yaml. A bad file fails the load "
        "with its line and reason.",
    )
    timezone: str = Field(
        default=DEFAULT_TIMEZONE,
        description="The Pendo subscription's IANA time zone: the days that rules compare, "
        "and the late-data check's partitions (use PendoSync's).",
    )
    amplitude_timezone: str = Field(
        default="UTC", description="The Amplitude project's IANA time zone (active users by day)."
    )
    app_ids: Literal["*"] | list[int] = Field(
        default="*", description='Pendo apps to watch: "*" for all apps, or a list of app ids.'
    )
    webhook_url_env_var: str | None = Field(
        default=DEFAULT_WEBHOOK_URL_ENV,
        description="Name of the environment variable holding the webhook URL (a secret), "
        "read at each tick; used by webhook sinks whose rule file names no url/url_env. "
        "Unset variable or null: the webhook sink is off.",
    )
    late_data_job: str | None = Field(
        default="daily_sync",
        description="The daily job to re-run for days whose Pendo events changed after they "
        "were materialized; null: late data is only logged.",
    )
    late_data_selection: list[str] | None = Field(
        default=None,
        description="Which assets of late_data_job a late-data run materializes, as asset "
        "keys ('pendo/account_daily_usage'); default (null): the Pendo daily assets, found by "
        f"their tags ({SYSTEM_TAG}=pendo, {CADENCE_TAG}={DAILY}) at each tick, so any key "
        "prefix works.",
    )
    late_data_asset: str = Field(
        default=LateData.asset_key.to_user_string(),
        description="The asset whose materializations record pendo_events_total, compared "
        "with Pendo's total now (set it when PendoSync uses a key_prefix).",
    )
    minimum_interval_seconds: int = Field(
        default=DEFAULT_INTERVAL_SECONDS,
        description="Seconds between ticks of each alert sensor (each tick calls the APIs); "
        "at least 30.",
    )
    default_status: Literal["stopped", "running"] = Field(
        default="stopped", description="Whether the sensors run without being turned on in the UI."
    )

    # Validators run on the resolved values (after `{{ env.X }}` templates); LocatedErrors
    # points their errors at the defs.yaml line.
    @field_validator("timezone", "amplitude_timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("app_ids")
    @classmethod
    def _app_ids(cls, value: Literal["*"] | list[int]) -> Literal["*"] | list[int]:
        if isinstance(value, list) and not value:
            raise ValueError('app_ids must list at least one app id, or be "*" for all apps')
        return value

    @field_validator("webhook_url_env_var")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            # The value is not echoed: it may be the URL pasted into the wrong field.
            raise ValueError(
                "webhook_url_env_var must be the NAME of an environment variable (letters, "
                "digits, '_'), never the URL itself"
            )
        return value

    @field_validator("late_data_selection")
    @classmethod
    def _asset_keys(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("late_data_selection must name at least one asset, or be null")
        return value

    @field_validator("minimum_interval_seconds")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value < 30:  # every tick polls rate-limited APIs
            raise ValueError(f"minimum_interval_seconds must be at least 30, got {value}")
        return value

    def rules_path(self, context: dg.ComponentLoadContext | None = None) -> Path:
        """The rule file: ``rules`` relative to the component's folder, else the default."""
        if self.rules is None:
            return default_rules_path()
        path = Path(self.rules)
        if path.is_absolute() or context is None:
            return path
        folder = context.path if context.path.is_dir() else context.path.parent
        return folder / path

    def late_data_assets(self) -> list[dg.AssetKey] | dg.AssetSelection:
        if self.late_data_selection is None:
            return PENDO_DAILY_ASSETS
        return [dg.AssetKey.from_user_string(key) for key in self.late_data_selection]

    def sensor_options(self, context: dg.ComponentLoadContext | None = None) -> dict[str, Any]:
        """``build_sensors``' arguments from the fields (the rule file loaded and checked)."""
        return {
            # The shipped file loads as a package resource (it works from a wheel too).
            "rules": None if self.rules is None else load_rules(self.rules_path(context)),
            "pendo_timezone": self.timezone,
            "amplitude_timezone": self.amplitude_timezone,
            "app_ids": self.app_ids,
            "webhook_url_env_var": self.webhook_url_env_var,
            "late_data_job": self.late_data_job,
            "late_data_asset_key": self.late_data_asset,
            "late_data_assets": self.late_data_assets() if self.late_data_job else None,
            "minimum_interval_seconds": self.minimum_interval_seconds,
            "default_status": (
                dg.DefaultSensorStatus.RUNNING
                if self.default_status == "running"
                else dg.DefaultSensorStatus.STOPPED
            ),
        }

    def build_sensors(
        self, context: dg.ComponentLoadContext | None = None
    ) -> list[dg.SensorDefinition]:
        """The sensors, exactly as ``alerts.sensors.build_sensors`` makes them."""
        return build_sensors(**self.sensor_options(context))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        options = self.sensor_options(context)
        return dg.Definitions(
            assets=alert_table_specs(options["rules"]), sensors=build_sensors(**options)
        )
