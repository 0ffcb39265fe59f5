"""Amplitude sandbox: user search and user activity over real HTTP (shapes, paging, limits)."""

from __future__ import annotations

import gzip
import io
import threading
import time
import zipfile
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.amplitude.extra_common import HOLD_HEADER
from analytics_assets.sandbox.amplitude.users import UNKNOWN_LOCATION

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
USER_DATA_FIELDS = {
    "user_id",
    "canonical_amplitude_id",
    "merged_amplitude_ids",
    "num_events",
    "num_sessions",
    "usage_time",
    "first_used",
    "last_used",
    "purchases",
    "revenue",
    "platform",
    "os",
    "version",
    "device",
    "device_type",
    "carrier",
    "country",
    "region",
    "city",
    "dma",
    "language",
    "start_version",
    "device_ids",
    "last_location",
    "properties",
    "last_device_id",
    "library",
}


@pytest.fixture(scope="module")
def lookup_sandbox():
    with SandboxServer(SandboxConfig(seed=21, now=NOW)) as server:
        yield server


@pytest.fixture(scope="module")
def client(lookup_sandbox):
    keys = lookup_sandbox.config.amplitude_keys["us"]
    with httpx.Client(
        base_url=lookup_sandbox.urls.amplitude("us"),
        auth=(keys.api_key, keys.secret_key),
        timeout=60,
    ) as c:
        yield c


@pytest.fixture(scope="module")
def project(lookup_sandbox) -> int:
    return lookup_sandbox.config.amplitude_keys["us"].project_id


@pytest.fixture(scope="module")
def active_user(client, project) -> int:
    """The Amplitude ID of a user with events in the last days (from the weekly cohort)."""
    cohorts = client.get("/api/3/cohorts").json()["cohorts"]
    weekly = next(c for c in cohorts if c["name"] == "Power users")
    user_ids = client.get(f"/api/3/cohorts/{weekly['id']}").json()["user_ids"]
    return project * 10**7 + int(user_ids[0].removeprefix("visitor-"))


def search(client: httpx.Client, user: object) -> dict:
    r = client.get("/api/2/usersearch", params={"user": user})
    assert r.status_code == 200
    return r.json()


def test_search_by_user_id_amplitude_id_device_id_prefix_and_nothing(client, project) -> None:
    exact = search(client, "visitor-0000005")
    assert exact["type"] == "match_user_or_device_id" and "data" not in exact
    [match] = exact["matches"]
    assert match["user_id"] == "visitor-0000005" and match["amplitude_id"] == project * 10**7 + 5
    assert set(match) == {"user_id", "amplitude_id", "last_seen", "last_device_id"}

    by_amp = search(client, project * 10**7 + 5)
    assert by_amp["type"] == "match_amplitude_id"
    assert by_amp["matches"][0]["user_id"] == "visitor-0000005"

    device = match["last_device_id"]
    by_device = search(client, device)
    assert by_device["type"] == "match_user_or_device_id"
    assert by_device["matches"][0]["amplitude_id"] == match["amplitude_id"]

    prefix = search(client, "visitor-00001")
    assert prefix["type"] == "match_user_prefix"
    ids = [m["user_id"] for m in prefix["matches"]]
    assert ids == sorted(ids) and len(ids) == 100
    assert all(i.startswith("visitor-00001") for i in ids)

    assert search(client, "no-such-user") == {"type": "nomatch", "matches": []}


def test_user_activity_shape(client, active_user) -> None:
    r = client.get("/api/2/useractivity", params={"user": active_user, "limit": 5})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"userData", "events"}
    user = body["userData"]
    assert set(user) >= USER_DATA_FIELDS
    assert user["canonical_amplitude_id"] == active_user
    assert isinstance(user["purchases"], str) and isinstance(user["revenue"], str)
    float(user["revenue"])
    assert user["last_location"] == {"lat": UNKNOWN_LOCATION, "lng": UNKNOWN_LOCATION}
    assert user["num_events"] > 5 and user["num_sessions"] >= 1
    assert user["first_used"] <= user["last_used"] <= NOW.date().isoformat()
    assert user["last_device_id"] in user["device_ids"]
    assert set(user["properties"]) >= {"plan", "role", "account", "industry"}
    events = body["events"]
    assert len(events) == 5
    assert all(e["amplitude_id"] == active_user for e in events)
    times = [e["event_time"] for e in events]
    assert times == sorted(times, reverse=True)
    assert events[0]["event_time"][:10] == user["last_used"]


def test_user_activity_pages_cover_num_events(client, active_user) -> None:
    def page(**params: object) -> list[dict]:
        r = client.get("/api/2/useractivity", params={"user": active_user, **params})
        assert r.status_code == 200
        return r.json()["events"]

    first = page(limit=20)
    assert page(offset=5, limit=5) == first[5:10]
    earliest = page(limit=20, direction="earliest")
    times = [e["event_time"] for e in earliest]
    assert times == sorted(times)
    everything: list[dict] = []
    offset = 0
    while True:
        chunk = page(offset=offset, limit=1000)
        everything.extend(chunk)
        if len(chunk) < 1000:
            break
        offset += 1000
    num_events = client.get("/api/2/useractivity", params={"user": active_user, "limit": 1}).json()[
        "userData"
    ]
    assert len(everything) == num_events["num_events"]
    assert len({e["$insert_id"] for e in everything}) == len(everything)


