"""The Dagster UI, in a real browser, on the Dagster home the demo leaves behind.

Headless Debian Chromium (Playwright, sync API) against ``analytics-assets dev`` checks what a
user sees after ``analytics-assets demo``: every asset group in the lineage graph and the
catalog, the materialized partitions of a daily asset (and no missing day in the demo's
range: the partitions start where its history does), green checks, the schedules and
sensors on the Automation page; the runs of ``daily_sync``, ``catalog_refresh`` and the
write-back under their jobs, with the jobs' tags, re-executable from the UI; each sensor's
ticks, cursor and the alerts in its tick logs; and that ``dev`` serves the demo's very
sandbox world (a sensor preview asks for no re-run, the staged changes are there). What to
expect comes from the code location's definitions, the demo's instance and its
``demo.json``, never from the clock. Each browser check has a GraphQL cross-check against the
same webserver, so a failure says whether the data or the page is wrong. Screenshots:
``tests/_output/browser/`` (the README's, with ``BROWSER_TEST_DOCS=1``: ``docs/screenshots/``).
"""

from __future__ import annotations

import json
import re
import time
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
import httpx  # noqa: E402
from playwright.sync_api import Page, expect  # noqa: E402

from analytics_assets import definitions  # noqa: E402
from analytics_assets.crm_writeback import JOB_NAME as WRITEBACK_JOB  # noqa: E402
from analytics_assets.sandbox.config import SandboxConfig  # noqa: E402
from analytics_assets.warehouse.duckdb import snapshot_copy  # noqa: E402

# The first test's setup runs the demo (DEMO_TIMEOUT_SECONDS) and starts the webserver.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(1200)]

LOCATION = "analytics_assets"
REPOSITORY = "__repository__"  # the one repository of a Definitions code location
DAILY_JOB, CATALOG_JOB = "daily_sync", "catalog_refresh"
JOBS = (DAILY_JOB, CATALOG_JOB, WRITEBACK_JOB)
ACTIVITY_SENSOR = "pendo_activity_sensor"
ALL_ASSETS = [a for a in definitions.defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
REQUIRED_GROUPS = {"pendo", "amplitude", "analytics"}
PARTITIONED = dg.AssetKey(["pendo", "account_daily_usage"])
PARTITIONED_KEYS = {
    key for asset in ALL_ASSETS if asset.partitions_def is not None for key in asset.keys
}
Screenshot = Callable[..., Path]


class Demo(Protocol):
    data_dir: Path
    partition_keys: tuple[str, ...]
    world: dict[str, Any]
    output: str


class UI(Protocol):
    """The ``dagster_ui`` fixture (``conftest.DagsterUI``)."""

    base_url: str
    demo: Demo
    sandbox_url: str

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]: ...


# ------------------------------------------------------------------------- expectations


def assets_by_group() -> dict[str, list[dg.AssetKey]]:
    """Every asset the code location defines, by group: the computed assets and the tables
    that sensors and the write-back append to (AssetSpecs)."""
    groups: dict[str, list[dg.AssetKey]] = {}
    for spec in definitions.defs.resolve_all_asset_specs():
        groups.setdefault(spec.group_name or "default", []).append(spec.key)
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
        # The list renders only the rows in view: make every row of the group fit.
        page.set_viewport_size({"width": 1600, "height": max(1200, 400 + 60 * len(groups[group]))})
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


def test_graphql_check_results_name_their_partition(dagster_ui: UI) -> None:
    """Daily assets' checks are recorded per partition: the latest result says which day."""
    data = dagster_ui.graphql(
        """query Checks($key: AssetKeyInput!) {
          assetNodeOrError(assetKey: $key) { ... on AssetNode {
            assetChecksOrError { ... on AssetChecks { checks { name
              executionForLatestMaterialization { evaluation { partition success } } } } } } } }""",
        {"key": {"path": PARTITIONED.path}},
    )
    checks = data["assetNodeOrError"]["assetChecksOrError"]["checks"]
    assert checks
    last_day = dagster_ui.demo.partition_keys[-1]
    for check in checks:
        evaluation = check["executionForLatestMaterialization"]["evaluation"]
        assert evaluation["partition"] == last_day, check["name"]


# ----------------------------------------------------------------------- lineage, freshness


