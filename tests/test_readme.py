"""The README's two set-up commands are the ones CI runs, and what the set-up section
promises holds: its screenshots are in the repo, and its way of reading the warehouse works
after the install."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = _readme_commands()
    assert commands == [
        'pip install -e ".[dev]" && analytics-assets demo',
        'pip install -e ".[dev]" && pytest',
    ]


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    install, test = _readme_commands()[1].split(" && ")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci
    assert any(line.startswith(test) for line in ci)


def test_readme_screenshots_are_in_the_repo() -> None:
    """The UI screenshots the README shows (taken by tests/browser) are committed files."""
    text = (ROOT / "README.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert images
    for image in images:
        path = ROOT / image
        assert path.is_file(), image
        assert path.stat().st_size < 400_000, f"{image} is not a small PNG"


def _sql(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analytics_assets.cli", "sql", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _warehouse(path: Path) -> None:
    import duckdb

    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA analytics")
        conn.execute(
            "CREATE TABLE analytics.alerts AS SELECT 'warning' AS severity, "
            "'account_activity_dropped' AS rule, 'account-000266' AS entity_id"
        )


def test_readme_reads_the_warehouse_with_a_command_the_project_ships(tmp_path: Path) -> None:
    """The install brings no `duckdb` command-line tool; the README's reading command is the
    project's own `analytics-assets sql`, and it works as written."""
    text = (ROOT / "README.md").read_text()
    setup = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    queries = re.findall(r'`analytics-assets sql "([^"`]+)"`', setup)
    assert queries, "the set-up section names no way to read the warehouse"
    data = tmp_path / "data"
    data.mkdir()
    _warehouse(data / "warehouse.duckdb")
    env = {**os.environ, "ANALYTICS_ASSETS_DATA_DIR": str(data)}
    env.pop("ANALYTICS_ASSETS_WAREHOUSE", None)
    for query in queries:
        answer = _sql(query, env=env)
        assert answer.returncode == 0, answer.stderr
        assert "account-000266" in answer.stdout
    listing = _sql(env=env)  # no query: every table and its row count
    assert listing.returncode == 0 and "analytics.alerts" in listing.stdout
    bad = _sql("SELEC 1", env=env)
    assert bad.returncode == 1 and "syntax error" in bad.stderr


WRITER = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
conn.execute("INSERT INTO analytics.alerts VALUES ('info', 'held', 'x')")
print("holding", flush=True)
sys.stdin.readline()  # until the test is done reading
conn.execute("INSERT INTO analytics.alerts VALUES ('info', 'after', 'y')")
print(conn.execute("SELECT count(*) FROM analytics.alerts").fetchone()[0], flush=True)
"""


def test_sql_reads_a_copy_and_never_blocks_a_writer(tmp_path: Path) -> None:
    """A run holds the DuckDB file open to write: `sql` still answers (from a copy), and
    the writer goes on writing (a reader on the file itself would have locked it out)."""
    path = tmp_path / "warehouse.duckdb"
    _warehouse(path)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "holding"
        answer = _sql("SELECT count(*) AS n FROM analytics.alerts", "--warehouse", str(path))
        assert answer.returncode == 0, answer.stderr
        writer.stdin.write("done\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "3"
        assert writer.wait(timeout=60) == 0
    finally:
        if writer.poll() is None:
            writer.kill()


def test_readme_python_example_builds_its_definitions() -> None:
    # The library example of "Use it in your own Dagster project" must stay runnable.
    text = (ROOT / "README.md").read_text()
    block = re.search(
        r"```python\n(import dagster as dg\nfrom analytics_assets import.*?)```", text, re.S
    )
    assert block, "the README lost its Python example"
    scope: dict[str, object] = {}
    exec(block.group(1), scope)  # noqa: S102 - our own README
    repo = scope["defs"].get_repository_def()  # type: ignore[attr-defined]
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert "product/pendo/account_daily_usage" in keys
    assert {"daily_sync", "catalog_refresh"} <= {j.name for j in repo.get_all_jobs()}


def test_the_scaling_recipe_is_the_deployment_files() -> None:
    """The README's multi-host recipe shows exactly what deploy/dagster.yaml (the file the
    rehearsal runs with) and dagster_cloud.yaml hold."""
    import yaml

    text = (ROOT / "README.md").read_text()
    section = text.split("### Backfills and scaling out", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    shown = [yaml.safe_load(block) for block in blocks]
    deploy = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    cloud = yaml.safe_load((ROOT / "dagster_cloud.yaml").read_text())
    assert deploy in shown
    assert cloud in shown
