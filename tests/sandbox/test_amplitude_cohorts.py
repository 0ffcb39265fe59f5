"""Amplitude sandbox: Behavioral Cohorts API over real HTTP (list, download, upload, limits)."""

from __future__ import annotations

import csv
import io
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.amplitude.cohorts import POWER_MIN_EVENTS
from analytics_assets.sandbox.amplitude.extra_common import HOLD_HEADER
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.config import AmplitudeLimits

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
COHORT_FIELDS = {
    "appId",
    "archived",
    "definition",
    "description",
    "finished",
    "id",
    "name",
    "owners",
    "viewers",
    "published",
    "size",
    "type",
    "lastMod",
    "createdAt",
    "lastComputed",
    "hidden",
    "metadata",
    "view_count",
    "popularity",
    "last_viewed",
    "chart_id",
    "edit_id",
    "is_predictive",
    "is_official_content",
    "location_id",
    "shortcut_ids",
    "per_app_metadata",
    "cohort_definition_type",
    "cohort_output_type",
    "is_generated_content",
}


def _limits(**knobs: object) -> AmplitudeLimits:
    limits = AmplitudeLimits(cohort_requests_per_10min=100_000)
    # Jobs finish after two status polls only (no wall-clock completion), so the first
    # poll is always "in progress" however slow the machine.
    limits.cohort_job_seconds = 3_600.0
    for name, value in knobs.items():
        setattr(limits, name, value)
    return limits


@pytest.fixture(scope="module")
def cohort_sandbox():
    with SandboxServer(SandboxConfig(seed=5, now=NOW, amplitude_limits=_limits())) as server:
        yield server


@pytest.fixture(scope="module")
def client(cohort_sandbox):
    keys = cohort_sandbox.config.amplitude_keys["us"]
    with httpx.Client(
        base_url=cohort_sandbox.urls.amplitude("us"),
        auth=(keys.api_key, keys.secret_key),
        timeout=30,
    ) as c:
        yield c


@pytest.fixture(scope="module")
def tenant(cohort_sandbox) -> AmplitudeTenant:
    """A second view of the same world, to compute expected values independently."""
    return AmplitudeTenant(cohort_sandbox.state, "us")


