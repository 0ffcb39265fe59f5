"""AmplitudeClient over real HTTP against the sandbox: every method, errors, retries, secrets.

Budgets, concurrency and the export's corner cases have their own modules
(test_amplitude_budget.py, test_amplitude_export.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from scripted_server import Reply, ScriptedServer

from analytics_assets.amplitude.client import AmplitudeClient, AmplitudeTimeoutError
from analytics_assets.amplitude.costs import amplitude_budgets
from analytics_assets.http.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    ServerError,
    TransportError,
)
from analytics_assets.sandbox.config import AmplitudeLimits, SandboxConfig
from analytics_assets.sandbox.server import SandboxServer

NOW = datetime(2026, 6, 18, 12, tzinfo=UTC)
TODAY = NOW.date()
START, END = TODAY - timedelta(days=7), TODAY - timedelta(days=1)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(
        seed=7, now=NOW, amplitude_limits=AmplitudeLimits(processing_lag_hours=0)
    )
    with SandboxServer(config) as server:
        yield server


def make_client(sandbox: SandboxServer, region: str = "us", **kwargs) -> AmplitudeClient:
    keys = sandbox.config.amplitude_keys[region]
    api_key = kwargs.pop("api_key", keys.api_key)
    secret_key = kwargs.pop("secret_key", keys.secret_key)
    url = sandbox.urls.amplitude(region)
    options = {
        "region": region,
        "base_url": url,
        "ingestion_url": url,
        "profile_url": url if region == "us" else None,
        "max_retry_time": 30.0,
        **kwargs,
    }
    return AmplitudeClient(api_key, secret_key, **options)


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[AmplitudeClient]:
    with make_client(sandbox) as c:
        yield c


def control(sandbox: SandboxServer, path: str, method: str = "GET", **kwargs) -> dict:
    response = httpx.request(method, f"{sandbox.urls.control()}{path}", **kwargs)
    response.raise_for_status()
    return response.json()


@pytest.fixture
def faults(sandbox: SandboxServer) -> Iterator[None]:
    control(sandbox, "/faults", "DELETE")
    yield
    control(sandbox, "/faults", "DELETE")


def a_user(client: AmplitudeClient) -> dict:
    found = client.user_search("visitor-00000")
    assert found["matches"], found
    return found["matches"][0]


# --- Dashboard REST ------------------------------------------------------------------------


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def test_active_and_new_users(client: AmplitudeClient) -> None:
    rows = client.active_users(START, END)
    assert [r["date"] for r in rows] == days_between(START, END)
    assert {r["group"] for r in rows} == {"All Users"}
    assert all(isinstance(r["value"], int) and r["value"] >= 0 for r in rows)
    assert sum(r["value"] for r in rows) > 0

    new = client.active_users(START, END, metric="new", group_by="country")
    groups = {r["group"] for r in new}
    assert len(groups) > 1 and "All Users" not in groups
    assert {r["date"] for r in new} == set(days_between(START, END))

    weekly = client.active_users(START, END, interval=7)
    assert len(weekly) < len(rows)
    assert client.cost_spent["dashboard"] == 7 + 7 * 5 + 7


def test_events_list(client: AmplitudeClient) -> None:
    events = client.events_list()
    names = {e["name"] for e in events}
    assert {"Page Viewed", "Session Start"} <= names
    assert all("totals" in e for e in events)


def test_segmentation_rows_are_tidy(client: AmplitudeClient) -> None:
    totals = client.segmentation("Page Viewed", START, END)
    assert [r["date"] for r in totals] == days_between(START, END)
    uniques = client.segmentation("Page Viewed", START, END, metric="uniques")
    assert all(u["value"] <= t["value"] for u, t in zip(uniques, totals, strict=True))

    by_country = client.segmentation("Page Viewed", START, END, group_by="country")
    per_day: dict[date, int] = {}
    for r in by_country:
        per_day[r["date"]] = per_day.get(r["date"], 0) + r["value"]
    assert per_day == {r["date"]: r["value"] for r in totals}

    segment = [{"prop": "country", "op": "is", "values": ["United States"]}]
    us_only = client.segmentation("Page Viewed", START, END, segments=segment)
    us_rows = [r for r in by_country if r["group"] == "United States"]
    assert [r["value"] for r in us_only] == [r["value"] for r in us_rows]

    two = client.segmentation("Page Viewed", START, END, second_event="Search Performed")
    assert {r["event"] for r in two} == {"Page Viewed", "Search Performed"}
    limited = client.segmentation(
        {"event_type": "Page Viewed", "group_by": [{"type": "user", "value": "city"}]},
        START,
        END,
        limit=2,
    )
    assert len({r["group"] for r in limited}) == 2


def test_funnel(client: AmplitudeClient) -> None:
    rows = client.funnel(
        ["Session Start", "Page Viewed", "Report Exported"],
        START,
        END,
        conversion_window_seconds=86_400,
    )
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["event"] for r in rows] == ["Session Start", "Page Viewed", "Report Exported"]
    assert rows[0]["cumulative_ratio"] == 1.0
    assert rows[0]["count"] >= rows[1]["count"] >= rows[2]["count"] > 0
    grouped = client.funnel(
        ["Session Start", "Page Viewed"], START, END, group_by="country", mode="unordered"
    )
    assert len({r["group"] for r in grouped}) > 1
    assert client.cost_spent["dashboard"] == 7 * 1 * 6 + 7 * 5 * 4


def test_retention(client: AmplitudeClient) -> None:
    rows = client.retention("_new", "_all", START, END)
    cohorts = sorted({r["cohort_date"] for r in rows})
    assert cohorts == days_between(START, END)
    first = [r for r in rows if r["cohort_date"] == START]
    assert first[0]["interval"] == 0 and first[0]["count"] == first[0]["outof"]
    assert client.cost_spent["dashboard"] == 7 * 8


def test_revenue_ltv(client: AmplitudeClient) -> None:
    rows = client.revenue_ltv(START, END, 2)
    assert [r["date"] for r in rows] == days_between(START, END)
    assert {"count", "paid", "total_amount", "r1d"} <= set(rows[0])
    with pytest.raises(ValueError):
        client.revenue_ltv(START, END, 7)


def test_saved_chart_results_and_csv(client: AmplitudeClient) -> None:
    from analytics_assets.amplitude.tidy import parse_chart_csv

    rows = client.chart_results("dau30dq")
    assert len(rows) == 30 and all(isinstance(r["x"], date) for r in rows)
    funnel = client.chart_results("fnl3stp")
    assert [r["step"] for r in funnel] == [1, 2, 3]
    by_plan = client.chart_results("upl9pln")
    assert len({r["group"] for r in by_plan}) > 1
    text = client.chart_csv("dau30dq")
    assert [(r["x"], r["value"]) for r in parse_chart_csv(text)] == [
        (r["x"], r["value"]) for r in rows
    ]
    with pytest.raises(NotFoundError):
        client.chart_results("nochart")


def test_bad_query_is_a_bad_request_with_the_server_message(client: AmplitudeClient) -> None:
    with pytest.raises(BadRequestError) as info:
        client.segmentation("Page Viewed", END - timedelta(days=400), END)
    assert "365" in str(info.value)


# --- user lookup ---------------------------------------------------------------------------


def test_user_search_and_activity(client: AmplitudeClient) -> None:
    match = a_user(client)
    assert {"user_id", "amplitude_id"} <= set(match)
    exact = client.user_search(match["user_id"])
    assert exact["matches"][0]["amplitude_id"] == match["amplitude_id"]
    nothing = client.user_search("no-such-user-anywhere")
    assert nothing["type"] == "nomatch" and nothing["matches"] == []

    activity = client.user_activity(match["amplitude_id"], limit=5)
    assert activity["userData"]["user_id"] == match["user_id"]
    assert len(activity["events"]) <= 5 + 50  # may exceed to avoid a partial session
    assert client.cost_spent["user_lookup"] == 4


# --- cohorts -------------------------------------------------------------------------------


def test_list_and_get_cohorts(client: AmplitudeClient) -> None:
    cohorts = client.list_cohorts()
    assert cohorts and {"id", "name", "size"} <= set(cohorts[0])
    with_sync = client.list_cohorts(include_sync_info=True)
    assert any("syncMetadata" in c for c in with_sync)
    one = client.get_cohort(cohorts[0]["id"])
    assert one["cohort"]["id"] == cohorts[0]["id"]
    with pytest.raises(NotFoundError):
        client.get_cohort("nosuchid")


def test_download_cohort_small_file(client: AmplitudeClient, tmp_path: Path) -> None:
    cohort = next(c for c in client.list_cohorts() if c.get("size"))
    before = client.cohort_usage()["count"]
    path = client.download_cohort(cohort["id"], tmp_path / "c.csv", poll_interval=0.02)
    rows = list(client.read_cohort_csv(path))
    assert len(rows) == cohort["size"]
    assert "user_id" in rows[0]
    assert client.cohort_usage()["count"] == before + 1
    assert not list(tmp_path.glob(".*part"))


def test_cohort_file_cut_short_is_fetched_again(
    sandbox: SandboxServer, client: AmplitudeClient, faults: None, tmp_path: Path
) -> None:
    cohort = next(c for c in client.list_cohorts() if (c.get("size") or 0) > 50)
    control(sandbox, "/faults", "POST", json={"kind": "drop", "count": 1, "path": "/file$"})
    path = client.download_cohort(cohort["id"], tmp_path / "c.csv", poll_interval=0.02)
    assert len(list(client.read_cohort_csv(path))) == cohort["size"]
    assert control(sandbox, "/counters")["faults"].get("drop", 0) >= 1


def test_download_cohort_follows_302_to_presigned_link(
    sandbox: SandboxServer, client: AmplitudeClient, tmp_path: Path
) -> None:
    limits = sandbox.config.amplitude_limits
    limits.cohort_file_redirect_rows = 10  # type: ignore[attr-defined]
    try:
        cohort = next(c for c in client.list_cohorts() if (c.get("size") or 0) > 10)
        before = control(sandbox, "/counters")
        path = client.download_cohort(cohort["id"], tmp_path / "big.csv", poll_interval=0.02)
    finally:
        del limits.cohort_file_redirect_rows  # type: ignore[attr-defined]
    assert len(list(client.read_cohort_csv(path))) == cohort["size"]
    after = control(sandbox, "/counters")
    redirected = [
        r for r in after["requests"] if r["path"].endswith("/file") and r["status"] == 302
    ]
    s3 = [r for r in after["requests"] if r["path"].startswith("/_s3/") and r["status"] == 200]
    assert redirected and s3
    assert sum(r["count"] for r in s3) > sum(
        r["count"] for r in before["requests"] if r["path"].startswith("/_s3/")
    )


def test_cohort_302_to_another_host_carries_no_credentials(tmp_path: Path) -> None:
    """The presigned link's host must never see Basic auth (nor the keys in any form)."""
    with ScriptedServer() as api, ScriptedServer() as s3:
        api.script(
            Reply(202, body={"request_id": "r-1", "cohort_id": "c1"}),
            Reply(202, body={"request_id": "r-1", "async_status": "JOB INPROGRESS"}),
            Reply(200, body={"request_id": "r-1", "async_status": "JOB COMPLETED"}),
            Reply(302, headers={"Location": f"{s3.url}/bucket/c1.csv?X-Amz-Signature=abc"}),
        )
        s3.script(Reply(200, headers={"Content-Type": "text/csv"}, body=b"user_id\nu1\nu2\n"))
        with AmplitudeClient(
            "scripted-api-key-123", "scripted-secret-456", base_url=api.url
        ) as client:
            path = client.download_cohort("c1", tmp_path / "c1.csv", poll_interval=0.01)
            assert [r["user_id"] for r in client.read_cohort_csv(path)] == ["u1", "u2"]
        assert "authorization" in api.requests[0].headers
        (request,) = s3.requests
        assert "authorization" not in request.headers
        flat = str(request.headers) + request.query
        assert "scripted-api-key-123" not in flat and "scripted-secret-456" not in flat