def test_graphql_lineage_freshness_and_the_alerts_asset(dagster_ui: UI) -> None:
    """The graph draws what each asset reads, every materializable asset shows its freshness
    policy, and the alerts table is an asset the sensors' ticks materialized."""
    data = dagster_ui.graphql(
        """{ assetNodes { assetKey { path } isMaterializable
              dependencyKeys { path }
              internalFreshnessPolicy { __typename
                ... on TimeWindowFreshnessPolicy { failWindowSeconds } }
              assetMaterializations(limit: 1) { timestamp } } }"""
    )
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    edges = {
        ("pendo/features", "pendo/feature_daily_usage"),
        ("pendo/pages", "pendo/page_daily_usage"),
        ("pendo/guides", "pendo/guide_daily_activity"),
        ("pendo/visitor_daily_usage", "pendo/account_daily_usage"),
    }
    for upstream, downstream in edges:
        parents = {"/".join(k["path"]) for k in nodes[downstream]["dependencyKeys"]}
        assert upstream in parents, (upstream, downstream)
    unfresh = [
        name
        for name, node in nodes.items()
        if node["isMaterializable"] and node["internalFreshnessPolicy"] is None
    ]
    assert not unfresh
    alerts = nodes["analytics/alerts"]
    assert not alerts["isMaterializable"] and alerts["assetMaterializations"]


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


# --------------------------------------------------------------------------------- runs

RUNS_QUERY = """query Runs($job: String!) { runsOrError(filter: {pipelineName: $job}) {
  __typename ... on Runs { results { runId status pipelineSnapshotId parentPipelineSnapshotId
    hasReExecutePermission repositoryOrigin { repositoryLocationName repositoryName }
    tags { key value } } } } }"""
JOB_SNAPSHOT_QUERY = """query Job($location: String!, $repo: String!, $job: String!) {
  pipelineOrError(params: {repositoryLocationName: $location, repositoryName: $repo,
    pipelineName: $job}) { __typename ... on Pipeline { pipelineSnapshotId } } }"""


def job_runs(ui: UI, job: str) -> list[dict[str, Any]]:
    return list(ui.graphql(RUNS_QUERY, {"job": job})["runsOrError"]["results"])


def job_tags(job: str) -> dict[str, str]:
    return dict(definitions.defs.get_repository_def().get_job(job).tags)


def tags_of(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def demo_run_ids(ui: UI, label: str) -> list[str]:
    """The runs demo.json lists under a label containing ``label``."""
    return [r["run_id"] for r in ui.demo.world["runs"] if label in r["label"]]


def test_graphql_jobs_have_reexecutable_runs_with_their_tags(dagster_ui: UI) -> None:
    for job in JOBS:
        runs = job_runs(dagster_ui, job)
        assert runs, f"{job} has no run"
        loaded = dagster_ui.graphql(
            JOB_SNAPSHOT_QUERY, {"location": LOCATION, "repo": REPOSITORY, "job": job}
        )["pipelineOrError"]["pipelineSnapshotId"]
        for run in runs:
            where = (job, run["runId"])
            assert run["status"] == "SUCCESS", where
            # A code-location origin and the job as it is loaded now: the UI re-executes such
            # a run without a warning ("origin and snapshot" match); an in-process run of
            # `materialize` has neither, and its Re-execute is disabled.
            assert run["repositoryOrigin"] == {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
            }, where
            assert run["hasReExecutePermission"], where
            assert (run["parentPipelineSnapshotId"] or run["pipelineSnapshotId"]) == loaded, where
            assert job_tags(job).items() <= tags_of(run).items(), where
    # Every demo day has its own daily_sync run, and every run the demo listed is there.
    partitions = {tags_of(r).get("dagster/partition") for r in job_runs(dagster_ui, DAILY_JOB)}
    assert set(dagster_ui.demo.partition_keys) <= partitions
    listed = {r["run_id"] for r in dagster_ui.demo.world["runs"]}
    served = {r["runId"] for job in JOBS for r in job_runs(dagster_ui, job)}
    assert listed <= served


def test_job_pages_list_their_runs(page: Page, screenshot: Screenshot, dagster_ui: UI) -> None:
    for job in JOBS:
        runs = job_runs(dagster_ui, job)
        page.goto(f"/locations/{LOCATION}/jobs/{job}/runs")
        for run in runs:
            expect(page.get_by_text(run["runId"][:8], exact=True).first).to_be_visible()
        for key, value in job_tags(job).items():
            expect(page.get_by_text(f"{key}: {value}").first).to_be_visible()
        if job == DAILY_JOB:
            for day in dagster_ui.demo.partition_keys:
                expect(page.get_by_text(f"partition: {day}").first).to_be_visible()
        screenshot(f"05-job-{job}-runs", docs=job == DAILY_JOB)


# ------------------------------------------------------------------------------ sensors

SENSOR_QUERY = """query Sensor($selector: SensorSelector!) { sensorOrError(sensorSelector:
  $selector) { __typename ... on Sensor { name sensorState { status
    typeSpecificData { ... on SensorData { lastCursor } }
    ticks(limit: 20) { tickId status runIds cursor logEvents { events { message } } } } } } }"""


def sensor_state(ui: UI, name: str) -> dict[str, Any]:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                "sensorName": name}  # fmt: skip
    data = ui.graphql(SENSOR_QUERY, {"selector": selector})["sensorOrError"]
    assert data["__typename"] == "Sensor", data
    return data["sensorState"]


