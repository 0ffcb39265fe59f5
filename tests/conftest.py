"""Session-wide fixtures for every test folder."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["postgres_server", "fault_table"]

# No step retries in tests (defs/*/defs.yaml read it): a test that stages a failure wants
# to see it, not wait 1 + 2 minutes for Dagster to run the step twice more. Set before any
# test module loads the code location; subprocesses inherit it. The default policy itself
# is tested in test_definitions_story.py.
os.environ.setdefault("ANALYTICS_ASSETS_STEP_RETRIES", "0")


@pytest.fixture(scope="session", autouse=True)
def _amplitude_budget_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One fresh Amplitude budget ledger per test session.

    Amplitude's budgets live in a SQLite file shared by every process (default
    ``<data dir>/amplitude-budgets.sqlite``) and outlive the session that spent them, as the
    server's windows do. Tests must not inherit the cohort requests of an earlier session
    (60 per 10 minutes), so each session gets its own file; tests spawning processes pass
    it on through the environment (the secrets test sets its own data directory instead).
    """
    path = tmp_path_factory.mktemp("amplitude-budgets") / "amplitude-budgets.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        # Subprocesses read it through defs/amplitude/defs.yaml; resources built in process
        # take the resource's default, patched here.
        patch.setenv("AMPLITUDE_BUDGET_LEDGER", str(path))
        patch.setattr("analytics_assets.amplitude.resource.DEFAULT_BUDGET_LEDGER", str(path))
        yield


@pytest.fixture(scope="module", autouse=True)
def _amplitude_budget_ledger_per_module(
    _amplitude_budget_ledger: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """And one per test module within it: a module talks to sandboxes of its own, projects
    whose windows start empty. Under pytest-xdist a worker runs whichever modules it is
    handed, so a session's ledger made one module wait on another's cohort requests (60
    per 10 minutes) depending on where they landed. Session-wide fixtures keep the
    session's ledger (they are set up before this)."""
    path = tmp_path_factory.mktemp("amplitude-budgets") / "amplitude-budgets.sqlite"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMPLITUDE_BUDGET_LEDGER", str(path))
        patch.setattr("analytics_assets.amplitude.resource.DEFAULT_BUDGET_LEDGER", str(path))
        yield


BuildOnce = Callable[[str, Callable[[Path], None]], Path]


@pytest.fixture(scope="session")
def build_once(tmp_path_factory: pytest.TempPathFactory) -> BuildOnce:
    """``build_once(name, build)``: a directory that ``build(directory)`` filled once for the
    whole test run, which every pytest-xdist worker then reads (without xdist: once for the
    session). For what many workers would otherwise each build, such as a fault-free
    reference warehouse; what it holds must not be written to afterwards.

    The first worker to ask builds it under a file lock while the others wait; should the
    build fail, the next one to ask tries again (and fails the same way).
    """
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp is a folder of the run's own (popen-gw0, ...).
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base

    def build_once(name: str, build: Callable[[Path], None]) -> Path:
        folder = root / f"built-{name}"
        with (root / f"built-{name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            done = folder / ".built"
            if not done.exists():
                shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
                folder.mkdir()
                build(folder)
                done.touch()
        return folder

    return build_once


# Under pytest-xdist a module's tests go to one worker together, so its module-scoped
# fixtures (a demo, the multi-host rehearsal, an installed project, a synced day) run once;
# modules are spread over the workers. The exception: modules of long, independent
# scenarios that share only session-wide work (built once for the run), spread test by
# test. (xdist's own `--dist loadgroup` marks do nothing on pytest 9.2: it renames node ids
# through an attribute pytest no longer reads.)
SPREAD_MODULES = frozenset({"tests/faults/test_fault_suite.py"})


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's load scheduling by module, SPREAD_MODULES by test (only for the default
    distribution: an explicit ``--dist`` is left to xdist)."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module in SPREAD_MODULES else module

    return ByModule(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules holding slow tests first (otherwise in their order): pytest-xdist hands
    out work in this order, and a run that starts a 4-minute suite last ends on it."""
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove the folder fakesnow makes in the temp directory when it is imported (one per
    test process that ran a Snowflake test) and never removes: CI leaves nothing behind."""
    stage = sys.modules.get("fakesnow.transforms.stage")
    bucket = getattr(stage, "LOCAL_BUCKET_PATH", None)
    if bucket and Path(bucket).name.startswith("fakesnow_bucket_"):
        shutil.rmtree(bucket, ignore_errors=True)
