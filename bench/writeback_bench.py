"""Benchmark of the CRM -> Pendo write-back against a rate-limited sandbox: today's
overlapped path against the one before issue 21, side by side.

    python bench/writeback_bench.py [--scale 1000] [--rate 5] [--changed 0.2] [--repeat 3]

100,000 accounts (scale 1000). The sandbox runs in its own process with Pendo limited to
R requests per second; each write-back run is a fresh process of its own (its peak memory
is its own). Pendo is primed with the base export first (an initial load, whose log each
path's warehouse starts from); then two workloads, each run ``--repeat`` times per path,
alternating the paths A B B A A B:

* 100 % changed: the exports ``full`` and ``base`` in turn (every account's owner and
  health differ between them, so every run sends every account);
* daily: the exports ``daily`` and ``base`` in turn (``--changed`` of the accounts
  differ).

Paths: ``new`` is the job's: preflight, read and validate the CRM, then Pendo's values are
read and diffed in a thread while each full batch is sent (``DiffStream``, ``read_ahead``,
``push_changes``). ``old`` is a copy of the path before it, kept here only to compare:
Pendo's values read whole in a thread while the CRM is read and validated (each cell
converted, no memo), the whole diff, then the push.

For each it prints the medians of the whole run and of the push against the floor
(batches / R: the limit allows no faster), when the first write went, 429s and peak
resident memory, and the ratio new / old. The floor counts the writes only; the three
read requests (token, schema, aggregation) are rate-limited too.
"""

from __future__ import annotations

import argparse
import csv
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WRITE_KEY = "sandbox-pendo-us-write-key"
ORDER = ("old", "new", "new", "old", "old", "new")  # ABBA AB: a drift hits both paths


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
        out = Path(args.csv_dir)
        with (
            (out / "crm_base.csv").open("w", newline="") as b,
            (out / "crm_daily.csv").open("w", newline="") as d,
            (out / "crm_full.csv").open("w", newline="") as f,
        ):
            wb, wd, wf = (csv.DictWriter(h, COLUMNS) for h in (b, d, f))
            for writer in (wb, wd, wf):
                writer.writeheader()
            for index, row in enumerate(crm_rows(accounts)):
                wb.writerow(row)
                # The CRM moved: a new owner and a new health score for this account
                # (every account in the full export; no base score is 12.25).
                moved = {**row, "CSM Owner": "Reassigned Owner", "Health Score": "12.25"}
                wf.writerow(moved)
                wd.writerow(moved if every and index % every == 0 else row)
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


# ----- one write-back run (a process of its own) ---------------------------------------


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _old_make_converter(mapping: Any, pendo_type: str | None = None) -> Any:
    """``convert.make_converter`` before issue 21: every cell converted, none remembered."""
    from analytics_assets.crm_writeback.convert import ValueProblem, _final, _transform, is_empty

    steps = tuple(_transform(t) for t in mapping.transforms)
    final = _final(mapping.type, pendo_type)
    required, column = mapping.required, mapping.column

    def convert_cell(raw: Any) -> Any:
        value = raw
        for step in steps:
            if is_empty(value):
                break
            value = step(value)
        if is_empty(value):
            if required:
                raise ValueProblem(f"{column} is empty but required")
            return None
        return final(value, raw)

    return convert_cell


class _WriteNow:
    """``push.WriteBehind`` before issue 21: each batch's log appended by the sending
    thread, before the next batch goes."""

    def __init__(self, write: Any) -> None:
        self.put = write

    def __enter__(self) -> _WriteNow:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@contextmanager
