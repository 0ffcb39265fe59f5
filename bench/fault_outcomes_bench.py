"""The outcome table of retryable faults: for each fault kind and rate, the daily runs that
succeeded, those whose tables equal a fault-free run's, and those silently different.

    python bench/fault_outcomes_bench.py [--rates 0.05 0.2] [--runs 1] [--kinds ...]

It drives the fault suite's own machinery (``tests/faults``): a fresh sandbox per run with
the faults set through its control API, the whole ``daily_sync`` job of the code location
for one partition on a copy of a warehouse that holds the snapshots, the day before and a
stale load of the day, and every table compared row by row with a fault-free run's. A run
is "silently different" when it succeeded while a table differs, or failed while a table
of a failed or skipped asset changed: the outcome this project never allows. The
write-back row sends the shipped CRM sample with its write requests delivered twice
(applied twice, answered once) and compares what the sandbox stores and the log's outcomes.

Each run ``i`` uses sandbox seed ``42 + i``: another world and another draw of faults, with
its own fault-free reference. Prints the Markdown table (and writes it to ``bench/out``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "faults"))

import dagster as dg  # noqa: E402
import httpx  # noqa: E402
from conftest import suite_sandbox_config  # noqa: E402
from test_fault_suite import (  # noqa: E402
    ALL_ASSETS,
    DAY,
    PREVIOUS_DAY,
    QUIET,
    SNAPSHOT_KEYS,
    WRITE_PATH,
    Baseline,
    _damaged_200s,
    _html_pages,
    _share,
    check_tables,
    copy_database,
    daily_resources,
    dump_tables,
    load_stale_partition,
    log_rows,
    run_daily,
    run_writeback,
    stored_custom,
)

from analytics_assets.sandbox import SandboxServer  # noqa: E402

SLOW_BUDGET = {"budget_window_scale": 0.02}  # Amplitude's 30 s pause after a bare 429: 0.6 s


@dataclass(frozen=True)
class Kind:
    name: str
    rules: Callable[[float], tuple[dict[str, Any], ...]]
    amplitude: dict[str, Any] | None = None


KINDS = {
    "5xx": Kind(
        "5xx (500/502/503, the API's error body)",
        lambda r: _share(r, *({"kind": "error", "status": s} for s in (500, 502, 503))),
    ),
    "html": Kind("an intermediary's HTML 502/503 page", _html_pages),
    # The export is one request a run; on every Amplitude answer the rate means something.
    "html404": Kind(
        "an intermediary's HTML 404 page (Amplitude answers)",
        lambda r: ({"kind": "html", "status": 404, "probability": r, "service": "amplitude"},),
    ),
    "damaged": Kind("200 with a damaged body (HTML page, empty, cut)", _damaged_200s),
    "429ra": Kind(
        "429 with Retry-After 1 s",
        lambda r: ({"kind": "throttle", "probability": r, "retry_after": 1},),
    ),
    "429": Kind(
        "429 without Retry-After",
        lambda r: ({"kind": "throttle", "probability": r},),
        SLOW_BUDGET,
    ),
    "drop": Kind("connection dropped mid-body", lambda r: ({"kind": "drop", "probability": r},)),
}


@dataclass
class Cell:
    runs: int = 0
    succeeded: int = 0
    identical: int = 0
    silent: int = 0
    injected: int = 0
    seconds: float = 0.0


def control(sandbox: SandboxServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{sandbox.urls.control()}{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def sandbox_for(seed: int) -> SandboxServer:
    config = suite_sandbox_config()
    config.seed = seed
    return SandboxServer(config)


def baseline(seed: int, folder: Path) -> Baseline:
    """The suite's starting warehouse and the fault-free reference, for sandbox ``seed``."""
    base, reference = folder / "base.duckdb", folder / "reference.duckdb"
    with sandbox_for(seed) as sandbox:
        resources = daily_resources(sandbox, base)
        snapshots = dg.materialize(
            ALL_ASSETS,
            selection=SNAPSHOT_KEYS,
            resources=resources,
            instance=dg.DagsterInstance.ephemeral(),
            run_config=QUIET,
            raise_on_error=False,
        )
        assert snapshots.success, "the snapshots failed without any fault"
        assert run_daily(resources, PREVIOUS_DAY).success
        load_stale_partition(base, PREVIOUS_DAY, DAY)
        copy_database(base, reference)
        assert run_daily(daily_resources(sandbox, reference), DAY).success
    return Baseline(base, dump_tables(base), dump_tables(reference))


