"""A region's world: the generated company plus the changes staged on top of it.

Both halves of the sandbox read activity through ``World.activity(day)``, so a
staged change (an account goes quiet, a guide's dismissals jump, late events
arrive) shows up the same way in Pendo aggregations and in Amplitude's export and
queries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import date

import numpy as np

from analytics_assets.sandbox.company import HOUR_MS, Company, DayActivity


@dataclass(frozen=True)
class LateEvents:
    """Events of a past hour that reach the service only at ``arrived_ms``."""

    visitor: int
    hour_ms: int
    num_events: int
    arrived_ms: int
    app: int = 0


class World:
    """One region's company and its staged changes (thread-safe)."""

    def __init__(self, company: Company, now_ms) -> None:
        self.company = company
        self.now_ms = now_ms
        self._lock = threading.Lock()
        self._quiet: dict[int, int] = {}  # account index -> quiet from (ms)
        self._dismissals: dict[int, tuple[int, float]] = {}  # guide index -> (from ms, rate)
        self._late: list[LateEvents] = []
        self.version = 0  # bumped on every staged change, for caches keyed on it

    # ----- staging ------------------------------------------------------------------------

    def stage_account_quiet(self, account: int, from_ms: int) -> None:
        with self._lock:
            self._quiet[account] = from_ms
            self.version += 1

    def stage_account_active(self, account: int) -> None:
        with self._lock:
            self._quiet.pop(account, None)
            self.version += 1

    def stage_guide_dismissals(self, guide: int, from_ms: int, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            self._dismissals[guide] = (from_ms, rate)
            self.version += 1

    def clear_guide_dismissals(self, guide: int) -> None:
        with self._lock:
            self._dismissals.pop(guide, None)
            self.version += 1

    def stage_late_events(self, late: LateEvents) -> None:
        with self._lock:
            self._late.append(late)
            self.version += 1

    def late_events(self) -> list[LateEvents]:
        with self._lock:
            return list(self._late)

    def staged(self) -> dict:
        with self._lock:
            return {
                "quiet_accounts": {self.company.account_id(a): t for a, t in self._quiet.items()},
                "guide_dismissals": {
                    self.company.guides[g].id: {"from_ms": t, "rate": r}
                    for g, (t, r) in self._dismissals.items()
                },
                "late_events": [vars(late) for late in self._late],
            }

    # ----- activity -----------------------------------------------------------------------

    def activity(self, day: date, as_of_ms: int | None = None) -> DayActivity:
        """The day's activity with staged changes applied, as known at ``as_of_ms``."""
        act = self.company.activity(day)
        as_of = self.now_ms() if as_of_ms is None else as_of_ms
        with self._lock:
            quiet = dict(self._quiet)
            dismissals = dict(self._dismissals)
            late = [
                e
                for e in self._late
                if act.start_ms <= e.hour_ms < act.end_ms and e.arrived_ms <= as_of
            ]
        if quiet:
            act = _drop_quiet(act, self.company, quiet)
        if late:
            act = _add_late(act, late)
        if dismissals:
            act = _restage_dismissals(act, dismissals)
        return act


def _drop_quiet(act: DayActivity, company: Company, quiet: dict[int, int]) -> DayActivity:
    accounts = np.fromiter(quiet.keys(), dtype=np.int64)
    starts = np.fromiter(quiet.values(), dtype=np.int64)
    lookup = np.full(company.n_accounts, np.iinfo(np.int64).max, dtype=np.int64)
    lookup[accounts] = starts
    row_account = company.visitor_account[act.visitor]
    keep = act.hour_ms < lookup[row_account]
    g_keep = act.guide_time_ms < lookup[company.visitor_account[act.guide_visitor]]
    return _select(act, keep, g_keep)


def _select(act: DayActivity, keep: np.ndarray, g_keep: np.ndarray) -> DayActivity:
    """Keep some visitor-hour rows (and their children) and some guide rows."""
    new_index = np.cumsum(keep) - 1

    def child(parent: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
        mask = keep[parent]
        return [new_index[parent[mask]], *(a[mask] for a in arrays)]

    fp, f, fe, fm = child(act.feature_parent, act.feature, act.feature_events, act.feature_minutes)
    pp, p, pe, pm = child(act.page_parent, act.page, act.page_events, act.page_minutes)
    tp, t, te = child(act.track_parent, act.track, act.track_events)
    return replace(
        act,
        visitor=act.visitor[keep],
        hour_ms=act.hour_ms[keep],
        app=act.app[keep],
        num_events=act.num_events[keep],
        num_minutes=act.num_minutes[keep],
        browser=act.browser[keep],
        feature_parent=fp,
        feature=f,
        feature_events=fe,
        feature_minutes=fm,
        page_parent=pp,
        page=p,
        page_events=pe,
        page_minutes=pm,
        track_parent=tp,
        track=t,
        track_events=te,
        guide_visitor=act.guide_visitor[g_keep],
        guide=act.guide[g_keep],
        guide_step=act.guide_step[g_keep],
        guide_type=act.guide_type[g_keep],
        guide_time_ms=act.guide_time_ms[g_keep],
    )


def _add_late(act: DayActivity, late: list[LateEvents]) -> DayActivity:
    """Fold late events into their visitor-hour row, or add the row if it is new."""
    visitor, hour_ms, app = act.visitor.copy(), act.hour_ms.copy(), act.app.copy()
    events, minutes, browser = act.num_events.copy(), act.num_minutes.copy(), act.browser.copy()
    extra_v, extra_h, extra_a, extra_e = [], [], [], []
    for e in late:
        hour = e.hour_ms - (e.hour_ms - act.start_ms) % HOUR_MS
        hit = np.flatnonzero((visitor == e.visitor) & (hour_ms == hour))
        if hit.size:
            events[hit[0]] += e.num_events
        else:
            extra_v.append(e.visitor)
            extra_h.append(hour)
            extra_a.append(e.app)
            extra_e.append(e.num_events)
    if extra_v:
        visitor = np.concatenate([visitor, np.array(extra_v, dtype=visitor.dtype)])
        hour_ms = np.concatenate([hour_ms, np.array(extra_h, dtype=hour_ms.dtype)])
        app = np.concatenate([app, np.array(extra_a, dtype=app.dtype)])
        new_events = np.array(extra_e, dtype=events.dtype)
        events = np.concatenate([events, new_events])
        minutes = np.concatenate([minutes, np.minimum(60, 1 + new_events // 3)])
        browser = np.concatenate([browser, np.zeros(len(extra_v), dtype=browser.dtype)])
    return replace(
        act,
        visitor=visitor,
        hour_ms=hour_ms,
        app=app,
        num_events=events,
        num_minutes=minutes,
        browser=browser,
    )


def _restage_dismissals(act: DayActivity, dismissals: dict[int, tuple[int, float]]) -> DayActivity:
    """Replace a guide's dismissals after a moment with a staged dismissal rate."""
    keep = np.ones(act.guide.size, dtype=bool)
    add_v, add_g, add_t = [], [], []
    for guide, (from_ms, rate) in dismissals.items():
        later = (act.guide == guide) & (act.guide_time_ms >= from_ms)
        keep &= ~(later & (act.guide_type == 2))
        seen = np.flatnonzero(later & (act.guide_type == 0) & (act.guide_step == 0))
        # Deterministic choice: the same visitors dismiss on every call.
        chosen = seen[(act.guide_visitor[seen].astype(np.int64) * 2654435761 % 1000) < rate * 1000]
        add_v.append(act.guide_visitor[chosen])
        add_g.append(act.guide[chosen])
        add_t.append(act.guide_time_ms[chosen] + 5_000)
    v = np.concatenate([act.guide_visitor[keep], *add_v])
    g = np.concatenate([act.guide[keep], *add_g])
    n_new = sum(a.size for a in add_v)
    return replace(
        act,
        guide_visitor=v.astype(act.guide_visitor.dtype),
        guide=g.astype(act.guide.dtype),
        guide_step=np.concatenate([act.guide_step[keep], np.zeros(n_new, act.guide_step.dtype)]),
        guide_type=np.concatenate([act.guide_type[keep], np.full(n_new, 2, act.guide_type.dtype)]),
        guide_time_ms=np.concatenate([act.guide_time_ms[keep], *add_t]).astype(np.int64),
    )
