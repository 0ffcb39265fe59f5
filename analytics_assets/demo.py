"""``analytics-assets demo`` and ``dev``: the project run end to end against the sandbox.

**The demo runs what a deployment runs**, through the Dagster instance it leaves in
``<data dir>/dagster_home``: ``catalog_refresh``, ``daily_sync`` once per day and the
write-back job ``crm_account_metadata_push``, each created from the code location (loaded
by a code server, as the webserver and the daemon load it) with the job's tags, and
submitted to the instance's run queue. Standing in for the daemon's queue, the demo then
launches each run through the instance's run launcher and waits for it. So the UI lists
every run under its job, can re-execute it, and shows its logs.

The sensors tick through the daemon's own sensor iteration (``execute_sensor_iteration``),
twice: before and after the demo stages changes in the sandbox. Their ticks, cursors, logs
(the alerts) and any run they request are therefore recorded exactly as the daemon records
them; the demo starts the sensors for those two ticks and stops them again (sensors start
stopped in this project), and launches the runs they requested like any other queued run.

**The world.** ``<data dir>/demo.json`` records the sandbox world the demo ran against
(seed, scale, time zones, frozen clock if any), the days it loaded, and every write that
reached the sandbox and changed it (the staged changes and the write-back's writes: the
sandbox keeps them in memory only), with the sandbox's clock when each was answered.
``analytics-assets dev`` serves that same world again and replays the writes, each under
the clock it was first answered at, so the UI never contradicts what the demo printed.
No key is written there: the replay authenticates with the keys of the sandbox it starts.

Dagster's private APIs used here (the daemon's sensor iteration, the workspace context,
run creation as ``dagster job launch`` does it) are pinned by ``dagster==1.13.*``; the
browser test and the secrets test run the whole demo, so a change in them fails CI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo

import dagster as dg

from analytics_assets.crm_writeback import JOB_NAME as WRITEBACK_JOB
from analytics_assets.crm_writeback import SAMPLE_CRM_PATH
from analytics_assets.jobs import CATALOG_JOB, DAILY_JOB
from analytics_assets.sandbox.config import SandboxConfig
from analytics_assets.sandbox.server import SandboxServer, SandboxUrls

if TYPE_CHECKING:
    from dagster._core.remote_representation.external import (
        RemoteJob,
        RemoteRepository,
        RemoteSensor,
    )
    from dagster._core.scheduler.instigation import InstigatorTick
    from dagster._core.workspace.context import WorkspaceProcessContext

    from analytics_assets.warehouse.base import WarehouseResource

LOCATION = "analytics_assets"
WORLD_FILE = "demo.json"
TRIGGER_TAG = "analytics_assets/trigger"
PARTITION_TAG = "dagster/partition"  # Dagster's own tag for a run's partition
WEBHOOK_ENV = "ANALYTICS_ALERTS_WEBHOOK_URL"
# The asset jobs' steps run in the run's own process: a step process per asset (the
# multiprocess executor) made a day's run take 43 s instead of 9 s on a 2-core machine,
# most of it loading the code location again per step. The write-back job's config
# mapping has no executor field; it keeps the job's own executor.
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}
RUN_TIMEOUT_SECONDS = 3600
SHOWN_ALERTS = 12

# ------------------------------------------------------------------------------- paths


def data_dir() -> Path:
    """Where the demo keeps the warehouse and its Dagster home (``ANALYTICS_ASSETS_DATA_DIR``,
    default ``./data``); ``defs/`` reads the same variable for the warehouse's path."""
    return Path(os.environ.get("ANALYTICS_ASSETS_DATA_DIR") or "data").resolve()


def dagster_home() -> Path:
    """The Dagster home the demo leaves behind for ``dagster dev``."""
    return data_dir() / "dagster_home"


def world_file() -> Path:
    return data_dir() / WORLD_FILE


def warehouse_location() -> str:
    """The warehouse as ``defs/warehouse/defs.yaml`` resolves it: ``ANALYTICS_ASSETS_WAREHOUSE``
    (a DuckDB file or a server URL, which may hold a password: never print it), else the
    DuckDB file in the data directory."""
    from analytics_assets.warehouse.component import Warehouse

    default = str(data_dir() / "warehouse.duckdb")
    return Warehouse(url_env_var="ANALYTICS_ASSETS_WAREHOUSE", url=default).location()


def demo_warehouse(location: str | None = None) -> WarehouseResource:
    """The warehouse resource the code location binds, for the demo's own reads."""
    from analytics_assets.warehouse.base import warehouse_from_url

    return warehouse_from_url(location or warehouse_location())


DEMO_MARK = "# Written by `analytics-assets demo`"
DAGSTER_YAML = f"""\
{DEMO_MARK}: local storage, and the concurrency pools that
# keep every run of this instance inside the APIs' limits.
concurrency:
  pools:
    default_limit: 2
  runs:
    max_concurrent_runs: 4
telemetry:
  enabled: false
"""
# One workspace for the demo and `dev`: runs record their code location's name, and the UI
# re-executes a run only through a loaded location of that name.
WORKSPACE_YAML = f"""\
{DEMO_MARK} and `dev`: the code location their runs come from.
load_from:
  - python_module:
      module_name: analytics_assets.definitions
      location_name: {LOCATION}
"""


def sandbox_environment(config: SandboxConfig, urls: SandboxUrls) -> dict[str, str]:
    """Environment variables that point the project's resources at the sandbox."""
    pendo = config.pendo_keys["us"]
    amplitude = config.amplitude_keys["us"]
    return {
        "PENDO_BASE_URL": urls.pendo("us"),
        "PENDO_INTEGRATION_KEY": pendo.read,
        "PENDO_WRITE_INTEGRATION_KEY": pendo.write,
        "PENDO_TIMEZONE": config.pendo_timezone,
        "AMPLITUDE_BASE_URL": urls.amplitude("us"),
        "AMPLITUDE_INGESTION_URL": urls.amplitude("us"),
        "AMPLITUDE_PROFILE_URL": urls.amplitude("us"),
        "AMPLITUDE_API_KEY": amplitude.api_key,
        "AMPLITUDE_SECRET_KEY": amplitude.secret_key,
        "ANALYTICS_ASSETS_CRM_EXPORT": str(SAMPLE_CRM_PATH),
    }


