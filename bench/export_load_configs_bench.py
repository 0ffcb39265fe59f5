"""DuckDB settings for the raw export load, compared on the same downloaded files.

Each configuration loads the same N export files (the product's ``export_select_sql``,
``analytics_assets/warehouse/duckdb.py``)
into a fresh DuckDB file in a child process of its own, in one transaction, as the
``amplitude/events`` asset does (files inflated by ISA-L through ``isal_gzip``, unless
a configuration says ``"isal": False``), in one INSERT (the asset batches 24 files an
INSERT), without Dagster around it; configurations take turns, ``--repeat`` rounds.
Prints events/s, events per CPU-second, peak memory (``ru_maxrss``)
and file size, medians over the rounds.

Get the files once (a day at scale 100, ~1.4 GB gzipped)::

    python bench/daily_sync_bench.py --compare-loaders --repeat 0 --workdir /tmp/export-day

then::

    python bench/export_load_configs_bench.py --files-dir /tmp/export-day/export --files 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from analytics_assets.warehouse.duckdb import DuckDBWarehouse  # noqa: E402

# name -> settings; every setting not named keeps the product's value (the warehouse
# resource's defaults). "set" holds extra DuckDB settings (name -> value) applied after
# the connection opens.
PRODUCT: dict = {
    name: DuckDBWarehouse.model_fields[name].default
    for name in ("memory_limit", "threads", "row_group_size")
} | {"set": {}, "isal": True}
CONFIGS: dict[str, dict] = {
    "product": {},
    "DuckDB's own gzip (before)": {"isal": False},
    "before: 192MB, RG 122880": {
        "memory_limit": "192MB",
        "row_group_size": 122880,
        "isal": False,
    },
    "1 thread": {"threads": 1},
    "224MB": {"memory_limit": "224MB"},
    "256MB": {"memory_limit": "256MB"},
    "320MB": {"memory_limit": "320MB"},
    "384MB": {"memory_limit": "384MB"},
    "ROW_GROUP_SIZE 32768": {"row_group_size": 32768},
    "write_buffer_row_group_count 1": {"set": {"write_buffer_row_group_count": 1}},
    "optimistic write off": {"set": {"enable_optimistic_write": False}},
    "write buffer 32MB": {"set": {"write_buffer_row_group_memory_limit": "32MB"}},
    "3 threads": {"threads": 3},
    "allocator flush 8MB": {"set": {"allocator_flush_threshold": "8MB"}},
    "allocator flush 8MB, own gzip": {
        "isal": False,
        "set": {"allocator_flush_threshold": "8MB"},
    },
    "allocator background threads": {"set": {"allocator_background_threads": True}},
    "352MB": {"memory_limit": "352MB"},
    "3GB, RG 122880 (nothing spills)": {"memory_limit": "3GB", "row_group_size": 122880},
}
# Smaller row groups, flushed sooner: less of each thread's insert held in memory.
CONFIGS |= {
    f"RG {rows}, write buffer {groups}": {
        "row_group_size": rows,
        "set": {"write_buffer_row_group_count": groups},
    }
    for rows, groups in ((32768, 1), (49152, 1), (65536, 1), (65536, 2))
}


def pick(files_dir: Path, count: int) -> list[Path]:
    """``count`` files spread over the day (early hours are small, midday ones big)."""
    files = sorted(files_dir.glob("*.json.gz"))
    if not files:
        raise SystemExit(f"no *.json.gz under {files_dir}; see this script's docstring")
    return files[:: max(1, len(files) // count)][:count] if count else files


def child(name: str, files: list[Path], database: Path) -> None:
    import duckdb

    from analytics_assets.amplitude.assets import EVENTS_COLUMNS, EXPORT_FIELDS
    from analytics_assets.warehouse import isal_gzip
    from analytics_assets.warehouse.duckdb import export_select_sql, table_ddl

    cfg = PRODUCT | CONFIGS[name]
    con = duckdb.connect(config={"memory_limit": cfg["memory_limit"], "threads": cfg["threads"]})
    con.execute(f"ATTACH '{database}' AS w (ROW_GROUP_SIZE {cfg['row_group_size']})")
    con.execute("USE w")
    con.execute("SET preserve_insertion_order = false")
    isal_gzip.register(con)
    for setting, value in cfg["set"].items():
        con.execute(f"SET {setting} = {value!r}")
    con.execute(table_ddl("events", EVENTS_COLUMNS))
    wall, cpu = time.perf_counter(), time.process_time()
    con.execute("BEGIN")
    sql = export_select_sql(files, date(2026, 11, 17), EXPORT_FIELDS, isal=cfg["isal"])
    con.execute(f"INSERT INTO events BY NAME {sql}")
    con.execute("COMMIT")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    isal_gzip.unregister(con)
    rows = con.execute("SELECT count(*) FROM events").fetchone()[0]
    con.close()
    print(
        json.dumps(
            {
                "name": name,
                "rows": rows,
                "wall": wall,
                "cpu": cpu,
                "peak_mb": peak_mb,
                "file_mb": database.stat().st_size / 1e6,
                "load1": os.getloadavg()[0],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files-dir", type=Path, required=True)
    parser.add_argument("--files", type=int, default=16, help="files to load (0 = all)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append")
    parser.add_argument("--child", choices=sorted(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--database", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    files = pick(args.files_dir, args.files)
    if args.child:
        child(args.child, files, args.database)
        return
    names = args.only or list(CONFIGS)
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()}; {len(files)} files", flush=True)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="export-load-configs-") as tmp:
        for rnd in range(1, args.repeat + 1):
            for name in names:
                database = Path(tmp) / f"{rnd}.duckdb"
                out = subprocess.run(
                    [sys.executable, __file__, "--files-dir", str(args.files_dir),
                     "--files", str(args.files), "--child", name, "--database", str(database)],
                    capture_output=True, text=True,
                )  # fmt: skip
                database.unlink(missing_ok=True)
                if out.returncode:
                    # An out-of-memory configuration is a result too: say so and go on.
                    error = (out.stderr.strip().splitlines() or ["no output"])[-1]
                    for line in out.stderr.splitlines():
                        if "Error:" in line:
                            error = line.strip()
                            break
                    print(f"[{rnd}/{args.repeat}] {name:32s} failed: {error}", flush=True)
                    continue
                run = json.loads(out.stdout.strip().splitlines()[-1])
                runs[name].append(run)
                print(
                    f"[{rnd}/{args.repeat}] {name:32s} {run['rows'] / run['wall']:9,.0f} ev/s "
                    f"{run['rows'] / run['cpu']:8,.0f} ev/cpu-s peak {run['peak_mb']:4.0f} MB "
                    f"file {run['file_mb']:4.0f} MB load {run['load1']:.1f}",
                    flush=True,
                )
    print(f"\n{'configuration':32s} {'events/s':>10s} {'ev/CPU-s':>9s} {'peak MB':>8s} "
          f"{'file MB':>8s}  events/s per round")  # fmt: skip
    for name, rs in runs.items():
        if not rs:
            print(f"{name:32s} failed in every round")
            continue
        rates = [r["rows"] / r["wall"] for r in rs]
        print(
            f"{name:32s} {statistics.median(rates):10,.0f} "
            f"{statistics.median(r['rows'] / r['cpu'] for r in rs):9,.0f} "
            f"{statistics.median(r['peak_mb'] for r in rs):8.0f} "
            f"{statistics.median(r['file_mb'] for r in rs):8.0f}  "
            + ", ".join(f"{x:,.0f}" for x in rates)
        )


if __name__ == "__main__":
    main()
