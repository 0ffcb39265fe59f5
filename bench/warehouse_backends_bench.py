"""The raw Amplitude export load on each warehouse backend, side by side in one run:
DuckDB before the warehouse interface (the tree at ``--before``, unpacked with ``git
archive``), DuckDB now, and Postgres with each JSON parser (a throwaway cluster started
with ``tests/postgres_server.py``, or ``--postgres-url``).

Each configuration loads the same files into a fresh warehouse in a child process of its
own (peak memory is the child's ru_maxrss); configurations take turns (ABBA), ``--repeat``
rounds. ``--volume 4`` lists every file four times (under four names): four times a day's
events. The files are a day's export as ``bench/daily_sync_bench.py`` leaves them.

    python bench/warehouse_backends_bench.py --files-dir /tmp/export-day/export --repeat 3
    python bench/warehouse_backends_bench.py --files-dir /tmp/export-day/export --volume 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The commit before the warehouse interface (16f1ce5): the DuckDB load as it was.
DEFAULT_BEFORE = "16f1ce5^"
CONFIGS = [
    "duckdb before",
    "duckdb after",
    "postgres (duckdb parser)",
    "postgres (postgres parser)",
]
DAY = date(2026, 11, 17)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(name: str, files: list[Path], workdir: Path, tree: str, pg: str) -> None:
    sys.path.insert(0, tree)
    import dagster as dg

    from analytics_assets.amplitude import assets as amplitude

    assert amplitude.__file__.startswith(tree), (amplitude.__file__, tree)
    context = dg.build_asset_context(partition_key=DAY.isoformat())
    if name.startswith("duckdb"):
        from analytics_assets.warehouse.duckdb import DuckDBWarehouse

        warehouse = DuckDBWarehouse(database=str(workdir / "w.duckdb"))
        if name == "duckdb before":
            # What the asset did before the load, outside its timing here.
            warehouse.execute("CREATE SCHEMA IF NOT EXISTS amplitude")
            warehouse.execute(amplitude.events_table_ddl("amplitude.events"))
    else:
        from analytics_assets.warehouse.postgres import PostgresWarehouse

        parser = "duckdb" if "duckdb parser" in name else "postgres"
        warehouse = PostgresWarehouse(url=pg, json_parser=parser)
        warehouse.execute("DROP SCHEMA IF EXISTS amplitude CASCADE")
    base = rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    rows = amplitude._load_export(context, warehouse, files, DAY)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not name.startswith("duckdb"):
        warehouse.execute("DROP SCHEMA IF EXISTS amplitude CASCADE")  # free the disk
    result = {"name": name, "rows": rows, "wall": wall, "cpu": cpu, "peak_mb": peak,
              "base_mb": base, "load1": os.getloadavg()[0]}  # fmt: skip
    print("RESULT " + json.dumps(result))


@contextlib.contextmanager
def before_tree(ref: str) -> Iterator[str]:
    """The package as it was at ``ref``, unpacked into a temp dir (no git state changes)."""
    tmp = Path(tempfile.mkdtemp(prefix="wh-before-"))
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "analytics_assets"],
            capture_output=True, check=True,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
        yield str(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_server import start_postgres

    with start_postgres() as server:
        yield server.new_database("bench")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files-dir", type=Path, required=True)
    parser.add_argument("--files", type=int, default=0, help="0 = all")
    parser.add_argument("--volume", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", action="append", choices=CONFIGS)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--before", default=DEFAULT_BEFORE, help="git ref of 'duckdb before'")
    parser.add_argument("--postgres-url", help="default: a throwaway local cluster")
    parser.add_argument("--child", choices=CONFIGS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--pg", help=argparse.SUPPRESS)
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="start a round's configurations at once: the same machine load for each",
    )
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    files = sorted(args.files_dir.glob("*.json.gz"))
    if args.files:
        files = files[:: max(1, len(files) // args.files)][: args.files]
    if args.volume > 1:
        links = Path(tempfile.mkdtemp(prefix=f"export-x{args.volume}-"))
        many = []
        for copy in range(args.volume):
            for f in files:
                link = links / f"{copy}_{f.name}"
                link.symlink_to(f)
                many.append(link)
        files = many
    if args.child:
        child(args.child, files, args.workdir, args.tree, args.pg)
        return
    with before_tree(args.before) as before, postgres(args.postgres_url) as pg:
        rounds(args, before, pg)


def rounds(args: argparse.Namespace, before: str, pg: str) -> None:
    runs = []
    for rep in range(1, args.repeat + 1):
        order = list(args.only or CONFIGS)
        if rep % 2 == 0:  # ABBA: drift in the machine's load weighs on both sides alike
            order.reverse()
        procs = []
        for name in order:
            tmp = tempfile.mkdtemp(prefix="sbs-")
            tree = before if name == "duckdb before" else str(ROOT)
            cmd = [sys.executable, __file__, "--child", name, "--files-dir", str(args.files_dir),
                   "--files", str(args.files), "--volume", str(args.volume), "--workdir", tmp,
                   "--tree", tree, "--pg", pg]  # fmt: skip
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/tmp"
            )
            if not args.concurrent:
                proc.stdout_text, proc.stderr_text = proc.communicate()
            procs.append((name, proc, tmp))
        for name, proc, tmp in procs:
            if args.concurrent:
                proc.stdout_text, proc.stderr_text = proc.communicate()
            shutil.rmtree(tmp, ignore_errors=True)
            proc.stdout, proc.stderr = proc.stdout_text, proc.stderr_text
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                print(f"[{rep}] {name}: FAILED\n{proc.stderr[-2000:]}", flush=True)
                continue
            out = json.loads(lines[-1][7:]) | {"round": rep}
            runs.append(out)
            rate, per_cpu = out["rows"] / out["wall"], out["rows"] / out["cpu"]
            print(
                f"[{rep}] {name:<28} {out['rows']:>10,} ev {out['wall']:7.1f} s "
                f"{rate:>9,.0f} ev/s {per_cpu:>9,.0f} ev/cpu-s peak {out['peak_mb']:5.0f} MB "
                f"(base {out['base_mb']:.0f}) load {out['load1']:.1f}",
                flush=True,
            )
            if args.out:
                args.out.write_text(json.dumps(runs, indent=1))
    print("\nmedians:")
    for name in args.only or CONFIGS:
        mine = [r for r in runs if r["name"] == name]
        if not mine:
            continue
        rate = statistics.median(r["rows"] / r["wall"] for r in mine)
        cpu = statistics.median(r["rows"] / r["cpu"] for r in mine)
        peak = statistics.median(r["peak_mb"] for r in mine)
        rates = ", ".join(f"{r['rows'] / r['wall']:,.0f}" for r in mine)
        print(f"{name:<28} {rate:>9,.0f} ev/s ({rates}) {cpu:>9,.0f} ev/cpu-s peak {peak:5.0f} MB")
    before = [r for r in runs if r["name"] == "duckdb before"]
    after = [r for r in runs if r["name"] == "duckdb after"]
    if before and after:
        ratios = [
            a["rows"] / a["wall"] / (b["rows"] / b["wall"])
            for a, b in zip(after, before, strict=False)
        ]
        print(
            "after / before, round by round: "
            + ", ".join(f"{x:.3f}" for x in ratios)
            + f"; median {statistics.median(ratios):.3f}"
        )
        cpu = [
            a["rows"] / a["cpu"] / (b["rows"] / b["cpu"])
            for a, b in zip(after, before, strict=False)
        ]
        print(f"after / before in events per CPU-second: median {statistics.median(cpu):.3f}")
        peaks = [a["peak_mb"] - b["peak_mb"] for a, b in zip(after, before, strict=False)]
        print(f"peak MB after - before: median {statistics.median(peaks):+.0f}")


if __name__ == "__main__":
    main()