def wait_in_flight(server: SandboxServer, key: str, count: int) -> None:
    """Until ``count`` requests hold ``key`` slots, per the sandbox's ``/_sandbox/limits``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        limits = httpx.get(server.urls.control() + "/limits", timeout=30).json()
        if limits["amplitude"]["us"][key] >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} requests never held {key} together")


def cohorts_by_name(client: httpx.Client, **params: str) -> dict[str, dict]:
    r = client.get("/api/3/cohorts", params=params)
    assert r.status_code == 200
    return {c["name"]: c for c in r.json()["cohorts"]}


def download(client: httpx.Client, cohort_id: str, **params: object) -> list[dict[str, str]]:
    r = client.get(f"/api/5/cohorts/request/{cohort_id}", params=params)
    assert r.status_code == 202
    request_id = r.json()["request_id"]
    statuses = []
    for _ in range(5):
        s = client.get(f"/api/5/cohorts/request-status/{request_id}")
        statuses.append((s.status_code, s.json()["async_status"]))
        if s.status_code == 200:
            break
    assert statuses == [(202, "JOB INPROGRESS")] * 2 + [(200, "JOB COMPLETED")]
    f = client.get(f"/api/5/cohorts/request/{request_id}/file")
    assert f.status_code == 200, f.text
    assert f.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(f.text)))


def test_list_holds_seeded_cohorts_with_every_field(client, cohort_sandbox) -> None:
    cohorts = cohorts_by_name(client)
    assert set(cohorts) >= {
        "Power users",
        "Weekly active users",
        "Enterprise users",
        "Dormant users",
        "New users this week",
        "Trial sign-ups",
        "Free plan users",
    }
    project = cohort_sandbox.config.amplitude_keys["us"].project_id
    for c in cohorts.values():
        assert set(c) >= COHORT_FIELDS, c["name"]
        assert re.fullmatch(r"[a-z0-9]{8}", c["id"])
        assert c["appId"] == project and c["type"] == "redshift"
        assert c["cohort_output_type"] == "UNIQUES" and c["definition"]["version"] == 3
    power = cohorts["Power users"]
    assert power["finished"] is True and power["size"] > 0
    # lastComputed is epoch seconds: the moment of computation, the frozen "now".
    assert power["lastComputed"] == int(NOW.timestamp())
    never = cohorts["Trial sign-ups"]
    assert (never["size"], never["lastComputed"], never["finished"]) == (None, None, False)
    assert cohorts["Free plan users"]["archived"] is True
    assert "syncMetadata" not in power
    synced = cohorts_by_name(client, includeSyncInfo="true")
    assert synced["Power users"]["syncMetadata"][0]["frequency"] == "daily"
    assert synced["Weekly active users"]["syncMetadata"] == []
    ids = f"{power['id']},{cohorts['Dormant users']['id']}"
    assert set(cohorts_by_name(client, cohortIds=ids)) == {"Power users", "Dormant users"}


def test_sizes_follow_the_events(client, tenant) -> None:
    cohorts = cohorts_by_name(client)
    today = tenant.today()
    totals: dict[int, int] = {}
    active14: set[int] = set()
    for back in range(14):
        amps, counts = tenant.events.user_counts(today - timedelta(days=back))
        active14.update(amps.tolist())
        if back < 7:
            for amp, n in zip(amps.tolist(), counts.tolist(), strict=True):
                totals[amp] = totals.get(amp, 0) + n
    assert cohorts["Weekly active users"]["size"] == len(totals)
    power = sum(1 for n in totals.values() if n >= POWER_MIN_EVENTS)
    assert cohorts["Power users"]["size"] == power
    assert cohorts["Dormant users"]["size"] == tenant.company.n_visitors - len(active14)
    plans = tenant.company.account_plan[tenant.company.visitor_account]
    assert cohorts["Enterprise users"]["size"] == int(np.count_nonzero(plans == 3))


def test_download_rows_equal_the_listed_size_and_members(client, tenant) -> None:
    power = cohorts_by_name(client)["Power users"]
    rows = download(client, power["id"])
    assert len(rows) == power["size"]
    assert list(rows[0]) == ["amplitude_id", "user_id"]
    base = tenant.project_id * 10**7
    for row in rows:
        # The same Amplitude ID as the export: project * 10^7 + visitor index.
        assert int(row["amplitude_id"]) == base + int(row["user_id"].removeprefix("visitor-"))
    today = tenant.today()
    counts: dict[int, int] = {}
    for back in range(7):
        amps, n = tenant.events.user_counts(today - timedelta(days=back))
        for amp, k in zip(amps.tolist(), n.tolist(), strict=True):
            counts[amp] = counts.get(amp, 0) + k
    assert all(counts[int(r["amplitude_id"])] >= POWER_MIN_EVENTS for r in rows)


def test_props_add_user_property_columns(client) -> None:
    enterprise = cohorts_by_name(client)["Enterprise users"]
    rows = download(client, enterprise["id"], props=1)
    assert list(rows[0]) == ["amplitude_id", "user_id", "plan", "role", "account", "industry"]
    assert len(rows) == enterprise["size"]
    assert {r["plan"] for r in rows} == {"enterprise"}
    assert all(re.fullmatch(r"account-\d{6}", r["account"]) for r in rows)
    picked = download(client, enterprise["id"], props="true", propKeys=["role", "gp:country"])
    assert list(picked[0]) == ["amplitude_id", "user_id", "role", "gp:country"]
    assert {r["gp:country"] for r in picked} <= {"United States", "Canada", "United Kingdom"}


def test_get_one_cohort_returns_members(client) -> None:
    power = cohorts_by_name(client)["Power users"]
    r = client.get(f"/api/3/cohorts/{power['id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["cohort"]["id"] == power["id"] and body["amplitude_ids"] == []
    assert len(body["user_ids"]) == power["size"]
    with_amp = client.get(f"/api/3/cohorts/{power['id']}", params={"amp_ids": "true"}).json()
    assert len(with_amp["amplitude_ids"]) == power["size"]
    missing = client.get("/api/3/cohorts/zzzzzzzz")
    assert missing.status_code == 404
    assert missing.json()["error"]["http_code"] == 404


def test_file_before_completion_and_unknown_ids(client) -> None:
    power = cohorts_by_name(client)["Power users"]
    request_id = client.get(f"/api/5/cohorts/request/{power['id']}").json()["request_id"]
    early = client.get(f"/api/5/cohorts/request/{request_id}/file")
    assert early.status_code == 400
    assert "in progress" in early.json()["error"]["metadata"]["details"]
    assert client.get("/api/5/cohorts/request/nope1234").status_code == 404
    assert client.get("/api/5/cohorts/request-status/no-such-request").status_code == 404


def test_large_cohort_redirects_to_a_presigned_url_that_expires(client, cohort_sandbox) -> None:
    limits = cohort_sandbox.config.amplitude_limits
    weekly = cohorts_by_name(client)["Weekly active users"]
    limits.cohort_file_redirect_rows = 50
    try:
        request_id = client.get(f"/api/5/cohorts/request/{weekly['id']}").json()["request_id"]
        for _ in range(3):
            client.get(f"/api/5/cohorts/request-status/{request_id}")
        r = client.get(f"/api/5/cohorts/request/{request_id}/file")
        assert r.status_code == 302
        location = r.headers["location"]
        assert "/_s3/" in location and "X-Amz-Expires=60" in location
        # Like S3: no Basic auth on the presigned URL.
        s3 = httpx.get(location, timeout=30)
        assert s3.status_code == 200
        rows = list(csv.DictReader(io.StringIO(s3.text)))
        assert len(rows) == weekly["size"] > 50
        # Following the redirect from the API call gives the same file.
        followed = client.get(f"/api/5/cohorts/request/{request_id}/file", follow_redirects=True)
        assert followed.text == s3.text

        limits.cohort_presign_seconds = 0.2
        short = client.get(f"/api/5/cohorts/request/{request_id}/file").headers["location"]
        time.sleep(0.4)
        expired = httpx.get(short, timeout=30)
        assert expired.status_code == 403
        assert "<Code>AccessDenied</Code>" in expired.text and "expired" in expired.text
    finally:
        del limits.cohort_file_redirect_rows
        limits.cohort_presign_seconds = 60.0


def test_upload_appears_in_list_and_download(client, cohort_sandbox) -> None:
    project = cohort_sandbox.config.amplitude_keys["us"].project_id
    ids = ["visitor-0000003", "visitor-0000001", "visitor-0000002", "visitor-0000001", "ghost"]
    r = client.post(
        "/api/3/cohorts/upload",
        json={
            "name": "Beta testers",
            "app_id": project,
            "id_type": "BY_USER_ID",
            "ids": ids,
            "owner": "data@example.com",
            "published": True,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metadata"] == {"matched": 4, "totals": 3, "invalid_ids_sample": ["ghost"]}
    cohort = cohorts_by_name(client)["Beta testers"]
    assert cohort["id"] == body["cohortId"] and cohort["size"] == 3
    assert cohort["owners"] == ["data@example.com"]
    rows = download(client, body["cohortId"])
    assert [r["user_id"] for r in rows] == ["visitor-0000001", "visitor-0000002", "visitor-0000003"]

    # Replace the members by Amplitude ID, keeping the cohort id.
    amp = project * 10**7 + 42
    r = client.post(
        "/api/3/cohorts/upload",
        json={
            "name": "Beta testers",
            "app_id": project,
            "id_type": "BY_AMP_ID",
            "ids": [amp],
            "owner": "data@example.com",
            "published": True,
            "existing_cohort_id": body["cohortId"],
        },
    )
    assert r.json()["cohortId"] == body["cohortId"]
    assert [r["amplitude_id"] for r in download(client, body["cohortId"])] == [str(amp)]

    strict = client.post(
        "/api/3/cohorts/upload",
        json={
            "name": "Strict",
            "app_id": project,
            "id_type": "BY_USER_ID",
            "ids": ["ghost"],
            "owner": "x@example.com",
            "published": False,
            "skip_invalid_ids": False,
        },
    )
    assert strict.status_code == 400
    assert strict.json()["error"]["type"] == "invalid"


def test_membership_changes_show_in_size_and_download(client, cohort_sandbox) -> None:
    project = cohort_sandbox.config.amplitude_keys["us"].project_id
    dormant = cohorts_by_name(client)["Dormant users"]
    members = download(client, dormant["id"])
    leaving = members[0]["user_id"]
    weekly = download(client, cohorts_by_name(client)["Weekly active users"]["id"])
    joining = int(weekly[0]["amplitude_id"])
    r = client.post(
        "/api/3/cohorts/membership",
        json={
            "cohort_id": dormant["id"],
            "count_group": "User",
            "skip_invalid_ids": True,
            "memberships": [
                {"ids": [leaving, "ghost-user"], "id_type": "BY_NAME", "operation": "REMOVE"},
                {"ids": [str(joining)], "id_type": "BY_ID", "operation": "ADD"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "cohort_id": dormant["id"],
        "memberships_result": [
            {"skipped_ids": ["ghost-user"], "id_type": "BY_NAME", "operation": "REMOVE"},
            {"skipped_ids": [], "id_type": "BY_ID", "operation": "ADD"},
        ],
    }
    after = cohorts_by_name(client)["Dormant users"]
    assert after["size"] == dormant["size"]
    rows = download(client, dormant["id"])
    assert len(rows) == after["size"]
    users = {r["user_id"] for r in rows}
    assert leaving not in users and f"visitor-{joining - project * 10**7:07d}" in users

    client.post(
        "/api/3/cohorts/membership",
        json={
            "cohort_id": dormant["id"],
            "memberships": [{"ids": [leaving], "id_type": "BY_NAME", "operation": "ADD"}],
        },
    )
    assert cohorts_by_name(client)["Dormant users"]["size"] == dormant["size"] + 1


def test_more_than_100k_ids_is_a_400(client, cohort_sandbox) -> None:
    project = cohort_sandbox.config.amplitude_keys["us"].project_id
    ids = [f"u{i}" for i in range(100_001)]
    r = client.post(
        "/api/3/cohorts/upload",
        json={
            "name": "Too big",
            "app_id": project,
            "id_type": "BY_USER_ID",
            "ids": ids,
            "owner": "x@example.com",
            "published": True,
        },
    )
    assert r.status_code == 400
    assert "100000" in r.json()["error"]["metadata"]["details"]
    dormant = cohorts_by_name(client)["Dormant users"]
    m = client.post(
        "/api/3/cohorts/membership",
        json={
            "cohort_id": dormant["id"],
            "memberships": [{"ids": ids, "id_type": "BY_NAME", "operation": "ADD"}],
        },
    )
    assert m.status_code == 400


def test_usage_counts_download_requests(client) -> None:
    before = client.get("/api/3/cohorts/usage").json()
    assert before["limit"] == 500
    power = cohorts_by_name(client)["Power users"]
    client.get(f"/api/5/cohorts/request/{power['id']}")
    assert client.get("/api/3/cohorts/usage").json()["count"] == before["count"] + 1


def test_bad_credentials_are_403(cohort_sandbox) -> None:
    keys = cohort_sandbox.config.amplitude_keys["us"]
    r = httpx.get(
        cohort_sandbox.urls.amplitude("us") + "/api/3/cohorts",
        auth=(keys.api_key, "wrong"),
        timeout=30,
    )
    assert r.status_code == 403
    assert r.json()["error"]["metadata"]["details"] == "Invalid API/Secret Key combination"


def test_fifth_parallel_request_is_refused(client, cohort_sandbox) -> None:
    results: list[int] = []

    def slow() -> None:
        results.append(client.get("/api/3/cohorts", headers={HOLD_HEADER: "2.5"}).status_code)

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    wait_in_flight(cohort_sandbox, "cohort_in_flight", 4)
    fifth = client.get("/api/3/cohorts")
    for t in threads:
        t.join()
    assert results == [200] * 4
    assert fifth.status_code == 429
    assert "concurrent" in fifth.json()["error"]["metadata"]["details"]
    assert client.get("/api/3/cohorts").status_code == 200


def test_sixty_first_request_in_ten_minutes_is_refused() -> None:
    # 10 minutes × 0.05 = 30 s: ample time for 61 local requests, none expire meanwhile.
    limits = AmplitudeLimits(window_scale=0.05)
    with SandboxServer(SandboxConfig(seed=6, now=NOW, amplitude_limits=limits)) as server:
        keys = server.config.amplitude_keys["us"]
        with httpx.Client(
            base_url=server.urls.amplitude("us"), timeout=30, auth=(keys.api_key, keys.secret_key)
        ) as c:
            statuses = [c.get("/api/3/cohorts/usage").status_code for _ in range(60)]
            refused = c.get("/api/3/cohorts")
            # The EU project has its own budget.
            eu = server.config.amplitude_keys["eu"]
            eu_ok = httpx.get(
                server.urls.amplitude("eu") + "/api/3/cohorts",
                auth=(eu.api_key, eu.secret_key),
                timeout=30,
            )
    assert statuses == [200] * 60
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["http_code"] == 429 and "rate limit" in error["metadata"]["details"]
    assert eu_ok.status_code == 200


def test_eu_project_has_its_own_cohorts(cohort_sandbox, client) -> None:
    eu = cohort_sandbox.config.amplitude_keys["eu"]
    r = httpx.get(
        cohort_sandbox.urls.amplitude("eu") + "/api/3/cohorts",
        auth=(eu.api_key, eu.secret_key),
        timeout=30,
    )
    assert r.status_code == 200
    eu_cohorts = {c["name"]: c for c in r.json()["cohorts"]}
    us_cohorts = cohorts_by_name(client)
    assert eu_cohorts["Power users"]["appId"] == eu.project_id
    assert eu_cohorts["Power users"]["id"] != us_cohorts["Power users"]["id"]
    # The US key is unknown to the EU project (the usual symptom of a wrong region).
    us = cohort_sandbox.config.amplitude_keys["us"]
    wrong = httpx.get(
        cohort_sandbox.urls.amplitude("eu") + "/api/3/cohorts",
        auth=(us.api_key, us.secret_key),
        timeout=30,
    )
    assert wrong.status_code == 403


def test_file_downloads_hold_a_dashboard_slot_while_streaming(client, cohort_sandbox) -> None:
    power = cohorts_by_name(client)["Power users"]
    request_id = client.get(f"/api/5/cohorts/request/{power['id']}").json()["request_id"]
    for _ in range(3):
        client.get(f"/api/5/cohorts/request-status/{request_id}")
    limits_url = cohort_sandbox.urls.control() + "/limits"
    statuses: list[int] = []

    def slow() -> None:
        r = client.get(f"/api/5/cohorts/request/{request_id}/file", headers={HOLD_HEADER: "2.5"})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    wait_in_flight(cohort_sandbox, "cohort_in_flight", 3)
    during = httpx.get(limits_url, timeout=30).json()["amplitude"]["us"]["dashboard_in_flight"]
    for t in threads:
        t.join()
    after = httpx.get(limits_url, timeout=30).json()["amplitude"]["us"]["dashboard_in_flight"]
    assert statuses == [200] * 3
    assert (during, after) == (3, 0)


def test_staged_changes_recompute_sizes(client, cohort_sandbox, tenant) -> None:
    """A quiet account's users leave the weekly actives; sizes and files agree again."""
    weekly = cohorts_by_name(client)["Weekly active users"]
    rows = download(client, weekly["id"])
    visitor = int(rows[0]["user_id"].removeprefix("visitor-"))
    account = int(tenant.company.visitor_account[visitor])
    account_id = tenant.company.account_id(account)
    members = {int(r["user_id"].removeprefix("visitor-")) for r in rows}
    leaving = {v for v in members if tenant.company.visitor_account[v] == account}
    stage = cohort_sandbox.urls.control() + "/stage"
    week_ago = int((NOW - timedelta(days=8)).timestamp() * 1000)
    r = httpx.post(
        stage,
        json={"action": "account_quiet", "account_id": account_id, "from": week_ago},
        timeout=30,
    )
    assert r.status_code == 200
    try:
        quiet = cohorts_by_name(client)["Weekly active users"]
        assert quiet["size"] == weekly["size"] - len(leaving)
        assert len(download(client, weekly["id"])) == quiet["size"]
    finally:
        httpx.post(stage, json={"action": "account_active", "account_id": account_id}, timeout=30)
    assert cohorts_by_name(client)["Weekly active users"]["size"] == weekly["size"]
