"""Benchmark: the Pendo ``events_hourly`` materialization against dlt's REST API source.

Not a test (nothing asserts on time). Issue 21, item 3: the whole materialization of the
``pendo/events_hourly`` asset through ``dagster.materialize`` (an ephemeral instance, a fresh
DuckDB warehouse, its checks and metadata included) against the pipeline that dlt's
documentation gives for Pendo (dlt's ``rest_api`` source into DuckDB: ``POST
/api/v1/aggregation``, ``data_selector: results``, a single-page paginator, the
``x-pendo-integration-key`` header), both asking the same sandbox the same question: the
asset's own request body for one local day (the ``events`` source in hour buckets), at
``--scale`` (850: 531,000 rows).

The sandbox runs in its own process; each load runs in a child process of its own, so its
peak resident memory (``ru_maxrss``) is the loader's alone. Runs alternate (ours, dlt,
a client that only receives the bytes: the sandbox's own ceiling; every other round in
reverse, ABBA) ``--repeat`` times, each into a fresh DuckDB file. ``--ours-tree DIR`` adds a
second "ours" from another copy of the project (``ours@DIR``), so a change is measured side
by side with the code before it. ``--profile`` runs each "ours" once more under cProfile
(CPU time) first and prints where its time goes.

dlt is not a project dependency; install it for this benchmark only (its own venv keeps the
project's pins as they are):

    python3.11 -m venv /tmp/dlt && /tmp/dlt/bin/pip install "dlt[duckdb]"
    /work/venv/bin/python bench/pendo_vs_dlt_bench.py --dlt-python /tmp/dlt/bin/python
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
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from _sandbox_process import freeze_clock, loadavg, rss_mb, start_cli_sandbox

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

READ_KEY = "sandbox-pendo-us-read-key"
TIMEZONE = "America/New_York"
DAY = "2026-11-17"
TABLE = "pendo.events_hourly"


def aggregation_body(day: str) -> dict[str, Any]:
    """The request body the events_hourly asset sends for ``day``, built by its own code."""
    from analytics_assets.partitions import DailyCalendar
    from analytics_assets.pendo.assets import DAILY_ASSETS, _series
    from analytics_assets.pendo.client import _envelope

    spec = DAILY_ASSETS["events_hourly"]
    window = DailyCalendar(timezone=TIMEZONE).window(day)
    return _envelope(spec.pipeline(_series([window], spec.period), "*"))


# ----- the loaders (each in a child process) --------------------------------------------------


def load_ours(base: str, day: str, database: Path) -> int:
    """``dagster.materialize`` of the events_hourly asset for ``day``: what a run does."""
    import dagster as dg

    from analytics_assets.partitions import DailyCalendar
    from analytics_assets.pendo.assets import pendo_assets
    from analytics_assets.pendo.resource import PendoResource
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    calendar = DailyCalendar(timezone=TIMEZONE, start_date=date(2026, 1, 1))
    warehouse = DuckDBWarehouse(database=str(database))
    result = dg.materialize(
        pendo_assets(calendar=calendar, include=["events_hourly"]),
        partition_key=day,
        resources={
            "pendo": PendoResource(
                integration_key=READ_KEY, base_url=base, rate_per_second=50, budget_ledger="memory"
            ),
            "warehouse": warehouse,
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    if not result.success:
        raise SystemExit("the materialization failed")
    return int(warehouse.records(f"SELECT count(*) AS n FROM {TABLE}")[0]["n"])


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
        row = conn.execute("SELECT count(*) FROM pendo.events").fetchone()
        return int(row[0]) if row else 0


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
        import dagster  # noqa: F401

        import analytics_assets.pendo.assets  # noqa: F401
    elif args.child == "dlt":
        import dlt  # noqa: F401
        from dlt.sources.rest_api import rest_api_source  # noqa: F401
    base_mb = rss_mb()
    profiler = None
    if args.profile_out:
        import cProfile

        # CPU time, not wall time: the machine is shared, and waiting on the sandbox is not
        # work of ours (DuckDB's threads count in the process's CPU time).
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
    started, cpu = time.perf_counter(), time.process_time()
    if args.child == "ours":
        rows, size = load_ours(args.base_url, args.day, database), None
    elif args.child == "dlt":
        rows, size = load_dlt(args.base_url, body, database, workdir), None
    else:
        rows, size = None, receive_only(args.base_url, body)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile_out)
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


# Where the materialization's time goes: (share, [(file, function), ...]) whose cumulative
# times add up (none of them calls another of the same share).
PROFILE_SHARES: list[tuple[str, list[tuple[str, str]]]] = [
    ("the whole materialize()", [("pendo_vs_dlt_bench.py", "load_ours")]),
    ("the asset's function", [("pendo/assets.py", "_daily")]),
    (
        "JSON parsing (rows or Arrow)",
        [
            ("pendo/client.py", "_json_rows"),
            ("pendo/client.py", "_arrow_block"),
            ("pendo/client.py", "_arrow_rows"),
            ("pendo/client.py", "_whole_json"),
            ("~", "yajl"),  # before: ijson's C parser (a built-in: matched by its name)
        ],
    ),
    (
        "row mapping (to_row, or Arrow columns by day)",
        [("pendo/assets.py", "<lambda>"), ("pendo/arrow_rows.py", "_split")],
    ),
    (
        "Arrow conversion + Parquet staging",
        [("warehouse/loading.py", "_flush"), ("warehouse/loading.py", "add_batch")],
    ),
    ("warehouse write (replace_partition)", [("", "replace_partition")]),
    (
        "checks and metadata",
        [
            ("warehouse/checks.py", "check_keys_unique"),
            ("warehouse/checks.py", "check_not_empty"),
            ("warehouse/checks.py", "check_volume"),
            ("warehouse/loading.py", "table_metadata"),
            ("pendo/assets.py", "_busiest"),
        ],
    ),
]


def profile_table(path: Path) -> list[tuple[str, float]]:
    """(share, cumulative seconds) of a cProfile dump, with Dagster's own share (the whole
    materialize() minus the asset's function) and the asset's rest (receiving, the client,
    the rows generator)."""
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    out = []
    for share, funcs in PROFILE_SHARES:
        seconds = sum(
            v[3]
            for (file, _line, name), v in stats.items()
            for suffix, func in funcs
            if (name == func or (suffix == "~" and func in name))
            and file.endswith(suffix)
            and (suffix or "warehouse" in file)
        )
        out.append((share, seconds))
    total, body = out[0][1], out[1][1]
    out.insert(2, ("Dagster (materialize() outside the asset)", total - body))
    out.append(
        ("the rest of the asset (receiving, client, rows)", body - sum(s for _, s in out[3:]))
    )
    return out


# ----- the parent ---------------------------------------------------------------------------


def start_sandbox(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str, int]:
    options = ["--seed", str(args.seed), "--scale", str(args.scale), "--timezone", TIMEZONE,
               "--pendo-rate", "0"]  # fmt: skip
    proc, base, info = start_cli_sandbox(options, log)
    freeze_clock(
        base,
        datetime.combine(
            date.fromisoformat(args.day) + timedelta(days=3), datetime.min.time(), tzinfo=UTC
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


@dataclass(frozen=True)
class Loader:
    label: str  # "ours", "ours@<dir>", "dlt", "receive"
    kind: str  # what the child runs: ours, dlt or receive
    python: str
    root: Path  # the project copy whose code (and copy of this script) the child runs


def run_one(
    loader: Loader,
    base: str,
    body_path: Path,
    database: Path,
    sandbox_pid: int,
    day: str,
    profile_out: Path | None = None,
) -> dict[str, Any]:
    cmd = [loader.python, str(loader.root / "bench" / Path(__file__).name), "--child", loader.kind,
           "--base-url", base, "--body", str(body_path), "--database", str(database)]  # fmt: skip
    cmd += ["--day", day]
    if profile_out is not None:
        cmd += ["--profile-out", str(profile_out)]
    load_before, sandbox_cpu = loadavg(), _proc_cpu(sandbox_pid)
    env = {**os.environ, "PYTHONPATH": str(loader.root)}
    proc = subprocess.run(cmd, cwd=loader.root, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{loader.label}: the child failed ({proc.returncode})")
    out = json.loads(lines[-1][len("RESULT ") :])
    out["loader"] = loader.label
    out["sandbox_cpu"] = _proc_cpu(sandbox_pid) - sandbox_cpu
    out["load_before"], out["load_after"] = load_before, loadavg()
    return out


def print_profiles(profiles: dict[str, Path]) -> None:
    tables = {label: profile_table(path) for label, path in profiles.items()}
    labels = list(tables)
    print("\nwhere the time goes (cProfile, one run each; seconds, share of materialize()):")
    print("| share | " + " | ".join(labels) + " |")
    print("|---|" + "---:|" * len(labels))
    for i, (share, _) in enumerate(next(iter(tables.values()))):
        cells = []
        for label in labels:
            seconds, total = tables[label][i][1], tables[label][0][1]
            cells.append(f"{seconds:.2f} s ({100 * seconds / total:.0f} %)" if total else "–")
        print(f"| {share} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=850.0)
    parser.add_argument("--day", default=DAY, help="the partition (a local day)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", choices=("both", "ours", "dlt"), default="both")
    parser.add_argument("--dlt-python", default=sys.executable, help="a Python with dlt")
    parser.add_argument(
        "--ours-tree", type=Path, action="append", default=[],
        help="another copy of the project to run as ours@DIR too (repeatable)",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="cProfile each ours once first")
    parser.add_argument("--profile-dir", type=Path, help="keep the cProfile dumps here")
    parser.add_argument("--out", type=Path, help="write every raw figure here as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--body", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="pendo-vs-dlt-"))
    body_path = workdir / "body.json"
    body_path.write_text(json.dumps(aggregation_body(args.day)))
    print(
        f"{os.cpu_count()} CPUs; load average {loadavg()}; events hourRange on {args.day} "
        f"({TIMEZONE}), through dagster.materialize",
        flush=True,
    )
    ours = [Loader("ours", "ours", sys.executable, ROOT)] + [
        Loader(f"ours@{tree.name}", "ours", sys.executable, tree.resolve())
        for tree in args.ours_tree
    ]
    dlt = [Loader("dlt", "dlt", args.dlt_python, ROOT)]
    loaders = {"both": ours + dlt, "ours": ours, "dlt": dlt}[args.only]
    receive = Loader("receive", "receive", sys.executable, ROOT)
    sandbox, base, pid = start_sandbox(args, workdir / "sandbox.log")
    runs: list[dict[str, Any]] = []
    profiles: dict[str, Path] = {}
    try:
        # Warm the sandbox's per-day caches once, so no loader pays for the first request.
        run_one(receive, base, body_path, workdir / "none.duckdb", pid, args.day)
        if args.profile:
            for loader in ours:
                where = args.profile_dir or workdir
                where.mkdir(parents=True, exist_ok=True)
                profiles[loader.label] = where / f"{loader.label.replace('@', '-')}.prof"
                database = workdir / "profile.duckdb"
                run_one(loader, base, body_path, database, pid, args.day, profiles[loader.label])
                for leftover in workdir.glob("profile.duckdb*"):
                    leftover.unlink(missing_ok=True)
        for rep in range(1, args.repeat + 1):
            # ABBA: every other round runs the loaders in reverse order.
            order = [*loaders, receive] if rep % 2 else [receive, *reversed(loaders)]
            for loader in order:
                database = workdir / f"run-{rep}.duckdb"
                out = run_one(loader, base, body_path, database, pid, args.day)
                out["repeat"] = rep
                runs.append(out)
                what = (
                    f"{out['rows']:,} rows"
                    if out["rows"] is not None
                    else f"{out['bytes'] / 1e6:,.0f} MB"
                )
                print(
                    f"[{rep}/{args.repeat}] {loader.label:<12} {what}, wall {out['wall']:.1f} s, "
                    f"cpu {out['cpu']:.1f} s, peak {out['peak_mb']:.0f} MB "
                    f"(base {out['base_mb']:.0f}), sandbox cpu {out['sandbox_cpu']:.1f} s; "
                    f"load {out['load_before']}→{out['load_after']}",
                    flush=True,
                )
                for leftover in workdir.glob(f"run-{rep}.duckdb*"):
                    leftover.unlink(missing_ok=True)
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sandbox.kill()

    rows_n = next((r["rows"] for r in runs if r["rows"]), 0)
    if not runs:
        if profiles:
            print_profiles(profiles)
        shutil.rmtree(workdir, ignore_errors=True)
        return
    summary: dict[str, dict[str, Any]] = {}
    print(
        "\n| loader | rows | wall s | **rows/s** | **peak MB** | CPU s | rows/CPU-s "
        "| walls (s) / peaks (MB) |\n|---|---:|---:|---:|---:|---:|---:|---|"
    )
    for loader in [*loaders, receive]:
        mine = [r for r in runs if r["loader"] == loader.label]
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
        summary[loader.label] = s
        name = {"receive": "sandbox only (receive the bytes)"}.get(loader.label, loader.label)
        print(
            f"| {name} | {rows_n:,} | {wall:.1f} | {s['rows_per_s']:,.0f} | {s['peak_mb']:,.0f} "
            f"| {cpu:.1f} | {s['rows_per_cpu_s'] or 0:,.0f} | "
            f"{', '.join(map(str, s['walls']))} / {', '.join(map(str, s['peaks']))} |"
        )
    if "dlt" in summary:
        theirs = summary["dlt"]
        for loader in ours:
            if loader.label in summary:
                mine = summary[loader.label]
                print(
                    f"\n{loader.label} / dlt: {mine['rows_per_s'] / theirs['rows_per_s']:.1f}x "
                    f"the rows per second (target >= 20x), "
                    f"{mine['peak_mb'] / theirs['peak_mb']:.3f} of the peak memory "
                    f"(target <= 0.1)"
                )
    if profiles:
        print_profiles(profiles)
    print("\nload average (1/5/15 min) before→after each run:")
    for r in runs:
        print(f"  [{r['repeat']}] {r['loader']:<12} {r['load_before']}→{r['load_after']}")
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