def test_user_activity_events_are_the_exported_events(client, active_user) -> None:
    event = client.get("/api/2/useractivity", params={"user": active_user, "limit": 1}).json()[
        "events"
    ][0]
    hour = event["server_upload_time"][:13].replace("-", "").replace(" ", "T")
    r = client.get("/api/2/export", params={"start": hour, "end": hour})
    assert r.status_code == 200
    exported = {}
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        for name in archive.namelist():
            for line in gzip.decompress(archive.read(name)).splitlines():
                record = orjson.loads(line)
                exported[record["$insert_id"]] = record
    assert exported[event["$insert_id"]] == event


def test_user_activity_errors(client) -> None:
    bad_limit = client.get("/api/2/useractivity", params={"user": 1, "limit": 1001})
    assert bad_limit.status_code == 400
    assert bad_limit.json()["error"]["type"] == "invalid"
    assert client.get("/api/2/useractivity", params={"user": "visitor-1"}).status_code == 400
    assert client.get("/api/2/useractivity", params={"user": 12345}).status_code == 400
    assert client.get("/api/2/usersearch").status_code == 400


def wait_in_flight(server: SandboxServer, key: str, count: int) -> None:
    """Until ``count`` requests hold ``key`` slots, per the sandbox's ``/_sandbox/limits``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        limits = httpx.get(server.urls.control() + "/limits", timeout=30).json()
        if limits["amplitude"]["us"][key] >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} requests never held {key} together")


def test_eleventh_concurrent_lookup_is_429(client, lookup_sandbox) -> None:
    statuses: list[int] = []

    def slow() -> None:
        r = client.get("/api/2/usersearch", params={"user": "nobody"}, headers={HOLD_HEADER: "2.5"})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=slow) for _ in range(10)]
    for t in threads:
        t.start()
    wait_in_flight(lookup_sandbox, "lookup_in_flight", 10)
    eleventh = client.get("/api/2/useractivity", params={"user": 1})
    for t in threads:
        t.join()
    assert statuses == [200] * 10
    assert eleventh.status_code == 429
    assert "concurrent" in eleventh.json()["error"]["metadata"]["details"]


def test_three_hundred_sixty_first_lookup_in_an_hour_is_429() -> None:
    with SandboxServer(SandboxConfig(seed=22, now=NOW)) as server:
        keys = server.config.amplitude_keys["us"]
        with httpx.Client(
            base_url=server.urls.amplitude("us"), timeout=30, auth=(keys.api_key, keys.secret_key)
        ) as c:
            statuses = {
                c.get("/api/2/usersearch", params={"user": f"x{i}"}).status_code for i in range(360)
            }
            refused = c.get("/api/2/usersearch", params={"user": "visitor-0000001"})
    assert statuses == {200}
    assert refused.status_code == 429
    assert "rate limit" in refused.json()["error"]["metadata"]["details"]


def test_an_ingested_user_is_searchable_profiled_and_in_cohorts(client, lookup_sandbox) -> None:
    keys = lookup_sandbox.config.amplitude_keys["us"]
    base = lookup_sandbox.urls.amplitude("us")
    before = {c["name"]: c["size"] for c in client.get("/api/3/cohorts").json()["cohorts"]}
    sent = int(NOW.timestamp() * 1000) - 3_600_000
    r = httpx.post(
        base + "/2/httpapi",
        timeout=30,
        json={
            "api_key": keys.api_key,
            "events": [
                {
                    "user_id": "newcomer-1",
                    "device_id": "device-newcomer-1",
                    "event_type": "Tried It",
                    "time": sent,
                    "user_properties": {"plan": "enterprise"},
                }
            ],
        },
    )
    assert r.status_code == 200
    found = search(client, "device-newcomer-1")
    assert found["type"] == "match_user_or_device_id"
    amp = found["matches"][0]["amplitude_id"]
    assert search(client, "newcomer")["matches"][0]["amplitude_id"] == amp
    activity = client.get("/api/2/useractivity", params={"user": amp}).json()
    assert activity["userData"]["num_events"] == 1
    assert activity["userData"]["first_used"] == NOW.date().isoformat()
    assert [e["event_type"] for e in activity["events"]] == ["Tried It"]
    after = {c["name"]: c["size"] for c in client.get("/api/3/cohorts").json()["cohorts"]}
    assert after["New users this week"] == before["New users this week"] + 1
    assert after["Enterprise users"] == before["Enterprise users"] + 1
    profile = httpx.get(
        base + "/v1/userprofile",
        timeout=30,
        params={"user_id": "newcomer-1", "get_amp_props": "true"},
        headers={"Authorization": f"Api-Key {keys.secret_key}"},
    )
    assert profile.json()["userData"]["amp_props"]["plan"] == "enterprise"