def test_cohort_file_cut_at_a_line_end_is_fetched_again_when_the_size_is_known(
    sandbox: SandboxServer, client: AmplitudeClient, faults: None, tmp_path: Path
) -> None:
    """A file cut short with a matching Content-Length reads as a shorter CSV: the size
    the cohort list gives tells, and the one retry loop fetches it again."""
    cohort = next(c for c in client.list_cohorts() if (c.get("size") or 0) > 50)
    control(sandbox, "/faults", "POST", json={"kind": "truncate", "count": 1, "path": "/file$"})
    before = client.stats.snapshot()
    path = client.download_cohort(
        cohort["id"], tmp_path / "c.csv", poll_interval=0.02, expected_members=cohort["size"]
    )
    assert len(list(client.read_cohort_csv(path))) == cohort["size"]
    assert control(sandbox, "/counters")["faults"].get("truncate", 0) >= 1
    spent = client.stats.delta(before)
    assert spent.retries >= 1 and spent.transport_errors >= 1
    assert not list(tmp_path.glob(".*part"))


def _cohort_script(api: ScriptedServer, *file_answers: Reply) -> None:
    api.script(
        Reply(202, body={"request_id": "r-1", "cohort_id": "c1"}),
        Reply(200, body={"request_id": "r-1", "async_status": "JOB COMPLETED"}),
        *file_answers,
    )


EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)


def test_an_expired_presigned_link_asks_file_for_a_fresh_one(tmp_path: Path, fake_clock) -> None:
    """The presigned link lives a minute: S3's 403 is a fault of the one loop, which asks
    /file again (its link stays valid 7 days) and follows the fresh link."""
    with ScriptedServer() as api, ScriptedServer() as s3:
        _cohort_script(
            api,
            Reply(302, headers={"Location": f"{s3.url}/bucket/c1.csv?X-Amz-Signature=old"}),
            Reply(302, headers={"Location": f"{s3.url}/bucket/c1.csv?X-Amz-Signature=new"}),
        )
        s3.script(
            Reply(403, {"Content-Type": "application/xml"}, EXPIRED),
            Reply(200, {"Content-Type": "text/csv"}, b"user_id\nu1\nu2\n"),
        )
        with AmplitudeClient(
            "scripted-api-key-123",
            "scripted-secret-456",
            base_url=api.url,
            sleep=fake_clock.sleep,
            clock=fake_clock,
        ) as client:
            path = client.download_cohort(
                "c1", tmp_path / "c1.csv", poll_interval=0.01, expected_members=2
            )
            stats = client.stats.snapshot()
        assert [r["user_id"] for r in client.read_cohort_csv(path)] == ["u1", "u2"]
        assert [r.path for r in api.requests[2:]] == ["/api/5/cohorts/request/r-1/file"] * 2
        assert [r.query for r in s3.requests] == ["X-Amz-Signature=old", "X-Amz-Signature=new"]
    assert stats.retries == 1 and len(fake_clock.sleeps) == 1  # one backoff, one loop
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c1.csv"]


