"""AmplitudeClient ingestion over real HTTP against the sandbox: chunking within the caps,
400 handling, 429 pauses, retries that never double an event, identify, group identify."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from analytics_assets.amplitude.client import AmplitudeClient
from analytics_assets.http.errors import AuthenticationError
from analytics_assets.sandbox.config import AmplitudeLimits, SandboxConfig
from analytics_assets.sandbox.server import SandboxServer

NOW = datetime(2026, 6, 18, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
# The sandbox's per-device allowance: 200 events/s averaged over 30 s = bursts of 6,000.
EPS = 200.0


def _sandbox(eps: float) -> SandboxServer:
    # The tests export the hour they ingest into: no export lag.
    limits = AmplitudeLimits(
        processing_lag_hours=0, ingestion_eps_per_device=eps, export_lag_seconds=0
    )
    return SandboxServer(SandboxConfig(seed=7, now=NOW, amplitude_limits=limits))


def _client(sandbox: SandboxServer) -> AmplitudeClient:
    keys = sandbox.config.amplitude_keys["us"]
    url = sandbox.urls.amplitude("us")
    # 30 s pauses become 1.5 s: the sandbox refills 300 events per paused device meanwhile.
    return AmplitudeClient(
        keys.api_key,
        keys.secret_key,
        base_url=url,
        ingestion_url=url,
        throttle_pause_factor=0.05,
        max_retry_time=30,
    )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with _sandbox(EPS) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[AmplitudeClient]:
    with _client(sandbox) as c:
        yield c


@pytest.fixture
def control(sandbox: SandboxServer) -> Iterator[str]:
    url = sandbox.urls.control()
    httpx.delete(f"{url}/faults")
    httpx.post(f"{url}/counters/reset")
    yield url
    httpx.delete(f"{url}/faults")


def answers(control: str, path: str) -> dict[int, int]:
    out: dict[int, int] = {}
    for row in httpx.get(f"{control}/counters").json()["requests"]:
        if row["path"] == path:
            out[row["status"]] = out.get(row["status"], 0) + row["count"]
    return out


def events(kind: str, n: int, users: int = 50, **extra) -> list[dict]:
    return [
        {
            "event_type": kind,
            "user_id": f"ingest-user-{i % users:04d}",
            "device_id": f"ingest-device-{i % users:04d}",
            "time": NOW_MS - 60_000 + i,
            **extra,
        }
        for i in range(n)
    ]


def exported(client: AmplitudeClient, kind: str, tmp_path: Path) -> int:
    result = client.export(NOW, NOW, tmp_path)
    return sum(
        1
        for f in result.files
        for line in gzip.decompress(f.read_bytes()).splitlines()
        if json.loads(line)["event_type"] == kind
    )


def test_events_are_chunked_within_the_caps(client: AmplitudeClient, control: str) -> None:
    big = events("Chunk Test", 4500, event_properties={"pad": "x" * 300})
    result = client.send_events(big)
    assert result.ingested == 4500 and result.failed_events == []
    ok = answers(control, "/2/httpapi")
    # 4,500 events of ~500 bytes: the 1 MB cap, not the 2,000-event cap, sets the size.
    assert ok == {200: ok[200]} and ok[200] >= 3
    batch = client.send_events(events("Chunk Batch", 2500), batch_api=True)
    assert batch.ingested == 2500 and answers(control, "/batch") == {200: 2}


def test_invalid_events_are_reported_and_the_rest_ingested(
    client: AmplitudeClient, control: str
) -> None:
    batch = events("Invalid Test", 10)
    batch[2]["time"] = "yesterday"
    batch[5]["user_id"] = "null"
    batch[5].pop("device_id")
    del batch[7]["event_type"]
    result = client.send_events(batch)
    assert result.ingested == 7
    assert [i for i, _ in result.failed_events] == [2, 5, 7]
    reasons = dict(result.failed_events)
    assert "time" in reasons[2] and "event_type" in reasons[7]


# A sandbox whose per-device burst (60 events/s over 30 s = 1,800) is below one request's
# 2,000 events: a request with 1,900 events of one device is refused however fast or slow
# the machine is, so the 429 path is exercised without a race against the refill.
SMALL_EPS = 60.0


@pytest.fixture(scope="module")
def small_burst() -> Iterator[SandboxServer]:
    with _sandbox(SMALL_EPS) as server:
        yield server


def test_throttled_devices_pause_and_only_their_events_are_resent(
    small_burst: SandboxServer, tmp_path: Path
) -> None:
    control = small_burst.urls.control()
    hot = [
        {**e, "user_id": "hot-user-1", "device_id": "hot-device-1"}
        for e in events("Throttle Test", 2100, users=1)
    ]
    # (A different property: identical content would share an insert_id and count once.)
    cold = events("Throttle Test", 300, users=30, event_properties={"side": "cold"})
    # The first request holds 1,900 hot events and 100 cold ones.
    mixed = hot[:1900] + cold + hot[1900:]
    with _client(small_burst) as client:
        result = client.send_events(mixed)
        assert result.failed_events == [] and result.ingested == len(mixed)
        # The first request's 1,900 hot events were held back and resent (at least once).
        assert result.throttled_retries >= 1900
        statuses = answers(control, "/2/httpapi")
        assert statuses.get(429, 0) >= 1
        limits = httpx.get(f"{control}/limits").json()["amplitude"]["us"]
        assert limits["httpapi_throttled"] >= 1
        # Nothing doubled although some requests were refused and resent.
        assert exported(client, "Throttle Test", tmp_path) == len(mixed)


def test_retries_after_a_dropped_answer_never_double(
    client: AmplitudeClient, control: str, tmp_path: Path
) -> None:
    # The server ingests, then the connection drops before the answer: the client resends,
    # and the insert_ids make the server ignore the second copy.
    httpx.post(f"{control}/faults", json={"kind": "drop", "count": 1, "path": "/2/httpapi"})
    batch = events("Retry Test", 120)
    result = client.send_events(batch)
    assert client.stats.snapshot().retries == 1
    httpx.post(
        f"{control}/faults", json={"kind": "error", "status": 503, "count": 1, "path": "/2/httpapi"}
    )
    again = client.send_events(batch)  # a re-run of the same partition, after a 503
    assert result.ingested == again.ingested == 120
    assert client.stats.snapshot().retries == 2
    assert exported(client, "Retry Test", tmp_path) == 120


def test_identify_and_group_identify(client: AmplitudeClient, control: str) -> None:
    n = client.identify(
        {"user_id": f"ingest-user-{i:04d}", "user_properties": {"$set": {"plan": "pro"}}}
        for i in range(1500)
    )
    assert n == 1500 and answers(control, "/identify") == {200: 2}
    assert client.group_identify("company", "acme", {"$set": {"tier": "gold"}}) == 1
    many = client.group_identify_many(
        {"group_type": "company", "group_value": f"co-{i}", "group_properties": {"n": i}}
        for i in range(1100)
    )
    assert many == 1100 and answers(control, "/groupidentify") == {200: 3}


def test_wrong_ingestion_key_is_fatal_and_secret_free(sandbox: SandboxServer) -> None:
    url = sandbox.urls.amplitude("us")
    key = "wrong-ingestion-key-123"
    with AmplitudeClient(key, "whatever-secret-1", base_url=url, ingestion_url=url) as bad:
        with pytest.raises(AuthenticationError) as info:
            bad.send_events(events("Bad Key", 3))
        assert key not in str(info.value)
        with pytest.raises(AuthenticationError):
            bad.identify([{"user_id": "ingest-user-0001", "user_properties": {"a": 1}}])
