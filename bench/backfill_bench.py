"""Benchmark: a backfill of ``daily_sync`` at scale, through the daemon (issue 8, part 4).

Not a test (nothing here asserts on time). It runs the project the way a deployment
does, only on one machine:

1. the sandbox in its own process (``analytics-assets sandbox``) at ``--scale`` (1000 =
   100,000 accounts, ~1.06 million visitors), ``--amp-ratio`` Amplitude events per Pendo
   event, and a Pendo rate limit of ``--pendo-rate`` requests per second per key; its
   clock frozen at the start so every day of the backfill is complete and fixed;
2. a fresh ``DAGSTER_HOME`` whose ``dagster.yaml`` queues runs (at most ``--max-runs`` at
   once) and limits the pools; ``pendo_api`` and ``amplitude_api`` get ``--slots`` slots
   each (``dagster instance concurrency set``); the run launcher is the default one (a
   subprocess per run) and the job's executor the default multiprocess one;
3. ``dagster-daemon run`` in the background with the sandbox's environment and
   ``PENDO_RATE_PER_SECOND = pendo-rate / slots``: each step's client paces itself to
   its share, and the pool caps how many steps hold a share at once;
4. ``catalog_refresh`` launched once (the daily view reads ``pendo.visitors``), then
   ``dagster job backfill -j daily_sync --from .. --to .. --noprompt`` (a run per day: the
   CLI submits one run per partition whatever the assets' ``BackfillPolicy``); with
   ``--range``, the runs the daemon's job backfill submits under the policy instead (a run
   per range of at most ``--days-per-run`` days, tagged with the range, as the UI's
   "Launch backfill" of ``daily_sync`` does), launched with ``dagster job launch``;
5. polls until every run of the backfill has finished, sampling the slots in use per
   pool (the peak of concurrent API steps) and the sandbox's counters;
6. prints and writes (``--out``) the wall time, runs succeeded and failed, run and step
   durations, the sandbox's answers by status and its limiters' refusals, and the
   warehouse's row counts.

    /work/venv/bin/python bench/backfill_bench.py --scale 1000 --days 30 --amp-ratio 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from _sandbox_process import freeze_clock, loadavg, start_cli_sandbox

ROOT = Path(__file__).resolve().parents[1]
TIMEZONE = "America/New_York"  # the sync config's time zone (the partitions')
POOLS = ("pendo_api", "amplitude_api")
BIN = Path(sys.executable).parent

DAGSTER_YAML = """\
# Written by bench/backfill_bench.py: queued runs, and the pools shared by every run.
concurrency:
  runs:
    max_concurrent_runs: {max_runs}
  pools:
    default_limit: {slots}
telemetry:
  enabled: false
"""


def _say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def start_sandbox(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str, dict]:
    options = ["--seed", str(args.seed), "--scale", str(args.scale), "--timezone", TIMEZONE,
               "--pendo-rate", str(args.pendo_rate),
               "--amplitude-events-per-pendo-event", str(args.amp_ratio)]  # fmt: skip
    proc, base, info = start_cli_sandbox(options, log, wait_seconds=300)
    # Freeze the clock now: the backfilled days are complete and stay the same for the
    # whole run (a wall clock would move "today" under a long backfill).
    now = datetime.now(UTC).replace(microsecond=0)
    freeze_clock(base, now)
    info["frozen_at"] = now.isoformat()
    return proc, base, info


def sandbox_env(base: str) -> dict[str, str]:
    # The sandbox's default keys (analytics_assets.sandbox.config); the same mapping as
    # analytics_assets.demo.sandbox_environment, without building a config in-process.
    return {
        "PENDO_BASE_URL": base,
        "PENDO_INTEGRATION_KEY": "sandbox-pendo-us-read-key",
        "PENDO_WRITE_INTEGRATION_KEY": "sandbox-pendo-us-write-key",
        "PENDO_TIMEZONE": TIMEZONE,
        "AMPLITUDE_BASE_URL": base,
        "AMPLITUDE_INGESTION_URL": base,
        "AMPLITUDE_PROFILE_URL": base,
        "AMPLITUDE_API_KEY": "sandbox-amplitude-us-api-key",
        "AMPLITUDE_SECRET_KEY": "sandbox-amplitude-us-secret-key",
    }


def partition_keys(frozen_at: str, days: int) -> list[str]:
    """The last ``days`` complete local days before the sandbox's frozen "now"."""
    today = datetime.fromisoformat(frozen_at).astimezone(ZoneInfo(TIMEZONE)).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(days, 0, -1)]


