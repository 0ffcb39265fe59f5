"""Visitor-level Pendo usage at scale: rows per second and peak memory of each asset.

Starts the sandbox at ``--scale`` in its own process (``analytics-assets sandbox``, clock
frozen three days after ``--day``), then materializes each visitor-level daily asset
(``pendo/visitor_usage.py``) for the day, one at a time, in this process, into one DuckDB
warehouse, and reports rows written, wall seconds, rows per second and this process's
peak resident memory during the asset (sampled every 50 ms from ``/proc/self/status``).
The sandbox's own time (it computes Pendo's aggregation) is in the wall time, as a real
aggregation's would be.

Each asset runs once to warm the sandbox's caches (not counted), then ``--repeat`` rounds
of every ``--stream-memory-limit`` variant (the warehouse's ``stream_memory_limit``;
default ``288MB``, which is ``memory_limit``: the load and checks as before that setting,
and ``64MB``, the product's), in turns A B, B A, A B...; the table gives the median of
the rounds of each variant.

    python bench/visitor_usage_bench.py --scale 100
    python bench/visitor_usage_bench.py --scale 1000 --only feature_visitor_daily_usage
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from _sandbox_process import PeakRss, freeze_clock, loadavg, start_cli_sandbox

from analytics_assets.pendo.assets import pendo_assets
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.pendo.visitor_usage import VISITOR_USAGE_ASSETS
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

READ_KEY = "sandbox-pendo-us-read-key"
TIMEZONE = "America/New_York"
DAY = "2026-11-17"
# Catalog tables the visitor assets read names from (track types) or depend on.
CATALOG = ("track_types",)
# stream_memory_limit variants: as before the setting (memory_limit's 288MB), and now.
LIMITS = ("288MB", "64MB")


def run_once(
    assets: list[dg.AssetsDefinition],
    name: str,
    resources: dict[str, Any],
    day: str,
) -> dict[str, Any]:
    key = dg.AssetKey(["pendo", name])
    load = loadavg()
    with PeakRss() as peak:
        started = time.perf_counter()
        run = dg.materialize(assets, selection=[key], partition_key=day, resources=resources)
        seconds = time.perf_counter() - started
    assert run.success, name
    event = next(e for e in run.get_asset_materialization_events())
    rows = int(event.materialization.metadata["dagster/row_count"].value)
    return {
        "asset": name,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_second": round(rows / seconds),
        "rss_before_mb": round(peak.start),
        "peak_rss_mb": round(peak.peak),
        "load": load,
    }


def measure(
    base: str, database: str, day: str, names: list[str], limits: list[str], repeat: int
) -> list[dict[str, Any]]:
    assets = pendo_assets(include=[*CATALOG, *names])
    pendo = PendoResource(
        integration_key=READ_KEY, base_url=base, rate_per_second=50, read_timeout=3600
    )

    def resources(limit: str | None = None) -> dict[str, Any]:
        settings = {"stream_memory_limit": limit} if limit else {}
        return {"pendo": pendo, "warehouse": DuckDBWarehouse(database=database, **settings)}

    catalog = [a.key for a in assets if a.partitions_def is None]
    assert dg.materialize(assets, selection=catalog, resources=resources()).success
    results = []
    for name in names:
        warm = run_once(assets, name, resources(), day)
        print(json.dumps({**warm, "warm_up": True}), flush=True)
        for round_ in range(repeat):
            # A B, then B A: neither variant always runs right after the warm-up.
            for limit in limits if round_ % 2 == 0 else limits[::-1]:
                result = {
                    **run_once(assets, name, resources(limit), day),
                    "stream_memory_limit": limit,
                    "round": round_ + 1,
                }
                print(json.dumps(result), flush=True)
                if result["rows"] != warm["rows"]:
                    raise SystemExit(f"{name}: {result['rows']} rows, {warm['rows']} before")
                results.append(result)
    return results


def medians(results: list[dict[str, Any]], names: list[str], limits: list[str]) -> list[dict]:
    """Per asset and variant, the median of each figure over the rounds."""
    out = []
    for name in names:
        for limit in limits:
            mine = [r for r in results if r["asset"] == name and r["stream_memory_limit"] == limit]
            out.append(
                {
                    "asset": name,
                    "stream_memory_limit": limit,
                    "rounds": len(mine),
                    "rows": mine[0]["rows"],
                    **{
                        figure: statistics.median(r[figure] for r in mine)
                        for figure in ("seconds", "rows_per_second", "rss_before_mb", "peak_rss_mb")
                    },
                    "peak_above_before_mb": statistics.median(
                        r["peak_rss_mb"] - r["rss_before_mb"] for r in mine
                    ),
                    "peaks": [r["peak_rss_mb"] for r in mine],
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--day", default=DAY, help="the partition (a local day)")
    parser.add_argument(
        "--only", nargs="*", choices=list(VISITOR_USAGE_ASSETS), help="these assets only"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each variant")
    parser.add_argument(
        "--stream-memory-limit",
        action="append",
        help=f"a stream_memory_limit variant (repeatable; default: {' and '.join(LIMITS)})",
    )
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    names = args.only or list(VISITOR_USAGE_ASSETS)
    limits = args.stream_memory_limit or list(LIMITS)
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
            database = str(Path(tmp) / "warehouse.duckdb")
            results = measure(base, database, args.day, names, limits, args.repeat)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    summary = medians(results, names, limits)
    if args.out:
        args.out.write_text(
            json.dumps({"scale": args.scale, "results": results, "medians": summary}, indent=2)
        )
    print(f"\nmedians of {args.repeat} rounds; load average now {loadavg()}")
    print(
        "\n| asset | stream limit | rows | seconds | rows/s | MB before | peak MB | peak - before |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in summary:
        print(
            f"| `{r['asset']}` | {r['stream_memory_limit']} | {r['rows']:,} | "
            f"{r['seconds']:.1f} | {r['rows_per_second']:,.0f} | {r['rss_before_mb']:.0f} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_above_before_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
