"""Helpers shared by the Amplitude sandbox tests (core half): servers, clients, export reading.

Each test module starts its own module-scoped sandbox with a fixed clock, so the
numbers it reads are reproducible and independent of other modules.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.config import AmplitudeLimits

NOW = datetime(2026, 6, 20, 12, 0, tzinfo=UTC)


@contextmanager
def amplitude_sandbox(
    seed: int = 11, config: dict[str, Any] | None = None, **limits: Any
) -> Iterator[SandboxServer]:
    """A sandbox with a fixed clock, config fields and Amplitude limits overridden."""
    config = SandboxConfig(**{"seed": seed, "now": NOW, **(config or {})})
    config.amplitude_limits = replace(AmplitudeLimits(), **limits)
    with SandboxServer(config) as server:
        yield server


def client(server: SandboxServer, region: str = "us", **kwargs: Any) -> httpx.Client:
    """An httpx client with the region's Basic credentials."""
    keys = server.config.amplitude_keys[region]
    return httpx.Client(
        base_url=server.urls.amplitude(region),
        auth=(keys.api_key, keys.secret_key),
        timeout=120,
        **kwargs,
    )


def read_export(response: httpx.Response) -> dict[str, list[dict[str, Any]]]:
    """member name -> parsed NDJSON records of a 200 export response."""
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    out = {}
    for info in archive.infolist():
        assert info.compress_type == zipfile.ZIP_STORED
        data = gzip.decompress(archive.read(info))
        out[info.filename] = [json.loads(line) for line in data.splitlines() if line]
    return out


def export_records(http: httpx.Client, start: str, end: str) -> list[dict[str, Any]]:
    response = http.get("/api/2/export", params={"start": start, "end": end})
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return [r for records in read_export(response).values() for r in records]


def error_details(response: httpx.Response) -> str:
    return response.json()["error"]["metadata"]["details"]
