"""``CrmToPendo``: the CRM -> Pendo write-back job, its schedule and its write key, from YAML."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from pydantic import AfterValidator, Field, model_validator

from analytics_assets.component_fields import finite_positive
from analytics_assets.crm_writeback.job import (
    DEFAULT_SCHEDULE_CRON,
    WRITE_KEY_ENV,
    CrmPushConfig,
    build_crm_push_job,
    build_schedule,
)
from analytics_assets.crm_writeback.mapping import DEFAULT_MAPPING_PATH, load_mapping
from analytics_assets.crm_writeback.push import check_batch_size
from analytics_assets.http.errors import ConfigurationError
from analytics_assets.partitions import DEFAULT_TIMEZONE, check_timezone
from analytics_assets.pendo.client import MAX_BATCH, resolve_region
from analytics_assets.pendo.resource import PendoResource

__all__ = ["CrmToPendo"]


def _checked(check: Callable[[Any], Any], *, numeric: bool = False) -> AfterValidator:
    """``check`` as a validator that Dagster's YAML model keeps, so a literal mistake is
    reported with its defs.yaml file and line (a field_validator would run only later).

    That model sees the YAML before its ``{{ templates }}`` are rendered: a template, or a
    number written as text, is let through and checked once rendered, when the component
    itself is validated.
    """

    def run(value: Any) -> Any:
        if isinstance(value, str) and (numeric or "{{" in value):
            return value
        return check(value)

    return AfterValidator(run)


def _region(value: str) -> str:
    try:
        return resolve_region("", value)[0]  # the client's one list of regions
    except ConfigurationError as exc:
        raise ValueError(exc.summary) from None


def _rate(value: float) -> float:
    return finite_positive(value, "rate_per_second")


def _cron(value: str | None) -> str | None:
    if value is not None:
        try:  # Dagster's own parser: what it accepts here, the schedule accepts
            dg.ScheduleDefinition(name="check", job_name="check", cron_schedule=value)
        except dg.DagsterInvalidDefinitionError:
            raise ValueError(
                f"schedule_cron {value!r} is not a cron expression of 5 fields, e.g. "
                f"{DEFAULT_SCHEDULE_CRON!r}; use null for no schedule"
            ) from None
    return value


def _env_var_name(value: str) -> str:
    if not value.strip():
        raise ValueError("key_env_var must name an environment variable")
    return value


class CrmToPendo(dg.Component, dg.Resolvable, dg.Model):
    """Pushes CRM-derived account metadata (plan, ARR, seats, renewal, owner, health...)
    into Pendo's custom account fields: reads a CRM export (a .csv/.parquet file or a
    warehouse table), converts and validates it with a mapping file, sets bad rows aside,
    compares with Pendo's live values and sends only what changed, in batches of at most
    1,000, logging every record's outcome.

    Defines the job ``crm_account_metadata_push``, its daily schedule (unless
    ``schedule_cron`` is null) and the resource ``pendo_write`` (a read-write key from the
    environment variable named by ``key_env_var``). The job also needs a ``warehouse``
    resource (the ``Warehouse`` component) for its log and quarantine tables. Every setting
    below except the key, region, URL, rate and schedule is a default of the job's run
    config, which each run may override in the launchpad.
    """

    crm_path: str | None = Field(
        default=None,
        description="The CRM export to read, a .csv or .parquet file (relative paths start "
        "at the run's working directory). Set this or crm_table, or neither if every run "
        "names one in its run config.",
    )
    crm_table: str | None = Field(
        default=None,
        description="Or the warehouse table (schema.table) holding the export.",
    )
    mapping: str | None = Field(
        default=None,
        description="Mapping YAML from CRM columns to Pendo fields (relative paths start at "
        "this defs.yaml's folder). Default: the mapping shipped with the package. It is "
        "checked when the code location loads.",
    )
    key_env_var: Annotated[str, _checked(_env_var_name)] = Field(
        default=WRITE_KEY_ENV,
        description="Name of the environment variable holding a read-write Pendo "
        "integration key ('Allow Write Access'); the syncs keep their read-only key.",
    )
    region: Annotated[str, _checked(_region)] = Field(
        default="us", description="us, us1, eu, jpn or au."
    )
    base_url: str | None = Field(
        default=None, description="Explicit API base URL (a proxy, or the local sandbox)."
    )
    rate_per_second: Annotated[float, _checked(_rate, numeric=True)] = Field(
        default=5.0, description="Requests per second before Pendo answers 429 (adapts down)."
    )
    schedule_cron: Annotated[str | None, _checked(_cron)] = Field(
        default=DEFAULT_SCHEDULE_CRON,
        description="When the write-back runs (cron, in `timezone`): by default daily at "
        "07:30, after the morning sync. null: no schedule.",
    )
    timezone: Annotated[str, _checked(check_timezone)] = Field(
        default=DEFAULT_TIMEZONE,
        description="IANA time zone of the schedule: the Pendo subscription's.",
    )
    batch_size: Annotated[int, _checked(check_batch_size, numeric=True)] = Field(
        default=MAX_BATCH, description="Records per bulk request: 1 to 1,000 (Pendo's limit)."
    )
    dry_run: bool = Field(
        default=False,
        description="Do everything but the write and report what would change (a run may "
        "turn it off).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CrmToPendo:
        if self.crm_path and self.crm_table:
            raise ValueError("set crm_path or crm_table, not both")
        return self

    def mapping_path(self, folder: Path | None = None) -> Path:
        """The mapping file: ``mapping`` resolved against ``folder`` (the defs.yaml's)."""
        if not self.mapping:  # unset, or an empty {{ env.X }}
            return DEFAULT_MAPPING_PATH
        path = Path(self.mapping)
        return path if path.is_absolute() or folder is None else folder / path

    def run_defaults(self, mapping_path: Path) -> CrmPushConfig:
        """The job's run config defaults: this component's settings."""
        return CrmPushConfig(
            crm_path=self.crm_path or "",
            crm_table=self.crm_table or "",
            mapping_path=str(mapping_path),
            batch_size=self.batch_size,
            dry_run=self.dry_run,
        )

    def resource(self) -> PendoResource:
        return PendoResource(
            integration_key=dg.EnvVar(self.key_env_var),
            region=self.region,
            base_url=self.base_url,
            rate_per_second=self.rate_per_second,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Absolute, so runs in other processes or folders read the same file. Loading it
        # now makes a missing or invalid mapping fail the code location, naming the file.
        mapping = self.mapping_path(context.path).resolve()
        load_mapping(mapping)
        job = build_crm_push_job(self.run_defaults(mapping), key_env_var=self.key_env_var)
        schedules = []
        if self.schedule_cron is not None:
            schedules.append(build_schedule(job, cron=self.schedule_cron, timezone=self.timezone))
        return dg.Definitions(
            jobs=[job], schedules=schedules, resources={"pendo_write": self.resource()}
        )
