"""The multi-host rehearsal (issue 16, item 5): shared by tests/test_multi_host.py and
bench/multi_host_bench.py.

Runs that share nothing on disk, as Kubernetes pods do, and share one Postgres: the Dagster
instance (``deploy/dagster.yaml``: runs, event logs, schedules, pool slots), the Amplitude
budget ledger with Pendo's rate (``AMPLITUDE_BUDGET_LEDGER=postgresql://...``) and the
warehouse (``ANALYTICS_ASSETS_WAREHOUSE=postgresql://...``).

How pods are mirrored: :class:`PodRunLauncher`, configured in the instance's
``dagster.yaml``, starts every run as ``dagster api execute_run`` (the command
``K8sRunLauncher`` puts in each run's pod) in a fresh directory of its own: its own
``DAGSTER_HOME`` holding a copy of the instance's ``dagster.yaml`` (the pod's mounted
ConfigMap), data directory, ``TMPDIR``, ``HOME`` and working directory, and an environment
made only of the variables the launcher passes on (``env_vars``, like the K8s launcher's
``env_vars``/``envSecrets``). A run can therefore reach another run only through Postgres
and the APIs. This is a closer mirror than two Dagster homes on one storage: on Kubernetes
it is each *run* that gets a new pod, while the daemon and webserver are long-lived, and
here too the daemon dequeues and launches while each run starts from an empty disk. What
it does not mirror: the pods share one kernel, two cores and loopback (no network
partitions, no per-pod CPU or memory limits).

The rehearsal is driven like a user would: ``dagster job launch -j catalog_refresh`` then
``dagster job backfill -j daily_sync --from .. --to .. --noprompt`` from a third directory
(the operator's laptop), with ``dagster-daemon run`` dequeuing. ``dagster job backfill``
submits one queued run per partition (Dagster 1.13 has no ``dagster asset backfill``
command; the UI's "Launch backfill" posts GraphQL ``launchPartitionBackfill`` instead, which
the daemon's backfill loop turns into the same queued runs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from dagster import DagsterRun, DagsterRunStatus, Field, RunsFilter, StringSource
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DEPLOY_YAML = ROOT / "deploy" / "dagster.yaml"
WORKSPACE = ROOT / "workspace.yaml"
BIN = Path(sys.executable).parent
TIMEZONE = "America/New_York"
POOLS = ("pendo_api", "amplitude_api")
POD_TAG = "multi_host/pod"
# The variables every process of the deployment gets (the Helm chart's env secrets and
# config maps); PodRunLauncher passes exactly these on to each run.
DEPLOYMENT_VARS = (
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_DB",
    "ANALYTICS_ASSETS_WAREHOUSE",
    "AMPLITUDE_BUDGET_LEDGER",
    "ANALYTICS_ASSETS_START_DATE",
    "PENDO_BASE_URL",
    "PENDO_INTEGRATION_KEY",
    "PENDO_WRITE_INTEGRATION_KEY",
    "PENDO_TIMEZONE",
    "PENDO_RATE_PER_SECOND",
    "AMPLITUDE_BASE_URL",
    "AMPLITUDE_INGESTION_URL",
    "AMPLITUDE_PROFILE_URL",
    "AMPLITUDE_API_KEY",
    "AMPLITUDE_SECRET_KEY",
)
# What a container image brings besides the deployment's variables.
_IMAGE_VARS = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")
# Prefixes of variables the rehearsal sets itself: inherited values must not leak in.
_OWN_PREFIXES = ("DAGSTER_", "ANALYTICS_", "PENDO_", "AMPLITUDE_")


# -- the launcher -------------------------------------------------------------------------


class PodRunLauncher(RunLauncher, ConfigurableClass):
    """Starts each run as ``dagster api execute_run`` in a fresh directory of its own
    (see the module's docstring). Configured in ``dagster.yaml``::

        run_launcher:
          module: multi_host_support
          class: PodRunLauncher
          config:
            pods_dir: /tmp/pods
            env_vars: [DAGSTER_PG_HOST, ...]
    """

    def __init__(
        self,
        pods_dir: str,
        env_vars: Sequence[str] = (),
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self._inst_data = inst_data
        self.pods_dir = Path(pods_dir)
        self.env_vars = list(env_vars)
        self._workers: dict[str, subprocess.Popen[bytes]] = {}
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "pods_dir": Field(StringSource, description="Where each run's directory is made."),
            "env_vars": Field([str], is_required=False, default_value=[]),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> PodRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    def pod_environment(self, pod: Path) -> dict[str, str]:
        env = {k: os.environ[k] for k in (*_IMAGE_VARS, *self.env_vars) if k in os.environ}
        env.update(
            DAGSTER_HOME=str(pod / "dagster_home"),
            ANALYTICS_ASSETS_DATA_DIR=str(pod / "data"),
            TMPDIR=str(pod / "tmp"),
            HOME=str(pod),
            PYTHONUNBUFFERED="1",
        )
        return env

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        origin = context.job_code_origin
        if origin is None:
            raise RuntimeError(f"run {run.run_id} has no code origin to execute")
        pod = self.pods_dir / run.run_id
        for name in ("dagster_home", "data", "tmp"):
            (pod / name).mkdir(parents=True)
        # The pod's instance config, as K8s mounts the instance ConfigMap.
        shutil.copy(Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml", pod / "dagster_home")
        # No instance_ref: the run loads the instance from its own DAGSTER_HOME, as a pod does.
        args = ExecuteRunArgs(
            job_origin=origin, run_id=run.run_id, instance_ref=None, set_exit_code_on_failure=True
        ).get_command_args()
        self._instance.add_run_tags(run.run_id, {POD_TAG: str(pod)})
        with (pod / "run_worker.log").open("wb") as log:
            worker = subprocess.Popen(
                list(args),
                cwd=pod,
                env=self.pod_environment(pod),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # terminate() stops the run and its step processes
            )
        self._workers[run.run_id] = worker
        self._instance.report_engine_event(
            f"Started the run worker (pid {worker.pid}) in its own directory {pod}",
            run,
            cls=self.__class__,
        )

    def _worker(self, run_id: str) -> subprocess.Popen[bytes] | None:
        return self._workers.get(run_id)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        worker = self._worker(run_id)
        if run is None or run.is_finished or worker is None or worker.poll() is not None:
            return False
        self._instance.report_run_canceling(run)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        worker = self._worker(run.run_id)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "not launched by this process")
        code = worker.poll()  # also reaps the finished worker
        if code is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        if code == 0:
            return CheckRunHealthResult(WorkerStatus.SUCCESS)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker exited with {code}")


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen[Any], timeout: float = 60) -> None:
    """Stop a process we started in its own session, and everything it started."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Sandbox:
    """The API emulator, in its own process (a remote service to the runs)."""

    proc: subprocess.Popen[bytes]
    base: str
    info: dict[str, Any]

    def get(self, path: str) -> Any:
        import httpx

        return httpx.get(f"{self.base}/_sandbox/{path}", timeout=30).json()

    def environment(self) -> dict[str, str]:
        # The sandbox's default keys (analytics_assets.sandbox.config).
        return {
            "PENDO_BASE_URL": self.base,
            "PENDO_INTEGRATION_KEY": "sandbox-pendo-us-read-key",
            "PENDO_WRITE_INTEGRATION_KEY": "sandbox-pendo-us-write-key",
            "PENDO_TIMEZONE": TIMEZONE,
            "AMPLITUDE_BASE_URL": self.base,
            "AMPLITUDE_INGESTION_URL": self.base,
            "AMPLITUDE_PROFILE_URL": self.base,
            "AMPLITUDE_API_KEY": "sandbox-amplitude-us-api-key",
            "AMPLITUDE_SECRET_KEY": "sandbox-amplitude-us-secret-key",
        }


@contextlib.contextmanager
def sandbox_process(
    log: Path, *, now: datetime, seed: int = 42, scale: float = 1, pendo_rate: float = 10
) -> Iterator[Sandbox]:
    """``analytics-assets sandbox`` on a free port, its clock frozen at ``now`` so both the
    rehearsal and the single-host reference read the same, complete days."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "analytics_assets.cli", "sandbox", "--port", str(port),
           "--seed", str(seed), "--scale", f"{scale:g}", "--timezone", TIMEZONE,
           "--pendo-rate", f"{pendo_rate:g}"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the sandbox exited ({proc.returncode}); see {log}")
            try:
                info = httpx.get(f"{base}/_sandbox/info", timeout=5).json()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not answer within 120 s") from None
                time.sleep(0.3)
        httpx.post(
            f"{base}/_sandbox/clock", json={"now": now.isoformat()}, timeout=10
        ).raise_for_status()
        yield Sandbox(proc, base, info)
    finally:
        stop(proc, timeout=30)


def partition_days(now: datetime, days: int) -> list[str]:
    """The last ``days`` complete local days before ``now``."""
    from zoneinfo import ZoneInfo

    today = now.astimezone(ZoneInfo(TIMEZONE)).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(days, 0, -1)]


def clean_environ() -> dict[str, str]:
    """This process's environment without anything the rehearsal sets itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the shared Postgres --------------------------------------------------------------------


@dataclass(frozen=True)
class SharedPostgres:
    """Three databases on one server: Dagster's instance, the ledger, the warehouse."""

    instance_url: str
    ledger_url: str
    warehouse_url: str

    def instance_environment(self) -> dict[str, str]:
        """deploy/dagster.yaml's variables for the instance database."""
        parts = urlsplit(self.instance_url)
        return {
            "DAGSTER_PG_USERNAME": parts.username or "postgres",
            # Trust authentication never asks; the variable must still exist.
            "DAGSTER_PG_PASSWORD": parts.password or "unused",
            "DAGSTER_PG_HOST": parts.hostname or "127.0.0.1",
            "DAGSTER_PG_PORT": str(parts.port or 5432),
            "DAGSTER_PG_DB": parts.path.lstrip("/"),
        }

    def deployment_environment(self) -> dict[str, str]:
        return {
            **self.instance_environment(),
            "ANALYTICS_ASSETS_WAREHOUSE": self.warehouse_url,
            "AMPLITUDE_BUDGET_LEDGER": self.ledger_url,
        }


def instance_yaml(pods_dir: Path) -> str:
    """deploy/dagster.yaml plus the run launcher that gives each run its own directory."""
    config = yaml.safe_load(DEPLOY_YAML.read_text())
    config["run_launcher"] = {
        "module": "multi_host_support",
        "class": "PodRunLauncher",
        "config": {"pods_dir": str(pods_dir), "env_vars": list(DEPLOYMENT_VARS)},
    }
    return yaml.safe_dump(config, sort_keys=False)


# -- the rehearsal --------------------------------------------------------------------------


@dataclass
class Watch:
    """Peaks sampled while runs are in progress (a floor: a sample can miss a peak; the
    intervals recorded in the event log give the exact figures)."""

    peak_slots: dict[str, int] = field(default_factory=lambda: dict.fromkeys(POOLS, 0))
    peak_started_runs: int = 0
    samples: int = 0


@dataclass
class Rehearsal:
    """What a multi-host backfill did: runs, pools, requests, pods."""

    days: list[str]
    backfill_id: str
    run_ids: list[str]
    statuses: dict[str, str]
    catalog_status: str
    wall_s: float
    catalog_wall_s: float
    watch: Watch
    max_overlapping_runs: int
    max_overlapping_steps: dict[str, int]
    pool_limits: dict[str, int | None]
    requests: dict[str, int]
    statuses_seen: dict[str, int]
    refusals: dict[str, int]
    client_figures: dict[str, float]
    pods: dict[str, str]
    pod_files: dict[str, list[str]]
    ledger_records: list[tuple[str, str]]
    failures: list[str]

    def figures(self) -> dict[str, Any]:
        return {
            "days": [self.days[0], self.days[-1], len(self.days)],
            "wall_s": round(self.wall_s, 1),
            "catalog_refresh_s": round(self.catalog_wall_s, 1),
            "runs": len(self.run_ids),
            "by_status": _count(self.statuses.values()),
            "max_concurrent_runs": self.max_overlapping_runs,
            "peak_started_runs_sampled": self.watch.peak_started_runs,
            "max_concurrent_steps_per_pool": self.max_overlapping_steps,
            "peak_slots_sampled": self.watch.peak_slots,
            "pool_limits": self.pool_limits,
            "requests": self.requests,
            "answers_by_status": self.statuses_seen,
            "limiter_refusals": self.refusals,
            "client_figures": self.client_figures,
        }


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


def _finished(status: DagsterRunStatus) -> bool:
    return status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def max_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an end before a start at the same time)."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = current = 0
    for _, delta in edges:
        current += delta
        peak = max(peak, current)
    return peak


