"""Benchmark: our Pendo aggregation loader against dlt's REST API source, side by side.

Not a test (nothing asserts on time). Issue 5, part 9: the pipeline that dlt's
documentation gives for Pendo (dlt's ``rest_api`` source into DuckDB: ``POST
/api/v1/aggregation``, ``data_selector: results``, a single-page paginator, the
``x-pendo-integration-key`` header) against our path (what the ``pendo/events_hourly``
asset does: ``PendoClient.aggregate`` parsing the streamed answer with ijson → its row
mapping → ``loading.load_rows``: Arrow batches staged to Parquet → DuckDB, replacing a
partition), both asking the same sandbox the same question: the ``events`` source in hour
buckets over ``--days`` local days (scale 100 and 12 days: 523,028 rows).

The sandbox runs in its own process; each load runs in a child process of its own, so its
peak resident memory (``ru_maxrss``) is the loader's alone. Runs alternate (ours, dlt,
ours, dlt, ...) ``--repeat`` times, each into a fresh DuckDB file. For each it reports rows
loaded (counted in the table afterwards), wall time, rows per second, peak memory, and the
child's CPU seconds. A third line, ``sandbox only``, times a client that only receives the
bytes (no parsing, no loading): the ceiling the sandbox itself sets on this machine.

dlt is not a project dependency; install it into the venv for this benchmark only:

    /work/venv/bin/pip install "dlt[duckdb]"
    /work/venv/bin/python bench/pendo_vs_dlt_bench.py --scale 100 --days 12 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from _sandbox_process import freeze_clock, loadavg, rss_mb, start_cli_sandbox

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READ_KEY = "sandbox-pendo-us-read-key"
TIMEZONE = "America/New_York"
LAST_DAY = "2026-11-17"


def aggregation_body(last_day: str, days: int) -> dict[str, Any]:
    """The events source in hour buckets from local midnight ``days`` days before the end of
    ``last_day`` to that end: the events_hourly asset's pipeline over several days."""
    tz = ZoneInfo(TIMEZONE)
    end_day = date.fromisoformat(last_day) + timedelta(days=1)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz)
    start_day = end_day - timedelta(days=days)
    start = datetime(start_day.year, start_day.month, start_day.day, tzinfo=tz)
    return {
        "response": {"mimeType": "application/json"},
        "request": {
            "pipeline": [
                {
                    "source": {
                        "events": {"appId": 'expandAppIds("*")'},
                        "timeSeries": {
                            "period": "hourRange",
                            "first": int(start.timestamp() * 1000),
                            "last": int(end.timestamp() * 1000),
                        },
                    },
                }
            ]
        },
    }


# ----- the loaders (each in a child process) --------------------------------------------------


def load_ours(base: str, body: dict[str, Any], database: Path) -> int:
    """The events_hourly asset's path, minus Dagster: stream, map each row, stage, load."""
    from analytics_assets.pendo.assets import _ms
    from analytics_assets.pendo.resource import PendoResource
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse
    from analytics_assets.warehouse.loading import Column, load_rows
    from analytics_assets.warehouse.types import DATE, INT, STR, TS

    columns = [
        Column("day", DATE),
        Column("hour", TS),
        Column("visitor_id", STR),
        Column("account_id", STR),
        Column("app_id", INT),
        Column("server", STR),
        Column("remote_ip", STR),
        Column("user_agent", STR),
        Column("events", INT),
        Column("minutes", INT),
    ]
    day = date.fromisoformat(LAST_DAY)
    warehouse = DuckDBWarehouse(database=str(database))
    resource_ = PendoResource(integration_key=READ_KEY, base_url=base, rate_per_second=50)

    with resource_.session(None) as client:

        def rows():
            # The same mapping as pendo.events_hourly's (analytics_assets/pendo/assets.py).
            for r in client.aggregate(body):
                yield {
                    "day": day,
                    "hour": _ms(r.get("hour")),
                    "visitor_id": r.get("visitorId"),
                    "account_id": r.get("accountId") or "",
                    "app_id": r.get("appId"),
                    "server": r.get("server"),
                    "remote_ip": r.get("remoteIp"),
                    "user_agent": r.get("userAgent"),
                    "events": r.get("numEvents"),
                    "minutes": r.get("numMinutes"),
                }

        return load_rows(warehouse, "pendo.events_hourly", columns, rows(), partition=("day", day))


