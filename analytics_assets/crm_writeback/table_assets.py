"""The write-back's warehouse tables as assets: the log of each destination and the
quarantine.

No asset computes them: the write-back job appends to them as it works. Declaring them
(``AssetSpec``) puts them in the lineage graph and the catalog, with their columns, and
each run that appends rows records a materialization of the table, so the UI shows when
the log or the quarantine last changed and which run changed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from analytics_assets.crm_writeback.tables import (
    AMPLITUDE_LOG_TABLE,
    LOG_COLUMNS,
    LOG_DESCRIPTIONS,
    LOG_TABLE,
    QUARANTINE_COLUMNS,
    QUARANTINE_DESCRIPTIONS,
    QUARANTINE_TABLE,
    RECORD_COLUMNS,
    LogRow,
    Warehouse,
    append_log,
)
from analytics_assets.naming import table_asset_key
from analytics_assets.warehouse.asset_kinds import WAREHOUSE_KIND
from analytics_assets.warehouse.types import dagster_type

GROUP = "crm_writeback"
OWNERS = ["team:data-engineering", "team:customer-success"]

_DESCRIPTIONS = {
    LOG_TABLE: (
        "One row per account per write-back run to Pendo: the batch, the values sent, what "
        "Pendo held before (to undo by hand), the outcome and its reason. Appended after "
        "each batch by the CRM write-back job."
    ),
    AMPLITUDE_LOG_TABLE: (
        "One row per group or user per write-back run to Amplitude: the values sent, the "
        "insert_id, the outcome. Amplitude cannot be read back, so its next run diffs "
        "against this log."
    ),
    QUARANTINE_TABLE: (
        "One row per problem of a CRM row the write-back set aside (bad value, missing "
        "required cell, unknown account), with the row and line of the export."
    ),
}
_COLUMNS = {
    LOG_TABLE: LOG_COLUMNS,
    AMPLITUDE_LOG_TABLE: LOG_COLUMNS + RECORD_COLUMNS,
    QUARANTINE_TABLE: QUARANTINE_COLUMNS,
}
_COLUMN_DESCRIPTIONS = {
    LOG_TABLE: LOG_DESCRIPTIONS,
    AMPLITUDE_LOG_TABLE: LOG_DESCRIPTIONS,
    QUARANTINE_TABLE: QUARANTINE_DESCRIPTIONS,
}


def writeback_tables(destinations: Sequence[str]) -> list[str]:
    """The tables a write-back to ``destinations`` appends to."""
    tables = [LOG_TABLE] if "pendo" in destinations else []
    if "amplitude" in destinations:
        tables.append(AMPLITUDE_LOG_TABLE)
    return [*tables, QUARANTINE_TABLE]


def writeback_table_specs(destinations: Sequence[str]) -> list[dg.AssetSpec]:
    """One asset per table of ``writeback_tables``."""
    return [
        dg.AssetSpec(
            table_asset_key(table),
            description=_DESCRIPTIONS[table],
            group_name=GROUP,
            kinds={"table", WAREHOUSE_KIND},
            owners=OWNERS,
            metadata={
                "dagster/table_name": table,
                "dagster/column_schema": dg.TableSchema(
                    columns=[
                        dg.TableColumn(
                            name,
                            dagster_type(kind),
                            description=_COLUMN_DESCRIPTIONS[table].get(name),
                        )
                        for name, kind in _COLUMNS[table]
                    ]
                ),
            },
        )
        for table in writeback_tables(destinations)
    ]


def appended(table: str, run_id: str, rows: int, **metadata: object) -> dg.AssetMaterialization:
    """The materialization a step records after appending ``rows`` rows to ``table``."""
    return dg.AssetMaterialization(
        asset_key=table_asset_key(table),
        description=f"{rows} rows appended by run {run_id[:8]}",
        metadata={
            "dagster/table_name": table,
            "rows_appended": rows,
            "run_id": run_id,
            **metadata,
        },
    )


class LogWriter:
    """The ``record_log`` of a push: appends each batch's rows to a write-back log and,
    once the push is over (failed or not), records one materialization of that log with
    the rows the run added."""

    def __init__(
        self, warehouse: Warehouse, run_id: str, dry_run: bool, table: str = LOG_TABLE
    ) -> None:
        self.warehouse, self.run_id, self.dry_run, self.table = warehouse, run_id, dry_run, table
        self.rows = 0

    def prepare(self) -> None:
        """Import what the first append needs (pyarrow and its JSON reader, ~0.2 s), now: a
        push calls this while it waits for its reference values (Pendo computing its
        answer), so the first append does not hold the second batch back."""
        import pyarrow.json  # noqa: F401

    def __call__(self, rows: Sequence[LogRow]) -> None:
        self.rows += append_log(self.warehouse, self.run_id, rows, self.dry_run, table=self.table)

    def record(self, context: Any) -> None:
        """Log the materialization on ``context`` (an op's) if any row was appended."""
        if self.rows:
            context.log_event(appended(self.table, self.run_id, self.rows, dry_run=self.dry_run))
