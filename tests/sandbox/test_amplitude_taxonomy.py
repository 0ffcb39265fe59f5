"""Amplitude sandbox: Taxonomy API over real HTTP (form-encoded CRUD, errors, limits)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.amplitude.extra_common import HOLD_HEADER
from analytics_assets.sandbox.config import AmplitudeLimits

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
T = "/api/2/taxonomy"


@pytest.fixture(scope="module")
def taxonomy_sandbox():
    with SandboxServer(SandboxConfig(seed=8, now=NOW)) as server:
        yield server


@pytest.fixture(scope="module")
def client(taxonomy_sandbox):
    keys = taxonomy_sandbox.config.amplitude_keys["us"]
    with httpx.Client(
        base_url=taxonomy_sandbox.urls.amplitude("us"),
        auth=(keys.api_key, keys.secret_key),
        timeout=30,
    ) as c:
        yield c


def wait_in_flight(server: SandboxServer, key: str, count: int) -> None:
    """Until ``count`` requests hold ``key`` slots, per the sandbox's ``/_sandbox/limits``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        limits = httpx.get(server.urls.control() + "/limits", timeout=30).json()
        if limits["amplitude"]["us"][key] >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} requests never held {key} together")


def ok(r: httpx.Response, status: int = 200) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is True
    return body


