"""The ``crm_account_metadata_push`` job: CRM export -> Pendo custom account metadata
(and, with ``destinations`` including ``amplitude``, Amplitude group and user properties).

    preflight ─────┬──────────────────> push: read Pendo's values ─> diff ─> batches, log
    (key, mapping, └─> validate ─────┘   (a thread reads and diffs; each batch of at
     schema)            (quarantine)      most 1,000 goes as soon as it is full)
    read CRM ─────────────┘

Every check that can stop the job runs before the first write request: a read-only or
invalid key, a mapping field Pendo lacks or types differently, a mapped column the export
lacks, a batch size above 1,000. Ops that call Pendo declare ``pool="pendo_api"``, so the
write-back shares the API's concurrency budget with the syncs.

With Amplitude among the destinations, the same validated records (one CRM read, one
quarantine) also go through ``check_amplitude_targets`` (before any write), then
``diff_crm_against_amplitude`` and ``push_crm_to_amplitude`` (see ``amplitude_ops``);
without Pendo, ``crm_mapping_preflight`` replaces Pendo's preflight.

Its Pendo key is the write key (resource ``pendo_write``, from the environment variable
the ``CrmToPendo`` component names, ``PENDO_WRITE_INTEGRATION_KEY`` by default); the syncs
and sensors keep the read-only key. Nothing here reads the environment: the component
passes its settings to :func:`build_crm_push_job` as the run config's defaults.
"""

# No `from __future__ import annotations` here: Dagster reads the ops' annotations
# (config class, resources) at decoration time and cannot resolve them from strings.
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from pydantic import Field

from analytics_assets.crm_writeback.amplitude_ops import amplitude_ops
from analytics_assets.crm_writeback.amplitude_targets import AmplitudeTargets
from analytics_assets.crm_writeback.crm import (
    CrmExport,
    CrmReadError,
    check_empty_export_policy,
    check_not_empty,
    read_crm,
)
from analytics_assets.crm_writeback.diff import (
    DiffResult,
    DiffStream,
    current_values,
    current_values_pipeline,
)
from analytics_assets.crm_writeback.mapping import Mapping, MappingError, load_mapping
from analytics_assets.crm_writeback.overlap import read_ahead
from analytics_assets.crm_writeback.push import (
    BatchResult,
    PushSummary,
    check_batch_size,
    push_changes,
)
from analytics_assets.crm_writeback.table_assets import LogWriter, appended
from analytics_assets.crm_writeback.tables import (
    LOG_TABLE,
    QUARANTINE_TABLE,
    PreviousRun,
    append_quarantine,
    previous_incomplete_run,
)
from analytics_assets.crm_writeback.validate import (
    AmbiguousDatesError,
    ColumnsMissingError,
    SchemaMismatchError,
    ValidationResult,
    check_schema,
    validate_rows,
)
from analytics_assets.http.errors import ApiError, AuthenticationError, PermissionDeniedError
from analytics_assets.partitions import DEFAULT_TIMEZONE, check_timezone
from analytics_assets.pendo.client import MAX_BATCH
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.warehouse.base import WarehouseResource

__all__ = [
    "DEFAULT_SCHEDULE_CRON",
    "DESTINATIONS",
    "JOB_NAME",
    "WRITE_KEY_ENV",
    "CrmPushConfig",
    "CrmStepConfig",
    "Preflight",
    "build_crm_push_job",
    "build_schedule",
    "crm_account_metadata_push",
    "crm_account_metadata_push_schedule",
    "crm_mapping_preflight",
    "crm_writeback_preflight",
    "push_crm_changes",
    "read_crm_export",
    "validate_crm_rows",
]

JOB_NAME = "crm_account_metadata_push"
POOL = "pendo_api"
WRITE_KEY_ENV = "PENDO_WRITE_INTEGRATION_KEY"
# Daily at 07:30 in the subscription's time zone: after the morning sync, before the
# workday. The one default of the write-back's schedule (CrmToPendo.schedule_cron).
DEFAULT_SCHEDULE_CRON = "30 7 * * *"
# How many field-by-field changes a run shows in its logs and metadata (all are logged
# in analytics.writeback_log).
SHOWN_CHANGES = 50
DESTINATIONS = ("pendo", "amplitude")
# A field's type when no Pendo schema says it (Amplitude only): the mapping's type as the
# Pendo type it would have, so conversion and comparison are the same for both tools.
MAPPING_TYPES = {"text": "string", "number": "float", "boolean": "boolean", "date": "time"}