def alert_lines(state: dict[str, Any]) -> list[str]:
    return [
        event["message"]
        for tick in state["ticks"]
        for event in tick["logEvents"]["events"]
        if event["message"].startswith("ALERT [")
    ]


def stored_alerts(data_dir: Path, tmp_path: Path) -> int:
    """Rows of analytics.alerts, read from a copy (never holding the warehouse's lock)."""
    import duckdb

    copy = snapshot_copy(data_dir / "warehouse.duckdb", tmp_path)
    with duckdb.connect(str(copy), read_only=True) as conn:
        return int(conn.execute("SELECT count(*) FROM analytics.alerts").fetchone()[0])


def test_graphql_sensors_have_ticks_cursors_and_their_alerts(
    dagster_ui: UI, tmp_path: Path
) -> None:
    logged = 0
    for name in sensor_names():
        state = sensor_state(dagster_ui, name)
        # The demo's two ticks, through the daemon's own loop; then stopped again, as every
        # sensor starts in this project, with the cursor kept for when it is turned on.
        assert len(state["ticks"]) == 2, (name, state["ticks"])
        assert state["status"] == "STOPPED", name
        assert state["typeSpecificData"]["lastCursor"], name
        assert state["ticks"][0]["cursor"] == state["typeSpecificData"]["lastCursor"], name
        logged += len(alert_lines(state))
    # Every alert the sensors raised is in their tick logs and in the alerts table, once.
    assert logged == stored_alerts(dagster_ui.demo.data_dir, tmp_path) > 0
    activity = sensor_state(dagster_ui, ACTIVITY_SENSOR)
    assert any("account_activity_dropped" in line for line in alert_lines(activity))
    # The late-data re-runs the activity sensor asked for are its tick's runs.
    late = {r["runId"] for r in job_runs(dagster_ui, DAILY_JOB)
            if tags_of(r).get("dagster/sensor_name") == ACTIVITY_SENSOR}  # fmt: skip
    assert late == {run for tick in activity["ticks"] for run in tick["runIds"]}


def test_sensor_page_shows_ticks_cursor_and_alerts(
    page: Page, screenshot: Screenshot, dagster_ui: UI
) -> None:
    state = sensor_state(dagster_ui, ACTIVITY_SENSOR)
    page.goto(f"/locations/{LOCATION}/sensors/{ACTIVITY_SENSOR}")
    # "Cursor" is both the row label and, once the ticks load, a column header.
    expect(page.get_by_text("Cursor", exact=True).first).to_be_visible()
    cursor = state["typeSpecificData"]["lastCursor"]
    expect(page.get_by_text(cursor[:24]).first).to_be_visible()
    logs = page.get_by_role("button", name="View logs")
    expect(logs).to_have_count(len(state["ticks"]))
    screenshot(f"06-sensor-{ACTIVITY_SENSOR}", docs=True)

    # The latest tick's log: the alerts it raised, as the log sink wrote them.
    logs.first.click()
    latest = [e["message"] for e in state["ticks"][0]["logEvents"]["events"]]
    shown = [m for m in latest if m.startswith("ALERT [")]
    assert shown, latest
    for message in shown:
        expect(page.get_by_text(message[:60]).first).to_be_visible()
    screenshot(f"06-sensor-{ACTIVITY_SENSOR}-tick-log", docs=True)


# --------------------------------------------------------------------------- partitions

PARTITION_KEYS_QUERY = """query Keys($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) {
  __typename ... on AssetNode { partitionKeys assetPartitionStatuses { __typename
    ... on TimePartitionStatuses { ranges { startKey endKey status } } } } } }"""


def test_graphql_no_demo_day_is_missing(dagster_ui: UI) -> None:
    days = list(dagster_ui.demo.partition_keys)
    assert days == dagster_ui.demo.world["days"]
    for key in sorted(PARTITIONED_KEYS, key=lambda k: k.to_user_string()):
        node = dagster_ui.graphql(PARTITION_KEYS_QUERY, {"key": {"path": key.path}})
        node = node["assetNodeOrError"]
        # The deployment's partitions start on the demo's first day: nothing before it.
        assert node["partitionKeys"][0] == days[0] == dagster_ui.demo.world["start_date"], key
        ranges = node["assetPartitionStatuses"]["ranges"]
        done = expand_ranges([r for r in ranges if r["status"] == "MATERIALIZED"])
        assert done == days, key
        # What is missing is only what came after the demo (a day not complete then).
        missing = [k for k in node["partitionKeys"] if k not in done]
        assert all(k > days[-1] for k in missing), (key, missing)


