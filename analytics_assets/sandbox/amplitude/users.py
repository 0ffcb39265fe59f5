"""User search (``/api/2/usersearch``) and user activity (``/api/2/useractivity``).

Both read the project's users and events through ``tenant.events`` (Amp-A's events
module), so an Amplitude ID, a device id and an event here are exactly those of the
export. :class:`UserDirectory` is also what cohorts and the profile API use to
resolve ids and to describe a user.

Both endpoints share one pool of 10 concurrent requests and 360 queries per hour
(``tenant.gates.admit_lookup()``), refused with the Dashboard 429 envelope.

A user's aggregates (``num_events``, sessions, revenue, ...) and the pages of events
cover the last ``user_history_days`` days (set on ``AmplitudeLimits``, else 90 for
companies up to ~20,000 users and down to 14 for larger ones): synthetic history is
generated a day at a time for every user at once, so an all-time scan per request
would cost seconds. ``first_used`` is still the real first
day (the Sign Up event), and ``last_used`` looks further back when the window is empty
(bounded; see ``_last_active_before_window``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from analytics_assets.sandbox.amplitude.auth import check_basic
from analytics_assets.sandbox.amplitude.catalog import GOLDEN, mix64
from analytics_assets.sandbox.amplitude.extra_common import (
    envelope_response,
    hold,
    json_response,
)
from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.company import LANGUAGES

DEFAULT_HISTORY_DAYS = 90
MIN_HISTORY_DAYS = 14
HISTORY_VISITOR_DAYS = 2_000_000
# The search's last_device_id looks at most this far back (the days cohorts read anyway).
LAST_DEVICE_DAYS = 14
MAX_ACTIVITY_LIMIT = 1000
# How far a dormant user's last active day is looked for, in visitor-days of generation.
SCAN_VISITOR_DAYS = 2_000_000
# The prefix search answers at most this many users, sorted by user id (the live
# sample is sorted that way; its cap is not documented).
MAX_PREFIX_MATCHES = 100
# Amplitude's "no location" value, a string in the live user activity sample.
UNKNOWN_LOCATION = "1.7976931348623157E308"
_U64 = np.uint64
_DIGIT_12_MASK = ~_U64(0xF << 12)  # the UUID's version nibble hides hex digit 12 of ``a``


def history_days(tenant: AmplitudeTenant) -> int:
    """Days of history a lookup reads: ``AmplitudeLimits.user_history_days`` when set, else
    90 days shortened for large companies (every day read costs a generation of the whole
    company's day), never below two weeks."""
    configured = getattr(tenant.limits, "user_history_days", None)
    if configured is not None:
        return int(configured)
    affordable = HISTORY_VISITOR_DAYS // max(1, tenant.company.n_visitors)
    return max(MIN_HISTORY_DAYS, min(DEFAULT_HISTORY_DAYS, affordable))


@dataclass
class UserSummary:
    """What ``userData`` says about a user, over the history window."""

    amplitude_id: int
    user_id: str | None
    num_events: int = 0
    num_sessions: int = 0
    usage_time: int = 0
    purchases: int = 0
    revenue: float = 0.0
    first_used: str | None = None
    last_used: str | None = None
    last_event_ms: int | None = None
    last_app: int | None = None
    last_record: dict[str, Any] | None = None  # last ingested record, for non-synthetic users
    last_device_id: str | None = None
    device_ids: list[str] = field(default_factory=list)


class UserDirectory:
    """Resolves ids and describes users of one project, synthetic and ingested alike."""

    def __init__(self, tenant: AmplitudeTenant) -> None:
        self.tenant = tenant
        self.events = tenant.events
        self.catalog = tenant.events.catalog
        self.company = tenant.company
        self._lock = threading.Lock()
        self._device_keys: tuple[np.ndarray, np.ndarray] | None = None

    # ----- identities ----------------------------------------------------------------------

    def visitor(self, amplitude_id: int) -> int | None:
        """The synthetic visitor behind an Amplitude ID, if it has signed up by now."""
        visitor = self.events.visitor_of(int(amplitude_id))
        if visitor is None or self.catalog.signup_ms[visitor] > self.tenant.now_ms():
            return None
        return visitor

    def known(self, amplitude_id: int) -> bool:
        return (
            self.visitor(amplitude_id) is not None
            or self.tenant.users.record(int(amplitude_id)) is not None
        )

    def user_id(self, amplitude_id: int) -> str | None:
        visitor = self.visitor(amplitude_id)
        if visitor is not None:
            return self.company.visitor_id(visitor)
        record = self.tenant.users.record(int(amplitude_id))
        return None if record is None else record.user_id

    def lookup_user(self, user_id: str) -> int | None:
        amp = self.tenant.users.lookup_user(user_id)
        return amp if amp is not None and self.known(amp) else None

    def lookup_device(self, device_id: str) -> int | None:
        amp = self.tenant.users.lookup_device(device_id)
        if amp is not None:
            return amp
        visitor = self._synthetic_device(device_id)
        if visitor is None:
            return None
        amp = self.events.amplitude_id(visitor)
        return amp if self.known(amp) else None

    def known_amplitude_ids(self) -> np.ndarray:
        """Every user of the project as of now, sorted (synthetic and ingested)."""
        signed = np.flatnonzero(self.catalog.signup_ms <= self.tenant.now_ms())
        ingested = [r.amplitude_id for r in self.tenant.users.records()]
        return np.unique(
            np.concatenate(
                [self.events.amp_base + signed.astype(np.int64), np.array(ingested, dtype=np.int64)]
            )
        )

    def user_ids_of(self, amps: np.ndarray) -> list[str]:
        """User ids for sorted Amplitude IDs ("" for anonymous users), vectorised for
        synthetic users (``visitor-%07d``)."""
        if amps.size == 0:
            return []  # numpy's string functions cannot size an empty array
        offset = amps - self.events.amp_base
        synthetic = (offset >= 0) & (offset < self.company.n_visitors)
        out = np.char.add("visitor-", np.char.zfill(offset.clip(0).astype(str), 7)).astype(object)
        for i in np.flatnonzero(~synthetic).tolist():
            record = self.tenant.users.record(int(amps[i]))
            out[i] = record.user_id if record and record.user_id else ""
        return out.tolist()

    def _synthetic_device(self, device_id: str) -> int | None:
        """Invert ``catalog.device_id`` with a sorted index of every (visitor, app) key."""
        hexes = device_id.replace("-", "").lower()
        if len(hexes) != 32:
            return None
        try:
            a = int(hexes[:16], 16)
        except ValueError:
            return None
        keys, pairs = self._device_index()
        masked = _U64(a) & _DIGIT_12_MASK
        pos = int(np.searchsorted(keys, masked))
        while pos < keys.size and keys[pos] == masked:
            code = int(pairs[pos])
            visitor, app = code >> 3, code & 7
            if self.catalog.device_id(visitor, app) == device_id:
                return visitor
            pos += 1
        return None

    def _device_index(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._device_keys is not None:
                return self._device_keys
        n_apps = len(self.company.apps)
        visitor = np.repeat(np.arange(self.company.n_visitors, dtype=np.int64), n_apps)
        app = np.tile(np.arange(n_apps, dtype=np.int64), self.company.n_visitors)
        # Same arithmetic as Catalog.device_id, for all pairs at once.
        a = mix64((visitor * 8 + app).astype(_U64) * GOLDEN + self.catalog.visitor_hash[visitor])
        keys = a & _DIGIT_12_MASK
        order = np.argsort(keys, kind="stable")
        index = (keys[order], (visitor * 8 + app)[order])
        with self._lock:
            self._device_keys = index
        return index

    # ----- search --------------------------------------------------------------------------

    def prefix_matches(self, prefix: str) -> list[tuple[str, int]]:
        """(user_id, amplitude_id) of users whose id starts with ``prefix``, sorted, capped."""
        found: list[tuple[str, int]] = []
        n = self.company.n_visitors
        stem = "visitor-"
        lo = hi = 0
        if stem.startswith(prefix):
            lo, hi = 0, n
        elif prefix.startswith(stem) and prefix[len(stem) :].isdigit() and len(prefix) <= 15:
            digits = prefix[len(stem) :]
            scale = 10 ** (7 - len(digits))
            lo, hi = int(digits) * scale, min(n, (int(digits) + 1) * scale)
        signed = self.catalog.signup_ms <= self.tenant.now_ms()
        for visitor in range(lo, max(lo, hi)):
            if signed[visitor]:
                found.append((self.company.visitor_id(visitor), self.events.amplitude_id(visitor)))
                if len(found) >= MAX_PREFIX_MATCHES:
                    break
        for user_id, amp in self.tenant.users.user_ids().items():
            if user_id.startswith(prefix) and self.visitor(amp) is None:
                found.append((user_id, amp))
        found.sort()
        return found[:MAX_PREFIX_MATCHES]

    def last_devices(self, amps: list[int]) -> dict[int, str | None]:
        """The device of each user's latest event of the last two weeks, else the user's
        first device (a search may match 100 users; a longer scan is not worth its cost)."""
        wanted = np.array(sorted(set(amps)), dtype=np.int64)
        out: dict[int, str | None] = {}
        today = self.tenant.today()
        for back in range(min(LAST_DEVICE_DAYS, history_days(self.tenant))):
            if len(out) == wanted.size:
                break
            frame = self.events.day_frame(today - timedelta(days=back))
            sel = np.flatnonzero(np.isin(frame.amp, wanted))
            for i in sel[np.argsort(frame.t[sel])[::-1]].tolist():
                amp = int(frame.amp[i])
                if amp not in out:
                    out[amp] = self._event_device(frame, i)
        for amp in wanted.tolist():
            if amp not in out:
                devices = self.events.device_ids(amp)
                out[amp] = devices[0] if devices else None
        return out

    def _event_device(self, frame: Any, i: int) -> str | None:
        if frame.ing[i] >= 0:
            return self.tenant.ingested.get(int(frame.ing[i])).device_id
        return self.catalog.device_id(int(frame.visitor[i]), int(frame.app[i]))

    # ----- summaries -----------------------------------------------------------------------

    def summary(self, amplitude_id: int) -> UserSummary:
        """Aggregates of one user's events over the history window (see module docstring)."""
        amp = int(amplitude_id)
        out = UserSummary(amp, self.user_id(amp), device_ids=self.events.device_ids(amp))
        today = self.tenant.today()
        sessions: dict[int, tuple[int, int]] = {}
        first_day: date | None = None
        t_purchase = self.catalog.t_purchase
        for back in range(history_days(self.tenant)):
            day = today - timedelta(days=back)
            frame = self.events.day_frame(day)
            sel = np.flatnonzero(frame.amp == amp)
            if not sel.size:
                continue
            first_day = day
            out.last_used = out.last_used or day.isoformat()
            out.num_events += int(sel.size)
            out.purchases += int(
                np.count_nonzero((frame.etype[sel] == t_purchase) | (frame.revenue[sel] > 0))
            )
            out.revenue += float(frame.revenue[sel].sum())
            for s, t in zip(frame.session[sel].tolist(), frame.t[sel].tolist(), strict=True):
                if s < 0:
                    continue
                lo, hi = sessions.get(s, (t, t))
                sessions[s] = (min(lo, t, s), max(hi, t))
            last = sel[int(np.argmax(frame.t[sel]))]
            if out.last_event_ms is None or frame.t[last] > out.last_event_ms:
                out.last_event_ms = int(frame.t[last])
                out.last_device_id = self._event_device(frame, int(last))
                if frame.ing[last] >= 0:
                    out.last_record = self.tenant.ingested.get(int(frame.ing[last])).record
                    out.last_app = None
                else:
                    out.last_app = int(frame.app[last])
        out.num_sessions = len(sessions)
        out.usage_time = int(sum(hi - lo for lo, hi in sessions.values()))
        visitor = self.visitor(amp)
        if visitor is not None:
            out.first_used = self.tenant.local_day(int(self.catalog.signup_ms[visitor])).isoformat()
            if out.last_used is None:
                # Past the bounded scan the first day is the one day we know they used it.
                out.last_used = self._last_active_before_window(visitor, today)
        else:
            record = self.tenant.users.record(amp)
            if record is not None:
                out.first_used = self.tenant.local_day(record.first_seen_ms).isoformat()
            elif first_day is not None:
                out.first_used = first_day.isoformat()
        if out.last_used is None:
            out.last_used = out.first_used
        if out.last_device_id is None and out.device_ids:
            out.last_device_id = out.device_ids[0]
        return out

    def _last_active_before_window(self, visitor: int, today: date) -> str | None:
        """A dormant user's last active day, from the activity rows (no expansion).

        A day's rows are generated for every visitor at once, so the scan is bounded to
        about ``SCAN_VISITOR_DAYS`` visitor-days of work (all history for the default
        company, at least the window again for a large one); None when nothing is found.
        """
        world, company = self.tenant.world, self.company
        signup = company.local_day(int(self.catalog.signup_ms[visitor]))
        window_days = history_days(self.tenant)
        budget = max(window_days, SCAN_VISITOR_DAYS // max(1, company.n_visitors))
        day = today - timedelta(days=window_days)
        stop = max(signup, day - timedelta(days=budget))
        while day >= stop:
            act = world.activity(day)
            hit = act.hour_ms[act.visitor == visitor]
            if hit.size:
                return self.tenant.local_day(int(hit.max())).isoformat()
            day -= timedelta(days=1)
        return signup.isoformat() if stop == signup else None

    def user_data(self, summary: UserSummary) -> dict[str, Any]:
        """``userData`` of ``/api/2/useractivity`` (field names and types of the live sample)."""
        amp = summary.amplitude_id
        visitor = self.visitor(amp)
        device: dict[str, Any] = {}
        place = {"country": "", "region": "", "city": "", "language": ""}
        groups: dict[str, list[str]] = {}
        ip = ""
        last_device = summary.last_device_id or ""
        if visitor is not None:
            cat, c = self.catalog, self.company
            app = summary.last_app if summary.last_app is not None else 0
            device = cat.device(app, int(c.visitor_browser[visitor]))
            city = int(cat.visitor_city[visitor])
            place = {
                "country": cat.country_names[int(cat.visitor_country[visitor])],
                "region": cat.city_regions[city],
                "city": cat.city_names[city],
                "language": LANGUAGES[int(c.visitor_language[visitor])],
            }
            groups = {"account": [c.account_id(int(c.visitor_account[visitor]))]}
            ip = cat.ip_address(visitor)
        record = summary.last_record
        if record is not None:
            device = {
                k: record.get(k)
                for k in (
                    "platform",
                    "os_name",
                    "os_version",
                    "device_family",
                    "device_type",
                    "device_carrier",
                    "version_name",
                )
            }
            place = {k: record.get(k) or "" for k in place}
            ip = record.get("ip_address") or ""

        def text(value: Any) -> str:
            return "" if value is None else str(value)

        os_text = " ".join(
            p for p in (text(device.get("os_name")), text(device.get("os_version"))) if p
        )
        return {
            "user_id": summary.user_id,
            "canonical_amplitude_id": amp,
            "merged_amplitude_ids": [],
            "num_events": summary.num_events,
            "num_sessions": summary.num_sessions,
            "usage_time": summary.usage_time,
            "first_used": summary.first_used,
            "last_used": summary.last_used,
            # Strings in the live sample, whatever the value.
            "purchases": str(summary.purchases),
            "revenue": repr(float(summary.revenue)),
            "platform": text(device.get("platform")),
            "os": os_text,
            "version": text(device.get("version_name")),
            "device": text(device.get("device_family")),
            "device_type": text(device.get("device_type")),
            "carrier": text(device.get("device_carrier")),
            **place,
            "dma": "",
            "start_version": "",
            "device_ids": summary.device_ids,
            "last_location": {"lat": UNKNOWN_LOCATION, "lng": UNKNOWN_LOCATION},
            "properties": self.events.user_properties(amp),
            "profileProperties": {},
            "last_device_id": last_device,
            "merge_times": {},
            "library": "http/2.0",
            "ip_address": ip,
            "paying": "true" if summary.purchases else "",
            "groups": groups,
            "aliasing_user_ids": [],
            "aliased_user_id": None,
            "aliased_amplitude_id": None,
            "aliasing_profiles": {},
        }

    def activity_events(
        self, amplitude_id: int, offset: int, limit: int, newest_first: bool
    ) -> list[dict[str, Any]]:
        """Export-format records of the history window, one page of them."""
        today = self.tenant.today()
        start, _ = self.tenant.day_bounds(today - timedelta(days=history_days(self.tenant) - 1))
        _, end = self.tenant.day_bounds(today)
        records = self.events.user_records(
            int(amplitude_id), start, end, limit=offset + limit, newest_first=newest_first
        )
        return records[offset : offset + limit]


# ----- HTTP ------------------------------------------------------------------------------


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    return int(raw)


def user_routes(tenant: AmplitudeTenant, directory: UserDirectory) -> list[BaseRoute]:
    """``/api/2/usersearch`` and ``/api/2/useractivity`` for one project."""

    async def guarded(request: Request, answer) -> Response:
        refused = check_basic(tenant, request)
        if refused is not None:
            return refused
        admission = tenant.gates.admit_lookup()
        if not admission.allowed:
            return admission.response()
        try:
            await hold(request)
            # Reading a user's days is CPU work: keep it off the event loop.
            return await run_in_threadpool(answer, request)
        finally:
            admission.release()

    def search(request: Request) -> Response:
        query = request.query_params.get("user", "").strip()
        if not query:
            return envelope_response(400, "Missing required parameter: user")
        if query.isdigit() and directory.known(int(query)):
            amp = int(query)
            kind, found = "match_amplitude_id", [(directory.user_id(amp), amp)]
        else:
            amp = directory.lookup_user(query)
            if amp is None:
                amp = directory.lookup_device(query)
            if amp is not None:
                kind, found = "match_user_or_device_id", [(directory.user_id(amp), amp)]
            else:
                found = directory.prefix_matches(query)
                kind = "match_user_prefix" if found else "nomatch"
        devices = directory.last_devices([amp for _, amp in found])
        matches = [
            # ``last_seen`` is null in every live answer we have, even for active users.
            {
                "user_id": user_id,
                "amplitude_id": amp,
                "last_seen": None,
                "last_device_id": devices.get(amp),
            }
            for user_id, amp in found
        ]
        return json_response({"type": kind, "matches": matches})

    def activity(request: Request) -> Response:
        raw = request.query_params.get("user", "").strip()
        if not raw:
            return envelope_response(400, "Missing required parameter: user")
        if not raw.isdigit():
            return envelope_response(
                400,
                f"Invalid Amplitude ID {raw!r}: user must be an "
                "Amplitude ID (use /api/2/usersearch to find it)",
            )
        try:
            offset = _int_param(request, "offset", 0)
            limit = _int_param(request, "limit", MAX_ACTIVITY_LIMIT)
        except ValueError:
            return envelope_response(400, "offset and limit must be integers")
        if offset < 0 or not 1 <= limit <= MAX_ACTIVITY_LIMIT:
            return envelope_response(
                400, f"limit must be between 1 and {MAX_ACTIVITY_LIMIT}, offset at least 0"
            )
        direction = request.query_params.get("direction", "latest")
        if direction not in ("latest", "earliest"):
            return envelope_response(400, "direction must be latest or earliest")
        amp = int(raw)
        if not directory.known(amp):
            return envelope_response(400, f"Amplitude ID {amp} not found")
        summary = directory.summary(amp)
        events = directory.activity_events(amp, offset, limit, direction == "latest")
        return json_response({"userData": directory.user_data(summary), "events": events})

    async def search_endpoint(request: Request) -> Response:
        return await guarded(request, search)

    async def activity_endpoint(request: Request) -> Response:
        return await guarded(request, activity)

    return [
        Route("/api/2/usersearch", search_endpoint, methods=["GET"]),
        Route("/api/2/useractivity", activity_endpoint, methods=["GET"]),
    ]