def load_dlt(base: str, body: dict[str, Any], database: Path, workdir: Path) -> int:
    """dlt's REST API source as its documentation configures it for Pendo, into DuckDB."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no traffic off this machine
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source(
        {
            "client": {
                "base_url": f"{base}/api/v1/",
                "auth": {
                    "type": "api_key",
                    "name": "x-pendo-integration-key",
                    "api_key": READ_KEY,
                    "location": "header",
                },
                "paginator": "single_page",
            },
            "resource_defaults": {"write_disposition": "replace"},
            "resources": [
                {
                    "name": "events",
                    "endpoint": {
                        "path": "aggregation",
                        "method": "POST",
                        "json": body,
                        "data_selector": "results",
                    },
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="pendo_events",
        destination=dlt.destinations.duckdb(str(database)),
        dataset_name="pendo",
        pipelines_dir=str(workdir / "dlt-pipelines"),
    )
    pipeline.run(source)
    import duckdb

    with duckdb.connect(str(database), read_only=True) as conn:
        return int(conn.execute("SELECT count(*) FROM pendo.events").fetchone()[0])


def receive_only(base: str, body: dict[str, Any]) -> int:
    """Receive the answer and count its bytes: the sandbox's and the network's share."""
    import httpx

    size = 0
    with httpx.stream(
        "POST",
        f"{base}/api/v1/aggregation",
        json=body,
        headers={"x-pendo-integration-key": READ_KEY},
        timeout=900,
    ) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
    return size


def run_child(args: argparse.Namespace) -> None:
    body = json.loads(Path(args.body).read_text())
    database, workdir = Path(args.database), Path(args.database).parent
    # Import what each loader needs before the clock starts and the baseline is read.
    if args.child == "ours":
        import analytics_assets.pendo.assets  # noqa: F401
    elif args.child == "dlt":
        import dlt  # noqa: F401
        from dlt.sources.rest_api import rest_api_source  # noqa: F401
    base_mb = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    if args.child == "ours":
        rows, size = load_ours(args.base_url, body, database), None
    elif args.child == "dlt":
        rows, size = load_dlt(args.base_url, body, database, workdir), None
    else:
        rows, size = None, receive_only(args.base_url, body)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        "RESULT "
        + json.dumps(
            {
                "loader": args.child,
                "rows": rows,
                "bytes": size,
                "wall": wall,
                "cpu": cpu,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "base_mb": base_mb,
            }
        ),
        flush=True,
    )


# ----- the parent ---------------------------------------------------------------------------


def start_sandbox(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str, int]:
    options = ["--seed", str(args.seed), "--scale", str(args.scale), "--timezone", TIMEZONE,
               "--pendo-rate", "0"]  # fmt: skip
    proc, base, info = start_cli_sandbox(options, log)
    freeze_clock(
        base,
        datetime.combine(
            date.fromisoformat(LAST_DAY) + timedelta(days=3), datetime.min.time(), tzinfo=UTC
        )
        + timedelta(hours=12),
    )
    us = info["regions"]["us"]
    print(
        f"sandbox pid {proc.pid} on {base}: scale {args.scale:g} ({us['accounts']:,} "
        f"accounts, {us['visitors']:,} visitors)",
        flush=True,
    )
    return proc, base, proc.pid


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(
    loader: str, base: str, body_path: Path, database: Path, sandbox_pid: int
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        loader,
        "--base-url",
        base,
        "--body",
        str(body_path),
        "--database",
        str(database),
    ]
    load_before, sandbox_cpu = loadavg(), _proc_cpu(sandbox_pid)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{loader}: the child failed ({proc.returncode})")
    out = json.loads(lines[-1][len("RESULT ") :])
    out["sandbox_cpu"] = _proc_cpu(sandbox_pid) - sandbox_cpu
    out["load_before"], out["load_after"] = load_before, loadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument(
        "--days",
        type=int,
        default=12,
        help="local days of hour buckets (scale 100, 12 days: 523,028 rows)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", choices=("both", "ours", "dlt"), default="both")
    parser.add_argument("--out", type=Path, help="write every raw figure here as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="pendo-vs-dlt-"))
    body_path = workdir / "body.json"
    body_path.write_text(json.dumps(aggregation_body(LAST_DAY, args.days)))
    print(
        f"{os.cpu_count()} CPUs; load average {loadavg()}; events hourRange over "
        f"{args.days} days ending {LAST_DAY} ({TIMEZONE})",
        flush=True,
    )
    sandbox, base, pid = start_sandbox(args, workdir / "sandbox.log")
    loaders = {"both": ["ours", "dlt"], "ours": ["ours"], "dlt": ["dlt"]}[args.only]
    runs: list[dict[str, Any]] = []
    try:
        # Warm the sandbox's per-day caches once, so no loader pays for the first request.
        run_one("receive", base, body_path, workdir / "none.duckdb", pid)
        for rep in range(1, args.repeat + 1):
            for loader in [*loaders, "receive"]:
                database = workdir / f"{loader}-{rep}.duckdb"
                out = run_one(loader, base, body_path, database, pid)
                out["repeat"] = rep
                runs.append(out)
                what = (
                    f"{out['rows']:,} rows"
                    if out["rows"] is not None
                    else f"{out['bytes'] / 1e6:,.0f} MB"
                )
                print(
                    f"[{rep}/{args.repeat}] {loader:<8} {what}, wall {out['wall']:.1f} s, "
                    f"cpu {out['cpu']:.1f} s, peak {out['peak_mb']:.0f} MB "
                    f"(base {out['base_mb']:.0f}), sandbox cpu {out['sandbox_cpu']:.1f} s; "
                    f"load {out['load_before']}→{out['load_after']}",
                    flush=True,
                )
                for leftover in workdir.glob(f"{loader}-{rep}.duckdb*"):
                    leftover.unlink(missing_ok=True)
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sandbox.kill()

    rows_n = next((r["rows"] for r in runs if r["rows"]), 0)
    summary: dict[str, dict[str, Any]] = {}
    print(
        f"\n{'loader':<14} {'rows':>9} {'wall s':>8} {'rows/s':>9} {'peak MB':>8} "
        f"{'cpu s':>7} {'rows/cpu-s':>10}   walls / peaks"
    )
    for loader in [*loaders, "receive"]:
        mine = [r for r in runs if r["loader"] == loader]
        wall = statistics.median(r["wall"] for r in mine)
        cpu = statistics.median(r["cpu"] for r in mine)
        s = {
            "rows": rows_n,
            "wall": wall,
            "cpu": cpu,
            "rows_per_s": statistics.median(rows_n / r["wall"] for r in mine),
            "peak_mb": statistics.median(r["peak_mb"] for r in mine),
            "rows_per_cpu_s": rows_n / cpu if cpu else None,
            "walls": [round(r["wall"], 1) for r in mine],
            "peaks": [round(r["peak_mb"]) for r in mine],
        }
        summary[loader] = s
        name = {"receive": "sandbox only"}.get(loader, loader)
        print(
            f"{name:<14} {rows_n:>9,} {wall:>8.1f} {s['rows_per_s']:>9,.0f} "
            f"{s['peak_mb']:>8,.0f} {cpu:>7.1f} {s['rows_per_cpu_s'] or 0:>10,.0f}   "
            f"{s['walls']} / {s['peaks']}"
        )
    if "ours" in summary and "dlt" in summary:
        ours, theirs = summary["ours"], summary["dlt"]
        print(
            f"\nours / dlt: {ours['rows_per_s'] / theirs['rows_per_s']:.1f}x the rows per "
            f"second (target >= 10x), {ours['peak_mb'] / theirs['peak_mb']:.3f} of the peak "
            f"memory (target <= 0.1)"
        )
    print("load average (1/5/15 min) before→after each run:")
    for r in runs:
        print(f"  [{r['repeat']}] {r['loader']:<8} {r['load_before']}→{r['load_after']}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "runs": runs,
                    "summary": summary,
                },
                indent=1,
            )
        )
        print(f"raw figures: {args.out}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