class CrmPushConfig(dg.Config):
    """The whole job's settings, shown as one form in the launchpad.

    The form's defaults are the ``CrmToPendo`` component's settings; a run may override
    any of them.
    """

    crm_path: str = Field(
        default="", description="CRM export (.csv or .parquet). Empty: read crm_table."
    )
    crm_table: str = Field(
        default="", description="Or a warehouse table (schema.table) holding the export."
    )
    mapping_path: str = Field(
        default="", description="Mapping YAML. Empty: the packaged mapping.yaml."
    )
    batch_size: int = Field(default=MAX_BATCH, description="Records per bulk request: 1 to 1,000.")
    create: bool = Field(
        default=False, description="Create accounts Pendo does not have (?create=true)."
    )
    force: bool = Field(default=False, description="Send every record, changed or not.")
    dry_run: bool = Field(
        default=False, description="Do everything but the write; report what would change."
    )
    empty_export: str = Field(
        default="warn",
        description="An export with a header and no rows: warn (nothing is sent, the run "
        "succeeds) or fail.",
    )

    def source(self) -> tuple[str | None, str | None]:
        """(path, table) to read; raises dg.Failure unless exactly one is set."""
        if self.crm_path and self.crm_table:
            raise dg.Failure(description="set crm_path or crm_table, not both")
        if not self.crm_path and not self.crm_table:
            raise dg.Failure(
                description=(
                    "no CRM export configured: set crm_path (a .csv or .parquet file) or "
                    "crm_table in the run config, or in the CrmToPendo component"
                )
            )
        return self.crm_path or None, self.crm_table or None

    def mapping_file(self) -> str | None:
        return self.mapping_path or None


class CrmStepConfig(CrmPushConfig):
    """What each step gets: the launchpad form plus what the job fixes when it is built."""

    key_env_var: str = Field(
        default=WRITE_KEY_ENV,
        description="Set by the job, not the form: the environment variable of the write "
        "key, named in messages about the key (never its value).",
    )


@dataclass(frozen=True)
class Preflight:
    """What the checks before any write established: the mapping and Pendo's field types."""

    mapping: Mapping
    types: dict[str, str]
    write_access: bool


def _fail(message: str, **metadata: Any) -> dg.Failure:
    return dg.Failure(description=message, metadata=metadata or None)


# ----- ops --------------------------------------------------------------------------------


@dg.op(pool=POOL, tags={"service": "pendo"})
def crm_writeback_preflight(
    context: dg.OpExecutionContext, config: CrmStepConfig, pendo_write: PendoResource
) -> Preflight:
    """Check the key, the mapping and Pendo's schema; nothing is written here."""
    try:
        check_batch_size(config.batch_size)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        mapping = load_mapping(config.mapping_file())
    except MappingError as exc:
        raise _fail(str(exc)) from None
    key = f"the Pendo key of the write-back (${config.key_env_var})"
    with pendo_write.session(context) as client:
        write_access = True
        try:
            # The client's own check (one token/verify), the same one its writes rely on.
            client.require_write_access()
        except PermissionDeniedError:
            write_access = False
            message = (
                f"{key} is read-only (token/verify: writeAccess=false). Use a read-write "
                "integration key: in Pendo, Settings > Integrations > Integration Keys, create "
                f"one with 'Allow Write Access' and set ${config.key_env_var} to it (the syncs "
                "keep their read-only key)."
            )
            if not config.dry_run:
                raise _fail(message + " Nothing was sent.") from None
            context.log.warning(f"dry run goes on, but a real run would stop: {message}")
        except AuthenticationError:
            raise _fail(
                f"{key} is not valid for this host (token/verify refused it); check the key "
                "and its region. Nothing was sent."
            ) from None
        except ApiError as exc:
            raise _fail(f"cannot check {key}: {exc} Nothing was sent.") from None
        try:
            schema = client.get_metadata_schema("account")
        except ApiError as exc:
            raise _fail(f"cannot read Pendo's account metadata schema: {exc}") from None
    try:
        types, warnings = check_schema(mapping, schema)
    except SchemaMismatchError as exc:
        raise _fail(str(exc), fields=", ".join(p.split(":")[0] for p in exc.problems)) from None
    for warning in warnings:
        context.log.warning(warning)
    context.add_output_metadata(
        {
            "mapping": mapping.source,
            "fields": ", ".join(
                f"{f.field} ({f.type} -> {types[f.field]})" for f in mapping.fields
            ),
            "write_access": write_access,
        }
    )
    return Preflight(mapping, types, write_access)