def run_cli(cmd: list[str], env: dict[str, str], log: Path) -> str:
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    with log.open("a") as fh:
        fh.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}); see {log}")
    return proc.stdout


def _finished(status: Any) -> bool:
    from dagster import DagsterRunStatus

    return status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


class Watcher:
    """Polls the instance and the sandbox; keeps the peaks."""

    def __init__(self, instance: Any, base: str) -> None:
        self.instance = instance
        self.base = base
        self.peak_slots = {pool: 0 for pool in POOLS}
        self.peak_runs = 0
        self.samples = 0
        self.last_print = 0.0

    def sample(self, run_ids: list[str]) -> list[Any]:
        from dagster import DagsterRunStatus, RunsFilter

        for pool in POOLS:
            info = self.instance.event_log_storage.get_concurrency_info(pool)
            self.peak_slots[pool] = max(self.peak_slots[pool], info.active_slot_count)
        runs = self.instance.get_runs(filters=RunsFilter(run_ids=run_ids)) if run_ids else []
        started = sum(1 for r in runs if r.status == DagsterRunStatus.STARTED)
        self.peak_runs = max(self.peak_runs, started)
        self.samples += 1
        return runs

    def wait(
        self, run_ids: list[str], label: str, poll: float = 1.0, max_wait: float | None = None
    ) -> list[Any]:
        """Until every run has finished, or ``max_wait`` seconds have passed."""
        import httpx

        deadline = None if max_wait is None else time.monotonic() + max_wait
        while True:
            runs = self.sample(run_ids)
            if len(runs) == len(run_ids) and all(_finished(r.status) for r in runs):
                return runs
            if deadline is not None and time.monotonic() > deadline:
                _say(f"{label}: stopped waiting after {max_wait:.0f} s")
                return runs
            if time.monotonic() - self.last_print > 30:
                self.last_print = time.monotonic()
                counts: dict[str, int] = {}
                for r in runs:
                    counts[r.status.value] = counts.get(r.status.value, 0) + 1
                try:
                    by_status = httpx.get(f"{self.base}/_sandbox/counters", timeout=10).json()[
                        "by_status"
                    ]
                except httpx.HTTPError:
                    by_status = "?"
                _say(
                    f"{label}: {counts}; sandbox answers {by_status}; peak slots "
                    f"{self.peak_slots}; load {loadavg()}"
                )
            time.sleep(poll)


