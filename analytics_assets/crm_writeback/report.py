"""A short text report of one write-back run, from its two tables (for the demo and CLI)."""

from __future__ import annotations

from analytics_assets.crm_writeback.tables import LOG_TABLE, QUARANTINE_TABLE, Warehouse

__all__ = ["run_report"]


def run_report(warehouse: Warehouse, run_id: str, limit: int = 10) -> str:
    """What the run changed (or would have, in a dry run) and what it set aside."""
    lines: list[str] = []
    if warehouse.table_exists(LOG_TABLE):
        counts = warehouse.query(
            f"SELECT outcome, count(*) AS n, count(DISTINCT batch) AS batches "
            f"FROM {LOG_TABLE} WHERE run_id = ? GROUP BY outcome ORDER BY outcome",
            [run_id],
        )
        if counts.empty:
            lines.append("Pendo: nothing differed from the CRM; no record was sent.")
        else:
            parts = ", ".join(f"{int(r.n)} {r.outcome}" for r in counts.itertuples())
            lines.append(f"Pendo write-back: {parts}.")
        changes = warehouse.query(
            f"SELECT account_id, outcome, reason FROM {LOG_TABLE} WHERE run_id = ? "
            "AND outcome IN ('updated', 'dry_run', 'failed', 'missing', 'unconfirmed') "
            # Problems first: what failed or is missing matters more than what went well.
            "ORDER BY CASE outcome WHEN 'failed' THEN 0 WHEN 'unconfirmed' THEN 1 "
            "WHEN 'missing' THEN 2 ELSE 3 END, batch NULLS LAST, account_id LIMIT ?",
            [run_id, limit],
        )
        for row in changes.itertuples():
            verb = {"dry_run": "would change"}.get(row.outcome, row.outcome)
            lines.append(f"  {row.account_id} {verb}: {row.reason or ''}".rstrip(": "))
    if warehouse.table_exists(QUARANTINE_TABLE):
        aside = warehouse.query(
            f"SELECT row_number, account_id, column_name, value, reason FROM {QUARANTINE_TABLE} "
            "WHERE run_id = ? ORDER BY row_number",
            [run_id],
        )
        if not aside.empty:
            rows = aside.row_number.nunique()
            lines.append(f"Set aside {rows} CRM rows ({QUARANTINE_TABLE}):")
            for row in aside.head(limit).itertuples():
                lines.append(
                    f"  row {row.row_number} {row.account_id or '(no account id)'}: {row.reason}"
                )
    return "\n".join(lines)
