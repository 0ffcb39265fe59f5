"""How one system's assets are named: asset keys, group, and warehouse tables.

The factories ask a naming object for every key and table they create or read, so a
project can put this integration's assets under its own key prefix, group and schema
(the "translator" of dagster-dlt and dagster-fivetran). Subclass it to rename tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class AssetNaming:
    """Keys are ``[*key_prefix, system, name]``; tables ``<schema>.<name>``, where the schema
    defaults to the system (``pendo``, ``amplitude``, ``analytics``)."""

    system: str
    key_prefix: tuple[str, ...] = ()
    group_name: str | None = None
    schema: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_prefix", tuple(self.key_prefix))

    @property
    def group(self) -> str:
        return self.group_name or self.system

    def key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([*self.key_prefix, self.system, name])

    def table(self, name: str) -> str:
        return f"{self.schema or self.system}.{name}"

    @classmethod
    def of(
        cls,
        system: str,
        key_prefix: Sequence[str] = (),
        group_name: str | None = None,
        schema: str | None = None,
    ) -> AssetNaming:
        return cls(system, tuple(key_prefix), group_name, schema)


# Tags on every asset, so jobs, sensors and users can select by system and cadence
# without knowing key prefixes or table names.
SYSTEM_TAG = "analytics_assets/system"
CADENCE_TAG = "analytics_assets/cadence"
DAILY = "daily"
SNAPSHOT = "snapshot"


def asset_tags(naming: AssetNaming, cadence: str) -> dict[str, str]:
    """``{SYSTEM_TAG: system, CADENCE_TAG: daily|snapshot}`` for one asset."""
    return {SYSTEM_TAG: naming.system, CADENCE_TAG: cadence}


def table_asset_key(table: str) -> dg.AssetKey:
    """The asset of a table that jobs or sensors append to outside any asset (the alerts,
    the write-back's log and quarantine): ``analytics.alerts`` is ``analytics/alerts``."""
    return dg.AssetKey(table.split("."))
