"""The multi-host rehearsal (issue 16, item 5): runs that share nothing on disk, as
Kubernetes pods do, and share one Postgres (Dagster's instance from ``deploy/dagster.yaml``,
the budget ledger, the warehouse), backfill ``daily_sync`` through the daemon and the run
queue, two runs at once; the tables then equal a single-host DuckDB run of the same days.

How runs are given a disk of their own, and why that mirrors pods: ``multi_host_support``.
Three days here (a few minutes on two cores); ``bench/multi_host_bench.py`` runs fourteen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import multi_host_support as mh
import pytest
import yaml
from postgres_server import PostgresServer
from warehouse_compare import table_differences

from analytics_assets.warehouse.base import warehouse_from_url

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

# A frozen sandbox "now": the last three complete New York days before it are backfilled.
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
DAYS = 3
DEPLOY = yaml.safe_load((Path(__file__).parents[1] / "deploy" / "dagster.yaml").read_text())
MAX_RUNS = DEPLOY["concurrency"]["runs"]["max_concurrent_runs"]
POOL_LIMIT = DEPLOY["concurrency"]["pools"]["default_limit"]


@dataclass
class Outcome:
    rehearsal: mh.Rehearsal
    compared: dict[str, int]
    problems: list[str]
    daemon_yaml: dict[str, Any]


@pytest.fixture(scope="module")
def outcome(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        reason = "dagster-postgres is not installed: pip install 'dagster-postgres==0.29.*'"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (CI=true: the rehearsal must run in CI)", pytrace=False)
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("multi_host")
    shared = mh.SharedPostgres(
        instance_url=postgres_server.new_database("mh_dagster"),
        ledger_url=postgres_server.new_database("mh_ledger"),
        warehouse_url=postgres_server.new_database("mh_warehouse"),
    )
    days = mh.partition_days(NOW, DAYS)
    with mh.sandbox_process(work / "sandbox.log", now=NOW, scale=1) as sandbox:
        rehearsal = mh.rehearse(work / "multi", sandbox, shared, days, timeout=900)
        reference = mh.single_host_reference(work / "single", sandbox, days)
    compared, problems = table_differences(
        warehouse_from_url(str(reference)), warehouse_from_url(shared.warehouse_url)
    )
    daemon_yaml = yaml.safe_load(
        (work / "multi" / "daemon" / "dagster_home" / "dagster.yaml").read_text()
    )
    yield Outcome(rehearsal, compared, problems, daemon_yaml)


def test_the_instance_is_deploy_yaml_plus_the_pod_launcher(outcome: Outcome) -> None:
    config = dict(outcome.daemon_yaml)
    launcher = config.pop("run_launcher")
    assert config == DEPLOY
    assert launcher["class"] == "PodRunLauncher"
    assert DEPLOY["storage"]["postgres"]["postgres_db"]["hostname"] == {"env": "DAGSTER_PG_HOST"}


def test_every_run_succeeds(outcome: Outcome) -> None:
    r = outcome.rehearsal
    assert r.catalog_status == "SUCCESS"
    assert len(r.run_ids) == DAYS
    assert set(r.statuses.values()) == {"SUCCESS"}, r.failures


def test_several_runs_at_once_never_more_than_the_queue_allows(outcome: Outcome) -> None:
    # From the runs' start and end times in Postgres: exact, not sampled.
    assert MAX_RUNS >= 2
    assert outcome.rehearsal.max_overlapping_runs == MAX_RUNS


def test_no_429_and_no_refusal(outcome: Outcome) -> None:
    r = outcome.rehearsal
    assert r.requests.get("pendo", 0) > 0 and r.requests.get("amplitude", 0) > 0
    assert set(r.statuses_seen) == {"200"}, r.statuses_seen  # the server's side
    # The clients' side: the steps' metadata names retries and 429s only when there were any.
    for name in ("throttled_429", "retries"):
        for api in ("pendo", "amplitude"):
            assert r.client_figures.get(f"{api}_{name}", 0) == 0, r.client_figures
    assert not {k: v for k, v in r.refusals.items() if v}, r.refusals
    # What the steps say they sent is what the sandbox answered.
    assert r.client_figures["pendo_requests"] == r.requests["pendo"]
    assert r.client_figures["amplitude_requests"] == r.requests["amplitude"]


def test_pools_never_go_over_their_limits(outcome: Outcome) -> None:
    r = outcome.rehearsal
    # deploy/dagster.yaml's default_limit is what Postgres enforced for both pools.
    assert r.pool_limits == {"pendo_api": POOL_LIMIT, "amplitude_api": POOL_LIMIT}
    for pool, limit in r.pool_limits.items():
        # Step intervals (exact) and the slot table (sampled) both stay within the limit...
        assert 1 <= r.max_overlapping_steps[pool] <= limit, r.max_overlapping_steps
        assert r.watch.peak_slots[pool] <= limit, r.watch.peak_slots
    # ...and the limit was reached: two runs did compete for the slots.
    assert max(r.max_overlapping_steps.values()) == POOL_LIMIT


def test_each_run_had_a_disk_of_its_own(outcome: Outcome) -> None:
    r = outcome.rehearsal
    pods = [r.pods[run_id] for run_id in r.run_ids]
    assert len(set(pods)) == len(pods) and all(pods)
    for run_id in r.run_ids:
        files = r.pod_files[run_id]
        # It ran there (its compute logs), and kept no warehouse of its own.
        assert any(f"storage/{run_id}/compute_logs/" in f for f in files), files
        assert not any(f.endswith((".duckdb", ".duckdb.wal")) for f in files), files


def test_pendo_rate_is_shared_through_the_postgres_ledger(outcome: Outcome) -> None:
    r = outcome.rehearsal
    assert any(name == "pendo.rate" for _, name in r.ledger_records), r.ledger_records
    for run_id in r.run_ids:
        assert not any(f.endswith(".sqlite") for f in r.pod_files[run_id]), r.pod_files[run_id]


def test_tables_equal_a_single_host_duckdb_run_row_for_row(outcome: Outcome) -> None:
    assert outcome.problems == []
    compared = outcome.compared
    # Not vacuous: every daily table holds the three days on both.
    for table in (
        "amplitude.events",
        "amplitude.event_type_daily_totals",
        "pendo.visitor_daily_usage",
        "pendo.events_hourly",
        "analytics.account_daily_usage",
    ):
        assert compared[table] > 0, table
    assert len(compared) >= 20


def test_helm_values_carry_the_rehearsed_settings() -> None:
    # deploy/helm-values.yaml renders the instance this rehearsal ran on (README recipe).
    helm = yaml.safe_load((Path(__file__).parents[1] / "deploy" / "helm-values.yaml").read_text())
    assert helm["concurrency"]["enabled"] is True
    assert helm["concurrency"]["runs"]["maxConcurrentRuns"] == MAX_RUNS
    assert helm["concurrency"]["pools"]["defaultLimit"] == POOL_LIMIT
    scheme = DEPLOY["storage"]["postgres"]["postgres_db"]["scheme"]
    assert helm["postgresql"]["postgresqlScheme"] == scheme == "postgresql+psycopg2"
    assert helm["runLauncher"]["type"] == "K8sRunLauncher"