@dg.op
def crm_mapping_preflight(context: dg.OpExecutionContext, config: CrmStepConfig) -> Preflight:
    """Without Pendo among the destinations: check the batch size and the mapping only."""
    try:
        check_batch_size(config.batch_size)
        mapping = load_mapping(config.mapping_file())
    except (ValueError, MappingError) as exc:
        raise _fail(str(exc)) from None
    types = {f.field: MAPPING_TYPES[f.type] for f in mapping.fields}
    context.add_output_metadata({"mapping": mapping.source, "fields": ", ".join(types)})
    return Preflight(mapping, types, write_access=True)


@dg.op(tags={"service": "warehouse"})
def read_crm_export(
    context: dg.OpExecutionContext, config: CrmStepConfig, warehouse: WarehouseResource
) -> CrmExport:
    """Read the CRM export; rows the reader cannot split are kept for the quarantine."""
    path, table = config.source()
    try:
        export = read_crm(path, table=table, warehouse=warehouse)
        empty = check_not_empty(export, config.empty_export)
    except (CrmReadError, ValueError) as exc:  # EmptyExportError is a CrmReadError
        raise _fail(str(exc)) from None
    if empty:
        context.log.warning(empty)
    context.log.info(
        f"read {export.rows_read} rows from {export.source}"
        + (f" ({export.blank_rows} blank rows skipped)" if export.blank_rows else "")
    )
    context.add_output_metadata(
        {
            "source": export.source,
            "rows_read": export.rows_read,
            "blank_rows": export.blank_rows,
            "columns": ", ".join(export.columns),
        }
    )
    return export


@dg.op(tags={"service": "warehouse"})
def validate_crm_rows(
    context: dg.OpExecutionContext,
    preflight: Preflight,
    export: CrmExport,
    warehouse: WarehouseResource,
) -> ValidationResult:
    """Convert every row; set bad rows aside in analytics.writeback_quarantine."""
    try:
        result = validate_rows(export, preflight.mapping, preflight.types)
    except (ColumnsMissingError, AmbiguousDatesError) as exc:
        raise _fail(str(exc)) from None
    if append_quarantine(warehouse, context.run_id, export.source, result.quarantine):
        context.log_event(
            appended(QUARANTINE_TABLE, context.run_id, len(result.quarantine), source=export.source)
        )
    reasons = Counter(_reason_kind(p.reason) for p in result.quarantine)
    if result.quarantine:
        context.log.warning(
            f"set aside {result.quarantined_rows} of {result.rows_read} rows "
            f"({', '.join(f'{n} {k}' for k, n in reasons.most_common())}); "
            f"see {QUARANTINE_TABLE} where run_id = '{context.run_id}'"
        )
        for problem in result.quarantine[:SHOWN_CHANGES]:
            where = f"row {problem.row}" + (f" (line {problem.line})" if problem.line else "")
            context.log.info(
                f"quarantined {where} {problem.account_id or '(no id)'}: {problem.reason}"
            )
    context.add_output_metadata(
        {
            "rows_read": result.rows_read,
            "records": len(result.records),
            "quarantined_rows": result.quarantined_rows,
            "duplicates_collapsed": result.duplicates_collapsed,
            "quarantine_reasons": dict(reasons),
            "quarantine_table": QUARANTINE_TABLE,
        }
    )
    return result


