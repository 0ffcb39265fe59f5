"""Fixtures of the browser test: the demo's Dagster home, `analytics-assets dev` on it, and
Chromium.

Order of work (all module-scoped, so the demo and the webserver run once):

1. ``chromium_executable``: Debian's Chromium, or a skip with the reason (checked before the
   minute-long demo, so a machine without a browser skips at once).
2. ``demo_run``: ``run_demo(SandboxConfig(seed=42), days=2)`` in a subprocess, into a fresh
   data directory. A subprocess, because the demo changes ``os.environ``, the ``dagster``
   logger and process-wide caches (Amplitude budgets, the sync configuration) that other
   tests of the session rely on. What the demo materialized is then read from its instance,
   never recomputed from the clock, so a run that crosses midnight still checks the right days.
3. ``dagster_ui``: ``analytics-assets dev`` in the demo's data directory, as the README says
   to run it after the demo: it serves the demo's sandbox world again (its settings and
   staged writes, from ``demo.json``, on the demo's sandbox port) and ``dagster dev`` (the
   webserver and the daemon) on the demo's home, the webserver on a free loopback port;
   ready once ``/server_info`` answers and GraphQL says the code location is ``LOADED``.
4. ``browser`` / ``page``: headless Chromium through Playwright's sync API, with the launch
   flags this closed network needs. A failing test leaves ``FAILED-<test>.png``.

Screenshots, the demo's output and dev's log go to ``tests/_output/browser/`` (gitignored;
``BROWSER_TEST_OUTPUT`` overrides). ``BROWSER_TEST_DEMO_DATA=<data dir>`` reuses an earlier
demo's data directory instead of running the demo (when working on these tests). With
``BROWSER_TEST_DOCS=1`` the shots the README shows are also written, at a smaller size, to
``docs/screenshots/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = Path(
    os.environ.get("BROWSER_TEST_OUTPUT") or REPO_ROOT / "tests" / "_output" / "browser"
)

DEMO_SEED = 42
DEMO_DAYS = 2
# The demo runs the jobs through the instance (a run worker per run) and the sensors' late
# data re-runs with the multiprocess executor: about 3 minutes on a 2-core machine, up to
# twice that while the other pytest-xdist workers run the rest of the suite.
DEMO_TIMEOUT_SECONDS = 900
WEBSERVER_START_SECONDS = 180
# The SPA renders after several GraphQL round trips; CI machines are slow.
UI_TIMEOUT_MS = 60_000

# Without the background-networking flags Chromium's own connections (updates, sync,
# QUIC probes) are refused by the closed network and slow every page down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 1200}
# The README's screenshots: the visible page at this size, small enough to keep in the repo.
DOCS_DIR = REPO_ROOT / "docs" / "screenshots"
DOCS_VIEWPORT = {"width": 1280, "height": 800}
WRITE_DOCS = os.environ.get("BROWSER_TEST_DOCS") == "1"
# Dagster's "Join the Dagster community" dialog on localhost covers the page until dismissed;
# the UI remembers a dismissal in localStorage under this key.
DISMISS_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', '1');"

# run_demo in a child process, with the world `analytics-assets demo` uses (seed 42,
# scale 5); it writes its exit status to argv[3].
DEMO_SCRIPT = """\
import json, sys
from analytics_assets.demo import run_demo
from analytics_assets.sandbox.config import SandboxConfig

config = SandboxConfig(seed=int(sys.argv[1]), scale=5.0)
status = run_demo(config, days=int(sys.argv[2]))
with open(sys.argv[3], "w") as out:
    json.dump({"status": status}, out)
sys.exit(status)
"""


def find_chromium() -> str | None:
    """Debian's Chromium: ``/usr/bin/chromium``, else ``chromium`` on PATH."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


@dataclass(frozen=True)
class DemoRun:
    """What the demo left behind: its directories, world, output and daily partitions."""

    data_dir: Path
    dagster_home: Path
    world: dict[str, Any]  # demo.json: the sandbox world, days, staged writes and runs
    output: str  # what the demo printed
    partition_keys: tuple[str, ...]  # materialized daily partitions, oldest first
    seconds: float


