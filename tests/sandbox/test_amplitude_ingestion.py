"""Amplitude sandbox: ingestion over real HTTP, and the official Python SDK end to end."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from amplitude_helpers import NOW, amplitude_sandbox, client, export_records

from analytics_assets.sandbox import SandboxConfig, SandboxServer

NOW_MS = int(NOW.timestamp() * 1000)
THIS_HOUR = NOW.strftime("%Y%m%dT%H")
TODAY = NOW.strftime("%Y%m%d")


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    # These tests export the hour they ingest into at the frozen now: no Export API lag
    # here (test_amplitude_export_lag.py covers it).
    with amplitude_sandbox(
        seed=12, ingestion_eps_per_device=1.0, batch_eps_per_device=2.0, export_lag_seconds=0
    ) as s:
        yield s


@pytest.fixture(scope="module")
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with client(server) as c:
        yield c


@pytest.fixture(scope="module")
def api_key(server: SandboxServer) -> str:
    return server.config.amplitude_keys["us"].api_key


def _event(event_type: str, device: str, **extra) -> dict:
    return {"event_type": event_type, "device_id": device, "time": NOW_MS - 60_000, **extra}


def _exported(http: httpx.Client, event_type: str) -> list[dict]:
    return [r for r in export_records(http, THIS_HOUR, THIS_HOUR) if r["event_type"] == event_type]


def test_accepted_events_answer_the_live_200_and_reach_the_export(
    http: httpx.Client, api_key: str
) -> None:
    body = {
        "api_key": api_key,
        "events": [
            _event(
                "Ingest OK",
                "device-ok-001",
                user_id="user-ok-001",
                event_properties={"source": "test"},
                price=12.5,
                quantity=2,
                productId="sku-1",
                revenueType="purchase",
            ),
            _event("Ingest OK", "device-ok-002"),
        ],
    }
    response = http.post("/2/httpapi", json=body)
    assert response.status_code == 200
    payload = response.json()
    assert payload["code"] == 200 and payload["events_ingested"] == 2
    assert payload["server_upload_time"] == NOW_MS
    assert (
        payload["payload_size_bytes"] == len(json.dumps(body).encode())
        or payload["payload_size_bytes"] > 100
    )
    records = {r["device_id"]: r for r in _exported(http, "Ingest OK")}
    assert set(records) == {"device-ok-001", "device-ok-002"}
    first = records["device-ok-001"]
    assert first["user_id"] == "user-ok-001"
    assert first["event_properties"]["source"] == "test"
    assert first["event_properties"]["$revenue"] == 25.0
    assert first["data"]["path"] == "/2/httpapi"
    assert isinstance(first["amplitude_id"], int)
    assert records["device-ok-002"]["user_id"] is None


def test_validation_answers_the_documented_400_body(http: httpx.Client, api_key: str) -> None:
    events = [
        _event("Valid", "device-val-000"),
        {"device_id": "device-val-001"},
        {"event_type": "Bad time", "device_id": "device-val-002", "time": "yesterday"},
        {"event_type": "Short id", "user_id": "abc"},
        {"event_type": "Rejected id", "device_id": "null"},
    ]
    response = http.post("/2/httpapi", json={"api_key": api_key, "events": events})
    assert response.status_code == 400
    assert response.json() == {
        "code": 400,
        "error": "Request missing required field",
        "events_with_missing_fields": {"event_type": [1]},
        "events_with_invalid_fields": {"time": [2], "device_id": [4]},
        "events_with_invalid_id_lengths": {"user_id": [3]},
    }
    # Nothing of a refused request is ingested; min_id_length lowers the bar.
    assert _exported(http, "Valid") == []
    relaxed = http.post(
        "/2/httpapi",
        json={
            "api_key": api_key,
            "options": {"min_id_length": 3},
            "events": [{"event_type": "Short ok", "user_id": "abc"}],
        },
    )
    assert relaxed.status_code == 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"events": []},
            {"code": 400, "error": "Request missing required field", "missing_field": "api_key"},
        ),
        (
            {"api_key": "KEY"},
            {"code": 400, "error": "Request missing required field", "missing_field": "events"},
        ),
        ({"api_key": "nope", "events": []}, {"code": 400, "error": "Invalid API key: nope"}),
    ],
)
def test_request_level_errors(http: httpx.Client, api_key: str, body: dict, expected: dict) -> None:
    if body.get("api_key") == "KEY":
        body = {**body, "api_key": api_key}
    response = http.post("/2/httpapi", json=body)
    assert response.status_code == 400
    assert response.json() == expected
    broken = http.post(
        "/2/httpapi", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.json() == {"code": 400, "error": "Invalid JSON request body"}


def test_payload_limits_answer_413(http: httpx.Client, api_key: str) -> None:
    too_many = [_event("Many", f"device-many-{i:05d}") for i in range(2001)]
    response = http.post("/2/httpapi", json={"api_key": api_key, "events": too_many})
    assert response.status_code == 413
    assert response.json() == {"code": 413, "error": "Payload too large"}
    props = {f"key_{k:03d}": "x" * 40 for k in range(20)}
    big = [_event("Big", f"device-big-{i:05d}", event_properties=props) for i in range(1000)]
    body = {"api_key": api_key, "events": big}
    assert len(json.dumps(body)) > 1024 * 1024
    assert http.post("/2/httpapi", json=body).status_code == 413
    # /batch takes up to 20 MB.
    assert http.post("/batch", json=body).status_code == 200


def test_a_device_above_its_eps_gets_the_429_body(http: httpx.Client, api_key: str) -> None:
    # 1 event/s per device here, averaged over 30 s: a burst of 40 is throttled.
    events = [_event("Throttle", "device-hot-001") for _ in range(40)]
    events += [_event("Throttle", "device-cool-01") for _ in range(3)]
    response = http.post("/2/httpapi", json={"api_key": api_key, "events": events})
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == 429
    assert body["error"] == "Too many requests for some devices and users"
    assert body["eps_threshold"] == 1
    assert body["throttled_devices"] == {"device-hot-001": 40}
    assert body["throttled_users"] == {}
    assert body["throttled_events"] == list(range(40))
    assert _exported(http, "Throttle") == []
    batch = http.post(
        "/batch",
        json={
            "api_key": api_key,
            "events": [_event("Batch throttle", "device-hot-002") for _ in range(80)],
        },
    )
    assert batch.status_code == 429
    assert batch.json()["eps_threshold"] == 2
    assert "exceeded_daily_quota_devices" in batch.json()


def test_insert_id_deduplicates_per_device(http: httpx.Client, api_key: str) -> None:
    event = _event("Dedup", "device-dedup-1", insert_id="insert-0001")
    for _ in range(3):
        assert (
            http.post("/2/httpapi", json={"api_key": api_key, "events": [event]}).status_code == 200
        )
    other_device = {**event, "device_id": "device-dedup-2"}
    http.post("/2/httpapi", json={"api_key": api_key, "events": [other_device]})
    records = _exported(http, "Dedup")
    assert sorted(r["device_id"] for r in records) == ["device-dedup-1", "device-dedup-2"]


def test_gzip_request_bodies_are_accepted(http: httpx.Client, api_key: str) -> None:
    body = gzip.compress(
        orjson.dumps({"api_key": api_key, "events": [_event("Gzipped", "device-gzip-1")]})
    )
    response = http.post(
        "/2/httpapi",
        content=body,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 200
    assert len(_exported(http, "Gzipped")) == 1


def test_identify_and_group_identify_update_properties(http: httpx.Client, api_key: str) -> None:
    ident = {
        "user_id": "identify-user-01",
        "user_properties": {"$set": {"favorite": "blue"}, "$add": {"logins": 2}},
    }
    for _ in range(2):
        response = http.post(
            "/identify", data={"api_key": api_key, "identification": json.dumps(ident)}
        )
        assert response.status_code == 200
        assert response.text == "success"
        assert response.headers["content-type"] == "text/html;charset=utf-8"
    via_get = http.get(
        "/identify",
        params={
            "api_key": api_key,
            "identification": json.dumps(
                [{"user_id": "identify-user-01", "user_properties": {"$append": {"tags": "a"}}}]
            ),
        },
    )
    assert via_get.text == "success"
    bad = http.post("/identify", data={"api_key": api_key, "identification": "not json"})
    assert bad.status_code == 400 and bad.text == "missing_event"
    group = {
        "group_type": "account",
        "group_value": "account-000001",
        "group_properties": {"$set": {"tier": "gold"}},
    }
    response = http.post(
        "/groupidentify", data={"api_key": api_key, "identification": json.dumps(group)}
    )
    assert response.status_code == 200 and response.text == "success"
    http.post(
        "/2/httpapi",
        json={
            "api_key": api_key,
            "events": [
                {
                    "event_type": "After identify",
                    "user_id": "identify-user-01",
                    "groups": {"account": "account-000001"},
                    "time": NOW_MS - 1000,
                }
            ],
        },
    )
    (record,) = _exported(http, "After identify")
    assert record["user_properties"] == {"favorite": "blue", "logins": 4, "tags": ["a"]}
    assert record["group_properties"]["account"]["account-000001"] == {"tier": "gold"}
    # Identify calls are not events of the Dashboard, but the raw export has them as
    # $identify rows (issue 19; this assertion said "no $identify rows" before).
    identified = [
        r
        for r in export_records(http, THIS_HOUR, THIS_HOUR)
        if r["event_type"] == "$identify" and r["user_id"] == "identify-user-01"
    ]
    assert len(identified) == 3 and all(r["data"]["path"] == "/identify" for r in identified)


def test_identify_on_a_synthetic_user_changes_later_records_only(
    server: SandboxServer, http: httpx.Client, api_key: str
) -> None:
    records = export_records(http, "20260619T14", "20260619T14")
    visitor = records[0]["user_id"]
    old_plan = records[0]["user_properties"]["plan"]
    ident = {"user_id": visitor, "user_properties": {"$set": {"plan": "platinum"}}}
    http.post("/identify", data={"api_key": api_key, "identification": json.dumps(ident)})
    again = [
        r for r in export_records(http, "20260619T14", "20260619T14") if r["user_id"] == visitor
    ]
    assert again and all(r["user_properties"]["plan"] == old_plan for r in again)
    http.post(
        "/2/httpapi",
        json={
            "api_key": api_key,
            "events": [{"event_type": "Upgraded check", "user_id": visitor, "time": NOW_MS - 500}],
        },
    )
    (record,) = _exported(http, "Upgraded check")
    assert record["user_properties"]["plan"] == "platinum"
    assert record["amplitude_id"] == again[0]["amplitude_id"]  # joins the synthetic user


def test_processing_lag_delays_visibility() -> None:
    # Processing lag alone: the Export API's own lag is tested in test_amplitude_export_lag.py.
    with (
        amplitude_sandbox(seed=12, processing_lag_hours=2, export_lag_seconds=0) as lagged,
        client(lagged) as http,
    ):
        key = lagged.config.amplitude_keys["us"].api_key
        http.post("/2/httpapi", json={"api_key": key, "events": [_event("Lagged", "device-lag-1")]})
        seg = {
            "e": json.dumps({"event_type": "Lagged"}),
            "start": TODAY,
            "end": TODAY,
            "m": "totals",
        }
        assert http.get("/api/2/events/segmentation", params=seg).json()["data"]["series"] == [[0]]
        assert (
            http.get("/api/2/export", params={"start": THIS_HOUR, "end": THIS_HOUR}).status_code
            == 404
        )
        later = NOW + timedelta(hours=2, minutes=1)
        httpx.post(f"{lagged.urls.control()}/clock", json={"now": later.isoformat()})
        assert http.get("/api/2/events/segmentation", params=seg).json()["data"]["series"] == [[1]]
        assert [
            r["event_type"]
            for r in export_records(http, THIS_HOUR, THIS_HOUR)
            if r["event_type"] == "Lagged"
        ] == ["Lagged"]


def test_the_official_sdk_round_trips_through_export_and_segmentation() -> None:
    """amplitude-analytics sends to the sandbox; its events come back from both APIs."""
    from amplitude import Amplitude, BaseEvent, Config

    # The SDK stamps events with the wall clock, so this sandbox follows it too.
    # The wall clock and the hour being filled: no Export API lag for this round trip.
    config = SandboxConfig(seed=13, now=None)
    config.amplitude_limits.export_lag_seconds = 0
    with SandboxServer(config) as live, client(live) as http:
        keys = live.config.amplitude_keys["us"]
        answers: list[int] = []
        done = threading.Event()

        def callback(event, code, message=None) -> None:
            answers.append(code)
            if len(answers) == 25:
                done.set()

        sdk = Amplitude(
            keys.api_key,
            Config(
                server_url=f"{live.urls.amplitude()}/2/httpapi",
                flush_queue_size=10,
                flush_interval_millis=200,
                callback=callback,
            ),
        )
        for i in range(25):
            sdk.track(
                BaseEvent(
                    event_type="SDK Round Trip",
                    user_id=f"sdk-user-{i % 5:04d}",
                    device_id=f"sdk-device-{i % 5:04d}",
                    event_properties={"n": i},
                )
            )
        sdk.flush()
        assert done.wait(20), answers
        sdk.shutdown()
        assert answers == [200] * 25

        now = datetime.now(UTC)
        hours = [(now - timedelta(hours=1)).strftime("%Y%m%dT%H"), now.strftime("%Y%m%dT%H")]
        mine = [r for r in export_records(http, *hours) if r["event_type"] == "SDK Round Trip"]
        assert len(mine) == 25
        assert {r["user_id"] for r in mine} == {f"sdk-user-{i:04d}" for i in range(5)}
        assert sorted(r["event_properties"]["n"] for r in mine) == list(range(25))
        assert all(r["library"].startswith("amplitude-python") for r in mine)

        days = sorted({r["event_time"][:10].replace("-", "") for r in mine})
        params = {
            "e": json.dumps({"event_type": "SDK Round Trip"}),
            "start": days[0],
            "end": days[-1],
        }
        totals = http.get("/api/2/events/segmentation", params={**params, "m": "totals"})
        uniques = http.get("/api/2/events/segmentation", params={**params, "m": "uniques"})
        assert totals.json()["data"]["seriesCollapsed"][0][0]["value"] == 25
        assert uniques.json()["data"]["seriesCollapsed"][0][0]["value"] == 5
        time.sleep(0)  # keep the server up until the last assertion has its answer
