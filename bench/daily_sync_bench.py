"""Benchmark: one day of the daily sync at scale (issue 5, part 9).

Not a test (nothing here asserts on time). It starts the sandbox in its own process
(``analytics-assets sandbox``, so the measured process holds only our loader) with
``--scale`` (100 = 10,000 accounts and ~105,000 Pendo visitors) and
``--amp-ratio`` Amplitude events per Pendo event (8 gives ~5.4 million Amplitude events
on the benchmark day; ``--volume 4`` multiplies it by four), freezes its clock three
days after the benchmark day, then materializes each asset of the day with
``dagster.materialize`` in a child process of its own, ``--repeat`` times, each repeat
into a fresh DuckDB file. For each materialization the child reports:

* ``wall``: the whole materialization (API calls, load, checks, metadata);
* ``peak MB``: the child's peak resident memory (``ru_maxrss``), and ``base MB`` the
  resident memory after imports, before the asset ran;
* ``rows``: rows the asset wrote for the day, and rows per second of ``wall``;
* for ``amplitude/events`` also ``download`` (the Export API: the sandbox generating
  and zipping the day, the network, our extraction to disk: the server's cost, mostly)
  and ``load`` (our part: DuckDB reading the gzipped JSON lines into the partition,
  from the asset's own ``export_download_seconds`` / ``load_seconds`` metadata), the
  load's CPU seconds and events per second of load wall time, and the ``uuid`` keys
  check's seconds and peak memory above the memory it started at (resident memory
  sampled every 20 ms while the check runs: the asset's own peak is the load's).

``amplitude/user_properties_daily`` runs right after the export, into the same file: it
is SQL over the loaded export (``--only export`` includes it).

It prints medians over the repeats, the machine's load average at each run (the machine
is shared: compare ratios, and read ``load ev/cpu-s`` for a figure that contention moves
less), and writes every raw figure as JSON (``--out``).

``--compare-loaders`` answers the issue's other question (DuckDB reading the gzipped JSON
lines with the explicit schema, or parsing in parallel into Arrow batches: which is
faster?). It downloads the day's export once, then loads the same files (``--compare-files``
of them, all by default) with each loader, each in a child process, ``--repeat`` times:

* ``duckdb-explicit``: the product's load (``warehouse.duckdb.export_select_sql`` through
  ``DuckDBWarehouse.replace_partition``);
* ``duckdb-default``: DuckDB's ``read_json`` with its defaults (schema detection, and
  DuckDB's own memory_limit and row group size: it runs out of memory at 192MB, and at
  1GB on the full day), the issue's 70,000 events/s in 1 GB reference, into a table of its own;
* ``orjson-processes``: one worker process per core gunzips (ISA-L) and parses each file
  with orjson into Arrow record batches (nested objects kept as JSON text, timestamps
  cast by DuckDB), handed to the parent as Arrow IPC files, which DuckDB inserts into the
  same table with the same explicit schema, in one transaction;
* ``gunzip``, ``orjson-lines``, ``orjson-parse``: the issue's one-core references (the
  ``gunzip`` tool; Python's gzip lines + ``orjson.loads``; ``orjson.loads`` alone).

With the references among ``--loaders``, it ends with our load's rate over each
reference's, round by round, against the ratio the target asks (120,000 over the
reference's figure): both sides read the same events in the same hour, so the ratio
does not depend on the events' size or on how fast the host was that day (it still
varies from round to round, as the rates do).

    /work/venv/bin/python bench/daily_sync_bench.py --only export --volume 1 --repeat 3
    /work/venv/bin/python bench/daily_sync_bench.py --only export --volume 4 --repeat 3
    /work/venv/bin/python bench/daily_sync_bench.py --only export --repeat 3 --warehouse '' \\
        --warehouse memory_limit=192MB,row_group_size=122880
    /work/venv/bin/python bench/daily_sync_bench.py --only pendo --repeat 3
    /work/venv/bin/python bench/daily_sync_bench.py --only all --repeat 3
    /work/venv/bin/python bench/daily_sync_bench.py --compare-loaders --compare-files 16 --repeat 3
    /work/venv/bin/python bench/daily_sync_bench.py --compare-loaders --repeat 3 \\
        --loaders duckdb-explicit --loaders gunzip --loaders orjson-lines \\
        --loaders orjson-parse --loaders duckdb-default
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
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from _sandbox_process import PeakRss, freeze_clock, loadavg, rss_mb, start_cli_sandbox

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAY = "2026-11-17"  # a Tuesday
TIMEZONE = "America/New_York"  # the sync config's time zone (the partitions')

PENDO_ASSETS = [
    "pendo/visitors",
    "pendo/accounts",
    "pendo/visitor_daily_usage",
    "pendo/account_daily_usage",
    "pendo/feature_daily_usage",
    "pendo/page_daily_usage",
    "pendo/guide_daily_activity",
    "pendo/events_hourly",
]
EXPORT_ASSETS = ["amplitude/events"]
# Read from the loaded export in the warehouse: run after it, in the same file.
FROM_EXPORT_ASSETS = ["amplitude/user_properties_daily"]
OTHER_AMPLITUDE_ASSETS = [
    "amplitude/daily_active_users",
    "amplitude/event_type_daily_totals",
]
ANALYTICS_ASSETS = ["analytics/account_daily_usage"]


# ----- the child: one asset, one materialization ---------------------------------------------


def run_child(args: argparse.Namespace) -> None:
    import dagster as dg

    from analytics_assets.amplitude.assets import amplitude_assets
    from analytics_assets.amplitude.resource import AmplitudeResource
    from analytics_assets.analytics.assets import analytics_assets
    from analytics_assets.pendo.assets import pendo_assets
    from analytics_assets.pendo.resource import PendoResource
    from analytics_assets.warehouse import checks as warehouse_checks
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    assets = {
        a.key.to_user_string(): a
        for a in [*pendo_assets(), *amplitude_assets(), *analytics_assets()]
    }
    asset = assets[args.child]
    base = args.base_url
    settings = parse_warehouse((args.warehouse or [""])[0])
    # Not a warehouse setting: inflate=duckdb has DuckDB inflate every export file itself,
    # as the product does for files too big for ISA-L's reader (the load before it).
    inflate = settings.pop("inflate", "isal")
    if inflate not in ("isal", "duckdb"):
        raise SystemExit(f"--warehouse inflate={inflate}: use isal or duckdb")
    if inflate == "duckdb":
        from analytics_assets.warehouse import isal_gzip

        isal_gzip.MAX_COMPRESSED_BYTES = 0
    resources = {
        "pendo": PendoResource(
            integration_key="sandbox-pendo-us-read-key", base_url=base, rate_per_second=50
        ),
        "amplitude": AmplitudeResource(
            api_key="sandbox-amplitude-us-api-key",
            secret_key="sandbox-amplitude-us-secret-key",
            base_url=base,
            ingestion_url=base,
            profile_url=base,
        ),
        "warehouse": DuckDBWarehouse(database=args.database, **settings),
    }
    # CPU time of the load alone (DuckDB's threads included): wrap the one call the
    # export's load goes through (load_json_lines since the warehouse interface).
    load_cpu = {"seconds": 0.0}
    original = DuckDBWarehouse.load_json_lines

    def timed(self, *a, **kw):  # type: ignore[no-untyped-def]
        started = time.process_time()
        try:
            return original(self, *a, **kw)
        finally:
            load_cpu["seconds"] += time.process_time() - started

    DuckDBWarehouse.load_json_lines = timed  # type: ignore[method-assign]
    # Each keys check sampled on its own: the asset's peak (ru_maxrss) is the load's.
    keys_checks: list[dict[str, Any]] = []
    original_check = warehouse_checks.check_keys_unique

    def sampled_check(warehouse, table, keys, partition=None):  # type: ignore[no-untyped-def]
        with PeakRss(every=0.02) as peak:
            started = time.perf_counter()
            result = original_check(warehouse, table, keys, partition)
            seconds = time.perf_counter() - started
        keys_checks.append(
            {"keys": list(keys), "seconds": seconds, "above_mb": peak.peak - peak.start}
        )
        return result

    warehouse_checks.check_keys_unique = sampled_check
    base_mb = rss_mb()
    instance = dg.DagsterInstance.ephemeral()
    started, cpu = time.perf_counter(), time.process_time()
    result = dg.materialize(
        [asset],
        partition_key=args.day if asset.partitions_def is not None else None,
        resources=resources,
        instance=instance,
        raise_on_error=True,
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        for name, value in event.materialization.metadata.items():
            raw = getattr(value, "value", value)
            if isinstance(raw, int | float | str) and len(str(raw)) < 200:
                meta[name] = raw
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    uuid_check = next((c for c in keys_checks if c["keys"] == ["uuid"]), None)
    print(
        "RESULT "
        + json.dumps(
            {
                "asset": args.child,
                "wall": wall,
                "cpu": cpu,
                "peak_mb": peak_mb,
                "base_mb": base_mb,
                "rows": meta.get("dagster/row_count"),
                "download_s": meta.get("export_download_seconds"),
                "load_s": meta.get("load_seconds"),
                "load_cpu_s": load_cpu["seconds"] if args.child in EXPORT_ASSETS else None,
                "export_bytes": meta.get("export_bytes"),
                "uuid_check_s": uuid_check and uuid_check["seconds"],
                "uuid_check_above_mb": uuid_check and uuid_check["above_mb"],
                "checks": checks,
            }
        ),
        flush=True,
    )


# ----- loader comparison: the same downloaded files, each loader and the references --------

LOADERS = (
    "duckdb-explicit",
    "duckdb-default",
    "orjson-processes",
    "gunzip",
    "orjson-lines",
    "orjson-parse",
)
ARROW_BATCH = 8192
# The issue's reference figures (events of about 1.1 KB, this machine) and the export
# load's target: our load and each reference read the same events in the same hour.
TARGET_EVENTS_S = 120_000
REFERENCE_EVENTS_S = {
    "gunzip": 254_000,
    "orjson-lines": 140_000,
    "orjson-parse": 140_000,
    "duckdb-default": 70_000,
}


def _reference_load(loader: str, files: list[Path]) -> tuple[int, float, float]:
    """(events, wall, cpu) for the issue's one-core references over ``files``.

    * ``gunzip``: the ``gunzip`` tool decompressing every file to /dev/null (the issue's
      "unzip and gunzip alone": the export zip's members are stored, so unzip only copies).
    * ``orjson-lines``: Python's ``gzip`` reading every file's lines and ``orjson.loads`` of
      each, one core (the issue's "orjson parses ... per second on one core").
    * ``orjson-parse``: ``orjson.loads`` of every line timed alone (each file decompressed
      first, outside the timing): the strictest reading of that reference.
    """
    import gzip

    import orjson

    if loader == "gunzip":
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter()
        subprocess.run(["gunzip", "-c", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        events = 0
        for path in files:  # counted after the timing
            with gzip.open(path, "rb") as f:
                events += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        return events, wall, cpu
    events, wall, cpu = 0, 0.0, 0.0
    for path in files:
        if loader == "orjson-lines":
            w, c = time.perf_counter(), time.process_time()
            with gzip.open(path, "rb") as f:
                for line in f:
                    orjson.loads(line)
                    events += 1
        else:
            with gzip.open(path, "rb") as f:
                lines = f.read().splitlines()
            w, c = time.perf_counter(), time.process_time()
            for line in lines:
                orjson.loads(line)
            events += len(lines)
            del lines
        wall += time.perf_counter() - w
        cpu += time.process_time() - c
    return events, wall, cpu


def _parse_to_ipc(path: str, out: str) -> int:
    """Worker: one export file → Arrow IPC file of string/int/float/bool columns."""
    import orjson
    import pyarrow as pa
    from isal import igzip

    from analytics_assets.amplitude.assets import EXPORT_FIELDS
    from analytics_assets.warehouse.types import BOOL, FLOAT, INT, JSON, STR, TS_NAIVE

    arrow_types = {
        STR: pa.string(),
        JSON: pa.string(),
        TS_NAIVE: pa.string(),
        INT: pa.int64(),
        FLOAT: pa.float64(),
        BOOL: pa.bool_(),
    }
    schema = pa.schema([(src, arrow_types[typ]) for src, _, typ, _ in EXPORT_FIELDS])
    nested = {src for src, _, typ, _ in EXPORT_FIELDS if typ == JSON}
    text = {src for src, _, typ, _ in EXPORT_FIELDS if typ in (STR, TS_NAIVE)}

    def as_text(v):  # type: ignore[no-untyped-def]
        return (
            v
            if v is None or v.__class__ is str
            else (orjson.dumps(v).decode() if isinstance(v, dict | list) else str(v))
        )

    rows_n = 0
    with (
        igzip.open(path, "rb") as fh,
        pa.OSFile(out, "wb") as sink,
        pa.ipc.new_file(sink, schema) as writer,
    ):
        while True:
            lines = fh.readlines(ARROW_BATCH * 1800)
            if not lines:
                break
            rows = [orjson.loads(line) for line in lines if line.strip()]
            arrays = []
            for src, *_ in EXPORT_FIELDS:
                values = [r.get(src) for r in rows]
                if src in nested:
                    values = [None if v is None else orjson.dumps(v).decode() for v in values]
                elif src in text:
                    values = [as_text(v) for v in values]
                arrays.append(pa.array(values, type=schema.field(src).type))
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows_n += len(rows)
    return rows_n


def compare_child(args: argparse.Namespace) -> None:
    """One loader over the files in ``args.files_dir``, into a fresh warehouse."""

    from analytics_assets.amplitude.assets import EVENTS_COLUMNS, EXPORT_FIELDS
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse, export_select_sql
    from analytics_assets.warehouse.types import sql_type

    files = sorted(Path(args.files_dir).glob("*.json.gz"))
    if args.compare_files:  # spread over the day: early hours are small, midday ones big
        files = files[:: max(1, len(files) // args.compare_files)][: args.compare_files]
    day = date.fromisoformat(args.day)
    if args.loader in ("gunzip", "orjson-lines", "orjson-parse"):
        rows, wall, cpu = _reference_load(args.loader, files)
        print(
            "RESULT "
            + json.dumps(
                {
                    "loader": args.loader,
                    "rows": rows,
                    "files": len(files),
                    "wall": wall,
                    "cpu": cpu,
                    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "worker_peak_mb": 0.0,
                    "workers": 0,
                    "base_mb": rss_mb(),
                }
            ),
            flush=True,
        )
        return
    # DuckDB's default read_json runs with DuckDB's defaults, memory_limit (80 % of the
    # machine's memory) and row group size included: it runs out of memory at 192MB,
    # and at 1GB on the full day. Its peak is what it takes.
    limit: dict[str, Any] = {}
    if args.loader == "duckdb-default":
        import duckdb

        with duckdb.connect() as probe:
            default = probe.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        limit = {"memory_limit": default, "row_group_size": 122_880}
    warehouse = DuckDBWarehouse(database=args.database, **limit)
    warehouse.create_table("amplitude.events", EVENTS_COLUMNS)
    base_mb = rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    if args.loader == "duckdb-explicit":
        rows = warehouse.replace_partition(
            "amplitude.events",
            export_select_sql(files, day, EXPORT_FIELDS),
            "day",
            day,
            preserve_insertion_order=False,
        )
    elif args.loader == "duckdb-default":
        paths = ", ".join(f"'{p.as_posix()}'" for p in files)
        with warehouse.connection() as conn:
            conn.execute(
                f"CREATE TABLE amplitude.events_default AS SELECT * FROM read_json([{paths}])"
            )
            rows = conn.execute("SELECT count(*) FROM amplitude.events_default").fetchone()[0]
    else:
        from concurrent.futures import ProcessPoolExecutor

        import pyarrow as pa

        casts = ", ".join(
            f'CAST("{src}" AS {sql_type(typ, "duckdb")}) AS {dst}'
            for src, dst, typ, _ in EXPORT_FIELDS
        )
        ipc_dir = Path(tempfile.mkdtemp(prefix="ipc-", dir=Path(args.database).parent))
        rows = 0
        with (
            ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool,
            warehouse.connection() as conn,
        ):
            conn.execute("SET preserve_insertion_order = false")  # as the product's load
            conn.execute("BEGIN TRANSACTION")
            conn.execute("DELETE FROM amplitude.events WHERE day = ?", [day])
            outs = [str(ipc_dir / f"{i}.arrow") for i in range(len(files))]
            for out, n in zip(outs, pool.map(_parse_to_ipc, map(str, files), outs), strict=True):
                with pa.memory_map(out) as source:
                    reader = pa.ipc.open_file(source)
                    for i in range(reader.num_record_batches):
                        conn.register("_batch", pa.Table.from_batches([reader.get_batch(i)]))
                        conn.execute(
                            f"INSERT INTO amplitude.events BY NAME SELECT DATE "
                            f"'{day.isoformat()}' AS day, {casts} FROM _batch"
                        )
                        conn.unregister("_batch")
                rows += n
                os.unlink(out)
            conn.execute("COMMIT")
        shutil.rmtree(ipc_dir, ignore_errors=True)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        "RESULT "
        + json.dumps(
            {
                "loader": args.loader,
                "rows": int(rows),
                "files": len(files),
                "wall": wall,
                "cpu": cpu + children.ru_utime + children.ru_stime,
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "worker_peak_mb": children.ru_maxrss / 1024
                if args.loader == "orjson-processes"
                else 0.0,
                "workers": (os.cpu_count() or 2) if args.loader == "orjson-processes" else 0,
                "base_mb": base_mb,
            }
        ),
        flush=True,
    )


def compare_loaders(args: argparse.Namespace) -> None:
    from analytics_assets.amplitude.resource import AmplitudeResource
    from analytics_assets.partitions import day_window

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="export-loaders-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    files_dir = workdir / "export"
    print(f"{os.cpu_count()} CPUs; load average {loadavg()}; workdir {workdir}", flush=True)
    if not any(files_dir.glob("*.json.gz")):
        sandbox, base = start_sandbox(args, workdir / "sandbox.log")
        try:
            first, last = day_window(args.day, TIMEZONE).utc_hours()
            amplitude = AmplitudeResource(
                api_key="sandbox-amplitude-us-api-key",
                secret_key="sandbox-amplitude-us-secret-key",
                base_url=base,
                ingestion_url=base,
                profile_url=base,
            )
            with amplitude.session(None) as client:
                result = client.export(first, last, files_dir, count_events=True)
            print(
                f"downloaded {result.events:,} events in {len(result.files)} files "
                f"({result.bytes / 1e6:,.0f} MB gzip)",
                flush=True,
            )
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
    loaders = args.loaders or list(LOADERS)
    runs = []
    for rep in range(1, args.repeat + 1):
        for loader in loaders:
            database = workdir / f"{loader}-{rep}.duckdb"
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--compare-child",
                loader,
                "--files-dir",
                str(files_dir),
                "--database",
                str(database),
                "--day",
                args.day,
                "--compare-files",
                str(args.compare_files or 0),
            ]
            before = loadavg()
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                # A loader running out of memory is a result too: say so and go on.
                errors = [ln for ln in proc.stderr.splitlines() if "Error" in ln]
                print(
                    f"[{rep}/{args.repeat}] {loader:<17} failed ({proc.returncode}): "
                    f"{(errors or proc.stderr.splitlines() or ['no output'])[-1].strip()}",
                    flush=True,
                )
                continue
            out = json.loads(lines[-1][len("RESULT ") :]) | {
                "repeat": rep,
                "load_before": before,
                "load_after": loadavg(),
            }
            runs.append(out)
            print(
                f"[{rep}/{args.repeat}] {loader:<17} {out['rows']:,} rows in "
                f"{out['wall']:.1f} s = {out['rows'] / out['wall']:,.0f} ev/s, "
                f"{out['rows'] / out['cpu']:,.0f} ev/cpu-s, peak {out['peak_mb']:.0f} MB"
                f" (+ workers {out['worker_peak_mb']:.0f} MB each); load "
                f"{before}→{out['load_after']}",
                flush=True,
            )
            for leftover in workdir.glob(f"{loader}-{rep}.duckdb*"):
                if leftover.is_file():
                    leftover.unlink()
                else:
                    shutil.rmtree(leftover, ignore_errors=True)
    print(
        f"\n{'loader':<18} {'events':>10} {'wall s':>7} {'ev/s':>9} {'ev/cpu-s':>9} "
        f"{'peak MB':>8} {'workers MB':>11}   walls"
    )
    summary = {}
    for loader in loaders:
        mine = [r for r in runs if r["loader"] == loader]
        if not mine:
            print(f"{loader:<18} failed in every round")
            continue
        s_ = {
            "rows": mine[0]["rows"],
            "wall": statistics.median(r["wall"] for r in mine),
            "ev_s": statistics.median(r["rows"] / r["wall"] for r in mine),
            "ev_cpu_s": statistics.median(r["rows"] / r["cpu"] for r in mine),
            "peak_mb": statistics.median(r["peak_mb"] for r in mine),
            "worker_peak_mb": statistics.median(r["worker_peak_mb"] for r in mine),
            "walls": [round(r["wall"], 1) for r in mine],
        }
        summary[loader] = s_
        print(
            f"{loader:<18} {s_['rows']:>10,} {s_['wall']:>7.1f} {s_['ev_s']:>9,.0f} "
            f"{s_['ev_cpu_s']:>9,.0f} {s_['peak_mb']:>8,.0f} {s_['worker_peak_mb']:>11,.0f}"
            f"   {s_['walls']}"
        )
    print_reference_ratios(runs)
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
        print(f"raw figures: {args.out}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


def print_reference_ratios(runs: list[dict[str, Any]]) -> None:
    """Our load against each reference run in the same round, as the target's ratio.

    The target (120,000 events/s) over a reference's figure is the ratio our load must
    reach against that reference; both are measured within one round, on the same files.
    """
    ours = {r["repeat"]: r for r in runs if r["loader"] == "duckdb-explicit"}
    lines = []
    for ref, ref_rate in REFERENCE_EVENTS_S.items():
        ratios = [
            (ours[r["repeat"]]["rows"] / ours[r["repeat"]]["wall"]) / (r["rows"] / r["wall"])
            for r in runs
            if r["loader"] == ref and r["repeat"] in ours
        ]
        if ratios:
            need = TARGET_EVENTS_S / ref_rate
            got = statistics.median(ratios)
            lines.append(
                f"{ref:<15} {need:>6.2f} {got:>9.2f}   {'met' if got >= need else 'missed'}   "
                + ", ".join(f"{x:.2f}" for x in ratios)
            )
    if lines:
        print(f"\n{'reference':<15} {'target':>6} {'ours/ref':>9}   verdict  per round")
        print("\n".join(lines))


# ----- the parent: sandbox, children, figures ------------------------------------------------


def start_sandbox(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    ratio = args.amp_ratio * args.volume
    options = ["--seed", str(args.seed), "--scale", str(args.scale), "--timezone", TIMEZONE,
               "--pendo-rate", "0", "--amplitude-events-per-pendo-event", str(ratio)]  # fmt: skip
    if args.volume > 1:
        # At 4x the busiest hour alone is estimated above the Export API's 4 GB cap (the
        # sandbox counts 1,750 bytes an event), which even a one-hour window cannot split.
        options += ["--amplitude-export-max-gb", str(4 * args.volume)]
    proc, base, info = start_cli_sandbox(options, log)
    # A fixed "now", three days after the benchmark day: the day is complete and every
    # answer is reproducible.
    now = datetime.combine(
        date.fromisoformat(args.day) + timedelta(days=3), datetime.min.time(), tzinfo=UTC
    ) + timedelta(hours=12)
    freeze_clock(base, now)
    us = info["regions"]["us"]
    print(
        f"sandbox pid {proc.pid} on {base}: scale {args.scale:g} "
        f"({us['accounts']:,} accounts, {us['visitors']:,} visitors), "
        f"{ratio:g} Amplitude events per Pendo event, clock frozen at {now:%Y-%m-%d %H:%M}Z",
        flush=True,
    )
    return proc, base


def parse_warehouse(variant: str | None) -> dict[str, Any]:
    """``memory_limit=320MB,row_group_size=61440`` -> DuckDBWarehouse settings ("" = the
    product's own)."""
    settings: dict[str, Any] = {}
    for item in filter(None, (variant or "").split(",")):
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--warehouse {variant!r}: write NAME=VALUE[,NAME=VALUE]")
        settings[name.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return settings


def run_one(
    asset: str, base: str, database: Path, day: str, warehouse: str | None = None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        asset,
        "--base-url",
        base,
        "--database",
        str(database),
        "--day",
        day,
        *(["--warehouse", warehouse] if warehouse else []),
    ]
    load_before = loadavg()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{asset}: the child failed ({proc.returncode})")
    out = json.loads(lines[-1][len("RESULT ") :])
    out["load_before"], out["load_after"] = load_before, loadavg()
    return out


def _median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def _fmt(value: float | None, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def print_run(out: dict[str, Any], rep: int, repeat: int) -> None:
    extra = ""
    if out.get("load_s"):
        extra = (
            f" download {out['download_s']:.1f} s, load {out['load_s']:.1f} s "
            f"({out['rows'] / out['load_s']:,.0f} ev/s, "
            f"{out['rows'] / out['load_cpu_s']:,.0f} ev/cpu-s)"
        )
    if out.get("uuid_check_s") is not None:
        extra += f"; uuid check {out['uuid_check_s']:.1f} s, +{out['uuid_check_above_mb']:.0f} MB"
    variant = f" [{out['variant']}]" if out["variant"] else ""
    print(
        f"[{rep}/{repeat}] {out['asset']}{variant}: {out['rows']} rows, wall "
        f"{out['wall']:.1f} s, peak {out['peak_mb']:.0f} MB{extra}; load "
        f"{out['load_before']}→{out['load_after']}; checks {out['checks']}",
        flush=True,
    )


def summarize(
    runs: list[dict[str, Any]], assets: list[str], variants: Sequence[str] = ("",)
) -> list[dict[str, Any]]:
    rows = []
    for variant, asset in ((v, a) for v in variants for a in assets):
        mine = [r for r in runs if r["asset"] == asset and r.get("variant", "") == variant]
        if not mine:
            continue
        wall = _median([r["wall"] for r in mine])
        rows_n = _median([r["rows"] for r in mine])
        row = {
            "asset": f"{asset} [{variant}]" if variant else asset,
            "variant": variant,
            "n": len(mine),
            "rows": rows_n,
            "wall": wall,
            "walls": [round(r["wall"], 1) for r in mine],
            "peak_mb": _median([r["peak_mb"] for r in mine]),
            "peaks": [round(r["peak_mb"]) for r in mine],
            "base_mb": _median([r["base_mb"] for r in mine]),
            "rows_per_s": _median([r["rows"] / r["wall"] for r in mine if r["rows"]]),
            "loads": [f"{r['load_before']}→{r['load_after']}" for r in mine],
        }
        if asset in EXPORT_ASSETS:
            row |= {
                "download_s": _median([r["download_s"] for r in mine]),
                "load_s": _median([r["load_s"] for r in mine]),
                "load_s_all": [r["load_s"] for r in mine],
                "load_ev_s": _median([r["rows"] / r["load_s"] for r in mine if r["load_s"]]),
                "load_ev_cpu_s": _median(
                    [r["rows"] / r["load_cpu_s"] for r in mine if r["load_cpu_s"]]
                ),
                "end_to_end_ev_s": _median([r["rows"] / r["wall"] for r in mine]),
                "export_mb": _median([(r["export_bytes"] or 0) / 1e6 for r in mine]),
                "uuid_check_s": _median([r.get("uuid_check_s") for r in mine]),
                "uuid_check_above_mb": _median([r.get("uuid_check_above_mb") for r in mine]),
                "uuid_check_above_all": [
                    None
                    if r.get("uuid_check_above_mb") is None
                    else round(r["uuid_check_above_mb"])
                    for r in mine
                ],
            }
        rows.append(row)
    return rows


def print_table(summary: list[dict[str, Any]]) -> None:
    print(
        f"\n{'asset':<34} {'rows':>11} {'wall s':>8} {'rows/s':>10} {'peak MB':>8} "
        f"{'base MB':>8}   walls (s) / peaks (MB)"
    )
    for s in summary:
        print(
            f"{s['asset']:<34} {_fmt(s['rows'], ',.0f'):>11} {_fmt(s['wall']):>8} "
            f"{_fmt(s['rows_per_s'], ',.0f'):>10} {_fmt(s['peak_mb'], ',.0f'):>8} "
            f"{_fmt(s['base_mb'], ',.0f'):>8}   {s['walls']} / {s['peaks']}"
        )
    for s in summary:
        if "load_s" in s:
            print(
                f"\n{s['asset']}: export {s['export_mb']:,.0f} MB gzip; median download "
                f"{_fmt(s['download_s'])} s, load {_fmt(s['load_s'])} s "
                f"(all: {s['load_s_all']}) = {_fmt(s['load_ev_s'], ',.0f')} events/s loaded, "
                f"{_fmt(s['load_ev_cpu_s'], ',.0f')} events per CPU-second of load; "
                f"end to end {_fmt(s['end_to_end_ev_s'], ',.0f')} events/s; uuid keys "
                f"check {_fmt(s['uuid_check_s'])} s, +{_fmt(s['uuid_check_above_mb'], ',.0f')} "
                f"MB above its start (all: {s['uuid_check_above_all']})"
            )
    print("\nload average (1/5/15 min) before→after each run:")
    for s in summary:
        print(f"  {s['asset']:<34} {'  '.join(s['loads'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=100.0, help="sandbox scale (100 = ~105,000 Pendo visitors)"
    )
    parser.add_argument(
        "--amp-ratio",
        type=float,
        default=8.0,
        help="Amplitude events per Pendo event at --volume 1 (8 = ~5.4M/day)",
    )
    parser.add_argument(
        "--volume",
        type=float,
        default=1.0,
        choices=(1.0, 4.0),
        help="multiplies the Amplitude volume (1 or 4)",
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("export", "pendo", "all"), default="all")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--day", default=DAY, help="the partition (a local day)")
    parser.add_argument("--out", type=Path, help="write every raw figure here as JSON")
    parser.add_argument("--workdir", type=Path, help="where warehouses go (default: a temp dir)")
    parser.add_argument(
        "--warehouse",
        action="append",
        metavar="NAME=VALUE[,NAME=VALUE]",
        help=(
            "DuckDBWarehouse settings, e.g. memory_limit=192MB,row_group_size=122880; repeat "
            "it to compare variants in turns, '' being the product's defaults; "
            "inflate=duckdb has DuckDB inflate the export instead of ISA-L"
        ),
    )
    parser.add_argument(
        "--compare-loaders",
        action="store_true",
        help="compare loaders of the same downloaded export (see above)",
    )
    parser.add_argument(
        "--compare-files",
        type=int,
        default=0,
        help="with --compare-loaders: load only N files spread over the day (0 = all)",
    )
    parser.add_argument(
        "--loaders",
        choices=LOADERS,
        action="append",
        help="with --compare-loaders: only these loaders (repeatable; default: all)",
    )
    # internal: one materialization (or one loader) in a child process
    parser.add_argument("--compare-child", choices=LOADERS, help=argparse.SUPPRESS)
    parser.add_argument("--files-dir", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    if args.compare_child:
        args.loader = args.compare_child
        compare_child(args)
        return
    if args.compare_loaders:
        compare_loaders(args)
        return

    assets = {
        "export": [*EXPORT_ASSETS, *FROM_EXPORT_ASSETS],
        "pendo": PENDO_ASSETS,
        "all": [
            *PENDO_ASSETS,
            *OTHER_AMPLITUDE_ASSETS,
            *EXPORT_ASSETS,
            *FROM_EXPORT_ASSETS,
            *ANALYTICS_ASSETS,
        ],
    }[args.only]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="daily-sync-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPUs; load average {loadavg()}; workdir {workdir}", flush=True)
    sandbox, base = start_sandbox(args, workdir / "sandbox.log")
    runs: list[dict[str, Any]] = []
    variants = args.warehouse or [""]
    try:
        for rep in range(1, args.repeat + 1):
            # Variants take turns within a round, each in a warehouse file of its own.
            for number, variant in enumerate(variants):
                database = workdir / f"warehouse-{rep}-{number}.duckdb"
                for asset in assets:
                    out = run_one(asset, base, database, args.day, variant)
                    out["variant"], out["repeat"] = variant, rep
                    runs.append(out)
                    print_run(out, rep, args.repeat)
            for leftover in workdir.glob(f"warehouse-{rep}-*.duckdb*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
    finally:
        sandbox.terminate()
        try:
            sandbox.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sandbox.kill()
    summary = summarize(runs, assets, variants)
    print_table(summary)
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": {
                        k: (str(v) if isinstance(v, Path) else v)
                        for k, v in vars(args).items()
                        if k not in ("child", "base_url", "database")
                    },
                    "runs": runs,
                    "summary": summary,
                },
                indent=1,
            )
        )
        print(f"\nraw figures: {args.out}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
