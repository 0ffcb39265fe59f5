"""Amplitude sandbox: User Profile API over real HTTP (flags, errors, EU, throttling)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.config import AmplitudeLimits

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
PATH = "/v1/userprofile"


@pytest.fixture(scope="module")
def profile_sandbox():
    limits = AmplitudeLimits(cohort_requests_per_10min=10_000)
    with SandboxServer(SandboxConfig(seed=12, now=NOW, amplitude_limits=limits)) as server:
        yield server


@pytest.fixture(scope="module")
def profile(profile_sandbox):
    secret = profile_sandbox.config.amplitude_keys["us"].secret_key
    with httpx.Client(
        base_url=profile_sandbox.urls.amplitude("us"),
        timeout=30,
        headers={"Authorization": f"Api-Key {secret}"},
    ) as c:
        yield c


@pytest.fixture(scope="module")
def basic(profile_sandbox):
    keys = profile_sandbox.config.amplitude_keys["us"]
    with httpx.Client(
        base_url=profile_sandbox.urls.amplitude("us"),
        auth=(keys.api_key, keys.secret_key),
        timeout=30,
    ) as c:
        yield c


def cohort_members(basic: httpx.Client, name: str) -> tuple[str, list[str]]:
    cohort = next(c for c in basic.get("/api/3/cohorts").json()["cohorts"] if c["name"] == name)
    request_id = basic.get(f"/api/5/cohorts/request/{cohort['id']}").json()["request_id"]
    for _ in range(3):
        basic.get(f"/api/5/cohorts/request-status/{request_id}")
    text = basic.get(f"/api/5/cohorts/request/{request_id}/file").text
    return cohort["id"], [row["user_id"] for row in csv.DictReader(io.StringIO(text))]


def test_plain_profile_has_only_ids(profile) -> None:
    r = profile.get(PATH, params={"user_id": "visitor-0000010"})
    assert r.status_code == 200
    data = r.json()["userData"]
    assert data["user_id"] == "visitor-0000010"
    assert data["device_id"]
    assert (data["amp_props"], data["cohort_ids"], data["recommendations"]) == (None, None, None)
    assert "propensities" not in data


def test_amp_props_agree_with_user_activity(profile, basic, profile_sandbox) -> None:
    data = profile.get(PATH, params={"user_id": "visitor-0000010", "get_amp_props": "true"})
    props = data.json()["userData"]["amp_props"]
    amp = profile_sandbox.config.amplitude_keys["us"].project_id * 10**7 + 10
    activity = basic.get("/api/2/useractivity", params={"user": amp, "limit": 1}).json()
    user = activity["userData"]
    assert props["library"] == "http/2.0"
    assert (props["first_used"], props["last_used"]) == (user["first_used"], user["last_used"])
    for key in ("plan", "role", "account", "industry"):
        assert props[key] == user["properties"][key]
    # Looked up by one of the user's devices, the same user comes back.
    by_device = profile.get(PATH, params={"device_id": user["device_ids"][1]}).json()["userData"]
    assert by_device["user_id"] == "visitor-0000010"
    assert by_device["device_id"] == user["device_ids"][1]


def test_cohort_ids_and_computations_follow_the_data(profile, basic, profile_sandbox) -> None:
    power_id, power = cohort_members(basic, "Power users")
    enterprise_id, enterprise = cohort_members(basic, "Enterprise users")
    user = power[0]
    r = profile.get(
        PATH, params={"user_id": user, "get_cohort_ids": "true", "get_computations": "true"}
    )
    data = r.json()["userData"]
    expected = [power_id] + ([enterprise_id] if user in enterprise else [])
    assert sorted(data["cohort_ids"]) == sorted(expected)
    tenant = AmplitudeTenant(profile_sandbox.state, "us")
    amp = tenant.events.amplitude_id(int(user.removeprefix("visitor-")))
    today = tenant.today()
    events7 = sum(
        int(n[a == amp].sum())
        for a, n in (tenant.events.user_counts(today - timedelta(days=b)) for b in range(7))
    )
    assert data["amp_props"]["events_last_7_days"] == str(events7)
    one = profile.get(PATH, params={"user_id": user, "comp_id": "t14bqib,nope"})
    assert one.json()["userData"]["amp_props"] == {"events_last_7_days": str(events7), "nope": None}


def test_recommendations_and_propensities_are_stable(profile) -> None:
    params = {
        "user_id": "visitor-0000003",
        "get_recs": "true",
        "rec_id": "r1,r2",
        "prediction_id": "0x10x",
        "propensity_type": "pct",
    }
    first = profile.get(PATH, params=params).json()["userData"]
    assert first == profile.get(PATH, params=params).json()["userData"]
    recs = first["recommendations"]
    assert [r["rec_id"] for r in recs] == ["r1", "r2"]
    assert all(len(r["items"]) == 5 and r["child_rec_id"] == r["rec_id"] for r in recs)
    assert 0 <= first["propensity"] <= 100
    assert first["propensities"] == [
        {"prop": first["propensity"], "pred_id": "0x10x", "prop_type": "pct"}
    ]
    two = profile.get(PATH, params={**params, "prediction_id": "a,b"}).json()["userData"]
    assert two["propensity"] is None and len(two["propensities"]) == 2


def test_auth_failures_are_plain_text_401(profile_sandbox) -> None:
    url = profile_sandbox.urls.amplitude("us") + PATH
    missing = httpx.get(url, params={"user_id": "visitor-0000001"}, timeout=30)
    assert (missing.status_code, missing.text) == (401, "Missing Api-Key in Authorization header")
    wrong = httpx.get(
        url,
        params={"user_id": "visitor-0000001"},
        timeout=30,
        headers={"Authorization": "Api-Key not-the-secret"},
    )
    assert (wrong.status_code, wrong.text) == (401, "Invalid Api-Key")
    api_key = profile_sandbox.config.amplitude_keys["us"].api_key
    not_secret = httpx.get(
        url,
        params={"user_id": "visitor-0000001"},
        timeout=30,
        headers={"Authorization": f"Api-Key {api_key}"},
    )
    assert not_secret.status_code == 401


def test_unknown_user_is_an_error(profile) -> None:
    r = profile.get(PATH, params={"user_id": "someone-else"})
    assert r.status_code == 400
    assert r.json() == {"error": "User id and device id not seen before"}
    assert profile.get(PATH, params={"device_id": "ffff-ffff"}).status_code == 400


def test_not_offered_in_the_eu(profile_sandbox) -> None:
    secret = profile_sandbox.config.amplitude_keys["eu"].secret_key
    r = httpx.get(
        profile_sandbox.urls.amplitude("eu") + PATH,
        params={"user_id": "visitor-0000001"},
        headers={"Authorization": f"Api-Key {secret}"},
        timeout=30,
    )
    assert (r.status_code, r.content) == (404, b"")


def test_six_hundred_first_request_in_a_minute_is_429() -> None:
    with SandboxServer(SandboxConfig(seed=13, now=NOW)) as server:
        secret = server.config.amplitude_keys["us"].secret_key
        with httpx.Client(
            base_url=server.urls.amplitude("us"),
            timeout=30,
            headers={"Authorization": f"Api-Key {secret}"},
        ) as c:
            # Unknown users answer fastest; every request counts against the org limit.
            statuses = {
                c.get(PATH, params={"user_id": f"nobody-{i}"}).status_code for i in range(600)
            }
            refused = c.get(PATH, params={"user_id": "visitor-0000001"})
    assert statuses == {400}
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "Number of requests per minute exceeds system limit. "
        "Contact Support if you need this limit raised"
    }
