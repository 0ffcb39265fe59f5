"""``Warehouse``: the ``warehouse`` resource every asset, check, sensor and the write-back use."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from analytics_assets.component_fields import LocatedErrors
from analytics_assets.warehouse.duckdb import DEFAULT_DATABASE, DuckDBWarehouse


class Warehouse(LocatedErrors, dg.Component, dg.Resolvable, dg.Model):
    """The warehouse the syncs write to, as the resource ``warehouse``: a DuckDB file by
    default. Declare it once per project; every other component of this package uses it."""

    path: str = Field(
        default=DEFAULT_DATABASE,
        description="The DuckDB file (relative paths start at the working directory).",
    )
    memory_limit: str = Field(default="288MB", description="DuckDB's memory_limit per step.")
    threads: int = Field(default=2, ge=1, description="DuckDB worker threads per step.")
    temp_directory: str | None = Field(
        default=None, description="Where DuckDB spills (default: <path>.tmp)."
    )

    def resource(self) -> DuckDBWarehouse:
        return DuckDBWarehouse(
            database=self.path,
            memory_limit=self.memory_limit,
            threads=self.threads,
            temp_directory=self.temp_directory,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dg.Definitions(resources={"warehouse": self.resource()})