def prepare_dagster_home() -> Path:
    """The Dagster home with the demo's ``dagster.yaml`` and workspace (kept if present)."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    for name, text in (("dagster.yaml", DAGSTER_YAML), ("workspace.yaml", WORKSPACE_YAML)):
        path = home / name
        if not path.exists():
            path.write_text(text)
    return home


def _clear_previous_demo() -> None:
    """Start afresh: an earlier demo's runs, cursors and warehouse belong to a sandbox world
    that ended with it (the sandbox keeps its state in memory), and would contradict this
    one. Only what a demo wrote is removed: its home is recognised by its dagster.yaml."""
    home = dagster_home()
    config = home / "dagster.yaml"
    if not (world_file().exists() or (config.exists() and DEMO_MARK in config.read_text())):
        return
    shutil.rmtree(home, ignore_errors=True)
    root = data_dir()
    ledger = "amplitude-budgets.sqlite"
    names = ("warehouse.duckdb", "warehouse.duckdb.wal", ledger, f"{ledger}-wal", f"{ledger}-shm")
    for name in (*names, WORLD_FILE):
        with contextlib.suppress(FileNotFoundError):
            (root / name).unlink()
    shutil.rmtree(root / "logs", ignore_errors=True)


def recent_partition_keys(days: int, timezone: str, now: datetime | None = None) -> list[str]:
    """The last ``days`` complete local days, oldest first."""
    today = (now or datetime.now(ZoneInfo(timezone))).astimezone(ZoneInfo(timezone)).date()
    return [(today - timedelta(days=n)).isoformat() for n in range(days, 0, -1)]


# ------------------------------------------------------------------------------- world


@dataclass
class StagedWrite:
    """One request that changed the sandbox's world, as it was answered (never a header)."""

    at_ms: int  # the sandbox's clock when the request arrived
    method: str
    path: str
    query: str
    body: str
    content_type: str
    auth: str | None  # "pendo_write:<region>", "amplitude:<region>" or None (control API)


@dataclass
class DemoWorld:
    """What ``dev`` needs to serve the demo's world again: settings, days, staged writes."""

    seed: int
    scale: float
    pendo_timezone: str
    amplitude_timezone: str
    now: str | None = None  # the sandbox's frozen clock (ISO-8601), None: the wall clock
    amplitude_events_per_pendo_event: float = 0.6
    start_date: str | None = None  # the first daily partition (the demo's first day)
    days: list[str] = field(default_factory=list)
    staged: list[StagedWrite] = field(default_factory=list)
    runs: list[dict[str, str]] = field(default_factory=list)
    # The sandbox's port: the code location's resources hold its URL, so `dev` serving the
    # world on the same port loads the very job snapshots the demo's runs were made from.
    port: int | None = None

    SETTINGS = ("seed", "scale", "pendo_timezone", "amplitude_timezone", "now",
                "amplitude_events_per_pendo_event")  # fmt: skip

    @classmethod
    def from_config(cls, config: SandboxConfig) -> DemoWorld:
        now = config.now
        if now is not None and now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return cls(
            seed=config.seed,
            scale=config.scale,
            pendo_timezone=config.pendo_timezone,
            amplitude_timezone=config.amplitude_timezone,
            now=now.isoformat() if now is not None else None,
            amplitude_events_per_pendo_event=config.amplitude_events_per_pendo_event,
        )

    def apply(self, config: SandboxConfig, keep: Sequence[str] = ()) -> None:
        """Set the config's world to this one, except the settings named in ``keep``."""
        for name in self.SETTINGS:
            if name in keep:
                continue
            value = getattr(self, name)
            if name == "now":
                value = datetime.fromisoformat(value) if value else None
            setattr(config, name, value)

    def differences(self, config: SandboxConfig) -> list[str]:
        """The settings in which ``config`` serves another world, as ``name demo → now``."""
        other = DemoWorld.from_config(config)
        return [
            f"{name} {getattr(self, name)!r} → {getattr(other, name)!r}"
            for name in self.SETTINGS
            if getattr(self, name) != getattr(other, name)
        ]

    def describe(self) -> str:
        clock = f"clock frozen at {self.now}" if self.now else "live clock"
        zones = (
            f"days in {self.pendo_timezone} for Pendo and Amplitude"
            if self.pendo_timezone == self.amplitude_timezone
            else f"Pendo days in {self.pendo_timezone}, Amplitude's in {self.amplitude_timezone}"
        )
        return f"seed {self.seed}, scale {self.scale:g}, {zones}, {clock}"

    def save(self, path: Path) -> None:
        data = asdict(self)
        data["version"] = 1
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> DemoWorld | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        data.pop("version", None)
        staged = [StagedWrite(**item) for item in data.pop("staged", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known}, staged=staged)


def load_world() -> DemoWorld | None:
    """The world the last demo in this data directory ran against, if any."""
    return DemoWorld.load(world_file())


# The writes that change the sandbox's world, by method and path (a region prefix allowed).
# Reads (Pendo's aggregations are POSTs too) and test-only controls (faults, counters,
# the clock) are not world state.
_PENDO_REGION = r"(?:/(?P<region>us1|eu|jpn|au))?"
_WORLD_WRITES: tuple[tuple[frozenset[str], re.Pattern[str], str | None], ...] = (
    (frozenset({"POST"}), re.compile(r"^/_sandbox/stage$"), None),
    (frozenset({"POST"}), re.compile(r"^/_sandbox/pendo/accounts$"), None),
    (
        frozenset({"POST", "PUT"}),
        re.compile(_PENDO_REGION + r"/api/v1/metadata/(?:account|visitor)/[^/]+/value(?:/.*)?$"),
        "pendo_write",
    ),
    (
        frozenset({"POST"}),
        re.compile(r"^(?:/(?P<region>eu))?/api/3/cohorts/membership$"),
        "amplitude",
    ),
    # The write-back's Identify and Group Identify calls: the key is a field of their form
    # body, so the journal keeps the body without it and a replay puts it back.
    (
        frozenset({"POST"}),
        re.compile(r"^(?:/(?P<region>eu))?/(?:identify|groupidentify)$"),
        "amplitude_form",
    ),
)


def _world_write(method: str, path: str) -> tuple[bool, str | None]:
    """(whether the request changes the world, the credentials a replay needs)."""
    for methods, pattern, auth in _WORLD_WRITES:
        match = pattern.match(path)
        if method in methods and match:
            if auth is None:
                return True, None
            return True, f"{auth}:{match.groupdict().get('region') or 'us'}"
    return False, None


