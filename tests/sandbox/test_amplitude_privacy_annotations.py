"""Amplitude sandbox: chart annotations (``/api/2/annotations``) and the User Privacy API
(``/api/2/deletions/users``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from amplitude_helpers import NOW, amplitude_sandbox, client, error_details

from analytics_assets.sandbox import SandboxServer
from analytics_assets.sandbox.company import HISTORY_END, HISTORY_START


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    # The deletion endpoint's 1 request a second would pace every test: lifted here, and
    # tested on a server of its own below.
    with amplitude_sandbox(seed=44, deletion_requests_per_second=1e6) as s:
        yield s


@pytest.fixture(scope="module")
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with client(server) as c:
        yield c


# ----- annotations ---------------------------------------------------------------------------


def test_annotations_list_the_seeded_releases(http: httpx.Client) -> None:
    response = http.get("/api/2/annotations")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data and all(set(a) == {"id", "date", "label", "details"} for a in data)
    dates = [a["date"] for a in data]
    assert dates == sorted(dates)
    assert HISTORY_START.isoformat() <= dates[0] and dates[-1] <= HISTORY_END.isoformat()
    assert len({a["id"] for a in data}) == len(data)
    one = http.get("/api/2/annotations", params={"id": data[1]["id"]})
    assert one.status_code == 200 and one.json() == {"data": [data[1]]}


def test_annotations_create_and_read_back(server: SandboxServer, http: httpx.Client) -> None:
    project = server.config.amplitude_keys["us"].project_id
    params = {"app_id": project, "date": "2026-06-18", "label": "Version 3 Release"}
    created = http.post("/api/2/annotations", params={**params, "details": "Big one"})
    assert created.status_code == 200
    body = created.json()
    assert body["success"] is True
    annotation = body["annotation"]
    assert annotation == {
        "id": annotation["id"],
        "date": "2026-06-18",
        "label": "Version 3 Release",
        "details": "Big one",
    }
    listed = http.get("/api/2/annotations").json()["data"]
    assert annotation in listed
    assert http.get("/api/2/annotations", params={"id": annotation["id"]}).json()["data"] == [
        annotation
    ]


def test_annotation_errors_and_auth(server: SandboxServer, http: httpx.Client) -> None:
    project = server.config.amplitude_keys["us"].project_id
    assert http.post("/api/2/annotations", params={"app_id": project}).status_code == 400
    wrong_app = http.post(
        "/api/2/annotations", params={"app_id": 1, "date": "2026-06-18", "label": "x"}
    )
    assert wrong_app.status_code == 400
    bad_date = http.post(
        "/api/2/annotations", params={"app_id": project, "date": "18/06/2026", "label": "x"}
    )
    assert bad_date.status_code == 400
    assert http.get("/api/2/annotations", params={"id": "abc"}).status_code == 400
    assert http.get("/api/2/annotations", params={"id": 1}).status_code == 404
    assert http.delete("/api/2/annotations").status_code == 405
    keys = server.config.amplitude_keys["us"]
    wrong = httpx.get(f"{server.urls.amplitude()}/api/2/annotations", auth=(keys.api_key, "x"))
    assert wrong.status_code == 403
    assert error_details(wrong) == "Invalid API/Secret Key combination"
    assert httpx.get(f"{server.urls.amplitude()}/api/2/annotations").status_code == 403


# ----- deletions ------------------------------------------------------------------------------


def test_deletion_request_schedules_a_job(server: SandboxServer, http: httpx.Client) -> None:
    keys = server.config.amplitude_keys["us"]
    amp = keys.project_id * 10**7 + 5
    body = {
        "amplitude_ids": [amp],
        "user_ids": ["visitor-0000003"],
        "requester": "privacy@acme.example",
    }
    response = http.post("/api/2/deletions/users", json=body)
    assert response.status_code == 200, response.text
    (job,) = response.json()
    today = NOW.date()
    assert job == {
        "active_scrub_done_date": None,
        "amplitude_ids": [
            {
                "amplitude_id": amp,
                "requested_on_day": today.isoformat(),
                "requester": "privacy@acme.example",
            },
            {
                "amplitude_id": keys.project_id * 10**7 + 3,
                "requested_on_day": today.isoformat(),
                "requester": "privacy@acme.example",
            },
        ],
        "app": str(keys.project_id),
        "day": (today + timedelta(days=12)).isoformat(),
        "status": "staging",
    }
    # A second request joins the same staging job; a repeated id is not added twice.
    again = http.post(
        "/api/2/deletions/users",
        json={"amplitude_ids": [amp, keys.project_id * 10**7 + 7], "requester": "b@acme.example"},
    ).json()
    assert [e["amplitude_id"] for e in again[0]["amplitude_ids"]] == [
        amp,
        keys.project_id * 10**7 + 3,
        keys.project_id * 10**7 + 7,
    ]
    listed = http.get(
        "/api/2/deletions/users",
        params={
            "start_day": today.isoformat(),
            "end_day": (today + timedelta(days=30)).isoformat(),
        },
    )
    assert listed.status_code == 200
    # Live: the listing's JSON comes as text/html.
    assert listed.headers["content-type"].startswith("text/html")
    assert listed.json() == again
    assert (
        http.get(
            "/api/2/deletions/users", params={"start_day": "2026-01-01", "end_day": "2026-06-01"}
        ).json()
        == []
    )


def test_invalid_ids(server: SandboxServer, http: httpx.Client) -> None:
    refused = http.post("/api/2/deletions/users", json={"user_ids": ["nobody-0001"]})
    assert refused.status_code == 400 and "nobody-0001" in error_details(refused)
    mixed = http.post(
        "/api/2/deletions/users",
        json={
            "user_ids": ["nobody-0002", "visitor-0000011"],
            "ignore_invalid_id": "True",
            "include_mapped_user_ids": True,
        },
    )
    assert mixed.status_code == 200
    (job,) = mixed.json()
    assert job["invalid_ids"] == ["nobody-0002"]
    entry = next(e for e in job["amplitude_ids"] if e.get("user_id") == "visitor-0000011")
    assert entry["amplitude_id"] == server.config.amplitude_keys["us"].project_id * 10**7 + 11
    # delete_from_org forces ignore_invalid_id.
    org = http.post(
        "/api/2/deletions/users", json={"user_ids": ["nobody-0003"], "delete_from_org": "true"}
    )
    assert org.status_code == 200 and org.json() == []
    assert http.post("/api/2/deletions/users", json={}).status_code == 400
    too_many = {"user_ids": [f"visitor-{i:07d}" for i in range(101)]}
    assert http.post("/api/2/deletions/users", json=too_many).status_code == 400
    assert http.post("/api/2/deletions/users", content=b"not json").status_code == 400
    assert http.get("/api/2/deletions/users").status_code == 400
    wide = {"start_day": "2026-01-01", "end_day": "2026-12-31"}
    assert http.get("/api/2/deletions/users", params=wide).status_code == 400


def test_remove_a_user_from_a_staging_job(server: SandboxServer, http: httpx.Client) -> None:
    amp = server.config.amplitude_keys["us"].project_id * 10**7 + 21
    (job,) = http.post("/api/2/deletions/users", json={"amplitude_ids": [amp]}).json()
    removed = http.delete(f"/api/2/deletions/users/{amp}/{job['day']}")
    assert removed.status_code == 200
    assert removed.json() == {
        "amplitude_id": amp,
        "requested_on_day": NOW.date().isoformat(),
        "requester": "",
    }
    assert http.delete(f"/api/2/deletions/users/{amp}/{job['day']}").status_code == 404


def test_jobs_move_through_their_statuses_with_the_clock() -> None:
    with amplitude_sandbox(seed=45, deletion_requests_per_second=1e6) as s, client(s) as http:
        amp = s.config.amplitude_keys["us"].project_id * 10**7 + 2
        (job,) = http.post("/api/2/deletions/users", json={"amplitude_ids": [amp]}).json()
        day = job["day"]
        params = {"start_day": NOW.date().isoformat(), "end_day": day}

        def at(days: int) -> dict:
            moment = NOW + timedelta(days=days)
            httpx.post(f"{s.urls.control()}/clock", json={"now": moment.isoformat()})
            return http.get("/api/2/deletions/users", params=params).json()[0]

        assert at(8)["status"] == "staging"
        frozen = at(9)
        assert frozen["status"] == "submitted" and frozen["active_scrub_done_date"] is None
        # A frozen job can no longer be edited; a new request opens a new job.
        assert http.delete(f"/api/2/deletions/users/{amp}/{day}").status_code == 400
        other = s.config.amplitude_keys["us"].project_id * 10**7 + 4
        (new_job,) = http.post("/api/2/deletions/users", json={"amplitude_ids": [other]}).json()
        assert new_job["day"] > day and new_job["status"] == "staging"
        scrubbed = at(13)
        assert scrubbed["status"] == "submitted"
        assert scrubbed["active_scrub_done_date"] is not None
        assert at(18)["status"] == "done"


def test_one_request_a_second_and_auth() -> None:
    with amplitude_sandbox(seed=46) as s, client(s) as http:
        amp = s.config.amplitude_keys["us"].project_id * 10**7 + 1
        first = http.post("/api/2/deletions/users", json={"amplitude_ids": [amp]})
        second = http.post("/api/2/deletions/users", json={"amplitude_ids": [amp]})
        assert first.status_code == 200
        assert second.status_code == 429
        assert "Exceeded rate limit" in error_details(second)
        keys = s.config.amplitude_keys["us"]
        wrong = httpx.post(
            f"{s.urls.amplitude()}/api/2/deletions/users",
            json={"amplitude_ids": [amp]},
            auth=(keys.api_key, "wrong"),
        )
        assert wrong.status_code == 403
