"""The fault suite's table of faults tried and their outcomes (a pytest plugin;
tests/conftest.py loads it), printed when the session ends.

Each scenario's row travels with its test report (``user_properties``), so the table is
whole when pytest-xdist runs the scenarios on several workers: the controller, which
prints the summary, sees every report. Rows are in the order the scenarios finished.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pytest

ROW_PROPERTY = "fault_table_row"


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


class FaultTable:
    """Adds a scenario's row to its test's report."""

    def __init__(self, properties: list[tuple[str, object]]) -> None:
        self._properties = properties

    def add(self, **values: Any) -> None:
        self._properties.append((ROW_PROPERTY, asdict(FaultRow(**values))))

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


def markdown(rows: list[FaultRow]) -> str:
    head = (
        "| fault | job | outcome | details | requests | faults injected | retries | "
        "429s | seconds |\n|---|---|---|---|---:|---:|---:|---:|---:|"
    )
    body = [
        f"| {r.fault} | {r.job} | {r.outcome} | {r.details} | {r.requests} | "
        f"{r.injected} | {r.retries} | {r.throttled} | {r.seconds:.1f} |"
        for r in rows
    ]
    return "\n".join([head, *body])


@pytest.fixture
def fault_table(request: pytest.FixtureRequest) -> FaultTable:
    """Records this scenario's row; the table is printed at the end of the session."""
    return FaultTable(request.node.user_properties)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    rows = [
        FaultRow(**value)
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == ROW_PROPERTY
    ]
    if rows:
        terminalreporter.write(
            "\n\nFault suite: faults tried and outcomes (requests, faults injected and 429s "
            "as the sandbox counted them; retries from the steps' API summaries)\n\n"
            + markdown(rows)
            + "\n"
        )
