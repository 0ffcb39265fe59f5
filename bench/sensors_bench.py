"""Benchmark: one tick of every default alert rule against 100,000 accounts.

    python bench/sensors_bench.py [--scale 1000] [--seed 7] [--written 20000]

The sandbox (scale 1000: 100,000 accounts, about 1.1 million visitors) runs in its own
process, so its work neither shares this process's GIL nor counts in its memory. Before the
ticks, ``--written`` accounts get the write-back's custom fields (bulk writes with the write
key) and a matching ``analytics.writeback_log`` in a scratch warehouse, so the metadata rule
compares 100,000 accounts against a real log.

Each sensor ticks twice through ``dg.build_sensor_context``: a first tick with no cursor
(everything that already holds alerts once) and a second, steady one (nothing changed, so
nothing alerts). For each tick it prints: API requests as the sandbox counted them, Amplitude
cost units charged, megabytes received, wall time, the process's peak resident memory during
the tick (Linux ``VmHWM``, reset before each tick) and how much that peak added to the
memory held before it, the alerts raised, and the cursor's size in bytes. ``cpu s`` is this
process's CPU time: the sensor's own work (parsing, evaluating, delivering); the rest of the
wall time is the sandbox computing the aggregation in its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # a Wednesday, 10:00 in New York
NY = "America/New_York"
SENSORS = (
    "pendo_activity_sensor",
    "pendo_guides_sensor",
    "pendo_metadata_sensor",
    "amplitude_cohorts_sensor",
    "run_failure_alerts_sensor",
)


# ----- the sandbox process --------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """Child mode: start the sandbox, warm it up, print its URL, wait for EOF on stdin."""
    import httpx

    from analytics_assets.sandbox.config import PendoLimits, SandboxConfig
    from analytics_assets.sandbox.server import SandboxServer

    # No Pendo rate limit: the benchmark measures the sensors' calls, not the throttle.
    config = SandboxConfig(seed=args.seed, scale=args.scale, now=NOW,
                           pendo_limits=PendoLimits(rate=None))  # fmt: skip
    with SandboxServer(config) as server:
        headers = {"x-pendo-integration-key": config.pendo_keys["us"].read}
        body = {"request": {"pipeline": [{"source": {"accounts": None}}, {"limit": 1}]}}
        httpx.post(f"{server.urls.pendo()}/api/v1/aggregation", json=body, headers=headers,
                   timeout=600).raise_for_status()  # fmt: skip
        print(f"URL {server.urls.base}", flush=True)
        sys.stdin.read()
    return 0


def start_sandbox(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, __file__, "--serve", "--scale", str(args.scale),
               "--seed", str(args.seed)]  # fmt: skip
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line.startswith("URL "):
        child.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return child, line.split()[1]


# ----- measuring ------------------------------------------------------------------------


def _kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1))


def _reset_peak() -> None:
    # Linux: "5" resets the process's peak resident set size (VmHWM) to its current size.
    Path("/proc/self/clear_refs").write_text("5")


def _counters(base: str) -> dict[str, Any]:
    import httpx

    return httpx.get(f"{base}/_sandbox/counters", timeout=30).json()


def measure(sensor: Any, cursor: str | None, resources: Any, instance: Any, base: str) -> dict:
    import dagster as dg
    import httpx

    httpx.post(f"{base}/_sandbox/counters/reset", timeout=30)
    before = _kb("VmRSS")
    _reset_peak()
    started, cpu = time.perf_counter(), time.process_time()
    with dg.build_sensor_context(cursor=cursor, instance=instance) as ctx:
        outcome = sensor.tick(ctx, resources)  # what the sensor's typed parameters receive
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = _kb("VmHWM")
    counts = _counters(base)
    stats = outcome.api_stats
    return {
        "requests": counts["total"],
        "by_status": counts["by_status"],
        "cost": sum(s.get("cost", 0) for s in stats.values()),
        "mb": sum(s.get("bytes", 0) for s in stats.values()) / 1e6,
        "wall": wall,
        "cpu": cpu,
        "peak_mb": peak / 1024,
        "added_mb": max(0, peak - before) / 1024,
        "alerts": len(outcome.alerts),
        "cursor": outcome.cursor if outcome.cursor is not None else cursor,
        "skip": outcome.skip_reason,
    }


# ----- setup ----------------------------------------------------------------------------


def write_back(base: str, written: int, warehouse: Any) -> float:
    """Give ``written`` accounts the write-back's fields in Pendo and in the log."""
    from analytics_assets.crm_writeback.tables import LogRow, append_log
    from analytics_assets.pendo.client import MetadataRecord, PendoClient
    from analytics_assets.sandbox.company import Company

    started = time.perf_counter()
    plans = ("free", "starter", "pro", "enterprise")
    records = [
        MetadataRecord(
            Company.account_id(i),
            {
                "plan": plans[i % 4],
                "arr": float(1000 * (i % 50)),
                "seats": 5 + i % 30,
                "is_paying": i % 4 != 0,
                "csm_owner": f"Owner {i % 17}",
            },
        )  # fmt: skip
        for i in range(written)
    ]
    with PendoClient("sandbox-pendo-us-write-key", base_url=base, rate=100) as client:
        for outcome in client.update_metadata("account", records):
            assert outcome.ok, outcome.failed
    rows = [LogRow(1, r.id, json.dumps(dict(r.values)), "{}", "updated") for r in records]
    append_log(warehouse, "bench-run", rows, dry_run=False)
    # Someone else edits a few of them in Pendo: the metadata rule's alerts.
    edits = [MetadataRecord(Company.account_id(i), {"plan": "churned"}) for i in range(0, 50)]
    with PendoClient("sandbox-pendo-us-write-key", base_url=base, rate=100) as client:
        list(client.update_metadata("account", edits))
    return time.perf_counter() - started