def test_partitions_page_shows_no_missing_demo_day(
    page: Page, screenshot: Screenshot, dagster_ui: UI
) -> None:
    node = dagster_ui.graphql(PARTITION_KEYS_QUERY, {"key": {"path": PARTITIONED.path}})
    keys = node["assetNodeOrError"]["partitionKeys"]
    days = list(dagster_ui.demo.partition_keys)
    page.goto(asset_url(PARTITIONED, "partitions"))
    expect(page.locator("label").filter(has_text=re.compile(r"^Missing \(\d+\)$"))).to_have_text(
        f"Missing ({len(keys) - len(days)})"
    )
    expect(page.get_by_text(days[0], exact=True).first).to_be_visible()
    screenshot("07-partitions-from-the-first-demo-day", docs=True)


# ------------------------------------------------------------------------- dev's world

DRY_RUN = """mutation DryRun($selector: SensorSelector!, $cursor: String) {
  sensorDryRun(selectorData: $selector, cursor: $cursor) { __typename
    ... on DryRunInstigationTick { evaluationResult { runRequests { runKey }
      skipReason error { message } } }
    ... on PythonError { message } } }"""


def test_dev_serves_the_demo_world(dagster_ui: UI) -> None:
    world = dagster_ui.demo.world
    info = httpx.get(f"{dagster_ui.sandbox_url}/_sandbox/info", timeout=30).json()
    for name in ("seed", "scale", "pendo_timezone", "amplitude_timezone"):
        assert info[name] == world[name], name
    # The writes the demo staged were replayed: the quiet account and the guide's
    # dismissals, the new account, and the plan someone changed after the write-back.
    staged = httpx.get(f"{dagster_ui.sandbox_url}/_sandbox/stage", timeout=30).json()["us"]
    assert staged, "no staged change in dev's sandbox"
    metadata = httpx.get(
        f"{dagster_ui.sandbox_url}/_sandbox/pendo/metadata/us/account/account-000001",
        timeout=30,
    ).json()
    assert metadata["custom"]["plan"] == "free"
    read_key = SandboxConfig().pendo_keys["us"].read
    names = [
        json.loads(w["body"])["name"] for w in world["staged"] if w["path"].endswith("/accounts")
    ]
    store = httpx.get(f"{dagster_ui.sandbox_url}/_sandbox/pendo/store/us", timeout=30).json()
    created = store["created"]["account"]
    assert len(created) == len(names) > 0
    for account_id, name in zip(created, names, strict=True):
        account = httpx.get(
            f"{dagster_ui.sandbox_url}/api/v1/account/{account_id}",
            headers={"x-pendo-integration-key": read_key},
            timeout=30,
        )
        assert account.status_code == 200, account.text
        assert account.json()["metadata"]["agent"]["name"] == name


def test_graphql_sensor_preview_in_dev_agrees_with_the_demo(dagster_ui: UI) -> None:
    """A preview of the activity sensor, from its cursor, in dev's world: had dev served
    another world (another seed, scale or time zone), every demo day would differ from what
    the demo loaded, and the sensor would ask to re-run them all as late data."""
    state = sensor_state(dagster_ui, ACTIVITY_SENSOR)
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY,
                "sensorName": ACTIVITY_SENSOR}  # fmt: skip
    result = dagster_ui.graphql(
        DRY_RUN, {"selector": selector, "cursor": state["typeSpecificData"]["lastCursor"]}
    )["sensorDryRun"]
    assert result["__typename"] == "DryRunInstigationTick", result
    evaluation = result["evaluationResult"]
    assert evaluation["error"] is None, evaluation
    assert evaluation["runRequests"] == [], evaluation


# ----------------------------------------------------------------------- re-execution


def test_a_demo_run_is_reexecuted_from_the_ui(
    page: Page, screenshot: Screenshot, dagster_ui: UI
) -> None:
    """Last: it adds a run. The smallest of the demo's runs (the catalog run after the days)
    is re-executed with the run page's button, and dev's daemon runs it to success."""
    candidates = demo_run_ids(dagster_ui, "account_health") or demo_run_ids(dagster_ui, CATALOG_JOB)
    parent = candidates[-1]
    page.goto(f"/runs/{parent}")
    button = page.get_by_role("button", name="Re-execute all (*)")
    expect(button).to_be_enabled()
    screenshot("08-run-reexecute", docs=True)
    button.click()
    expect(page).not_to_have_url(re.compile(rf"/runs/{parent}$"))
    deadline = time.monotonic() + 240
    child: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        child = next(
            (r for r in job_runs(dagster_ui, CATALOG_JOB)
             if tags_of(r).get("dagster/parent_run_id") == parent),
            None,
        )  # fmt: skip
        if child is not None and child["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(2)
    assert child is not None, "no re-execution was launched"
    assert child["status"] == "SUCCESS", child
    assert tags_of(child)["dagster/root_run_id"] == parent
