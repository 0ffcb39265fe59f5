"""Pendo sandbox: metadata writes (bulk and single field) and what later reads show.

Each test writes to ids of its own, so the shared sandbox's other tests are unaffected.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

BULK_PATHS = ("/api/v1/metadata/{kind}/custom/value", "/api/v1/metadata/{kind}/custom/value/bulk")


@pytest.mark.parametrize("path", BULK_PATHS)
def test_bulk_write_counts_missing_and_errors(pendo_writer, path, control):
    records = [
        {"accountId": "account-000011", "values": {"plan": "pro", "seats": 12, "arr": 5400.5}},
        {
            "accountId": "account-000012",
            "values": {"is_paying": True, "renewal_date": 1800000000000},
        },
        {"accountId": "no-such-account", "values": {"plan": "pro"}},
        {"accountId": "account-000013", "values": {"seats": "twelve"}},
        {"accountId": "account-000014", "values": {"favourite_colour": "blue"}},
    ]
    before = control.get("/pendo/store/us").json()["records_written"]["account"]
    response = pendo_writer.post(path.format(kind="account"), json=records)
    assert response.status_code == 200
    result = response.json()
    assert result["kind"] == "account"
    assert (result["total"], result["updated"], result["failed"]) == (5, 2, 3)
    assert result["missing"] == ["no-such-account"]
    errors = {e["id"]: e for e in result["errors"]}
    assert set(errors) == {"account-000013", "account-000014"}
    assert errors["account-000013"]["field"] == "seats"
    assert errors["account-000014"]["field"] == "favourite_colour"
    assert result["total"] == result["updated"] + result["failed"]
    assert result["failed"] == len(result["missing"]) + len(result["errors"])

    after = control.get("/pendo/store/us").json()["records_written"]["account"]
    assert after - before == 2
    stored = control.get("/pendo/metadata/us/account/account-000011").json()
    assert stored["custom"] == {"plan": "pro", "seats": 12, "arr": 5400.5}
    # A record with an error is not applied at all.
    assert control.get("/pendo/metadata/us/account/account-000013").status_code == 404


def test_writes_show_in_reads_and_aggregations(sandbox, pendo_writer, pendo, aggregate):
    write = pendo_writer.post(
        "/api/v1/metadata/account/custom/value",
        json=[
            {
                "accountId": "account-000021",
                "values": {"health_score": 0.875, "renewal_date": "2027-03-01"},
            }
        ],
    )
    assert write.json()["updated"] == 1
    account = pendo.get("/api/v1/account/account-000021").json()
    renewal = int(datetime(2027, 3, 1, tzinfo=UTC).timestamp() * 1000)  # ISO -> epoch ms
    assert account["metadata"]["custom"] == {"health_score": 0.875, "renewal_date": renewal}
    assert account["metadata"]["auto"]["lastupdated"] == sandbox.config.now_ms()
    rows = aggregate(
        {"source": {"accounts": None}},
        {"filter": "metadata.custom.health_score > 0.8"},
        {"select": {"id": "accountId", "h": "metadata.custom.health_score"}},
    )
    assert {"id": "account-000021", "h": 0.875} in rows["results"]


def test_visitor_agent_and_custom_writes(pendo_writer, pendo, aggregate):
    response = pendo_writer.post(
        "/api/v1/metadata/visitor/custom/value",
        json=[{"visitorId": "visitor-0000031", "values": {"nps_score": 9, "beta_opt_in": True}}],
    )
    assert response.json()["updated"] == 1
    agent = pendo_writer.post(
        "/api/v1/metadata/visitor/agent/value",
        json=[{"visitorId": "visitor-0000031", "values": {"language": "fr_FR", "tier": "gold"}}],
    )
    assert agent.json()["updated"] == 1  # agent metadata takes new fields
    metadata = pendo.get("/api/v1/visitor/visitor-0000031").json()["metadata"]
    assert metadata["custom"] == {"nps_score": 9, "beta_opt_in": True}
    assert metadata["agent"]["language"] == "fr_FR" and metadata["agent"]["tier"] == "gold"
    assert metadata["agent"]["email"].startswith(metadata["agent"]["name"].split()[0].lower())
    rows = aggregate(
        {"source": {"visitors": None}},
        {"filter": "metadata.custom.nps_score == 9"},
        {"select": {"v": "visitorId"}},
    )["results"]
    assert {"v": "visitor-0000031"} in rows
    schema = pendo.get("/api/v1/metadata/schema/visitor").json()
    assert schema["agent"]["tier"]["Type"] == "string"


def test_create_true_makes_new_entities(pendo_writer, pendo, aggregate):
    new = [{"visitorId": "crm-visitor-1", "values": {"role_override": "owner"}}]
    without = pendo_writer.post("/api/v1/metadata/visitor/custom/value", json=new).json()
    assert without["missing"] == ["crm-visitor-1"] and without["updated"] == 0
    assert pendo.get("/api/v1/visitor/crm-visitor-1").status_code == 404

    created = pendo_writer.post(
        "/api/v1/metadata/visitor/custom/value/bulk", params={"create": "true"}, json=new
    ).json()
    assert created["updated"] == 1 and created["missing"] == []
    visitor = pendo.get("/api/v1/visitor/crm-visitor-1").json()
    assert visitor["id"] == "crm-visitor-1"
    assert visitor["metadata"]["custom"] == {"role_override": "owner"}
    rows = aggregate({"source": {"visitors": None}}, {"filter": 'visitorId == "crm-visitor-1"'})
    assert rows["results"][0]["metadata"]["custom"]["role_override"] == "owner"
    schema = pendo.get("/api/v1/metadata/schema/visitor").json()
    assert schema["custom"]["role_override"]["sample"] == "owner"

    account = [{"accountId": "crm-account-1", "values": {"csm_owner": "dara@acme.example"}}]
    result = pendo_writer.post(
        "/api/v1/metadata/account/custom/value?create=true", json=account
    ).json()
    assert result["updated"] == 1
    assert pendo.get("/api/v1/account/crm-account-1").json()["metadata"]["custom"] == {
        "csm_owner": "dara@acme.example"
    }


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"accountId": "account-000001"}, "array"),
        (["account-000001"], "not a JSON object"),
        ([{"values": {"plan": "pro"}}], "accountId"),
        ([{"accountId": "account-000001", "values": "pro"}], "values"),
    ],
)
def test_malformed_bulk_bodies_are_400_text(pendo_writer, body, fragment):
    response = pendo_writer.post("/api/v1/metadata/account/custom/value", json=body)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert fragment in response.text


def test_bad_json_and_too_many_records(pendo_writer):
    bad = pendo_writer.post(
        "/api/v1/metadata/account/custom/value",
        content=b"[{",
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("text/plain")
    many = [{"accountId": "account-000001", "values": {"seats": 1}}] * 10_001
    response = pendo_writer.post("/api/v1/metadata/account/custom/value", json=many)
    assert response.status_code == 400 and "10000" in response.text


def test_single_field_put_and_get(pendo_writer, pendo):
    path = "/api/v1/metadata/account/custom/value/account-000031/seats"
    assert pendo.get(path).status_code == 404  # unset
    assert pendo_writer.put(path, json=42).status_code == 200
    got = pendo.get(path)
    assert got.status_code == 200 and got.json() == 42
    wrong = pendo_writer.put(path, json="forty-two")
    assert wrong.status_code == 400 and "integer" in wrong.text
    assert pendo.get(path).json() == 42
    # Agent values the snippet set read back as bare scalars too.
    email = pendo.get("/api/v1/metadata/visitor/agent/value/visitor-0000001/email").json()
    assert email.endswith(".example.com")
    assert (
        pendo_writer.put("/api/v1/metadata/account/custom/value/nobody/seats", json=1).status_code
        == 404
    )


def test_control_stages_a_new_account_in_another_region(
    sandbox, control, pendo_client_for, aggregate
):
    staged = control.post(
        "/pendo/accounts",
        json={
            "region": "eu",
            "account_id": "fresh-start-eu",
            "name": "Fresh Start",
            "plan": "pro",
            "metadata": {"custom": {"arr": 12000.0}},
            "visitors": 2,
        },
    )
    assert staged.status_code == 200, staged.text
    body = staged.json()
    account_id, visitors = body["account_id"], body["visitor_ids"]
    assert account_id == "fresh-start-eu"
    assert len(visitors) == 2
    eu = pendo_client_for(sandbox, region="eu")
    account = eu.get(f"/api/v1/account/{account_id}").json()
    assert account["metadata"]["agent"]["name"] == "Fresh Start"
    assert account["metadata"]["custom"] == {"arr": 12000.0}
    now = sandbox.config.now_ms()
    assert account["metadata"]["auto"]["firstvisit"] == now
    visitor = eu.get(f"/api/v1/visitor/{visitors[0]}").json()
    assert visitor["accountIds"] == [account_id]
    # The new visitors are active from now: their events show in the current hour.
    rows = aggregate(
        {
            "source": {
                "events": None,
                "timeSeries": {"period": "hourRange", "first": now, "count": 1},
            }
        },
        {"filter": f'accountId == "{account_id}"'},
        client=eu,
    )["results"]
    assert sorted(r["visitorId"] for r in rows) == sorted(visitors)
    assert all(r["hour"] == now and r["numEvents"] > 0 for r in rows)
    accounts = aggregate(
        {"source": {"accounts": None}}, {"filter": f'accountId == "{account_id}"'}, client=eu
    )["results"]
    assert len(accounts) == 1
    # The US region did not change.
    assert pendo_client_for(sandbox).get(f"/api/v1/account/{account_id}").status_code == 404
    bad = control.post("/pendo/accounts", json={"region": "mars"})
    assert bad.status_code == 400
