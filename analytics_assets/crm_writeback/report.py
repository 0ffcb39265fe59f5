"""A short text report of one write-back run, from its tables (for the demo and CLI)."""

from __future__ import annotations

from analytics_assets.crm_writeback.tables import (
    AMPLITUDE_LOG_TABLE,
    LOG_TABLE,
    QUARANTINE_TABLE,
    Warehouse,
)

__all__ = ["destination_changes", "run_report", "set_aside"]

# Outcomes in the order a summary names them; the verb a dry run's rows get.
_ORDER = ("updated", "dry_run", "failed", "unconfirmed", "not_sent", "missing")
_WORDS = {"dry_run": "to change (dry run)", "missing": "missing (not in Pendo)"}


def destination_changes(warehouse: Warehouse, run_id: str) -> dict[str, str]:
    """What one run changed in each tool, one line each: ``{"pendo": "96 updated, 1 missing
    (not in Pendo)", "amplitude": "97 groups and 850 users updated"}``. Only the
    destinations the run logged anything for (or, for none, said nothing differed) appear."""
    out: dict[str, str] = {}
    if warehouse.table_exists(LOG_TABLE):
        found = warehouse.records(
            f"SELECT outcome, count(*) AS n FROM {LOG_TABLE} WHERE run_id = ? GROUP BY outcome",
            [run_id],
        )
        counts = {str(r["outcome"]): int(r["n"]) for r in found}
        out["pendo"] = (
            ", ".join(f"{counts[o]} {_WORDS.get(o, o)}" for o in _ORDER if o in counts)
            or "nothing differed from the CRM"
        )
    if warehouse.table_exists(AMPLITUDE_LOG_TABLE):
        found = warehouse.records(
            f"SELECT outcome, record_kind, count(*) AS n FROM {AMPLITUDE_LOG_TABLE} "
            "WHERE run_id = ? GROUP BY outcome, record_kind",
            [run_id],
        )
        by_kind: dict[str, dict[str, int]] = {}
        for r in found:
            by_kind.setdefault(str(r["outcome"]), {})[str(r["record_kind"])] = int(r["n"])
        parts = []
        for outcome in (o for o in _ORDER if o in by_kind):
            kinds = by_kind[outcome]
            named = " and ".join(
                f"{kinds[k]} {k}{'s' if kinds[k] != 1 else ''}"
                for k in ("group", "user")
                if k in kinds
            )
            parts.append(f"{named} {_WORDS.get(outcome, outcome)}")
        out["amplitude"] = ", ".join(parts) or "nothing differed from the last confirmed push"
    return out


def set_aside(warehouse: Warehouse, run_id: str) -> int:
    """How many CRM rows the run set aside (quarantined), whatever the destinations."""
    if not warehouse.table_exists(QUARANTINE_TABLE):
        return 0
    found = warehouse.records(
        f"SELECT count(DISTINCT row_number) AS n FROM {QUARANTINE_TABLE} WHERE run_id = ?",
        [run_id],
    )
    return int(found[0]["n"]) if found else 0


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
