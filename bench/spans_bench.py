"""Pendo assets' range backfills, asked with nothing learned and then with what the first
run taught (``pendo/spans.py``): what the learned width costs, and saves, at scale.

    python bench/spans_bench.py [--scale 1000] [--days 30] [--assets feature_daily_usage]

Starts the sandbox as ``bench/backfill_bench.py`` does (same seed, time zone, Pendo rate;
its 5-minute aggregation cap) and freezes its clock. Each round loads the assets' catalog
tables, then materializes each asset for the last ``--days`` complete days in one run (the
range a ``BackfillPolicy`` run gets), every asset in a process of its own at the same
time (``--assets a,b``: two steps of a backfill sharing the sandbox's one core, as the
30-day backfill's did). Three rounds:

* ``first``: an empty ledger (nothing learned: each range is asked whole, as before);
* ``second``: the same ledger (what ``first`` learned sizes the chunks);
* ``fresh``: an empty ledger again, a control for drift (the sandbox's caches are warm by
  then, which favours it, not ``second``).

For each round and asset: wall time, the days per aggregation or the halving the step
logged, and whether its table equals ``first``'s; for each round, the sandbox's
aggregation requests and 408/413 answers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _sandbox_process import freeze_clock, loadavg, start_cli_sandbox  # noqa: E402
from backfill_bench import TIMEZONE, partition_keys  # noqa: E402

READ_KEY = "sandbox-pendo-us-read-key"
AGGREGATION = "/api/v1/aggregation"


def _say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def counts(base: str) -> dict[str, int]:
    """The sandbox's aggregation requests, and its 408 and 413 answers, so far."""
    info = httpx.get(f"{base}/_sandbox/counters", timeout=30).json()
    out = {"aggregations": 0, "408": 0, "413": 0}
    for row in info["requests"]:
        if row.get("path") == AGGREGATION:
            out["aggregations"] += row.get("count", 0)
            status = str(row.get("status"))
            if status in ("408", "413"):
                out[status] += row.get("count", 0)
    return out


def run(asset: str, keys: list[str], base: str, ledger: Path, database: Path) -> dict[str, Any]:
    """One range run of ``asset`` (in a process of its own: see ``main``)."""
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from analytics_assets.partitions import DailyCalendar
    from analytics_assets.pendo.assets import pendo_assets
    from analytics_assets.pendo.resource import PendoResource
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    assets = pendo_assets(calendar=DailyCalendar(TIMEZONE), include=[asset])
    resources = {
        "pendo": PendoResource(
            integration_key=READ_KEY, base_url=base, rate_per_second=10, budget_ledger=str(ledger)
        ),
        "warehouse": DuckDBWarehouse(database=str(database)),
    }
    instance = dg.DagsterInstance.ephemeral()
    start = time.perf_counter()
    result = dg.materialize(
        assets,
        resources=resources,
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: keys[0], ASSET_PARTITION_RANGE_END_TAG: keys[-1]},
        raise_on_error=False,
    )
    wall = time.perf_counter() - start
    said = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if "per aggregation" in (entry.user_message or "")
        or "Pendo stopped the aggregation" in (entry.user_message or "")
    ]
    return {"success": result.success, "wall_s": round(wall, 1), "said": said}


def load_catalog(asset: str, base: str, database: Path) -> None:
    """The catalog table the asset's checks and metadata join (its names)."""
    import dagster as dg

    from analytics_assets.partitions import DailyCalendar
    from analytics_assets.pendo.assets import DAILY_ASSETS, pendo_assets
    from analytics_assets.pendo.resource import PendoResource
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    catalog = DAILY_ASSETS[asset].names_from
    if catalog:
        assert dg.materialize(
            pendo_assets(calendar=DailyCalendar(TIMEZONE), include=[catalog]),
            resources={
                "pendo": PendoResource(integration_key=READ_KEY, base_url=base),
                "warehouse": DuckDBWarehouse(database=str(database)),
            },
        ).success


def tables_equal(first: Path, other: Path, table: str) -> tuple[bool, int]:
    """Whether ``table`` holds the same rows (duplicates counted) in both files, compared
    by DuckDB itself (the visitor-level tables are too big to fetch), and its row count."""
    import duckdb

    with duckdb.connect() as db:
        db.execute(f"ATTACH '{first}' AS a (READ_ONLY)")
        db.execute(f"ATTACH '{other}' AS b (READ_ONLY)")
        rows = db.execute(f"SELECT count(*) FROM a.{table}").fetchone()[0]
        differ = db.execute(
            f"SELECT (SELECT count(*) FROM (FROM a.{table} EXCEPT ALL FROM b.{table}))"
            f" + (SELECT count(*) FROM (FROM b.{table} EXCEPT ALL FROM a.{table}))"
        ).fetchone()[0]
    return differ == 0, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1000.0)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument(
        "--assets", default="feature_daily_usage", help="comma-separated; run at once"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--amp-ratio", type=float, default=0.1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    assets = [a.strip() for a in args.assets.split(",") if a.strip()]

    with tempfile.TemporaryDirectory(prefix="spans-bench-") as tmp:
        work = Path(tmp)
        options = ["--seed", str(args.seed), "--scale", str(args.scale), "--timezone", TIMEZONE,
                   "--pendo-rate", "10",
                   "--amplitude-events-per-pendo-event", str(args.amp_ratio)]  # fmt: skip
        started = time.perf_counter()
        sandbox, base, _info = start_cli_sandbox(options, work / "sandbox.log", wait_seconds=600)
        results: dict[str, Any] = {}
        # Spawned, not forked: each run starts as a step process does.
        spawn = multiprocessing.get_context("spawn")
        try:
            now = datetime.now(UTC).replace(microsecond=0)
            freeze_clock(base, now)
            keys = partition_keys(now.isoformat(), args.days)
            _say(
                f"sandbox at scale {args.scale:g} up in {time.perf_counter() - started:.0f} s; "
                f"{', '.join(assets)} for {keys[0]}..{keys[-1]}; load {loadavg()}"
            )
            for name, ledger in (("first", "a"), ("second", "a"), ("fresh", "b")):
                databases = {a: work / f"{name}-{a}.duckdb" for a in assets}
                for asset, database in databases.items():
                    load_catalog(asset, base, database)
                before = counts(base)
                started = time.perf_counter()
                with ProcessPoolExecutor(len(assets), mp_context=spawn) as pool:
                    runs = {
                        a: pool.submit(run, a, keys, base, work / f"ledger-{ledger}.sqlite", db)
                        for a, db in databases.items()
                    }
                    by_asset = {a: future.result() for a, future in runs.items()}
                after = counts(base)
                results[name] = {
                    "wall_s": round(time.perf_counter() - started, 1),
                    **{k: after[k] - before[k] for k in after},
                    "assets": by_asset,
                }
                _say(f"{name}: {json.dumps(results[name])}; load {loadavg()}")
            for asset in assets:
                first = work / f"first-{asset}.duckdb"
                for name in ("second", "fresh"):
                    other = work / f"{name}-{asset}.duckdb"
                    same, rows = tables_equal(first, other, f"pendo.{asset}")
                    results[name]["assets"][asset]["table_equals_first"] = same
                    _say(f"{name} {asset}: equal to first's ({rows:,} rows): {same}")
        finally:
            sandbox.terminate()
            sandbox.wait(60)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    ok = all(r["success"] for round_ in results.values() for r in round_["assets"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
