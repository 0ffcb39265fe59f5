"""The daily job and the CRM write-back against the sandbox, with faults injected.

Daily job. A fault-free run of one partition gives the reference tables. Then, for each
fault, a fresh copy of the same starting warehouse (every snapshot table, the day before,
and a stale earlier load of the partition), a fresh sandbox with the fault set, and the
whole ``daily_sync`` job for that partition. The job either finishes with every table
identical to the reference, or fails with errors that name the service, the status or
the timeout, and what to do. Dagster runs each asset of a job as its own step, so the
guarantee is per asset: the partition of every asset that materialized is identical to
the fault-free run's, and every table whose asset failed or was skipped is exactly as it
was before the run (compared row by row, whole tables). A clean re-run of a failed
partition then gives the reference tables: re-running a partition is always safe.

Write-back. For each fault, a fresh sandbox and warehouse, then the write-back of the
shipped CRM sample in batches of 10. Every record a run logs as ``updated`` holds, in
the sandbox's store, the values the run sent (read through the sandbox's control route);
every record to send has a log row (updated, unconfirmed or not sent); and a clean
re-run leaves the sandbox storing exactly what a fault-free run stores.

The table of faults and outcomes is printed at the end of the session (tests/fault_table.py).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import duckdb
import httpx
import pytest

from analytics_assets import definitions
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.crm_writeback import SAMPLE_CRM_PATH, crm_account_metadata_push
from analytics_assets.crm_writeback.tables import LOG_TABLE, QUARANTINE_TABLE
from analytics_assets.jobs import CATALOG_JOB, DAILY_JOB, sync_jobs
from analytics_assets.pendo.resource import PendoResource
from analytics_assets.sandbox import SandboxServer
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

if TYPE_CHECKING:
    from fault_table import FaultTable

pytestmark = [pytest.mark.faults, pytest.mark.slow]

StartSandbox = Callable[[], AbstractContextManager[SandboxServer]]

DAY = date(2026, 11, 17)  # complete at the sandbox's frozen now
PREVIOUS_DAY = date(2026, 11, 16)
ALL_ASSETS = [a for a in definitions.defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
HEALTH_KEY = dg.AssetKey(["analytics", "account_health"])
DAILY_KEYS = [a.key for a in ALL_ASSETS if a.partitions_def is not None]
SNAPSHOT_KEYS = [a.key for a in ALL_ASSETS if a.partitions_def is None and a.key != HEALTH_KEY]
# Every daily asset writes the table named after its key (schema = first part).
DAILY_TABLES = {".".join(key.path): key for key in DAILY_KEYS}
# account_health runs in daily_sync after the day's usage, and replaces its whole table.
WHOLE_TABLES = {".".join(HEALTH_KEY.path): HEALTH_KEY}
# Cohort membership is a daily snapshot refreshed by the catalog job, not a daily partition.
MEMBERSHIP_KEY = dg.AssetKey(["amplitude", "cohort_membership"])
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
WRITE_BATCH = 10
EXPORT_PATH = r"^/api/2/export"
COHORT_FILE_PATH = r"^/api/5/cohorts/request/[^/]+/file$"
WRITE_PATH = r"^/api/v1/metadata/account/custom/value"
API_SUMMARY = re.compile(r" API: .*?(\d+) retries, (\d+) throttled \(429\)")
# What went wrong, as a failed step's error must name it: the status, the timeout, or the
# broken answer (a dropped connection, a cut archive, a body that is not JSON).
WHAT_HAPPENED = re.compile(
    r"HTTP (404|429|5\d\d)|ReadTimeout|timed out|no complete response|incomplete|cut short|"
    r"not JSON|HTML where JSON"
)


# ----- faults ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One scenario: the sandbox's fault rules, resource settings, and what must happen."""

    id: str
    label: str
    rules: tuple[dict[str, Any], ...]
    # "identical" or "failed"; "either" where the faults are random (a request may meet
    # a fault on every attempt): then the run must at least have retried through some.
    expect: str
    # A failed step's error must say at least one of these (what to do next).
    advice: tuple[str, ...] = ()
    pendo: dict[str, Any] = field(default_factory=dict)
    amplitude: dict[str, Any] = field(default_factory=dict)


