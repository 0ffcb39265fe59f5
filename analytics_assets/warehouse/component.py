"""``Warehouse``: the ``warehouse`` resource every asset, check, sensor and the write-back use."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import ConfigDict, Field, field_validator, model_validator

from analytics_assets.component_fields import LocatedErrors, env_var_name
from analytics_assets.warehouse.base import WarehouseResource, is_server_url, warehouse_from_url
from analytics_assets.warehouse.duckdb import DEFAULT_DATABASE


class Warehouse(LocatedErrors, dg.Component, dg.Resolvable, dg.Model):
    """The warehouse the syncs write to, as the resource ``warehouse``. One field picks the
    backend: ``url`` is a DuckDB file path (the default, ``data/warehouse.duckdb``) or a
    server URL, ``postgresql://user@host:5432/database`` or
    ``snowflake://user@account/database/schema?warehouse=WH``. A URL that holds a password
    belongs in an environment variable named by ``url_env_var``: the resource then reads it
    as an ``EnvVar``, so the UI shows the variable's name, never the password. Declare it
    once per project; every other component of this package uses it."""

    # A value that fails validation may be a URL with a password: keep it out of errors.
    model_config = ConfigDict(hide_input_in_errors=True)

    url: str | None = Field(
        default=None,
        description=(
            "A DuckDB file (relative paths start at the working directory) or a server URL "
            "such as postgresql://user@host:5432/database or "
            "snowflake://user@account/database[/schema]?warehouse=WH&role=R "
            "(default: data/warehouse.duckdb)."
        ),
    )
    path: str | None = Field(
        default=None, description="The DuckDB file: the same as url (the older name)."
    )
    url_env_var: str | None = Field(
        default=None,
        description=(
            "Name of an environment variable holding the path or URL; when it is set and not "
            "empty it wins over url. Read as an EnvVar (a password in it stays out of the UI)."
        ),
    )
    password_env_var: str | None = Field(
        default=None,
        description="Postgres or Snowflake: name of an environment variable holding the password.",
    )
    memory_limit: str = Field(default="288MB", description="DuckDB's memory_limit per step.")
    threads: int = Field(default=2, ge=1, description="DuckDB worker threads per step.")
    temp_directory: str | None = Field(
        default=None, description="Where DuckDB spills (default: <path>.tmp)."
    )

    @field_validator("url_env_var", "password_env_var")
    @classmethod
    def _env_var_name(cls, value: str | None) -> str | None:
        return None if value is None else env_var_name(value)

    @model_validator(mode="after")
    def _one_location(self) -> Warehouse:
        if self.url and self.path and self.url != self.path:
            raise ValueError("give the warehouse as url or as path, not both")
        return self

    def location(self) -> str:
        """The path or URL the resource is built from (may hold a password: never log it)."""
        if self.url_env_var and (value := os.environ.get(self.url_env_var, "").strip()):
            return value
        return self.url or self.path or DEFAULT_DATABASE

    def resource(self) -> WarehouseResource:
        location = self.location()
        from_env = bool(self.url_env_var and os.environ.get(self.url_env_var, "").strip())
        password = dg.EnvVar(self.password_env_var) if self.password_env_var else None
        if is_server_url(location) and from_env:
            # The backend is chosen from the value now; the resource gets the variable,
            # resolved when it is used, so Dagster shows the name and not the URL.
            chosen = warehouse_from_url(location, password=password)
            return chosen.__class__(url=dg.EnvVar(self.url_env_var), password=password)
        return warehouse_from_url(
            location,
            memory_limit=self.memory_limit,
            threads=self.threads,
            temp_directory=self.temp_directory,
            password=password,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return dg.Definitions(resources={"warehouse": self.resource()})
