"""The project's events: a deterministic expansion of the world's activity, plus ingested events.

Every Pendo visitor-hour row (``world.activity(day)``) becomes
``floor(num_events × amplitude_events_per_pendo_event + 0.5)`` Amplitude events
(:func:`row_event_counts`, so cohort or segmentation code can count without
expanding). Event ``k`` of a row is a pure function of ``(seed, project, visitor,
hour, k)``: its time (inside the row's hour, increasing with ``k``), its upload delay
(0.15–5 s, or 5–55 minutes for 3 % of events, which then land in a later upload
hour), its type (``k == 0`` is ``Session Start``; then pages, features, tracked
events, purchases for paying accounts) and its properties. On top of that, each
visitor has one ``Sign Up`` event at ``Company.visitor_first_visit_ms`` (so a user's
first event ever is on their creation day), staged late events (``World`` late
events, uploaded at their arrival) and events ingested through the API.

An event is *visible* (exportable, queryable) once ``server_upload_time +
processing_lag <= now``. Summaries are vectorised over numpy columns and never build
a record; records are built in numpy-batched chunks (timestamps, ids) and joined
with per-user and per-event-type JSON fragments.

Public API (``tenant.events``):

* ``row_event_counts(num_events)``, ``catalog`` (types, variants, user tables);
* ``batch_between(lo_ms, hi_ms, by="time"|"upload")`` -> :class:`Batch` of synthetic events;
* ``day_frame(day)`` -> :class:`Frame` (visible events of a project-tz day, ingested
  included); ``type_counts(day)``, ``active_users(day)``, ``new_users(day)``,
  ``user_counts(day, etype=None)``;
* ``upload_hour_counts(start_hour_ms, end_hour_ms, stop_above)``;
* ``iter_export_records(start_hour_ms, end_hour_ms)`` -> :class:`ExportChunk` per member;
* ``records(frame_or_batch_selection)``, ``user_records(amplitude_id, start_ms, end_ms)``;
* ``user_properties(amplitude_id, at_ms=None)``, ``device_ids(amplitude_id)``,
  ``amplitude_id(visitor)``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from analytics_assets.sandbox.amplitude.catalog import GOLDEN, Catalog, mix64
from analytics_assets.sandbox.amplitude.records import RecordWriter
from analytics_assets.sandbox.amplitude.store import AMP_ID_STRIDE

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
SHORT_DELAY_MS = (150, 5_000)
LONG_DELAY_MS = (5 * 60_000, 55 * 60_000)  # < 1 h: an event lands at most one hour later
LONG_DELAY_PER_10K = 300  # 3 % of events are uploaded late
MAX_DELAY_MS = LONG_DELAY_MS[1] + SHORT_DELAY_MS[1]
# Zip members split an hour above this many events (live exports show several #n).
MEMBER_EVENTS = 100_000
# The average serialised record with all 62 live keys (measured ≈1.75 KB; a test keeps
# this within 15 %), for the export's size estimate.
AVG_RECORD_BYTES = 1_750
# Export generation speed used to predict a 504: measured ≈290k events/s in process with
# ISA-L on this 2-core VM, ≈210k/s end to end over HTTP; the estimate stays below both.
EXPORT_EVENTS_PER_SECOND = 200_000

_U64 = np.uint64
# Events serialised and compressed at a time inside a member: small enough to stay in
# the CPU caches, large enough to amortise numpy's per-call overhead.
SLICE_EVENTS = 4096
# Rows of day frames the cache keeps between queries (about 0.9 GB at ~115 bytes a row).
FRAME_CACHE_ROWS = 8_000_000


def row_event_counts(num_events: np.ndarray, ratio: float) -> np.ndarray:
    """Amplitude events of each Pendo visitor-hour row (round half up, deterministic)."""
    return np.floor(np.asarray(num_events, dtype=np.float64) * ratio + 0.5).astype(np.int64)


@dataclass
class Rows:
    """Visitor-hour rows to expand (synthetic rows have salt 0; late rows 1 + index)."""

    visitor: np.ndarray
    hour_ms: np.ndarray
    app: np.ndarray
    num_events: np.ndarray
    num_minutes: np.ndarray
    salt: np.ndarray
    arrived_ms: np.ndarray  # -1 when on time

    def __len__(self) -> int:
        return int(self.visitor.size)

    def take(self, sel: np.ndarray) -> Rows:
        return Rows(**{f.name: getattr(self, f.name)[sel] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Rows)}
        )

    @staticmethod
    def empty() -> Rows:
        return Rows(
            np.zeros(0, np.int32),
            np.zeros(0, np.int64),
            np.zeros(0, np.int8),
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
            np.zeros(0, np.int64),
        )


@dataclass
class Batch:
    """Synthetic events as parallel columns (one entry per event)."""

    visitor: np.ndarray  # int32
    app: np.ndarray  # int8
    t: np.ndarray  # event time, ms
    up: np.ndarray  # server upload time, ms
    etype: np.ndarray  # int32, index into catalog.event_types
    ep: np.ndarray  # int32, index into catalog.variants
    session: np.ndarray  # int64 session id (ms)
    key: np.ndarray  # uint64 per-event hash (ids)
    event_id: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.t.size)

    def take(self, sel: np.ndarray) -> Batch:
        return Batch(**{f.name: getattr(self, f.name)[sel] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Batch]) -> Batch:
        return Batch(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Batch)}
        )


@dataclass
class Frame:
    """The visible events of one project-time-zone day, synthetic and ingested.

    ``visitor`` is -1 for users who are not synthetic visitors; ``ing`` is the index
    into ``tenant.ingested`` for ingested events and -1 for synthetic ones (whose
    ``batch`` row is ``syn`` then).
    """

    day: date
    amp: np.ndarray
    visitor: np.ndarray
    etype: np.ndarray
    ep: np.ndarray
    t: np.ndarray
    up: np.ndarray
    app: np.ndarray
    session: np.ndarray
    revenue: np.ndarray
    ing: np.ndarray
    batch: Batch  # the synthetic part (first len(batch) entries of the columns)

    def __len__(self) -> int:
        return int(self.t.size)


@dataclass
class ExportChunk:
    """One zip member of the export: an upload hour's events (or a part of them).

    ``pieces`` yields the member's NDJSON a slice of events at a time; consume it
    before asking the iterator for the next chunk. ``ndjson()`` joins it (tests).
    """

    hour_ms: int
    part: int
    count: int
    pieces: Iterator[bytes]

    def ndjson(self) -> bytes:
        return b"".join(self.pieces)


class ProjectEvents:
    """The events of one Amplitude project (see the module docstring)."""

    def __init__(self, tenant: AmplitudeTenant) -> None:
        self.tenant = tenant
        self.world = tenant.world
        self.company = tenant.company
        self.project_id = tenant.project_id
        self.ratio = float(tenant.state.config.amplitude_events_per_pendo_event)
        self.catalog = Catalog(self.company, tenant.region, tenant.project_id)
        self.amp_base = self.project_id * AMP_ID_STRIDE
        self._seed = _U64(
            (self.company.seed * 0x100000001B3 + self.project_id * 7919) & 0xFFFFFFFFFFFFFFFF
        )
        self._lock = threading.Lock()
        self._rows_cache: OrderedDict[tuple, Rows] = OrderedDict()
        self._frame_cache: OrderedDict[tuple, Frame] = OrderedDict()
        self._summary_cache: dict[tuple, Any] = {}
        self.writer = RecordWriter(self)

    # ----- identities ----------------------------------------------------------------------

    def amplitude_id(self, visitor: int) -> int:
        return self.amp_base + int(visitor)

    def visitor_of(self, amplitude_id: int) -> int | None:
        visitor = self.tenant.users.visitor_of(int(amplitude_id))
        return visitor if visitor is not None and visitor < self.company.n_visitors else None

    def device_ids(self, amplitude_id: int) -> list[str]:
        visitor = self.visitor_of(amplitude_id)
        ids = []
        if visitor is not None:
            ids = [self.catalog.device_id(visitor, a) for a in range(len(self.company.apps))]
        record = self.tenant.users.record(amplitude_id)
        if record is not None:
            ids += [d for d in record.device_ids if d not in ids]
        return ids

    def user_properties(self, amplitude_id: int, at_ms: int | None = None) -> dict[str, Any]:
        """The user's properties (synthetic base + identify updates up to ``at_ms``)."""
        visitor = self.visitor_of(amplitude_id)
        base = {} if visitor is None else self.catalog.base_user_properties(visitor)
        return self.tenant.user_props.properties(amplitude_id, base, at_ms)

    # ----- rows ----------------------------------------------------------------------------

    def row_event_counts(self, num_events: np.ndarray) -> np.ndarray:
        return row_event_counts(num_events, self.ratio)

    def _day_rows(self, pendo_day: date) -> Rows:
        key = (pendo_day, self.world.version)
        with self._lock:
            cached = self._rows_cache.get(key)
            if cached is not None:
                self._rows_cache.move_to_end(key)
                return cached
        # as_of 0: the day as generated (quiet accounts applied) without late events,
        # which are expanded on their own so that a late arrival never moves the times
        # of events already exported.
        act = self.world.activity(pendo_day, as_of_ms=0)
        order = np.argsort(act.hour_ms, kind="stable")
        n = order.size
        rows = Rows(
            visitor=act.visitor[order].astype(np.int32),
            hour_ms=act.hour_ms[order].astype(np.int64),
            app=act.app[order].astype(np.int8),
            num_events=act.num_events[order].astype(np.int32),
            num_minutes=act.num_minutes[order].astype(np.int32),
            salt=np.zeros(n, np.int32),
            arrived_ms=np.full(n, -1, np.int64),
        )
        with self._lock:
            self._rows_cache[key] = rows
            while len(self._rows_cache) > 8:
                self._rows_cache.popitem(last=False)
        return rows

    def rows_between(self, lo_ms: int, hi_ms: int) -> Rows:
        """Synthetic visitor-hour rows whose hour starts in [lo_ms, hi_ms)."""
        if hi_ms <= lo_ms:
            return Rows.empty()
        c = self.company
        first, last = c.local_day(lo_ms), c.local_day(hi_ms - 1)
        parts = []
        day = first
        while day <= last:
            rows = self._day_rows(day)
            a, b = np.searchsorted(rows.hour_ms, [lo_ms, hi_ms])
            if b > a:
                parts.append(rows.take(slice(a, b)))
            day += timedelta(days=1)
        return Rows.concat(parts) if parts else Rows.empty()

    def late_rows(self) -> Rows:
        late = self.world.late_events()
        if not late:
            return Rows.empty()
        n = len(late)
        return Rows(
            visitor=np.array([e.visitor for e in late], np.int32),
            hour_ms=np.array([e.hour_ms - e.hour_ms % HOUR_MS for e in late], np.int64),
            app=np.array([e.app for e in late], np.int8),
            num_events=np.array([e.num_events for e in late], np.int32),
            num_minutes=np.array([min(60, 1 + e.num_events // 3) for e in late], np.int32),
            salt=np.arange(1, n + 1, dtype=np.int32),
            arrived_ms=np.array([e.arrived_ms for e in late], np.int64),
        )

    # ----- expansion -----------------------------------------------------------------------

    def _row_plan(self, rows: Rows) -> tuple[np.ndarray, ...]:
        """Per row: event count, hash, first event time (= session id) and spacing."""
        n = self.row_event_counts(rows.num_events)
        rowkey = mix64(
            rows.visitor.astype(_U64) * GOLDEN
            ^ (rows.hour_ms // HOUR_MS).astype(_U64) * _U64(0xD6E8FEB86659FD93)
            ^ rows.salt.astype(_U64) * _U64(0xA0761D6478BD642F)
            ^ self._seed
        )
        span = np.clip(rows.num_minutes.astype(np.int64) * 60_000, 60_000, HOUR_MS)
        rowstart = rows.hour_ms + (rowkey % (HOUR_MS - span + 1).astype(_U64)).astype(np.int64)
        step = np.maximum(span // np.maximum(n, 1), 1)
        return n, rowkey, rowstart, step

    def _times(self, rows: Rows) -> tuple[np.ndarray, ...]:
        """Per event: row index, k, key, event time, upload time (cheap columns only).

        Events of a row are spread over its ``num_minutes`` inside the hour, ``step``
        apart with a jitter below ``step``, so they stay in order and inside the hour.
        """
        n, rowkey, rowstart, step = self._row_plan(rows)
        total = int(n.sum())
        ridx = np.repeat(np.arange(len(rows), dtype=np.int64), n)
        starts = np.cumsum(n) - n
        k = np.arange(total, dtype=np.int64) - starts[ridx]
        key = mix64(rowkey[ridx] + (k + 1).astype(_U64) * GOLDEN)
        s = step[ridx]
        jitter = ((key >> _U64(20)) % s.astype(_U64)).astype(np.int64)
        t = rowstart[ridx] + k * s + np.where(k > 0, jitter, 0)
        delay = self._delays(key)
        arrived = rows.arrived_ms[ridx]
        up = np.where(arrived >= 0, np.maximum(arrived, t) + delay % SHORT_DELAY_MS[1], t + delay)
        return ridx, k, key, t, up

    @staticmethod
    def _delays(key: np.ndarray) -> np.ndarray:
        short = SHORT_DELAY_MS[0] + ((key >> _U64(8)) % _U64(SHORT_DELAY_MS[1] - SHORT_DELAY_MS[0]))
        long = LONG_DELAY_MS[0] + ((key >> _U64(8)) % _U64(LONG_DELAY_MS[1] - LONG_DELAY_MS[0]))
        late = ((key >> _U64(40)) % _U64(10_000)) < LONG_DELAY_PER_10K
        return np.where(late, long, short).astype(np.int64)

    def _finish(self, rows: Rows, ridx, k, key, t, up) -> Batch:
        """Types, properties and sessions of selected events."""
        cat = self.catalog
        visitor = rows.visitor[ridx]
        app = rows.app[ridx]
        u1 = (key >> _U64(11)).astype(np.float64) / 2.0**53
        u2 = ((key >> _U64(3)) & _U64(0xFFFFFF)).astype(np.float64) / 2.0**24
        ep = np.empty(t.size, dtype=np.int32)
        page = u1 < 0.40
        feature = (u1 >= 0.40) & (u1 < 0.82)
        track = u1 >= 0.82
        for a in range(len(self.company.apps)):
            in_app = app == a
            for mask, (eps, cum) in (
                (page, cat.page_choices[a]),
                (feature, cat.feature_choices[a]),
            ):
                m = mask & in_app
                ep[m] = eps[np.minimum(np.searchsorted(cum, u2[m]), eps.size - 1)]
        eps, cum = cat.track_choice
        ep[track] = eps[np.minimum(np.searchsorted(cum, u2[track]), eps.size - 1)]
        paying = cat.account_paying[self.company.visitor_account[visitor]]
        buy = paying & (u1 >= 0.994)
        ep[buy] = cat.purchase_eps[(key[buy] % _U64(cat.purchase_eps.size)).astype(np.int64)]
        first = k == 0
        ep[first] = cat.ep_session
        # Session id = the time of the row's Session Start (k == 0).
        session = self._row_plan(rows)[2][ridx]
        return Batch(
            visitor=visitor.astype(np.int32),
            app=app.astype(np.int8),
            t=t,
            up=up,
            etype=cat.variant_etype[ep],
            ep=ep,
            session=session,
            key=key,
            event_id=(k + 1).astype(np.int64),
        )

    def _signups(self, lo_ms: int, hi_ms: int) -> Batch:
        """Sign Up events with time in [lo_ms, hi_ms)."""
        cat = self.catalog
        a, b = np.searchsorted(cat.signup_sorted, [lo_ms, hi_ms])
        visitor = cat.signup_order[a:b].astype(np.int32)
        t = cat.signup_sorted[a:b].astype(np.int64)
        quiet = self._quiet_from()
        if quiet is not None and visitor.size:
            keep = t < quiet[self.company.visitor_account[visitor]]
            visitor, t = visitor[keep], t[keep]
        key = mix64(visitor.astype(_U64) * GOLDEN ^ self._seed ^ _U64(0x5151))
        delay = SHORT_DELAY_MS[0] + (key >> _U64(8)) % _U64(SHORT_DELAY_MS[1] - SHORT_DELAY_MS[0])
        n = visitor.size
        return Batch(
            visitor=visitor,
            app=np.zeros(n, np.int8),
            t=t,
            up=t + delay.astype(np.int64),
            etype=np.full(n, cat.t_signup, np.int32),
            ep=np.full(n, cat.ep_signup, np.int32),
            session=t.copy(),
            key=key,
            event_id=np.ones(n, np.int64),
        )

    def _quiet_from(self) -> np.ndarray | None:
        quiet = self.world.staged()["quiet_accounts"]
        if not quiet:
            return None
        out = np.full(self.company.n_accounts, np.iinfo(np.int64).max, dtype=np.int64)
        for account_id, start in quiet.items():
            index = self.company.account_index(account_id)
            if index is not None:
                out[index] = start
        return out

    def batch_between(self, lo_ms: int, hi_ms: int, by: str = "time") -> Batch:
        """Synthetic events with event time (``by="time"``) or upload time in [lo, hi)."""
        if by == "time":
            rows = self.rows_between(lo_ms - HOUR_MS + 1, hi_ms)
            signups = self._signups(lo_ms, hi_ms)
        else:
            rows = self.rows_between(lo_ms - HOUR_MS - MAX_DELAY_MS, hi_ms)
            signups = self._signups(lo_ms - SHORT_DELAY_MS[1], hi_ms)
        parts = []
        for source in (rows, self.late_rows()):
            if not len(source):
                continue
            ridx, k, key, t, up = self._times(source)
            col = t if by == "time" else up
            sel = np.flatnonzero((col >= lo_ms) & (col < hi_ms))
            if sel.size:
                parts.append(self._finish(source, ridx[sel], k[sel], key[sel], t[sel], up[sel]))
        col = signups.t if by == "time" else signups.up
        parts.append(signups.take(np.flatnonzero((col >= lo_ms) & (col < hi_ms))))
        return Batch.concat(parts)

    # ----- frames and summaries ------------------------------------------------------------

    def _versions(self) -> tuple[int, int]:
        return self.world.version, self.tenant.ingested.version

    def _asof_key(self, hi_ms: int) -> int | None:
        """None when nothing in [.., hi_ms) can still become visible, else the as-of moment."""
        asof = self.tenant.visible_before_ms()
        pending = hi_ms + MAX_DELAY_MS > asof or any(
            e.arrived_ms + SHORT_DELAY_MS[1] > asof for e in self.world.late_events()
        )
        return asof if pending else None

    def day_frame(self, day: date, keep: frozenset[date] = frozenset()) -> Frame:
        """The visible events of a project-time-zone day (cached; small LRU).

        Days in ``keep`` are not evicted to make room for this one (see ``day_frames``).
        """
        lo, hi = self.tenant.day_bounds(day)
        key = (day, *self._versions(), self._asof_key(hi))
        with self._lock:
            cached = self._frame_cache.get(key)
            if cached is not None:
                self._frame_cache.move_to_end(key)
                return cached
        frame = self._build_frame(day, lo, hi)
        with self._lock:
            self._frame_cache[key] = frame
            total = sum(len(f) for f in self._frame_cache.values())
            for old in list(self._frame_cache):
                if len(self._frame_cache) <= 96 and total <= FRAME_CACHE_ROWS:
                    break
                if old is key or old[0] in keep:
                    continue
                total -= len(self._frame_cache.pop(old))
        return frame

    def day_frames(self, days: Sequence[date]) -> list[Frame]:
        """The frames of one query's days, which never evict each other.

        A query over more rows than the cache holds would otherwise evict its own first
        days while building its last ones (plain LRU under a scan), and every later query
        over the same range would rebuild all of it: 30 days at scale 1000 are about
        16 M rows. The query holds all its frames at once anyway, so keeping them costs
        no memory beyond its own; the next insertion trims the cache back to the cap.
        """
        keep = frozenset(days)
        return [self.day_frame(d, keep) for d in days]

    def _build_frame(self, day: date, lo: int, hi: int) -> Frame:
        asof = self.tenant.visible_before_ms()
        batch = self.batch_between(lo, hi, by="time")
        batch = batch.take(np.flatnonzero(batch.up <= asof))
        cols = self.tenant.ingested.columns()
        # $identify / $groupidentify rows are exported but are no events of the Dashboard.
        sel = np.flatnonzero(
            (cols["time"] >= lo) & (cols["time"] < hi) & (cols["upload"] <= asof) & cols["counted"]
        )
        ing_amp = cols["amp"][sel]
        ing_etype = np.array(
            [
                self.catalog.type_index(self.tenant.ingested.get(int(i)).event_type, create=True)
                for i in sel
            ],
            dtype=np.int32,
        )
        offset = ing_amp - self.amp_base
        ing_visitor = np.where(
            (offset >= 0) & (offset < self.company.n_visitors), offset, -1
        ).astype(np.int32)
        n_syn, n_ing = len(batch), sel.size
        return Frame(
            day=day,
            amp=np.concatenate([self.amp_base + batch.visitor.astype(np.int64), ing_amp]),
            visitor=np.concatenate([batch.visitor, ing_visitor]),
            etype=np.concatenate([batch.etype, ing_etype]),
            ep=np.concatenate([batch.ep, np.full(n_ing, -1, np.int32)]),
            t=np.concatenate([batch.t, cols["time"][sel]]),
            up=np.concatenate([batch.up, cols["upload"][sel]]),
            app=np.concatenate([batch.app, np.full(n_ing, -1, np.int8)]),
            session=np.concatenate([batch.session, np.full(n_ing, -1, np.int64)]),
            revenue=np.concatenate([self.catalog.variant_revenue[batch.ep], cols["revenue"][sel]]),
            ing=np.concatenate([np.full(n_syn, -1, np.int64), sel.astype(np.int64)]),
            batch=batch,
        )

    def _summary(self, name: str, day: date, compute) -> Any:
        lo, hi = self.tenant.day_bounds(day)
        key = (name, day, *self._versions(), self._asof_key(hi))
        with self._lock:
            if key in self._summary_cache:
                return self._summary_cache[key]
        value = compute()
        with self._lock:
            if len(self._summary_cache) > 20_000:
                self._summary_cache.clear()
            self._summary_cache[key] = value
        return value

    def type_counts(self, day: date) -> tuple[np.ndarray, np.ndarray]:
        """(totals, uniques) per event type index for a project-tz day (visible events)."""

        def compute() -> tuple[np.ndarray, np.ndarray]:
            f = self.day_frame(day)
            n_types = len(self.catalog.event_types)
            totals = np.bincount(f.etype, minlength=n_types)
            pairs = np.unique(f.etype.astype(np.int64) << 40 | (f.amp - self.amp_base))
            uniques = np.bincount((pairs >> 40).astype(np.int64), minlength=n_types)
            return totals, uniques

        return self._summary("types", day, compute)

    def active_users(self, day: date) -> np.ndarray:
        """Sorted Amplitude IDs with any visible event on the project-tz day."""
        return self._summary("active", day, lambda: np.unique(self.day_frame(day).amp))

    def new_users(self, day: date) -> np.ndarray:
        """Sorted Amplitude IDs whose first event ever falls on the day (visible)."""

        def compute() -> np.ndarray:
            f = self.day_frame(day)
            signed = f.amp[f.etype == self.catalog.t_signup]
            firsts = self._ingested_first_events()
            lo, hi = self.tenant.day_bounds(day)
            extra = [amp for amp, t in firsts.items() if lo <= t < hi]
            return np.unique(np.concatenate([signed, np.array(extra, dtype=np.int64)]))

        return self._summary("new", day, compute)

    def _ingested_first_events(self) -> dict[int, int]:
        """First visible event time of each non-synthetic user (ingested only)."""
        cols = self.tenant.ingested.columns()
        asof = self.tenant.visible_before_ms()
        offset = cols["amp"] - self.amp_base
        sel = (offset >= self.company.n_visitors) & (cols["upload"] <= asof) & cols["counted"]
        firsts: dict[int, int] = {}
        for amp, t in zip(cols["amp"][sel].tolist(), cols["time"][sel].tolist(), strict=True):
            if amp not in firsts or t < firsts[amp]:
                firsts[amp] = t
        return firsts

    def user_counts(self, day: date, etype: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Amplitude IDs, event counts) for a day, of one event type or of all."""
        f = self.day_frame(day)
        amp = f.amp if etype is None else f.amp[f.etype == etype]
        return np.unique(amp, return_counts=True)

    # ----- export --------------------------------------------------------------------------

    def _hour_selection(self, hour_ms: int) -> tuple[Batch, list[int]]:
        """Visible synthetic and ingested events uploaded in one UTC hour."""
        asof = self.tenant.visible_before_ms()
        batch = self.batch_between(hour_ms, hour_ms + HOUR_MS, by="upload")
        batch = batch.take(np.flatnonzero(batch.up <= asof))
        batch = batch.take(np.argsort(batch.up, kind="stable"))
        cols = self.tenant.ingested.columns()
        up = cols["upload"]
        sel = np.flatnonzero((up >= hour_ms) & (up < hour_ms + HOUR_MS) & (up <= asof))
        return batch, sel.tolist()

    def upload_hour_counts(
        self, start_hour_ms: int, end_hour_ms: int, stop_above: int | None = None
    ) -> np.ndarray:
        """Visible events per upload hour in [start, end] (inclusive hours).

        Counted a UTC day at a time from the cheap time columns only; stops early
        (leaving later hours at 0) once the total passes ``stop_above``.
        """
        n_hours = (end_hour_ms - start_hour_ms) // HOUR_MS + 1
        counts = np.zeros(n_hours, dtype=np.int64)
        asof = self.tenant.visible_before_ms()
        cols = self.tenant.ingested.columns()
        late = self.late_rows()
        late_up = self._times(late)[4] if len(late) else np.zeros(0, np.int64)
        for extra in (cols["upload"], late_up):
            ok = extra[(extra <= asof) & (extra >= start_hour_ms) & (extra < end_hour_ms + HOUR_MS)]
            np.add.at(counts, (ok - start_hour_ms) // HOUR_MS, 1)
        total = int(counts.sum())
        lo = start_hour_ms
        hi_all = min(end_hour_ms + HOUR_MS, asof + 1)
        while lo < hi_all:
            hi = min(lo + DAY_MS, hi_all)
            rows = self.rows_between(lo - HOUR_MS - MAX_DELAY_MS, hi)
            up = self._times(rows)[4] if len(rows) else np.zeros(0, np.int64)
            su = self._signups(lo - SHORT_DELAY_MS[1], hi).up
            for col in (up, su):
                ok = col[(col >= lo) & (col < hi) & (col <= asof)]
                np.add.at(counts, (ok - start_hour_ms) // HOUR_MS, 1)
                total += ok.size
            if stop_above is not None and total > stop_above:
                break
            lo = hi
        return counts

    def iter_export_records(self, start_hour_ms: int, end_hour_ms: int) -> Iterator[ExportChunk]:
        """NDJSON members for each upload hour in [start, end] (inclusive), in order.

        Only one member's records exist at a time; an hour above ``MEMBER_EVENTS``
        events is split into parts ``#0``, ``#1``, ...
        """
        hour = start_hour_ms
        while hour <= end_hour_ms:
            batch, ingested = self._hour_selection(hour)
            n_syn = len(batch)
            total = n_syn + len(ingested)
            for part, first in enumerate(range(0, total, MEMBER_EVENTS)):
                last = min(first + MEMBER_EVENTS, total)
                pieces = self._member_pieces(batch, ingested, first, last)
                yield ExportChunk(hour, part, last - first, pieces)
            hour += HOUR_MS

    def _member_pieces(
        self, batch: Batch, ingested: list[int], first: int, last: int
    ) -> Iterator[bytes]:
        """NDJSON of events [first, last) of an hour (synthetic first, then ingested)."""
        n_syn = len(batch)
        for lo in range(first, min(last, n_syn), SLICE_EVENTS):
            hi = min(lo + SLICE_EVENTS, last, n_syn)
            yield self.writer.joined(batch.take(slice(lo, hi)))
        extra = ingested[max(0, first - n_syn) : max(0, last - n_syn)]
        if extra:
            get = self.tenant.ingested.get
            yield b"".join(orjson.dumps(get(i).record) + b"\n" for i in extra)

    # ----- records -------------------------------------------------------------------------

    def synthetic_lines(self, batch: Batch) -> list[bytes]:
        """Export records of synthetic events, one NDJSON line (with newline) each."""
        return self.writer.lines(batch)

    def user_records(
        self,
        amplitude_id: int,
        start_ms: int,
        end_ms: int,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]:
        """Export-format records of one user with event time in [start_ms, end_ms)."""
        out: list[tuple[int, dict[str, Any]]] = []
        day = self.tenant.local_day(end_ms - 1)
        first = self.tenant.local_day(start_ms)
        days = []
        while day >= first:
            days.append(day)
            day -= timedelta(days=1)
        if not newest_first:
            days.reverse()
        for day in days:
            f = self.day_frame(day)
            sel = np.flatnonzero((f.amp == amplitude_id) & (f.t >= start_ms) & (f.t < end_ms))
            syn = sel[sel < len(f.batch)]
            recs = [
                (int(f.t[i]), orjson.loads(line))
                for i, line in zip(
                    syn.tolist(), self.synthetic_lines(f.batch.take(syn)), strict=True
                )
            ]
            recs += [
                (int(f.t[i]), self.tenant.ingested.get(int(f.ing[i])).record)
                for i in sel[sel >= len(f.batch)].tolist()
            ]
            recs.sort(key=lambda r: r[0], reverse=newest_first)
            out.extend(recs)
            if limit is not None and len(out) >= limit:
                break
        return [r for _, r in out[:limit]]