def old_path() -> Iterator[None]:
    """The reading, validation and logging before issue 21 (for both write-back benches):
    each cell converted (no memo, amounts through the general path), the cyclic garbage
    collector left running, the log appended before the next batch. (The CSV reader is
    today's.)"""
    import analytics_assets.crm_writeback.amplitude_diff as amplitude_diff
    import analytics_assets.crm_writeback.convert as convert
    import analytics_assets.crm_writeback.crm as crm
    import analytics_assets.crm_writeback.push as push
    import analytics_assets.crm_writeback.validate as validate

    saved = (validate.make_converter, crm.gc_paused, validate.gc_paused, amplitude_diff.gc_paused)
    behind = push.WriteBehind
    push.WriteBehind = _WriteNow  # type: ignore[misc,assignment]
    amounts = convert.currency_to_number
    validate.make_converter = _old_make_converter
    # Every amount through the general path, as before.
    convert.currency_to_number = lambda value, sep=".": (
        convert._currency_general(value, sep) if isinstance(value, str) else value
    )
    crm.gc_paused = validate.gc_paused = amplitude_diff.gc_paused = nullcontext
    try:
        yield
    finally:
        validate.make_converter, crm.gc_paused, validate.gc_paused = saved[:3]
        amplitude_diff.gc_paused = saved[3]
        convert.currency_to_number = amounts
        push.WriteBehind = behind  # type: ignore[misc]


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """The job's steps on one path, timed one by one; returns the figures of one run."""
    with old_path() if args.mode == "old" else nullcontext():
        return _run(args)


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import analytics_assets.crm_writeback.validate as validate
    from analytics_assets.crm_writeback.crm import read_crm
    from analytics_assets.crm_writeback.diff import (
        DiffStream,
        current_values,
        current_values_pipeline,
        diff_records,
        read_current_values,
    )
    from analytics_assets.crm_writeback.mapping import load_mapping
    from analytics_assets.crm_writeback.overlap import read_ahead
    from analytics_assets.crm_writeback.push import push_changes
    from analytics_assets.crm_writeback.table_assets import LogWriter
    from analytics_assets.crm_writeback.tables import (
        append_log,
        append_quarantine,
        previous_incomplete_run,
    )
    from analytics_assets.pendo.client import PendoClient
    from analytics_assets.warehouse.duckdb import DuckDBWarehouse

    warehouse = DuckDBWarehouse(database=args.database)
    run_id = args.run_id
    times: dict[str, float] = {}
    start = time.perf_counter()
    first_write: list[float] = []

    def lap(name: str) -> None:
        times[name] = time.perf_counter() - start - sum(times.values())

    def record_log(rows: list) -> None:
        append_log(warehouse, run_id, rows, False)

    # The client's limit matches the sandbox's: it waits instead of earning 429s.
    client = PendoClient(WRITE_KEY, base_url=args.url, rate=args.rate, burst=1)
    update_metadata = client.update_metadata

    def timed_update(*a: Any, **kw: Any) -> Any:
        if not first_write:  # the first write request, before its limiter wait
            first_write.append(time.perf_counter() - start)
        return update_metadata(*a, **kw)

    client.update_metadata = timed_update  # type: ignore[method-assign]
    stats0 = client.stats.snapshot()
    mapping = load_mapping()

    def preflight() -> dict[str, str]:
        token = client.verify_token()
        assert token.write_access, "the bench needs the sandbox's write key"
        return validate.check_schema(mapping, client.get_metadata_schema("account"))[0]

    # The job's preflight and read_crm_export steps have no edge between them, so they run
    # at once (two step processes in the job; here a thread, mostly waiting on the rate).
    with ThreadPoolExecutor(max_workers=1) as pool:
        checked = pool.submit(preflight)
        export = read_crm(args.crm)
        types = checked.result()
    fields = list(types)
    lap("preflight || read CRM")
    if args.mode == "old":

        def read_pendo() -> dict:
            return read_current_values(client.aggregate(current_values_pipeline(fields)), fields)

        # Pendo's values were read whole while the CRM export was validated.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pendo = pool.submit(read_pendo)
            validated = validate.validate_rows(export, mapping, types)
            append_quarantine(warehouse, run_id, export.source, validated.quarantine)
            current = pendo.result()
        lap("validate || read Pendo")
        diff = diff_records(validated.records, current, types)
        previous_incomplete_run(warehouse, run_id)  # the diff step's resume report
        lap("diff")
        summary = push_changes(
            client,
            diff.changes,
            diff.missing,
            types,
            batch_size=args.batch_size,
            record_log=record_log,
        )
        lap("push+log")
    else:
        validated = validate.validate_rows(export, mapping, types)
        append_quarantine(warehouse, run_id, export.source, validated.quarantine)
        lap("validate")
        differ = DiffStream(validated.records, types)
        log_writer = LogWriter(warehouse, run_id, False)  # the job's, as push_crm_changes
        rows = current_values(client.aggregate(current_values_pipeline(fields)), fields)
        with read_ahead(differ.changes(rows)) as changes:
            previous_incomplete_run(warehouse, run_id)  # the push step's resume report
            log_writer.prepare()
            summary = push_changes(
                client,
                changes,
                differ.result.missing,
                types,
                batch_size=args.batch_size,
                record_log=log_writer,
            )
        diff = differ.result
        lap("read Pendo+diff || push+log")
    total = time.perf_counter() - start
    spent = client.stats.delta(stats0)
    client.close()
    assert summary.ok and summary.updated == diff.to_send, summary.error
    push_s = total - first_write[0] if first_write else 0.0
    return {
        "mode": args.mode,
        "changed": diff.to_send,
        "batches": summary.planned_batches,
        "first_write_s": first_write[0] if first_write else 0.0,
        "push_s": push_s,
        "total_s": total,
        "times": times,
        "requests": spent.requests_sent,
        "throttled": spent.throttled,
        "rss_mb": rss_mb(),
    }


