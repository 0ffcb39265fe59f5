"""The write-back job end to end, over real HTTP against the sandbox's Pendo.

One sandbox (seed 42, scale 25: 2,500 US accounts) serves the module; each test starts
from an empty metadata store, no faults and zeroed counters, with its own warehouse.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from crm_world import company_account, company_accounts, company_row

from analytics_assets.crm_writeback import crm_account_metadata_push
from analytics_assets.crm_writeback.data.make_sample import OUT as SAMPLE
from analytics_assets.crm_writeback.data.make_sample import crm_rows, read_accounts, write_csv
from analytics_assets.crm_writeback.data.make_sample import main as make_sample
from analytics_assets.crm_writeback.report import run_report
from analytics_assets.crm_writeback.tables import LOG_TABLE, QUARANTINE_TABLE
from analytics_assets.pendo.client import PendoClient
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.sandbox.company import PLANS, Company
from analytics_assets.sandbox.config import SandboxConfig
from analytics_assets.sandbox.server import SandboxServer
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

SEED, SCALE = 42, 25
WRITE_KEY, READ_KEY = "sandbox-pendo-us-write-key", "sandbox-pendo-us-read-key"
METADATA_POST = r"^/api/v1/metadata/account/custom/value"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(seed=SEED, scale=SCALE)) as server:
        yield server


@pytest.fixture(autouse=True)
def clean(sandbox: SandboxServer) -> None:
    control = sandbox.urls.control()
    httpx.delete(f"{control}/pendo/store/us").raise_for_status()
    httpx.delete(f"{control}/faults").raise_for_status()
    httpx.post(f"{control}/counters/reset").raise_for_status()


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every one of the sandbox's 2,500 accounts, all valid."""
    path = tmp_path_factory.mktemp("crm") / "crm_2500.csv"
    return write_csv(path, crm_rows(company_accounts(Company(seed=SEED, scale=SCALE))))


def pendo(sandbox: SandboxServer, key: str = WRITE_KEY, **kw: Any) -> PendoResource:
    return PendoResource(
        integration_key=key, base_url=sandbox.urls.pendo(), rate_per_second=200.0, **kw
    )


def run(
    sandbox: SandboxServer,
    warehouse: DuckDBWarehouse,
    resource: PendoResource | None = None,
    **config: Any,
) -> dg.ExecuteInProcessResult:
    config.setdefault("crm_path", str(SAMPLE))
    return crm_account_metadata_push.execute_in_process(
        run_config=config,
        resources={"pendo_write": resource or pendo(sandbox), "warehouse": warehouse},
        raise_on_error=False,
    )


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        event.step_failure_data.error.message
        for event in result.get_step_failure_events()
        if event.step_failure_data.error
    )


def output_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    """The op's output metadata as plain values."""
    for event in result.events_for_node(node):
        if event.is_successful_output:
            return {k: v.value for k, v in event.step_output_data.metadata.items()}
    raise AssertionError(f"{node} has no output")


def posts(sandbox: SandboxServer) -> int:
    return sandbox.state.counters.count(method="POST", path=METADATA_POST)


def records_written(sandbox: SandboxServer) -> int:
    body = httpx.get(f"{sandbox.urls.control()}/pendo/store/us").json()
    return body["records_written"]["account"]


def stored(sandbox: SandboxServer, account_id: str) -> dict[str, Any]:
    response = httpx.get(f"{sandbox.urls.control()}/pendo/metadata/us/account/{account_id}")
    return response.json() if response.status_code == 200 else {}


def pendo_values(sandbox: SandboxServer) -> dict[str, dict[str, Any]]:
    """Every account's custom values, read back through the API with the read key."""
    with PendoClient(READ_KEY, base_url=sandbox.urls.pendo(), rate=200) as client:
        rows = client.aggregate(
            [
                {"source": {"accounts": None}},
                {"select": {"id": "accountId", "custom": "metadata.custom"}},
            ]
        )
        return {row["id"]: row["custom"] or {} for row in rows}


def log_rows(warehouse: DuckDBWarehouse, run_id: str) -> list[dict[str, Any]]:
    return warehouse.query(
        f"SELECT * FROM {LOG_TABLE} WHERE run_id = ? ORDER BY batch, account_id", [run_id]
    ).to_dict("records")


def expected(company: Company, index: int) -> dict[str, Any]:
    """What the CRM row of make_sample says, computed from the company, not the mapping."""
    row = company_row(company, index)
    month, day, year = (None, None, None)
    if "/" in row["Renewal Date"]:
        month, day, year = map(int, row["Renewal Date"].split("/"))
    else:
        year, month, day = map(int, row["Renewal Date"].split("-"))
    from datetime import UTC, datetime

    return {
        "plan": PLANS[int(company.account_plan[index])],
        "arr": float(company.account_arr[index]),
        "seats": int(row["Seats"]),
        "is_paying": row["Paying"] == "Yes",
        "renewal_date": int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000),
        "csm_owner": row["CSM Owner"].strip(),
        "health_score": float(row["Health Score"]),
    }


