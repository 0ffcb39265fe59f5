"""Pendo sandbox: integration keys, regions, write access and the rate limit."""

from __future__ import annotations

import httpx

from analytics_assets.sandbox.config import PENDO_REGIONS, PendoLimits

VERIFY = "/api/v1/token/verify"


def test_verify_tells_read_from_write_keys(pendo, pendo_writer):
    assert pendo.get(VERIFY).json() == {"valid": True, "writeAccess": False}
    assert pendo_writer.get(VERIFY).json() == {"valid": True, "writeAccess": True}


def test_bad_or_missing_key_is_403_with_empty_body(sandbox, pendo_client_for):
    for key in (None, "not-a-key", ""):
        response = pendo_client_for(sandbox, key=key).get(VERIFY)
        assert response.status_code == 403
        assert response.content == b""
    # Every method is guarded, not only verify.
    response = pendo_client_for(sandbox, key="garbage").get("/api/v1/page")
    assert (response.status_code, response.content) == (403, b"")


def test_header_name_is_case_insensitive_and_region_suffix_is_accepted(sandbox, pendo_client_for):
    keys = sandbox.config.pendo_keys
    client = pendo_client_for(sandbox, key=None)
    upper = client.get(VERIFY, headers={"X-Pendo-Integration-Key": keys["us"].read})
    assert upper.json()["valid"] is True
    eu = pendo_client_for(sandbox, region="eu", key=f"{keys['eu'].write}.eu").get(VERIFY)
    assert eu.json() == {"valid": True, "writeAccess": True}


def test_every_region_is_served_and_keys_do_not_cross(sandbox, pendo_client_for):
    keys = sandbox.config.pendo_keys
    for region in PENDO_REGIONS:
        assert pendo_client_for(sandbox, region=region).get(VERIFY).status_code == 200
    # A US key on the EU host looks like a bad key, and the other way round.
    assert (
        pendo_client_for(sandbox, region="eu", key=keys["us"].read).get(VERIFY).status_code == 403
    )
    assert (
        pendo_client_for(sandbox, region="us", key=keys["eu"].write).get(VERIFY).status_code == 403
    )
    # Regions hold different companies.
    us = pendo_client_for(sandbox, region="us").get("/api/v1/page").json()
    eu = pendo_client_for(sandbox, region="eu").get("/api/v1/page").json()
    assert {p["id"] for p in us}.isdisjoint({p["id"] for p in eu})


def test_auth_failure_status_401_when_configured(sandbox_factory, pendo_client_for):
    server = sandbox_factory("auth401", pendo_limits=PendoLimits(auth_failure_status=401))
    response = pendo_client_for(server, key="nope").get(VERIFY)
    assert (response.status_code, response.content) == (401, b"")
    assert pendo_client_for(server).get(VERIFY).status_code == 200


def test_read_only_key_cannot_write(pendo):
    response = pendo.post(
        "/api/v1/metadata/account/custom/value",
        json=[{"accountId": "account-000001", "values": {"plan": "pro"}}],
    )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert "write access" in response.text
    single = pendo.put("/api/v1/metadata/account/custom/value/account-000001/plan", json="pro")
    assert single.status_code == 403


def test_rate_limit_429_with_retry_after(sandbox_factory, pendo_client_for):
    server = sandbox_factory("rate", pendo_limits=PendoLimits(rate=0.5, burst=2))
    client = pendo_client_for(server)
    statuses = [client.get(VERIFY).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    refused = client.get(VERIFY)
    assert refused.text == "Too Many Requests"
    assert refused.headers["Retry-After"] == "2"  # one token at 0.5/s, rounded up
    # Buckets are per key: the write key still has its burst.
    assert pendo_client_for(server, key="write").get(VERIFY).status_code == 200
    limits = httpx.get(server.urls.control() + "/limits").json()["pendo"]
    assert limits["rate_limit"]["refused"] >= 2


def test_rate_limit_429_without_retry_after(sandbox_factory, pendo_client_for):
    server = sandbox_factory(
        "rate-no-header",
        pendo_limits=PendoLimits(rate=0.5, burst=1, retry_after_header=False),
    )
    client = pendo_client_for(server)
    assert client.get(VERIFY).status_code == 200
    refused = client.get(VERIFY)
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers
