"""Benchmark of the CRM -> Pendo write-back against a rate-limited sandbox.

    python bench/writeback_bench.py [--scale 1000] [--rate 5] [--changed 0.2]

100,000 accounts (scale 1000). The sandbox runs in its own process (so it neither shares
the GIL with the write-back nor counts in its memory) with Pendo limited to R requests per
second. Two runs go through the same steps as the job's ops (read, check, validate, read
Pendo's values, diff, push, log): an initial load (every account differs) that also primes
Pendo, then the daily case (a share of accounts changed in the CRM).

For each run it prints the wall time of the push against its floor (batches / R: the
limit allows no faster), the whole run's wall time against the same floor, records per
second, 429s met, and the peak resident memory of the write-back process. The floor
governs the writes only; the steps before them (reading 100,000 rows, validating, reading
Pendo's current values) cost the same whatever R is, and are shown on their own line.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WRITE_KEY = "sandbox-pendo-us-write-key"


# ----- the sandbox process --------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    """Child mode: start the sandbox, write the CRM exports, print its URL, wait for EOF."""
    from analytics_assets.crm_writeback.data.make_sample import COLUMNS, crm_rows, read_accounts
    from analytics_assets.pendo.client import PendoClient
    from analytics_assets.sandbox.config import PendoLimits, SandboxConfig
    from analytics_assets.sandbox.server import SandboxServer

    limits = PendoLimits(rate=args.rate, burst=args.burst)
    config = SandboxConfig(seed=args.seed, scale=args.scale, pendo_limits=limits)
    with SandboxServer(config) as server:
        # The accounts come through Pendo's API, as the sample generator reads any Pendo,
        # with the read key (its own rate bucket). That also builds the region's arrays
        # now, so the runs measure the write-back and not the sandbox's warm-up.
        read_key = config.pendo_keys["us"].read
        with PendoClient(read_key, base_url=server.urls.pendo(), read_timeout=600) as client:
            accounts = read_accounts(client, seed=args.seed)
        every = max(1, round(1 / args.changed)) if args.changed > 0 else 0
        base, daily = Path(args.csv_dir) / "crm_base.csv", Path(args.csv_dir) / "crm_daily.csv"
        with base.open("w", newline="") as b, daily.open("w", newline="") as d:
            wb, wd = csv.DictWriter(b, COLUMNS), csv.DictWriter(d, COLUMNS)
            wb.writeheader()
            wd.writeheader()
            for index, row in enumerate(crm_rows(accounts)):
                wb.writerow(row)
                if every and index % every == 0:
                    # The CRM moved: a new owner and a new health score for this account.
                    row = {**row, "CSM Owner": "Reassigned Owner", "Health Score": "12.5"}
                wd.writerow(row)
        print(f"URL {server.urls.base} {len(accounts)}", flush=True)
        sys.stdin.read()  # the parent closes stdin when it is done
    return 0


def start_sandbox(args: argparse.Namespace, csv_dir: str) -> tuple[subprocess.Popen, str, int]:
    cmd = [
        sys.executable,
        __file__,
        "--serve",
        "--scale",
        str(args.scale),
        "--seed",
        str(args.seed),
        "--rate",
        str(args.rate),
        "--burst",
        str(args.burst),
        "--changed",
        str(args.changed),
        "--csv-dir",
        csv_dir,
    ]
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline().split()
    if not line or line[0] != "URL":
        child.kill()
        raise RuntimeError("the sandbox process did not start")
    return child, line[1], int(line[2])


# ----- one write-back run ---------------------------------------------------------------


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_once(url: str, crm: Path, database: str, args: argparse.Namespace, run_id: str) -> dict:
    """The job's steps, timed one by one; returns the figures of one run."""
    from analytics_assets.crm_writeback.crm import read_crm
    from analytics_assets.crm_writeback.diff import (
        current_values_pipeline,
        diff_records,
        read_current_values,
    )
    from analytics_assets.crm_writeback.mapping import load_mapping
    from analytics_assets.crm_writeback.push import push_changes
    from analytics_assets.crm_writeback.tables import append_log, append_quarantine
    from analytics_assets.crm_writeback.validate import check_schema, validate_rows
    from analytics_assets.pendo.client import PendoClient
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(database=database)
    times: dict[str, float] = {}
    start = time.perf_counter()

    def lap(name: str) -> None:
        times[name] = time.perf_counter() - start - sum(times.values())

    # The client's limit matches the sandbox's: it waits instead of earning 429s.
    client = PendoClient(WRITE_KEY, base_url=url, rate=args.rate, burst=1)
    stats0 = client.stats.snapshot()
    mapping = load_mapping()
    token = client.verify_token()
    assert token.write_access, "the bench needs the sandbox's write key"
    types, _ = check_schema(mapping, client.get_metadata_schema("account"))
    lap("preflight")

    def read_pendo() -> tuple[dict, float]:
        began = time.perf_counter()
        rows = client.aggregate(current_values_pipeline(list(types)))
        return read_current_values(rows, list(types)), time.perf_counter() - began

    # As in the job, Pendo's values are read while the CRM export is read and validated.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pendo = pool.submit(read_pendo)
        export = read_crm(crm)
        validated = validate_rows(export, mapping, types)
        append_quarantine(warehouse, run_id, export.source, validated.quarantine)
        current, pendo_seconds = pendo.result()
    lap("read+validate || read Pendo")
    diff = diff_records(validated.records, current, types)
    lap("diff")
    push_start = time.perf_counter()
    summary = push_changes(
        client,
        diff.changes,
        diff.missing,
        types,
        batch_size=args.batch_size,
        record_log=lambda log: append_log(warehouse, run_id, log, False),
    )
    push_seconds = time.perf_counter() - push_start
    lap("push+log")
    spent = client.stats.delta(stats0)
    client.close()
    assert summary.ok and summary.updated == diff.to_send, summary.error
    return {
        "rows": export.rows_read,
        "changed": diff.to_send,
        "batches": summary.planned_batches,
        "push_s": push_seconds,
        "total_s": time.perf_counter() - start,
        "times": times,
        "pendo_read_s": pendo_seconds,
        "requests": spent.requests_sent,
        "throttled": spent.throttled,
        "rss_mb": rss_mb(),
    }


