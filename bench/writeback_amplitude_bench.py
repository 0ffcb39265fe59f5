"""Benchmark of the CRM -> Amplitude write-back (Group Identify, and Identify for users).

    python bench/writeback_amplitude_bench.py [--scale 1000] [--changed 0.2] [--repeat 3]
                                              [--users]
    python bench/writeback_amplitude_bench.py --state-read 100000 [--repeat 3]

100,000 accounts (scale 1000). The sandbox runs in its own process; each repetition starts
a fresh one (Amplitude's insert_id memory would otherwise make a repeated load free) and a
fresh warehouse. Two runs go through the job's steps (read, validate, read the log, diff,
push, log): the initial load (every account is new to Amplitude), then the daily case (a
share of accounts changed in the CRM: a new CSM owner and health score). Group properties
are every mapped field; with ``--users``, each account's users also get ``account_plan``
and ``csm`` (about 9.4 users per account: mind the sandbox's memory above scale 100).
Prints, per run, the medians over the repetitions of records, requests, push and total
seconds, records per second and the write-back process's peak resident memory.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def serve(args: argparse.Namespace) -> int:
    """Child mode: start the sandbox, write the exports and the users table, print its URL."""
    from analytics_assets.crm_writeback.data.make_sample import COLUMNS, Account, crm_rows
    from analytics_assets.sandbox.company import HISTORY_START, PLANS
    from analytics_assets.sandbox.config import SandboxConfig
    from analytics_assets.sandbox.server import SandboxServer

    config = SandboxConfig(seed=args.seed, scale=args.scale)
    with SandboxServer(config) as server:
        company = server.state.world("us").company
        accounts = [
            Account(
                id=company.account_id(i),
                name=company.account_name(i),
                plan=PLANS[int(company.account_plan[i])],
                arr=float(company.account_arr[i]),
                users=int(company.account_size[i]),
                start=HISTORY_START + timedelta(days=int(company.account_created[i])),
                health=float(company.account_propensity[i]),
            )
            for i in range(company.n_accounts)
        ]
        out = Path(args.csv_dir)
        every = max(1, round(1 / args.changed)) if args.changed > 0 else 0
        with (
            (out / "crm_base.csv").open("w", newline="") as b,
            (out / "crm_daily.csv").open("w", newline="") as d,
        ):
            wb, wd = csv.DictWriter(b, COLUMNS), csv.DictWriter(d, COLUMNS)
            wb.writeheader()
            wd.writeheader()
            for index, row in enumerate(crm_rows(accounts)):
                wb.writerow(row)
                if every and index % every == 0:
                    row = {**row, "CSM Owner": "Reassigned Owner", "Health Score": "12.5"}
                wd.writerow(row)
        with (out / "visitors.csv").open("w", newline="") as v:
            writer = csv.writer(v)
            writer.writerow(["visitor_id", "account_id"])
            for visitor in range(company.n_visitors):
                account = company.account_id(int(company.visitor_account[visitor]))
                writer.writerow([company.visitor_id(visitor), account])
        key = config.amplitude_keys["us"].api_key
        print(f"URL {server.urls.amplitude()} {company.n_accounts} {key}", flush=True)
        sys.stdin.read()  # the parent closes stdin when it is done
    return 0


def start_sandbox(args: argparse.Namespace, csv_dir: str) -> tuple[subprocess.Popen, str, str]:
    cmd = [sys.executable, __file__, "--serve", "--scale", str(args.scale), "--seed",
           str(args.seed), "--changed", str(args.changed), "--csv-dir", csv_dir]  # fmt: skip
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline().split()
    if not line or line[0] != "URL":
        child.kill()
        raise RuntimeError("the sandbox process did not start")
    return child, line[1], line[3]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_once(url: str, key: str, crm: Path, database: str, users: bool, run_id: str) -> dict:
    """The job's Amplitude steps, timed; returns the figures of one run."""
    from analytics_assets.amplitude.identify import IdentifyClient
    from analytics_assets.crm_writeback.amplitude_diff import (
        account_users,
        diff_for_amplitude,
        read_amplitude_state,
    )
    from analytics_assets.crm_writeback.amplitude_push import push_to_amplitude
    from analytics_assets.crm_writeback.amplitude_targets import AmplitudeTargets
    from analytics_assets.crm_writeback.crm import read_crm
    from analytics_assets.crm_writeback.job import MAPPING_TYPES
    from analytics_assets.crm_writeback.mapping import load_mapping
    from analytics_assets.crm_writeback.tables import AMPLITUDE_LOG_TABLE, append_log
    from analytics_assets.crm_writeback.validate import validate_rows
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(database=database)
    targets = AmplitudeTargets(
        user_properties={"plan": "account_plan", "csm_owner": "csm"} if users else {}
    )
    times: dict[str, float] = {}
    start = time.perf_counter()

    def lap(name: str) -> None:
        times[name] = time.perf_counter() - start - sum(times.values())

    mapping = load_mapping()
    types = {f.field: MAPPING_TYPES[f.type] for f in mapping.fields}
    validated = validate_rows(read_crm(crm), mapping, types)
    lap("read+validate")
    members = account_users(warehouse, targets, (r.account_id for r in validated.records))
    state = read_amplitude_state(warehouse)
    lap("read log+users")
    diff = diff_for_amplitude(
        validated.records, mapping=mapping, types=types, targets=targets, state=state,
        users=members,
    )  # fmt: skip
    lap("diff")
    push_start = time.perf_counter()
    with IdentifyClient(key, ingestion_url=url, read_timeout=300) as client:
        summary = push_to_amplitude(
            client,
            diff.changes,
            record_log=lambda rows: append_log(
                warehouse, run_id, rows, False, table=AMPLITUDE_LOG_TABLE
            ),
        )
        requests = client.stats.snapshot().requests_sent
    push_seconds = time.perf_counter() - push_start
    lap("push+log")
    assert summary.ok and summary.updated == diff.to_send, summary.error
    return {
        "groups": diff.count("group"),
        "users": diff.count("user"),
        "requests": requests,
        "push_s": push_seconds,
        "total_s": time.perf_counter() - start,
        "times": times,
        "rss_mb": rss_mb(),
    }


