"""``PendoSync``: one Pendo subscription's assets and its read-only resource, from YAML."""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field, field_validator

from analytics_assets.component_fields import (
    CalendarFields,
    LocatedErrors,
    NamedItem,
    NamingFields,
    StepRetryFields,
    env_var_name,
    unique_names,
)
from analytics_assets.pendo.assets import ASSET_NAMES, check_asset_names, pendo_assets
from analytics_assets.pendo.connection import PendoConnectionFields


class PendoSync(
    LocatedErrors,
    dg.Component,
    dg.Resolvable,
    PendoConnectionFields,
    CalendarFields,
    NamingFields,
    StepRetryFields,
):
    """Syncs one Pendo subscription into the warehouse: the catalog (features, pages,
    guides), metadata schemas, visitors and accounts, daily usage per visitor, account,
    feature, page and guide, Pendo's hourly event rows, and saved reports.

    Defines the resource ``pendo`` (read-only key from the environment variable named by
    ``key_env_var``); the assets also need a ``warehouse`` resource (the ``Warehouse``
    component). Daily assets are partitioned by the subscription-local day.
    """

    key_env_var: str = Field(
        default="PENDO_INTEGRATION_KEY",
        description="Name of the environment variable holding the read-only integration key.",
    )
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

    @field_validator("key_env_var")
    @classmethod
    def _env_var_name(cls, value: str) -> str:
        return env_var_name(value)

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

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dg.Definitions(
            assets=pendo_assets(
                calendar=self.calendar(),
                app_ids=self.app_ids,
                reports=self.reports,
                naming=self.naming("pendo"),
                include=self.assets,
                retry=self.retry_policy(),
            ),
            resources={"pendo": self.pendo_resource(self.key_env_var)},
        )