# ----- report ---------------------------------------------------------------------------


def table(runs: list[tuple[str, dict]], rate: float) -> str:
    head = (
        f"{'run':<22}{'changed':>9}{'batches':>8}{'floor s':>9}{'push s':>8}{'push/floor':>11}"
        f"{'total s':>9}{'total/floor':>12}{'rec/s':>8}{'reqs':>6}{'429s':>6}{'peak MB':>9}"
    )
    lines = [head, "-" * len(head)]
    for name, r in runs:
        floor = r["batches"] / rate
        lines.append(
            f"{name:<22}{r['changed']:>9,}{r['batches']:>8}{floor:>9.2f}{r['push_s']:>8.2f}"
            f"{r['push_s'] / floor if floor else 0:>11.3f}{r['total_s']:>9.2f}"
            f"{r['total_s'] / floor if floor else 0:>12.3f}"
            f"{r['changed'] / r['push_s'] if r['push_s'] else 0:>8.0f}"
            f"{r['requests']:>6}{r['throttled']:>6}{r['rss_mb']:>9.0f}"
        )
    lines.append("")
    for name, r in runs:
        steps = ", ".join(f"{k} {v:.2f}" for k, v in r["times"].items())
        lines.append(f"{name}: {steps} (Pendo read alone {r['pendo_read_s']:.2f}) seconds")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1000.0, help="1000 = 100,000 accounts")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rate", type=float, default=5.0, help="Pendo requests per second")
    parser.add_argument(
        "--burst",
        type=int,
        default=2,
        help="sandbox bucket size (2 absorbs network jitter; the client sends "
        "at most 1 at a time, so the floor is unchanged)",
    )
    parser.add_argument("--changed", type=float, default=0.2, help="share changed daily")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--csv-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)

    import analytics_assets.crm_writeback.push  # noqa: F401  (imports before the baseline)
    import analytics_assets.warehouse.duckdb  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="writeback-bench-") as tmp:
        t0 = time.perf_counter()
        child, url, accounts = start_sandbox(args, tmp)
        print(
            f"sandbox: {accounts:,} US accounts, Pendo limited to {args.rate:g} requests/s "
            f"(burst {args.burst}), started in {time.perf_counter() - t0:.1f}s; "
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
        )
        baseline = rss_mb()
        try:
            database = str(Path(tmp) / "warehouse.duckdb")
            runs = [
                (
                    "initial load (100%)",
                    run_once(url, Path(tmp) / "crm_base.csv", database, args, "bench-initial"),
                ),
                (
                    f"daily ({args.changed:.0%} changed)",
                    run_once(url, Path(tmp) / "crm_daily.csv", database, args, "bench-daily"),
                ),
            ]
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    print(f"write-back process: {baseline:.0f} MB resident after imports\n")
    print(table(runs, args.rate))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
