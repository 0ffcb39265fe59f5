"""The day the daily-sync tests materialize, and the sandbox's frozen clock.

A module of its own (not ``conftest``): test files import it by name, and a name shared
with another folder's conftest would resolve to whichever folder pytest put first.
"""

from datetime import UTC, datetime

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
DAY = "2026-11-17"  # a Tuesday, complete at NOW in New York
