"""The ``Warehouse`` component: one field picks the backend, and a URL's password stays an
environment variable's (never in the resource's config or a message)."""

from __future__ import annotations

import textwrap

import dagster as dg
import pytest
from pydantic import ValidationError

from analytics_assets.warehouse.component import Warehouse
from analytics_assets.warehouse.duckdb import DEFAULT_DATABASE, DuckDBWarehouse
from analytics_assets.warehouse.postgres import PostgresWarehouse


def _resource(yaml: str) -> dg.ConfigurableResource:
    component = Warehouse.resolve_from_yaml(textwrap.dedent(yaml))
    defs = component.build_defs(None)  # type: ignore[arg-type]  # unused by build_defs
    return defs.resources["warehouse"]


def test_the_default_is_the_duckdb_file() -> None:
    resource = _resource("{}")
    assert isinstance(resource, DuckDBWarehouse) and resource.database == DEFAULT_DATABASE


def test_path_and_url_name_a_duckdb_file_with_its_settings(tmp_path) -> None:
    for field in ("path", "url"):
        resource = _resource(f"{field}: {tmp_path}/w.duckdb\nmemory_limit: 200MB\nthreads: 1")
        assert isinstance(resource, DuckDBWarehouse)
        assert (resource.database, resource.memory_limit, resource.threads) == (
            f"{tmp_path}/w.duckdb",
            "200MB",
            1,
        )
    with pytest.raises(ValidationError, match="url or as path, not both"):
        _resource("url: a.duckdb\npath: b.duckdb")


def test_a_postgres_url_picks_postgres() -> None:
    resource = _resource("url: postgresql://sync@db.internal:5432/analytics")
    assert isinstance(resource, PostgresWarehouse)
    assert resource.url == "postgresql://sync@db.internal:5432/analytics"


def test_the_variable_wins_and_stays_a_variable(monkeypatch, tmp_path) -> None:
    yaml = f"url_env_var: WAREHOUSE_URL\nurl: {tmp_path}/fallback.duckdb"
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    assert isinstance(_resource(yaml), DuckDBWarehouse)  # unset: the url field
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://sync:pa55word@db.internal/analytics")
    resource = _resource(yaml)
    assert isinstance(resource, PostgresWarehouse)
    # An EnvVar: Dagster resolves it in the run and shows only its name.
    assert isinstance(resource.url, dg.EnvVar) and resource.url.env_var_name == "WAREHOUSE_URL"
    assert "pa55word" not in repr(resource)
    monkeypatch.setenv("WAREHOUSE_URL", f"{tmp_path}/from-env.duckdb")
    assert _resource(yaml).database == f"{tmp_path}/from-env.duckdb"


def test_a_password_variable_reaches_postgres(monkeypatch) -> None:
    resource = _resource(
        "url: postgresql://sync@db.internal/analytics\npassword_env_var: WAREHOUSE_PASSWORD"
    )
    assert isinstance(resource.password, dg.EnvVar)
    assert resource.password.env_var_name == "WAREHOUSE_PASSWORD"


def test_bad_values_are_refused_without_echoing_them() -> None:
    with pytest.raises(ValidationError) as raised:
        _resource("url_env_var: postgresql://u:pa55word@h/db")
    assert "pa55word" not in str(raised.value)
    with pytest.raises(ValueError, match="unknown warehouse URL scheme 'mysql'") as raised:
        _resource("url: mysql://u:pa55word@h/db")
    assert "pa55word" not in str(raised.value)


def test_postgres_runs_an_asset_through_the_variable(monkeypatch, postgres_server) -> None:
    monkeypatch.setenv("WAREHOUSE_URL", postgres_server.new_database("component", "pa55word"))
    resource = _resource("url_env_var: WAREHOUSE_URL")

    @dg.asset
    def counted(warehouse: PostgresWarehouse) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=warehouse.records("SELECT 41 + 1 AS n")[0])

    result = dg.materialize([counted], resources={"warehouse": resource})
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["n"].value == 42
