"""An ``AmplitudeSync`` declared in YAML, with its own key prefix, group, schema, key
variables, charts and cohorts, materialized against the sandbox: every table lands in its
schema, the keys come from the named environment variables at run time only, and the
cohort snapshot holds exactly the listed cohorts."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest

from analytics_assets.amplitude.component import AmplitudeSync
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
DAY = "2026-11-17"  # complete at NOW in New York
SCHEMA = "amp_acme"
TABLES = {
    "daily_active_users",
    "event_type_daily_totals",
    "events",
    "cohorts",
    "cohort_membership",
    "session_daily_stats",
    "annotations",
    "user_properties_daily",
    "chart_dau",
}


@pytest.fixture(scope="module")
def sandbox():
    config = SandboxConfig(seed=5, scale=1, now=NOW, amplitude_timezone="America/New_York")
    with SandboxServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def run(sandbox, tmp_path_factory):
    keys = sandbox.config.amplitude_keys["us"]
    base = sandbox.urls.base
    tmp = tmp_path_factory.mktemp("amplitude-component")
    ledger = str(tmp / "budgets.sqlite")
    with AmplitudeResource(
        api_key=keys.api_key, secret_key=keys.secret_key, base_url=base, budget_ledger=ledger
    ).get_client() as client:
        listed = [c for c in client.list_cohorts() if c.get("size") and not c.get("archived")]
    chosen = listed[0]["id"]
    component = AmplitudeSync.resolve_from_yaml(
        f"""
        key_prefix: [acme]
        group_name: product
        table_schema: {SCHEMA}
        api_key_env_var: ACME_AMP_API_KEY
        secret_key_env_var: ACME_AMP_SECRET_KEY
        base_url: {base}
        ingestion_url: {base}
        profile_url: {base}
        budget_ledger: {ledger}
        charts:
          - {{id: dau30dq, name: dau}}
        cohorts: ["{chosen}"]
        """.replace("\n        ", "\n")
    )
    defs = component.build_defs(None)  # type: ignore[arg-type]  # unused by build_defs
    assets = list(defs.assets or [])
    warehouse = DuckDBWarehouse(database=str(tmp / "warehouse.duckdb"))
    resources = {**(defs.resources or {}), "warehouse": warehouse}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACME_AMP_API_KEY", keys.api_key)
        patch.setenv("ACME_AMP_SECRET_KEY", keys.secret_key)
        daily = [a.key for a in assets if a.partitions_def is not None]  # type: ignore[union-attr]
        snapshots = [a.key for a in assets if a.partitions_def is None]  # type: ignore[union-attr]
        first = dg.materialize(assets, selection=snapshots, resources=resources)
        second = dg.materialize(assets, selection=daily, partition_key=DAY, resources=resources)
    return {
        "results": (first, second),
        "warehouse": warehouse,
        "chosen": chosen,
        "listed": listed,
        "secrets": (keys.api_key, keys.secret_key),
    }


def test_every_asset_materializes_under_the_prefix(run) -> None:
    keys = set()
    for result in run["results"]:
        assert result.success
        assert all(c.passed for c in result.get_asset_check_evaluations())
        keys |= {m.asset_key for m in result.get_asset_materialization_events()}
    assert keys == {dg.AssetKey(["acme", "amplitude", t]) for t in TABLES}


def test_every_table_is_in_the_schema_and_none_in_the_default(run) -> None:
    tables = run["warehouse"].records(
        "SELECT table_schema AS s, table_name AS t FROM information_schema.tables"
    )
    assert {r["t"] for r in tables if r["s"] == SCHEMA} == TABLES
    assert not [r for r in tables if r["s"] == "amplitude"]
    events = run["warehouse"].records(
        f"SELECT count(*) AS n FROM {SCHEMA}.events WHERE day = DATE '{DAY}'"
    )
    assert events[0]["n"] > 0


def test_the_snapshot_holds_the_listed_cohorts_only(run) -> None:
    rows = run["warehouse"].records(
        f"SELECT cohort_id, count(*) AS n FROM {SCHEMA}.cohort_membership GROUP BY cohort_id"
    )
    size = next(c["size"] for c in run["listed"] if c["id"] == run["chosen"])
    assert rows == [{"cohort_id": run["chosen"], "n": size}]


def test_the_keys_never_reach_run_config_or_the_event_log(run) -> None:
    for result in run["results"]:
        stored = repr(result.dagster_run.run_config) + "".join(repr(e) for e in result.all_events)
        for secret in run["secrets"]:
            assert secret not in stored
