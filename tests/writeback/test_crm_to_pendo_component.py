"""``CrmToPendo`` from a defs.yaml: its job, schedule and write key, and what it refuses."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox

from analytics_assets.crm_writeback import (
    DEFAULT_MAPPING_PATH,
    JOB_NAME,
    SAMPLE_CRM_PATH,
    CrmToPendo,
)
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

TYPE = "analytics_assets.crm_writeback.component.CrmToPendo"


@pytest.fixture
def project() -> Iterator[DefsFolderSandbox]:
    with create_defs_folder_sandbox() as sandbox:
        yield sandbox


def declare(project: DefsFolderSandbox, text: str, name: str = "crm") -> Path:
    """A folder of the project's defs/ holding ``text`` as its defs.yaml."""
    folder = project.defs_folder_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "defs.yaml").write_text(f"type: {TYPE}\nattributes:\n{text}", encoding="utf-8")
    return folder


def load(project: DefsFolderSandbox, folder: Path) -> tuple[CrmToPendo, dg.Definitions]:
    with project.load_component_and_build_defs(defs_path=folder) as (component, defs):
        assert isinstance(component, CrmToPendo)
        return component, defs


def load_error(project: DefsFolderSandbox, folder: Path) -> str:
    """Everything the load's exception chain says."""
    with pytest.raises(Exception) as caught:
        load(project, folder)
    parts: list[str] = []
    error: BaseException | None = caught.value
    while error is not None:
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


def the_job(defs: dg.Definitions) -> dg.JobDefinition:
    # defs.jobs, not resolve_job_def: that would want the warehouse, another component's.
    (job,) = [job for job in defs.jobs or [] if isinstance(job, dg.JobDefinition)]
    assert job.name == JOB_NAME
    return job


def step_config(job: dg.JobDefinition, run_config: dict[str, Any]) -> dict[str, Any]:
    assert job.config_mapping is not None
    resolved = job.config_mapping.resolve_from_unvalidated_config(run_config)
    return resolved["ops"]["crm_writeback_preflight"]["config"]


def test_resolves_from_yaml_into_job_schedule_and_write_resource(project) -> None:
    folder = declare(
        project,
        "  crm_path: /data/crm/accounts.csv\n"
        "  key_env_var: ACME_PENDO_WRITE_KEY\n"
        "  region: eu\n"
        "  rate_per_second: 2.5\n"
        "  schedule_cron: '0 6 * * 1-5'\n"
        "  timezone: Europe/Berlin\n"
        "  batch_size: 250\n"
        "  dry_run: true\n",
    )
    component, defs = load(project, folder)

    job = the_job(defs)
    assert {node.name for node in job.nodes} >= {"crm_writeback_preflight", "push_crm_changes"}
    (schedule,) = defs.schedules or []
    assert schedule.name == f"{JOB_NAME}_daily" and schedule.job_name == JOB_NAME
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * 1-5", "Europe/Berlin")

    resource = (defs.resources or {})["pendo_write"]
    assert isinstance(resource, PendoResource)
    assert isinstance(resource.integration_key, dg.EnvVar)  # never the key itself
    assert resource.integration_key.env_var_name == "ACME_PENDO_WRITE_KEY"
    assert (resource.region, resource.base_url, resource.rate_per_second) == ("eu", None, 2.5)
    assert "warehouse" not in (defs.resources or {})  # the Warehouse component's

    # The component's settings are the run config's defaults; a run may override them.
    defaults = step_config(job, {})
    assert defaults["crm_path"] == "/data/crm/accounts.csv" and defaults["crm_table"] == ""
    assert (defaults["batch_size"], defaults["dry_run"]) == (250, True)
    assert defaults["mapping_path"] == str(DEFAULT_MAPPING_PATH)
    assert defaults["key_env_var"] == "ACME_PENDO_WRITE_KEY"
    run = step_config(job, {"crm_table": "crm.accounts", "dry_run": False})
    assert (run["crm_path"], run["crm_table"], run["dry_run"]) == ("", "crm.accounts", False)


def test_defaults(project) -> None:
    component, defs = load(project, declare(project, "  crm_table: crm.accounts\n"))
    assert component.key_env_var == "PENDO_WRITE_INTEGRATION_KEY"
    assert (component.timezone, component.schedule_cron) == ("America/New_York", "30 7 * * *")
    assert (component.batch_size, component.dry_run, component.region) == (1000, False, "us")
    assert component.empty_export == "warn"
    assert step_config(the_job(defs), {})["empty_export"] == "warn"
    (schedule,) = defs.schedules or []
    assert schedule.cron_schedule == "30 7 * * *"
    key = (defs.resources or {})["pendo_write"].integration_key
    assert isinstance(key, dg.EnvVar) and key.env_var_name == "PENDO_WRITE_INTEGRATION_KEY"


def test_no_schedule_and_no_default_source(project) -> None:
    _, defs = load(project, declare(project, "  schedule_cron: null\n"))
    assert not defs.schedules
    job = the_job(defs)
    assert (step_config(job, {})["crm_path"], step_config(job, {})["crm_table"]) == ("", "")


