"""The write-back's log and quarantine rows as Arrow: every type and awkward text kept,
and no pandas imported on the way (it would cost the push step 0.3-0.5 s mid-push)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from analytics_assets.crm_writeback.tables import LOG_COLUMNS, arrow_rows


def test_every_type_and_awkward_text_survive() -> None:
    at = datetime(2026, 12, 7, 18, 45, 2, 276471, tzinfo=UTC)
    awkward = 'line one\nline "two"\t\\ café 😀'
    rows = [
        ("r1", 3, "a1", '{"plan": "pro"}', "{}", "updated", awkward, False, at),
        ("r1", None, "a2", "{}", "{}", "not_sent", None, True, at),
    ]
    table = arrow_rows(LOG_COLUMNS, rows)
    assert table.column_names == [name for name, _ in LOG_COLUMNS]
    assert [tuple(r.values()) for r in table.to_pylist()] == rows


def test_a_value_of_the_wrong_type_is_refused_not_coerced_silently() -> None:
    with pytest.raises(pa.ArrowInvalid):
        arrow_rows(LOG_COLUMNS, [("r1", "three", "a1", "{}", "{}", "updated", None, False, None)])


PROBE = """
import json, sys, tempfile
from analytics_assets.crm_writeback.tables import LogRow, append_log
from analytics_assets.warehouse.duckdb import DuckDBWarehouse
with tempfile.TemporaryDirectory() as tmp:
    warehouse = DuckDBWarehouse(database=tmp + "/w.duckdb")
    append_log(warehouse, "r1", [LogRow(1, "a1", "{}", "{}", "updated")], False)
    n = warehouse.records("SELECT count(*) AS n FROM analytics.writeback_log")[0]["n"]
print(json.dumps({"rows": n, "pandas": "pandas" in sys.modules}))
"""


def test_appending_to_the_log_imports_no_pandas() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"rows": 1, "pandas": False}