def _reason_kind(reason: str) -> str:
    for marker in (
        "missing account id",
        "conflicting values",
        "failed validation",
        "unparsable date",
        "not a number",
        "not a whole number",
        "not a boolean",
        "fields but the header",
        "empty but required",
    ):
        if marker in reason:
            return marker
    return "other"


def _report_resume(
    context: dg.OpExecutionContext, previous: PreviousRun | None, diff: DiffResult
) -> dict[str, Any]:
    """Say what this run skips or resends of ``previous``, a run that stopped midway."""
    if previous is None:
        return {}
    pending = {c.account_id for c in diff.changes}
    confirmed_now_equal = len(previous.updated - pending)
    confirmed_differ = len(previous.updated & pending)
    left = previous.unconfirmed | previous.not_sent
    resent = len(left & pending)
    landed = len(previous.unconfirmed - pending)
    context.log.info(
        f"resuming after run {previous.run_id}, which stopped midway: {confirmed_now_equal} "
        f"records it confirmed are equal in Pendo and skipped; {resent} it left unconfirmed or "
        f"unsent still differ and are sent now; {landed} of its unconfirmed records had landed"
    )
    if confirmed_differ:
        context.log.warning(
            f"{confirmed_differ} records that run {previous.run_id} confirmed differ in Pendo "
            "again (changed in Pendo since, or not yet visible to reads); they are sent again"
        )
    return {
        "resumed_after_run": previous.run_id,
        "resume_skipped_confirmed": confirmed_now_equal,
        "resume_resent": resent,
    }


@dg.op(pool=POOL, tags={"service": "pendo"})
def push_crm_changes(
    context: dg.OpExecutionContext,
    config: CrmStepConfig,
    preflight: Preflight,
    validated: ValidationResult,
    pendo_write: PendoResource,
    warehouse: WarehouseResource,
) -> PushSummary:
    """Read Pendo's current values of the mapped fields (one aggregation), keep the records
    that differ (all with ``force``) and send them in batches of at most 1,000, each as soon
    as it is full: the read and the diff run in a thread while earlier batches are sent.
    Log every record's outcome."""
    batch_size = check_batch_size(config.batch_size)
    run_id = context.run_id
    fields = list(preflight.types)
    differ = DiffStream(
        validated.records, preflight.types, force=config.force, create=config.create
    )
    record_log = LogWriter(warehouse, run_id, config.dry_run)

    def on_batch(result: BatchResult) -> None:
        text = (
            f"batch {result.number}: {result.size} sent, {result.updated} updated, "
            f"{result.failed} failed, {result.missing} missing in {result.seconds:.2f}s"
        )
        if result.error:
            context.log.error(f"batch {result.number}: {result.size} unconfirmed: {result.error}")
        else:
            context.log.info(text)

    with pendo_write.session(context) as client:
        current = current_values(client.aggregate(current_values_pipeline(fields)), fields)
        with read_ahead(differ.changes(current)) as changes:
            # The read-ahead thread has asked Pendo; while Pendo computes the answer: what
            # an earlier run left (for the report), which also warms the warehouse's
            # connection, and the log's imports, before the first batch's log rows come.
            previous = previous_incomplete_run(warehouse, run_id)
            record_log.prepare()
            summary = push_changes(
                None if config.dry_run else client,
                changes,
                differ.result.missing,
                preflight.types,
                record_log=record_log,
                batch_size=batch_size,
                create=config.create,
                dry_run=config.dry_run,
                on_batch=on_batch,
            )
    diff = differ.result
    record_log.record(context)  # also when the push failed: confirmed batches are logged
    if summary.read_error and not summary.batches:
        raise _fail(
            f"cannot read Pendo's current account values: {summary.read_error} Nothing was sent."
        )
    resume = {} if summary.read_error else _report_resume(context, previous, diff)
    if not summary.read_error:
        context.log.info(
            f"{diff.to_send} of {len(validated.records)} accounts differ from Pendo"
            + (" (force: sending all)" if config.force else "")
            + f"; {diff.unchanged} unchanged; {len(diff.missing)} not in Pendo"
            + ("" if config.create or not diff.missing else " (set create: true to create them)")
        )
    metadata = {**_summary_metadata(summary, diff, config.dry_run), **resume}
    for account, reason in summary.failures[:SHOWN_CHANGES]:
        context.log.warning(f"Pendo refused {account}: {reason}")
    if not summary.ok:
        unread = (
            f", and {differ.not_compared} CRM records were not compared with Pendo (its read "
            "broke before them; nothing was sent for them)"
            if summary.read_error
            else ""
        )
        raise dg.Failure(
            description=(
                f"{summary.error.rstrip('.')}. {summary.updated} records were confirmed; "
                f"{summary.unconfirmed} are unconfirmed and {summary.not_sent} were not "
                f"sent{unread}. Run the job again: it compares with Pendo's live values, so it "
                f"sends only what did not land (see {LOG_TABLE} where run_id = '{run_id}')."
            ),
            metadata=metadata,
        )
    if config.dry_run:
        _show_plan(context, diff)
    context.log.info(
        ("dry run: would send " if config.dry_run else "sent ")
        + f"{diff.to_send} records in {summary.planned_batches} batches; "
        f"{summary.updated} updated, {summary.failed} failed, {summary.missing} missing"
    )
    context.add_output_metadata(metadata)
    return summary


