"""One Amplitude project per region: its world, keys, time zone, stores, engines and limiters.

Every Amplitude route handler receives an :class:`AmplitudeTenant` and reads or
writes only through it, so the US and EU projects never see each other's data.

Public attributes relied on by the rest of the Amplitude half (and by Amp-B):

* ``region``, ``state``, ``world``, ``company``, ``keys`` (api_key, secret_key,
  project_id), ``project_id``, ``tz`` (project time zone), ``limits``;
* ``events`` (:class:`~.events.ProjectEvents`): the project's events, records and
  vectorised summaries;
* ``users`` (:class:`~.store.UserRegistry`), ``user_props``
  (:class:`~.store.UserPropertyStore`), ``group_props``
  (:class:`~.store.GroupPropertyStore`), ``user_groups`` (:class:`~.store.UserGroupStore`),
  ``ingested`` (:class:`~.store.IngestedEvents`);
* ``gates`` (:class:`~.budget.QueryGates`): Dashboard budget and concurrency pools;
* ``cohort_members``: a hook Amp-B sets to resolve ``userdata_cohort`` segments
  (cohort id -> numpy array of Amplitude IDs, or None when unknown);
* ``hidden_event_types``: names the taxonomy hides (omitted from ``/api/2/events/list``);
* ``now_ms()``, ``visible_before_ms()``, ``day_bounds(day)``, ``local_day(ms)``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from analytics_assets.sandbox.amplitude.budget import QueryGates
from analytics_assets.sandbox.amplitude.events import ProjectEvents
from analytics_assets.sandbox.amplitude.store import (
    GroupPropertyStore,
    IngestedEvents,
    InsertIdDedup,
    UserGroupStore,
    UserPropertyStore,
    UserRegistry,
)
from analytics_assets.sandbox.config import AmplitudeKeys, AmplitudeLimits
from analytics_assets.sandbox.limits import KeyedLimiters, TokenBucket
from analytics_assets.sandbox.state import SandboxState

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


class AmplitudeTenant:
    """The Amplitude project of one region."""

    def __init__(self, state: SandboxState, region: str) -> None:
        self.state = state
        self.region = region
        self.world = state.world(region)
        self.company = self.world.company
        self.keys: AmplitudeKeys = state.config.amplitude_keys[region]
        self.project_id = self.keys.project_id
        self.tz = ZoneInfo(state.config.amplitude_timezone)
        self.limits: AmplitudeLimits = state.config.amplitude_limits

        self.users = UserRegistry(self.project_id, self.company.visitor_index)
        self.user_props = UserPropertyStore()
        self.group_props = GroupPropertyStore()
        self.user_groups = UserGroupStore()
        self.ingested = IngestedEvents()
        self.dedup = InsertIdDedup()
        self.gates = QueryGates(self.limits)
        self.events = ProjectEvents(self)

        # Ingestion throughput: one token bucket per device id and per user id, with a
        # 30-second average allowance as burst ("averaged" in the docs).
        lim = self.limits
        self.httpapi_devices = KeyedLimiters(lambda: _eps_bucket(lim.ingestion_eps_per_device))
        self.httpapi_users = KeyedLimiters(lambda: _eps_bucket(lim.ingestion_eps_per_device))
        self.batch_devices = KeyedLimiters(lambda: _eps_bucket(lim.batch_eps_per_device))
        self.batch_users = KeyedLimiters(lambda: _eps_bucket(lim.batch_eps_per_device))

        self.cohort_members: Callable[[str], np.ndarray | None] = lambda cohort_id: None
        # Event types hidden through the taxonomy (Amp-B): omitted from /events/list.
        self.hidden_event_types: set[str] = set()

    # ----- clock and days ----------------------------------------------------------------

    def now_ms(self) -> int:
        return self.state.now_ms()

    def lag_ms(self) -> int:
        return int(self.limits.processing_lag_hours * HOUR_MS)

    def visible_before_ms(self) -> int:
        """Events uploaded at or before this moment are processed (exportable, queryable)."""
        return self.now_ms() - self.lag_ms()

    def local_day(self, ms: int) -> date:
        """The project-time-zone day of an instant."""
        return datetime.fromtimestamp(ms / 1000, tz=self.tz).date()

    def day_bounds(self, day: date) -> tuple[int, int]:
        """[start, end) of a project-time-zone day in epoch ms."""
        start = datetime(day.year, day.month, day.day, tzinfo=self.tz)
        nxt = day + timedelta(days=1)
        end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=self.tz)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def today(self) -> date:
        return self.local_day(self.now_ms())

    def describe(self) -> dict:
        return {
            "project_id": self.project_id,
            "ingested_events": len(self.ingested),
            "httpapi_throttled": self.httpapi_devices.refused() + self.httpapi_users.refused(),
            "batch_throttled": self.batch_devices.refused() + self.batch_users.refused(),
            **self.gates.describe(),
        }


def _eps_bucket(eps: float) -> TokenBucket:
    return TokenBucket(rate=eps, burst=eps * 30)
