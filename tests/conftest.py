"""Session-wide fixtures for every test folder."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["postgres_server"]

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