class WriteJournal:
    """ASGI wrapper around the sandbox that keeps every world write it answered with 2xx.

    Only the method, path, query, body and content type are kept, never a header, and a
    request whose body or query holds one of ``secrets`` is not kept at all."""

    def __init__(self, app: Any, clock: Callable[[], int], secrets: Sequence[str]) -> None:
        self.app = app
        self.clock = clock
        self.secrets = [s for s in secrets if s]
        self.writes: list[StagedWrite] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        changes, auth = _world_write(scope["method"], scope["path"])
        if not changes:
            await self.app(scope, receive, send)
            return
        body: list[bytes] = []
        status = 0
        # The sandbox's clock as the request arrives: the handler stamps its change within
        # the same millisecond or so, and a replay under this clock stamps it alike.
        at_ms = self.clock()

        async def keep_body() -> dict:
            message = await receive()
            if message.get("type") == "http.request":
                body.append(message.get("body", b""))
            return message

        async def note_status(message: dict) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, keep_body, note_status)
        if not 200 <= status < 300:
            return  # refused or faulted: the world did not change
        text = b"".join(body).decode("utf-8", errors="replace")
        if auth and auth.startswith("amplitude_form"):
            text = _without_form_key(text)
        query = scope.get("query_string", b"").decode("latin-1")
        if any(secret in text or secret in query for secret in self.secrets):
            logging.getLogger(__name__).warning(
                "a sandbox write carried a key in its body or query; not journaled"
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        write = StagedWrite(
            at_ms=at_ms,
            method=scope["method"],
            path=scope["path"],
            query=query,
            body=text,
            content_type=headers.get("content-type", "application/json"),
            auth=auth,
        )
        with self._lock:
            self.writes.append(write)

    def snapshot(self) -> list[StagedWrite]:
        with self._lock:
            return list(self.writes)


def _without_form_key(body: str) -> str:
    """A form body (``api_key=...&identification=...``) without its ``api_key`` field."""
    from urllib.parse import parse_qsl, urlencode

    return urlencode([(k, v) for k, v in parse_qsl(body, keep_blank_values=True) if k != "api_key"])


def _replay_credentials(auth: str | None, config: SandboxConfig) -> dict[str, Any]:
    if auth is None:
        return {}
    kind, _, region = auth.partition(":")
    if kind == "pendo_write":
        return {"headers": {"x-pendo-integration-key": config.pendo_keys[region].write}}
    keys = config.amplitude_keys[region]
    if kind == "amplitude_form":
        return {"form_key": keys.api_key}
    return {"auth": (keys.api_key, keys.secret_key)}


def replay_writes(writes: Sequence[StagedWrite], base_url: str, config: SandboxConfig) -> int:
    """Send the journaled writes to a fresh sandbox of the same world, each under the clock
    it first arrived at (creation and update times come out the same, to the millisecond or
    so), then give the sandbox its clock back. Returns how many were replayed."""
    import httpx

    frozen = DemoWorld.from_config(config).now
    with httpx.Client(base_url=base_url, timeout=300) as http:
        try:
            for write in writes:
                http.post("/_sandbox/clock", json={"now": write.at_ms}).raise_for_status()
                credentials = _replay_credentials(write.auth, config)
                headers = {"content-type": write.content_type, **credentials.get("headers", {})}
                target = write.path + (f"?{write.query}" if write.query else "")
                body = write.body
                if "form_key" in credentials:
                    from urllib.parse import urlencode

                    body = urlencode({"api_key": credentials["form_key"]}) + "&" + body
                answer = http.request(
                    write.method, target, content=body.encode(), headers=headers,
                    auth=credentials.get("auth"),
                )  # fmt: skip
                if answer.status_code >= 300:
                    raise RuntimeError(
                        f"replaying {write.method} {write.path}: HTTP {answer.status_code} "
                        f"{answer.text[:200]}"
                    )
        finally:
            http.post("/_sandbox/clock", json={"now": frozen}).raise_for_status()
    return len(writes)


def _describe_writes(writes: Sequence[StagedWrite]) -> str:
    kinds: dict[str, int] = {}
    for write in writes:
        if write.path.startswith("/_sandbox/"):
            kind = "staged change"
        elif write.auth and write.auth.startswith("pendo_write"):
            kind = "Pendo metadata write"
        elif write.auth and write.auth.startswith("amplitude_form"):
            kind = "Amplitude identify"
        else:
            kind = "Amplitude cohort update"
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in kinds.items())


# ------------------------------------------------------------------------------ output