def spawn_run(
    mode: str, url: str, crm: Path, database: Path, run_id: str, args: argparse.Namespace
) -> dict:
    cmd = [
        sys.executable, __file__, "--run", mode, "--url", url, "--crm", str(crm),
        "--database", str(database), "--run-id", run_id, "--rate", str(args.rate),
        "--batch-size", str(args.batch_size),
    ]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ----- report ---------------------------------------------------------------------------


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def table(results: dict[str, dict[str, list[dict]]], rate: float) -> str:
    head = (
        f"{'workload':<16}{'path':<6}{'batches':>8}{'floor s':>9}{'1st write s':>12}"
        f"{'push s':>8}{'push/floor':>11}{'total s':>9}{'total/floor':>12}{'429s':>6}"
        f"{'peak MB':>9}"
    )
    lines = [head, "-" * len(head)]
    for workload, paths in results.items():
        for mode in ("old", "new"):
            runs = paths[mode]
            floor = runs[0]["batches"] / rate
            push, total = _median(runs, "push_s"), _median(runs, "total_s")
            lines.append(
                f"{workload:<16}{mode:<6}{runs[0]['batches']:>8}{floor:>9.2f}"
                f"{_median(runs, 'first_write_s'):>12.2f}{push:>8.2f}{push / floor:>11.3f}"
                f"{total:>9.2f}{total / floor:>12.3f}{sum(r['throttled'] for r in runs):>6}"
                f"{_median(runs, 'rss_mb'):>9.0f}"
            )
        ratio = _median(paths["new"], "total_s") / _median(paths["old"], "total_s")
        lines.append(f"{workload:<16}new / old whole run: {ratio:.3f}")
    lines.append("")
    for workload, paths in results.items():
        for mode in ("old", "new"):
            runs = paths[mode]
            medians = {k: statistics.median(r["times"][k] for r in runs) for k in runs[0]["times"]}
            steps = ", ".join(f"{k} {v:.2f}" for k, v in medians.items())
            totals = ", ".join(f"{r['total_s']:.2f}" for r in runs)
            lines.append(f"{workload} {mode}: {steps} s (medians of {len(runs)}; totals {totals})")
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
    parser.add_argument("--repeat", type=int, default=3, help="runs per path and workload")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--csv-dir", help=argparse.SUPPRESS)
    parser.add_argument("--run", choices=("old", "new"), dest="mode", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--crm", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", default="bench", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args)
    if args.mode:
        print(json.dumps(run_one(args)))
        return 0

    order = [ORDER[i % len(ORDER)] for i in range(2 * args.repeat)]
    with tempfile.TemporaryDirectory(prefix="writeback-bench-") as tmp:
        t0 = time.perf_counter()
        child, url, accounts = start_sandbox(args, tmp)
        print(
            f"sandbox: {accounts:,} US accounts, Pendo limited to {args.rate:g} requests/s "
            f"(burst {args.burst}), started in {time.perf_counter() - t0:.1f}s; "
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load "
            f"{os.getloadavg()[0]:.2f}; order {' '.join(order)}",
            flush=True,
        )
        results: dict[str, dict[str, list[dict]]] = {}
        try:
            csv_of = {name: Path(tmp) / f"crm_{name}.csv" for name in ("base", "daily", "full")}
            prime = Path(tmp) / "prime.duckdb"
            primed = spawn_run("new", url, csv_of["base"], prime, "prime", args)
            print(f"primed: initial load of {primed['changed']:,} in {primed['total_s']:.1f}s")
            # A warehouse per path, each holding the log as the initial load left it (a
            # daily run appends to an existing log; creating it is a first run's cost).
            for mode in ("old", "new"):
                shutil.copy(prime, Path(tmp) / f"{mode}.duckdb")
            workloads = (("100% changed", "full"), (f"daily ({args.changed:.0%})", "daily"))
            for workload, other in workloads:
                paths: dict[str, list[dict]] = {"old": [], "new": []}
                for number, mode in enumerate(order):
                    crm = csv_of[other if number % 2 == 0 else "base"]  # there and back
                    database = Path(tmp) / f"{mode}.duckdb"
                    run = spawn_run(mode, url, crm, database, f"{other}-{number}", args)
                    paths[mode].append(run)
                    print(
                        f"{workload} {mode}: {run['changed']:,} in {run['total_s']:.2f}s "
                        f"(first write at {run['first_write_s']:.2f}s)",
                        flush=True,
                    )
                results[workload] = paths
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print(table(results, args.rate))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
