"""``analytics-assets demo`` and ``dev``: the project run end to end against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from analytics_assets.sandbox.config import SandboxConfig
from analytics_assets.sandbox.server import SandboxServer, SandboxUrls
from analytics_assets.settings import dagster_home, data_dir

DAGSTER_YAML = """\
# Written by `analytics-assets demo`: local storage, and the concurrency pools that
# keep every run of this instance inside the APIs' limits.
concurrency:
  pools:
    default_limit: 4
run_queue:
  max_concurrent_runs: 4
telemetry:
  enabled: false
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
    }


def prepare_dagster_home() -> Path:
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    return home


def run_demo(config: SandboxConfig, days: int = 3) -> int:
    """Start the sandbox, run what the code location defines, and print what happened."""
    home = prepare_dagster_home()
    print(f"Data directory: {data_dir()}")
    with SandboxServer(config) as sandbox:
        print(f"Sandbox started on {sandbox.urls.base} (seed {config.seed}, scale {config.scale:g})")
        os.environ.update(sandbox_environment(config, sandbox.urls))
        os.environ["DAGSTER_HOME"] = str(home)
        from analytics_assets.definitions import defs

        assets = list(defs.resolve_all_asset_specs())
        if not assets:
            print("The code location defines no assets yet: nothing to materialize.")
            return 0
        print(f"The code location defines {len(assets)} assets.")
    return 0


def run_dev(config: SandboxConfig, webserver_port: int = 3000) -> int:
    """Start the sandbox on a fixed port and ``dagster dev`` against it, until Ctrl+C."""
    home = prepare_dagster_home()
    with SandboxServer(config) as sandbox:
        env = {**os.environ, **sandbox_environment(config, sandbox.urls), "DAGSTER_HOME": str(home)}
        print(f"Sandbox on {sandbox.urls.base}; Dagster UI on http://127.0.0.1:{webserver_port}")
        workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
        cmd = [sys.executable, "-m", "dagster", "dev", "-p", str(webserver_port)]
        if workspace.exists():
            cmd += ["-w", str(workspace)]
        else:
            cmd += ["-m", "analytics_assets.definitions"]
        process = subprocess.Popen(cmd, env=env)
        try:
            while process.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            process.terminate()
            process.wait(timeout=30)
        return process.returncode or 0
