"""The project's event taxonomy and per-user attributes, as small tables.

Synthetic events refer to this catalog by index: an event's ``etype`` indexes
``event_types`` and its ``ep`` indexes the event-property variants (``variants``),
each of which carries a pre-serialised JSON fragment. Users are described by
per-visitor numpy arrays (country, city, plan, ...) so filters and group-bys are
evaluated on the small tables and then broadcast to events by index.

Event types (synthetic): ``Session Start``, ``Sign Up`` (exactly one per visitor, on
the visitor's first day, so "new user" = first event ever), ``Page Viewed``,
``Purchase`` (revenue; a few paying accounts), the tracked events of the product
(``Report Exported``, ``Invite Sent``, ``Plan Upgraded``, ``Integration Connected``,
``Search Performed``) and ``Feature Used: <feature name>``. Event types first seen
through ingestion are appended at run time (``type_index(name, create=True)``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from analytics_assets.sandbox.company import (
    BROWSERS,
    INDUSTRIES,
    LANGUAGES,
    PLANS,
    ROLES,
    Company,
    local_midnight_ms,
)

SESSION_START = "Session Start"
SIGN_UP = "Sign Up"
PAGE_VIEWED = "Page Viewed"
PURCHASE = "Purchase"
FEATURE_PREFIX = "Feature Used: "
TRACKED = (
    # (event type, relative weight, property key, variants)
    ("Report Exported", 3.0, "format", ("csv", "pdf", "xlsx")),
    ("Invite Sent", 1.0, "invitee_role", ROLES),
    ("Plan Upgraded", 0.2, "to_plan", ("starter", "pro", "enterprise")),
    ("Integration Connected", 0.5, "integration", ("Slack", "Salesforce", "Jira", "HubSpot")),
    ("Search Performed", 6.0, "results", ("0", "1-10", "11-100", "100+")),
)
PRODUCTS = (
    # (productId, price, quantity, revenueType)
    ("seat-pack", 49.0, 1, "subscription"),
    ("seat-pack", 49.0, 5, "subscription"),
    ("annual-upgrade", 1200.0, 1, "subscription"),
    ("report-addon", 19.0, 2, "addon"),
)

COUNTRIES = {
    # region -> ((country, weight, ((city, region), ...)), ...)
    "us": (
        (
            "United States",
            0.8,
            (
                ("New York", "New York"),
                ("San Francisco", "California"),
                ("Austin", "Texas"),
                ("Chicago", "Illinois"),
            ),
        ),
        ("Canada", 0.1, (("Toronto", "Ontario"), ("Vancouver", "British Columbia"))),
        ("United Kingdom", 0.1, (("London", "England"), ("Manchester", "England"))),
    ),
    "eu": (
        ("Germany", 0.35, (("Berlin", "Berlin"), ("Munich", "Bavaria"), ("Hamburg", "Hamburg"))),
        ("France", 0.25, (("Paris", "Ile-de-France"), ("Lyon", "Auvergne-Rhone-Alpes"))),
        ("Netherlands", 0.15, (("Amsterdam", "North Holland"), ("Utrecht", "Utrecht"))),
        ("Spain", 0.15, (("Madrid", "Madrid"), ("Barcelona", "Catalonia"))),
        ("Ireland", 0.10, (("Dublin", "Leinster"),)),
    ),
}

# Per app platform: (platform, os_name, os_version, brand, manufacturer, model, family, type,
# carrier, version_name). Web values follow what Amplitude's browser SDK reports.
MOBILE_DEVICES = {
    "ios": (
        "iOS",
        "ios",
        "17.5.1",
        "Apple",
        "Apple",
        "iPhone15,2",
        "Apple iPhone",
        "Apple iPhone 14 Pro",
        "Verizon",
        "4.12.0",
    ),
    "android": (
        "Android",
        "android",
        "14",
        "samsung",
        "samsung",
        "SM-S918B",
        "Samsung Galaxy",
        "Samsung Galaxy S23 Ultra",
        "T-Mobile",
        "4.11.2",
    ),
}

# Built-in user properties (Dashboard names) and the catalog columns behind them.
BUILTIN_USER_PROPS = (
    "country",
    "city",
    "region",
    "language",
    "platform",
    "os",
    "device",
    "device_type",
    "version",
    "carrier",
    "start_version",
    "paying",
    "library",
    "DMA",
)
CUSTOM_USER_PROPS = ("plan", "role", "account", "industry")

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised: a well-spread uint64 hash of each element."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class Variant:
    """One event-property variant of an event type (what an event's ``ep`` points to)."""

    etype: int
    properties: dict[str, Any]
    fragment: str  # '"event_properties":{...}' ... '"event_type":"..."' pieces, see below
    revenue: float = 0.0


class Catalog:
    """Event types, property variants and user attribute tables of one project."""

    def __init__(self, company: Company, region: str, project_id: int) -> None:
        self.company = company
        self.region = region
        self.project_id = project_id
        self._lock = threading.Lock()
        self.event_types: list[str] = []
        self._type_index: dict[str, int] = {}
        self.synthetic_type_count = 0
        self.variants: list[Variant] = []
        self._build_types()
        self._build_users()

    # ----- event types ---------------------------------------------------------------------

    def type_index(self, name: str, create: bool = False) -> int | None:
        with self._lock:
            index = self._type_index.get(name)
            if index is None and create:
                index = len(self.event_types)
                self.event_types.append(name)
                self._type_index[name] = index
            return index

    def type_names(self) -> list[str]:
        with self._lock:
            return list(self.event_types)

    def _add_type(self, name: str) -> int:
        index = self.type_index(name, create=True)
        assert index is not None
        return index

    def _add_variant(self, etype: int, props: dict[str, Any], revenue: float = 0.0) -> int:
        name = self.event_types[etype]
        fragment = f'"event_properties":{dumps(props)},"event_time":"%s","event_type":{dumps(name)}'
        self.variants.append(Variant(etype, props, fragment, revenue))
        return len(self.variants) - 1

    def _build_types(self) -> None:
        c = self.company
        self.t_session = self._add_type(SESSION_START)
        self.t_signup = self._add_type(SIGN_UP)
        self.t_page = self._add_type(PAGE_VIEWED)
        self.t_purchase = self._add_type(PURCHASE)
        self.ep_session = self._add_variant(self.t_session, {})
        self.ep_signup = self._add_variant(self.t_signup, {"method": "email"})
        apps = [app.platform for app in c.apps]
        app_names = [app.name for app in c.apps]

        # Pages and features, grouped by app, each with its weight for the draw.
        self.page_choices: list[tuple[np.ndarray, np.ndarray]] = []
        self.feature_choices: list[tuple[np.ndarray, np.ndarray]] = []
        page_name = {p.id: p.name for p in c.pages}
        for a, app in enumerate(c.apps):
            eps, weights = [], []
            for p in c.pages:
                if p.app_id == app.id:
                    eps.append(
                        self._add_variant(
                            self.t_page,
                            {
                                "page": p.name,
                                "path": p.url.replace("//*", ""),
                                "app": app_names[a],
                            },
                        )
                    )
                    weights.append(p.weight)
            self.page_choices.append((np.array(eps), np.cumsum(weights) / np.sum(weights)))
        for a, app in enumerate(c.apps):
            eps, weights = [], []
            for f in c.features:
                if f.app_id == app.id:
                    etype = self._add_type(FEATURE_PREFIX + f.name)
                    eps.append(
                        self._add_variant(
                            etype,
                            {
                                "feature": f.name,
                                "page": page_name.get(f.page_id),
                                "platform": apps[a],
                            },
                        )
                    )
                    weights.append(f.weight)
            self.feature_choices.append((np.array(eps), np.cumsum(weights) / np.sum(weights)))
        eps, weights = [], []
        for name, weight, key, values in TRACKED:
            etype = self._add_type(name)
            for value in values:
                eps.append(self._add_variant(etype, {key: value}))
                weights.append(weight / len(values))
        self.track_choice = (np.array(eps), np.cumsum(weights) / np.sum(weights))
        self.purchase_eps = np.array(
            [
                self._add_variant(
                    self.t_purchase,
                    {
                        "$productId": pid,
                        "$price": price,
                        "$quantity": qty,
                        "$revenue": price * qty,
                        "$revenueType": rtype,
                    },
                    price * qty,
                )
                for pid, price, qty, rtype in PRODUCTS
            ]
        )
        self.synthetic_type_count = len(self.event_types)
        self.variant_etype = np.array([v.etype for v in self.variants], dtype=np.int32)
        self.variant_revenue = np.array([v.revenue for v in self.variants], dtype=np.float64)

    # ----- users ---------------------------------------------------------------------------

    def _build_users(self) -> None:
        c = self.company
        acct = np.arange(c.n_accounts, dtype=np.uint64)
        seed = np.uint64((c.seed * 1_000_003 + self.project_id) & 0xFFFFFFFF)
        h = mix64(acct * GOLDEN + seed)
        spec = COUNTRIES.get(self.region, COUNTRIES["us"])
        self.country_names = [name for name, _, _ in spec]
        cum = np.cumsum([w for _, w, _ in spec])
        u = (h >> np.uint64(11)).astype(np.float64) / 2.0**53
        self.account_country = np.minimum(np.searchsorted(cum, u * cum[-1]), len(spec) - 1)
        # Cities: flat table; a visitor's city is one of its account country's cities.
        self.city_names, self.city_regions, first, count = [], [], [], []
        for _, _, cities in spec:
            first.append(len(self.city_names))
            count.append(len(cities))
            for city, region in cities:
                self.city_names.append(city)
                self.city_regions.append(region)
        vis = np.arange(c.n_visitors, dtype=np.uint64)
        hv = mix64(vis * GOLDEN + seed + np.uint64(7))
        country = self.account_country[c.visitor_account]
        self.visitor_country = country.astype(np.int16)
        self.visitor_city = (
            np.array(first)[country] + (hv % np.array(count, dtype=np.uint64)[country]).astype(int)
        ).astype(np.int16)
        # A few paying accounts (pro/enterprise, one in four) make the Purchase events.
        self.account_paying = (c.account_plan >= 2) & (h % np.uint64(4) == 0)
        self.visitor_hash = hv
        # Sign-up moment of every visitor: Company.visitor_first_visit_ms, vectorised.
        days = np.unique(c.visitor_created)
        midnight = {int(d): local_midnight_ms(c.day_of(int(d)), c.tz) for d in days}
        base = np.array([midnight[int(d)] for d in c.visitor_created], dtype=np.int64)
        self.signup_ms = base + 10 * 3_600_000 + (np.arange(c.n_visitors) % 3600) * 1000
        self.signup_order = np.argsort(self.signup_ms, kind="stable")
        self.signup_sorted = self.signup_ms[self.signup_order]

    # ----- per-user values (Dashboard property names) --------------------------------------

    def user_property_table(self, prop: str) -> tuple[np.ndarray, list[str]] | None:
        """(code per visitor, labels) for a per-user property, or None when not per-user."""
        c = self.company
        name = prop[3:] if prop.startswith("gp:") else prop
        if name == "country":
            return self.visitor_country.astype(np.int32), list(self.country_names)
        if name == "city":
            return self.visitor_city.astype(np.int32), list(self.city_names)
        if name == "region":
            labels = sorted(set(self.city_regions))
            lut = np.array([labels.index(r) for r in self.city_regions])
            return lut[self.visitor_city].astype(np.int32), labels
        if name == "language":
            return c.visitor_language.astype(np.int32), list(LANGUAGES)
        if name == "plan":
            return c.account_plan[c.visitor_account].astype(np.int32), list(PLANS)
        if name == "role":
            return c.visitor_role.astype(np.int32), list(ROLES)
        if name == "industry":
            return c.account_industry[c.visitor_account].astype(np.int32), list(INDUSTRIES)
        if name == "account":
            return c.visitor_account.astype(np.int32), [
                c.account_id(i) for i in range(c.n_accounts)
            ]
        if name == "paying":
            return (self.account_paying[c.visitor_account].astype(np.int32), ["false", "true"])
        return None

    def device_property(self, prop: str) -> tuple[np.ndarray, list[str]] | None:
        """(code per (app, browser) pair = app * len(BROWSERS) + browser, labels)."""
        values = []
        for a, _app in enumerate(self.company.apps):
            for b in range(len(BROWSERS)):
                d = self.device(a, b)
                values.append(
                    {
                        "platform": d["platform"],
                        "os": f"{d['os_name']} {d['os_version']}",
                        "device": d["device_family"],
                        "device_type": d["device_type"],
                        "version": d["version_name"],
                        "carrier": d["device_carrier"],
                        "library": "http/2.0",
                        "start_version": None,
                        "DMA": None,
                    }.get(prop)
                )
        if prop not in (
            "platform",
            "os",
            "device",
            "device_type",
            "version",
            "carrier",
            "library",
            "start_version",
            "DMA",
        ):
            return None
        labels = sorted({"(none)" if v is None else str(v) for v in values})
        codes = np.array([labels.index("(none)" if v is None else str(v)) for v in values])
        return codes, labels

    def base_user_properties(self, visitor: int) -> dict[str, Any]:
        c = self.company
        account = int(c.visitor_account[visitor])
        return {
            "plan": PLANS[int(c.account_plan[account])],
            "role": ROLES[int(c.visitor_role[visitor])],
            "account": c.account_id(account),
            "industry": INDUSTRIES[int(c.account_industry[account])],
        }

    def group_properties(self, account: int) -> dict[str, Any]:
        c = self.company
        return {
            "name": c.account_name(account),
            "plan": PLANS[int(c.account_plan[account])],
            "industry": INDUSTRIES[int(c.account_industry[account])],
            "arr": float(c.account_arr[account]),
        }

    def device(self, app: int, browser: int) -> dict[str, Any]:
        platform = self.company.apps[app].platform
        if platform in MOBILE_DEVICES:
            (plat, os_name, os_ver, brand, manu, model, family, dtype, carrier, version) = (
                MOBILE_DEVICES[platform]
            )
            return {
                "platform": plat,
                "os_name": os_name,
                "os_version": os_ver,
                "device_brand": brand,
                "device_manufacturer": manu,
                "device_model": model,
                "device_family": family,
                "device_type": dtype,
                "device_carrier": carrier,
                "version_name": version,
            }
        name, version, os_family, _ = BROWSERS[browser]
        family = {"Mac OS X": "Mac", "Windows": "Windows", "Linux": "Linux"}[os_family]
        return {
            "platform": "Web",
            "os_name": name,
            "os_version": version.split(".")[0],
            "device_brand": None,
            "device_manufacturer": None,
            "device_model": family,
            "device_family": family,
            "device_type": family,
            "device_carrier": None,
            "version_name": None,
        }

    def device_id(self, visitor: int, app: int) -> str:
        """Stable per visitor and app (the web device also follows the visitor's browser)."""
        h = mix64(
            np.array([visitor * 8 + app], dtype=np.uint64) * GOLDEN + self.visitor_hash[visitor]
        )
        h2 = mix64(h + GOLDEN)
        a, b = int(h[0]), int(h2[0])
        text = f"{a:016x}{b:016x}"
        uuid = f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{text[16:20]}-{text[20:32]}"
        return uuid.upper() if self.company.apps[app].platform == "ios" else uuid

    def ip_address(self, visitor: int) -> str:
        h = int(self.visitor_hash[visitor])
        return f"203.0.{113 + (h >> 8) % 2}.{1 + h % 254}"
