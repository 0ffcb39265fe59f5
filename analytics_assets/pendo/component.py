"""``PendoSync``: one Pendo subscription's assets and its read-only resource, from YAML."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from analytics_assets.component_fields import (
    CalendarFields,
    LocatedErrors,
    NamedItem,
    NamingFields,
    env_var_name,
    finite_positive,
    http_url,
    unique_names,
)
from analytics_assets.pendo.assets import ASSET_NAMES, check_asset_names, pendo_assets
from analytics_assets.pendo.client import PENDO_HOSTS
from analytics_assets.pendo.resource import PendoResource


class PendoSync(LocatedErrors, dg.Component, dg.Resolvable, CalendarFields, NamingFields):
    """Syncs one Pendo subscription into the warehouse: the catalog (features, pages,
    guides), metadata schemas, visitors and accounts, daily usage per visitor, account,
    feature, page and guide, Pendo's hourly event rows, and saved reports.

    Defines the resource ``pendo`` (read-only key from the environment variable named by
    ``key_env_var``); the assets also need a ``warehouse`` resource (the ``Warehouse``
    component). Daily assets are partitioned by the subscription-local day.
    """

    # A value that fails validation may be a key pasted into the wrong field: keep it
    # out of the error message.
    model_config = ConfigDict(hide_input_in_errors=True)

    region: str = Field(default="us", description="us, us1, eu, jpn or au.")
    base_url: str | None = Field(
        default=None, description="Explicit API base URL (a proxy, or the local sandbox)."
    )
    key_env_var: str = Field(
        default="PENDO_INTEGRATION_KEY",
        description="Name of the environment variable holding the read-only integration key.",
    )
    rate_per_second: float = Field(
        default=5.0, description="Requests per second before Pendo answers 429 (adapts down)."
    )
    read_timeout: float = Field(default=300.0, description="Seconds; aggregations may run 5 min.")
    app_ids: Literal["*"] | list[int] = Field(
        default="*", description='Apps to read: "*" for all apps, or a list of app ids.'
    )
    reports: list[NamedItem] = Field(
        default_factory=list,
        description="Saved visitor or account reports; each becomes the asset report_<name>.",
    )
    assets: list[str] | None = Field(
        default=None,
        description=f"Which assets to build (default: all): {', '.join(ASSET_NAMES)}.",
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = value.lower()
        if region not in PENDO_HOSTS:
            raise ValueError(f"unknown Pendo region {value!r}; use one of {', '.join(PENDO_HOSTS)}")
        return region

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_validator("key_env_var")
    @classmethod
    def _env_var_name(cls, value: str) -> str:
        return env_var_name(value)

    @field_validator("rate_per_second", "read_timeout")
    @classmethod
    def _positive(cls, value: float, info: ValidationInfo) -> float:
        return finite_positive(value, info.field_name or "value")

    @field_validator("reports")
    @classmethod
    def _reports(cls, value: list[NamedItem]) -> list[NamedItem]:
        return unique_names(value, "reports")

    @field_validator("assets")
    @classmethod
    def _assets(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            check_asset_names(value, ASSET_NAMES, "Pendo")
        return value

    def resource(self) -> PendoResource:
        return PendoResource(
            integration_key=dg.EnvVar(self.key_env_var),
            region=self.region,
            base_url=self.base_url,
            rate_per_second=self.rate_per_second,
            read_timeout=self.read_timeout,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dg.Definitions(
            assets=pendo_assets(
                calendar=self.calendar(),
                app_ids=self.app_ids,
                reports=self.reports,
                naming=self.naming("pendo"),
                include=self.assets,
            ),
            resources={"pendo": self.resource()},
        )
