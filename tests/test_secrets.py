"""The demo, run with recognisable keys, leaves them nowhere.

The demo runs as ``analytics-assets demo`` does, in its own process (so nothing it sets,
``os.environ``, ``DAGSTER_HOME``, logger levels or imported modules, leaks into the test
session), with Python logging captured at DEBUG from every logger into a file beside the
data directory. The keys reach it in the environment (not on its command line) and go
into ``SandboxConfig.pendo_keys`` / ``amplitude_keys``; the demo hands them to the
resources through ``os.environ``, as a deployment would. Faults
in the sandbox make the run retry (warnings with URLs) and fail one step (an exception
in the event log), so the search covers those paths too.

Then the keys, raw (any case, URL-encoded), in every base64 and HTTP Basic form, are
searched for in: stdout and stderr; every log line; every run's config, tags and every
event of the demo's Dagster home (errors and their causes included); and every file
under the data directory, read as bytes, plus the rows of every table of every DuckDB
and SQLite file there (their pages may compress text).
"""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import dagster as dg
import duckdb
import pytest

# The demo fixture runs a whole demo (its subprocess has 600 s): more than the default 300.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PENDO_READ = "PENDO-READ-SECRET-4f9c2d81e7a3"
PENDO_WRITE = "PENDO-WRITE-SECRET-b7e1093c5d2f"
AMPLITUDE_API = "AMP-API-SECRET-6a0d4e9b13c8"
AMPLITUDE_SECRET = "AMP-SECRET-SECRET-e52f7c18a9b4"
SECRETS = (PENDO_READ, PENDO_WRITE, AMPLITUDE_API, AMPLITUDE_SECRET)

# Named as the sandbox's own variables for its keys; the driver sets them explicitly.
SANDBOX_KEYS = {
    "SANDBOX_PENDO_US_READ_KEY": PENDO_READ,
    "SANDBOX_PENDO_US_WRITE_KEY": PENDO_WRITE,
    "SANDBOX_AMPLITUDE_US_API_KEY": AMPLITUDE_API,
    "SANDBOX_AMPLITUDE_US_SECRET_KEY": AMPLITUDE_SECRET,
}
# Retries on the first answers (warnings naming URLs), and an export the server refuses
# for longer than any retry budget, so one step fails with an exception.
FAULTS = (
    '[{"kind": "error", "status": 503, "count": 3},'
    ' {"kind": "throttle", "retry_after": 900, "path": "^/api/2/export"}]'
)
DRIVER = f"""
import json, logging, os, sys
handler = logging.FileHandler(sys.argv[1], encoding="utf-8")
handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.DEBUG)

from analytics_assets.demo import run_demo
from analytics_assets.sandbox.config import AmplitudeKeys, PendoKeys, SandboxConfig

env = os.environ
config = SandboxConfig(faults=json.loads({FAULTS!r}))
config.pendo_keys["us"] = PendoKeys(
    read=env["SANDBOX_PENDO_US_READ_KEY"], write=env["SANDBOX_PENDO_US_WRITE_KEY"]
)
config.amplitude_keys["us"] = AmplitudeKeys(
    api_key=env["SANDBOX_AMPLITUDE_US_API_KEY"],
    secret_key=env["SANDBOX_AMPLITUDE_US_SECRET_KEY"],
    project_id=config.amplitude_keys["us"].project_id,
)
config.amplitude_limits.cohort_job_polls = 0  # cohort files are ready at the first poll
sys.exit(run_demo(config, days=1))
"""


def base64_forms(secret: str) -> set[str]:
    """What base64 of any text holding ``secret`` must contain, wherever the secret sits
    (an HTTP Basic ``api:secret`` pair included): for each of the three byte offsets the
    secret can start at, the 4-character groups made of its own bytes only."""
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b"x" * offset + secret.encode()).decode()
        first, last = (offset + 2) // 3, (offset + len(secret)) // 3
        core = encoded[4 * first : 4 * last]
        forms |= {core, core.replace("+", "-").replace("/", "_")}  # standard, URL-safe
    return forms


def needles() -> tuple[list[str], list[str]]:
    """(case-insensitive needles: each key raw and URL-encoded; exact needles: base64)."""
    plain = {form for s in SECRETS for form in (s, quote(s, safe=""))}
    exact = set().union(*(base64_forms(s) for s in SECRETS))
    return sorted(plain), sorted(exact)


PLAIN, EXACT = needles()


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    found = [n for n in PLAIN if n.lower() in lowered]
    return found + [n for n in EXACT if n in text]


def leaks_in_bytes(data: bytes) -> list[str]:
    lowered = data.lower()
    found = [n for n in PLAIN if n.lower().encode() in lowered]
    return found + [n for n in EXACT if n.encode() in data]


def test_needles_find_what_they_should() -> None:
    # The search itself: every form is found, and clean text is not flagged.
    for api, secret in ((AMPLITUDE_API, AMPLITUDE_SECRET), ("k", PENDO_READ), ("ab", PENDO_WRITE)):
        basic = base64.b64encode(f"{api}:{secret}".encode()).decode()
        assert leaks(f"Authorization: Basic {basic}"), (api, secret)
    assert leaks(f"x-pendo-integration-key: {PENDO_WRITE.lower()}")
    assert leaks(f"url?api_key={quote(AMPLITUDE_API)}")
    assert not leaks("[pendo] POST http://127.0.0.1/api/v1/aggregation: HTTP 429")


