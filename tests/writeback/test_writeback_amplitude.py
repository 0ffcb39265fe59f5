"""The write-back to Amplitude end to end, over real HTTP against the sandbox.

Each test gets its own sandbox (seed 42, scale 1: the 100 accounts of the shipped sample)
and warehouse, so Amplitude's insert_id memory starts empty. Values are read back through
Amplitude's own APIs: the Export API ($groupidentify / $identify rows, each group's
properties; no export lag) and the User Profile API (each user's properties).
"""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
from crm_world import company_row

from analytics_assets.amplitude.client import AmplitudeClient
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.crm_writeback.amplitude_targets import AmplitudeTargets
from analytics_assets.crm_writeback.data.make_sample import OUT as SAMPLE
from analytics_assets.crm_writeback.data.make_sample import write_csv
from analytics_assets.crm_writeback.job import build_crm_push_job
from analytics_assets.crm_writeback.report import destination_changes
from analytics_assets.crm_writeback.tables import AMPLITUDE_LOG_TABLE, LOG_TABLE, QUARANTINE_TABLE
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.sandbox.company import PLANS, Company
from analytics_assets.sandbox.config import AmplitudeLimits, SandboxConfig
from analytics_assets.sandbox.server import SandboxServer
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

SEED, SCALE = 42, 1
BAD = {7, 13, 21, 42}  # the sample's rows set aside by validation (see make_sample)
ATTEMPTS = 3
TARGETS = AmplitudeTargets(user_properties={"plan": "account_plan", "csm_owner": "csm"})


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    # No export lag: what was ingested is in the export at once (the default waits 2 h).
    limits = AmplitudeLimits(export_lag_seconds=0.0)
    with SandboxServer(SandboxConfig(seed=SEED, scale=SCALE, amplitude_limits=limits)) as server:
        yield server


@pytest.fixture
def company() -> Company:
    return Company(seed=SEED, scale=SCALE, region="us")


@pytest.fixture
def warehouse(tmp_path: Path, company: Company) -> DuckDBWarehouse:
    """A warehouse holding the users table the Pendo sync would have written."""
    import pandas as pd

    warehouse = DuckDBWarehouse(database=str(tmp_path / "warehouse.duckdb"))
    visitors = pd.DataFrame(
        {
            "visitor_id": [company.visitor_id(v) for v in range(company.n_visitors)],
            "account_id": [
                company.account_id(int(a)) for a in company.visitor_account[: company.n_visitors]
            ],
        }
    )
    warehouse.replace_table("pendo.visitors", visitors)
    return warehouse


def amplitude(sandbox: SandboxServer, api_key: str | None = None) -> AmplitudeResource:
    keys = sandbox.config.amplitude_keys["us"]
    url = sandbox.urls.amplitude()
    return AmplitudeResource(
        api_key=api_key or keys.api_key,
        secret_key=keys.secret_key,
        base_url=url,
        ingestion_url=url,
        profile_url=url,
        budget_ledger="memory",
        max_attempts=ATTEMPTS,
    )


def run(
    sandbox: SandboxServer,
    warehouse: DuckDBWarehouse,
    targets: AmplitudeTargets = TARGETS,
    destinations: tuple[str, ...] = ("amplitude",),
    **config: Any,
) -> dg.ExecuteInProcessResult:
    config.setdefault("crm_path", str(SAMPLE))
    job = build_crm_push_job(destinations=destinations, amplitude=targets)
    resources: dict[str, Any] = {"amplitude": amplitude(sandbox), "warehouse": warehouse}
    if "pendo" in destinations:
        resources["pendo_write"] = PendoResource(
            integration_key=sandbox.config.pendo_keys["us"].write,
            base_url=sandbox.urls.pendo(),
            rate_per_second=200.0,
        )
    return job.execute_in_process(run_config=config, resources=resources, raise_on_error=False)


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(
        event.step_failure_data.error.message
        for event in result.get_step_failure_events()
        if event.step_failure_data.error
    )


def fault(sandbox: SandboxServer, **rule: Any) -> None:
    httpx.post(f"{sandbox.urls.control()}/faults", json=rule).raise_for_status()


def posts(sandbox: SandboxServer, path: str, status: int | None = None) -> int:
    return sandbox.state.counters.count(method="POST", path=f"^{path}$", status=status)