# ----- the tests ------------------------------------------------------------------------


def test_values_written_are_read_back_identical(sandbox, warehouse) -> None:
    result = run(sandbox, warehouse)
    assert result.success, failure_text(result)
    company = Company(seed=42, scale=1)
    bad = {7, 13, 21, 42}  # set aside by validation (see make_sample)
    values = pendo_values(sandbox)
    for index in range(100):
        account = f"account-{index:06d}"
        if index in bad:
            assert values[account] == {}
            continue
        assert values[account] == expected(company, index), account
        assert stored(sandbox, account)["custom"] == expected(company, index)
    assert "account-900001" not in values  # not in Pendo, create is off
    summary = result.output_for_node("push_crm_changes")
    assert (summary.updated, summary.missing, summary.failed) == (96, 1, 0)
    report = run_report(warehouse, result.run_id)
    assert "96 updated" in report and "Set aside 6 CRM rows" in report


def test_only_changed_records_are_sent(sandbox, warehouse, tmp_path) -> None:
    assert run(sandbox, warehouse).success
    assert posts(sandbox) == 1 and records_written(sandbox) == 96
    rows = list(csv.DictReader(SAMPLE.open()))
    rows[1]["Plan"] = "Enterprise"  # account-000001: pro -> enterprise
    rows[2]["ARR (USD)"] = "$1.00"
    rows[4]["Renewal Date"] = "2030-01-01"
    rows[5]["ARR (USD)"] = rows[5]["ARR (USD)"].replace("$", "").replace(",", "")  # same value
    rows[6]["Renewal Date"] = (
        "2026-04-07" if rows[6]["Renewal Date"] == "04/07/2026" else rows[6]["Renewal Date"]
    )
    changed = write_csv(tmp_path / "changed.csv", rows)

    second = run(sandbox, warehouse, crm_path=str(changed))
    assert second.success, failure_text(second)
    assert posts(sandbox) == 2  # one more request
    assert records_written(sandbox) == 96 + 3  # three more records, not 96
    sent = [r for r in log_rows(warehouse, second.run_id) if r["outcome"] == "updated"]
    assert {r["account_id"]: json.loads(r["values_json"]) for r in sent} == {
        "account-000001": {"plan": "enterprise"},
        "account-000002": {"arr": 1.0},
        "account-000004": {"renewal_date": 1893456000000},
    }
    assert stored(sandbox, "account-000001")["custom"]["arr"] == 43600.0  # untouched

    third = run(sandbox, warehouse, crm_path=str(changed))
    assert third.success and posts(sandbox) == 2  # nothing differs: no write at all


def test_2500_records_go_in_three_batches(sandbox, warehouse, big_export) -> None:
    result = run(sandbox, warehouse, crm_path=str(big_export))
    assert result.success, failure_text(result)
    assert posts(sandbox) == 3
    sizes = warehouse.query(
        f"SELECT batch, count(*) AS n FROM {LOG_TABLE} WHERE run_id = ? GROUP BY batch "
        "ORDER BY batch",
        [result.run_id],
    )
    assert sizes.n.tolist() == [1000, 1000, 500]
    assert records_written(sandbox) == 2500
    assert len(pendo_values(sandbox)) == 2500


