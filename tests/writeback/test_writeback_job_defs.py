"""The job, its config and its schedule as Dagster definitions (no HTTP)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from analytics_assets.crm_writeback import (
    JOB_NAME,
    CrmPushConfig,
    crm_account_metadata_push,
    crm_account_metadata_push_schedule,
    crm_writeback_preflight,
    push_crm_changes,
    read_crm_export,
    validate_crm_rows,
)
from analytics_assets.crm_writeback.job import build_crm_push_job
from analytics_assets.partitions import DEFAULT_TIMEZONE
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.warehouse.duckdb import DuckDBWarehouse


def test_definitions_load_with_the_write_key_resource(tmp_path: Path) -> None:
    defs = dg.Definitions(
        jobs=[crm_account_metadata_push],
        schedules=[crm_account_metadata_push_schedule],
        resources={
            "pendo_write": PendoResource(integration_key=dg.EnvVar("PENDO_WRITE_INTEGRATION_KEY")),
            "warehouse": DuckDBWarehouse(database=str(tmp_path / "w.duckdb")),
        },
    )
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(JOB_NAME).name == JOB_NAME


def test_ops_that_call_pendo_share_the_pool() -> None:
    api_ops = {crm_writeback_preflight, push_crm_changes}  # push reads Pendo's values too
    local_ops = {read_crm_export, validate_crm_rows}
    assert {op.pool for op in api_ops} == {"pendo_api"}
    assert {op.pool for op in local_ops} == {None}
    assert {op.name for op in api_ops | local_ops} == {
        node.name for node in crm_account_metadata_push.nodes
    }


def test_schedule_runs_daily_after_the_sync_in_its_time_zone() -> None:
    schedule = crm_account_metadata_push_schedule
    assert schedule.job_name == JOB_NAME
    assert schedule.cron_schedule == "30 7 * * *"
    assert schedule.execution_timezone == DEFAULT_TIMEZONE
    context = dg.build_schedule_context()
    requests = schedule.evaluate_tick(context).run_requests
    assert requests and requests[0].run_config == {}


def step_config(job: dg.JobDefinition, run_config: dict) -> dict:
    """What the job's one form gives its steps for ``run_config``."""
    assert job.config_mapping is not None
    resolved = job.config_mapping.resolve_from_unvalidated_config(run_config)
    return resolved["ops"]["read_crm_export"]["config"]


def test_source_comes_from_config_or_the_jobs_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment is not read any more: its old variable changes nothing.
    monkeypatch.setenv("ANALYTICS_ASSETS_CRM_EXPORT", "/elsewhere/crm.csv")
    with pytest.raises(dg.Failure, match="no CRM export configured"):
        CrmPushConfig().source()
    job = build_crm_push_job(CrmPushConfig(crm_path="/data/crm.csv"))
    assert CrmPushConfig(**step_config(job, {})).source() == ("/data/crm.csv", None)
    assert CrmPushConfig(crm_table="crm.accounts").source() == (None, "crm.accounts")
    with pytest.raises(dg.Failure, match="not both"):
        CrmPushConfig(crm_path="a.csv", crm_table="crm.accounts").source()


def test_batch_size_over_1000_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(dg.DagsterInvalidConfigError, match="set batch_size to 1000 or less"):
        crm_account_metadata_push.execute_in_process(
            run_config={"batch_size": 5000},
            resources={
                "pendo_write": PendoResource(integration_key="unused"),
                "warehouse": DuckDBWarehouse(database=str(tmp_path / "w.duckdb")),
            },
        )


def test_the_jobs_defaults_are_overridable_per_run() -> None:
    job = build_crm_push_job(
        CrmPushConfig(crm_table="crm.accounts", dry_run=True, batch_size=200),
        key_env_var="ACME_PENDO_WRITE_KEY",
    )
    assert job.name == JOB_NAME
    defaults = step_config(job, {})
    assert (defaults["crm_table"], defaults["dry_run"], defaults["batch_size"]) == (
        "crm.accounts",
        True,
        200,
    )
    assert defaults["key_env_var"] == "ACME_PENDO_WRITE_KEY"  # fixed by the job, not the form
    run = step_config(job, {"crm_path": "/data/today.csv", "dry_run": False})
    # A run naming a file replaces the default table (not "set both").
    assert (run["crm_path"], run["crm_table"], run["dry_run"]) == ("/data/today.csv", "", False)
    with pytest.raises(dg.DagsterInvalidConfigError):
        step_config(job, {"key_env_var": "OTHER"})  # not part of the launchpad form
    with pytest.raises(ValueError, match="above Pendo's limit"):
        build_crm_push_job(CrmPushConfig(batch_size=1001))


def test_no_module_of_the_write_back_reads_the_environment_or_the_sandbox() -> None:
    package = Path(__file__).resolve().parents[2] / "analytics_assets" / "crm_writeback"
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "os.environ" not in text and "getenv" not in text, path
        assert "analytics_assets.sandbox" not in text, path