def step_stats(instance: Any, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    per_step: dict[str, list[float]] = {}
    for run_id in run_ids:
        for s in instance.get_run_step_stats(run_id):
            if s.start_time and s.end_time:
                per_step.setdefault(s.step_key, []).append(s.end_time - s.start_time)
    return {
        key: {"n": len(v), "median_s": statistics.median(v), "max_s": max(v)}
        for key, v in sorted(per_step.items())
    }


def client_figures(instance: Any, run_ids: list[str]) -> dict[str, float]:
    """What the steps themselves report spending (materialization metadata): requests,
    retries and 429s seen by the clients, summed over the runs. A ranged step reports its
    figures on each day's materialization: they are counted once per step."""
    totals: dict[str, float] = {}
    for run_id in run_ids:
        seen: set[str | None] = set()
        for event in instance.all_logs(run_id):
            de = event.dagster_event
            if de is None or not de.is_step_materialization or de.step_key in seen:
                continue
            seen.add(de.step_key)
            for name, value in de.step_materialization_data.materialization.metadata.items():
                if name.endswith(
                    ("_requests", "_retries", "_throttled_429", "_limit_wait_seconds")
                ):
                    totals[name] = round(totals.get(name, 0) + value.value, 3)
    return dict(sorted(totals.items()))


def requests_per_api(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """The sandbox's answers between two counter readings, per API (Pendo: ``/api/v1``;
    Amplitude: the export, the Dashboard and the rest) and the 429s among them."""
    out = {"pendo": 0, "amplitude_export": 0, "amplitude_dashboard": 0, "amplitude_other": 0}
    out["answered_429"] = 0
    counted = {(r["method"], r["path"], r["status"]): r["count"] for r in before["requests"]}
    for r in after["requests"]:
        n = r["count"] - counted.get((r["method"], r["path"], r["status"]), 0)
        path = r["path"]
        if not n or path.startswith("/_sandbox"):
            continue
        if path.startswith("/api/v1"):
            out["pendo"] += n
        elif path.startswith("/api/2/export"):
            out["amplitude_export"] += n
        elif path.startswith(("/api/2/users", "/api/2/events/segmentation", "/api/2/sessions")):
            out["amplitude_dashboard"] += n
        else:
            out["amplitude_other"] += n
        if r["status"] == 429:
            out["answered_429"] += n
    return out


def ranges(keys: list[str], days_per_run: int) -> list[tuple[str, str]]:
    """The runs a job backfill of ``keys`` submits under multi_run(days_per_run)."""
    chunks = [keys[i : i + days_per_run] for i in range(0, len(keys), days_per_run)]
    return [(chunk[0], chunk[-1]) for chunk in chunks]


def warehouse_rows(path: Path) -> dict[str, int]:
    import duckdb

    if not path.exists():
        return {}
    with duckdb.connect(str(path), read_only=True) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "ORDER BY table_schema, table_name"
        ).fetchall()
        return {
            f"{schema}.{name}": conn.execute(
                f'SELECT count(*) FROM "{schema}"."{name}"'
            ).fetchone()[0]
            for schema, name in tables
        }


def main() -> None:  # noqa: PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=1000.0, help="sandbox scale (1000 = 100,000 accounts)"
    )
    parser.add_argument("--days", type=int, default=30, help="partitions to backfill")
    parser.add_argument(
        "--amp-ratio",
        type=float,
        default=0.1,
        help="Amplitude events per Pendo event (the sandbox's default is 0.6)",
    )
    parser.add_argument(
        "--pendo-rate",
        type=float,
        default=10.0,
        help="the sandbox's Pendo limit, requests per second per key",
    )
    parser.add_argument("--slots", type=int, default=2, help="slots per API pool")
    parser.add_argument(
        "--range",
        action="store_true",
        help="backfill by range (the assets' BackfillPolicy) instead of a run per day",
    )
    parser.add_argument(
        "--days-per-run",
        type=int,
        default=30,
        help="with --range: days a run covers at most (the calendar's days_per_run)",
    )
    parser.add_argument("--max-runs", type=int, default=2, help="runs in progress at once")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="write every figure here as JSON")
    parser.add_argument("--workdir", type=Path, help="Dagster home, data, logs (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir")
    parser.add_argument(
        "--sync-config",
        type=Path,
        help="ANALYTICS_ASSETS_SYNC_CONFIG for the runs (e.g. fewer cohorts; see bench/README)",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        help="stop waiting for the backfill after this many seconds and report what finished",
    )
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="backfill-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    home, data = workdir / "dagster_home", workdir / "data"
    home.mkdir(exist_ok=True)
    data.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(
        DAGSTER_YAML.format(max_runs=args.max_runs, slots=args.slots)
    )
    log = workdir / "cli.log"
    _say(f"{os.cpu_count()} CPUs; load average {loadavg()}; workdir {workdir}")

    started_sandbox = time.monotonic()
    sandbox, base, info = start_sandbox(args, workdir / "sandbox.log")
    us = info["regions"]["us"]
    keys = partition_keys(info["frozen_at"], args.days)
    _say(
        f"sandbox pid {sandbox.pid} on {base} up in {time.monotonic() - started_sandbox:.1f} s: "
        f"scale {args.scale:g} ({us['accounts']:,} accounts, {us['visitors']:,} visitors), "
        f"{args.amp_ratio:g} Amplitude events per Pendo event, Pendo limit "
        f"{args.pendo_rate:g}/s; clock frozen at {info['frozen_at']}; "
        f"partitions {keys[0]}..{keys[-1]}"
    )

    env = {
        **os.environ,
        **sandbox_env(base),
        "DAGSTER_HOME": str(home),
        "ANALYTICS_ASSETS_DATA_DIR": str(data),
        "PENDO_RATE_PER_SECOND": f"{args.pendo_rate / args.slots:g}",
        "PYTHONUNBUFFERED": "1",
    }
    if args.sync_config:
        env["ANALYTICS_ASSETS_SYNC_CONFIG"] = str(args.sync_config.resolve())
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "ANALYTICS_ASSETS_DATA_DIR")})
    dagster = [str(BIN / "dagster")]
    workspace = ["-w", str(ROOT / "workspace.yaml")]
    for pool in POOLS:
        run_cli([*dagster, "instance", "concurrency", "set", pool, str(args.slots)], env, log)

    daemon_log = (workdir / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", *workspace],
        cwd=ROOT,
        env=env,
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    figures: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "cpus": os.cpu_count(),
        "sandbox": {
            "accounts": us["accounts"],
            "visitors": us["visitors"],
            "frozen_at": info["frozen_at"],
        },
        "partitions": keys,
        "load_before": loadavg(),
    }
    try:
        import dagster as dg
        import httpx

        instance = dg.DagsterInstance.get()
        watcher = Watcher(instance, base)

        # 1) the snapshots, once: the daily view reads pendo.visitors.
        t0 = time.monotonic()
        out = run_cli([*dagster, "job", "launch", "-j", "catalog_refresh", *workspace], env, log)
        catalog = instance.get_runs(filters=dg.RunsFilter(job_name="catalog_refresh"))
        catalog_ids = [r.run_id for r in catalog]
        _say(f"catalog_refresh launched ({out.strip().splitlines()[-1][:100]})")
        catalog_runs = watcher.wait(catalog_ids, "catalog_refresh")
        figures["catalog_refresh"] = {
            "wall_s": time.monotonic() - t0,
            "status": [r.status.value for r in catalog_runs],
            "steps": step_stats(instance, catalog_ids),
        }
        _say(
            f"catalog_refresh {figures['catalog_refresh']['status']} in "
            f"{figures['catalog_refresh']['wall_s']:.0f} s"
        )
        counters_before = httpx.get(f"{base}/_sandbox/counters", timeout=30).json()

        # 2) the backfill.
        watcher.peak_slots = {pool: 0 for pool in POOLS}
        t0 = time.monotonic()
        if args.range:
            backfill_id = "range"
            for first, last in ranges(keys, args.days_per_run):
                tags = {
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                    "bench/backfill": backfill_id,
                }
                launch = [*dagster, "job", "launch", "-j", "daily_sync", *workspace]
                run_cli([*launch, "--tags", json.dumps(tags)], env, log)
            tag = {"bench/backfill": backfill_id}
        else:
            run_cli(
                [
                    *dagster,
                    "job",
                    "backfill",
                    "-j",
                    "daily_sync",
                    "--from",
                    keys[0],
                    "--to",
                    keys[-1],
                    "--noprompt",
                    *workspace,
                ],
                env,
                log,
            )
            backfill_id = instance.get_backfills()[0].backfill_id
            tag = {"dagster/backfill": backfill_id}
        runs = instance.get_runs(filters=dg.RunsFilter(tags=tag))
        run_ids = [r.run_id for r in runs]
        _say(
            f"backfill {backfill_id}: {len(run_ids)} runs submitted "
            f"in {time.monotonic() - t0:.1f} s"
        )
        runs = watcher.wait(run_ids, "backfill", max_wait=args.max_wait)
        wall = time.monotonic() - t0
        figures["load_after"] = loadavg()

        records = instance.get_run_records(filters=dg.RunsFilter(run_ids=run_ids))
        durations = sorted(
            (r.end_time - r.start_time) for r in records if r.start_time and r.end_time
        )
        first_start = min((r.start_time for r in records if r.start_time), default=0.0)
        last_end = max((r.end_time for r in records if r.end_time), default=0.0)
        by_status: dict[str, int] = {}
        for r in runs:
            by_status[r.status.value] = by_status.get(r.status.value, 0) + 1
        failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        counters = httpx.get(f"{base}/_sandbox/counters", timeout=30).json()
        limits = httpx.get(f"{base}/_sandbox/limits", timeout=30).json()
        amp = limits["amplitude"]["us"]
        refusals = {
            "pendo_rate": limits["pendo"]["rate_limit"]["refused"],
            **{k: amp[k] for k in amp if "refused" in k or "throttled" in k},
        }
        figures["backfill"] = {
            "backfill_id": backfill_id,
            "wall_s": wall,
            "first_start_to_last_end_s": last_end - first_start,
            "runs": len(run_ids),
            "by_status": by_status,
            "failed_run_ids": failed,
            "run_s_median": statistics.median(durations) if durations else None,
            "run_s_min": durations[0] if durations else None,
            "run_s_max": durations[-1] if durations else None,
            "peak_runs_in_progress": watcher.peak_runs,
            "peak_slots": watcher.peak_slots,
            "steps": step_stats(instance, run_ids),
        }
        figures["client_reported"] = client_figures(instance, run_ids)
        figures["sandbox_answers"] = {
            "all_runs": counters["by_status"],
            "total": counters["total"],
            "before_backfill": counters_before["by_status"],
        }
        figures["limiter_refusals"] = refusals
        figures["backfill_requests"] = requests_per_api(counters_before, counters)
        figures["amplitude_peaks"] = {k: amp[k] for k in ("dashboard_peak", "cohort_peak")}
        figures["amplitude_dashboard_cost_spent"] = amp.get("dashboard_cost_spent")
        figures["pendo_aggregations"] = limits["pendo"]["aggregations"]
        for failed_id in failed[:3]:
            for event in instance.all_logs(failed_id):
                if event.dagster_event and event.dagster_event.is_step_failure:
                    data_ = event.dagster_event.step_failure_data
                    _say(
                        f"run {failed_id[:8]} step {event.step_key} failed: "
                        f"{data_.error.message.strip()[:300] if data_.error else '?'}"
                    )
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
        sandbox.terminate()
        try:
            sandbox.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sandbox.kill()

    figures["warehouse_rows"] = warehouse_rows(data / "warehouse.duckdb")
    b = figures["backfill"]
    print()
    print(
        f"backfill {'by range' if args.range else 'a run per day'} of {len(keys)} days "
        f"({keys[0]}..{keys[-1]}) at scale {args.scale:g}: "
        f"wall {b['wall_s']:.0f} s ({b['wall_s'] / 60:.1f} min); runs {b['by_status']}; "
        f"run median {b['run_s_median'] or 0:.0f} s (min {b['run_s_min'] or 0:.0f}, max "
        f"{b['run_s_max'] or 0:.0f}); peak runs in progress {b['peak_runs_in_progress']}, "
        f"peak slots {b['peak_slots']}"
    )
    print(
        f"catalog_refresh first: {figures['catalog_refresh']['wall_s']:.0f} s "
        f"{figures['catalog_refresh']['status']}"
    )
    print(f"sandbox answers by status (whole bench): {figures['sandbox_answers']['all_runs']}")
    print(f"limiter refusals: {figures['limiter_refusals']}")
    print(f"the backfill's requests per API (sandbox): {figures['backfill_requests']}")
    print(f"the steps' own figures (summed): {figures['client_reported']}")
    print(f"load average before {figures['load_before']}, after {figures['load_after']}")
    print("\nstep durations (median / max s over the backfill's runs):")
    for key, s in b["steps"].items():
        print(f"  {key:<48} {s['median_s']:>7.1f} {s['max_s']:>7.1f}  (n={s['n']})")
    print("\nwarehouse rows:")
    for table, rows in figures["warehouse_rows"].items():
        print(f"  {table:<44} {rows:>12,}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1, default=str))
        print(f"\nfigures: {args.out}")
    if not args.workdir and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