class FaultBeforeSecondBatch(PendoResource):
    """The real resource, plus: just before the second batch, stage a fault in the sandbox
    that fails every attempt the client makes at that batch."""

    control_url: str
    fault_count: int

    def get_client(self) -> PendoClient:
        client = super().get_client()
        original = client.update_metadata
        calls = [0]

        def update_metadata(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == 2:
                fault = {
                    "kind": "error",
                    "status": 500,
                    "count": self.fault_count,
                    "path": "/api/v1/metadata",
                }
                httpx.post(f"{self.control_url}/faults", json=fault).raise_for_status()
            return original(*args, **kwargs)

        client.update_metadata = update_metadata  # type: ignore[method-assign]
        return client


def test_failure_in_second_batch_then_rerun_resumes(sandbox, warehouse, big_export) -> None:
    attempts = 3
    faulty = FaultBeforeSecondBatch(
        integration_key=WRITE_KEY,
        base_url=sandbox.urls.pendo(),
        rate_per_second=200.0,
        max_attempts=attempts,
        control_url=sandbox.urls.control(),
        fault_count=attempts,
    )
    first = run(sandbox, warehouse, faulty, crm_path=str(big_export))
    assert not first.success
    message = failure_text(first)
    assert "batch 2 of 3 failed" in message and "Run the job again" in message
    assert sandbox.state.counters.count(method="POST", path=METADATA_POST, status=500) == attempts
    assert records_written(sandbox) == 1000
    outcomes = warehouse.query(
        f"SELECT outcome, count(*) AS n FROM {LOG_TABLE} WHERE run_id = ? GROUP BY outcome",
        [first.run_id],
    )
    assert dict(zip(outcomes.outcome, outcomes.n, strict=True)) == {
        "updated": 1000,
        "unconfirmed": 1000,
        "not_sent": 500,
    }

    second = run(sandbox, warehouse, crm_path=str(big_export))
    assert second.success, failure_text(second)
    assert records_written(sandbox) == 2500  # each record landed exactly once
    sent = warehouse.query(
        f"SELECT account_id, count(*) AS n, count(*) FILTER (outcome = 'updated') AS ok "
        f"FROM {LOG_TABLE} WHERE outcome IN ('updated', 'unconfirmed') GROUP BY account_id"
    )
    assert len(sent) == 2500
    assert sent.ok.eq(1).all()  # confirmed exactly once
    assert sent.n.max() <= 2  # at most one extra send: the unconfirmed attempt
    resumed = output_metadata(second, "push_crm_changes")
    assert resumed["resumed_after_run"] == first.run_id
    assert (resumed["resume_skipped_confirmed"], resumed["resume_resent"]) == (1000, 1500)
    company = Company(seed=SEED, scale=SCALE)
    values = pendo_values(sandbox)
    for index in (0, 999, 1000, 1999, 2000, 2499):
        assert values[company.account_id(index)]["plan"] == PLANS[int(company.account_plan[index])]


def test_quarantine_reasons(sandbox, warehouse) -> None:
    result = run(sandbox, warehouse)
    assert result.success
    rows = warehouse.query(
        f"SELECT row_number, line, account_id, column_name, value, reason FROM {QUARANTINE_TABLE}"
        " WHERE run_id = ? ORDER BY row_number",
        [result.run_id],
    ).to_dict("records")
    found = {(r["account_id"], r["column_name"], r["value"]): r["reason"] for r in rows}
    assert "missing account id" in found[(None, "Account ID", "")]
    assert "unparsable date 'someday'" in found[("account-000007", "Renewal Date", "someday")]
    assert "not a number: 'n/a'" in found[("account-000013", "ARR (USD)", "n/a")]
    assert "not a boolean: 'maybe'" in found[("account-000021", "Paying", "maybe")]
    conflicts = [r for r in rows if r["account_id"] == "account-000042"]
    assert len(conflicts) == 2 and all("conflicting values" in r["reason"] for r in conflicts)
    assert rows[0]["line"] == rows[0]["row_number"] + 1
    missing = [r for r in log_rows(warehouse, result.run_id) if r["outcome"] == "missing"]
    assert [r["account_id"] for r in missing] == ["account-900001"]


def test_create_true_creates_accounts_pendo_lacks(sandbox, warehouse) -> None:
    result = run(sandbox, warehouse, create=True)
    assert result.success, failure_text(result)
    created = stored(sandbox, "account-900001")
    assert created["created"] is True and created["custom"]["plan"] == "free"
    assert result.output_for_node("push_crm_changes").updated == 97


def test_schema_mismatch_stops_before_any_write(sandbox, warehouse, tmp_path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "account_id: {column: Account ID}\n"
        "fields:\n"
        "  plan: {column: Plan, type: text}\n"
        "  tier: {column: Plan, type: text}\n"
        "  seats: {column: Seats, type: boolean}\n"
    )
    result = run(sandbox, warehouse, mapping_path=str(mapping))
    assert not result.success
    message = failure_text(result)
    assert "Pendo has no custom account field 'tier'" in message
    assert (
        "field seats (from 'Seats', line 5): the mapping says boolean but Pendo's field is "
        "integer" in message
    )
    assert posts(sandbox) == 0
    assert sandbox.state.counters.count(method="POST", path="/api/v1/aggregation") == 0


def test_read_only_key_is_refused_before_any_write(sandbox, warehouse) -> None:
    result = run(sandbox, warehouse, pendo(sandbox, READ_KEY))
    assert not result.success
    message = failure_text(result)
    assert "read-only" in message and "PENDO_WRITE_INTEGRATION_KEY" in message
    assert "Nothing was sent" in message
    assert READ_KEY not in message  # never the key itself
    assert posts(sandbox) == 0 and records_written(sandbox) == 0


def test_dry_run_writes_nothing_and_reports_each_change(sandbox, warehouse) -> None:
    assert run(sandbox, warehouse).success
    httpx.post(f"{sandbox.urls.control()}/counters/reset")
    rows = list(csv.DictReader(SAMPLE.open()))
    rows[1]["Plan"] = "Enterprise"
    changed = write_csv(Path(warehouse.database).parent / "changed.csv", rows)
    result = run(sandbox, warehouse, pendo(sandbox, READ_KEY), crm_path=str(changed), dry_run=True)
    assert result.success, failure_text(result)
    assert posts(sandbox) == 0 and records_written(sandbox) == 96
    assert stored(sandbox, "account-000001")["custom"]["plan"] == "pro"
    plan = [r for r in log_rows(warehouse, result.run_id) if r["outcome"] == "dry_run"]
    assert [(r["account_id"], r["reason"]) for r in plan] == [
        ("account-000001", "plan: 'pro' → 'enterprise'"),
    ]
    assert all(r["dry_run"] for r in log_rows(warehouse, result.run_id))
    shown = output_metadata(result, "push_crm_changes")
    assert shown["dry_run"] is True and shown["changed"] == 1 and shown["updated"] == 0
    assert "| account-000001 | update | plan: 'pro' → 'enterprise' |" in shown["plan"]


def test_unmapped_fields_are_never_touched(sandbox, warehouse, tmp_path) -> None:
    assert run(sandbox, warehouse).success
    mapping = tmp_path / "plan_only.yaml"
    mapping.write_text(
        "account_id: {column: Account ID}\n"
        "fields:\n  plan: {column: Plan, type: text, transforms: [lower]}\n"
    )
    rows = list(csv.DictReader(SAMPLE.open()))
    rows[1]["Plan"], rows[1]["ARR (USD)"], rows[1]["Seats"] = "Enterprise", "$1.00", "999"
    changed = write_csv(tmp_path / "changed.csv", rows)
    result = run(sandbox, warehouse, crm_path=str(changed), mapping_path=str(mapping), force=True)
    assert result.success, failure_text(result)
    after = stored(sandbox, "account-000001")["custom"]
    assert after["plan"] == "enterprise"
    assert after["arr"] == 43600.0 and after["seats"] == 25  # not in this mapping: kept


def test_batch_size_above_1000_is_refused_at_launch(sandbox, warehouse) -> None:
    with pytest.raises(Exception, match="above Pendo's limit of 1000"):
        crm_account_metadata_push.execute_in_process(
            run_config={"crm_path": str(SAMPLE), "batch_size": 1001},
            resources={"pendo_write": pendo(sandbox), "warehouse": warehouse},
        )
    assert sandbox.state.counters.count() == 0


def test_crm_export_from_a_warehouse_table(sandbox, warehouse) -> None:
    import pandas as pd

    frame = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    warehouse.replace_table("crm.accounts", frame)
    result = run(sandbox, warehouse, crm_path="", crm_table="crm.accounts", dry_run=True)
    assert result.success, failure_text(result)
    shown = output_metadata(result, "push_crm_changes")
    assert (shown["changed"], shown["missing"]) == (96, 1)
    assert posts(sandbox) == 0


def test_an_invalid_key_is_refused_before_anything_is_read(sandbox, warehouse) -> None:
    result = run(sandbox, warehouse, pendo(sandbox, "not-a-pendo-key"))
    assert not result.success
    message = failure_text(result)
    assert "not valid for this host" in message and "PENDO_WRITE_INTEGRATION_KEY" in message
    assert "not-a-pendo-key" not in message
    assert posts(sandbox) == 0
    assert sandbox.state.counters.count(method="POST", path="/api/v1/aggregation") == 0


def test_the_sample_generator_reads_accounts_through_pendo(sandbox, warehouse, tmp_path) -> None:
    """make_sample knows no sandbox: it reads any Pendo; here, the sandbox's."""
    company = Company(seed=SEED, scale=SCALE)
    with PendoClient(READ_KEY, base_url=sandbox.urls.pendo(), rate=200) as client:
        accounts = read_accounts(client)
    assert [a.id for a in accounts] == [company.account_id(i) for i in range(company.n_accounts)]
    for index in (0, 1, 999, 2499):  # what Pendo knows agrees with the world
        facts = company_account(company, index)
        got = accounts[index]
        assert (got.name, got.plan, got.start) == (facts.name, facts.plan, facts.start)

    key = tmp_path / "key.txt"
    key.write_text(READ_KEY + "\n")
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    for out in (first, second):
        args = ["--base-url", sandbox.urls.pendo(), "--key-file", str(key), "--out", str(out)]
        assert make_sample(args) == 0
    assert first.read_bytes() == second.read_bytes()  # same subscription and seed: same file
    assert READ_KEY not in first.read_text()

    result = run(sandbox, warehouse, crm_path=str(first), dry_run=True)
    assert result.success, failure_text(result)
    shown = output_metadata(result, "push_crm_changes")
    # 2,500 accounts less the 4 set aside (rows 7, 13, 21, 42); the unknown one is missing.
    assert (shown["changed"], shown["missing"]) == (2496, 1)
