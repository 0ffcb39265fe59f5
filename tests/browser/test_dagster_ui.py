"""The Dagster UI, in a real browser, on the Dagster home the demo leaves behind.

Headless Debian Chromium (Playwright, sync API) against ``dagster-webserver`` checks what a
user sees after ``analytics-assets demo``: every asset group in the lineage graph and the
catalog, the materialized partitions of a daily asset, green checks, and the schedules and
sensors on the Automation page. What to expect comes from the code location's definitions
and from the demo's instance, never from the clock. Each browser check has a GraphQL
cross-check against the same webserver, so a failure says whether the data or the page is
wrong. Screenshots: ``tests/_output/browser/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed: pip install playwright (uses the system Chromium; "
    "never run `playwright install`)",
)

import dagster as dg  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402

from analytics_assets import definitions  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

LOCATION = "analytics_assets"
ALL_ASSETS = [a for a in definitions.defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
REQUIRED_GROUPS = {"pendo", "amplitude", "analytics"}
PARTITIONED = dg.AssetKey(["pendo", "account_daily_usage"])
PARTITIONED_KEYS = {
    key for asset in ALL_ASSETS if asset.partitions_def is not None for key in asset.keys
}
Screenshot = Callable[[str], Path]


class Demo(Protocol):
    partition_keys: tuple[str, ...]


class UI(Protocol):
    """The ``dagster_ui`` fixture (``conftest.DagsterUI``)."""

    base_url: str
    demo: Demo

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]: ...


# ------------------------------------------------------------------------- expectations


def assets_by_group() -> dict[str, list[dg.AssetKey]]:
    groups: dict[str, list[dg.AssetKey]] = {}
    for asset in ALL_ASSETS:
        for key, group in asset.group_names_by_key.items():
            groups.setdefault(group, []).append(key)
    return groups


def check_names(key: dg.AssetKey) -> list[str]:
    for asset in ALL_ASSETS:
        if key in asset.keys:
            return sorted(check.name for check in asset.check_keys if check.asset_key == key)
    raise LookupError(key)


def all_check_keys() -> set[tuple[str, str]]:
    return {
        (check.asset_key.to_user_string(), check.name)
        for asset in ALL_ASSETS
        for check in asset.check_keys
    }


def schedule_names() -> list[str]:
    return sorted(s.name for s in definitions.defs.schedules or [])


def sensor_names() -> list[str]:
    return sorted(s.name for s in definitions.defs.sensors or [])


def asset_url(key: dg.AssetKey, view: str) -> str:
    return f"/assets/{'/'.join(key.path)}?view={view}"


def expand_ranges(ranges: list[dict[str, str]]) -> list[str]:
    days: list[str] = []
    for r in ranges:
        day, end = date.fromisoformat(r["startKey"]), date.fromisoformat(r["endKey"])
        while day <= end:
            days.append(day.isoformat())
            day += timedelta(days=1)
    return days


def test_definitions_hold_what_the_ui_is_checked_for() -> None:
    """The expectations below come from the definitions; make sure they are not empty."""
    assert set(assets_by_group()) >= REQUIRED_GROUPS
    assert len(check_names(PARTITIONED)) >= 2
    assert {"daily_sync_schedule", "catalog_refresh_schedule"} <= set(schedule_names())


# ------------------------------------------------------------------------------- groups


def test_asset_graph_shows_every_group(page: Page, screenshot: Screenshot) -> None:
    groups = assets_by_group()
    page.goto("/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    graph = page.locator("svg foreignObject")
    for group in sorted(groups):
        # A collapsed group node of the lineage graph, and the group in the side tree.
        expect(graph.get_by_text(group, exact=True).first).to_be_visible()
        tree_item = page.get_by_role("button").filter(has=page.get_by_title(group, exact=True))
        expect(tree_item.first).to_be_visible()
    # Group nodes read "N assets (fetching statuses)" until their status tags arrive.
    expect(graph.get_by_text(re.compile("fetching statuses"))).to_have_count(0)
    screenshot("01-asset-graph-groups")

    # Each group's catalog lists every asset of the group (links to the asset pages), each
    # materialized: "Materialized" for snapshots, a partition summary for daily assets.
    for n, group in enumerate(sorted(groups), start=1):
        page.goto(f"/locations/{LOCATION}/asset-groups/{group}/list")
        for key in groups[group]:
            link = page.locator(f'a[href="/assets/{"/".join(key.path)}"]').first
            expect(link).to_be_visible()
            expect(link).to_contain_text(key.path[-1])
        daily = sum(1 for key in groups[group] if key in PARTITIONED_KEYS)
        expect(page.get_by_text("Materialized", exact=True)).to_have_count(
            len(groups[group]) - daily
        )
        expect(page.get_by_text(re.compile(r"^\d+ partitions$"))).to_have_count(daily)
        expect(page.get_by_text(re.compile(r"^(Never materialized|Failed)$"))).to_have_count(0)
        screenshot(f"01-{n}-group-{group}-catalog")


def test_graphql_groups(dagster_ui: UI) -> None:
    data = dagster_ui.graphql("{ assetNodes { assetKey { path } groupName } }")
    served: dict[str, set[str]] = {}
    for node in data["assetNodes"]:
        served.setdefault(node["groupName"], set()).add("/".join(node["assetKey"]["path"]))
    expected = {g: {k.to_user_string() for k in keys} for g, keys in assets_by_group().items()}
    assert served == expected


# --------------------------------------------------------------------------- partitions


def test_partitioned_asset_shows_materialized_partitions(
    page: Page, screenshot: Screenshot, dagster_ui: UI
) -> None:
    keys = list(dagster_ui.demo.partition_keys)
    page.goto(asset_url(PARTITIONED, "partitions"))
    materialized = page.locator("label").filter(has_text=re.compile(r"^Materialized \(\d+\)$"))
    expect(materialized).to_have_text(f"Materialized ({len(keys)})")
    expect(page.locator("label").filter(has_text=re.compile(r"^Failed \(\d+\)$"))).to_have_text(
        "Failed (0)"
    )
    screenshot("02-partitions-overview")

    # Hide the missing partitions: the list is then exactly the demo's days.
    page.locator("label").filter(has_text=re.compile(r"^Missing \(\d+\)$")).click()
    expect(page.get_by_label(re.compile(r"^Missing \(\d+\)$"))).not_to_be_checked()
    expect(page.get_by_text(f"{len(keys)} Partitions Selected")).to_be_visible()
    for key in keys:
        expect(page.get_by_title(key, exact=True)).to_be_visible()
    listed = page.eval_on_selector_all("[title]", "els => els.map(e => e.title)")
    assert sorted(t for t in listed if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t)) == keys
    screenshot("02-partitions-materialized-only")

    # The newest day's materialization: status, run and the row count it recorded.
    page.get_by_title(keys[-1], exact=True).click()
    expect(page).to_have_url(re.compile(rf"partition={keys[-1]}"))
    expect(page.get_by_text("Latest materialization")).to_be_visible()
    expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
    expect(page.get_by_text("dagster/row_count")).to_be_visible()
    screenshot("02-partition-detail")


def test_graphql_partitions(dagster_ui: UI) -> None:
    data = dagster_ui.graphql(
        """query Partitions($key: AssetKeyInput!) {
          assetNodeOrError(assetKey: $key) { __typename ... on AssetNode {
            partitionStats { numMaterialized numFailed numMaterializing }
            assetPartitionStatuses { __typename
              ... on TimePartitionStatuses { ranges { startKey endKey status } } } } } }""",
        {"key": {"path": PARTITIONED.path}},
    )
    node = data["assetNodeOrError"]
    keys = list(dagster_ui.demo.partition_keys)
    assert node["partitionStats"] == {
        "numMaterialized": len(keys),
        "numFailed": 0,
        "numMaterializing": 0,
    }
    ranges = node["assetPartitionStatuses"]["ranges"]
    assert expand_ranges([r for r in ranges if r["status"] == "MATERIALIZED"]) == keys
    # Every daily asset got the same days.
    data = dagster_ui.graphql(
        "{ assetNodes { assetKey { path } partitionStats { numMaterialized numFailed } } }"
    )
    partitioned = [n for n in data["assetNodes"] if n["partitionStats"] is not None]
    assert partitioned
    for node in partitioned:
        stats = node["partitionStats"]
        assert stats == {"numMaterialized": len(keys), "numFailed": 0}, node["assetKey"]


# ------------------------------------------------------------------------------- checks


def test_checks_are_green(page: Page, screenshot: Screenshot) -> None:
    names = check_names(PARTITIONED)
    page.goto(asset_url(PARTITIONED, "checks"))
    expect(page.get_by_text(f"Checks ({len(names)})")).to_be_visible()
    for name in names:
        # The check's row in the list: its (middle-truncated) name carries the full name
        # as a title; beside it, the status of the latest execution.
        row = page.get_by_title(name, exact=True).locator("xpath=..")
        expect(row).to_contain_text("Succeeded")
        expect(row).not_to_contain_text("Failed")
    screenshot("03-checks-list")

    for n, name in enumerate(names, start=1):
        page.get_by_title(name, exact=True).click()
        # The detail pane of that check (its name heads the pane, after the list).
        expect(page).to_have_url(re.compile(rf"checkDetail={name}(&|$)"))
        expect(page.get_by_text(name, exact=True).filter(visible=True).last).to_be_visible()
        expect(page.get_by_text("Evaluation result")).to_be_visible()
        expect(page.get_by_text("Passed", exact=True)).to_be_visible()
        screenshot(f"03-{n}-check-{name}")


def test_graphql_every_check_passed(dagster_ui: UI) -> None:
    data = dagster_ui.graphql(
        """{ assetNodes { assetKey { path } assetChecksOrError { __typename
              ... on AssetChecks { checks { name
                executionForLatestMaterialization { status evaluation { success } } } } } } }"""
    )
    seen: set[tuple[str, str]] = set()
    failures = []
    for node in data["assetNodes"]:
        asset = "/".join(node["assetKey"]["path"])
        for check in node["assetChecksOrError"].get("checks", []):
            seen.add((asset, check["name"]))
            execution = check["executionForLatestMaterialization"] or {}
            evaluation = execution.get("evaluation") or {}
            if execution.get("status") != "SUCCEEDED" or evaluation.get("success") is not True:
                failures.append((asset, check["name"], execution))
    assert seen == all_check_keys()
    assert not failures, failures


# ---------------------------------------------------------------------------- automation


def test_schedules_and_sensors_are_listed(page: Page, screenshot: Screenshot) -> None:
    expected = schedule_names() + sensor_names()
    # The list is virtualized: make the window tall enough for every row to be rendered.
    page.set_viewport_size({"width": 1600, "height": max(1200, 400 + 60 * len(expected))})
    page.goto("/automation")
    expect(page.get_by_text(LOCATION, exact=True).first).to_be_visible()
    for name in expected:
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    screenshot("04-automation")

    # A schedule's own page: its cron and the job it starts.
    page.get_by_text("daily_sync_schedule", exact=True).click()
    expect(page).to_have_url(re.compile(r"/schedules/daily_sync_schedule"))
    expect(page.get_by_text("0 4 * * *").first).to_be_visible()
    expect(page.get_by_text("daily_sync", exact=True).first).to_be_visible()
    screenshot("04-schedule-daily_sync")

    # A sensor's own page, when the code location defines sensors.
    sensors = sorted(definitions.defs.sensors or [], key=lambda s: s.name)
    if sensors:
        sensor = sensors[0]
        page.goto("/automation")
        page.get_by_text(sensor.name, exact=True).click()
        expect(page).to_have_url(re.compile(rf"/sensors/{sensor.name}"))
        expect(page.get_by_text("Latest tick", exact=True)).to_be_visible()
        if sensor.description:
            expect(page.get_by_text(sensor.description[:60]).first).to_be_visible()
        screenshot(f"04-sensor-{sensor.name}")


def test_graphql_schedules_and_sensors(dagster_ui: UI) -> None:
    data = dagster_ui.graphql(
        """{ repositoriesOrError { __typename ... on RepositoryConnection {
              nodes { location { name } schedules { name } sensors { name } } } } }"""
    )
    (repo,) = [n for n in data["repositoriesOrError"]["nodes"] if n["location"]["name"] == LOCATION]
    assert sorted(s["name"] for s in repo["schedules"]) == schedule_names()
    # Dagster adds its automation-condition sensor by itself; every defined sensor is served.
    assert set(sensor_names()) <= {s["name"] for s in repo["sensors"]}