def _api_of(path: str) -> str:
    # Pendo's REST API lives under /api/v1 (and regions' prefixes); the rest is Amplitude.
    return "pendo" if "/api/v1/" in path else "amplitude"


def request_counts(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict, dict]:
    """Requests per API and answers per status between two ``/_sandbox/counters``."""

    def index(snapshot: dict[str, Any]) -> dict[tuple[str, str, str], int]:
        return {
            (r["method"], r["path"], str(r["status"])): r["count"] for r in snapshot["requests"]
        }

    old, new = index(before), index(after)
    per_api: dict[str, int] = {}
    per_status: dict[str, int] = {}
    for key, count in new.items():
        delta = count - old.get(key, 0)
        if delta and not key[1].startswith("/_sandbox"):
            per_api[_api_of(key[1])] = per_api.get(_api_of(key[1]), 0) + delta
            per_status[key[2]] = per_status.get(key[2], 0) + delta
    return per_api, per_status


def limiter_refusals(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Every sandbox limiter's refusals between two ``/_sandbox/limits``."""

    def flat(limits: dict[str, Any]) -> dict[str, int]:
        out = {"pendo_rate": limits["pendo"]["rate_limit"]["refused"]}
        for region, half in limits["amplitude"].items():
            for k, v in half.items():
                if "refused" in k or "throttled" in k:
                    out[f"amplitude_{region}_{k}"] = v
        return out

    old, new = flat(before), flat(after)
    return {k: new[k] - old.get(k, 0) for k in new}


def client_figures(instance: Any, run_ids: Sequence[str]) -> dict[str, float]:
    """What the steps report spending (materialization metadata), summed over the runs."""
    totals: dict[str, float] = {}
    for run_id in run_ids:
        for event in instance.all_logs(run_id):
            de = event.dagster_event
            if de is None or not de.is_step_materialization:
                continue
            for name, value in de.step_materialization_data.materialization.metadata.items():
                if name.endswith(("_requests", "_retries", "_throttled_429")):
                    totals[name] = totals.get(name, 0) + value.value
    return dict(sorted(totals.items()))


def step_intervals(instance: Any, run_ids: Sequence[str]) -> dict[str, list[tuple[float, float]]]:
    """Per pool, when each of its steps ran (start to end, from the event log)."""
    out: dict[str, list[tuple[float, float]]] = {pool: [] for pool in POOLS}
    for run in instance.get_runs(filters=RunsFilter(run_ids=list(run_ids))):
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        pools = {s.key: s.pool for s in plan.steps}
        for stats in instance.get_run_step_stats(run.run_id):
            pool = pools.get(stats.step_key)
            if pool in out and stats.start_time and stats.end_time:
                out[pool].append((stats.start_time, stats.end_time))
    return out


def ledger_records(ledger_url: str) -> list[tuple[str, str]]:
    """(scope, name) of the shared records in the Postgres ledger (Pendo's rate)."""
    import psycopg

    with psycopg.connect(ledger_url) as conn:
        try:
            rows = conn.execute("SELECT scope, name FROM rate_budget_record").fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return sorted((str(a), str(b)) for a, b in rows)


class Cli:
    """The ``dagster`` command line, run from a directory of its own (the operator's
    machine) against the shared instance."""

    def __init__(self, workdir: Path, env: dict[str, str], log: Path, config: Path) -> None:
        self.home = workdir / "dagster_home"
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(config, self.home / "dagster.yaml")
        self.cwd = workdir
        self.env = {**env, "DAGSTER_HOME": str(self.home)}
        self.log = log

    def __call__(self, *args: str) -> str:
        cmd = [str(BIN / "dagster"), *args]
        done = subprocess.run(cmd, cwd=self.cwd, env=self.env, capture_output=True, text=True)
        with self.log.open("a") as fh:
            fh.write(f"\n$ dagster {' '.join(args)}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            tail = done.stderr[-2000:]
            raise RuntimeError(f"dagster {args[:2]} failed ({done.returncode}): {tail}")
        return done.stdout


def _wait(
    instance: Any, run_ids: Sequence[str], watch: Watch, deadline: float, poll: float = 0.5
) -> list[DagsterRun]:
    while True:
        for pool in POOLS:
            info = instance.event_log_storage.get_concurrency_info(pool)
            watch.peak_slots[pool] = max(watch.peak_slots[pool], info.active_slot_count)
        runs = instance.get_runs(filters=RunsFilter(run_ids=list(run_ids)))
        started = sum(1 for r in runs if r.status == DagsterRunStatus.STARTED)
        watch.peak_started_runs = max(watch.peak_started_runs, started)
        watch.samples += 1
        if len(runs) == len(run_ids) and all(_finished(r.status) for r in runs):
            return runs
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs still in progress: {_count(r.status.value for r in runs)}")
        time.sleep(poll)


def _failures(instance: Any, runs: Sequence[DagsterRun]) -> list[str]:
    out = []
    for run in runs:
        if run.status == DagsterRunStatus.SUCCESS:
            continue
        for event in instance.all_logs(run.run_id):
            de = event.dagster_event
            if de is not None and (de.is_step_failure or de.is_job_failure):
                out.append(f"{run.run_id[:8]} {event.step_key or ''}: {event.message[:400]}")
        pod = run.tags.get(POD_TAG)
        if pod and Path(pod, "run_worker.log").exists():
            out.append(Path(pod, "run_worker.log").read_text(errors="replace")[-1500:])
    return out


def rehearse(
    workdir: Path,
    sandbox: Sandbox,
    postgres: SharedPostgres,
    days: Sequence[str],
    *,
    pendo_rate: float = 10,
    timeout: float = 1800,
    say: Any = print,
) -> Rehearsal:
    """catalog_refresh, then one backfill of daily_sync over ``days``, through the daemon and
    the run queue, each run in a directory of its own; returns what happened."""
    from dagster import DagsterInstance

    daemon_dir, pods = workdir / "daemon", workdir / "pods"
    (daemon_dir / "dagster_home").mkdir(parents=True)
    (daemon_dir / "data").mkdir()
    pods.mkdir()
    (daemon_dir / "dagster_home" / "dagster.yaml").write_text(instance_yaml(pods))
    deployment = {
        **sandbox.environment(),
        **postgres.deployment_environment(),
        "ANALYTICS_ASSETS_START_DATE": days[0],
        # The key's whole rate: the steps of every run share it through the ledger.
        "PENDO_RATE_PER_SECOND": f"{pendo_rate:g}",
    }
    # The launcher's module must import in the daemon (a caller's PYTHONPATH goes first).
    pythonpath = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(TESTS)) if p)
    base = {**clean_environ(), **deployment, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
    # The image's tools on PATH: run commands may start with a bare `dagster`.
    base["PATH"] = os.pathsep.join(p for p in (str(BIN), os.environ.get("PATH")) if p)
    config = daemon_dir / "dagster_home" / "dagster.yaml"
    cli = Cli(workdir / "operator", base, workdir / "cli.log", config)
    # Creates the instance's tables before the daemon and the CLI race to.
    cli("instance", "info")
    with environ(postgres.instance_environment()):
        instance = DagsterInstance.from_config(str(daemon_dir / "dagster_home"))
    daemon_env = {
        **base,
        "DAGSTER_HOME": str(daemon_dir / "dagster_home"),
        "ANALYTICS_ASSETS_DATA_DIR": str(daemon_dir / "data"),
    }
    with (workdir / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)],
            cwd=daemon_dir,
            env=daemon_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        t0 = time.monotonic()
        cli("job", "launch", "-j", "catalog_refresh", "-w", str(WORKSPACE))
        catalog_ids = [r.run_id for r in instance.get_runs(RunsFilter(job_name="catalog_refresh"))]
        catalog = _wait(instance, catalog_ids, Watch(), deadline)
        catalog_wall = time.monotonic() - t0
        say(f"catalog_refresh {catalog[0].status.value} in {catalog_wall:.0f} s")
        if catalog[0].status != DagsterRunStatus.SUCCESS:
            why = "\n".join(_failures(instance, catalog))
            raise RuntimeError(f"catalog_refresh failed:\n{why}")

        counters_before, limits_before = sandbox.get("counters"), sandbox.get("limits")
        t0 = time.monotonic()
        cli("job", "backfill", "-j", "daily_sync", "--from", days[0], "--to", days[-1],
            "--noprompt", "-w", str(WORKSPACE))  # fmt: skip
        backfill_id = instance.get_backfills()[0].backfill_id
        run_ids = [
            r.run_id for r in instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill_id}))
        ]
        say(f"backfill {backfill_id}: {len(run_ids)} runs queued")
        watch = Watch()
        runs = _wait(instance, run_ids, watch, deadline)
        wall = time.monotonic() - t0
        counters_after, limits_after = sandbox.get("counters"), sandbox.get("limits")
    finally:
        stop(daemon)

    records = instance.get_run_records(filters=RunsFilter(run_ids=run_ids))
    run_spans = [(r.start_time, r.end_time) for r in records if r.start_time and r.end_time]
    intervals = step_intervals(instance, run_ids)
    requests, statuses_seen = request_counts(counters_before, counters_after)
    pod_of = {r.run_id: r.tags.get(POD_TAG, "") for r in runs}
    pod_files = {
        run_id: sorted(str(p.relative_to(pod)) for p in Path(pod).rglob("*") if p.is_file())
        for run_id, pod in pod_of.items()
        if pod
    }
    result = Rehearsal(
        days=list(days),
        backfill_id=backfill_id,
        run_ids=run_ids,
        statuses={r.run_id: r.status.value for r in runs},
        catalog_status=catalog[0].status.value,
        wall_s=wall,
        catalog_wall_s=catalog_wall,
        watch=watch,
        max_overlapping_runs=max_overlap(run_spans),
        max_overlapping_steps={pool: max_overlap(iv) for pool, iv in intervals.items()},
        pool_limits={
            pool: instance.event_log_storage.get_concurrency_info(pool).limit for pool in POOLS
        },
        requests=requests,
        statuses_seen=statuses_seen,
        refusals=limiter_refusals(limits_before, limits_after),
        client_figures=client_figures(instance, run_ids),
        pods=pod_of,
        pod_files=pod_files,
        ledger_records=ledger_records(postgres.ledger_url),
        failures=_failures(instance, runs),
    )
    instance.dispose()
    return result


