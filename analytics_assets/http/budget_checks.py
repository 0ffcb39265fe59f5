"""Checks shared by the in-memory (``limits.CostBudget``) and shared (``shared_budget``:
SQLite or Postgres) ledgers, so all refuse the same settings and costs with the same words."""

from __future__ import annotations


def check_budget_settings(
    name: str, capacity: float | None, window_seconds: float, max_concurrent: int | None
) -> None:
    """Refuse budget settings that cannot work, naming the budget (both ledgers use it)."""
    if capacity is not None and capacity <= 0:
        raise ValueError(f"{name}: capacity must be > 0, got {capacity}")
    if window_seconds <= 0:
        raise ValueError(f"{name}: window_seconds must be > 0, got {window_seconds}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ValueError(f"{name}: max_concurrent must be >= 1, got {max_concurrent}")


def check_cost(name: str, cost: float, capacity: float | None, window_seconds: float) -> None:
    """Refuse a cost that is negative or that no window could ever hold."""
    if cost < 0:
        raise ValueError(f"{name}: cost must be >= 0, got {cost}")
    if capacity is not None and cost > capacity:
        raise ValueError(
            f"{name}: a request costing {cost:g} can never run within the budget of "
            f"{capacity:g} per {window_seconds:g} s; narrow it (fewer days, "
            "segments or group-bys) and split it into several requests"
        )