class Console:
    """The demo's own lines, on the terminal; everything else goes to the log file."""

    def __init__(self, out: TextIO, err: TextIO, log_file: Path | None = None) -> None:
        self.out, self.err, self.log_file = out, err, log_file

    def line(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def phase(self, label: str, text: str) -> None:
        self.line(f"  {label:<42} {text}")

    def detail(self, text: str) -> None:
        self.line(f"      {text}")

    def problem(self, text: str) -> None:
        print(f"      {text}", file=self.err, flush=True)


@contextlib.contextmanager
def output_to_log(log_file: Path) -> Iterator[Console]:
    """Send file descriptors 1 and 2 to ``log_file`` for the duration: the code server and
    run workers the demo starts inherit them, so Dagster's event lines, the sandbox's and
    the steps' logs land in the file, and only the demo's own lines reach the terminal."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(1), os.dup(2)
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
    err = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield Console(out, err, log_file)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        out.close()
        err.close()


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def _shortened(items: Sequence[str], limit: int) -> list[str]:
    """The first ``limit`` items, and a line saying how many were left out."""
    shown = list(items[:limit])
    if len(items) > limit:
        shown.append(f"… and {len(items) - limit} more")
    return shown


# ------------------------------------------------------------------------- deployment


@dataclass
class RunOutcome:
    """What one run did, read back from the instance's event log."""

    label: str
    run_id: str
    status: str
    materialized: list[str]
    checks_passed: int
    checks: int
    seconds: float
    failures: list[str]

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"

    def word(self) -> str:
        return {"SUCCESS": "ok", "FAILURE": "FAILED"}.get(self.status, self.status)

    def summary(self) -> str:
        assets = _plural(len(self.materialized), "asset")
        checks = f"{self.checks_passed}/{self.checks} checks passed" if self.checks else "no check"
        status = self.word()
        return (
            f"{status:<3} {assets} materialized, {checks}  "
            f"({self.seconds:.0f} s, run {self.run_id[:8]})"
        )


class Deployment:
    """The demo's Dagster instance and its code location, loaded by a code server from the
    workspace file, as ``dagster dev`` loads it."""

    def __init__(self, instance: dg.DagsterInstance, context: WorkspaceProcessContext) -> None:
        self.instance = instance
        self.context = context

    @classmethod
    @contextlib.contextmanager
    def open(cls, home: Path) -> Iterator[Deployment]:
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import WorkspaceFileTarget

        with (
            dg.DagsterInstance.from_config(str(home)) as instance,
            WorkspaceProcessContext(
                instance,
                WorkspaceFileTarget([str(home / "workspace.yaml")]),
                code_server_log_level="WARNING",
            ) as context,
        ):
            deployment = cls(instance, context)
            location = context.create_request_context().get_code_location_error(LOCATION)
            if location is not None:
                raise RuntimeError(f"the code location {LOCATION} did not load: {location}")
            yield deployment

    # -- the code location

    def _location(self) -> Any:
        return self.context.create_request_context().get_code_location(LOCATION)

    def repository(self) -> RemoteRepository:
        (repository,) = self._location().get_repositories().values()
        return repository

    def job_assets(self, job: str) -> set[dg.AssetKey]:
        graph = self.repository().asset_graph
        return {n.key for n in graph.asset_nodes if job in n.job_names and n.is_materializable}

    def daily_descendants(self, keys: set[dg.AssetKey]) -> set[dg.AssetKey]:
        """The assets among ``keys`` that read a daily asset, directly or not: they summarize
        the days, so they run after them."""
        graph = self.repository().asset_graph
        return {
            key
            for key in keys
            if any(graph.get(a).is_partitioned for a in graph.get_ancestor_asset_keys(key))
        }

    # -- runs

    def submit(
        self,
        job_name: str,
        *,
        partition: str | None = None,
        assets: set[dg.AssetKey] | None = None,
    ) -> str:
        """Create a run of the job as ``dagster job launch`` does (the code location's origin,
        the job's tags, an asset subset when given) and submit it to the instance's queue."""
        from dagster._core.definitions.selector import JobSubsetSelector

        location = self._location()
        repository = self.repository()
        selector = JobSubsetSelector(
            location_name=location.name,
            repository_name=repository.name,
            job_name=job_name,
            op_selection=None,
            asset_selection=assets,
        )
        remote_job: RemoteJob = location.get_job(selector)
        run_config = IN_PROCESS if _takes_executor_config(remote_job) else {}
        plan = location.get_execution_plan(
            remote_job, run_config, step_keys_to_execute=None, known_state=None,
            instance=self.instance,
        )  # fmt: skip
        tags = {**remote_job.run_tags, TRIGGER_TAG: "demo"}
        if partition is not None:
            tags[PARTITION_TAG] = partition
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=remote_job.resolved_op_selection,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags=tags,
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(assets) if assets else None,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
        self.instance.submit_run(run.run_id, self.context.create_request_context())
        return run.run_id

    def run_queued(self, run_id: str, label: str) -> RunOutcome:
        """Launch a queued run through the instance's run launcher, as the daemon's queue
        would, and wait for it to finish."""
        started = time.monotonic()
        run = self.instance.get_run_by_id(run_id)
        if run is not None and run.status == dg.DagsterRunStatus.QUEUED:
            self.instance.launch_run(run_id, self.context.create_request_context())
        outcome = self.wait(run_id, label)
        # Wall time from launch to the end, the run worker's start included.
        outcome.seconds = time.monotonic() - started
        return outcome

    def wait(self, run_id: str, label: str) -> RunOutcome:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        checked = time.monotonic()
        while True:
            run = self.instance.get_run_by_id(run_id)
            if run is None:
                raise RuntimeError(f"run {run_id} vanished from the instance")
            if run.is_finished:
                return self.outcome(run_id, label)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: run {run_id} still {run.status.value} after 1 h")
            if time.monotonic() - checked > 10:
                checked = time.monotonic()
                self._check_worker(run)
            time.sleep(0.3)

    def _check_worker(self, run: dg.DagsterRun) -> None:
        """A run worker that died without a word would leave the run STARTED forever."""
        from dagster._core.launcher import WorkerStatus

        launcher = self.instance.run_launcher
        if (
            run.status != dg.DagsterRunStatus.STARTED
            or not launcher.supports_check_run_worker_health
        ):
            return
        health = launcher.check_run_worker_health(run)
        if health.status in (WorkerStatus.FAILED, WorkerStatus.NOT_FOUND):
            time.sleep(2)  # the worker may have just reported its end
            latest = self.instance.get_run_by_id(run.run_id)
            if latest is not None and not latest.is_finished:
                self.instance.report_run_failed(latest, f"run worker gone: {health.msg}")

    def outcome(self, run_id: str, label: str) -> RunOutcome:
        instance = self.instance
        run = instance.get_run_by_id(run_id)
        assert run is not None
        events = dg.DagsterEventType
        materialized = sorted({
            entry.dagster_event.asset_key.to_user_string()
            for entry in instance.all_logs(run_id, of_type=events.ASSET_MATERIALIZATION)
            if entry.dagster_event is not None and entry.dagster_event.asset_key is not None
        })  # fmt: skip
        checks = [
            entry.dagster_event.event_specific_data
            for entry in instance.all_logs(run_id, of_type=events.ASSET_CHECK_EVALUATION)
            if entry.dagster_event is not None
        ]
        failures = []
        for entry in instance.all_logs(run_id, of_type=events.STEP_FAILURE):
            event = entry.dagster_event
            error = event.step_failure_data.error if event is not None else None
            message = error.message.strip().splitlines()[0] if error and error.message else ""
            failures.append(f"{event.step_key if event else '?'}: {message}"[:400])
        if run.status == dg.DagsterRunStatus.FAILURE and not failures:
            for entry in instance.all_logs(run_id, of_type=events.RUN_FAILURE):
                failures.append(entry.message.strip().splitlines()[0][:400])
        stats = instance.get_run_stats(run_id)
        seconds = (stats.end_time or 0) - (stats.start_time or stats.end_time or 0)
        return RunOutcome(
            label=label,
            run_id=run_id,
            status=run.status.value,
            materialized=materialized,
            checks_passed=sum(1 for c in checks if getattr(c, "passed", False)),
            checks=len(checks),
            seconds=max(seconds, 0.0),
            failures=failures,
        )

    # -- sensors

    def sensors(self) -> list[RemoteSensor]:
        """The project's sensors; Dagster's automation sensor is the asset daemon's, not ours."""
        return sorted(
            (s for s in self.repository().get_sensors()
             if not s.sensor_type.is_handled_by_asset_daemon),
            key=lambda s: s.name,
        )  # fmt: skip

    @contextlib.contextmanager
    def sensors_running(self, sensors: Sequence[RemoteSensor]) -> Iterator[None]:
        """Start the sensors for the demo's ticks and stop them again, cursors kept: they
        start stopped in this project, and an operator turns them on."""
        for sensor in sensors:
            self.instance.start_sensor(sensor)
        try:
            yield
        finally:
            for sensor in sensors:
                self.instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)

    def tick(self, sensors: Sequence[RemoteSensor], *, again: bool = False) -> dict[str, Any]:
        """One iteration of the daemon's sensor loop: every running sensor evaluates once
        in the code server, and the daemon's code records the tick, the cursor, the logs and
        any run requested. ``again``: the previous tick was moments ago, so the sensors'
        last-tick marks are first set one interval back, in place of waiting 5 minutes."""
        from dagster._daemon.sensor import execute_sensor_iteration

        if again:
            self._rewind(sensors)
        logger = logging.getLogger("analytics_assets.demo.sensor_daemon")
        for _ in execute_sensor_iteration(self.context, logger, None, None):
            pass
        ticks = {}
        for sensor in sensors:
            latest = self.instance.get_ticks(
                sensor.get_remote_origin_id(), sensor.selector_id, limit=1
            )
            ticks[sensor.name] = latest[0] if latest else None
        return ticks

    def _rewind(self, sensors: Sequence[RemoteSensor]) -> None:
        for sensor in sensors:
            state = self.instance.get_instigator_state(
                sensor.get_remote_origin_id(), sensor.selector_id
            )
            data = state.instigator_data if state is not None else None
            if state is None or data is None:
                continue
            earlier = time.time() - (sensor.min_interval_seconds or 0) - 1
            self.instance.update_instigator_state(
                state.with_data(
                    data._replace(last_tick_timestamp=earlier, last_tick_start_timestamp=earlier)
                )
            )

    def tick_log_alerts(self, tick: InstigatorTick | None) -> int:
        """How many alerts the tick's log shows (the log sink writes one line per alert)."""
        if tick is None or not tick.log_key:
            return 0
        try:
            data = self.instance.compute_log_manager.get_log_data(tick.log_key)
        except Exception:  # noqa: BLE001 - a log that cannot be read counts nothing
            return 0
        text = (data.stderr or b"") + (data.stdout or b"")
        return sum(1 for line in text.splitlines() if b"ALERT [" in line)


