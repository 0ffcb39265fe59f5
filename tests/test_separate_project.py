"""A separate ``dg`` project adopts this package the way a Dagster user would.

In a temporary directory: a new project ``adopter`` (its own ``pyproject.toml`` with
``[tool.dg]``, ``adopter/definitions.py`` loading ``adopter/defs/``) gets a virtual
environment of its own, into which this package is *installed* from a wheel built from
the work tree, with no extras (what a deployment gets: no sandbox, no web server), beside
the adopter project itself and ``dg``. Nothing is imported from the work tree: the
commands run in the adopter's directory with the new environment's interpreter, and the
test checks where ``analytics_assets`` was imported from.

The adopter declares ``Warehouse``, ``PendoSync`` and ``AmplitudeSync`` in YAML (scaffolded
with ``dg scaffold defs``, then filled in) under its own key prefix, table schema and key
variable names, pointed at the sandbox this test process serves on loopback; ``dg check
defs`` and ``dg list defs`` see the assets, and ``dagster asset materialize`` fills one day
of the warehouse.

The environment is built with pip from its cache (CI has just installed the same
packages into its own environment): about a minute of this test's time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from analytics_assets.sandbox import SandboxConfig, SandboxServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
DAY = "2026-11-17"  # a Tuesday, complete at NOW in New York (as in tests/assets/sync_day.py)
PENDO_ASSETS = ("account_daily_usage", "visitor_daily_usage", "features")
AMPLITUDE_ASSETS = ("daily_active_users",)
# Environment variables the adopter's YAML names (not this project's defaults, so a
# component that read its own default names would find nothing).
PENDO_KEY_VAR = "ADOPTER_PENDO_KEY"
AMP_KEY_VAR = "ADOPTER_AMP_KEY"
AMP_SECRET_VAR = "ADOPTER_AMP_SECRET"

ADOPTER_PYPROJECT = """\
[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "adopter"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["dagster==1.13.*", "analytics_assets"]

[project.optional-dependencies]
dev = ["dagster-dg-cli==1.13.*"]

[tool.setuptools.packages.find]
include = ["adopter*"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "adopter"
code_location_target_module = "adopter.definitions"
"""

ADOPTER_DEFINITIONS = """\
from pathlib import Path

import dagster as dg
from analytics_assets import with_warehouse_kind

defs = with_warehouse_kind(dg.load_from_defs_folder(path_within_project=Path(__file__).parent))
"""

# What goes into the wheel: the package and the files pyproject.toml names. Copied so
# that building never writes build/ or *.egg-info into the work tree (and two runs at
# once do not share them).
PACKAGE_FILES = ("pyproject.toml", "README.md")


class Adopter:
    """The adopter project on disk and a way to run commands in its environment."""

    def __init__(self, root: Path, venv: Path, env: dict[str, str]) -> None:
        self.root = root
        self.venv = venv
        self.env = env
        self.defs = root / "adopter" / "defs"

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, (
            f"{' '.join(args)} exited {done.returncode}\n"
            f"--- stdout\n{done.stdout[-6000:]}\n--- stderr\n{done.stderr[-6000:]}"
        )
        return done

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def python(self, code: str) -> str:
        return self.run(self.bin("python"), "-c", textwrap.dedent(code)).stdout


def _isolated_env(venv: Path, home: Path) -> dict[str, str]:
    """The adopter's environment: its venv first on PATH, nothing that would point Python
    at the work tree or at this test session's venv, and no variable of this project."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DAGSTER_HOME")
    ours = ("PENDO_", "AMPLITUDE_", "ANALYTICS_ASSETS_", "ADOPTER_")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith(ours)}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["DAGSTER_HOME"] = str(home)
    # dg and pip must not stop to ask or check for updates.
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


@pytest.fixture(scope="module")
def sandbox():
    config = SandboxConfig(seed=11, scale=1, now=NOW, amplitude_timezone="America/New_York")
    with SandboxServer(config) as server:
        yield server


@pytest.fixture(scope="module")
def adopter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Adopter]:
    tmp = tmp_path_factory.mktemp("separate-project")

    source = tmp / "analytics_assets-src"
    shutil.copytree(
        REPO / "analytics_assets",
        source / "analytics_assets",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    for name in PACKAGE_FILES:
        shutil.copy2(REPO / name, source / name)

    root = tmp / "adopter-project"
    package = root / "adopter"
    (package / "defs").mkdir(parents=True)
    (root / "pyproject.toml").write_text(ADOPTER_PYPROJECT)
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(ADOPTER_DEFINITIONS)

    # A venv of the interpreter under this session's venv (venv follows it to the base
    # Python), so the adopter's environment starts empty.
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    home = tmp / "dagster_home"
    home.mkdir()
    project = Adopter(root, venv, _isolated_env(venv, home))
    # One resolve for all three: this package (runtime dependencies only), the adopter
    # project (editable, as `dg` projects are) and its dev extra, dg.
    project.run(
        project.bin("python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        str(source),
        "-e",
        f"{root}[dev]",
        timeout=600,
    )
    yield project
    # The environment is ~550 MB and pytest keeps the last three sessions' temp folders;
    # the project's files stay for a look after a failure.
    shutil.rmtree(venv, ignore_errors=True)


def test_the_package_is_installed_in_the_adopters_environment(adopter: Adopter) -> None:
    found = json.loads(
        adopter.python(
            """
            import importlib.util, json
            import analytics_assets
            print(json.dumps({
                "file": analytics_assets.__file__,
                "extras": [m for m in ("starlette", "uvicorn", "dagster_webserver")
                           if importlib.util.find_spec(m)],
            }))
            """
        )
    )
    site = adopter.venv / "lib"
    assert Path(found["file"]).is_relative_to(site), found["file"]
    # The runtime install brings neither the sandbox's server nor the web server.
    assert found["extras"] == []


def test_dg_lists_this_packages_components(adopter: Adopter) -> None:
    listed = json.loads(adopter.run(adopter.bin("dg"), "list", "components", "--json").stdout)
    keys = {item["key"] for item in listed["items"]}
    for name in ("PendoSync", "AmplitudeSync", "Warehouse"):
        assert f"analytics_assets.{name}" in keys, sorted(keys)


@pytest.fixture(scope="module")
def declared(adopter: Adopter, sandbox: SandboxServer) -> Adopter:
    """The three components scaffolded by ``dg`` and filled in, keys in the environment."""
    base = sandbox.urls.base
    warehouse = adopter.root.parent / "wh.duckdb"
    instances = {
        "warehouse": ("analytics_assets.Warehouse", {"path": str(warehouse)}),
        "pendo": (
            "analytics_assets.PendoSync",
            {
                "base_url": base,
                "key_env_var": PENDO_KEY_VAR,
                "rate_per_second": 50,
                "timezone": "America/New_York",
                "start_date": "2026-11-01",
                "assets": list(PENDO_ASSETS),
                "key_prefix": ["adopter"],
                "table_schema": "adopter_pendo",
            },
        ),
        "amplitude": (
            "analytics_assets.AmplitudeSync",
            {
                "base_url": base,
                "api_key_env_var": AMP_KEY_VAR,
                "secret_key_env_var": AMP_SECRET_VAR,
                "budget_ledger": "memory",
                "timezone": "America/New_York",
                "start_date": "2026-11-01",
                "assets": list(AMPLITUDE_ASSETS),
                "key_prefix": ["adopter"],
            },
        ),
    }
    for path, (typename, attributes) in instances.items():
        adopter.run(adopter.bin("dg"), "scaffold", "defs", typename, path)
        defs_yaml = adopter.defs / path / "defs.yaml"
        assert f"type: {typename}" in defs_yaml.read_text()
        defs_yaml.write_text(
            yaml.safe_dump({"type": typename, "attributes": attributes}, sort_keys=False)
        )
    pendo = sandbox.config.pendo_keys["us"]
    amplitude = sandbox.config.amplitude_keys["us"]
    adopter.env.update(
        {
            PENDO_KEY_VAR: pendo.read,
            AMP_KEY_VAR: amplitude.api_key,
            AMP_SECRET_VAR: amplitude.secret_key,
        }
    )
    return adopter


def _expected_keys() -> set[str]:
    return {
        *(f"adopter/pendo/{name}" for name in PENDO_ASSETS),
        *(f"adopter/amplitude/{name}" for name in AMPLITUDE_ASSETS),
    }


def test_dg_checks_and_lists_the_declared_assets(declared: Adopter) -> None:
    declared.run(declared.bin("dg"), "check", "defs")
    listed = json.loads(declared.run(declared.bin("dg"), "list", "defs", "--json").stdout)
    assert {asset["asset_key"] for asset in listed["assets"]} == _expected_keys()
    resources = {resource["name"] for resource in listed["resources"]}
    assert {"warehouse", "pendo", "amplitude"} <= resources


def test_the_adopters_assets_name_their_warehouse(declared: Adopter) -> None:
    """Its definitions.py names the backend: the kind tag reads duckdb, not `warehouse`."""
    kinds = json.loads(
        declared.python(
            """
            import json
            from adopter.definitions import defs
            graph = defs.resolve_asset_graph()
            print(json.dumps({k.to_user_string(): sorted(graph.get(k).kinds)
                              for k in graph.get_all_asset_keys()}))
            """
        )
    )
    assert set(kinds) == _expected_keys()
    assert {tuple(k) for k in kinds.values()} == {("duckdb", "pendo"), ("amplitude", "duckdb")}


def test_one_day_materializes_into_the_adopters_warehouse(declared: Adopter) -> None:
    declared.run(
        declared.bin("dagster"),
        "asset",
        "materialize",
        "-m",
        "adopter.definitions",
        "--select",
        "key:adopter/*",
        "--partition",
        DAY,
        timeout=600,
    )
    # Read with the adopter's own DuckDB (the file's writer), in its environment.
    counts = json.loads(
        declared.python(
            f"""
            import duckdb, json
            con = duckdb.connect({str(declared.root.parent / "wh.duckdb")!r}, read_only=True)
            tables = con.execute(
                "SELECT table_schema || '.' || table_name FROM information_schema.tables"
            ).fetchall()
            print(json.dumps({{
                t: con.execute(f"SELECT count(*) FROM {{t}}").fetchone()[0] for (t,) in tables
            }}))
            """
        )
    )
    for name in PENDO_ASSETS:
        assert counts.get(f"adopter_pendo.{name}", 0) > 0, counts
    for name in AMPLITUDE_ASSETS:
        assert counts.get(f"amplitude.{name}", 0) > 0, counts