def _tables_text(path: Path) -> Iterator[tuple[str, str]]:
    """(where, text) for every row of every table of a DuckDB or SQLite file."""
    if path.suffix == ".duckdb":
        with duckdb.connect(str(path), read_only=True) as conn:
            names = conn.execute(
                "SELECT schema_name || '.' || table_name FROM duckdb_tables()"
            ).fetchall()
            for (name,) in names:
                rows = conn.execute(f"SELECT * FROM {name}").fetchall()
                yield f"{path.name}:{name}", repr(rows)
    else:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            yield path.name, "\n".join(conn.iterdump())


def _captured_logs(data_dir: Path) -> str:
    """The steps' and sensor ticks' captured output, and the demo's log file."""
    files = [p for p in data_dir.rglob("*") if p.suffix in (".err", ".out", ".log")]
    return "\n".join(p.read_text(errors="replace") for p in files if p.is_file())


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(16) == b"SQLite format 3\x00"


def _clean_environment(data_dir: Path) -> dict[str, str]:
    prefixes = ("PENDO_", "AMPLITUDE_", "SANDBOX_", "ANALYTICS_ASSETS_", "DAGSTER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    # No step retries: the staged export refusal would otherwise run its step twice more,
    # 1 and 2 minutes later, to the same refusal.
    return {
        **env,
        **SANDBOX_KEYS,
        "ANALYTICS_ASSETS_DATA_DIR": str(data_dir),
        "ANALYTICS_ASSETS_STEP_RETRIES": "0",
    }


@dataclass(frozen=True)
class DemoRun:
    data_dir: Path
    home: Path  # the demo's Dagster home
    stdout: str
    stderr: str
    log: str  # every Python log record, DEBUG and up, from every logger
    returncode: int


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    root = tmp_path_factory.mktemp("secrets")
    data_dir, log_file = root / "data", root / "python.log"
    process = subprocess.run(
        [sys.executable, "-c", DRIVER, str(log_file)],
        env=_clean_environment(data_dir),
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return DemoRun(
        data_dir=data_dir,
        home=data_dir / "dagster_home",
        stdout=process.stdout,
        stderr=process.stderr,
        log=log_file.read_text(encoding="utf-8", errors="replace"),
        returncode=process.returncode,
    )


def test_the_demo_ran_with_these_keys_and_met_the_faults(demo: DemoRun) -> None:
    out = demo.stdout
    # It reached the sandbox with the keys (materializations and the write-back happened),
    # and the staged export refusal failed its step (exit code 1).
    assert demo.returncode == 1, demo.stderr
    assert "catalogs and snapshots" in out and "96 updated" in out, out
    assert "FAILED" in out, out
    # The retries' warnings: the steps run in the demo's run workers, so they are in the
    # steps' captured logs and the demo's log file under the data directory.
    logs = demo.log + _captured_logs(demo.data_dir)
    assert "retry" in logs and "HTTP 503" in logs
    assert "HTTP Request: POST" in demo.log  # and httpx's own request lines


def test_no_key_in_output_or_logs(demo: DemoRun) -> None:
    for name, text in (("stdout", demo.stdout), ("stderr", demo.stderr), ("log", demo.log)):
        assert text.strip(), f"nothing captured in {name}"
        assert not leaks(text), f"{name} holds a key: {leaks(text)}"


def test_no_key_in_runs_events_configs_tags_or_errors(demo: DemoRun) -> None:
    with dg.DagsterInstance.from_config(str(demo.home)) as instance:
        runs = instance.get_runs()
        # Snapshots, one daily partition (health included), and the write-back, as runs of
        # the jobs the demo launched; the activity sensor may add a late-data re-run.
        launched = [r for r in runs if r.tags.get("analytics_assets/trigger") == "demo"]
        assert len(launched) == 3
        assert {r.job_name for r in runs} == {
            "catalog_refresh",
            "daily_sync",
            "crm_account_metadata_push",
        }
        errors = []
        for run in runs:
            for where, text in (
                ("run config", repr(run.run_config)),
                ("tags", repr(run.tags)),
                ("run", dg.serialize_value(run)),
            ):
                assert not leaks(text), f"run {run.run_id} {where}: {leaks(text)}"
            records = instance.get_records_for_run(run.run_id, limit=100_000).records
            entries = instance.all_logs(run.run_id)
            assert records and len(records) == len(entries)
            for entry in entries:
                text = dg.serialize_value(entry)
                assert not leaks(text), f"run {run.run_id} event: {leaks(text)}\n{text[:2000]}"
                event = entry.dagster_event
                if event is not None and event.is_step_failure:
                    error = event.step_failure_data.error
                    while error is not None:
                        errors.append(error.message)
                        assert not leaks(error.message) and not leaks(str(error.stack))
                        error = error.cause
    # The staged export refusal: the exception the UI shows names the service and status.
    assert any("[amplitude]" in e and "HTTP 429" in e for e in errors), errors


def test_no_key_in_any_file_under_the_data_directory(demo: DemoRun) -> None:
    files = [p for p in demo.data_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert "warehouse.duckdb" in names and "dagster.yaml" in names
    assert any(p.suffix in (".out", ".err", ".complete") for p in files), sorted(names)
    databases = 0
    for path in files:
        found = leaks_in_bytes(path.read_bytes())
        assert not found, f"{path} holds a key: {found}"
        if path.suffix == ".duckdb" or _is_sqlite(path):
            databases += 1
            for where, text in _tables_text(path):
                assert not leaks(text), f"{where} holds a key: {leaks(text)}"
    assert databases >= 2  # the warehouse and the Dagster home's SQLite storage
