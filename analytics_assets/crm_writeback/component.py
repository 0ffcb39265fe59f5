"""``CrmToPendo``: the CRM write-back job (to Pendo, and to Amplitude with ``destinations``),
its schedule and its write key, from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import dagster as dg
from pydantic import Field, field_validator, model_validator

from analytics_assets.component_fields import LocatedErrors, check_cron, env_var_name
from analytics_assets.crm_writeback.amplitude_targets import AmplitudeTargets, TargetsError
from analytics_assets.crm_writeback.job import (
    DEFAULT_SCHEDULE_CRON,
    WRITE_KEY_ENV,
    CrmPushConfig,
    build_crm_push_job,
    build_schedule,
)
from analytics_assets.crm_writeback.mapping import DEFAULT_MAPPING_PATH, load_mapping
from analytics_assets.crm_writeback.push import check_batch_size
from analytics_assets.crm_writeback.table_assets import writeback_table_specs
from analytics_assets.partitions import DEFAULT_TIMEZONE, check_timezone
from analytics_assets.pendo.client import MAX_BATCH
from analytics_assets.pendo.connection import PendoConnectionFields

__all__ = ["CrmToPendo"]


class CrmToPendo(LocatedErrors, dg.Component, dg.Resolvable, PendoConnectionFields):
    """Pushes CRM-derived account metadata (plan, ARR, seats, renewal, owner, health...)
    into Pendo's custom account fields: reads a CRM export (a .csv/.parquet file or a
    warehouse table), converts and validates it with a mapping file, sets bad rows aside,
    compares with Pendo's live values and sends only what changed, in batches of at most
    1,000, logging every record's outcome.

    With ``destinations: [pendo, amplitude]`` the same run also sets the fields in
    Amplitude, from the same CRM read: as group properties of the account's group (Group
    Identify API) and, where ``amplitude.user_properties`` says so, as user properties of
    the account's users (Identify API), sending only what differs from the last push
    Amplitude confirmed. That needs the ``amplitude`` resource (the ``AmplitudeSync``
    component's; only its API key is used).

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
    key_env_var: str = Field(
        default=WRITE_KEY_ENV,
        description="Name of the environment variable holding a read-write Pendo "
        "integration key ('Allow Write Access'); the syncs keep their read-only key.",
    )
    schedule_cron: str | None = Field(
        default=DEFAULT_SCHEDULE_CRON,
        description="When the write-back runs (cron, in `timezone`): by default daily at "
        "07:30, after the morning sync. null: no schedule.",
    )
    timezone: str = Field(
        default=DEFAULT_TIMEZONE,
        description="IANA time zone of the schedule: the Pendo subscription's.",
    )
    batch_size: int = Field(
        default=MAX_BATCH, description="Records per bulk request: 1 to 1,000 (Pendo's limit)."
    )
    dry_run: bool = Field(
        default=False,
        description="Do everything but the write and report what would change (a run may "
        "turn it off).",
    )
    empty_export: Literal["warn", "fail"] = Field(
        default="warn",
        description="A CRM export with a header and no rows: warn (nothing is sent and the "
        "run succeeds, saying so) or fail (for a CRM whose export is never empty).",
    )

    destinations: list[Literal["pendo", "amplitude"]] = Field(
        default_factory=lambda: ["pendo"],
        description="The tools the job writes to, from its one CRM read: pendo, amplitude, "
        "or both.",
    )
    amplitude: AmplitudeTargets = Field(
        default_factory=AmplitudeTargets,
        description="Where the mapped fields go in Amplitude (with amplitude among the "
        "destinations): group_type, group_properties (default: every mapped field under its "
        "own name), user_properties (default: none), users_table and its columns.",
    )

    @field_validator("destinations")
    @classmethod
    def _destinations(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("destinations needs at least one of pendo, amplitude")
        if len(set(value)) != len(value):
            raise ValueError(f"destinations lists a tool twice: {value}")
        return value

    @field_validator("key_env_var")
    @classmethod
    def _key_env_var(cls, value: str) -> str:
        return env_var_name(value)

    @field_validator("schedule_cron")
    @classmethod
    def _schedule_cron(cls, value: str | None) -> str | None:
        return check_cron(value, "schedule_cron")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value: int) -> int:
        return check_batch_size(value)

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
            empty_export=self.empty_export,
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # Absolute, so runs in other processes or folders read the same file. Loading it
        # now makes a missing or invalid mapping fail the code location, naming the file.
        mapping = self.mapping_path(context.path).resolve()
        fields = load_mapping(mapping)
        if "amplitude" in self.destinations:
            try:
                self.amplitude.check(fields)
            except TargetsError as exc:
                raise ValueError(str(exc)) from None
        job = build_crm_push_job(
            self.run_defaults(mapping),
            key_env_var=self.key_env_var,
            destinations=self.destinations,
            amplitude=self.amplitude,
        )
        schedules = []
        if self.schedule_cron is not None:
            schedules.append(build_schedule(job, cron=self.schedule_cron, timezone=self.timezone))
        return dg.Definitions(
            assets=writeback_table_specs(self.destinations),
            jobs=[job],
            schedules=schedules,
            resources={"pendo_write": self.pendo_resource(self.key_env_var)},
        )