def test_a_cohort_file_short_every_time_fails_and_writes_nothing(
    tmp_path: Path, fake_clock
) -> None:
    with ScriptedServer() as api:
        short = Reply(200, {"Content-Type": "text/csv"}, b"user_id\nu1\n")
        _cohort_script(api, short, short, short)
        with (
            AmplitudeClient(
                "scripted-api-key-123",
                "scripted-secret-456",
                base_url=api.url,
                max_attempts=3,
                sleep=fake_clock.sleep,
                clock=fake_clock,
            ) as client,
            pytest.raises(TransportError) as info,
        ):
            client.download_cohort(
                "c1", tmp_path / "c1.csv", poll_interval=0.01, expected_members=5
            )
    text = str(info.value)
    assert "holds 1 members but the cohort list says 5" in text
    assert info.value.attempts == 3 and "gave up after 3 attempts" in text
    assert list(tmp_path.iterdir()) == []
    assert "scripted-secret-456" not in text


def test_download_cohort_deadline(tmp_path: Path) -> None:
    with ScriptedServer() as api:
        api.script(
            Reply(202, body={"request_id": "r-1", "cohort_id": "c1"}),
            *[Reply(202, body={"async_status": "JOB INPROGRESS"}) for _ in range(20)],
        )
        with (
            AmplitudeClient(
                "scripted-api-key-123", "scripted-secret-456", base_url=api.url
            ) as client,
            pytest.raises(AmplitudeTimeoutError, match="not ready") as info,
        ):
            client.download_cohort(
                "c1", tmp_path / "x.csv", poll_interval=0.05, deadline_seconds=0.3
            )
    assert isinstance(info.value, TimeoutError)
    assert not (tmp_path / "x.csv").exists()


