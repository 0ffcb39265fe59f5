"""Fixtures of the fault suite: sandboxes started fresh per scenario, and the table of
faults tried and their outcomes, printed when the session ends.

A fresh sandbox per scenario makes each scenario's faults reproducible: the sandbox's
fault plan draws from a generator seeded with ``SandboxConfig.seed``, and the
in-process executor sends the job's requests in a fixed order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from analytics_assets.sandbox import SandboxConfig, SandboxServer
from analytics_assets.sandbox.config import AmplitudeKeys

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


@dataclass(frozen=True)
class FaultRow:
    fault: str
    job: str
    outcome: str
    details: str
    requests: int
    injected: int
    retries: int
    throttled: int
    seconds: float


@dataclass
class FaultTable:
    """The rows the scenarios add, rendered as one Markdown table."""

    rows: list[FaultRow] = field(default_factory=list)

    def add(self, **values: object) -> None:
        self.rows.append(FaultRow(**values))  # type: ignore[arg-type]

    @staticmethod
    def injected(seen: dict) -> int:
        """How many faults the sandbox injected, from its counters."""
        return sum(seen["faults"].values())

    def record(
        self, fault: str, job: str, outcome: str, details: str, seen: dict, run: Any
    ) -> None:
        """One row from the sandbox's counters of the faulted run (``seen``) and the run's
        own figures (``run``: retries and wall seconds)."""
        self.add(
            fault=fault,
            job=job,
            outcome=outcome,
            details=details,
            requests=seen["total"],
            injected=self.injected(seen),
            retries=run.retries,
            throttled=seen["by_status"].get("429", 0),
            seconds=run.seconds,
        )

    def markdown(self) -> str:
        head = (
            "| fault | job | outcome | details | requests | faults injected | retries | "
            "429s | seconds |\n|---|---|---|---|---:|---:|---:|---:|---:|"
        )
        body = [
            f"| {r.fault} | {r.job} | {r.outcome} | {r.details} | {r.requests} | "
            f"{r.injected} | {r.retries} | {r.throttled} | {r.seconds:.1f} |"
            for r in self.rows
        ]
        return "\n".join([head, *body])


@pytest.fixture(scope="session")
def fault_table(request: pytest.FixtureRequest) -> Iterator[FaultTable]:
    """Collects one row per scenario; prints the table at the end of the session."""
    table = FaultTable()
    yield table
    if not table.rows:
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    text = (
        "\n\nFault suite: faults tried and outcomes (requests, faults injected and 429s "
        "as the sandbox counted them; retries from the steps' API summaries)\n\n"
        + table.markdown()
        + "\n"
    )
    if capture is None:
        print(text)
        return
    with capture.global_and_fixture_disabled():
        print(text)
