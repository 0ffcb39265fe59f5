"""Amplitude sandbox: the Export API lags ingestion (``export_lag_seconds``, default 2 h).

An upload hour is exported once it has ended and the lag has passed ("data sent between
8-9 PM ... is available via the Export API at 11 PM"); until then it answers the
Export API's own "no data" 404. Dashboard queries do not wait for it.
"""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
from amplitude_helpers import NOW, amplitude_sandbox, client, error_details, read_export

from analytics_assets.sandbox.amplitude.export import NOT_FOUND_DETAILS, last_exported_hour_ms
from analytics_assets.sandbox.config import AmplitudeLimits

HOUR_MS = 3_600_000
NOW_MS = int(NOW.timestamp() * 1000)  # 2026-06-20 12:00 UTC


def _export(http: httpx.Client, start: str, end: str) -> httpx.Response:
    return http.get("/api/2/export", params={"start": start, "end": end})


def _set_clock(server, moment) -> None:
    httpx.post(
        f"{server.urls.control()}/clock", json={"now": moment.isoformat()}
    ).raise_for_status()


def test_default_is_two_hours() -> None:
    assert AmplitudeLimits().export_lag_seconds == 7200
    # At 12:00 the newest exported hour is 09 (it ended at 10:00, two hours ago).
    assert last_exported_hour_ms(NOW_MS, 7200) == NOW_MS - 3 * HOUR_MS
    assert last_exported_hour_ms(NOW_MS + 1, 7200) == NOW_MS - 3 * HOUR_MS
    assert last_exported_hour_ms(NOW_MS, 0) == NOW_MS  # no lag: the hour being filled


def test_recent_hours_answer_no_data_until_exported() -> None:
    with amplitude_sandbox(seed=41) as s, client(s) as http:
        ready = _export(http, "20260620T09", "20260620T09")
        assert ready.status_code == 200 and read_export(ready)
        for hour in ("20260620T10", "20260620T11", "20260620T12"):
            pending = _export(http, hour, hour)
            assert pending.status_code == 404, hour
            assert pending.json() == {
                "error": {
                    "http_code": 404,
                    "type": "unspecified",
                    "message": "Unspecified Error",
                    "metadata": {"details": NOT_FOUND_DETAILS},
                }
            }
        # A window reaching past the exported hours holds the exported ones only.
        spanning = read_export(_export(http, "20260620T09", "20260620T11"))
        assert {name.split("_")[-1].split("#")[0] for name in spanning} == {"9"}
        # The Dashboard is not held back: today's events are countable now.
        seg = http.get(
            "/api/2/events/segmentation",
            params={
                "e": json.dumps({"event_type": "_all"}),
                "start": "20260620",
                "end": "20260620",
            },
        )
        assert seg.json()["data"]["seriesCollapsed"][0][0]["value"] > 0
        # An hour later, hour 10 is exported with the events it held.
        _set_clock(s, NOW + timedelta(hours=1))
        later = _export(http, "20260620T10", "20260620T10")
        assert later.status_code == 200
        records = [r for rs in read_export(later).values() for r in rs]
        assert records and all(
            r["server_upload_time"].startswith("2026-06-20 10:") for r in records
        )


def test_ingested_events_reach_the_export_after_the_lag() -> None:
    with amplitude_sandbox(seed=42) as s, client(s) as http:
        key = s.config.amplitude_keys["us"].api_key
        event = {"event_type": "Lag Check", "user_id": "lag-user-01", "time": NOW_MS - 60_000}
        assert http.post("/2/httpapi", json={"api_key": key, "events": [event]}).status_code == 200
        pending = _export(http, "20260620T12", "20260620T12")
        assert pending.status_code == 404 and error_details(pending) == NOT_FOUND_DETAILS
        _set_clock(s, NOW + timedelta(hours=2, minutes=59))
        assert _export(http, "20260620T12", "20260620T12").status_code == 404
        _set_clock(s, NOW + timedelta(hours=3))
        records = [
            r
            for rs in read_export(_export(http, "20260620T12", "20260620T12")).values()
            for r in rs
        ]
        assert [r["user_id"] for r in records if r["event_type"] == "Lag Check"] == ["lag-user-01"]


def test_the_lag_is_configurable() -> None:
    with amplitude_sandbox(seed=41, export_lag_seconds=0) as s, client(s) as http:
        assert _export(http, "20260620T11", "20260620T11").status_code == 200
    with amplitude_sandbox(seed=41, export_lag_seconds=6 * 3600) as s, client(s) as http:
        assert _export(http, "20260619T20", "20260619T20").status_code == 200
        # Hour 09 has events (see above) but is not exported until 16:00 with this lag.
        assert _export(http, "20260620T09", "20260620T09").status_code == 404
