"""The synthetic company behind both emulated products.

One B2B software company uses Pendo and Amplitude on the same product: its
accounts are Pendo accounts and Amplitude groups (``account``), its visitors are
Pendo visitors and Amplitude users (``user_id`` = ``visitorId``). Everything is
derived from ``(seed, region)``:

* entities (accounts, visitors) live in numpy arrays, so 100,000 accounts and a
  million visitors cost tens of megabytes, and ids and names are computed on demand;
* the catalog (apps, pages, features, guides, track types, reports) is small and fixed;
* activity is generated one local day at a time from ``(seed, region, day)``, so any
  day is reproducible on its own and nothing holds more than a day or two in memory.

Staged changes (an account goes quiet, dismissals jump, late events) are applied on
top of the generated activity by the tenant that owns the mutable state, never by
changing what is drawn here, so unstaged data stays identical.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

# Accounts and visitors exist from these days on (local dates); activity before an
# entity's first day is never generated.
HISTORY_START = date(2024, 1, 1)
HISTORY_END = date(2026, 6, 30)

PLANS = ("free", "starter", "pro", "enterprise")
PLAN_WEIGHTS = (0.30, 0.30, 0.28, 0.12)
INDUSTRIES = ("software", "finance", "healthcare", "retail", "education", "manufacturing")
ROLES = ("admin", "analyst", "manager", "engineer", "viewer")
LANGUAGES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_419", "ja_JP")
BROWSERS = (
    ("Chrome", "131.0.6778", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0"),
    (
        "Chrome",
        "131.0.6778",
        "Mac OS X",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Chrome/131.0",
    ),
    ("Safari", "18.1", "Mac OS X", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) Safari/605.1.15"),
    ("Firefox", "133.0", "Linux", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Firefox/133.0"),
    ("Edge", "131.0.2903", "Windows", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/131.0"),
)
WORDS_A = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Wonka",
    "Cyberdyne",
    "Aperture",
    "Gringotts",
    "Pied",
    "Monarch",
    "Oscorp",
    "Nakatomi",
    "Dunder",
    "Prestige",
    "Sterling",
    "Blue",
    "Northwind",
    "Contoso",
)
WORDS_B = (
    "Labs",
    "Systems",
    "Industries",
    "Logistics",
    "Health",
    "Capital",
    "Foods",
    "Energy",
    "Media",
    "Robotics",
    "Analytics",
    "Works",
    "Partners",
    "Dynamics",
    "Networks",
    "Retail",
)
FIRST_NAMES = (
    "Ana",
    "Ben",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivan",
    "Jo",
    "Kai",
    "Lena",
    "Mateo",
    "Nia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tariq",
)
LAST_NAMES = (
    "Abe",
    "Baker",
    "Costa",
    "Diaz",
    "Evans",
    "Fischer",
    "Garcia",
    "Huang",
    "Ito",
    "Jensen",
    "Khan",
    "Lopez",
    "Moreau",
    "Novak",
    "Okafor",
    "Patel",
    "Rossi",
    "Silva",
)

REGION_CODES = {"us": 1, "us1": 2, "eu": 3, "jpn": 4, "au": 5}
REGION_SIZE = {"us": 1.0, "us1": 0.2, "eu": 0.5, "jpn": 0.1, "au": 0.1}


def stable_id(*parts: object, length: int = 22) -> str:
    """A Pendo-looking id (url-safe base64), stable for the same parts."""
    digest = hashlib.sha1("/".join(map(str, parts)).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:length].replace("-", "x").replace("_", "y")


def local_midnight_ms(day: date, tz: ZoneInfo) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)


@dataclass(frozen=True)
class App:
    id: int
    name: str
    platform: str
    share: float  # share of activity happening in this app


@dataclass(frozen=True)
class Page:
    id: str
    name: str
    app_id: int
    url: str
    weight: float


@dataclass(frozen=True)
class Feature:
    id: str
    name: str
    app_id: int
    page_id: str
    selector: str
    weight: float


@dataclass(frozen=True)
class GuideStep:
    id: str
    guide_id: str
    rank: int
    type: str
    page_id: str


@dataclass(frozen=True)
class Guide:
    id: str
    name: str
    app_id: int
    state: str
    launch_method: str
    kind: str
    steps: tuple[GuideStep, ...]
    seen_rate: float  # share of active visitors who see it on a day
    dismiss_rate: float  # share of viewers who dismiss it
    poll_id: str | None = None


@dataclass(frozen=True)
class TrackType:
    id: str
    name: str
    app_id: int
    weight: float


@dataclass(frozen=True)
class Report:
    """A saved visitor or account list report and the pipeline that computes its rows."""

    id: str
    name: str
    level: str  # "visitor" or "account"
    columns: tuple[tuple[str, str], ...]  # (title, field path)
    pipeline: tuple[dict, ...]


@dataclass
class DayActivity:
    """One local day of generated activity, as parallel numpy arrays.

    ``rows`` are visitor-hours (Pendo's aggregated event rows); feature, page and
    track rows refer to a visitor-hour by index; guide rows are single guide events.
    """

    day: date
    start_ms: int
    end_ms: int
    # visitor-hour rows
    visitor: np.ndarray
    hour_ms: np.ndarray
    app: np.ndarray
    num_events: np.ndarray
    num_minutes: np.ndarray
    browser: np.ndarray
    # feature / page / track rows (parent = index into the visitor-hour rows)
    feature_parent: np.ndarray
    feature: np.ndarray
    feature_events: np.ndarray
    feature_minutes: np.ndarray
    page_parent: np.ndarray
    page: np.ndarray
    page_events: np.ndarray
    page_minutes: np.ndarray
    track_parent: np.ndarray
    track: np.ndarray
    track_events: np.ndarray
    # guide events
    guide_visitor: np.ndarray
    guide: np.ndarray
    guide_step: np.ndarray
    guide_type: np.ndarray  # index into GUIDE_EVENT_TYPES
    guide_time_ms: np.ndarray
    # anonymous (not identified) visitor-hours: anonymous id number per row
    anon_id: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    anon_hour_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    anon_events: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))


GUIDE_EVENT_TYPES = ("guideSeen", "guideAdvanced", "guideDismissed", "guideActivity")


class Company:
    """The deterministic synthetic company of one region."""

    def __init__(
        self,
        seed: int = 42,
        scale: float = 1.0,
        region: str = "us",
        timezone: str = "America/New_York",
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.region = region
        self.tz = ZoneInfo(timezone)
        self._region_code = REGION_CODES.get(region, 9)
        rng = np.random.default_rng([seed, self._region_code, 0])
        size = REGION_SIZE.get(region, 0.1)
        self.n_accounts = max(8, int(round(100 * scale * size)))

        # Accounts: skewed sizes (a few large customers, many small ones).
        sizes = np.clip(rng.lognormal(mean=2.0, sigma=0.9, size=self.n_accounts), 1, 400)
        self.account_size = sizes.astype(np.int32)
        self.account_first = np.concatenate([[0], np.cumsum(self.account_size)[:-1]]).astype(
            np.int64
        )
        self.n_visitors = int(self.account_size.sum())
        self.account_plan = rng.choice(len(PLANS), size=self.n_accounts, p=PLAN_WEIGHTS).astype(
            np.int8
        )
        self.account_industry = rng.integers(0, len(INDUSTRIES), self.n_accounts, dtype=np.int8)
        span = (HISTORY_END - HISTORY_START).days
        self.account_created = rng.integers(0, span, self.n_accounts, dtype=np.int32)
        self.account_propensity = rng.beta(4, 2, self.n_accounts).astype(np.float32)
        # Per-day multiplicative trend: most flat, some growing, some declining.
        self.account_trend = rng.normal(0, 0.0015, self.n_accounts).astype(np.float32)
        self.account_arr = np.round(
            rng.lognormal(9.5, 1.0, self.n_accounts) * (1 + self.account_plan), -2
        )

        # Visitors: each belongs to one account; some visit daily, most now and then.
        self.visitor_account = np.repeat(
            np.arange(self.n_accounts, dtype=np.int32), self.account_size
        )
        self.visitor_propensity = rng.beta(1.6, 2.4, self.n_visitors).astype(np.float32)
        self.visitor_created = self.account_created[self.visitor_account] + rng.integers(
            0, 60, self.n_visitors, dtype=np.int32
        )
        self.visitor_browser = rng.integers(0, len(BROWSERS), self.n_visitors, dtype=np.int8)
        self.visitor_role = rng.integers(0, len(ROLES), self.n_visitors, dtype=np.int8)
        self.visitor_language = rng.choice(
            len(LANGUAGES), self.n_visitors, p=(0.55, 0.1, 0.1, 0.1, 0.1, 0.05)
        ).astype(np.int8)

        self._build_catalog()
        self._cache: OrderedDict[date, DayActivity] = OrderedDict()
        self._cache_lock = threading.Lock()

    # ----- ids and names -------------------------------------------------------------

    @staticmethod
    def account_id(index: int) -> str:
        return f"account-{index:06d}"

    @staticmethod
    def visitor_id(index: int) -> str:
        return f"visitor-{index:07d}"

    @staticmethod
    def anonymous_id(number: int) -> str:
        return f"_PENDO_T_{stable_id('anon', number, length=11)}"

    def account_index(self, account_id: str) -> int | None:
        if not account_id.startswith("account-"):
            return None
        try:
            index = int(account_id[8:])
        except ValueError:
            return None
        ok = 0 <= index < self.n_accounts and account_id == self.account_id(index)
        return index if ok else None

    def visitor_index(self, visitor_id: str) -> int | None:
        if not visitor_id.startswith("visitor-"):
            return None
        try:
            index = int(visitor_id[8:])
        except ValueError:
            return None
        ok = 0 <= index < self.n_visitors and visitor_id == self.visitor_id(index)
        return index if ok else None

    def account_name(self, index: int) -> str:
        a = WORDS_A[(index * 7 + self.seed) % len(WORDS_A)]
        b = WORDS_B[(index * 13 + self.seed // 3) % len(WORDS_B)]
        return f"{a} {b} {index}"

    def account_domain(self, index: int) -> str:
        return self.account_name(index).lower().replace(" ", "-") + ".example.com"

    def visitor_name(self, index: int) -> tuple[str, str]:
        return (
            FIRST_NAMES[(index * 31 + self.seed) % len(FIRST_NAMES)],
            LAST_NAMES[(index * 17 + self.seed) % len(LAST_NAMES)],
        )

    def visitor_email(self, index: int) -> str:
        first, last = self.visitor_name(index)
        domain = self.account_domain(int(self.visitor_account[index]))
        return f"{first.lower()}.{last.lower()}{index}@{domain}"

    def day_of(self, offset: int) -> date:
        return HISTORY_START + timedelta(days=int(offset))

    def account_first_visit_ms(self, index: int) -> int:
        day = self.day_of(self.account_created[index])
        return local_midnight_ms(day, self.tz) + 9 * HOUR_MS

    def visitor_first_visit_ms(self, index: int) -> int:
        day = self.day_of(self.visitor_created[index])
        return local_midnight_ms(day, self.tz) + 10 * HOUR_MS + (index % 3600) * 1000

    # ----- catalog ---------------------------------------------------------------------

    def _build_catalog(self) -> None:
        rng = np.random.default_rng([self.seed, self._region_code, 1])
        self.apps = (
            App(-323232, "Acme Web", "web", 0.80),
            App(5066549580791808, "Acme iOS", "ios", 0.12),
            App(4785074604081152, "Acme Android", "android", 0.08),
        )
        areas = (
            "Dashboard",
            "Reports",
            "Settings",
            "Billing",
            "Users",
            "Integrations",
            "Projects",
            "Tasks",
            "Calendar",
            "Inbox",
            "Search",
            "Help",
        )
        pages, features = [], []
        for app in self.apps:
            n_pages = len(areas) if app.platform == "web" else 6
            for p in range(n_pages):
                area = areas[p]
                page_id = stable_id(self.region, "page", app.id, p)
                pages.append(
                    Page(
                        page_id,
                        f"{area} ({app.platform})" if app.platform != "web" else area,
                        app.id,
                        f"//*/{area.lower()}",
                        float(rng.pareto(1.5) + 1),
                    )
                )
                for f in range(4 if app.platform == "web" else 2):
                    verb = ("Open", "Create", "Export", "Filter", "Share", "Delete")[(p + f) % 6]
                    features.append(
                        Feature(
                            stable_id(self.region, "feature", app.id, p, f),
                            f"{verb} {area}"
                            + ("" if app.platform == "web" else f" ({app.platform})"),
                            app.id,
                            page_id,
                            f"#{area.lower()} .btn-{verb.lower()}",
                            float(rng.pareto(1.2) + 1),
                        )
                    )
        self.pages = tuple(pages)
        self.features = tuple(features)
        guide_specs = (
            ("Welcome tour", "lightbox", "auto", "public", 4, 0.10, 0.25, False),
            ("New reports builder", "tooltip", "auto", "public", 2, 0.08, 0.45, False),
            ("Billing update banner", "banner", "auto", "public", 1, 0.12, 0.60, False),
            ("NPS survey", "lightbox", "auto", "public", 1, 0.03, 0.35, True),
            ("Integrations walkthrough", "tooltip", "badge", "public", 3, 0.02, 0.20, False),
            ("Mobile onboarding", "lightbox", "auto", "public", 3, 0.05, 0.30, False),
            ("Beta invite", "lightbox", "api", "staged", 1, 0.0, 0.0, False),
            ("Old release notes", "banner", "auto", "disabled", 1, 0.0, 0.0, False),
        )
        guides = []
        for g, (name, kind, launch, state, n_steps, seen, dismiss, poll) in enumerate(guide_specs):
            app = self.apps[1] if name.startswith("Mobile") else self.apps[0]
            guide_id = stable_id(self.region, "guide", g)
            app_pages = [p for p in self.pages if p.app_id == app.id]
            steps = tuple(
                GuideStep(
                    stable_id(self.region, "step", g, s),
                    guide_id,
                    s,
                    kind,
                    app_pages[(g + s) % len(app_pages)].id,
                )
                for s in range(n_steps)
            )
            guides.append(
                Guide(
                    guide_id,
                    name,
                    app.id,
                    state,
                    launch,
                    kind,
                    steps,
                    seen,
                    dismiss,
                    stable_id(self.region, "poll", g) if poll else None,
                )
            )
        self.guides = tuple(guides)
        self.track_types = tuple(
            TrackType(stable_id(self.region, "track", t), name, self.apps[0].id, w)
            for t, (name, w) in enumerate(
                (
                    ("Report Exported", 3.0),
                    ("Invite Sent", 1.0),
                    ("Plan Upgraded", 0.2),
                    ("Integration Connected", 0.5),
                    ("Search Performed", 6.0),
                )
            )
        )
        self.reports = (
            Report(
                stable_id(self.region, "report", 0),
                "Enterprise accounts",
                "account",
                (
                    ("Account", "accountId"),
                    ("Plan", "metadata.agent.plan"),
                    ("Name", "metadata.agent.name"),
                ),
                (
                    {"source": {"accounts": None}},
                    {"filter": 'metadata.agent.plan == "enterprise"'},
                    {"sort": ["accountId"]},
                ),
            ),
            Report(
                stable_id(self.region, "report", 1),
                "Administrators",
                "visitor",
                (
                    ("Visitor", "visitorId"),
                    ("Email", "metadata.agent.email"),
                    ("Account", "metadata.auto.accountid"),
                ),
                (
                    {"source": {"visitors": None}},
                    {"filter": 'metadata.agent.role == "admin"'},
                    {"sort": ["visitorId"]},
                ),
            ),
            Report(
                stable_id(self.region, "report", 2),
                "Recently active visitors",
                "visitor",
                (("Visitor", "visitorId"), ("Last visit", "metadata.auto.lastvisit")),
                (
                    {"source": {"visitors": None}},
                    {"filter": "metadata.auto.lastvisit >= now() - 7*24*60*60*1000"},
                    {"sort": ["-metadata.auto.lastvisit", "visitorId"]},
                    {"limit": 500},
                ),
            ),
        )
        self._page_weights = np.array([p.weight for p in self.pages])
        self._feature_weights = np.array([f.weight for f in self.features])
        self._page_app = np.array([self._app_index(p.app_id) for p in self.pages])
        self._feature_app = np.array([self._app_index(f.app_id) for f in self.features])

    def _app_index(self, app_id: int) -> int:
        return next(i for i, app in enumerate(self.apps) if app.id == app_id)

    # ----- activity ----------------------------------------------------------------------

    def day_bounds(self, day: date) -> tuple[int, int]:
        return local_midnight_ms(day, self.tz), local_midnight_ms(day + timedelta(days=1), self.tz)

    def local_day(self, ms: int) -> date:
        return datetime.fromtimestamp(ms / 1000, tz=self.tz).date()

    def activity(self, day: date) -> DayActivity:
        """The generated activity of one local day (cached for the last few days asked)."""
        with self._cache_lock:
            if day in self._cache:
                self._cache.move_to_end(day)
                return self._cache[day]
        built = self._generate(day)
        with self._cache_lock:
            self._cache[day] = built
            # Nine days: a sensor's 8-day window plus today, without regenerating any.
            while len(self._cache) > 9:
                self._cache.popitem(last=False)
        return built

    def _generate(self, day: date) -> DayActivity:
        start_ms, end_ms = self.day_bounds(day)
        n_hours = (end_ms - start_ms) // HOUR_MS
        ordinal = (day - HISTORY_START).days
        rng = np.random.default_rng([self.seed, self._region_code, 2, day.toordinal()])

        weekday = (1.0, 1.0, 1.0, 0.95, 0.85, 0.22, 0.18)[day.weekday()]
        acct = self.visitor_account
        trend = np.clip(1.0 + self.account_trend * (ordinal - 600), 0.05, 2.0)
        p = self.visitor_propensity * self.account_propensity[acct] * trend[acct] * weekday
        p = np.minimum(p, 0.95)
        exists = self.visitor_created <= ordinal
        active = np.flatnonzero((rng.random(self.n_visitors) < p) & exists)

        # Hours active per visitor, centred on the local working day.
        k = np.minimum(1 + rng.poisson(1.4, active.size), 8)
        visitor = np.repeat(active, k).astype(np.int32)
        hour = np.clip(np.round(rng.normal(13.0, 3.0, visitor.size)), 0, n_hours - 1)
        # One row per visitor-hour: drop repeated hours of the same visitor.
        key = visitor.astype(np.int64) * 32 + hour.astype(np.int64)
        key = np.unique(key)
        visitor = (key // 32).astype(np.int32)
        hour = (key % 32).astype(np.int64)
        n = visitor.size
        hour_ms = start_ms + hour * HOUR_MS
        mobile = rng.random(n) < 0.2
        app = np.where(mobile, rng.choice([1, 2], size=n, p=[0.6, 0.4]), 0).astype(np.int8)
        intensity = 0.5 + self.visitor_propensity[visitor]
        num_events = (1 + rng.poisson(10 * intensity)).astype(np.int32)
        num_minutes = np.minimum(60, 1 + rng.poisson(num_events / 2.5)).astype(np.int32)
        browser = self.visitor_browser[visitor]

        def children(weights: np.ndarray, apps: np.ndarray, per_row: float):
            """Child rows (features, pages) spread over each row's events."""
            count = np.minimum(rng.poisson(per_row, n), num_events).astype(np.int64)
            parent = np.repeat(np.arange(n), count)
            chosen = np.empty(parent.size, dtype=np.int32)
            for a in range(len(self.apps)):
                mask = app[parent] == a
                idx = np.flatnonzero(apps == a)
                w = weights[idx] / weights[idx].sum()
                chosen[mask] = idx[rng.choice(idx.size, size=int(mask.sum()), p=w)]
            # Deduplicate (parent, child) pairs so rows stay unique per visitor-hour.
            pair = np.unique(parent.astype(np.int64) * 4096 + chosen)
            parent, chosen = (pair // 4096).astype(np.int64), (pair % 4096).astype(np.int32)
            events = (1 + rng.poisson(2.0, parent.size)).astype(np.int32)
            minutes = np.minimum(num_minutes[parent], 1 + rng.poisson(1.0, parent.size))
            return parent, chosen, events, minutes.astype(np.int32)

        f_parent, f_idx, f_events, f_minutes = children(
            self._feature_weights, self._feature_app, 2.5
        )
        p_parent, p_idx, p_events, p_minutes = children(self._page_weights, self._page_app, 1.8)

        t_count = rng.poisson(0.4, n)
        t_parent = np.repeat(np.arange(n), t_count)
        t_weights = np.array([t.weight for t in self.track_types])
        t_idx = rng.choice(len(self.track_types), size=t_parent.size, p=t_weights / t_weights.sum())
        t_pair = np.unique(t_parent.astype(np.int64) * 64 + t_idx)
        t_parent, t_idx = t_pair // 64, (t_pair % 64).astype(np.int32)
        t_events = (1 + rng.poisson(0.8, t_parent.size)).astype(np.int32)

        g_visitor, g_guide, g_step, g_type, g_time = [], [], [], [], []
        first_row = np.unique(visitor, return_index=True)[1]

        def emit(who: np.ndarray, guide: int, step: int, kind: int, when: np.ndarray) -> None:
            g_visitor.append(who)
            g_guide.append(np.full(who.size, guide))
            g_step.append(np.full(who.size, step))
            g_type.append(np.full(who.size, kind))
            g_time.append(when)

        for gi, guide in enumerate(self.guides):
            if guide.seen_rate <= 0:
                continue
            rows = first_row[rng.random(first_row.size) < guide.seen_rate]
            if guide.app_id != self.apps[0].id:
                rows = rows[app[rows] == self._app_index(guide.app_id)]
            seen_at = hour_ms[rows] + rng.integers(0, HOUR_MS, rows.size)
            dismissed = rng.random(rows.size) < guide.dismiss_rate
            for s, _ in enumerate(guide.steps):
                emit(visitor[rows], gi, s, 0, seen_at + s * 20_000)
                if s + 1 < len(guide.steps):
                    adv = ~dismissed
                    emit(visitor[rows][adv], gi, s, 1, seen_at[adv] + s * 20_000 + 10_000)
            emit(visitor[rows][dismissed], gi, 0, 2, seen_at[dismissed] + 5_000)

        def cat(parts: list, dtype) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

        n_anon = int(rng.poisson(max(1.0, self.n_visitors * 0.01 * weekday)))
        return DayActivity(
            day=day,
            start_ms=start_ms,
            end_ms=end_ms,
            visitor=visitor,
            hour_ms=hour_ms,
            app=app,
            num_events=num_events,
            num_minutes=num_minutes,
            browser=browser,
            feature_parent=f_parent,
            feature=f_idx,
            feature_events=f_events,
            feature_minutes=f_minutes,
            page_parent=p_parent,
            page=p_idx,
            page_events=p_events,
            page_minutes=p_minutes,
            track_parent=t_parent,
            track=t_idx,
            track_events=t_events,
            guide_visitor=cat(g_visitor, np.int32),
            guide=cat(g_guide, np.int16),
            guide_step=cat(g_step, np.int16),
            guide_type=cat(g_type, np.int8),
            guide_time_ms=cat(g_time, np.int64),
            anon_id=rng.integers(0, 10**9, n_anon, dtype=np.int64),
            anon_hour_ms=start_ms
            + np.clip(np.round(rng.normal(13, 3, n_anon)), 0, n_hours - 1).astype(np.int64)
            * HOUR_MS,
            anon_events=(1 + rng.poisson(3, n_anon)).astype(np.int32),
        )

    def last_visits(self, now_ms: int, days: int = 14) -> np.ndarray:
        """Each visitor's last active hour before ``now_ms`` within ``days`` (else -1).

        Computed for all visitors at once and cached per hour of ``now_ms``: the
        visitors source asks for it on every call and it costs ``days`` generations.
        """
        key = now_ms // HOUR_MS
        with self._cache_lock:
            cached = getattr(self, "_last_visits", None)
            if cached is not None and cached[0] == (key, days):
                return cached[1]
        last = np.full(self.n_visitors, -1, dtype=np.int64)
        today = self.local_day(now_ms)
        for back in range(days):
            act = self.activity(today - timedelta(days=back))
            seen = act.hour_ms < now_ms
            np.maximum.at(last, act.visitor[seen], act.hour_ms[seen])
        with self._cache_lock:
            self._last_visits = ((key, days), last)
        return last
