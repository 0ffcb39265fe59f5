"""The Amplitude steps of the write-back job: check the targets, diff against the log, push.

They take the same validated CRM records as Pendo's steps (one CRM read, one quarantine),
and are built per job by :func:`amplitude_ops` with the component's ``amplitude`` targets.
The push uses the ``amplitude`` resource's API key (ingestion needs no secret) and the
Amplitude API pool.
"""

# No `from __future__ import annotations` here: Dagster reads the ops' annotations
# (config class, resources) at decoration time and cannot resolve them from strings.
from dataclasses import dataclass
from typing import Any

import dagster as dg

from analytics_assets.amplitude.identify import IdentifyClient
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.crm_writeback.amplitude_diff import (
    AmplitudeDiff,
    account_users,
    diff_for_amplitude,
    read_amplitude_state,
)
from analytics_assets.crm_writeback.amplitude_push import push_to_amplitude
from analytics_assets.crm_writeback.amplitude_targets import AmplitudeTargets, TargetsError
from analytics_assets.crm_writeback.push import BatchResult, PushSummary, check_batch_size
from analytics_assets.crm_writeback.table_assets import LogWriter
from analytics_assets.crm_writeback.tables import AMPLITUDE_LOG_TABLE
from analytics_assets.crm_writeback.validate import ValidationResult
from analytics_assets.http.errors import AuthenticationError
from analytics_assets.warehouse.base import WarehouseResource

__all__ = ["AMPLITUDE_POOL", "AmplitudeOps", "amplitude_ops", "identify_client"]

AMPLITUDE_POOL = "amplitude_api"
SHOWN_CHANGES = 50


def identify_client(resource: AmplitudeResource) -> IdentifyClient:
    """An identify client with the resource's key, region, host, timeouts and retries."""
    return IdentifyClient(
        resource.api_key,
        region=resource.region,
        ingestion_url=resource.ingestion_url or None,
        connect_timeout=resource.connect_timeout,
        max_attempts=resource.max_attempts,
        max_retry_time=resource.max_retry_time,
    )


@dataclass(frozen=True)
class AmplitudeOps:
    check: dg.OpDefinition
    diff: dg.OpDefinition
    push: dg.OpDefinition

    @property
    def configured(self) -> tuple[str, ...]:
        """The steps that read the job's form."""
        return (self.diff.name, self.push.name)


def _fail(message: str, **metadata: Any) -> dg.Failure:
    return dg.Failure(description=message, metadata=metadata or None)


