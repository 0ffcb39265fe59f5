"""Amplitude sandbox: the Export API and auth over real HTTP (zip layout, selection, errors)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from amplitude_helpers import NOW, amplitude_sandbox, client, error_details, read_export

from analytics_assets.sandbox import SandboxConfig, SandboxServer

LIVE_KEYS = {
    "$insert_id",
    "$insert_key",
    "$schema",
    "adid",
    "amplitude_attribution_ids",
    "amplitude_event_type",
    "amplitude_id",
    "app",
    "city",
    "client_event_time",
    "client_upload_time",
    "country",
    "data",
    "data_type",
    "device_brand",
    "device_carrier",
    "device_family",
    "device_id",
    "device_manufacturer",
    "device_model",
    "device_type",
    "dma",
    "event_id",
    "event_properties",
    "event_time",
    "event_type",
    "global_user_properties",
    "group_properties",
    "groups",
    "idfa",
    "ip_address",
    "is_attribution_event",
    "language",
    "library",
    "location_lat",
    "location_lng",
    "os_name",
    "os_version",
    "partner_id",
    "paying",
    "plan",
    "platform",
    "processed_time",
    "region",
    "sample_rate",
    "server_received_time",
    "server_upload_time",
    "session_id",
    "source_id",
    "start_version",
    "user_creation_time",
    "user_id",
    "user_properties",
    "uuid",
    "version_name",
}
TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with amplitude_sandbox(seed=11) as s:
        yield s


@pytest.fixture(scope="module")
def us(server: SandboxServer) -> Iterator[httpx.Client]:
    with client(server) as c:
        yield c


@pytest.fixture(scope="module")
def day_export(us: httpx.Client) -> httpx.Response:
    response = us.get("/api/2/export", params={"start": "20260616T00", "end": "20260616T23"})
    assert response.status_code == 200, response.text
    return response


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


def test_export_is_a_zip_of_gzipped_ndjson_members_named_like_live(
    server: SandboxServer, day_export: httpx.Response
) -> None:
    assert day_export.headers["content-type"] == "application/zip"
    members = read_export(day_export)
    pid = server.config.amplitude_keys["us"].project_id
    pattern = re.compile(rf"^{pid}/{pid}_2026-06-16_(\d{{1,2}})#(\d+)\.json\.gz$")
    hours = set()
    for name in members:
        match = pattern.match(name)
        assert match, name
        assert not match.group(1).startswith("0") or match.group(1) == "0"  # not zero-padded
        hours.add(int(match.group(1)))
    assert {13, 14, 15} <= hours  # the working day (New York morning) is there
    assert sum(len(r) for r in members.values()) > 1000


def test_records_carry_the_live_keys_with_export_formats(day_export: httpx.Response) -> None:
    records = [r for rs in read_export(day_export).values() for r in rs]
    record = records[0]
    assert set(record) == LIVE_KEYS
    for key in (
        "event_time",
        "server_upload_time",
        "client_event_time",
        "processed_time",
        "server_received_time",
        "client_upload_time",
        "user_creation_time",
    ):
        assert TS.match(record[key]), (key, record[key])
    assert isinstance(record["amplitude_id"], int)
    assert record["user_id"].startswith("visitor-")
    assert record["groups"]["account"].startswith("account-")
    assert set(record["user_properties"]) >= {"plan", "role", "account"}
    assert record["data_type"] == "event" and record["library"] == "http/2.0"
    assert len({r["$insert_id"] for r in records}) == len(records)
    # A user's Amplitude ID and device are stable across events.
    by_user: dict[str, set] = {}
    for r in records:
        if r["platform"] == "Web":
            by_user.setdefault(r["user_id"], set()).add((r["amplitude_id"], r["device_id"]))
    assert all(len(ids) == 1 for ids in by_user.values())
    sizes = [len(line) for line in day_export.content.split(b"\n")]
    assert sizes  # the record size estimate is checked in the events unit tests


def test_members_select_events_by_upload_hour_not_event_hour(day_export: httpx.Response) -> None:
    members = read_export(day_export)
    late = 0
    for name, records in members.items():
        hour = int(name.split("_")[-1].split("#")[0])
        for r in records:
            uploaded = _parse(r["server_upload_time"])
            assert uploaded.hour == hour and uploaded.date().isoformat() == "2026-06-16"
            assert _parse(r["event_time"]) <= uploaded
            late += _parse(r["event_time"]).hour != hour
    assert late > 0  # a few % of events are uploaded in a later hour than they happened


def test_an_hour_above_the_member_size_is_split_into_parts(
    server: SandboxServer, us: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analytics_assets.sandbox.amplitude import events

    monkeypatch.setattr(events, "MEMBER_EVENTS", 50)
    response = us.get("/api/2/export", params={"start": "20260616T14", "end": "20260616T14"})
    names = sorted(read_export(response))
    assert len(names) > 2
    assert [n.split("#")[1] for n in names[:2]] == ["0.json.gz", "1.json.gz"]
    assert all(len(r) <= 50 for r in read_export(response).values())


def test_empty_range_is_the_live_404(us: httpx.Client) -> None:
    response = us.get("/api/2/export", params={"start": "20200101T00", "end": "20200101T05"})
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "http_code": 404,
            "type": "unspecified",
            "message": "Unspecified Error",
            "metadata": {"details": "Raw data files were not found."},
        }
    }
    # Hours after "now" have no processed data either.
    future = us.get("/api/2/export", params={"start": "20260620T13", "end": "20260620T20"})
    assert future.status_code == 404


@pytest.mark.parametrize(
    ("start", "end", "details"),
    [
        ("2026061600", "20260616T01", "YYYYMMDDTHH"),
        ("20260616T05", "20260616T01", "before"),
        ("20250101T00", "20260616T01", "365"),
        ("20260231T00", "20260301T00", "YYYYMMDDTHH"),
    ],
)
def test_bad_parameters_are_400(us: httpx.Client, start: str, end: str, details: str) -> None:
    response = us.get("/api/2/export", params={"start": start, "end": end})
    assert response.status_code == 400
    assert details in error_details(response)


def test_auth_failures_are_the_403_bodies(server: SandboxServer) -> None:
    base = server.urls.amplitude()
    us_keys, eu_keys = server.config.amplitude_keys["us"], server.config.amplitude_keys["eu"]
    params = {"start": "20260616T10", "end": "20260616T10"}
    wrong_secret = httpx.get(
        f"{base}/api/2/export", params=params, auth=(us_keys.api_key, "not-the-secret")
    )
    other_region = httpx.get(
        f"{base}/api/2/export", params=params, auth=(eu_keys.api_key, eu_keys.secret_key)
    )
    missing = httpx.get(f"{base}/api/2/export", params=params)
    assert wrong_secret.status_code == other_region.status_code == missing.status_code == 403
    assert error_details(wrong_secret) == "Invalid API/Secret Key combination"
    assert error_details(other_region) == "Invalid API Key"
    assert error_details(missing) == "Invalid API Key"


def test_eu_project_serves_its_own_data(server: SandboxServer, day_export: httpx.Response) -> None:
    with client(server, "eu") as eu:
        response = eu.get("/api/2/export", params={"start": "20260616T00", "end": "20260616T23"})
    assert response.status_code == 200
    eu_records = [r for rs in read_export(response).values() for r in rs]
    us_records = [r for rs in read_export(day_export).values() for r in rs]
    eu_pid = server.config.amplitude_keys["eu"].project_id
    assert {r["app"] for r in eu_records} == {eu_pid}
    assert len(eu_records) != len(us_records)
    assert {r["country"] for r in eu_records} <= {
        "Germany",
        "France",
        "Netherlands",
        "Spain",
        "Ireland",
    }


def test_too_large_is_400_and_too_slow_is_504() -> None:
    with amplitude_sandbox(seed=11, export_max_bytes=200_000) as small, client(small) as http:
        response = http.get("/api/2/export", params={"start": "20260616T00", "end": "20260616T23"})
        assert response.status_code == 400
        assert "size limit" in error_details(response)
        # A single quiet hour stays under the limit.
        ok = http.get("/api/2/export", params={"start": "20260616T05", "end": "20260616T05"})
        assert ok.status_code in (200, 404)
    with amplitude_sandbox(seed=11, export_time_budget_seconds=0.001) as slow, client(slow) as http:
        response = http.get("/api/2/export", params={"start": "20260616T00", "end": "20260616T23"})
        assert response.status_code == 504
        assert response.json()["error"]["http_code"] == 504


def test_processing_lag_hides_recent_hours() -> None:
    with amplitude_sandbox(seed=11, processing_lag_hours=2) as lagged, client(lagged) as http:
        # now = 12:00; with a 2 h lag nothing uploaded after 10:00 is exportable yet.
        recent = http.get("/api/2/export", params={"start": "20260620T10", "end": "20260620T11"})
        assert recent.status_code == 404
        older = http.get("/api/2/export", params={"start": "20260619T13", "end": "20260619T14"})
        assert older.status_code == 200


def test_large_exports_stream() -> None:
    """Headers and the first members arrive long before the archive is complete."""
    config = SandboxConfig(seed=11, now=NOW, amplitude_events_per_pendo_event=25)
    with SandboxServer(config) as big, client(big) as http:
        started = time.monotonic()
        chunks = 0
        with http.stream(
            "GET", "/api/2/export", params={"start": "20260616T00", "end": "20260616T23"}
        ) as response:
            headers_at = time.monotonic() - started
            assert response.status_code == 200
            first_at = None
            size = 0
            for chunk in response.iter_raw():
                chunks += 1
                size += len(chunk)
                if first_at is None:
                    first_at = time.monotonic() - started
        total = time.monotonic() - started
        # A client that walks away mid-stream frees its Dashboard slot at once.
        with http.stream(
            "GET", "/api/2/export", params={"start": "20260616T00", "end": "20260616T23"}
        ) as abandoned:
            next(abandoned.iter_raw())
        state = f"{big.urls.control()}/amplitude/state"
        deadline = time.monotonic() + 5
        while httpx.get(state).json()["us"]["dashboard_in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(state).json()["us"]["dashboard_in_flight"] == 0
    assert size > 5_000_000
    assert chunks > 10
    assert headers_at < total / 3
    assert first_at is not None and first_at < total / 2