# ----- main -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import dagster as dg

    from analytics_assets.alerts.sensors import (
        RunFailureRunner,
        SensorResources,
        build_alert_runners,
        make_settings,
    )
    from analytics_assets.amplitude.resource import AmplitudeResource
    from analytics_assets.pendo.resource import PendoResource
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    child, base = start_sandbox(args)
    try:
        scratch = tempfile.mkdtemp(prefix="sensors-bench-")
        warehouse = DuckDBWarehouse(database=os.path.join(scratch, "warehouse.duckdb"))
        setup = write_back(base, args.written, warehouse) if args.written else 0.0
        resources = SensorResources(
            pendo=PendoResource(integration_key="sandbox-pendo-us-read-key", base_url=base,
                                rate_per_second=100),
            amplitude=AmplitudeResource(api_key="sandbox-amplitude-us-api-key",
                                        secret_key="sandbox-amplitude-us-secret-key",
                                        base_url=base),
            warehouse=warehouse,
        )  # fmt: skip
        settings = make_settings(clock=lambda: NOW, pendo_timezone=NY, environ={},
                                 late_data_job="daily_sync", api_timeout_seconds=300)  # fmt: skip
        runners: dict[str, Any] = dict(build_alert_runners(settings))
        runners["run_failure_alerts_sensor"] = RunFailureRunner(settings)
        instance = dg.DagsterInstance.ephemeral()
        print(f"sandbox: scale {args.scale:g} ({int(100 * args.scale):,} accounts); "
              f"write-back setup for {args.written:,} accounts: {setup:.1f} s\n")  # fmt: skip
        rows = []
        for name in SENSORS:
            cursor = None
            for label in ("first", "steady"):
                result = measure(runners[name], cursor, resources, instance, base)
                cursor = result["cursor"]
                rows.append((name, label, result))
        header = (
            f"{'sensor':26} {'tick':6} {'calls':>5} {'cost':>5} {'MB in':>7} "
            f"{'wall s':>7} {'cpu s':>6} {'peak MB':>8} {'+MB':>6} {'alerts':>6} {'cursor B':>8}"
        )
        print(header)
        print("-" * len(header))
        for name, label, r in rows:
            print(
                f"{name:26} {label:6} {r['requests']:>5} {r['cost']:>5.0f} {r['mb']:>7.2f} "
                f"{r['wall']:>7.2f} {r['cpu']:>6.2f} {r['peak_mb']:>8.0f} {r['added_mb']:>6.0f} "
                f"{r['alerts']:>6} {len(r['cursor'] or ''):>8}"
            )
        bad = [(n, lab, r["by_status"]) for n, lab, r in rows
               if set(r["by_status"]) - {"200", "202"}]  # fmt: skip
        if bad:
            print("\nnon-200 answers:", bad)
        total = sum(r["requests"] for _, label, r in rows if label == "first")
        print(f"\none tick of every sensor: {total} API calls")
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=60)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--written",
        type=int,
        default=20_000,
        help="accounts given write-back fields and a log before the ticks",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    return serve(args) if args.serve else run(args)


if __name__ == "__main__":
    raise SystemExit(main())
