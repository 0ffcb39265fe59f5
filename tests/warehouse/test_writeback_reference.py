"""The change-alert sensors' write-back reference (alerts/reference.py) reads the newest
confirmed value of each field per account out of the write-back log. It runs inside the
warehouse, so it must give the same answer on every backend."""

from __future__ import annotations

import json

from analytics_assets.alerts.reference import writeback_reference
from analytics_assets.crm_writeback.tables import LOG_TABLE, LogRow, append_log
from analytics_assets.warehouse.base import WarehouseResource


def _log(warehouse: WarehouseResource, account: str, values: dict, outcome: str, dry=False):
    row = LogRow(1, account, json.dumps(values, ensure_ascii=False), "{}", outcome)
    append_log(warehouse, "run", [row], dry_run=dry)  # written_at: now, so order is order


def test_the_newest_confirmed_value_of_each_field_wins_on_every_backend(
    warehouse: WarehouseResource,
) -> None:
    _log(warehouse, "a1", {"plan": "basic", "arr": 100}, "updated")
    _log(warehouse, "a2", {"owner": 'Zoë "Z" Ng', "renewal": 1767225600000}, "updated")
    # A newer plan; arr is absent from this write, so the older arr still stands.
    _log(warehouse, "a1", {"plan": "pro"}, "updated")
    # Newer still, but never confirmed, or only a dry run: neither counts.
    _log(warehouse, "a1", {"plan": "enterprise"}, "unconfirmed")
    _log(warehouse, "a1", {"arr": 999}, "updated", dry=True)
    _log(warehouse, "a3", {"plan": "basic"}, "failed")

    reference = writeback_reference(warehouse, LOG_TABLE, ["plan", "arr", "owner", "renewal"])

    assert reference == {
        "a1": {"plan": "pro", "arr": 100},
        "a2": {"owner": 'Zoë "Z" Ng', "renewal": 1767225600000},
    }


def test_no_log_table_means_no_reference(warehouse: WarehouseResource) -> None:
    assert writeback_reference(warehouse, LOG_TABLE, ["plan"]) is None
