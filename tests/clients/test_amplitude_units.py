"""Unit tests of the Amplitude client's pure parts: row shaping, archive handling, ingestion
decisions (on httpx.MockTransport, no network), configuration. The behaviour over real HTTP
is in test_amplitude_client.py."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import orjson
import pytest

from analytics_assets.amplitude.client import AmplitudeClient, _segment_counts
from analytics_assets.amplitude.export import (
    CorruptArchiveError,
    export_file_name,
    extract_archive,
    hour_param,
)
from analytics_assets.amplitude.ingest import insert_id_for
from analytics_assets.amplitude.tidy import (
    ALL_USERS,
    chart_rows,
    funnel_rows,
    parse_chart_csv,
    parse_label_date,
    retention_rows,
    series_rows,
)
from analytics_assets.http.errors import ConfigurationError, RateLimitedError

API_KEY = "unit-amplitude-api-key-0001"
SECRET = "unit-amplitude-secret-key-0001"

# --- tidy rows -----------------------------------------------------------------------------


def test_series_rows_without_group_by_are_all_users() -> None:
    data = {"xValues": ["2026-09-20", "2026-09-21"], "series": [[3, 4]], "seriesLabels": [0]}
    assert series_rows(data) == [
        {"date": date(2026, 9, 20), "group": ALL_USERS, "value": 3},
        {"date": date(2026, 9, 21), "group": ALL_USERS, "value": 4},
    ]


@pytest.mark.parametrize(
    "labels",
    [
        {"seriesLabels": ["US", "DE"]},
        {"seriesLabels": [[0, "US"], [0, "DE"]]},
        {"seriesLabels": [], "seriesMeta": ["US", "DE"]},
        {"seriesMeta": [{"segmentIndex": 0, "groupValue": "US"}, {"groupValue": "DE"}]},
    ],
)
def test_series_rows_take_group_names_from_labels_or_meta(labels: dict) -> None:
    data = {"xValues": ["2026-09-17T00:00:00"], "series": [[1], [{"setId": "", "value": 2}]]}
    rows = series_rows({**data, **labels})
    assert [(r["group"], r["value"]) for r in rows] == [("US", 1), ("DE", 2)]
    assert rows[0]["date"] == date(2026, 9, 17)


def test_hourly_series_keep_datetimes() -> None:
    rows = series_rows({"xValues": ["2026-09-17T13:00:00"], "series": [[5]]}, hourly=True)
    assert rows[0]["date"] == datetime(2026, 9, 17, 13)


def test_funnel_rows() -> None:
    data = [
        {
            "meta": {"segmentIndex": 0},
            "events": ["Sign Up", "Invite Sent"],
            "cumulative": [1.0, 0.25],
            "cumulativeRaw": [400, 100],
            "stepByStep": [1.0, 0.25],
            "medianTransTimes": [0, 5000],
            "avgTransTimes": [0, 7000],
        }
    ]
    rows = funnel_rows(data)
    assert rows[1] == {
        "group": ALL_USERS,
        "step": 2,
        "event": "Invite Sent",
        "count": 100,
        "cumulative_ratio": 0.25,
        "step_ratio": 0.25,
        "median_trans_time_ms": 5000,
        "avg_trans_time_ms": 7000,
    }
    assert rows[0]["median_trans_time_ms"] is None
    assert funnel_rows([]) == []


def test_retention_rows_ascending_with_intervals() -> None:
    data = {
        "series": [
            {
                "dates": ["Sep 16, 2026", "Sep 15, 2026"],
                "values": {
                    "Sep 16, 2026": [{"count": 10, "outof": 10, "incomplete": False}],
                    "Sep 15, 2026": [
                        {"count": 8, "outof": 8, "incomplete": False},
                        {"count": 3, "outof": 8, "incomplete": True},
                    ],
                },
            }
        ],
        "seriesLabels": [""],
        "seriesMeta": [{"segmentIndex": 0, "eventIndex": 0}],
    }
    rows = retention_rows(data, date(2026, 9, 15), date(2026, 9, 16))
    assert [(r["cohort_date"], r["interval"], r["count"]) for r in rows] == [
        (date(2026, 9, 15), 0, 8),
        (date(2026, 9, 15), 1, 3),
        (date(2026, 9, 16), 0, 10),
    ]
    assert rows[1]["outof"] == 8 and rows[1]["incomplete"] is True


def test_year_less_labels_take_the_year_of_the_range() -> None:
    assert parse_label_date("Dec 30", date(2025, 12, 28), date(2026, 1, 3)) == date(2025, 12, 30)
    assert parse_label_date("Jan 2", date(2025, 12, 28), date(2026, 1, 3)) == date(2026, 1, 2)
    assert parse_label_date("2026-01-02", date(2026, 1, 1), date(2026, 1, 3)) == date(2026, 1, 2)


def test_chart_csv_and_chart_rows() -> None:
    text = (
        '"My chart"\r\n"desc"\r\n\r\n"Uniques"\r\n"Sign Up"\r\n\r\n'
        '"\tSegment","\t2026-06-01","\t2026-06-02"\r\n"\tAll Users","0","3"\r\n'
    )
    assert parse_chart_csv(text) == [
        {"x": date(2026, 6, 1), "group": "All Users", "value": 0},
        {"x": date(2026, 6, 2), "group": "All Users", "value": 3},
    ]
    collapsed = {"seriesCollapsed": [[{"setId": "", "value": 42}]], "seriesLabels": [0]}
    assert chart_rows(collapsed) == [{"x": None, "group": ALL_USERS, "value": 42}]


# --- export archive ------------------------------------------------------------------------


def test_export_file_names_are_flat_padded_and_safe() -> None:
    assert export_file_name("187520/187520_2026-06-16_7#0.json.gz") == (
        "187520_2026-06-16_07_0.json.gz"
    )
    assert export_file_name("../../etc/x#1.json.gz") == "x_1.json.gz"
    assert hour_param(datetime(2026, 6, 16, 7, 45, tzinfo=UTC)) == "20260616T07"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_extract_archive_and_reject_truncated(tmp_path: Path) -> None:
    raw = _zip_bytes(
        {"1/1_2026-06-16_3#0.json.gz": b"a" * 5000, "1/1_2026-06-16_12#0.json.gz": b"b"}
    )
    good = tmp_path / "good.zip"
    good.write_bytes(raw)
    files = extract_archive(good, tmp_path / "out")
    assert [f.name for f in files] == ["1_2026-06-16_03_0.json.gz", "1_2026-06-16_12_0.json.gz"]
    bad = tmp_path / "bad.zip"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptArchiveError):
        extract_archive(bad, tmp_path / "out2")
    assert not list((tmp_path / "out2").iterdir())


# --- configuration and cost helpers --------------------------------------------------------


def test_segment_counts() -> None:
    assert _segment_counts(None) == (0, 0)
    assert _segment_counts([{"prop": "country", "op": "is", "values": ["US"]}]) == (1, 1)
    assert _segment_counts([[{"prop": "a"}], [{"prop": "b"}, {"prop": "c"}]]) == (2, 3)


def test_profile_is_refused_in_eu_with_a_clear_message() -> None:
    with AmplitudeClient(API_KEY, SECRET, region="eu") as client:
        assert client.base_url == "https://analytics.eu.amplitude.com"
        assert client.ingestion_url == "https://api.eu.amplitude.com"
        with pytest.raises(ConfigurationError, match="not offered in the EU"):
            client.user_profile("user-1")


def test_unknown_region_and_missing_keys() -> None:
    with pytest.raises(ConfigurationError, match="'us' or 'eu'"):
        AmplitudeClient(API_KEY, SECRET, region="jp")
    with pytest.raises(ConfigurationError, match="required"):
        AmplitudeClient("", SECRET)


def test_repr_hides_secrets() -> None:
    with AmplitudeClient(API_KEY, SECRET) as client:
        text = repr(client) + repr(client.stats) + repr(vars(client))
    assert API_KEY not in text and SECRET not in text


# --- ingestion decisions (MockTransport) ---------------------------------------------------


def test_insert_id_is_deterministic_and_content_based() -> None:
    a = {"event_type": "x", "user_id": "user-1", "time": 1, "event_properties": {"a": 1, "b": 2}}
    b = {"time": 1, "event_properties": {"b": 2, "a": 1}, "user_id": "user-1", "event_type": "x"}
    assert insert_id_for(a) == insert_id_for(b)
    assert insert_id_for(a) != insert_id_for({**a, "time": 2})


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _ingest_client(handler, clock: _Clock) -> AmplitudeClient:
    client = AmplitudeClient(
        API_KEY,
        SECRET,
        ingestion_url="http://ingest.test",
        sleep=clock.sleep,
        clock=clock,
        http_transport=httpx.MockTransport(handler),
    )
    return client


def _events(n: int, **extra) -> list[dict]:
    return [
        {"event_type": "e", "user_id": f"user-{i % 3}", "time": 1_000 + i, **extra}
        for i in range(n)
    ]


def test_chunks_stay_within_count_and_size_caps() -> None:
    sizes: list[tuple[int, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        sizes.append((len(body["events"]), len(request.content)))
        assert all(e["insert_id"] for e in body["events"])
        return httpx.Response(200, json={"code": 200, "events_ingested": len(body["events"])})

    clock = _Clock()
    with _ingest_client(handler, clock) as client:
        result = client.send_events(_events(4500))
        big = [{**e, "event_properties": {"pad": "x" * 2000}} for e in _events(1200)]
        result2 = client.send_events(big)
    assert result.ingested == 4500 and result.failed_events == []
    assert [n for n, _ in sizes[:3]] == [2000, 2000, 500]
    assert result2.ingested == 1200
    assert all(size < 1_000_000 for _, size in sizes)


def test_400_drops_listed_events_and_resends_the_rest() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        events = orjson.loads(request.content)["events"]
        calls.append(len(events))
        bad = [i for i, e in enumerate(events) if e["time"] == "bad"]
        if bad:
            return httpx.Response(
                400,
                json={
                    "code": 400,
                    "error": "Invalid field values on some events",
                    "events_with_invalid_fields": {"time": bad},
                },
            )
        return httpx.Response(200, json={"code": 200})

    events = _events(10)
    events[3]["time"] = "bad"
    events[7]["time"] = "bad"
    with _ingest_client(handler, _Clock()) as client:
        result = client.send_events(events)
    assert result.ingested == 8
    assert result.failed_events == [(3, "invalid field time"), (7, "invalid field time")]
    assert calls == [10, 8]


def test_413_halves_the_batch() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        n = len(orjson.loads(request.content)["events"])
        calls.append(n)
        if n > 500:
            return httpx.Response(413, json={"code": 413, "error": "Payload too large"})
        return httpx.Response(200, json={"code": 200})

    with _ingest_client(handler, _Clock()) as client:
        result = client.send_events(_events(2000))
    assert result.ingested == 2000
    assert calls[:3] == [2000, 1000, 500]


def test_429_pauses_throttled_users_and_resends_only_them() -> None:
    sent: list[list[str]] = []
    throttled_once: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        events = orjson.loads(request.content)["events"]
        sent.append([e["user_id"] for e in events])
        idx = [i for i, e in enumerate(events) if e["user_id"] == "user-0"]
        if idx and "user-0" not in throttled_once:
            throttled_once.add("user-0")
            return httpx.Response(
                429,
                json={
                    "code": 429,
                    "error": "Too many requests for some devices and users",
                    "eps_threshold": 30,
                    "throttled_users": {"user-0": 31},
                    "throttled_devices": {},
                    "throttled_events": idx,
                },
            )
        return httpx.Response(200, json={"code": 200})

    clock = _Clock()
    with _ingest_client(handler, clock) as client:
        client._throttle_pause_factor = 0.01  # 30 s -> 0.3 s (simulated)
        result = client.send_events(_events(9))
    assert result.ingested == 9 and result.failed_events == []
    assert result.throttled_retries == 3
    assert sent[1] == ["user-1", "user-2"] * 3  # the others at once
    # The throttled ones after the pause, fewer per request (half of what was refused).
    assert sent[2] == ["user-0"]
    assert sum(sent[2:], []) == ["user-0"] * 3
    assert clock.sleeps and abs(sum(clock.sleeps) - 0.3) < 0.05


def test_invalid_api_key_is_fatal_and_secret_free() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"code": 400, "error": "Invalid API key: " + API_KEY})

    with _ingest_client(handler, _Clock()) as client, pytest.raises(Exception) as info:
        client.send_events(_events(2))
    assert "API key" in str(info.value)
    assert API_KEY not in str(info.value) and SECRET not in str(info.value)


def test_identify_is_form_encoded_in_batches_of_1024() -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        assert form["api_key"] == API_KEY
        seen.append(len(json.loads(form["identification"])))
        return httpx.Response(200, text="success")

    with _ingest_client(handler, _Clock()) as client:
        n = client.identify(
            {"user_id": f"user-{i}", "user_properties": {"$set": {"a": i}}} for i in range(2100)
        )
        m = client.group_identify("company", "acme", {"$set": {"plan": "pro"}})
    assert n == 2100 and m == 1
    assert seen == [1024, 1024, 52, 1]


THROTTLED_IDENTIFY = {"code": 429, "error": "Too many requests for some devices and users"}


def test_identify_429_is_retried_by_the_transport_with_a_minimum_pause() -> None:
    """No loop of its own: the transport's retry of a 429 (Retry-After honoured, attempts
    and stats shared), and the documented 15 s as the least pause before resending."""
    answers = [
        httpx.Response(429, json=THROTTLED_IDENTIFY),  # no Retry-After: 15 s pause
        httpx.Response(429, headers={"Retry-After": "40"}, json=THROTTLED_IDENTIFY),
        httpx.Response(200, text="success"),
    ]
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        return answers.pop(0)

    clock = _Clock()
    with _ingest_client(handler, clock) as client:
        # $add is cumulative, yet a 429 was not processed: resending it is safe.
        n = client.identify([{"user_id": "user-1", "user_properties": {"$add": {"n": 1}}}])
        stats = client.stats.snapshot()
    assert n == 1 and len(sent) == 3 and sent[0] == sent[1] == sent[2]
    assert stats.retries == 2 and stats.throttled == 2
    # First: the transport's backoff (jitter below 0.5 s), then the rest of the 15 s pause.
    assert sum(clock.sleeps[:-1]) == pytest.approx(15.0)
    assert clock.sleeps[-1] == 40.0  # Retry-After above the minimum: the server's wait
    assert clock.now == pytest.approx(55.0)


def test_identify_still_throttled_fails_with_the_identify_hint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json=THROTTLED_IDENTIFY)

    clock = _Clock()
    with _ingest_client(handler, clock) as client, pytest.raises(RateLimitedError) as info:
        client.group_identify("company", "acme", {"$set": {"plan": "pro"}})
    text = str(info.value)
    assert info.value.attempts == 6 and "1,800 per user per hour" in text
    assert API_KEY not in text and SECRET not in text


def test_membership_changes_are_chunked_at_100000_ids() -> None:
    sizes: list[tuple[str, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        (change,) = body["memberships"]
        sizes.append((change["operation"], len(change["ids"])))
        result = {"skipped_ids": [], "id_type": change["id_type"], "operation": change["operation"]}
        return httpx.Response(200, json={"cohort_id": "c1", "memberships_result": [result]})

    with AmplitudeClient(
        API_KEY, SECRET, base_url="http://api.test", http_transport=httpx.MockTransport(handler)
    ) as client:
        out = client.update_cohort_membership(
            "c1", add=(f"u{i}" for i in range(250_001)), remove=["x", "y"]
        )
    assert sizes == [("ADD", 100_000), ("ADD", 100_000), ("ADD", 50_001), ("REMOVE", 2)]
    assert len(out["memberships_result"]) == 4
    assert client.cost_spent["cohorts"] == 4


def test_resource_builds_the_client_with_its_signature() -> None:
    from analytics_assets.amplitude.resource import AmplitudeResource

    resource = AmplitudeResource(api_key=API_KEY, secret_key=SECRET, region="eu")
    with resource.get_client() as client:
        assert client.region == "eu" and client.base_url == "https://analytics.eu.amplitude.com"
        start = client.stats.snapshot()
        spent = client.stats.delta(start)
        assert spent.requests_sent == 0 and "amplitude: 0 requests" in spent.summary()
        assert set(client.cost_spent) >= {"dashboard", "cohorts", "export", "taxonomy"}
