"""Amplitude sandbox: the event expansion itself (counts, determinism, staged changes)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import numpy as np
import orjson
import pytest
from amplitude_helpers import NOW, amplitude_sandbox, client, export_records

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.amplitude import events as amp_events
from analytics_assets.sandbox.amplitude.events import row_event_counts
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.state import SandboxState

HOUR_MS = 3_600_000


def _tenant(seed: int = 31, **config) -> AmplitudeTenant:
    return AmplitudeTenant(SandboxState(SandboxConfig(seed=seed, now=NOW, **config)), "us")


@pytest.fixture(scope="module")
def tenant() -> AmplitudeTenant:
    return _tenant()


def test_each_row_yields_a_deterministic_count(tenant: AmplitudeTenant) -> None:
    assert row_event_counts(np.array([1, 2, 5, 10]), 0.6).tolist() == [1, 1, 3, 6]
    day = date(2026, 6, 16)
    act = tenant.world.activity(day)
    lo, hi = tenant.company.day_bounds(day)
    batch = tenant.events.batch_between(lo, hi + HOUR_MS, by="time")
    in_rows = batch.etype != tenant.events.catalog.t_signup
    rows_total = int(row_event_counts(act.num_events, tenant.events.ratio).sum())
    # Events of the Pendo day's rows (the next hour catches nothing: rows end at hi).
    assert int((in_rows & (batch.t < hi)).sum()) == rows_total


def test_expansion_is_reproducible_and_seed_dependent() -> None:
    hour = int(NOW.timestamp() * 1000) - 21 * HOUR_MS  # 15:00 UTC, a busy hour
    a = b"".join(c.ndjson() for c in _tenant(5).events.iter_export_records(hour, hour))
    b = b"".join(c.ndjson() for c in _tenant(5).events.iter_export_records(hour, hour))
    c = b"".join(c.ndjson() for c in _tenant(6).events.iter_export_records(hour, hour))
    assert a == b and a != c and a.count(b"\n") > 10


def test_records_sizes_and_order_within_sessions(tenant: AmplitudeTenant) -> None:
    hour = int(NOW.timestamp() * 1000) - 26 * HOUR_MS
    lines = b"".join(c.ndjson() for c in tenant.events.iter_export_records(hour, hour)).split(b"\n")
    records = [orjson.loads(line) for line in lines if line]
    mean = sum(len(line) + 1 for line in lines if line) / len(records)
    assert abs(mean - amp_events.AVG_RECORD_BYTES) / amp_events.AVG_RECORD_BYTES < 0.15
    starts = [r for r in records if r["event_type"] == "Session Start"]
    assert starts and all(r["session_id"] == _ms(r["event_time"]) for r in starts)
    assert all(r["event_type"] in tenant.events.catalog.type_names() for r in records)


def _ms(ts: str) -> int:
    from datetime import UTC, datetime

    moment = datetime.strptime(ts, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def test_summaries_match_the_frames(tenant: AmplitudeTenant) -> None:
    day = date(2026, 6, 15)
    frame = tenant.events.day_frame(day)
    totals, uniques = tenant.events.type_counts(day)
    assert totals.sum() == len(frame)
    page = tenant.events.catalog.t_page
    assert uniques[page] == np.unique(frame.amp[frame.etype == page]).size
    amps, counts = tenant.events.user_counts(day, page)
    assert counts.sum() == totals[page] and amps.size == uniques[page]
    assert tenant.events.active_users(day).size == np.unique(frame.amp).size


def test_a_query_over_more_days_than_the_cache_holds_builds_each_day_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Plain LRU under a scan: a query over more rows than the cache holds evicted its own
    # first days, so every later query over the same range rebuilt all of them.
    tenant = _tenant()
    store = tenant.events
    days = [date(2026, 6, 1) + timedelta(days=i) for i in range(6)]
    one_day = len(store.day_frame(days[0]))
    monkeypatch.setattr(amp_events, "FRAME_CACHE_ROWS", 2 * one_day)
    built: list[date] = []
    build = store._build_frame

    def counting(day: date, lo: int, hi: int) -> amp_events.Frame:
        built.append(day)
        return build(day, lo, hi)

    monkeypatch.setattr(store, "_build_frame", counting)
    first = store.day_frames(days)
    again = store.day_frames(days)
    assert built == days[1:]  # the first day was cached before; nothing was rebuilt
    assert all(a is b for a, b in zip(first, again, strict=True))
    # A single day's query trims the cache back to its cap (plus the day it asks for).
    store.day_frame(date(2026, 6, 10))
    assert sum(len(f) for f in store._frame_cache.values()) <= 3 * one_day


def test_user_records_are_one_users_events(tenant: AmplitudeTenant) -> None:
    day = date(2026, 6, 15)
    frame = tenant.events.day_frame(day)
    amp = int(frame.amp[0])
    lo, hi = tenant.day_bounds(day)
    records = tenant.events.user_records(amp, lo, hi)
    assert len(records) == int((frame.amp == amp).sum())
    assert {r["amplitude_id"] for r in records} == {amp}
    times = [r["event_time"] for r in records]
    assert times == sorted(times, reverse=True)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    # Reads the hour that ends at the frozen now: without the Export API's lag (it has
    # tests of its own in test_amplitude_export_lag.py).
    with amplitude_sandbox(seed=32, export_lag_seconds=0) as s:
        yield s


def test_late_events_land_in_their_arrival_hour(server: SandboxServer) -> None:
    http = client(server)
    day = "20260619"
    seg = {
        "e": orjson.dumps({"event_type": "_all"}).decode(),
        "start": day,
        "end": day,
        "m": "totals",
    }
    before = http.get("/api/2/events/segmentation", params=seg).json()["data"]["series"][0][0]
    httpx.post(
        f"{server.urls.control()}/stage",
        json={
            "region": "us",
            "action": "late_events",
            "visitor_id": "visitor-0000003",
            "time": "2026-06-19T15:10:00+00:00",
            "num_events": 20,
            "arrived": "2026-06-20T11:20:00+00:00",
        },
    )
    after = http.get("/api/2/events/segmentation", params=seg).json()["data"]["series"][0][0]
    assert after - before == 12  # round(20 × 0.6)
    late = [
        r
        for r in export_records(http, "20260620T11", "20260620T11")
        if r["user_id"] == "visitor-0000003" and r["event_time"].startswith("2026-06-19")
    ]
    assert len(late) == 12
    assert all(r["server_upload_time"] >= "2026-06-20 11:20:00" for r in late)
    # The original hour's file is unchanged by the late arrival.
    original = [
        r
        for r in export_records(http, "20260619T15", "20260619T15")
        if r["user_id"] == "visitor-0000003" and r["server_upload_time"] >= "2026-06-20"
    ]
    assert original == []


def test_a_quiet_account_disappears_from_later_hours(server: SandboxServer) -> None:
    http = client(server, "eu")
    records = export_records(http, "20260618T14", "20260618T14")
    account = records[0]["groups"]["account"]
    assert any(r["groups"]["account"] == account for r in records)
    httpx.post(
        f"{server.urls.control()}/stage",
        json={
            "region": "eu",
            "action": "account_quiet",
            "account_id": account,
            "from": (NOW - timedelta(days=5)).isoformat(),
        },
    )
    again = export_records(http, "20260618T14", "20260618T14")
    assert not any(r["groups"]["account"] == account for r in again)
    assert len(again) < len(records)