def _summary_metadata(summary: PushSummary, diff: DiffResult, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "accounts_in_pendo": diff.accounts_in_pendo,
        "changed": diff.to_send,
        "unchanged": diff.unchanged,
        "to_create": sum(1 for c in diff.changes if c.action == "create"),
        "field_changes": diff.field_changes,
        "batches": summary.planned_batches,
        "batches_sent": len(summary.batches),
        "updated": summary.updated,
        "failed": summary.failed,
        "missing": summary.missing,
        "unconfirmed": summary.unconfirmed,
        "not_sent": summary.not_sent,
        "log_table": LOG_TABLE,
    }


def _show_plan(context: dg.OpExecutionContext, diff: DiffResult) -> None:
    """A dry run's field-by-field report: in the log and as a table in the metadata."""
    lines = ["| account | action | changes (old → new) |", "|---|---|---|"]
    for change in diff.changes[:SHOWN_CHANGES]:
        text = change.describe()
        context.log.info(f"would {change.action} {change.account_id}: {text}")
        lines.append(f"| {change.account_id} | {change.action} | {text.replace('|', '/')} |")
    if len(diff.changes) > SHOWN_CHANGES:
        lines.append(f"| … | | {len(diff.changes) - SHOWN_CHANGES} more in {LOG_TABLE} |")
    context.add_output_metadata({"plan": dg.MetadataValue.md("\n".join(lines))})


# ----- job and schedule -------------------------------------------------------------------

_STEPS_WITH_CONFIG = (
    "crm_writeback_preflight",
    "read_crm_export",
    "push_crm_changes",
)


def _form(defaults: CrmPushConfig) -> dict[str, dg.Field]:
    """The launchpad form: CrmPushConfig's fields, with ``defaults`` as their defaults."""
    return {
        name: dg.Field(
            info.annotation,
            default_value=getattr(defaults, name),
            description=info.description,
        )
        for name, info in CrmPushConfig.model_fields.items()
    }


def _one_form(
    defaults: CrmPushConfig, key_env_var: str, steps: tuple[str, ...] = _STEPS_WITH_CONFIG
) -> dg.ConfigMapping:
    def to_steps(form: dict[str, Any]) -> dict[str, Any]:
        # One form for the whole job; every op reads the same settings. The batch size is
        # checked here too, so a bad value is refused at launch, before a run starts (a
        # config error is shown as such by the launchpad; any other exception is not).
        try:
            check_batch_size(form["batch_size"])
            check_empty_export_policy(form["empty_export"])
        except ValueError as exc:
            raise dg.DagsterInvalidConfigError(str(exc), [], form) from None
        # Path and table are one choice: a run that names one replaces the component's
        # default of the other, rather than failing as "both".
        if form["crm_path"] and form["crm_table"]:
            if form["crm_table"] == defaults.crm_table != "":
                form = {**form, "crm_table": ""}
            elif form["crm_path"] == defaults.crm_path != "":
                form = {**form, "crm_path": ""}
        step = CrmStepConfig(**form, key_env_var=key_env_var)
        return dg.RunConfig(ops=dict.fromkeys(steps, step)).to_config_dict()

    return dg.ConfigMapping(config_fn=to_steps, config_schema=_form(defaults))