@dataclass(frozen=True)
class DagsterUI:
    base_url: str
    demo: DemoRun
    sandbox_url: str  # the sandbox `dev` serves the demo's world on

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST a query to the webserver's ``/graphql``; the ``data`` of the answer."""
        response = httpx.post(
            f"{self.base_url}/graphql",
            json={"query": query, "variables": variables or {}},
            timeout=60,
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


@pytest.fixture(scope="module")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture(scope="module")
def chromium_executable() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(
            "Chromium is not installed (no /usr/bin/chromium, no chromium on PATH): "
            "run .ci/install-chromium as root, or apt-get install -y chromium"
        )
    return path


def _base_env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # Everything the demo writes goes under data_dir: no explicit warehouse elsewhere.
    env.pop("ANALYTICS_ASSETS_WAREHOUSE", None)
    env.pop("DAGSTER_HOME", None)
    env["ANALYTICS_ASSETS_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _materialized_keys(dagster_home: Path) -> tuple[str, ...]:
    """The daily partitions of ``pendo/account_daily_usage`` in the demo's instance."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        keys = instance.get_materialized_partitions(dg.AssetKey(["pendo", "account_daily_usage"]))
    return tuple(sorted(keys))


@pytest.fixture(scope="module")
def demo_run(
    chromium_executable: str, tmp_path_factory: pytest.TempPathFactory, output_dir: Path
) -> DemoRun:
    log_file = output_dir / "demo.log"
    reused = os.environ.get("BROWSER_TEST_DEMO_DATA")
    if reused:  # working on these tests: an earlier demo's data directory, as it is
        data_dir = Path(reused).resolve()
        home = data_dir / "dagster_home"
        world = json.loads((data_dir / "demo.json").read_text())
        output = log_file.read_text() if log_file.exists() else ""
        return DemoRun(data_dir, home, world, output, _materialized_keys(home), 0.0)
    root = tmp_path_factory.mktemp("browser-demo")
    data_dir = root / "data"
    result_file = root / "demo-result.json"
    started = time.monotonic()
    with log_file.open("w") as log:
        try:
            process = subprocess.run(
                [sys.executable, "-c", DEMO_SCRIPT, str(DEMO_SEED), str(DEMO_DAYS),
                 str(result_file)],
                cwd=REPO_ROOT, env=_base_env(data_dir), stdout=log, stderr=subprocess.STDOUT,
                timeout=DEMO_TIMEOUT_SECONDS, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo took over {DEMO_TIMEOUT_SECONDS} s:\n{_tail(log_file)}")
    seconds = time.monotonic() - started
    if process.returncode != 0 or not result_file.exists():
        pytest.fail(f"the demo exited with {process.returncode}:\n{_tail(log_file)}")
    home = data_dir / "dagster_home"
    keys = _materialized_keys(home)
    assert len(keys) == DEMO_DAYS, f"the demo materialized {keys}, expected {DEMO_DAYS} days"
    world = json.loads((data_dir / "demo.json").read_text())
    return DemoRun(data_dir, home, world, log_file.read_text(), keys, seconds)


def _wait_until_loaded(ui: DagsterUI, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + WEBSERVER_START_SECONDS
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"analytics-assets dev exited with {process.returncode}:\n{_tail(log_file)}"
            )
        try:
            httpx.get(f"{ui.base_url}/server_info", timeout=5).raise_for_status()
            data = ui.graphql(
                "{ workspaceOrError { __typename ... on Workspace { locationEntries {"
                " name loadStatus locationOrLoadError { __typename"
                " ... on PythonError { message } } } } } }"
            )
            entries = data["workspaceOrError"].get("locationEntries") or []
            loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
            for entry in loaded:
                error = entry["locationOrLoadError"] or {}
                if error.get("__typename") == "PythonError":
                    pytest.fail(f"code location {entry['name']} failed to load: {error}")
            if entries and len(loaded) == len(entries):
                return
            last_error = f"locations: {entries}"
        except (httpx.HTTPError, AssertionError, KeyError, ValueError) as exc:
            last_error = repr(exc)
        time.sleep(1)
    pytest.fail(
        f"analytics-assets dev not ready in {WEBSERVER_START_SECONDS} s ({last_error}):\n"
        f"{_tail(log_file)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop `dev`, its `dagster dev` and their children: the process group this fixture
    started (SIGTERM, which `dev` hands on to `dagster dev` as Ctrl+C would)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # a code server outliving its parent
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def dagster_ui(demo_run: DemoRun, output_dir: Path) -> Iterator[DagsterUI]:
    port = free_port()
    # `dev` finds the demo's world in the data directory; no sandbox flag, so it serves it
    # on the demo's port, as a user who runs the two README commands gets it.
    env = _base_env(demo_run.data_dir)
    log_file = output_dir / "dev.log"
    cmd = [sys.executable, "-m", "analytics_assets.cli", "dev", "--webserver-port", str(port)]
    with log_file.open("w") as log:
        process = subprocess.Popen(
            cmd, cwd=demo_run.data_dir.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    sandbox = f"http://127.0.0.1:{demo_run.world['port']}"
    ui = DagsterUI(f"http://127.0.0.1:{port}", demo_run, sandbox)
    try:
        _wait_until_loaded(ui, process, log_file)
        yield ui
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Browser]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def page(
    browser: Browser, dagster_ui: DagsterUI, output_dir: Path, request: pytest.FixtureRequest
) -> Iterator[Page]:
    """A fresh browser context on the webserver; a screenshot is kept when the test fails."""
    context = browser.new_context(viewport=VIEWPORT, base_url=dagster_ui.base_url)
    context.add_init_script(DISMISS_COMMUNITY_DIALOG)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    # Should the dialog show all the same (a new storage key in a later Dagster), skip it.
    page.add_locator_handler(
        page.get_by_text("Join the Dagster community"),
        lambda: page.get_by_role("button", name="Skip", exact=True).click(),
    )
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            page.screenshot(path=str(output_dir / f"FAILED-{request.node.name}.png"))
        context.close()


@pytest.fixture
def screenshot(page: Page, output_dir: Path) -> Callable[..., Path]:
    """``screenshot(name, docs=False)``: the page as ``<output>/<name>.png``; with ``docs``
    and ``BROWSER_TEST_DOCS=1``, also the visible page at the README's size, as
    ``docs/screenshots/<name>.png``."""

    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    def settle() -> None:
        # Let the page's pending queries land (spinners), without failing on a page that
        # keeps polling: the screenshot is evidence, the assertions are the test.
        with contextlib.suppress(PlaywrightTimeoutError):
            page.wait_for_load_state("networkidle", timeout=15_000)

    def take(name: str, docs: bool = False) -> Path:
        settle()
        path = output_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if docs and WRITE_DOCS:
            size = page.viewport_size
            page.set_viewport_size(DOCS_VIEWPORT)
            settle()
            DOCS_DIR.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(DOCS_DIR / f"{name}.png"))
            if size is not None:
                page.set_viewport_size(size)
        return path

    return take
