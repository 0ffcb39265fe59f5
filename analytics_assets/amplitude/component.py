"""``AmplitudeSync``: the Amplitude assets and their resource, declared in YAML.

A project adds it with ``dg scaffold defs analytics_assets.AmplitudeSync
<name>`` and fills in ``defs.yaml``; the YAML is validated once, when the code location
loads, and everything the assets need is passed down from here (no module reads the
environment: the keys are ``EnvVar``s that Dagster resolves at run time).
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from analytics_assets.amplitude.assets import SYSTEM, amplitude_assets, check_asset_names
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.component_fields import (
    CalendarFields,
    LocatedErrors,
    NamedItem,
    NamingFields,
    StepRetryFields,
    env_var_name,
    finite_positive,
    http_url,
    unique_names,
)

RESOURCE_KEY = "amplitude"


class AmplitudeSync(
    LocatedErrors, dg.Component, dg.Resolvable, CalendarFields, NamingFields, StepRetryFields
):
    """Syncs an Amplitude project into the warehouse: daily active and new users, event
    totals per type and the raw Export API events (daily partitions in ``timezone``), the
    cohort list and a daily snapshot of cohort membership, and one table per saved chart.

    The API and secret keys are read at run time from the environment variables named by
    ``api_key_env_var`` and ``secret_key_env_var``; they never enter run config. Rate
    budgets are shared by every process on the host through ``budget_ledger``.

    Example ``defs.yaml``::

        type: analytics_assets.AmplitudeSync
        attributes:
          region: us
          timezone: America/New_York
          start_date: "2026-09-01"
          charts:
            - {id: "abc123", name: weekly_active}
          cohorts: all
          assets: [events, daily_active_users, cohorts, cohort_membership, charts]
    """

    # A value that fails validation may be a key pasted into the wrong field: keep it
    # out of the error message.
    model_config = ConfigDict(hide_input_in_errors=True)

    region: Literal["us", "eu"] = Field(
        default="us",
        description="The Amplitude data center of the project: us or eu (picks the API hosts).",
    )
    base_url: str | None = Field(
        default=None,
        description="Explicit host of the Dashboard REST, Export and cohort APIs "
        "(e.g. a proxy or the sandbox); default: the region's.",
    )
    ingestion_url: str | None = Field(
        default=None, description="Explicit host of the HTTP V2 / batch ingestion API."
    )
    profile_url: str | None = Field(
        default=None, description="Explicit host of the User Profile API."
    )
    api_key_env_var: str = Field(
        default="AMPLITUDE_API_KEY",
        description="Name of the environment variable that holds the project's API key "
        "(read at run time, never stored in config).",
    )
    secret_key_env_var: str = Field(
        default="AMPLITUDE_SECRET_KEY",
        description="Name of the environment variable that holds the project's secret key.",
    )
    budget_ledger: str | None = Field(
        default=None,
        description="SQLite file of the rate budgets shared by every step and run on this "
        "host (default: data/amplitude-budgets.sqlite under the working directory); "
        "'memory' keeps them per process.",
    )
    read_timeout: float = Field(
        default=180.0,
        description="Seconds to wait for a response; exports can take minutes.",
    )
    charts: list[NamedItem] = Field(
        default_factory=list,
        description="Saved charts to sync, each {id, name}; the asset is chart_<name>.",
    )
    cohorts: Literal["all"] | list[str] = Field(
        default="all",
        description="Cohort ids whose membership is snapshotted, or 'all' for every "
        "computed, unarchived cohort.",
    )
    assets: list[str] | None = Field(
        default=None,
        description="Which assets to define, by name: daily_active_users, "
        "event_type_daily_totals, events, cohorts, cohort_membership, session_daily_stats, "
        "annotations, user_properties_daily, charts (every chart) or chart_<name>. "
        "Default: all of them.",
    )

    @field_validator("base_url", "ingestion_url", "profile_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_validator("api_key_env_var", "secret_key_env_var")
    @classmethod
    def _env_var_name(cls, value: str) -> str:
        return env_var_name(value)

    @field_validator("budget_ledger")
    @classmethod
    def _ledger(cls, value: str | None) -> str | None:
        # Blank means the default, so YAML can pass "{{ env('X', '') }}" through.
        return value if value and value.strip() else None

    @field_validator("read_timeout")
    @classmethod
    def _read_timeout(cls, value: float) -> float:
        return finite_positive(value, "read_timeout")

    @field_validator("charts")
    @classmethod
    def _charts(cls, value: list[NamedItem]) -> list[NamedItem]:
        return unique_names(value, "charts")

    @field_validator("cohorts", mode="before")
    @classmethod
    def _cohorts_shape(cls, value: object) -> object:
        # One message instead of pydantic's two (one per member of the union).
        if isinstance(value, str) and value != "all":
            raise ValueError("must be 'all' or a list of cohort ids")
        return value

    @field_validator("cohorts")
    @classmethod
    def _cohorts(cls, value: Literal["all"] | list[str]) -> Literal["all"] | list[str]:
        if value == "all":
            return value
        if not value:
            raise ValueError("list at least one cohort id, or use 'all'")
        seen: set[str] = set()
        for cohort_id in value:
            if not cohort_id.strip():
                raise ValueError("a cohort id must not be empty")
            if cohort_id in seen:
                raise ValueError(f"the cohort id {cohort_id!r} is listed twice")
            seen.add(cohort_id)
        return value

    @field_validator("assets")
    @classmethod
    def _asset_names(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        # chart_<name> is valid only for a listed chart; charts is validated first (it is
        # declared first), and is missing from info.data only when it failed itself.
        if value is None:
            return None
        if not value:
            raise ValueError("name at least one asset, or leave assets out for all")
        return check_asset_names(value, info.data.get("charts") or [])

    def build_resource(self) -> AmplitudeResource:
        """The resource the assets use; the keys stay ``EnvVar``s until run time."""
        return AmplitudeResource(
            api_key=dg.EnvVar(self.api_key_env_var),
            secret_key=dg.EnvVar(self.secret_key_env_var),
            region=self.region,
            base_url=self.base_url,
            ingestion_url=self.ingestion_url,
            profile_url=self.profile_url,
            budget_ledger=self.budget_ledger,
            read_timeout=self.read_timeout,
        )

    def build_assets(self) -> list[dg.AssetsDefinition]:
        """The selected Amplitude assets with this component's calendar and naming."""
        return amplitude_assets(
            calendar=self.calendar(),
            charts=self.charts,
            cohorts=self.cohorts,
            naming=self.naming(SYSTEM),
            include=self.assets,
            retry=self.retry_policy(),
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dg.Definitions(
            assets=self.build_assets(), resources={RESOURCE_KEY: self.build_resource()}
        )