def test_a_relative_mapping_starts_at_the_defs_folder(project) -> None:
    folder = declare(project, "  mapping: crm_mapping.yaml\n")
    (folder / "crm_mapping.yaml").write_text(
        "account_id: {column: Account ID}\nfields:\n  plan: {column: Plan, type: text}\n",
        encoding="utf-8",
    )
    _, defs = load(project, folder)
    mapping = step_config(the_job(defs), {})["mapping_path"]
    assert mapping == str((folder / "crm_mapping.yaml").resolve())


def test_a_missing_or_invalid_mapping_fails_at_load_naming_the_file(project) -> None:
    folder = declare(project, "  mapping: nowhere.yaml\n")
    text = load_error(project, folder)
    assert "nowhere.yaml" in text and "does not exist" in text

    folder = declare(project, "  mapping: broken.yaml\n", name="crm_broken")
    (folder / "broken.yaml").write_text("account_id: {column: Account ID}\nfields: 3\n")
    text = load_error(project, folder)
    assert "broken.yaml" in text and "line 2" in text


def test_a_misspelt_key_fails_naming_it(project) -> None:
    text = load_error(project, declare(project, "  crm_path: a.csv\n  batch_sise: 10\n"))
    assert "batch_sise" in text and "defs.yaml:4" in text


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ("  batch_size: 1001\n", "above Pendo's limit of 1000"),
        ("  batch_size: 0\n", "batch_size must be a whole number from 1 to 1000"),
        ("  timezone: Mars/Olympus\n", "unknown time zone 'Mars/Olympus'"),
        ("  rate_per_second: 0\n", "rate_per_second must be a finite number above 0"),
        ("  rate_per_second: .inf\n", "rate_per_second must be a finite number above 0"),
        ("  schedule_cron: every morning\n", "is not a cron expression"),
        ("  region: mars\n", "unknown Pendo region 'mars'"),
        ("  key_env_var: ''\n", "must be the name of an environment variable"),
        ("  crm_path: a.csv\n  crm_table: crm.accounts\n", "set crm_path or crm_table, not both"),
        ("  empty_export: ignore\n", "'warn' or 'fail'"),
    ],
)
def test_bad_values_are_refused_at_load(project, attributes: str, expected: str) -> None:
    text = load_error(project, declare(project, attributes))
    assert expected in text


def test_templates_are_checked_once_rendered(project, monkeypatch) -> None:
    monkeypatch.setenv("CRM_TIMEZONE", "Europe/Paris")
    monkeypatch.delenv("CRM_EXPORT", raising=False)
    monkeypatch.delenv("CRM_BATCH_SIZE", raising=False)
    folder = declare(
        project,
        '  crm_path: "{{ env.CRM_EXPORT }}"\n'
        "  timezone: \"{{ env.CRM_TIMEZONE or 'America/New_York' }}\"\n"
        '  batch_size: "{{ env.CRM_BATCH_SIZE or 500 }}"\n',
    )
    component, defs = load(project, folder)
    assert (component.crm_path, component.timezone, component.batch_size) == (
        None,
        "Europe/Paris",
        500,
    )
    monkeypatch.setenv("CRM_TIMEZONE", "Mars/Olympus")
    assert "unknown time zone 'Mars/Olympus'" in load_error(project, folder)
    monkeypatch.setenv("CRM_TIMEZONE", "UTC")
    monkeypatch.setenv("CRM_BATCH_SIZE", "5000")
    assert "above Pendo's limit of 1000" in load_error(project, folder)


def test_batch_size_over_1000_is_refused_in_python_too() -> None:
    with pytest.raises(ValueError, match="above Pendo's limit of 1000"):
        CrmToPendo(batch_size=5000)


def test_the_component_runs_against_the_sandbox(project, monkeypatch, tmp_path) -> None:
    """End to end: the YAML's settings reach the run, the key comes from its variable."""
    from analytics_assets.sandbox.config import SandboxConfig
    from analytics_assets.sandbox.server import SandboxServer

    monkeypatch.setenv("ACME_PENDO_WRITE_KEY", "sandbox-pendo-us-write-key")
    with SandboxServer(SandboxConfig(seed=42, scale=1)) as server:
        attributes = {
            "crm_path": str(SAMPLE_CRM_PATH),
            "key_env_var": "ACME_PENDO_WRITE_KEY",
            "base_url": server.urls.pendo(),
            "rate_per_second": 100.0,
            "dry_run": True,
        }
        text = yaml.safe_dump(attributes)
        folder = declare(project, "".join(f"  {line}\n" for line in text.splitlines()))
        _, defs = load(project, folder)
        resources = {
            **(defs.resources or {}),
            "warehouse": DuckDBWarehouse(database=str(tmp_path / "w.duckdb")),
        }
        result = the_job(defs).execute_in_process(resources=resources, raise_on_error=False)
        assert result.success
        summary = result.output_for_node("push_crm_changes")
        assert (summary.dry_run, summary.missing, summary.updated) == (96, 1, 0)
        written = server.state.counters.count(method="POST", path=r"^/api/v1/metadata")
        assert written == 0  # a dry run by the component's default
        # The log and the quarantine are assets of the graph, and the run that appended to
        # them recorded a materialization of each, with the rows it added.
        declared = {spec.key.to_user_string() for spec in defs.assets or []}
        assert {"analytics/writeback_log", "analytics/writeback_quarantine"} <= declared
        stored = {
            m.asset_key.to_user_string(): m.metadata["rows_appended"].value
            for m in result.asset_materializations_for_node("push_crm_changes")
            + result.asset_materializations_for_node("validate_crm_rows")
        }
        assert stored["analytics/writeback_log"] == 97  # 96 planned + 1 missing
        assert stored["analytics/writeback_quarantine"] > 0