def test_upload_cohort_and_change_membership(client: AmplitudeClient) -> None:
    user_ids = [f"visitor-{i:07d}" for i in range(1, 40)]
    project = client.list_cohorts()[0]["appId"]
    made = client.upload_cohort(
        "client test cohort", user_ids, app_id=project, owner="tester@example.com"
    )
    cohort_id = made["cohortId"]
    assert made["metadata"]["matched"] > 0
    changed = client.update_cohort_membership(
        cohort_id, add=["visitor-0000100", "visitor-0000101"], remove=user_ids[:5]
    )
    assert [r["operation"] for r in changed["memberships_result"]] == ["ADD", "REMOVE"]
    members = {u for u in client.get_cohort(cohort_id)["user_ids"]}
    assert "visitor-0000100" in members and user_ids[0] not in members
    replaced = client.upload_cohort(
        "client test cohort",
        user_ids[:3],
        app_id=project,
        owner="tester@example.com",
        existing_cohort_id=cohort_id,
    )
    assert replaced["cohortId"] == cohort_id


# --- taxonomy ------------------------------------------------------------------------------


def test_taxonomy_read_create_update(client: AmplitudeClient) -> None:
    names = {e["event_type"] for e in client.list_event_types()}
    assert "Page Viewed" in names
    client.create_event_type("Client Test Event", category="Product", description="made by test")
    client.update_event_type("Client Test Event", description="changed", display_name="CTE")
    created = {e["event_type"]: e for e in client.list_event_types()}["Client Test Event"]
    assert created["description"] == "changed"

    props = client.list_event_properties("Report Exported")
    assert props and all("event_property" in p for p in props)
    client.create_user_property("client_test_prop", description="made by test", type="string")
    user_props = {p["user_property"] for p in client.list_user_properties()}
    assert any(p.endswith("client_test_prop") for p in user_props)
    assert client.cost_spent["taxonomy"] == 1 + 2 + 2 + 1 + 1 + 2 + 1


def test_taxonomy_errors_carry_the_server_message(client: AmplitudeClient) -> None:
    with pytest.raises((NotFoundError, BadRequestError)) as info:
        client.update_event_type("No Such Event Anywhere", description="x")
    assert info.value.body_excerpt
    client.create_event_type("Client Dup Event")
    with pytest.raises(BadRequestError) as dup:
        client.create_event_type("Client Dup Event")
    assert dup.value.body_excerpt


# --- user profile --------------------------------------------------------------------------


def test_user_profile(client: AmplitudeClient) -> None:
    user = a_user(client)
    profile = client.user_profile(user["user_id"], get_amp_props=True, get_cohort_ids=True)
    assert profile["user_id"] == user["user_id"]
    assert "amp_props" in profile


def test_user_profile_refused_in_eu(sandbox: SandboxServer) -> None:
    with make_client(sandbox, "eu") as eu, pytest.raises(ConfigurationError, match="EU"):
        eu.user_profile("someone")


# --- regions, auth, secrets ----------------------------------------------------------------


def test_eu_project_is_served_on_its_own_host(sandbox: SandboxServer) -> None:
    with make_client(sandbox, "eu") as eu:
        assert eu.list_cohorts()
        assert eu.list_event_types()