def _takes_executor_config(remote_job: RemoteJob) -> bool:
    snapshot = remote_job.job_snapshot
    mode = snapshot.mode_def_snaps[0]
    root = snapshot.config_schema_snapshot.get_config_snap(mode.root_config_key)
    return any(f.name == "execution" for f in root.fields or [])


# ------------------------------------------------------------------------------ warehouse


def _query(sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Read the warehouse briefly through the resource the runs write with (a DuckDB file is
    attached with retries while a run or a tick holds it)."""
    return [tuple(row.values()) for row in demo_warehouse().records(sql, list(params))]


def _table_exists(name: str) -> bool:
    return demo_warehouse().table_exists(name)


def _alert_ids() -> set[str]:
    if not _table_exists("analytics.alerts"):
        return set()
    return {row[0] for row in _query("SELECT alert_id FROM analytics.alerts")}


@dataclass(frozen=True)
class AlertRow:
    severity: str
    rule: str
    entity_id: str
    entity_name: str | None
    message: str
    sensor: str

    def line(self) -> str:
        name = f" ({self.entity_name})" if self.entity_name else ""
        return f"[{self.severity}] {self.rule} {self.entity_id}{name}: {self.message}"


def _alerts_since(before: set[str]) -> list[AlertRow]:
    """The alerts a tick added to ``analytics.alerts``, the worst first."""
    if not _table_exists("analytics.alerts"):
        return []
    rows = _query(
        "SELECT alert_id, severity, rule, entity_id, entity_name, message, sensor "
        "FROM analytics.alerts ORDER BY sensor, recorded_at, rule, entity_id"
    )
    rank = {"critical": 0, "warning": 1, "info": 2}
    alerts = [AlertRow(*row[1:]) for row in rows if row[0] not in before]
    return sorted(alerts, key=lambda a: rank.get(a.severity, 3))


def _writeback_summary(run_id: str) -> str:
    """What the write-back run changed in each tool and set aside, from its tables."""
    from analytics_assets.crm_writeback.report import destination_changes, set_aside

    warehouse = demo_warehouse()
    changes = destination_changes(warehouse, run_id)
    parts = [f"{tool.capitalize()}: {text}" for tool, text in changes.items()]
    if aside := set_aside(warehouse, run_id):
        parts.append(f"{_plural(aside, 'CRM row')} set aside (analytics.writeback_quarantine)")
    return "; ".join(parts)


def _warehouse_summary() -> tuple[int, int]:
    warehouse = demo_warehouse()
    tables = warehouse.tables()
    rows = sum(int(_query(f"SELECT count(*) AS n FROM {table}")[0][0]) for table in tables)
    return len(tables), rows


# ------------------------------------------------------------------------------ staging


@dataclass(frozen=True)
class Staged:
    """A change the demo made in the sandbox, and the entities the alerts it causes name."""

    text: str
    entity_ids: tuple[str, ...]
    is_change: bool = True  # False: an effect the demo measured, not a change it made


def _last_weekday_start(timezone: str, now: datetime) -> datetime:
    """Local midnight of the last complete weekday: the day the activity rule judges."""
    tz = ZoneInfo(timezone)
    day = now.astimezone(tz).date() - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _local(moment: datetime, timezone: str) -> str:
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def _stage_changes(timezone: str, now: datetime) -> list[Staged]:
    """Changes the sensors should notice, staged through the sandbox's control API and the
    APIs themselves (the real services change on their own; the sandbox is told to). Each
    says what was staged and, where the sensor measures something else, what it measures."""
    from analytics_assets.amplitude.client import AmplitudeClient

    base = os.environ["PENDO_BASE_URL"]
    judged = _last_weekday_start(timezone, now)
    judged_ms = int(judged.timestamp() * 1000)
    staged: list[Staged] = []
    amplitude = AmplitudeClient(
        os.environ["AMPLITUDE_API_KEY"],
        os.environ["AMPLITUDE_SECRET_KEY"],
        base_url=os.environ["AMPLITUDE_BASE_URL"],
    )
    with amplitude:
        # The cohorts as the first tick saw them: the sandbox recomputes them from the
        # events, so the staged activity moves them too, beside the members added below.
        cohorts_before = amplitude.list_cohorts()
        staged += _stage_pendo(
            reader_key=os.environ["PENDO_INTEGRATION_KEY"],
            base=base,
            judged=judged,
            judged_ms=judged_ms,
            timezone=timezone,
            now=now,
        )
        staged += _stage_cohorts(amplitude, cohorts_before)
    return staged


def _stage_pendo(
    *, reader_key: str, base: str, judged: datetime, judged_ms: int, timezone: str, now: datetime
) -> list[Staged]:
    import httpx

    from analytics_assets.pendo.client import MetadataRecord, PendoClient
    from analytics_assets.pendo.pipeline import Agg, Expr, Pipeline, Source, TimeSeries

    control = f"{base}/_sandbox"
    staged: list[Staged] = []
    reader = PendoClient(reader_key, base_url=base)
    with httpx.Client(timeout=60) as http, reader:

        def name_of(account_id: str) -> str:
            agent = (reader.get_account(account_id).get("metadata") or {}).get("agent") or {}
            return f" ({agent['name']})" if agent.get("name") else ""

        # The account with the most events over the week before the judged day goes quiet.
        week = TimeSeries.day_range(judged_ms - 7 * 86_400_000, count=7)
        busiest = next(
            reader.aggregate(
                Pipeline(Source.events(time_series=week, app_ids="*"))
                .filter(Expr.ne("accountId", ""))
                .group(by=["accountId"], fields={"n": Agg.sum("numEvents")})
                .sort("-n")
                .limit(1)
            )
        )["accountId"]
        http.post(
            f"{control}/stage",
            json={"action": "account_quiet", "account_id": busiest, "from": judged.isoformat()},
        ).raise_for_status()
        staged.append(
            Staged(
                f"{busiest}{name_of(busiest)}, the busiest account of the week before, has "
                f"no activity from {judged.date()} on",
                (busiest,),
            )
        )
        # The most viewed guide of the last 24 hours: each viewer now dismisses it with
        # probability 0.95, so the share the sensor measures is close to, not exactly, 95 %.
        since = now - timedelta(hours=24)
        hours = TimeSeries.hour_range(
            int(since.timestamp() * 1000), int(now.timestamp() * 1000) + 3_600_000
        )
        views = list(
            reader.aggregate(
                Pipeline(Source.guide_events(time_series=hours, app_ids="*"))
                .filter(Expr.eq("type", "guideSeen"))
                # A view is a visitor seeing the guide; multi-step guides log a seen per step.
                .group(by=["guideId"], fields={"views": Agg.count("visitorId")})
                .sort("-views")
                .limit(1)
            )
        )
        if views:
            guide, seen = views[0]["guideId"], views[0]["views"]
            http.post(
                f"{control}/stage",
                json={
                    "action": "guide_dismissals",
                    "guide_id": guide,
                    "rate": 0.95,
                    "from": since.isoformat(),
                },
            ).raise_for_status()
            title = reader.get_guide(guide).get("name")
            quiet = "" if seen >= 20 else "; the rule wants 20 views, so it stays quiet"
            staged.append(
                Staged(
                    f"guide {guide}{f' ({title})' if title else ''}: from "
                    f"{_local(since, timezone)} each viewer dismisses it with probability "
                    f"95 % ({seen} views in those 24 h; the sensor reports the share that "
                    f"did){quiet}",
                    (guide,),
                )
            )
        created = http.post(
            f"{control}/pendo/accounts", json={"name": "Brand New Co", "visitors": 2}
        ).json()
        staged.append(
            Staged(
                f"a new account {created['account_id']} (Brand New Co) with 2 visitors",
                (created["account_id"],),
            )
        )
    with PendoClient(os.environ["PENDO_WRITE_INTEGRATION_KEY"], base_url=base) as pendo:
        account = "account-000001"
        before = pendo.get_metadata_value("account", account, "plan")
        list(pendo.update_metadata("account", [MetadataRecord(account, {"plan": "free"})]))
    staged.append(
        Staged(
            f"someone set {account}'s plan to 'free' in Pendo (it was {before!r}, as the "
            "write-back had set it from the CRM)",
            (account,),
        )
    )
    return staged


def _stage_cohorts(amplitude: Any, before: list[dict[str, Any]]) -> list[Staged]:
    """Add users to the first computed cohort; say how many were new to it, and how every
    cohort's size moved since the first tick (the staged activity recomputes them)."""
    sizes_before = {c["id"]: c.get("size") for c in before}
    cohort = next(c for c in before if c.get("size") and not c.get("archived"))
    sizes_between = {c["id"]: c.get("size") for c in amplitude.list_cohorts()}
    users = [f"visitor-{i:07d}" for i in range(40)]
    amplitude.update_cohort_membership(cohort["id"], add=users, id_type="BY_NAME")
    after = amplitude.list_cohorts()
    new = int(next(c["size"] for c in after if c["id"] == cohort["id"])) - int(
        sizes_between[cohort["id"]] or 0
    )
    moved = [
        (c, int(sizes_before[c["id"]]), int(c["size"]))
        for c in after
        if c.get("size") is not None
        and sizes_before.get(c["id"]) is not None
        and c["size"] != sizes_before[c["id"]]
    ]
    staged = [
        Staged(
            f"{len(users)} users added to the cohort '{cohort['name']}' ({cohort['id']}): "
            f"{new} of them were not members yet",
            (cohort["id"],),
        )
    ]
    if moved:
        changes = ", ".join(
            f"'{c['name']}' {old:,} → {now:,} ({now - old:+,})" for c, old, now in moved
        )
        staged.append(
            Staged(
                "cohort sizes since the first tick, the additions and the staged activity "
                f"together (the sandbox recomputes cohorts from the events): {changes}",
                tuple(c["id"] for c, _, _ in moved),
                is_change=False,
            )
        )
    return staged


# ------------------------------------------------------------------------------ the demo


def _sandbox_now(sandbox: SandboxServer) -> datetime:
    return datetime.fromtimestamp(sandbox.state.now_ms() / 1000, tz=UTC)


def _world_line(world: DemoWorld, sandbox: SandboxServer) -> str:
    """The world in one line, with its size as the sandbox reports it."""
    us = sandbox.state.worlds["us"].company
    return (
        f"Sandbox world: {world.describe()}; {us.n_accounts:,} accounts, {us.n_visitors:,} visitors"
    )


def run_demo(config: SandboxConfig, days: int = 3) -> int:
    """Start the sandbox, run the project's jobs and sensors against it through a Dagster
    instance, and print what happened, one line per phase."""
    # The Amplitude project's days must be the subscription's days for figures to agree.
    config.amplitude_timezone = config.pendo_timezone
    _clear_previous_demo()
    root = data_dir()
    root.mkdir(parents=True, exist_ok=True)
    log_file = root / "logs" / "demo.log"
    with output_to_log(log_file) as console:
        try:
            return _demo(config, days, console)
        except Exception as exc:
            logging.getLogger(__name__).exception("the demo failed")
            console.problem(f"the demo failed: {type(exc).__name__}: {exc}"[:600])
            console.problem(f"the full log: {log_file}")
            return 1


def _demo(config: SandboxConfig, days: int, console: Console) -> int:
    world = DemoWorld.from_config(config)
    home = prepare_dagster_home()
    server = SandboxServer(config)
    secrets = [k for keys in config.pendo_keys.values() for k in (keys.read, keys.write)]
    for amplitude in config.amplitude_keys.values():
        secrets += [amplitude.api_key, amplitude.secret_key]
    journal = WriteJournal(server.app, server.state.now_ms, secrets)
    server.app = journal  # type: ignore[assignment]  # an ASGI app around the sandbox's
    with server as sandbox:
        now = _sandbox_now(sandbox)
        # A day is complete once Amplitude has exported its last hour (the export lags
        # ingestion): pick the last days complete by then, never a day cut short.
        lag = timedelta(seconds=config.amplitude_limits.export_lag_seconds) + timedelta(hours=1)
        timezone = config.pendo_timezone
        keys = recent_partition_keys(days, timezone, now=now - lag)
        world.start_date, world.days, world.port = keys[0], keys, sandbox.port
        console.line(_world_line(world, sandbox))
        console.line(
            f"  sandbox {sandbox.urls.base}; data in {data_dir()}; full log in {console.log_file}"
        )
        world.save(world_file())
        os.environ.update(sandbox_environment(config, sandbox.urls))
        os.environ["DAGSTER_HOME"] = str(home)
        # The deployment's partitions start where the demo's history does: no false
        # "missing" days before it in the UI.
        os.environ["ANALYTICS_ASSETS_START_DATE"] = keys[0]
        # The demo's alerts are about a synthetic company: never post them to a real webhook.
        os.environ.pop(WEBHOOK_ENV, None)
        try:
            ok = _run_everything(console, home, keys, timezone, now, world)
        finally:
            world.staged = journal.snapshot()
            world.save(world_file())
    console.line(
        f"Next: `analytics-assets dev` serves this same world again ({world.describe()}; the "
        f"{_describe_writes(world.staged)} replayed) and the Dagster UI on "
        f"http://127.0.0.1:3000 with these runs, the sensors' ticks and cursors."
    )
    return 0 if ok else 1


def _run_everything(
    console: Console, home: Path, keys: list[str], timezone: str, now: datetime, world: DemoWorld
) -> bool:
    ok = True
    with Deployment.open(home) as deployment:
        instance = deployment.instance
        # Concurrency pools: at most this many steps call each API at once, across runs.
        for pool, slots in (("pendo_api", 2), ("amplitude_api", 2)):
            instance.event_log_storage.set_concurrency_slots(pool, slots)
        catalog = deployment.job_assets(CATALOG_JOB)
        after_days = deployment.daily_descendants(catalog)
        console.line(
            f"Runs of the project's jobs (in the instance; `dev` shows them), days "
            f"{', '.join(keys)} ({timezone}):"
        )

        def run(label: str, job: str, **kwargs: Any) -> RunOutcome:
            outcome = deployment.run_queued(deployment.submit(job, **kwargs), label)
            world.runs.append({"job": job, "run_id": outcome.run_id, "label": label})
            return outcome

        def show(outcome: RunOutcome, text: str | None = None) -> bool:
            console.phase(outcome.label, text or outcome.summary())
            for failure in outcome.failures:
                console.problem(f"{outcome.label}: {failure}")
            return outcome.ok

        ok &= show(run(f"{CATALOG_JOB}: catalogs and snapshots", CATALOG_JOB,
                       assets=catalog - after_days))  # fmt: skip
        for key in keys:
            ok &= show(run(f"{DAILY_JOB} {key}", DAILY_JOB, partition=key))
        if after_days:
            names = ", ".join(sorted(k.to_user_string() for k in after_days))
            ok &= show(run(f"{CATALOG_JOB}: {names}", CATALOG_JOB, assets=after_days))
        writeback = run(WRITEBACK_JOB, WRITEBACK_JOB)
        status = writeback.word()
        ok &= show(
            writeback,
            f"{status:<3} {_writeback_summary(writeback.run_id) or 'nothing logged'}  "
            f"({writeback.seconds:.0f} s, run {writeback.run_id[:8]})",
        )
        ok &= _sensors(console, deployment, timezone, now, world)
        tables, rows = _warehouse_summary()
        console.phase(
            "warehouse",
            f"{tables} tables, {rows:,} rows in {demo_warehouse().describe()}; read it with "
            '`analytics-assets sql "SELECT * FROM analytics.alerts"`',
        )
    return ok


def _sensors(
    console: Console, deployment: Deployment, timezone: str, now: datetime, world: DemoWorld
) -> bool:
    """Two ticks of every sensor, through the daemon's sensor iteration, with changes staged
    in between; then the runs the sensors requested."""
    sensors = deployment.sensors()
    ok = True
    console.line("Sensors (polling in place of webhooks; ticks recorded as the daemon does):")
    with deployment.sensors_running(sensors):
        before = _alert_ids()
        first = deployment.tick(sensors)
        held = _alerts_since(before)
        console.phase(
            "tick 1",
            f"{_ticked(first)}: {_alert_count(held, first, deployment)} for conditions that "
            "already held; cursors saved",
        )
        ok &= _tick_failures(console, first)
        ok &= _requested_runs(console, deployment, first, world)
        staged = _stage_changes(timezone, now)
        changes = sum(1 for change in staged if change.is_change)
        console.phase("staged in the sandbox", _plural(changes, "change"))
        for change in staged:
            console.detail(change.text)
        before = _alert_ids()
        second = deployment.tick(sensors, again=True)
        alerts = _alerts_since(before)
        of_staged = {e for change in staged for e in change.entity_ids}
        others = sum(1 for a in alerts if a.entity_id not in of_staged)
        quiet = [
            c
            for c in staged
            if c.is_change and not any(a.entity_id in c.entity_ids for a in alerts)
        ]
        console.phase(
            "tick 2",
            f"{_ticked(second)}: {_alert_count(alerts, second, deployment)}; "
            + (
                f"{len(quiet)} staged change(s) raised none"
                if quiet
                else "every staged change alerted"
            )
            + (f", {others} alert(s) about something not staged" if others else ""),
        )
        for text in _shortened([a.line() for a in alerts], SHOWN_ALERTS):
            console.detail(text)
        ok &= _tick_failures(console, second)
        ok &= _requested_runs(console, deployment, second, world)
    return ok


def _tick_failures(console: Console, ticks: Mapping[str, InstigatorTick | None]) -> bool:
    """Say which sensors' ticks failed (an error in the sensor, not a skipped tick)."""
    ok = True
    for name, tick in ticks.items():
        if tick is not None and tick.status.value != "FAILURE":
            continue
        error = tick.error.message.strip().splitlines()[0] if tick and tick.error else "no tick"
        console.problem(f"{name}: tick failed: {error}"[:400])
        ok = False
    return ok


def _ticked(ticks: Mapping[str, Any]) -> str:
    return f"{_plural(sum(1 for t in ticks.values() if t is not None), 'sensor')} ticked"


def _alert_count(
    alerts: Sequence[AlertRow], ticks: Mapping[str, Any], deployment: Deployment
) -> str:
    """``N alerts (M deliveries: …)``, each delivery counted where it landed."""
    logged = sum(deployment.tick_log_alerts(t) for t in ticks.values())
    stored = len(alerts)
    # The log never refuses an alert; a table that did keeps it in the cursor for a retry.
    raised = max(logged, stored)
    where = [f"{logged} to the sensor logs", f"{stored} to analytics.alerts"]
    return (
        f"{_plural(raised, 'alert')} ({_plural(logged + stored, 'delivery', 'deliveries')}: "
        f"{', '.join(where)}; webhook off)"
    )


def _requested_runs(
    console: Console, deployment: Deployment, ticks: Mapping[str, Any], world: DemoWorld
) -> bool:
    """Launch the runs the tick's sensors requested (late data), as the daemon's queue would."""
    ok = True
    for name, tick in ticks.items():
        for run_id in tick.run_ids if tick is not None else []:
            run = deployment.instance.get_run_by_id(run_id)
            if run is None:
                continue
            partition = run.tags.get(PARTITION_TAG)
            why = run.tags.get(TRIGGER_TAG, "requested")
            label = f"{run.job_name} {partition or ''} ({why.replace('_', ' ')})".replace("  ", " ")
            outcome = deployment.run_queued(run_id, label)
            world.runs.append({"job": run.job_name, "run_id": run_id, "label": label})
            detail = ""
            if why == "late_data":
                was = run.tags.get("analytics_assets/events_materialized")
                is_ = run.tags.get("analytics_assets/events_now")
                detail = (
                    f"; {name}: Pendo events {int(was):,} when loaded, {int(is_):,} now"
                    if was and is_
                    else f"; requested by {name}"
                )
            console.phase(outcome.label, outcome.summary() + detail)
            for failure in outcome.failures:
                console.problem(f"{outcome.label}: {failure}")
            ok &= outcome.ok
    return ok


# ------------------------------------------------------------------------------ dev


def run_dev(
    config: SandboxConfig,
    webserver_port: int = 3000,
    world: DemoWorld | None = None,
) -> int:
    """Serve the demo's world again (``world``: its settings, already applied to ``config``
    unless flags overrode them, and its staged writes), then ``dagster dev`` on the demo's
    Dagster home and warehouse, until Ctrl+C."""
    home = prepare_dagster_home()
    if world is None:
        # Without a demo, the demo's rule: Amplitude's days are the subscription's.
        config.amplitude_timezone = config.pendo_timezone
    sandbox = _bind_sandbox(config)
    try:
        differences = world.differences(config) if world is not None else []
        if world is None:
            fresh = DemoWorld.from_config(config).describe()
            print(f"No demo in {data_dir()}: a fresh sandbox world ({fresh})")
        elif differences:
            print(
                f"Flags change the demo's world ({'; '.join(differences)}): its staged writes "
                f"are not replayed, and the runs and warehouse in {data_dir()} are of the "
                "demo's world, not this one."
            )
        else:
            replayed = replay_writes(world.staged, sandbox.urls.base, config)
            print(
                f"{_world_line(world, sandbox)}; the demo's {replayed} writes replayed "
                f"({_describe_writes(world.staged)})"
            )
        if world is not None and world.port and sandbox.port != world.port:
            print(
                f"The demo's sandbox port {world.port} is taken: the UI will say the demo's "
                "runs may come from another version of their job (its resources point at "
                "that port); re-executing them still works."
            )
        env = {**os.environ, **sandbox_environment(config, sandbox.urls), "DAGSTER_HOME": str(home)}
        env.pop(WEBHOOK_ENV, None)  # sandbox alerts never go to a real webhook
        # The demo's partitions start at its first day (an explicit variable wins).
        start = world.start_date if world is not None else None
        if start and "ANALYTICS_ASSETS_START_DATE" not in os.environ:
            env["ANALYTICS_ASSETS_START_DATE"] = start
        print(
            f"Sandbox on {sandbox.urls.base}; Dagster UI on http://127.0.0.1:{webserver_port}",
            flush=True,
        )
        return _dagster_dev(env, home, webserver_port)
    finally:
        sandbox.stop()


def _bind_sandbox(config: SandboxConfig) -> SandboxServer:
    """A started sandbox on ``config.port``; on any free port when that one is taken."""
    try:
        return SandboxServer(config).start()
    except OSError:
        config.port = 0
        return SandboxServer(config).start()


def _dagster_dev(env: Mapping[str, str], home: Path, webserver_port: int) -> int:
    """``dagster dev`` until it ends, or until Ctrl+C or SIGTERM, which it is handed on."""
    cmd = [sys.executable, "-m", "dagster", "dev", "-p", str(webserver_port),
           "-w", str(home / "workspace.yaml")]  # fmt: skip

    def default_signals() -> None:
        # A shell's background job starts with SIGINT ignored, and `dagster dev` maps
        # SIGTERM onto SIGINT's handler: without this it could not be stopped but killed.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    process = subprocess.Popen(cmd, env=dict(env), preexec_fn=default_signals)
    try:
        while process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=30)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return process.returncode or 0