def _run_dry(
    project: DefsFolderSandbox,
    server: Any,
    crm: Path,
    tmp_path: Path,
    instance: dg.DagsterInstance | None = None,
    **extra: Any,
) -> dg.ExecuteInProcessResult:
    attributes = {
        "crm_path": str(crm),
        "key_env_var": "ACME_PENDO_WRITE_KEY",
        "base_url": server.urls.pendo(),
        "rate_per_second": 100.0,
        "dry_run": True,
        **extra,
    }
    text = yaml.safe_dump(attributes)
    folder = declare(project, "".join(f"  {line}\n" for line in text.splitlines()))
    _, defs = load(project, folder)
    resources = {
        **(defs.resources or {}),
        "warehouse": DuckDBWarehouse(database=str(tmp_path / "w.duckdb")),
    }
    return the_job(defs).execute_in_process(
        resources=resources, raise_on_error=False, instance=instance
    )


def _step_failure(result: dg.ExecuteInProcessResult, step: str) -> str:
    (event,) = [e for e in result.all_events if e.is_step_failure and e.step_key == step]
    assert event.step_failure_data is not None
    return str(event.step_failure_data.error)


@pytest.fixture
def pendo_sandbox(monkeypatch) -> Iterator[Any]:
    from analytics_assets.sandbox.config import SandboxConfig
    from analytics_assets.sandbox.server import SandboxServer

    monkeypatch.setenv("ACME_PENDO_WRITE_KEY", "sandbox-pendo-us-write-key")
    with SandboxServer(SandboxConfig(seed=42, scale=1)) as server:
        yield server


def test_an_empty_export_warns_by_default_and_fails_when_configured(
    project, pendo_sandbox, tmp_path
) -> None:
    crm = tmp_path / "empty.csv"
    crm.write_text(SAMPLE_CRM_PATH.read_text(encoding="utf-8").splitlines()[0] + "\n")
    instance = dg.DagsterInstance.ephemeral()
    warned = _run_dry(project, pendo_sandbox, crm, tmp_path, instance)
    assert warned.success
    warnings = [
        r.user_message
        for r in instance.all_logs(warned.run_id)
        if r.level == logging.WARNING and r.step_key == "read_crm_export"
    ]
    assert any("has a header (9 columns) but no rows" in w for w in warnings), warnings
    summary = warned.output_for_node("push_crm_changes")
    assert (summary.dry_run, summary.updated) == (0, 0)

    failed = _run_dry(project, pendo_sandbox, crm, tmp_path, empty_export="fail")
    assert not failed.success
    text = _step_failure(failed, "read_crm_export")
    assert "has a header (9 columns) but no rows" in text and "empty_export: fail" in text
    assert pendo_sandbox.state.counters.count(method="POST", path=r"^/api/v1/metadata") == 0


def test_dates_that_read_both_ways_stop_the_run_naming_the_column(
    project, pendo_sandbox, tmp_path
) -> None:
    """A mapping that lists %m/%d/%Y without saying day_first: an export whose dates are
    all 12 or below in both places cannot say whether it is month-first; nothing is sent."""
    mapping = tmp_path / "mapping.yaml"
    shipped = DEFAULT_MAPPING_PATH.read_text(encoding="utf-8")
    mapping.write_text(shipped.replace(", day_first: false}", "}"), encoding="utf-8")
    lines = SAMPLE_CRM_PATH.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:4]
    column = header.split(",").index("Renewal Date")
    ambiguous = ["03/04/2026", "05/06/2026", "2026-08-01"]
    out = []
    for row, when in zip(rows, ambiguous, strict=True):
        cells = next(csv.reader([row]))
        cells[column] = when
        out.append(",".join(f'"{c}"' for c in cells))
    crm = tmp_path / "ambiguous.csv"
    crm.write_text("\n".join([header, *out]) + "\n", encoding="utf-8")
    result = _run_dry(project, pendo_sandbox, crm, tmp_path, mapping=str(mapping))
    assert not result.success
    text = _step_failure(result, "validate_crm_rows")
    assert "column 'Renewal Date'" in text and "03/04/2026, 05/06/2026" in text
    assert "day_first" in text
    assert pendo_sandbox.state.counters.count(method="POST", path=r"^/api/v1/metadata") == 0
