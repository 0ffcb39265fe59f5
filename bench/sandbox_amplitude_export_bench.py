"""Benchmark: how fast the sandbox generates the Amplitude Export API's zip.

Not a test (nothing asserts on time). It raises ``amplitude_events_per_pendo_event`` so
one day holds well over a million events, then measures:

* ``in-process``: ``ProjectEvents.iter_export_records`` + the gzip members (what the
  route does), without HTTP;
* ``over HTTP``: a client streaming ``GET /api/2/export`` for the whole day, counting
  bytes (the server and client share this process, as in the tests).

Recorded on the 2-core dev VM (≈1 effective core), seed 7, ratio 300, 2026-06-16, with
``isal`` installed (with only zlib at level 1: ≈110k events/s, gzip dominates):

    quiet machine:  1,829,920 events | in-process ≈290k events/s | over HTTP ≈255k events/s
    other sessions' tests running (load 3.8): ≈165–220k events/s either way
    zip ≈282 MB for the day; response headers after 0.4–0.9 s

    /work/venv/bin/python bench/sandbox_amplitude_export_bench.py [--ratio 300]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import httpx

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.amplitude import export as export_module
from analytics_assets.sandbox.amplitude.export import gzip_member
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.state import SandboxState

NOW = datetime(2026, 6, 20, 12, tzinfo=UTC)
DAY_START = int(datetime(2026, 6, 16, tzinfo=UTC).timestamp() * 1000)
HOUR_MS = 3_600_000


def in_process(ratio: float) -> tuple[int, float, int]:
    config = SandboxConfig(seed=7, now=NOW, amplitude_events_per_pendo_event=ratio)
    tenant = AmplitudeTenant(SandboxState(config), "us")
    started = time.perf_counter()
    events = size = 0
    for chunk in tenant.events.iter_export_records(DAY_START, DAY_START + 23 * HOUR_MS):
        events += chunk.count
        size += len(gzip_member(chunk.pieces))
    return events, time.perf_counter() - started, size


def over_http(ratio: float) -> tuple[float, float, int]:
    config = SandboxConfig(seed=7, now=NOW, amplitude_events_per_pendo_event=ratio)
    with SandboxServer(config) as server:
        keys = config.amplitude_keys["us"]
        started = time.perf_counter()
        size = 0
        with httpx.stream(
            "GET",
            f"{server.urls.amplitude()}/api/2/export",
            params={"start": "20260616T00", "end": "20260616T23"},
            auth=(keys.api_key, keys.secret_key),
            timeout=600,
        ) as response:
            headers_at = time.perf_counter() - started
            for chunk in response.iter_raw():
                size += len(chunk)
        return headers_at, time.perf_counter() - started, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio", type=float, default=300.0)
    args = parser.parse_args()
    print(f"deflate: {export_module._deflate_lib.__name__}")
    events, seconds, size = in_process(args.ratio)
    print(
        f"in-process: {events:,} events in {seconds:.1f} s = {events / seconds:,.0f} events/s,"
        f" {size / 1e6:.0f} MB"
    )
    headers_at, seconds, size = over_http(args.ratio)
    print(
        f"over HTTP: {events:,} events in {seconds:.1f} s = {events / seconds:,.0f} events/s,"
        f" headers after {headers_at:.2f} s, {size / 1e6:.0f} MB"
    )


if __name__ == "__main__":
    main()
