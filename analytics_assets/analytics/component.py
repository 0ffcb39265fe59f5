"""``AccountAnalytics``: the cross-source assets, from YAML."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from analytics_assets.analytics.assets import analytics_assets
from analytics_assets.component_fields import CalendarFields, LocatedErrors, NamingFields
from analytics_assets.naming import AssetNaming


class AccountAnalytics(LocatedErrors, dg.Component, dg.Resolvable, CalendarFields, NamingFields):
    """Per account and day, Pendo and Amplitude activity side by side
    (``analytics/account_daily_usage``), and rolling 7/28-day health per account
    (``analytics/account_health``). Computed in the warehouse from the tables of
    ``PendoSync`` and ``AmplitudeSync``; give their key prefixes and schemas if you changed
    them. Needs the ``warehouse`` resource.
    """

    pendo_key_prefix: list[str] = Field(
        default_factory=list, description="key_prefix of the PendoSync whose tables are read."
    )
    pendo_table_schema: str | None = Field(
        default=None, description="table_schema of that PendoSync (default: pendo)."
    )
    amplitude_key_prefix: list[str] = Field(
        default_factory=list, description="key_prefix of the AmplitudeSync whose events are read."
    )
    amplitude_table_schema: str | None = Field(
        default=None, description="table_schema of that AmplitudeSync (default: amplitude)."
    )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dg.Definitions(
            assets=analytics_assets(
                calendar=self.calendar(),
                naming=self.naming("analytics"),
                pendo=AssetNaming.of("pendo", self.pendo_key_prefix, None, self.pendo_table_schema),
                amplitude=AssetNaming.of(
                    "amplitude", self.amplitude_key_prefix, None, self.amplitude_table_schema
                ),
            )
        )