def amplitude_ops(targets: AmplitudeTargets, config_class: type[dg.Config]) -> AmplitudeOps:
    """The three Amplitude steps, bound to ``targets``; ``config_class`` is the job's step
    config (``job.CrmStepConfig``: batch_size, force, dry_run)."""

    @dg.op(name="check_amplitude_targets", tags={"service": "warehouse"})
    def check_amplitude_targets(
        context: dg.OpExecutionContext, preflight: Any, warehouse: WarehouseResource
    ) -> Any:
        """Before anything is written anywhere: the targets name mapped fields, and the
        users table exists when user properties are mapped. Passes the preflight on."""
        try:
            targets.check(preflight.mapping)
        except TargetsError as exc:
            raise _fail(str(exc)) from None
        if targets.user_properties and not warehouse.table_exists(targets.users_table):
            raise _fail(
                f"user properties are mapped (amplitude.user_properties) but the warehouse has "
                f"no table {targets.users_table} listing each user's account: materialize it "
                "first (the Pendo sync's visitors asset) or set amplitude.users_table; nothing "
                "was written"
            )
        context.add_output_metadata({"amplitude_targets": str(targets.describe())})
        return preflight

    @dg.op(name="diff_crm_against_amplitude", tags={"service": "warehouse"})
    def diff_crm_against_amplitude(
        context: dg.OpExecutionContext,
        config: config_class,  # type: ignore[valid-type]
        preflight: Any,
        validated: ValidationResult,
        warehouse: WarehouseResource,
    ) -> AmplitudeDiff:
        """Keep the properties that differ from Amplitude's last confirmed push, or whose
        last attempt is unconfirmed (all with ``force``)."""
        users: dict[str, list[str]] = {}
        if targets.user_properties:
            try:
                users = account_users(warehouse, targets, (r.account_id for r in validated.records))
            except LookupError as exc:
                raise _fail(str(exc)) from None
        state = read_amplitude_state(warehouse)
        diff = diff_for_amplitude(
            validated.records,
            mapping=preflight.mapping,
            types=preflight.types,
            targets=targets,
            state=state,
            users=users,
            force=config.force,
        )
        groups, people = diff.count("group"), diff.count("user")
        resent = f"; {diff.resent} left unconfirmed by an earlier run are sent again"
        context.log.info(
            f"Amplitude: {groups} groups and {people} users to update"
            + (" (force: sending all)" if config.force else "")
            + f"; {diff.unchanged['group']} groups and {diff.unchanged['user']} users unchanged "
            "since the last confirmed push" + (resent if diff.resent else "")
        )
        if diff.accounts_without_users:
            context.log.warning(
                f"{diff.accounts_without_users} accounts have no users in {targets.users_table}: "
                "their user properties are not set"
            )
        context.add_output_metadata(
            {
                "groups_changed": groups,
                "users_changed": people,
                "groups_unchanged": diff.unchanged["group"],
                "users_unchanged": diff.unchanged["user"],
                "resent_unconfirmed": diff.resent,
                "accounts_without_users": diff.accounts_without_users,
                "property_changes": diff.field_changes,
                "reference": AMPLITUDE_LOG_TABLE,
            }
        )
        return diff

    @dg.op(name="push_crm_to_amplitude", pool=AMPLITUDE_POOL, tags={"service": "amplitude"})
    def push_crm_to_amplitude(
        context: dg.OpExecutionContext,
        config: config_class,  # type: ignore[valid-type]
        diff: AmplitudeDiff,
        amplitude: AmplitudeResource,
        warehouse: WarehouseResource,
    ) -> PushSummary:
        """Send group then user properties in requests of at most 1,000 records; log each."""
        batch_size = check_batch_size(config.batch_size)
        run_id = context.run_id

        record_log = LogWriter(warehouse, run_id, config.dry_run, AMPLITUDE_LOG_TABLE)

        def on_batch(result: BatchResult) -> None:
            if result.error:
                context.log.error(
                    f"batch {result.number}: {result.size} not confirmed: {result.error}"
                )
            else:
                context.log.info(
                    f"batch {result.number}: {result.size} confirmed in {result.seconds:.2f}s"
                )  # fmt: skip

        if config.dry_run:
            summary = push_to_amplitude(
                None, diff.changes, record_log=record_log, batch_size=batch_size, dry_run=True
            )
            _show_plan(context, diff)
        else:
            try:
                with identify_client(amplitude) as client:
                    summary = push_to_amplitude(
                        client,
                        diff.changes,
                        record_log=record_log,
                        batch_size=batch_size,
                        on_batch=on_batch,
                    )
            except AuthenticationError as exc:
                record_log.record(context)
                raise _fail(
                    f"Amplitude refused the API key of the write-back: {exc}. Nothing more was "
                    f"sent; see {AMPLITUDE_LOG_TABLE} where run_id = '{run_id}'."
                ) from None
        # Also when the push failed: the rows of confirmed requests are there.
        record_log.record(context)
        metadata = {
            "dry_run": config.dry_run,
            "changed": diff.to_send,
            "batches": summary.planned_batches,
            "batches_sent": len(summary.batches),
            "updated": summary.updated,
            "failed": summary.failed,
            "unconfirmed": summary.unconfirmed,
            "not_sent": summary.not_sent,
            "log_table": AMPLITUDE_LOG_TABLE,
        }
        if not summary.ok:
            raise dg.Failure(
                description=(
                    f"{summary.error.rstrip('.')}. {summary.updated} records were confirmed; "
                    f"{summary.unconfirmed} are unconfirmed, {summary.failed} refused and "
                    f"{summary.not_sent} were not sent. Run the job again: it sends what "
                    f"Amplitude did not confirm, with the same insert_ids (see "
                    f"{AMPLITUDE_LOG_TABLE} where run_id = '{run_id}')."
                ),
                metadata=metadata,
            )
        context.log.info(
            ("dry run: would send " if config.dry_run else "sent ")
            + f"{diff.to_send} records to Amplitude in {summary.planned_batches} requests; "
            f"{summary.updated} confirmed"
        )
        context.add_output_metadata(metadata)
        return summary

    return AmplitudeOps(check_amplitude_targets, diff_crm_against_amplitude, push_crm_to_amplitude)


def _show_plan(context: dg.OpExecutionContext, diff: AmplitudeDiff) -> None:
    """A dry run's field-by-field report: in the log and as a table in the metadata."""
    lines = ["| record | id | changes (old → new) |", "|---|---|---|"]
    for change in diff.changes[:SHOWN_CHANGES]:
        text = change.describe()
        context.log.info(f"would set {change.kind} {change.record_id}: {text}")
        lines.append(f"| {change.kind} | {change.record_id} | {text.replace('|', '/')} |")
    if len(diff.changes) > SHOWN_CHANGES:
        lines.append(f"| … | | {len(diff.changes) - SHOWN_CHANGES} more in {AMPLITUDE_LOG_TABLE} |")
    context.add_output_metadata({"plan": dg.MetadataValue.md("\n".join(lines))})