def failed(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    return body["errors"][0]["message"]


def test_seeded_event_types_follow_the_project_events(client) -> None:
    events = {e["event_type"]: e for e in ok(client.get(f"{T}/event"))["data"]}
    assert {
        "Session Start",
        "Sign Up",
        "Page Viewed",
        "Purchase",
        "Report Exported",
        "Search Performed",
    } <= set(events)
    assert any(name.startswith("Feature Used: ") for name in events)
    report = events["Report Exported"]
    assert report["category"] == {"name": "Product"} and report["deleted"] is False
    assert set(report) >= {
        "event_type",
        "category",
        "description",
        "display_name",
        "tags",
        "is_active",
        "owner",
        "is_hidden_from_dropdowns",
    }
    props = ok(client.get(f"{T}/event-property", params={"event_type": "Report Exported"}))
    assert [p["event_property"] for p in props["data"]] == ["format"]
    one = ok(client.get(f"{T}/event-property/format", params={"event_type": "Report Exported"}))
    assert one["data"]["event_type"] == "Report Exported" and one["data"]["classifications"] == []
    shared = ok(client.get(f"{T}/event-property"))["data"]
    assert "page" in {p["event_property"] for p in shared}
    assert {p["event_type"] for p in shared} == {None}


def test_categories_crud_with_form_bodies(client) -> None:
    ok(client.post(f"{T}/category", data={"category_name": "Marketing"}))
    message = failed(client.post(f"{T}/category", data={"category_name": "Marketing"}), 409)
    assert "already exists" in message
    category = ok(client.get(f"{T}/category/Marketing"))["data"]
    assert set(category) == {"id", "name"} and isinstance(category["id"], int)
    assert category in ok(client.get(f"{T}/category"))["data"]
    ok(client.put(f"{T}/category/{category['id']}", data={"category_name": "Growth"}))
    assert ok(client.get(f"{T}/category/Growth"))["data"]["id"] == category["id"]
    assert failed(client.get(f"{T}/category/Marketing"), 400) == "Not found"
    ok(client.delete(f"{T}/category/{category['id']}"))
    message = failed(client.put(f"{T}/category/4129", data={"category_name": "X"}), 409)
    assert (
        message == 'Attempted to operate on entity event_category, id "4129", that does not exist.'
    )
    failed(client.delete(f"{T}/category/{category['id']}"), 409)
    # The API reads form fields: a JSON body leaves the required field missing.
    message = failed(client.post(f"{T}/category", json={"category_name": "Json"}), 400)
    assert message == "Missing required parameter: category_name"


def test_event_type_lifecycle(client) -> None:
    ok(
        client.post(
            f"{T}/event",
            data={
                "event_type": "Onboarding Start",
                "category": "Onboarding",
                "description": "First step",
                "tags": "a, b",
            },
        )
    )
    event = ok(client.get(f"{T}/event/Onboarding Start"))["data"]
    assert event["category"] == {"name": "Onboarding"} and event["tags"] == ["a", "b"]
    assert ok(client.get(f"{T}/category/Onboarding"))["data"]["name"] == "Onboarding"
    failed(client.post(f"{T}/event", data={"event_type": "Onboarding Start"}), 409)
    ok(
        client.put(
            f"{T}/event/Onboarding Start",
            data={"new_event_type": "Onboard Start", "display_name": "Onboarding"},
        )
    )
    renamed = ok(client.get(f"{T}/event/Onboard Start"))["data"]
    assert renamed["display_name"] == "Onboarding" and renamed["description"] == "First step"
    assert failed(client.get(f"{T}/event/Onboarding Start"), 400) == "Not found"
    assert "not in schema" in failed(client.put(f"{T}/event/Nope", data={"description": "x"}), 409)

    # A planned event is removed by DELETE; a live one is marked deleted and restorable.
    ok(client.delete(f"{T}/event/Onboard Start"))
    listed = ok(client.get(f"{T}/event", params={"showDeleted": "true"}))["data"]
    assert "Onboard Start" not in {e["event_type"] for e in listed}
    ok(client.delete(f"{T}/event/Invite Sent"))
    assert "Invite Sent" not in {e["event_type"] for e in ok(client.get(f"{T}/event"))["data"]}
    deleted = {
        e["event_type"]: e
        for e in ok(client.get(f"{T}/event", params={"showDeleted": "true"}))["data"]
    }
    assert deleted["Invite Sent"]["deleted"] is True
    failed(client.delete(f"{T}/event/Invite Sent"), 409)
    ok(client.post(f"{T}/event/Invite Sent/restore"))
    assert ok(client.get(f"{T}/event/Invite Sent"))["data"]["deleted"] is False
    failed(client.post(f"{T}/event/Invite Sent/restore"), 409)
    assert failed(client.delete(f"{T}/event/Never Seen"), 404) == "Not found"


def test_event_property_lifecycle(client) -> None:
    form = {
        "event_type": "Report Exported",
        "event_property": "rows",
        "type": "number",
        "description": "Rows in the export",
        "is_required": "true",
    }
    ok(client.post(f"{T}/event-property", data=form))
    message = failed(client.post(f"{T}/event-property", data=form), 409)
    assert message == (
        'Attempted to add an event property, "rows" for event '
        '"Report Exported", that already exists.'
    )
    prop = ok(client.get(f"{T}/event-property/rows", params={"event_type": "Report Exported"}))[
        "data"
    ]
    assert (prop["type"], prop["is_required"], prop["description"]) == (
        "number",
        True,
        "Rows in the export",
    )
    bad = failed(
        client.post(f"{T}/event-property", data={"event_property": "x", "type": "decimal"}), 400
    )
    assert "Invalid type" in bad
    ok(
        client.put(
            f"{T}/event-property/rows",
            data={"event_type": "Report Exported", "new_event_property_value": "row_count"},
        )
    )
    names = {
        p["event_property"]
        for p in ok(client.get(f"{T}/event-property", params={"event_type": "Report Exported"}))[
            "data"
        ]
    }
    assert names == {"format", "row_count"}
    # Seeded (live) property: deleted, then restored with 201.
    ok(
        client.request(
            "DELETE", f"{T}/event-property/format", data={"event_type": "Report Exported"}
        )
    )
    failed(client.get(f"{T}/event-property/format", params={"event_type": "Report Exported"}), 400)
    ok(
        client.post(f"{T}/event-property/format/restore", data={"event_type": "Report Exported"}),
        201,
    )
    failed(
        client.post(
            f"{T}/event-property", data={"event_type": "No Such Event", "event_property": "p"}
        ),
        404,
    )


def test_user_property_lifecycle_with_gp_prefix(client) -> None:
    listed = {p["user_property"] for p in ok(client.get(f"{T}/user-property"))["data"]}
    assert {"gp:plan", "gp:role", "gp:account", "gp:industry", "device_id"} <= listed
    ok(
        client.post(
            f"{T}/user-property",
            data={
                "user_property": "favorite_color",
                "type": "enum",
                "enum_values": "red, blue",
                "classifications": "PII",
            },
        )
    )
    prop = ok(client.get(f"{T}/user-property/gp%3Afavorite_color"))["data"]
    assert prop["user_property"] == "gp:favorite_color"
    assert (prop["type"], prop["enum_values"], prop["classifications"]) == (
        "enum",
        "red, blue",
        ["PII"],
    )
    ok(
        client.put(
            f"{T}/user-property/gp:favorite_color",
            data={"new_user_property_value": "colour", "description": "Preferred"},
        )
    )
    assert ok(client.get(f"{T}/user-property/gp:colour"))["data"]["description"] == "Preferred"
    assert failed(client.get(f"{T}/user-property/gp:favorite_color"), 404) == "Not found"
    ok(client.delete(f"{T}/user-property/gp:colour"))
    failed(client.get(f"{T}/user-property/gp:colour"), 404)
    assert "cannot be deleted" in failed(client.delete(f"{T}/user-property/device_id"), 400)
    ok(client.delete(f"{T}/user-property/gp:industry"))
    shown = {
        p["user_property"]: p
        for p in ok(client.get(f"{T}/user-property", params={"showDeleted": "true"}))["data"]
    }
    assert shown["gp:industry"]["deleted"] is True
    ok(client.post(f"{T}/user-property/gp:industry/restore"))


def test_group_properties(client) -> None:
    listed = ok(client.get(f"{T}/group-property"))["data"]
    assert {p["group_property"] for p in listed} >= {"grp:plan", "grp:industry"}
    assert {p["group_type"] for p in listed} == {"account"}
    ok(client.post(f"{T}/group-property", data={"group_property": "tier", "type": "string"}))
    assert ok(client.get(f"{T}/group-property/grp:tier"))["data"]["type"] == "string"
    failed(client.get(f"{T}/group-property/grp:tier", params={"group_type": "team"}), 404)


def test_wrong_secret_is_403(taxonomy_sandbox) -> None:
    keys = taxonomy_sandbox.config.amplitude_keys["us"]
    r = httpx.get(
        taxonomy_sandbox.urls.amplitude("us") + f"{T}/event",
        auth=(keys.api_key, "nope"),
        timeout=30,
    )
    assert r.status_code == 403
    assert r.json()["error"]["metadata"]["details"] == "Invalid API/Secret Key combination"


def test_fifth_concurrent_request_is_429(client, taxonomy_sandbox) -> None:
    statuses: list[int] = []

    def slow() -> None:
        statuses.append(client.get(f"{T}/category", headers={HOLD_HEADER: "2.5"}).status_code)

    threads = [threading.Thread(target=slow) for _ in range(4)]
    for t in threads:
        t.start()
    wait_in_flight(taxonomy_sandbox, "taxonomy_cost_in_flight", 4)
    fifth = client.get(f"{T}/category")
    for t in threads:
        t.join()
    assert statuses == [200] * 4
    assert failed(fifth, 429).startswith("Too many requests")


def test_two_writes_in_flight_fill_the_concurrent_cost(client, taxonomy_sandbox) -> None:
    statuses: list[int] = []

    def slow_write(i: int) -> None:
        r = client.post(
            f"{T}/category", data={"category_name": f"Slow {i}"}, headers={HOLD_HEADER: "2.5"}
        )
        statuses.append(r.status_code)

    threads = [threading.Thread(target=slow_write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    wait_in_flight(taxonomy_sandbox, "taxonomy_cost_in_flight", 4)
    read = client.get(f"{T}/category")
    for t in threads:
        t.join()
    assert statuses == [200, 200]
    assert failed(read, 429).startswith("Too many requests")


def test_hourly_cost_budget_counts_writes_double() -> None:
    limits = AmplitudeLimits(taxonomy_cost_per_hour=10)
    with SandboxServer(SandboxConfig(seed=9, now=NOW, amplitude_limits=limits)) as server:
        keys = server.config.amplitude_keys["us"]
        with httpx.Client(
            base_url=server.urls.amplitude("us"), timeout=30, auth=(keys.api_key, keys.secret_key)
        ) as c:
            reads = [c.get(f"{T}/category").status_code for _ in range(4)]  # cost 4
            writes = [
                c.post(f"{T}/category", data={"category_name": f"C{i}"}).status_code
                for i in range(3)
            ]  # cost 2 each: 6, 8, 10
            refused = c.get(f"{T}/category")  # 11 > 10
    assert reads == [200] * 4 and writes == [200] * 3
    assert refused.status_code == 429
    body = refused.json()
    assert set(body) == {"success", "errors"} and body["success"] is False
    assert body["errors"][0]["message"].startswith("Too many requests")