# ------------------------------------------------------------------------------ sql


def run_sql(query: str | None, warehouse: str | None = None, max_rows: int = 40) -> int:
    """Print the answer to ``query`` (or every table and its row count) from the warehouse
    the code location writes (``warehouse``: a DuckDB file or a URL, overriding it). A
    DuckDB file is read from a copy, so a reader never holds the lock a run needs."""
    import tempfile

    import pandas as pd

    from analytics_assets.warehouse.base import WarehouseError

    with tempfile.TemporaryDirectory(prefix="analytics-assets-sql-") as tmp:
        try:
            with demo_warehouse(warehouse).reading_copy(Path(tmp)) as reader:
                if query:
                    frame = reader.query(query)
                else:  # exact counts, table by table
                    counts = [
                        (t, int(reader.records(f"SELECT count(*) AS n FROM {t}")[0]["n"]))
                        for t in reader.tables()
                    ]
                    frame = pd.DataFrame(
                        counts or [("no tables yet", 0)], columns=["table", "rows"]
                    )
        except WarehouseError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    try:
        with pd.option_context("display.max_colwidth", 80, "display.width", 200):
            print(frame.head(max_rows).to_string(index=False))
        if len(frame) > max_rows:
            print(f"... {len(frame) - max_rows:,} more rows (--max-rows)")
    except BrokenPipeError:  # `| head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


__all__ = [
    "DemoWorld",
    "StagedWrite",
    "WriteJournal",
    "data_dir",
    "dagster_home",
    "load_world",
    "prepare_dagster_home",
    "recent_partition_keys",
    "replay_writes",
    "run_demo",
    "run_dev",
    "run_sql",
    "demo_warehouse",
    "warehouse_location",
    "sandbox_environment",
    "world_file",
]
