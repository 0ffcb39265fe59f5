"""What the code location tells the UI: true lineage, one automation story, a freshness
policy on every asset, checks recorded per partition, step retries on the API-bound assets.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from analytics_assets import definitions
from analytics_assets.component_fields import StepRetryFields
from analytics_assets.definitions import defs


@pytest.fixture(scope="module")
def assets() -> dict[str, dg.AssetSpec]:
    graph = defs.resolve_asset_graph()
    return {
        key.to_user_string(): graph.get(key)
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
    }


@pytest.mark.parametrize(
    ("upstream", "downstream"),
    [
        ("pendo/features", "pendo/feature_daily_usage"),
        ("pendo/pages", "pendo/page_daily_usage"),
        ("pendo/guides", "pendo/guide_daily_activity"),
        ("pendo/visitor_daily_usage", "pendo/account_daily_usage"),
        ("amplitude/cohorts", "amplitude/cohort_membership"),
        ("pendo/visitors", "analytics/account_daily_usage"),
        ("analytics/account_daily_usage", "analytics/account_health"),
    ],
)
def test_lineage_draws_what_an_asset_reads(assets, upstream: str, downstream: str) -> None:
    parents = {k.to_user_string() for k in assets[downstream].parent_keys}
    assert upstream in parents


def test_every_asset_has_a_freshness_policy(assets) -> None:
    missing = [name for name, node in assets.items() if node.freshness_policy is None]
    assert not missing


def test_schedules_are_the_one_automation_story(assets) -> None:
    """Schedules run the jobs; no asset books itself a second time with a condition."""
    assert defs.schedules
    booked = [name for name, node in assets.items() if node.automation_condition is not None]
    assert not booked


def test_daily_checks_are_recorded_per_partition(assets) -> None:
    graph = defs.resolve_asset_graph()
    for name, node in assets.items():
        if node.partitions_def is None:
            continue
        for check_key in node.check_keys:
            spec = graph.get_check_spec(check_key)
            assert spec.partitions_def == node.partitions_def, (name, check_key.name)


def test_api_bound_assets_retry_as_steps(monkeypatch) -> None:
    """Every asset that calls an API (it runs in an API's pool) retries as a step, by the
    components' default (tests load the code location with step retries off)."""
    monkeypatch.delenv("ANALYTICS_ASSETS_STEP_RETRIES", raising=False)
    fresh = dg.load_from_defs_folder(path_within_project=Path(definitions.__file__).parent)
    graph = fresh.resolve_asset_graph()
    policies = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable and node.pools & {"pendo_api", "amplitude_api"}:
            policies[key.to_user_string()] = fresh.resolve_assets_def(key).op.retry_policy
    assert len(policies) > 20
    assert {p.max_retries if p else 0 for p in policies.values()} == {2}
    assert {p.delay for p in policies.values() if p} == {60}


def test_step_retries_are_set_per_component(monkeypatch) -> None:
    monkeypatch.setenv("ANALYTICS_ASSETS_STEP_RETRIES", "0")
    fresh = dg.load_from_defs_folder(path_within_project=Path(definitions.__file__).parent)
    graph = fresh.resolve_asset_graph()
    assert all(
        fresh.resolve_assets_def(key).op.retry_policy is None
        for key in graph.get_all_asset_keys()
        if graph.get(key).is_materializable
    )
    with pytest.raises(ValueError, match="step_retries must be 0 to 10"):
        StepRetryFields(step_retries=11)


def test_user_properties_are_a_default_read_from_the_events() -> None:
    """Read from the raw export in the warehouse (no API request): a default asset, in
    daily_sync, downstream of the events table."""
    from analytics_assets.amplitude.assets import amplitude_assets
    from analytics_assets.naming import CADENCE_TAG, DAILY

    key = dg.AssetKey(["amplitude", "user_properties_daily"])
    (users,) = [a for a in amplitude_assets() if a.key == key]
    assert dg.AssetKey(["amplitude", "events"]) in users.asset_deps[key]
    assert users.tags_by_key[key][CADENCE_TAG] == DAILY  # what daily_sync selects by