def test_key_of_the_other_region_is_an_authentication_error(sandbox: SandboxServer) -> None:
    us = sandbox.config.amplitude_keys["us"]
    with (
        make_client(sandbox, "eu", api_key=us.api_key, secret_key=us.secret_key) as wrong,
        pytest.raises(AuthenticationError) as info,
    ):
        wrong.list_cohorts()
    text = str(info.value)
    assert "Invalid API Key" in text and "region" in text and "eu" in text
    assert us.secret_key not in text and us.api_key not in text


def test_secrets_never_in_logs_errors_or_repr(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture, faults: None, tmp_path: Path
) -> None:
    keys = sandbox.config.amplitude_keys["us"]
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    with make_client(sandbox, secret_key="wrong-secret-value-xyz") as bad:
        with pytest.raises(AuthenticationError) as info:
            bad.list_event_types()
        texts += [str(info.value), repr(info.value), repr(bad), repr(vars(bad))]
    control(
        sandbox,
        "/faults",
        "POST",
        json={"kind": "error", "status": 500, "count": 50, "path": "/api/3/cohorts$"},
    )
    with make_client(sandbox, max_attempts=2) as client:
        with pytest.raises(ServerError) as server_error:
            client.list_cohorts()
        texts += [str(server_error.value), repr(client), client.stats.summary()]
        client.send_events([{"event_type": "x", "user_id": "visitor-0000001", "time": 1}])
        client.export(NOW - timedelta(hours=3), NOW - timedelta(hours=2), tmp_path)
    texts += [r.getMessage() for r in caplog.records]
    assert len(caplog.records) > 20  # the requests, retries and answers were all logged
    joined = "\n".join(texts)
    assert "HTTP 403" in joined and "HTTP 500" in joined
    for secret in (keys.api_key, keys.secret_key, "wrong-secret-value-xyz"):
        assert secret not in joined


# --- retries -------------------------------------------------------------------------------


def test_retries_through_injected_5xx_and_drops(
    sandbox: SandboxServer, client: AmplitudeClient, faults: None
) -> None:
    control(
        sandbox,
        "/faults",
        "POST",
        json=[
            {"kind": "error", "status": 503, "count": 2, "path": "/api/3/cohorts$"},
            {"kind": "drop", "count": 1, "path": "/api/2/taxonomy/event$"},
        ],
    )
    before = client.stats.snapshot()
    assert client.list_cohorts()
    assert client.list_event_types()
    spent = client.stats.delta(before)
    assert spent.retries == 3
    assert spent.responses_by_status.get(503) == 2


def test_stats_and_cost_spent_are_reported(client: AmplitudeClient) -> None:
    start = client.stats.snapshot()
    client.list_cohorts()
    spent = client.stats.delta(start)
    assert spent.requests_sent == 1 and spent.bytes_received > 0
    assert "amplitude: 1 requests" in spent.summary()
    assert client.cost_spent["cohorts"] == 1


def test_cohort_requests_never_exceed_four_in_parallel(sandbox: SandboxServer) -> None:
    errors: list[Exception] = []
    with make_client(sandbox, budgets=amplitude_budgets()) as client:

        def work() -> None:
            try:
                client.list_cohorts()
            except Exception as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert client.stats.snapshot().throttled == 0


def test_api_error_is_raised_for_unexpected_redirect(tmp_path: Path) -> None:
    with ScriptedServer() as api:
        api.script(Reply(301, headers={"Location": "https://example.com/"}))
        with (
            AmplitudeClient(
                "scripted-api-key-123", "scripted-secret-456", base_url=api.url
            ) as client,
            pytest.raises(ApiError, match="redirect"),
        ):
            client.list_cohorts()


def test_truncated_json_answer_says_truncated_not_wrong_host(
    sandbox: SandboxServer, faults: None
) -> None:
    fault = {"kind": "truncate", "count": 50, "path": "/api/3/cohorts$"}
    control(sandbox, "/faults", "POST", json=fault)
    with (
        make_client(sandbox, max_attempts=2, max_retry_time=5.0) as c,
        pytest.raises(ApiError) as caught,
    ):
        c.list_cohorts()
    text = str(caught.value)
    assert "base_url" not in text and "web UI" not in text, text
    assert "truncated" in text or "cut short" in text, text
    assert text.count("2 attempts") <= 1, text