# -- the single-host reference ------------------------------------------------------------


def single_host_reference(
    workdir: Path, sandbox: Sandbox, days: Sequence[str], *, pendo_rate: float = 10
) -> Path:
    """The same days on one host, the default way: a DuckDB warehouse and a SQLite ledger in
    one data directory; catalog_refresh, then daily_sync for each day, in one process.
    Returns the DuckDB file."""
    data = workdir / "data"
    data.mkdir(parents=True)
    env = {
        **clean_environ(),
        **sandbox.environment(),
        "ANALYTICS_ASSETS_DATA_DIR": str(data),
        "ANALYTICS_ASSETS_START_DATE": days[0],
        "PENDO_RATE_PER_SECOND": f"{pendo_rate:g}",
        "DAGSTER_HOME": str(workdir),
    }
    with (workdir / "reference.log").open("wb") as log:
        done = subprocess.run(
            [sys.executable, __file__, "reference", *days],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if done.returncode != 0:
        tail = (workdir / "reference.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the single-host reference failed:\n{tail}")
    return data / "warehouse.duckdb"


def _reference_main(days: Sequence[str]) -> None:
    from dagster import DagsterInstance

    from analytics_assets.definitions import defs

    with DagsterInstance.ephemeral() as instance:
        jobs = [("catalog_refresh", None)] + [("daily_sync", day) for day in days]
        for name, day in jobs:
            result = defs.get_job_def(name).execute_in_process(
                instance=instance, partition_key=day, raise_on_error=False
            )
            print(f"{name} {day or ''}: {'ok' if result.success else 'FAILED'}", flush=True)
            if not result.success:
                raise SystemExit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["reference"]:
        _reference_main(sys.argv[2:])
