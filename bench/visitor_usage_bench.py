"""Visitor-level Pendo usage at scale: rows per second and peak memory of each asset.

Starts the sandbox at ``--scale`` in its own process (``analytics-assets sandbox``, clock
frozen three days after ``--day``), then materializes each visitor-level daily asset
(``pendo/visitor_usage.py``) for the day, one at a time, in this process with a fresh
DuckDB warehouse, and reports rows written, wall seconds, rows per second and this
process's peak resident memory during the asset (sampled every 50 ms from
``/proc/self/status``). The sandbox's own time (it computes Pendo's aggregation) is in
the wall time, as a real aggregation's would be.

    python bench/visitor_usage_bench.py --scale 100
    python bench/visitor_usage_bench.py --scale 1000 --only feature_visitor_daily_usage
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from _sandbox_process import freeze_clock, loadavg, rss_mb, start_cli_sandbox

from analytics_assets.pendo.assets import pendo_assets
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.pendo.visitor_usage import VISITOR_USAGE_ASSETS
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

READ_KEY = "sandbox-pendo-us-read-key"
TIMEZONE = "America/New_York"
DAY = "2026-11-17"
# Catalog tables the visitor assets read names from (track types) or depend on.
CATALOG = ("track_types",)


class PeakRss:
    """This process's highest resident memory while the block runs (MB)."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.start = self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def measure(base: str, database: str, day: str, names: list[str]) -> list[dict[str, Any]]:
    assets = pendo_assets(include=[*CATALOG, *names])
    resources = {
        "pendo": PendoResource(
            integration_key=READ_KEY, base_url=base, rate_per_second=50, read_timeout=3600
        ),
        "warehouse": DuckDBWarehouse(database=database),
    }
    catalog = [a.key for a in assets if a.partitions_def is None]
    assert dg.materialize(assets, selection=catalog, resources=resources).success
    results = []
    for name in names:
        key = dg.AssetKey(["pendo", name])
        with PeakRss() as peak:
            started = time.perf_counter()
            run = dg.materialize(assets, selection=[key], partition_key=day, resources=resources)
            seconds = time.perf_counter() - started
        assert run.success, name
        event = next(e for e in run.get_asset_materialization_events())
        rows = int(event.materialization.metadata["dagster/row_count"].value)
        results.append(
            {
                "asset": name,
                "rows": rows,
                "seconds": round(seconds, 2),
                "rows_per_second": round(rows / seconds),
                "rss_before_mb": round(peak.start),
                "peak_rss_mb": round(peak.peak),
            }
        )
        print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--day", default=DAY, help="the partition (a local day)")
    parser.add_argument(
        "--only", nargs="*", choices=list(VISITOR_USAGE_ASSETS), help="these assets only"
    )
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    names = args.only or list(VISITOR_USAGE_ASSETS)
    with tempfile.TemporaryDirectory(prefix="visitor-usage-bench-") as tmp:
        log = Path(tmp) / "sandbox.log"
        options = ["--seed", str(args.seed), "--scale", str(args.scale), "--timezone", TIMEZONE,
                   "--pendo-rate", "0"]  # fmt: skip
        proc, base, info = start_cli_sandbox(options, log, wait_seconds=600)
        try:
            now = datetime.combine(
                date.fromisoformat(args.day) + timedelta(days=3), datetime.min.time(), tzinfo=UTC
            )
            freeze_clock(base, now + timedelta(hours=12))
            us = info["regions"]["us"]
            print(
                f"scale {args.scale:g}: {us['accounts']:,} accounts, {us['visitors']:,} "
                f"visitors; day {args.day}; load {loadavg()}",
                flush=True,
            )
            results = measure(base, str(Path(tmp) / "warehouse.duckdb"), args.day, names)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    if args.out:
        args.out.write_text(json.dumps({"scale": args.scale, "results": results}, indent=2))
    print("\n| asset | rows | seconds | rows/s | MB before | peak MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| `{r['asset']}` | {r['rows']:,} | {r['seconds']:.1f} | {r['rows_per_second']:,} "
            f"| {r['rss_before_mb']} | {r['peak_rss_mb']} |"
        )


if __name__ == "__main__":
    main()