def daily_run(seed: int, ref: Baseline, kind: Kind, rate: float, folder: Path) -> Cell:
    database = copy_database(ref.base, folder / f"run-{kind.name[:8]}-{rate}.duckdb")
    cell = Cell(runs=1)
    with sandbox_for(seed) as sandbox:
        control(sandbox, "POST", "/faults", json=list(kind.rules(rate)))
        run = run_daily(daily_resources(sandbox, database, amplitude=kind.amplitude), DAY)
        cell.injected = sum(control(sandbox, "GET", "/counters")["faults"].values())
    after = dump_tables(database)
    cell.seconds = run.seconds
    cell.succeeded = int(run.success)
    cell.identical = int(run.success and after == ref.reference)
    try:
        check_tables(ref, after, run)  # what changed is the fault-free run's, or nothing
    except AssertionError:
        cell.silent = 1
    return cell


def writeback_run(seed: int, rate: float, folder: Path) -> Cell:
    """The write-back with ``rate`` of its writes delivered twice, against a clean run."""
    cell = Cell(runs=1)
    with sandbox_for(seed) as sandbox:
        clean = run_writeback(sandbox, folder / "wb-clean.duckdb")
        log = log_rows(folder / "wb-clean.duckdb", clean.run_id)
        accounts = {r["account_id"] for r in log}
        expected = stored_custom(sandbox, accounts)
    with sandbox_for(seed) as sandbox:
        rule = {"kind": "duplicate", "probability": rate, "path": WRITE_PATH}
        control(sandbox, "POST", "/faults", json=[rule])
        run = run_writeback(sandbox, folder / "wb-dup.duckdb")
        cell.injected = sum(control(sandbox, "GET", "/counters")["faults"].values())
        got = log_rows(folder / "wb-dup.duckdb", run.run_id)
        stored = stored_custom(sandbox, accounts)
    outcomes = Counter(r["outcome"] for r in got)
    once = sorted(r["account_id"] for r in got) == sorted(r["account_id"] for r in log)
    same = stored == expected and outcomes == Counter(r["outcome"] for r in log) and once
    cell.seconds = run.seconds
    cell.succeeded = int(run.success)
    cell.identical = int(run.success and same)
    cell.silent = int(run.success and not same)
    return cell


def add(total: Cell, one: Cell) -> Cell:
    return replace(
        total,
        runs=total.runs + one.runs,
        succeeded=total.succeeded + one.succeeded,
        identical=total.identical + one.identical,
        silent=total.silent + one.silent,
        injected=total.injected + one.injected,
        seconds=total.seconds + one.seconds,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.05, 0.2])
    parser.add_argument("--runs", type=int, default=1, help="runs per kind and rate")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--no-writeback", action="store_true")
    args = parser.parse_args()
    cells: dict[tuple[str, float], Cell] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fault-outcomes-") as tmp:
        for i in range(args.runs):
            seed = 42 + i
            folder = Path(tmp) / f"seed-{seed}"
            folder.mkdir()
            ref = baseline(seed, folder)
            for name in args.kinds:
                for rate in args.rates:
                    one = daily_run(seed, ref, KINDS[name], rate, folder)
                    key = (KINDS[name].name, rate)
                    cells[key] = add(cells.get(key, Cell()), one)
                    print(f"  seed {seed} {name} {rate:.0%}: {one}", file=sys.stderr)
            if not args.no_writeback:
                for rate in args.rates:
                    one = writeback_run(seed, rate, folder)
                    key = ("write-back: write delivered twice (applied twice)", rate)
                    cells[key] = add(cells.get(key, Cell()), one)
                    print(f"  seed {seed} duplicate {rate:.0%}: {one}", file=sys.stderr)
    lines = [
        "| fault kind | rate | runs | runs succeeded | tables identical | silently different "
        "| faults injected | seconds per run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, rate), c in cells.items():
        lines.append(
            f"| {name} | {rate:.0%} | {c.runs} | {c.succeeded} | {c.identical} | {c.silent} "
            f"| {c.injected} | {c.seconds / c.runs:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "bench" / "out" / f"fault_outcomes_bench-{stamp}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n", encoding="utf-8")
    print(f"\n{time.monotonic() - started:.0f} s; written to {out.relative_to(ROOT)}")
    return 0 if all(c.silent == 0 for c in cells.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