def check_destinations(destinations: Sequence[str]) -> tuple[str, ...]:
    """The destinations in a fixed order; raises ValueError for an unknown or empty list."""
    unknown = sorted(set(destinations) - set(DESTINATIONS))
    if unknown or not destinations:
        raise ValueError(
            f"destinations must be one or more of {', '.join(DESTINATIONS)}, got "
            f"{list(destinations)!r}"
        )
    return tuple(d for d in DESTINATIONS if d in destinations)


def build_crm_push_job(
    defaults: CrmPushConfig | None = None,
    *,
    key_env_var: str = WRITE_KEY_ENV,
    destinations: Sequence[str] = ("pendo",),
    amplitude: AmplitudeTargets | None = None,
) -> dg.JobDefinition:
    """The write-back job; ``defaults`` are its run config's defaults (each run may override
    them in the launchpad), ``key_env_var`` the write key's variable named in its messages,
    ``destinations`` the tools it writes to from its one CRM read (``pendo``,
    ``amplitude``), ``amplitude`` where the fields go in Amplitude (default: every mapped
    field as a group property of the account's group, type ``account``).

    It needs the resources ``warehouse`` (the log and quarantine tables, ``crm_table``
    exports, the users table), ``pendo_write`` (a :class:`PendoResource` with a read-write
    key) for Pendo and ``amplitude`` (an ``AmplitudeResource``) for Amplitude.
    """
    defaults = defaults or CrmPushConfig()
    check_batch_size(defaults.batch_size)
    chosen = check_destinations(destinations)
    pendo, amp = "pendo" in chosen, None
    steps = _STEPS_WITH_CONFIG if pendo else ("crm_mapping_preflight", "read_crm_export")
    if "amplitude" in chosen:
        amp = amplitude_ops(amplitude or AmplitudeTargets(), CrmStepConfig)
        steps += amp.configured
    names = " and ".join(d.capitalize() for d in chosen)

    @dg.job(
        name=JOB_NAME,
        config=_one_form(defaults, key_env_var, steps),
        tags={"service": ",".join(chosen), "direction": "write"},
        description=(
            "Push CRM-derived account metadata (plan, ARR, seats, renewal, owner, health) into "
            f"{names}: read and validate the CRM export once, send only what changed (Pendo: "
            "against its live values; Amplitude: against the last confirmed push) in batches "
            "of at most 1,000. Set dry_run to see the changes without writing."
        ),
    )
    def crm_account_metadata_push() -> None:
        preflight = crm_writeback_preflight() if pendo else crm_mapping_preflight()
        if amp is not None:
            preflight = amp.check(preflight)
        validated = validate_crm_rows(preflight, read_crm_export())
        if pendo:
            push_crm_changes(preflight, validated)
        if amp is not None:
            amp.push(amp.diff(preflight, validated))

    return crm_account_metadata_push


def build_schedule(
    job: dg.JobDefinition,
    *,
    cron: str = DEFAULT_SCHEDULE_CRON,
    timezone: str = DEFAULT_TIMEZONE,
) -> dg.ScheduleDefinition:
    """Run ``job`` on ``cron`` in ``timezone`` (the Pendo subscription's, as the sync's)."""
    return dg.ScheduleDefinition(
        name=f"{job.name}_daily",
        job=job,
        cron_schedule=cron,
        execution_timezone=check_timezone(timezone),
        description="CRM -> Pendo account metadata, daily after the sync.",
    )


# The job and schedule with no settings (every run names its CRM export); the
# CrmToPendo component builds its own from its YAML.
crm_account_metadata_push = build_crm_push_job()
crm_account_metadata_push_schedule = build_schedule(crm_account_metadata_push)
