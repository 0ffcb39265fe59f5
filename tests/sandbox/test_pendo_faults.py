"""Pendo sandbox: injected faults as a client sees them, and the request counters."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

pytestmark = pytest.mark.faults


@pytest.fixture
def faults(control: httpx.Client) -> Iterator[Callable[[dict], None]]:
    """``faults(spec)`` adds a fault rule; every rule is cleared after the test."""

    def add(spec: dict) -> None:
        response = control.post("/faults", json=spec)
        assert response.status_code == 200, response.text

    yield add
    control.delete("/faults")


def test_injected_503_is_an_html_page_then_recovers(pendo, faults):
    faults({"kind": "error", "status": 503, "count": 1, "path": r"/api/v1/tracktype$"})
    first = pendo.get("/api/v1/tracktype")
    assert first.status_code == 503
    assert first.headers["content-type"].startswith("text/html")
    assert pendo.get("/api/v1/tracktype").status_code == 200


def test_dropped_connection(pendo, faults):
    faults({"kind": "drop", "count": 1, "path": r"/api/v1/page$", "fraction": 0.3})
    with pytest.raises(httpx.RemoteProtocolError):
        pendo.get("/api/v1/page")
    assert pendo.get("/api/v1/page").status_code == 200


def test_dropped_aggregation_stream(pendo, faults):
    faults({"kind": "drop", "count": 1, "path": r"/api/v1/aggregation$"})
    body = {"request": {"pipeline": [{"source": {"visitors": None}}]}}
    with pytest.raises(httpx.RemoteProtocolError):
        pendo.post("/api/v1/aggregation", json=body)


def test_truncated_body(pendo, faults):
    faults({"kind": "truncate", "count": 1, "path": r"/api/v1/feature$", "fraction": 0.5})
    cut = pendo.get("/api/v1/feature")
    assert cut.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)
    whole = pendo.get("/api/v1/feature")
    assert len(whole.content) > 2 * len(cut.content) - 2
    assert orjson.loads(whole.content)


def test_counters_reflect_requests(pendo, control, sandbox, pendo_client_for):
    def count(path: str, status: int) -> int:
        rows = control.get("/counters").json()["requests"]
        return sum(r["count"] for r in rows if r["path"] == path and r["status"] == status)

    before_ok = count("/api/v1/token/verify", 200)
    before_denied = count("/eu/api/v1/token/verify", 403)
    before_auth = control.get("/limits").json()["pendo"]["auth_failures"]
    for _ in range(3):
        assert pendo.get("/api/v1/token/verify").status_code == 200
    assert (
        pendo_client_for(sandbox, region="eu", key="wrong").get("/api/v1/token/verify").status_code
        == 403
    )
    assert count("/api/v1/token/verify", 200) - before_ok == 3
    assert count("/eu/api/v1/token/verify", 403) - before_denied == 1
    assert control.get("/limits").json()["pendo"]["auth_failures"] - before_auth == 1
