"""The sandbox tests' frozen clock, in a module of its own: test files import it by name,
and ``conftest`` would resolve to whichever folder's conftest pytest imported first."""

from datetime import UTC, datetime

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)  # 10:00 in New York, a Wednesday