def exported(sandbox: SandboxServer, tmp: Path) -> list[dict[str, Any]]:
    """Every $groupidentify and $identify row the Export API holds for the last hours."""
    keys = sandbox.config.amplitude_keys["us"]
    now = datetime.fromtimestamp(sandbox.state.now_ms() / 1000, tz=UTC).replace(
        minute=0, second=0, microsecond=0, tzinfo=None
    )
    with AmplitudeClient(
        keys.api_key, keys.secret_key, base_url=sandbox.urls.amplitude()
    ) as client:
        result = client.export(now - timedelta(hours=2), now, tmp)
    rows = []
    for path in result.files:
        with gzip.open(path, "rt") as lines:
            for line in lines:
                row = json.loads(line)
                if row["event_type"] in ("$groupidentify", "$identify"):
                    rows.append(row)
    return rows


def group_rows(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """account id -> the group properties shown by each of its $groupidentify rows."""
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["event_type"] == "$groupidentify":
            for account, props in row["group_properties"]["account"].items():
                out.setdefault(account, []).append(props)
    return out


def profile(sandbox: SandboxServer, user_id: str) -> dict[str, Any]:
    keys = sandbox.config.amplitude_keys["us"]
    url = sandbox.urls.amplitude()
    with AmplitudeClient(keys.api_key, keys.secret_key, base_url=url, profile_url=url) as client:
        return client.user_profile(user_id=user_id, get_amp_props=True)["amp_props"]


def expected_group(company: Company, index: int) -> dict[str, Any]:
    """What the sample's CRM row says, as Amplitude should hold it (dates as ISO text)."""
    row = company_row(company, index)
    text = row["Renewal Date"].strip()
    if "/" in text:
        month, day, year = map(int, text.split("/"))
        text = f"{year:04d}-{month:02d}-{day:02d}"
    return {
        "plan": PLANS[int(company.account_plan[index])],
        "arr": float(company.account_arr[index]),
        "seats": float(row["Seats"]),
        "is_paying": row["Paying"] == "Yes",
        "renewal_date": text,
        "csm_owner": row["CSM Owner"].strip(),
        "health_score": float(row["Health Score"]),
    }


def users_of(company: Company, index: int) -> list[str]:
    return [
        company.visitor_id(v)
        for v in range(company.n_visitors)
        if int(company.visitor_account[v]) == index
    ]


def log(warehouse: DuckDBWarehouse, run_id: str | None = None) -> list[dict[str, Any]]:
    where = "WHERE run_id = ?" if run_id else ""
    return warehouse.query(
        f"SELECT * FROM {AMPLITUDE_LOG_TABLE} {where} ORDER BY written_at, batch, record_id",
        [run_id] if run_id else None,
    ).to_dict("records")


def outcomes(warehouse: DuckDBWarehouse, run_id: str) -> dict[tuple[str, str], int]:
    return Counter((r["record_kind"], r["outcome"]) for r in log(warehouse, run_id))


def valid_users(company: Company) -> list[str]:
    return [u for i in range(100) if i not in BAD for u in users_of(company, i)]


# ----- the tests ------------------------------------------------------------------------


def test_group_and_user_properties_are_read_back(sandbox, warehouse, company, tmp_path) -> None:
    result = run(sandbox, warehouse)
    assert result.success, failure_text(result)
    groups = group_rows(exported(sandbox, tmp_path))
    for index in range(100):
        account = company.account_id(index)
        if index in BAD:
            assert account not in groups  # set aside: nothing sent
            continue
        (props,) = groups[account]  # exactly one $groupidentify row
        assert props == expected_group(company, index), account
    assert "account-900001" in groups  # groups need no prior existence
    users = valid_users(company)
    for user in users[:: max(1, len(users) // 12)]:
        index = company.visitor_account[company.visitor_index(user)]
        held = profile(sandbox, user)
        want = expected_group(company, int(index))
        assert (held["account_plan"], held["csm"]) == (want["plan"], want["csm_owner"])
    summary = result.output_for_node("push_crm_to_amplitude")
    assert summary.updated == 97 + len(users) and summary.failed == 0
    assert outcomes(warehouse, result.run_id) == {
        ("group", "updated"): 97,
        ("user", "updated"): len(users),
    }
    (stored,) = result.asset_materializations_for_node("push_crm_to_amplitude")
    assert stored.asset_key == dg.AssetKey(["analytics", "writeback_amplitude_log"])
    assert stored.metadata["rows_appended"].value == 97 + len(users)
    keys = sandbox.config.amplitude_keys["us"]
    text = json.dumps(log(warehouse), default=str)
    assert keys.api_key not in text and keys.secret_key not in text


def test_a_rerun_sends_only_what_changed(sandbox, warehouse, company, tmp_path) -> None:
    assert run(sandbox, warehouse).success
    first = posts(sandbox, "/groupidentify") + posts(sandbox, "/identify")
    again = run(sandbox, warehouse)
    assert again.success, failure_text(again)
    assert posts(sandbox, "/groupidentify") + posts(sandbox, "/identify") == first  # none
    assert log(warehouse, again.run_id) == []

    rows = list(csv.DictReader(SAMPLE.open()))
    rows[1]["Plan"] = "Enterprise"  # account-000001: plan changes, for its users too
    rows[2]["ARR (USD)"] = "$1.00"  # a group property only
    rows[5]["ARR (USD)"] = rows[5]["ARR (USD)"].replace("$", "").replace(",", "")  # same value
    changed = run(sandbox, warehouse, crm_path=str(write_csv(tmp_path / "changed.csv", rows)))
    assert changed.success, failure_text(changed)
    sent = {(r["record_kind"], r["record_id"]): json.loads(r["values_json"]) for r in log(
        warehouse, changed.run_id)}  # fmt: skip
    users = users_of(company, 1)
    assert sent == {
        ("group", "account-000001"): {"plan": "enterprise"},
        ("group", "account-000002"): {"arr": 1.0},
        **{("user", u): {"account_plan": "enterprise"} for u in users},
    }
    assert group_rows(exported(sandbox, tmp_path))["account-000001"][-1]["plan"] == "enterprise"
    assert profile(sandbox, users[0])["account_plan"] == "enterprise"


@pytest.mark.slow  # about 10 s each: the client's backoff between the failed attempts
@pytest.mark.parametrize(
    "kind",
    ["drop", "error"],
    ids=["applied-but-answer-lost", "refused-with-500"],
)
def test_failed_second_batch_then_rerun_leaves_every_value_once(
    sandbox, warehouse, company, tmp_path, kind
) -> None:
    # Batch 1: the 97 groups (679 properties: one request); batches 2-4: users, 300 each.
    # Every attempt at batch 2 fails; with "drop" Amplitude applies it and the answer is
    # lost, with "error" it never reaches Amplitude.
    fault(sandbox, kind=kind, status=500, path="^/identify$", count=ATTEMPTS)
    first = run(sandbox, warehouse, batch_size=300)
    assert not first.success
    message = failure_text(first)
    assert "batch 2 of" in message and "Run the job again" in message
    users = valid_users(company)
    assert posts(sandbox, "/identify") == ATTEMPTS  # batch 2's attempts, then the run stopped
    counts = outcomes(warehouse, first.run_id)
    assert counts[("group", "updated")] == 97
    assert counts[("user", "unconfirmed")] == 300
    assert counts[("user", "not_sent")] == len(users) - 300
    assert ("user", "updated") not in counts  # never 'updated' without Amplitude's word

    second = run(sandbox, warehouse, batch_size=300)
    assert second.success, failure_text(second)
    assert posts(sandbox, "/groupidentify") == 1  # the groups were not sent again
    again = outcomes(warehouse, second.run_id)
    assert again == {("user", "updated"): len(users)}
    resent = {r["record_id"]: r["insert_id"] for r in log(warehouse, first.run_id)}
    for row in log(warehouse, second.run_id):
        assert row["insert_id"] == resent[row["record_id"]]  # same ids: a landed copy is dropped

    rows = exported(sandbox, tmp_path)
    identified = Counter(r["user_id"] for r in rows if r["event_type"] == "$identify")
    assert set(identified) == set(users) and set(identified.values()) == {1}  # exactly once
    assert all(len(v) == 1 for v in group_rows(rows).values())
    confirmed = Counter(r["record_id"] for r in log(warehouse) if r["outcome"] == "updated")
    assert set(confirmed.values()) == {1} and len(confirmed) == 97 + len(users)
    for user in (users[0], users[299], users[300], users[-1]):
        index = int(company.visitor_account[company.visitor_index(user)])
        assert profile(sandbox, user)["account_plan"] == PLANS[int(company.account_plan[index])]


def test_a_retried_batch_is_deduplicated_by_insert_id(sandbox, warehouse, tmp_path) -> None:
    # The first attempt is applied, then its answer is lost; the client resends it.
    fault(sandbox, kind="drop", path="^/groupidentify$", count=1)
    result = run(sandbox, warehouse, targets=AmplitudeTargets())
    assert result.success, failure_text(result)
    assert posts(sandbox, "/groupidentify") == 2  # the dropped attempt and its retry
    groups = group_rows(exported(sandbox, tmp_path))
    assert len(groups) == 97 and all(len(rows) == 1 for rows in groups.values())
    assert outcomes(warehouse, result.run_id) == {("group", "updated"): 97}


def test_dry_run_shows_each_change_and_sends_nothing(sandbox, warehouse, tmp_path) -> None:
    assert run(sandbox, warehouse).success
    before = posts(sandbox, "/groupidentify") + posts(sandbox, "/identify")
    rows = list(csv.DictReader(SAMPLE.open()))
    rows[1]["Plan"] = "Enterprise"
    rows[3]["Renewal Date"] = "2030-01-01"
    changed = write_csv(tmp_path / "changed.csv", rows)
    result = run(sandbox, warehouse, crm_path=str(changed), dry_run=True)
    assert result.success, failure_text(result)
    assert posts(sandbox, "/groupidentify") + posts(sandbox, "/identify") == before
    plan = {(r["record_kind"], r["record_id"]): r["reason"] for r in log(warehouse, result.run_id)}
    assert plan[("group", "account-000001")] == "plan: 'pro' → 'enterprise'"
    assert plan[("group", "account-000003")].startswith("renewal_date: '") and plan[
        ("group", "account-000003")].endswith("→ '2030-01-01'")  # fmt: skip
    assert all(r["outcome"] == "dry_run" and r["dry_run"] for r in log(warehouse, result.run_id))
    for event in result.events_for_node("push_crm_to_amplitude"):
        if event.is_successful_output:
            shown = event.step_output_data.metadata["plan"].value
            assert "| group | account-000001 | plan: 'pro' → 'enterprise' |" in shown
    # The dry run confirmed nothing: a real run still sends both changes.
    real = run(sandbox, warehouse, crm_path=str(changed))
    assert real.success
    assert {r["record_id"] for r in log(warehouse, real.run_id) if r["record_kind"] == "group"} == {
        "account-000001",
        "account-000003",
    }


def test_both_destinations_from_one_crm_read_and_one_quarantine(
    sandbox, warehouse, company, tmp_path
) -> None:
    result = run(sandbox, warehouse, destinations=("pendo", "amplitude"))
    assert result.success, failure_text(result)
    read_steps = [e for e in result.all_events if e.step_key == "read_crm_export"]
    assert read_steps and {e.step_key for e in read_steps} == {"read_crm_export"}
    aside = warehouse.query(
        f"SELECT DISTINCT row_number, account_id FROM {QUARANTINE_TABLE} WHERE run_id = ?",
        [result.run_id],
    )
    assert len(aside) == 6  # the sample's bad rows, once for both tools
    pendo = warehouse.query(
        f"SELECT outcome, count(*) AS n FROM {LOG_TABLE} WHERE run_id = ? GROUP BY outcome",
        [result.run_id],
    )
    assert dict(zip(pendo.outcome, pendo.n, strict=True)) == {"updated": 96, "missing": 1}
    groups = group_rows(exported(sandbox, tmp_path))
    assert groups["account-000001"] == [expected_group(company, 1)]
    changes = destination_changes(warehouse, result.run_id)
    assert changes["pendo"].startswith("96 updated")
    assert changes["amplitude"].startswith(f"97 groups and {len(valid_users(company))} users")


def test_targets_that_name_unmapped_fields_stop_before_any_write(sandbox, warehouse) -> None:
    result = run(sandbox, warehouse, targets=AmplitudeTargets(user_properties={"tier": "t"}))
    assert not result.success
    assert "amplitude.user_properties: 'tier' is not a field of the mapping" in failure_text(result)
    assert posts(sandbox, "/groupidentify") + posts(sandbox, "/identify") == 0


def test_user_properties_without_a_users_table_stop_before_any_write(sandbox, tmp_path) -> None:
    empty = DuckDBWarehouse(database=str(tmp_path / "empty.duckdb"))
    result = run(sandbox, empty, destinations=("pendo", "amplitude"))
    assert not result.success
    assert "no table pendo.visitors" in failure_text(result)
    assert sandbox.state.counters.count(method="POST", path="metadata|identify") == 0


def test_an_invalid_api_key_fails_without_showing_it(sandbox, warehouse) -> None:
    job = build_crm_push_job(destinations=["amplitude"], amplitude=TARGETS)
    bad = amplitude(sandbox, api_key="not-the-key-0123")
    result = job.execute_in_process(
        run_config={"crm_path": str(SAMPLE)},
        resources={"amplitude": bad, "warehouse": warehouse},
        raise_on_error=False,
    )
    assert not result.success
    message = failure_text(result)
    assert "refused the API key" in message and "not-the-key-0123" not in message
    assert "invalid_api_key" in message
    assert not warehouse.table_exists(AMPLITUDE_LOG_TABLE)  # nothing logged as sent