def _mixed_5xx(**where: Any) -> tuple[dict[str, Any], ...]:
    # Rules of one kind fire at most once per request, tried in order: 1 - 0.93^3 ~ 20%.
    return tuple(
        {"kind": "error", "status": status, "probability": 0.07, **where}
        for status in (500, 502, 503)
    )


def _share(rate: float, *rules: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """Rules that together fault ``rate`` of the requests they match: each rule fires at
    most once per request, tried in order, so each gets 1 - (1 - rate)^(1/n)."""
    each = 1 - (1 - rate) ** (1 / len(rules))
    return tuple({**rule, "probability": round(each, 4)} for rule in rules)


def _html_pages(rate: float, **where: Any) -> tuple[dict[str, Any], ...]:
    return _share(rate, *({"kind": "html", "status": s, **where} for s in (502, 503)))


def _damaged_200s(rate: float, **where: Any) -> tuple[dict[str, Any], ...]:
    return _share(
        rate, *({"kind": "damage", "damage": d, **where} for d in ("html", "empty", "cut"))
    )


SHORT_CAP = {"max_retry_time": 3.0}
SHORT_READ = {"read_timeout": 1.0, "max_retry_time": 3.0}
RETRY_LATER = ("retry later",)
THROTTLED = ("lower the rate",)
TIMEOUT = ("raise the read timeout",)
TRANSPORT = ("raise the read timeout", "run the window again", "downloading it again")

PROXY = ("check base_url and the proxies",)

DAILY_FAULTS = [
    # At 20 % retryable faults every daily run succeeds with tables identical to a
    # fault-free run (the sandbox's faults are seeded, so each of these runs the same way
    # every time; at 6 attempts a request fails for good with 0.2^6 = 6e-5).
    Fault(
        "5xx-503-20pct",
        "20% of answers 503",
        ({"kind": "error", "status": 503, "probability": 0.2},),
        "identical",
        RETRY_LATER,
    ),
    Fault("5xx-mixed-20pct", "20% of answers 500/502/503", _mixed_5xx(), "identical", RETRY_LATER),
    Fault(
        "html-502-503-20pct",
        "20% of answers an intermediary's HTML 502/503 page",
        _html_pages(0.2),
        "identical",
        RETRY_LATER,
    ),
    Fault(
        "damaged-200-20pct",
        "20% of 200 answers damaged (HTML page, empty, cut with a matching Content-Length)",
        _damaged_200s(0.2),
        "identical",
        TRANSPORT,
    ),
    Fault(
        "429-20pct-retry-after",
        "20% of answers 429, Retry-After 1 s",
        ({"kind": "throttle", "probability": 0.2, "retry_after": 1},),
        "identical",
        THROTTLED,
    ),
    Fault(
        "429-20pct-no-retry-after",
        "20% of answers 429, no Retry-After (Amplitude's 30 s budget pause scaled to 0.6 s)",
        ({"kind": "throttle", "probability": 0.2},),
        "identical",
        THROTTLED,
        # Without Retry-After an Amplitude 429 pauses the project's budget 30 s (its limits
        # are hit); unscaled, 20 % of ~100 Amplitude requests wait ~10 minutes.
        amplitude={"budget_window_scale": 0.02},
    ),
    Fault(
        "drop-20pct",
        "20% of connections dropped mid-body",
        ({"kind": "drop", "probability": 0.2},),
        "identical",
        TRANSPORT,
    ),
    Fault(
        "html-404-export-x2",
        "2 export answers an intermediary's HTML 404 page",
        ({"kind": "html", "status": 404, "count": 2, "path": EXPORT_PATH},),
        "identical",
        PROXY,
    ),
    Fault(
        "html-404-export-always",
        "every export answer an intermediary's HTML 404 page (retry cap 3 s)",
        ({"kind": "html", "status": 404, "path": EXPORT_PATH},),
        "failed",
        PROXY,
        amplitude=SHORT_CAP,
    ),
    Fault(
        "429-burst-within-cap",
        "429 burst of 2 answers, Retry-After 1 s (retry cap 3 s)",
        ({"kind": "throttle", "count": 2, "retry_after": 1},),
        "identical",
        THROTTLED,
        pendo=SHORT_CAP,
        amplitude=SHORT_CAP,
    ),
    Fault(
        "429-storm-retry-after",
        "Pendo 429 storm for 60 s, Retry-After 5 s (retry cap 3 s)",
        ({"kind": "throttle", "service": "pendo", "retry_after": 5, "duration_seconds": 60},),
        "failed",
        THROTTLED,
        pendo=SHORT_CAP,
    ),
    Fault(
        "429-storm-no-retry-after",
        "Pendo 429 storm for 60 s, no Retry-After (retry cap 3 s)",
        ({"kind": "throttle", "service": "pendo", "duration_seconds": 60},),
        "failed",
        THROTTLED,
        pendo=SHORT_CAP,
    ),
    Fault(
        "drop-30pct",
        "30% of connections dropped mid-body",
        ({"kind": "drop", "probability": 0.3},),
        "either",
        TRANSPORT,
    ),
    Fault(
        "truncate-export-x2",
        "2 export archives truncated",
        ({"kind": "truncate", "count": 2, "path": EXPORT_PATH},),
        "identical",
        TRANSPORT,
    ),
    Fault(
        "latency-x2",
        "2 answers 2 s late (read timeout 1 s)",
        ({"kind": "latency", "latency_seconds": 2, "count": 2},),
        "identical",
        TIMEOUT,
        pendo={"read_timeout": 1.0},
        amplitude={"read_timeout": 1.0},
    ),
    Fault(
        "latency-persistent-export",
        "every export answer 2 s late (read timeout 1 s, retry cap 3 s)",
        ({"kind": "latency", "latency_seconds": 2, "path": EXPORT_PATH},),
        "failed",
        TIMEOUT,
        amplitude=SHORT_READ,
    ),
]

RUN_AGAIN = ("Run the job again",)

WRITEBACK_FAULTS = [
    Fault(
        "wb-duplicate-20pct",
        "20% of writes delivered twice (applied twice, answered once)",
        ({"kind": "duplicate", "probability": 0.2, "path": WRITE_PATH},),
        "identical",
        RUN_AGAIN,
    ),
    Fault(
        "wb-drop-after-apply-x2",
        "2 write answers lost after the write was applied (connection dropped)",
        ({"kind": "drop", "count": 2, "fraction": 0.0, "path": WRITE_PATH},),
        "either",
        RUN_AGAIN,
    ),
    Fault(
        "wb-html-502-503-20pct",
        "20% of Pendo answers an intermediary's HTML 502/503 page",
        _html_pages(0.2, service="pendo"),
        "either",
        RUN_AGAIN,
    ),
    Fault(
        "wb-damaged-200-20pct",
        "20% of Pendo 200 answers damaged (HTML page, empty, cut)",
        _damaged_200s(0.2, service="pendo"),
        "either",
        RUN_AGAIN,
    ),
    Fault(
        "wb-5xx-mixed-20pct",
        "20% of Pendo answers 500/502/503",
        _mixed_5xx(service="pendo"),
        "either",
        RUN_AGAIN,
    ),
    Fault(
        "wb-429-burst-within-cap",
        "429 burst of 2 write answers, Retry-After 1 s (retry cap 3 s)",
        ({"kind": "throttle", "count": 2, "retry_after": 1, "path": WRITE_PATH},),
        "identical",
        RUN_AGAIN,
        pendo=SHORT_CAP,
    ),
    Fault(
        "wb-429-storm-retry-after",
        "429 storm on writes for 60 s, Retry-After 5 s (retry cap 3 s)",
        ({"kind": "throttle", "retry_after": 5, "duration_seconds": 60, "path": WRITE_PATH},),
        "failed",
        RUN_AGAIN,
        pendo=SHORT_CAP,
    ),
    Fault(
        "wb-429-storm-no-retry-after",
        # As long as the one above: a storm is timed from the rule's creation, and the
        # push's first write may come seconds later on a busy machine (the run stops at
        # its first failed batch; the faults are cleared before the re-run).
        "429 storm on writes for 60 s, no Retry-After (retry cap 3 s)",
        ({"kind": "throttle", "duration_seconds": 60, "path": WRITE_PATH},),
        "failed",
        RUN_AGAIN,
        pendo=SHORT_CAP,
    ),
    Fault(
        "wb-drop-30pct",
        "30% of Pendo connections dropped mid-body",
        ({"kind": "drop", "probability": 0.3, "service": "pendo"},),
        "either",
        RUN_AGAIN,
    ),
    Fault(
        "wb-truncate",
        "a write answer cut short (the write was applied)",
        ({"kind": "truncate", "count": 1, "path": WRITE_PATH},),
        "failed",
        RUN_AGAIN,
    ),
    Fault(
        "wb-latency-x2",
        "2 write answers 2 s late (read timeout 1 s)",
        ({"kind": "latency", "latency_seconds": 2, "count": 2, "path": WRITE_PATH},),
        "identical",
        RUN_AGAIN,
        pendo={"read_timeout": 1.0},
    ),
    Fault(
        "wb-latency-persistent",
        "every write answer 2 s late (read timeout 1 s, retry cap 3 s)",
        ({"kind": "latency", "latency_seconds": 2, "path": WRITE_PATH},),
        "failed",
        RUN_AGAIN,
        pendo=SHORT_READ,
    ),
]


# ----- sandbox, resources and runs ---------------------------------------------------------


def control(sandbox: SandboxServer, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{sandbox.urls.control()}{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response.json()


def pendo_resource(sandbox: SandboxServer, key: str, **settings: Any) -> PendoResource:
    return PendoResource(
        integration_key=key,
        base_url=sandbox.urls.pendo(),
        rate_per_second=50.0,
        **settings,
    )


def daily_resources(
    sandbox: SandboxServer,
    database: Path,
    pendo: dict[str, Any] | None = None,
    amplitude: dict[str, Any] | None = None,
) -> dict[str, Any]:
    keys = sandbox.config.amplitude_keys["us"]
    base = sandbox.urls.amplitude()
    return {
        "pendo": pendo_resource(sandbox, sandbox.config.pendo_keys["us"].read, **(pendo or {})),
        "amplitude": AmplitudeResource(
            api_key=keys.api_key,
            secret_key=keys.secret_key,
            base_url=base,
            ingestion_url=base,
            profile_url=base,
            **(amplitude or {}),
        ),
        "warehouse": DuckDBWarehouse(database=str(database)),
    }


@dataclass(frozen=True)
class RunOutcome:
    success: bool
    run_id: str
    seconds: float
    materialized: frozenset[dg.AssetKey]
    failures: dict[str, str]  # step key -> the error as the UI shows it, causes included
    retries: int  # from the one-line API summary each step logs
    throttled: int


def error_text(error: Any) -> str:
    parts = []
    while error is not None:
        parts.append(error.message.strip())
        error = error.cause
    return "\n".join(parts)


def outcome_of(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance, started: float
) -> RunOutcome:
    retries = throttled = 0
    for entry in instance.all_logs(result.run_id):
        match = API_SUMMARY.search(entry.user_message or "")
        if match:
            retries += int(match[1])
            throttled += int(match[2])
    return RunOutcome(
        success=result.success,
        run_id=result.run_id,
        seconds=time.monotonic() - started,
        materialized=frozenset(
            e.asset_key for e in result.get_asset_materialization_events() if e.asset_key
        ),
        failures={
            e.step_key or "?": error_text(e.step_failure_data.error)
            for e in result.get_step_failure_events()
        },
        retries=retries,
        throttled=throttled,
    )


def run_daily(resources: dict[str, Any], day: date) -> RunOutcome:
    """The ``daily_sync`` job of the code location for one partition, in process."""
    defs = dg.Definitions(assets=ALL_ASSETS, jobs=sync_jobs().jobs, resources=resources)
    job = defs.resolve_job_def(DAILY_JOB)
    instance = dg.DagsterInstance.ephemeral()
    started = time.monotonic()
    result = job.execute_in_process(
        partition_key=day.isoformat(), instance=instance, run_config=QUIET, raise_on_error=False
    )
    return outcome_of(result, instance, started)


def run_writeback(
    sandbox: SandboxServer, database: Path, pendo: dict[str, Any] | None = None
) -> RunOutcome:
    instance = dg.DagsterInstance.ephemeral()
    started = time.monotonic()
    result = crm_account_metadata_push.execute_in_process(
        run_config={"crm_path": str(SAMPLE_CRM_PATH), "batch_size": WRITE_BATCH},
        resources={
            "pendo_write": pendo_resource(
                sandbox, sandbox.config.pendo_keys["us"].write, **(pendo or {})
            ),
            "warehouse": DuckDBWarehouse(database=str(database)),
        },
        instance=instance,
        raise_on_error=False,
    )
    return outcome_of(result, instance, started)


def check_errors(run: RunOutcome, fault: Fault, service_of: Callable[[str], str]) -> None:
    """Every failed step says which service, what status or timeout, and what to do."""
    assert run.failures, "the run failed without a failed step"
    for step, text in run.failures.items():
        service = service_of(step)
        assert f"[{service}]" in text, f"{step}: the error does not name {service}:\n{text}"
        assert WHAT_HAPPENED.search(text), f"{step}: no status, timeout or cause:\n{text}"
        assert any(a in text for a in fault.advice), (
            f"{step}: the error does not say what to do ({fault.advice}):\n{text}"
        )


def check_expectation(fault: Fault, outcome: str, run: RunOutcome) -> None:
    if fault.expect == "either":
        assert run.retries > 0, "random faults, yet no step retried"
    else:
        assert outcome == {"identical": "identical", "failed": "failed cleanly"}[fault.expect]


# ----- warehouse snapshots -----------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]  # every row, ordered by all columns

    def split(self, day: date) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """(rows of the partition ``day``, every other row)."""
        at = self.columns.index("day")
        inside = [r for r in self.rows if r[at] == day]
        return inside, [r for r in self.rows if r[at] != day]


Tables = dict[str, Table]


def dump_tables(database: Path) -> Tables:
    """Every table of the warehouse, every row, in a stable order."""
    tables: Tables = {}
    with duckdb.connect(str(database), read_only=True) as conn:
        names = conn.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables() ORDER BY ALL"
        ).fetchall()
        for (name,) in names:
            cursor = conn.execute(f"SELECT * FROM {name} ORDER BY ALL")
            columns = tuple(d[0] for d in cursor.description)
            tables[name] = Table(columns, tuple(cursor.fetchall()))
    return tables


def copy_database(source: Path, target: Path) -> Path:
    with duckdb.connect(str(source)) as conn:
        conn.execute("CHECKPOINT")
    shutil.copyfile(source, target)
    return target


def load_stale_partition(database: Path, source: date, target: date) -> None:
    """Give ``target`` a stale load in every daily table (``source``'s rows relabelled, one
    row short), so a replaced partition and an untouched one can always be told apart."""
    with duckdb.connect(str(database)) as conn:
        for table in DAILY_TABLES:
            conn.execute(
                f"INSERT INTO {table} SELECT * REPLACE (DATE '{target}' AS day) "
                f"FROM {table} WHERE day = ?",
                [source],
            )
            conn.execute(
                f"DELETE FROM {table} WHERE rowid = (SELECT min(rowid) FROM {table} WHERE day = ?)",
                [target],
            )


@dataclass(frozen=True)
class Baseline:
    base: Path  # snapshots, PREVIOUS_DAY, and a stale load of DAY; never written to
    before: Tables  # the base warehouse's tables
    reference: Tables  # after a fault-free run of DAY on a copy of the base

    def copy(self, target: Path) -> Path:
        """A copy of the base warehouse to run a scenario on (the base was checkpointed:
        the file alone holds it, and other xdist workers may be reading it)."""
        shutil.copyfile(self.base, target)
        return target


def build_baseline(folder: Path, start_sandbox: StartSandbox) -> None:
    """``base.duckdb`` and ``reference.duckdb`` (see Baseline), both checkpointed."""
    base = folder / "base.duckdb"
    reference_file = folder / "reference.duckdb"
    with start_sandbox() as sandbox:
        resources = daily_resources(sandbox, base)
        snapshots = dg.materialize(
            ALL_ASSETS,
            selection=SNAPSHOT_KEYS,
            resources=resources,
            instance=dg.DagsterInstance.ephemeral(),
            run_config=QUIET,
            raise_on_error=False,
        )
        assert snapshots.success, "the snapshot assets failed without any fault"
        previous = run_daily(resources, PREVIOUS_DAY)
        assert previous.success, previous.failures
        load_stale_partition(base, PREVIOUS_DAY, DAY)
        copy_database(base, reference_file)
        reference_run = run_daily(daily_resources(sandbox, reference_file), DAY)
        assert reference_run.success, reference_run.failures
        assert reference_run.retries == 0 and reference_run.throttled == 0
    with duckdb.connect(str(reference_file)) as conn:
        conn.execute("CHECKPOINT")


@pytest.fixture(scope="module")
def baseline(start_sandbox: StartSandbox, build_once: Callable[..., Path]) -> Baseline:
    # Built once per test run: every xdist worker running scenarios reads the same files.
    folder = build_once("fault-suite-baseline", lambda f: build_baseline(f, start_sandbox))
    base, reference_file = folder / "base.duckdb", folder / "reference.duckdb"
    before, reference = dump_tables(base), dump_tables(reference_file)
    assert before.keys() == reference.keys()
    for table in DAILY_TABLES:
        stale, _ = before[table].split(DAY)
        fresh, _ = reference[table].split(DAY)
        assert fresh, f"{table}: the fault-free run wrote no rows for {DAY}"
        assert stale != fresh, f"{table}: the stale load cannot be told from a fresh one"
    return Baseline(base, before, reference)


def check_tables(baseline: Baseline, after: Tables, run: RunOutcome) -> None:
    """Each table: the partition identical to the fault-free run's (its asset materialized)
    or the whole table exactly as before the run (its asset failed or was skipped)."""
    assert after.keys() == baseline.before.keys(), "tables appeared or disappeared"
    for name, table in after.items():
        before = baseline.before[name]
        key = DAILY_TABLES.get(name)
        whole = WHOLE_TABLES.get(name)
        if whole is not None and whole in run.materialized:
            same = table == baseline.reference[name]
            assert same, f"{name}: differs from the fault-free run's"
        elif key is not None and key in run.materialized:
            got, rest = table.split(DAY)
            expected, _ = baseline.reference[name].split(DAY)
            _, rest_before = before.split(DAY)
            same = got == expected
            assert same, f"{name}: partition {DAY} differs from the fault-free run's"
            same = rest == rest_before
            assert same, f"{name}: rows outside partition {DAY} changed"
        else:
            same = table == before
            assert same, f"{name}: changed although its asset did not materialize"
    if run.success:
        assert run.materialized >= set(DAILY_KEYS)


def same_tables(a: Tables, b: Tables) -> bool:
    # A plain bool, so a failed assert reports its message instead of diffing every row.
    return a == b


# ----- the daily job under faults -------------------------------------------------------------


def describe_failure(run: RunOutcome) -> str:
    """E.g. "5 failed (pendo ×5), 2 not run (upstream failed), 4 identical"."""
    failed = Counter(step.split("__", 1)[0] for step in run.failures)
    steps = {"__".join(key.path): key for key in DAILY_KEYS}
    not_run = sum(
        1 for step, key in steps.items() if key not in run.materialized and step not in run.failures
    )
    identical = sum(1 for key in DAILY_KEYS if key in run.materialized)
    services = ", ".join(f"{service} ×{n}" for service, n in sorted(failed.items()))
    skipped = f", {not_run} not run (upstream failed)" if not_run else ""
    return (
        f"{len(run.failures)} failed ({services}){skipped}, {identical} identical; "
        "every other table untouched"
    )


@pytest.mark.parametrize("fault", DAILY_FAULTS, ids=lambda f: f.id)
def test_daily_job_under_fault(
    fault: Fault,
    baseline: Baseline,
    start_sandbox: StartSandbox,
    fault_table: FaultTable,
    tmp_path: Path,
) -> None:
    database = baseline.copy(tmp_path / "warehouse.duckdb")
    with start_sandbox() as sandbox:
        control(sandbox, "POST", "/faults", json=list(fault.rules))
        run = run_daily(daily_resources(sandbox, database, fault.pendo, fault.amplitude), DAY)
        seen = control(sandbox, "GET", "/counters")
        control(sandbox, "DELETE", "/faults")
        check_tables(baseline, dump_tables(database), run)
        if run.success:
            outcome, details = "identical", f"all {len(DAILY_KEYS)} daily assets identical"
        else:
            check_errors(run, fault, lambda step: step.split("__", 1)[0])
            outcome, details = "failed cleanly", describe_failure(run)
            # The re-run on a fresh Pendo rate: the faults' 429s taught the session's
            # ledger one (down to 0.1 request/s after a storm) that the tables do not need.
            fresh_rate = {"budget_ledger": str(tmp_path / "rerun-ledger.sqlite")}
            rerun = run_daily(daily_resources(sandbox, database, pendo=fresh_rate), DAY)
            assert rerun.success, rerun.failures
            assert same_tables(dump_tables(database), baseline.reference), "re-run differs"
            details += "; clean re-run identical"
    assert fault_table.injected(seen) > 0, "the fault never fired"
    fault_table.record(fault.label, DAILY_JOB, outcome, details, seen, run)
    check_expectation(fault, outcome, run)


def test_cohort_snapshot_under_a_cut_short_file(
    baseline: Baseline, start_sandbox: StartSandbox, fault_table: FaultTable, tmp_path: Path
) -> None:
    """The catalog job's cohort snapshot when a cohort file is cut short, its Content-Length
    matching (the transport cannot tell): downloaded again, the snapshot identical."""
    database = baseline.copy(tmp_path / "warehouse.duckdb")
    rules = [{"kind": "truncate", "count": 1, "path": COHORT_FILE_PATH}]
    with start_sandbox() as sandbox:
        control(sandbox, "POST", "/faults", json=rules)
        instance = dg.DagsterInstance.ephemeral()
        started = time.monotonic()
        result = dg.materialize(
            ALL_ASSETS,
            selection=[MEMBERSHIP_KEY],
            resources=daily_resources(sandbox, database),
            instance=instance,
            run_config=QUIET,
            raise_on_error=False,
        )
        run = outcome_of(result, instance, started)
        seen = control(sandbox, "GET", "/counters")
        control(sandbox, "DELETE", "/faults")
    assert fault_table.injected(seen) > 0, "the fault never fired"
    assert run.success, run.failures
    # The baseline took the same snapshot fault-free: replacing it changed nothing.
    assert same_tables(dump_tables(database), baseline.before)
    fault_table.record(
        "a cohort file cut short, its Content-Length matching",
        CATALOG_JOB,
        "identical",
        "cohort snapshot downloaded again, identical",
        seen,
        run,
    )


# ----- the write-back under faults -------------------------------------------------------------


def log_rows(database: Path, run_id: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(database), read_only=True) as conn:
        cursor = conn.execute(
            f"SELECT account_id, outcome, values_json FROM {LOG_TABLE} WHERE run_id = ?",
            [run_id],
        )
        return [
            dict(zip(("account_id", "outcome", "values_json"), r, strict=True))
            for r in cursor.fetchall()
        ]


def quarantined(database: Path, run_id: str) -> set[str]:
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.execute(
            f"SELECT DISTINCT account_id FROM {QUARANTINE_TABLE} "
            "WHERE run_id = ? AND account_id IS NOT NULL",
            [run_id],
        ).fetchall()
    return {r[0] for r in rows}


def stored_custom(sandbox: SandboxServer, accounts: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What the sandbox stored for each account's custom fields ({} when nothing)."""
    stored: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=sandbox.urls.control(), timeout=30) as control_api:
        for account in sorted(set(accounts)):
            response = control_api.get(f"/pendo/metadata/us/account/{account}")
            if response.status_code == 404:
                stored[account] = {}
                continue
            response.raise_for_status()
            stored[account] = response.json()["custom"]
    return stored


@dataclass(frozen=True)
class WritebackReference:
    logged: frozenset[str]  # accounts a fault-free run logs (updated or missing)
    accounts: frozenset[str]  # those and the accounts set aside by validation
    updated: int
    stored: dict[str, dict[str, Any]]  # what the sandbox then stores, per account


@pytest.fixture(scope="module")
def writeback_reference(
    start_sandbox: StartSandbox, tmp_path_factory: pytest.TempPathFactory
) -> WritebackReference:
    database = tmp_path_factory.mktemp("writeback") / "warehouse.duckdb"
    with start_sandbox() as sandbox:
        run = run_writeback(sandbox, database)
        assert run.success, run.failures
        log = log_rows(database, run.run_id)
        accounts = {r["account_id"] for r in log} | quarantined(database, run.run_id)
        stored = stored_custom(sandbox, accounts)
    outcomes = Counter(r["outcome"] for r in log)
    # The shipped sample: 96 valid rows of known accounts, one unknown account.
    assert outcomes == {"updated": 96, "missing": 1}
    assert sum(1 for values in stored.values() if values) == 96
    return WritebackReference(
        logged=frozenset(r["account_id"] for r in log),
        accounts=frozenset(accounts),
        updated=outcomes["updated"],
        stored=stored,
    )


def check_claims(sandbox: SandboxServer, log: Sequence[dict[str, Any]]) -> None:
    """No record is logged as updated unless the sandbox stores the values sent."""
    claimed = [row for row in log if row["outcome"] == "updated"]
    stored = stored_custom(sandbox, (row["account_id"] for row in claimed))
    for row in claimed:
        sent = json.loads(row["values_json"])
        held = {name: stored[row["account_id"]].get(name) for name in sent}
        assert held == sent, f"{row['account_id']} logged updated but the sandbox holds {held}"


@pytest.mark.parametrize("fault", WRITEBACK_FAULTS, ids=lambda f: f.id)
def test_writeback_under_fault(
    fault: Fault,
    writeback_reference: WritebackReference,
    start_sandbox: StartSandbox,
    fault_table: FaultTable,
    tmp_path: Path,
) -> None:
    reference = writeback_reference
    database = tmp_path / "warehouse.duckdb"
    with start_sandbox() as sandbox:
        control(sandbox, "POST", "/faults", json=list(fault.rules))
        run = run_writeback(sandbox, database, fault.pendo)
        seen = control(sandbox, "GET", "/counters")
        control(sandbox, "DELETE", "/faults")

        log = log_rows(database, run.run_id)
        check_claims(sandbox, log)
        outcomes = Counter(r["outcome"] for r in log)
        if log:  # the push ran: every record to send has its row, none is lost
            assert {r["account_id"] for r in log} == reference.logged
            pending = outcomes["updated"] + outcomes["unconfirmed"] + outcomes["not_sent"]
            assert pending == reference.updated and outcomes["missing"] == 1, outcomes
        if run.success:
            assert outcomes["updated"] == reference.updated
            assert stored_custom(sandbox, reference.accounts) == reference.stored
        else:
            check_errors(run, fault, lambda step: "pendo")

        rerun = run_writeback(sandbox, database)
        assert rerun.success, rerun.failures
        again = Counter(r["outcome"] for r in log_rows(database, rerun.run_id))
        assert not again.keys() & {"unconfirmed", "not_sent", "failed"}, again
        if run.success:
            assert again["updated"] == 0, "a run that succeeded left records to send"
        stored = stored_custom(sandbox, reference.accounts)
        assert stored == reference.stored
    if run.success:
        outcome, details = "identical", f"{outcomes['updated']} updated"
    else:
        outcome = "failed cleanly"
        details = (
            f"{outcomes['updated']} updated, {outcomes['unconfirmed']} unconfirmed, "
            f"{outcomes['not_sent']} not sent; clean re-run sent {again['updated']}, "
            "stored values identical"
        )
    assert fault_table.injected(seen) > 0, "the fault never fired"
    fault_table.record(fault.label, crm_account_metadata_push.name, outcome, details, seen, run)
    check_expectation(fault, outcome, run)
