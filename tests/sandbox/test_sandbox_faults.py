"""The sandbox's fault kinds for issue 18: an intermediary's HTML error pages (404, 502, 503)
and damaged 200 answers (an HTML page, an empty body, JSON cut short), as a client sees them
on the wire."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from amplitude_helpers import client as amplitude_http

from analytics_assets.sandbox import SandboxServer
from analytics_assets.sandbox.faults import PORTAL_PAGE, html_error_page

pytestmark = pytest.mark.faults

EXPORT = "/api/2/export"
# An hour the shared sandbox has data for (its clock is 2026-11-18T15:00Z).
HOUR = {"start": "20261117T10", "end": "20261117T10"}


@pytest.fixture
def faults(control: httpx.Client) -> Iterator[Callable[[dict], None]]:
    """``faults(spec)`` adds a fault rule; every rule is cleared after the test."""
    control.delete("/faults")
    control.post("/counters/reset")

    def add(spec: dict) -> None:
        response = control.post("/faults", json=spec)
        assert response.status_code == 200, response.text

    yield add
    control.delete("/faults")


@pytest.fixture
def amplitude(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with amplitude_http(sandbox) as http:
        yield http


def test_html_404_on_the_export_is_a_proxys_page_not_the_apis_answer(amplitude, faults):
    assert amplitude.get(EXPORT, params=HOUR).status_code == 200
    faults({"kind": "html", "status": 404, "count": 1, "path": f"^{EXPORT}"})
    page = amplitude.get(EXPORT, params=HOUR)
    assert page.status_code == 404
    assert page.headers["content-type"] == "text/html"
    assert page.content == html_error_page(404)
    assert int(page.headers["content-length"]) == len(page.content)
    assert b"<title>404 Not Found</title>" in page.content
    # Unlike the Export API's own 404, it is no JSON at all.
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(page.content)
    assert amplitude.get(EXPORT, params=HOUR).status_code == 200  # the count is spent


@pytest.mark.parametrize("status", [502, 503])
def test_html_gateway_pages(pendo, faults, control, status):
    faults({"kind": "html", "status": status, "count": 1, "path": r"/api/v1/page$"})
    page = pendo.get("/api/v1/page")
    assert page.status_code == status and page.headers["content-type"] == "text/html"
    assert f"<h1>{status} ".encode() in page.content
    assert pendo.get("/api/v1/page").status_code == 200
    assert control.get("/counters").json()["faults"] == {"html": 1}


def test_damaged_200_html_is_a_portal_page_with_a_matching_length(pendo, faults):
    faults({"kind": "damage", "damage": "html", "count": 1, "path": r"/api/v1/feature$"})
    page = pendo.get("/api/v1/feature")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.content == PORTAL_PAGE
    assert int(page.headers["content-length"]) == len(PORTAL_PAGE)
    assert orjson.loads(pendo.get("/api/v1/feature").content)


def test_damaged_200_empty(pendo, faults):
    faults({"kind": "damage", "damage": "empty", "count": 1, "path": r"token/verify$"})
    empty = pendo.get("/api/v1/token/verify")
    assert empty.status_code == 200 and empty.content == b""
    assert empty.headers["content-length"] == "0"
    assert "content-type" not in empty.headers


def test_damaged_200_cut_keeps_the_content_type_and_fixes_the_length(pendo, faults):
    whole = pendo.get("/api/v1/metadata/schema/account")
    faults({"kind": "damage", "damage": "cut", "count": 1, "fraction": 0.4, "path": "schema"})
    cut = pendo.get("/api/v1/metadata/schema/account")
    assert cut.status_code == 200
    assert cut.headers["content-type"] == whole.headers["content-type"]
    assert int(cut.headers["content-length"]) == len(cut.content) == int(len(whole.content) * 0.4)
    assert whole.content.startswith(cut.content)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut.content)


def test_damage_leaves_answers_other_than_200_alone(pendo, faults):
    faults({"kind": "damage", "damage": "html", "count": 1, "path": "visitor"})
    missing = pendo.get("/api/v1/visitor/no-such-visitor-anywhere")
    assert missing.status_code == 404
    assert not missing.content.startswith(b"<!DOCTYPE")


def test_damage_cut_of_a_streamed_export_is_not_a_whole_zip(amplitude, faults):
    faults({"kind": "damage", "damage": "cut", "count": 1, "path": f"^{EXPORT}"})
    cut = amplitude.get(EXPORT, params=HOUR)
    assert cut.status_code == 200 and int(cut.headers["content-length"]) == len(cut.content)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(cut.content))


def test_unknown_damage_is_refused_with_the_reason(control):
    response = control.post("/faults", json={"kind": "damage", "damage": "garble"})
    assert response.status_code == 400
    assert "unknown damage" in response.json()["error"]
