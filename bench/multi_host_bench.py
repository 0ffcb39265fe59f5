"""Benchmark: the multi-host rehearsal at 14 days (issue 16, item 5).

Not a test (nothing here asserts on time); tests/test_multi_host.py asserts the same
outcomes over 3 days. It runs what tests/multi_host_support.py describes:

1. a throwaway Postgres cluster (tests/postgres_server.py) with three databases: Dagster's
   instance (``deploy/dagster.yaml``), the budget ledger, the warehouse;
2. the sandbox in its own process at ``--scale``, Pendo limited to ``--pendo-rate``
   requests/s, its clock frozen at ``--now`` so every day is complete and fixed;
3. ``dagster-daemon run`` on that instance, whose run launcher starts each run in a fresh
   directory of its own (DAGSTER_HOME, data directory, TMPDIR, HOME, working directory), as
   each run gets a new pod on Kubernetes;
4. ``dagster job launch -j catalog_refresh``, then ``dagster job backfill -j daily_sync
   --from .. --to .. --noprompt`` from a third directory; the queue runs 2 at a time
   (deploy/dagster.yaml), the pools allow 2 steps per API;
5. the same days on one host the default way (DuckDB, SQLite ledger, one process), and the
   two warehouses compared row for row.

    /work/venv/bin/python bench/multi_host_bench.py --days 14 --out bench/out/multi_host.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import multi_host_support as mh  # noqa: E402
from postgres_server import start_postgres  # noqa: E402
from warehouse_compare import table_differences  # noqa: E402


def _say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def _loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def markdown(figures: dict[str, Any]) -> str:
    """The figures as the table bench/README.md keeps."""
    r = figures["rehearsal"]
    c = r["client_figures"]
    refused = sum(r["limiter_refusals"].values())
    rows = [
        ("days backfilled", f"{r['days'][2]} ({r['days'][0]}..{r['days'][1]})"),
        ("wall time, backfill", f"{r['wall_s']:.0f} s ({r['wall_s'] / r['days'][2]:.1f} s a day)"),
        ("wall time, catalog_refresh first", f"{r['catalog_refresh_s']:.0f} s"),
        ("runs", ", ".join(f"{n} {s}" for s, n in r["by_status"].items())),
        ("max concurrent runs (run records)", str(r["max_concurrent_runs"])),
        ("requests, Pendo / Amplitude", f"{r['requests'].get('pendo', 0):,} / "
         f"{r['requests'].get('amplitude', 0):,}"),
        ("answers by status", ", ".join(f"{k}: {v:,}" for k, v in r["answers_by_status"].items())),
        ("429 seen by the clients, Pendo / Amplitude",
         f"{c.get('pendo_throttled_429', 0):g} / {c.get('amplitude_throttled_429', 0):g}"),
        ("retries, Pendo / Amplitude",
         f"{c.get('pendo_retries', 0):g} / {c.get('amplitude_retries', 0):g}"),
        ("sandbox limiter refusals (all limiters)", str(refused)),
        ("peak steps per pool (step intervals), pendo_api / amplitude_api",
         f"{r['max_concurrent_steps_per_pool']['pendo_api']} / "
         f"{r['max_concurrent_steps_per_pool']['amplitude_api']} (limits "
         f"{r['pool_limits']['pendo_api']} / {r['pool_limits']['amplitude_api']})"),
        ("peak slots in use (sampled), pendo_api / amplitude_api",
         f"{r['peak_slots_sampled']['pendo_api']} / {r['peak_slots_sampled']['amplitude_api']}"),
        ("tables equal to single-host DuckDB, row for row",
         f"{figures['tables_equal']} of {figures['tables_compared']} "
         f"({figures['rows_compared']:,} rows)"),
        ("single-host reference (in-process executor, for scale)",
         f"{figures['reference_s']:.0f} s"),
    ]  # fmt: skip
    lines = ["| figure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=14, help="partitions to backfill")
    parser.add_argument("--scale", type=float, default=5.0, help="sandbox scale (5 = 500 accounts)")
    parser.add_argument("--pendo-rate", type=float, default=10.0, help="Pendo limit, requests/s")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--now", default="2026-11-18T15:00:00+00:00", help="the sandbox's frozen clock"
    )
    parser.add_argument("--out", type=Path, help="write every figure here as JSON")
    parser.add_argument("--workdir", type=Path, help="keep everything here (default: temp)")
    args = parser.parse_args()

    now = datetime.fromisoformat(args.now).astimezone(UTC)
    days = mh.partition_days(now, args.days)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="multi-host-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    _say(f"{os.cpu_count()} CPUs (shared); load {_loadavg()}; {days[0]}..{days[-1]}; {workdir}")
    from analytics_assets.warehouse.base import warehouse_from_url

    figures: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    with start_postgres() as server:
        shared = mh.SharedPostgres(
            instance_url=server.new_database("dagster"),
            ledger_url=server.new_database("ledger"),
            warehouse_url=server.new_database("warehouse"),
        )
        with mh.sandbox_process(
            workdir / "sandbox.log", now=now, seed=args.seed, scale=args.scale,
            pendo_rate=args.pendo_rate,
        ) as sandbox:  # fmt: skip
            us = sandbox.info["regions"]["us"]
            _say(f"sandbox: {us['accounts']:,} accounts, {us['visitors']:,} visitors")
            rehearsal = mh.rehearse(
                workdir / "multi", sandbox, shared, days, pendo_rate=args.pendo_rate,
                timeout=6 * 3600, say=_say,
            )  # fmt: skip
            figures["rehearsal"] = rehearsal.figures()
            figures["failures"] = rehearsal.failures
            figures["pendo_rate_in_postgres_ledger"] = any(
                name == "pendo.rate" for _, name in rehearsal.ledger_records
            )
            figures["load_after_backfill"] = _loadavg()
            _say(f"backfill done in {rehearsal.wall_s:.0f} s; the single-host reference next")
            t0 = time.monotonic()
            reference = mh.single_host_reference(
                workdir / "single", sandbox, days, pendo_rate=args.pendo_rate
            )
            figures["reference_s"] = time.monotonic() - t0
        compared, problems = table_differences(
            warehouse_from_url(str(reference)), warehouse_from_url(shared.warehouse_url)
        )
        tables = set(warehouse_from_url(str(reference)).tables())
        tables |= set(warehouse_from_url(shared.warehouse_url).tables())
    figures["tables_compared"] = len(tables)
    figures["tables_equal"] = len(compared)
    figures["rows_compared"] = sum(compared.values())
    figures["differences"] = problems
    figures["rows_per_table"] = compared

    print(json.dumps(figures["rehearsal"], indent=1))
    print(f"\ndifferences from single-host DuckDB: {problems or 'none'}")
    print(f"Pendo's rate in the Postgres ledger: {figures['pendo_rate_in_postgres_ledger']}")
    print("\n" + markdown(figures))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1, default=str))
        print(f"\nfigures: {args.out}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