def state_read(rows: int, repeat: int) -> int:
    """``read_amplitude_state`` over a log of ``rows`` groups (all 7 properties confirmed)
    plus a day that changed a fifth of them, with the cyclic GC paused (the product) and
    running (before issue 21), alternating; CPU seconds, medians."""
    import json
    from contextlib import nullcontext

    import analytics_assets.crm_writeback.amplitude_diff as amplitude_diff
    from analytics_assets.crm_writeback.tables import AMPLITUDE_LOG_TABLE, LogRow, append_log
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    initial = json.dumps({"plan": "pro", "arr": 1200.0, "seats": 10, "is_paying": True,
                          "renewal_date": "2026-03-01", "csm_owner": "Dana Whitfield",
                          "health_score": 50.5})  # fmt: skip
    daily = json.dumps({"csm_owner": "Reassigned Owner", "health_score": 12.5})
    with tempfile.TemporaryDirectory(prefix="amplitude-state-") as tmp:
        warehouse = DuckDBWarehouse(database=str(Path(tmp) / "warehouse.duckdb"))
        for run, values, step in (("initial", initial, 1), ("daily", daily, 5)):
            log = [
                LogRow(batch=1, account_id=f"account-{i:06d}", values_json=values,
                       previous_json="{}", outcome="updated", reason="", record_kind="group",
                       record_id=f"account-{i:06d}", insert_id=f"{run}-{i}")
                for i in range(0, rows, step)
            ]  # fmt: skip
            append_log(warehouse, run, log, False, table=AMPLITUDE_LOG_TABLE)
        paused = amplitude_diff.gc_paused
        seconds: dict[str, list[float]] = {"old (GC running)": [], "new (GC paused)": []}
        try:
            for turn in range(2 * repeat):
                name = list(seconds)[turn % 2]
                amplitude_diff.gc_paused = nullcontext if turn % 2 == 0 else paused
                began = time.process_time()
                state = amplitude_diff.read_amplitude_state(warehouse)
                seconds[name].append(time.process_time() - began)
                del state
        finally:
            amplitude_diff.gc_paused = paused
    for name, values in seconds.items():
        print(f"{name}: median {statistics.median(values):.2f} s CPU "
              f"({', '.join(f'{v:.2f}' for v in values)})")  # fmt: skip
    new, old = (statistics.median(v) for v in reversed(seconds.values()))
    print(f"new / old: {new / old:.2f}")
    return 0


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(runs: dict[str, list[dict]]) -> str:
    head = (
        f"{'run':<22}{'groups':>9}{'users':>9}{'reqs':>6}{'push s':>8}{'total s':>9}"
        f"{'rec/s':>8}{'peak MB':>9}"
    )
    lines = [head, "-" * len(head)]
    for name, reps in runs.items():
        records = reps[0]["groups"] + reps[0]["users"]
        push = median_of(reps, "push_s")
        lines.append(
            f"{name:<22}{reps[0]['groups']:>9,}{reps[0]['users']:>9,}{reps[0]['requests']:>6}"
            f"{push:>8.2f}{median_of(reps, 'total_s'):>9.2f}{records / push if push else 0:>8.0f}"
            f"{median_of(reps, 'rss_mb'):>9.0f}"
        )
    lines.append("")
    for name, reps in runs.items():
        steps = ", ".join(
            f"{k} {statistics.median(r['times'][k] for r in reps):.2f}" for k in reps[0]["times"]
        )
        lines.append(f"{name}: {steps} seconds (medians of {len(reps)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1000.0, help="1000 = 100,000 accounts")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--changed", type=float, default=0.2, help="share changed daily")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--users", action="store_true", help="also set user properties")
    parser.add_argument(
        "--state-read",
        type=int,
        metavar="GROUPS",
        help="only time reading the log into the diff's reference, for GROUPS groups",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--csv-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)
    if args.state_read:
        return state_read(args.state_read, args.repeat)

    import pandas as pd

    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    runs: dict[str, list[dict]] = {"initial load (100%)": [], f"daily ({args.changed:.0%})": []}
    for rep in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="amplitude-bench-") as tmp:
            t0 = time.perf_counter()
            child, url, key = start_sandbox(args, tmp)
            print(f"repetition {rep + 1}: sandbox ready in {time.perf_counter() - t0:.1f}s")
            try:
                database = str(Path(tmp) / "warehouse.duckdb")
                visitors = pd.read_csv(Path(tmp) / "visitors.csv", dtype=str)
                DuckDBWarehouse(database=database).replace_table("pendo.visitors", visitors)
                for reps, crm in zip(runs.values(), ("crm_base", "crm_daily"), strict=True):
                    path = Path(tmp) / f"{crm}.csv"
                    reps.append(run_once(url, key, path, database, args.users, f"{crm}-{rep}"))
            finally:
                assert child.stdin is not None
                child.stdin.close()
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, users: {args.users}\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
