"""Fixtures of the fault suite: sandboxes started fresh per scenario (the table of faults
tried and their outcomes is tests/fault_table.py's).

A fresh sandbox per scenario makes each scenario's faults reproducible: the sandbox's
fault plan draws from a generator seeded with ``SandboxConfig.seed``, and the
in-process executor sends the job's requests in a fixed order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime

import pytest

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.config import AmplitudeKeys, PendoKeys

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
SEED, SCALE = 42, 1.0  # 100 accounts: the shipped CRM sample's accounts all exist


_PROJECTS = itertools.count(1)


def suite_sandbox_config() -> SandboxConfig:
    config = SandboxConfig(seed=SEED, scale=SCALE, now=NOW, amplitude_timezone="America/New_York")
    # Each sandbox is a new Amplitude project (same data, its own keys): the client keeps
    # Amplitude's budgets per project and process, and the cohort API allows 60 requests
    # per 10 minutes, which a session of scenarios on one project would use up.
    project = next(_PROJECTS)
    us = config.amplitude_keys["us"]
    config.amplitude_keys["us"] = AmplitudeKeys(
        api_key=f"fault-suite-api-key-{project}",
        secret_key=f"fault-suite-secret-key-{project}",
        project_id=us.project_id,
    )
    # Pendo's keys too: the rate the client learns from 429s is kept in the session's ledger
    # per key and base URL, and a later sandbox on the same port would start from the rate
    # an earlier scenario's faults taught (0.1 request/s after a storm).
    config.pendo_keys["us"] = PendoKeys(
        read=f"fault-suite-pendo-read-{project}", write=f"fault-suite-pendo-write-{project}"
    )
    # Cohort downloads finish at the first status poll (the knob is read by name, see
    # sandbox/amplitude/cohort_routes.py): the suite is about faults, not about waiting.
    config.amplitude_limits.cohort_job_polls = 0
    return config


@pytest.fixture(scope="session")
def start_sandbox() -> Callable[[], AbstractContextManager[SandboxServer]]:
    """``with start_sandbox() as sandbox:`` a fresh, fault-free sandbox on loopback."""

    @contextmanager
    def start() -> Iterator[SandboxServer]:
        with SandboxServer(suite_sandbox_config()) as server:
            yield server

    return start
