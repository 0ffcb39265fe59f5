"""Plain-Python client of Amplitude's APIs (no Dagster here).

One :class:`AmplitudeClient` per project and region covers the Dashboard REST API (tidy rows,
not series of series), the Export API (streamed to disk), behavioral cohorts, taxonomy, the
User Profile API and ingestion. Every request goes through the shared :class:`Transport`
(retries, backoff, typed errors, secret redaction) and, *before* it is sent, through the
limiter of its budget family from :func:`amplitude_budgets`, charged with the cost Amplitude
will charge (:func:`amplitude_query_cost`), so the client waits instead of earning a 429.

Layout: this module is the facade (hosts, auth, Dashboard, cohorts, taxonomy, profile);
``amplitude_budget`` meters and settles the budgets, ``amplitude_tidy`` shapes answers into
rows, ``amplitude_export`` handles the export archive and ``amplitude_ingest`` ingestion.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

import httpx

from analytics_assets.amplitude.costs import (
    amplitude_budgets,
    amplitude_days,
    amplitude_query_cost,
    taxonomy_cost,
)
from analytics_assets.amplitude.export import Exporter, ExportResult, ExportTooLargeError
from analytics_assets.amplitude.ingest import Ingestor, IngestResult
from analytics_assets.amplitude.metering import MeteredLimiter
from analytics_assets.amplitude.tidy import (
    chart_rows,
    funnel_rows,
    ltv_rows,
    retention_rows,
    series_rows,
)
from analytics_assets.http.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    ServerError,
    StreamInterruptedError,
    TransportError,
)
from analytics_assets.http.limits import Limiter
from analytics_assets.http.transport import (
    DamagedBodyError,
    JsonAnswer,
    Secret,
    StatsSnapshot,
    Transport,
    TransportConfig,
    is_transport_fault,
    stream_to_file,
)

__all__ = [
    "AmplitudeClient",
    "AmplitudeStats",
    "AmplitudeTimeoutError",
    "ExportResult",
    "ExportTooLargeError",
    "IngestResult",
]

logger = logging.getLogger("analytics_assets.http")

DateLike = date | str
EventLike = dict[str, Any] | str

#: Hosts per region (contract §0). The User Profile API is not offered in the EU.
HOSTS: Mapping[str, Mapping[str, str | None]] = MappingProxyType(
    {
        "us": {
            "rest": "https://amplitude.com",
            "ingestion": "https://api2.amplitude.com",
            "profile": "https://profile-api.amplitude.com",
        },
        "eu": {
            "rest": "https://analytics.eu.amplitude.com",
            "ingestion": "https://api.eu.amplitude.com",
            "profile": None,
        },
    }
)
FAMILIES = ("dashboard", "user_lookup", "cohorts", "export", "taxonomy", "profile")
# Cohort membership changes accept at most 100,000 ids per request (contract §5).
MEMBERSHIP_CHUNK = 100_000
_YMD = re.compile(r"^\d{8}$")
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class AmplitudeTimeoutError(ApiError, TimeoutError):
    """An asynchronous job (a cohort download) did not finish before the deadline."""

    service_hints = {}  # this error's own hint wins over any per-service one
    default_hint = (
        "The job is still running on Amplitude's side; raise deadline_seconds, or download "
        "without properties (props=False), which Amplitude computes faster."
    )


class PresignedLinkError(Exception):
    """The presigned link of a cohort file failed (expired: S3 answers 403; a 5xx; a
    dropped connection): ask ``/file`` again for a fresh link, in the same retry loop."""


class _TooFewMembers(DamagedBodyError):
    """A cohort file with fewer members than the cohort's size: cut short on the way at a
    line end (its length may still match its Content-Length); download it again."""


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _cohort_file_fault(exc: BaseException) -> bool:
    return is_transport_fault(exc) or isinstance(exc, PresignedLinkError)


class AmplitudeStats:
    """Counters summed over the client's transports; the API of ``TransportStats``.

    ``snapshot()`` returns one :class:`StatsSnapshot` (service ``amplitude``),
    ``delta(since)`` what happened after ``since``, ``summary()`` a one-line text.
    """

    def __init__(self, transports: Callable[[], Iterable[Transport]]) -> None:
        self._transports = transports

    def snapshot(self) -> StatsSnapshot:
        total: dict[str, float] = {}
        statuses: dict[int, int] = {}
        for transport in self._transports():
            snap = transport.stats.snapshot()
            for name, value in snap.as_dict().items():
                if name == "responses_by_status":
                    for code, n in value.items():
                        statuses[code] = statuses.get(code, 0) + n
                elif name != "service":
                    total[name] = total.get(name, 0) + value
        return StatsSnapshot(
            service="amplitude",
            responses_by_status=MappingProxyType(statuses),
            **{k: v if "seconds" in k else int(v) for k, v in total.items()},  # type: ignore[arg-type]
        )

    def delta(self, since: StatsSnapshot) -> StatsSnapshot:
        return self.snapshot().minus(since)

    def summary(self) -> str:
        return self.snapshot().summary()

    def __repr__(self) -> str:
        return f"AmplitudeStats({self.snapshot()!r})"


def _ymd(value: DateLike) -> str:
    """A date as Amplitude's ``YYYYMMDD`` (accepts date, datetime, ``YYYYMMDD``, ISO)."""
    if isinstance(value, datetime):
        return value.strftime("%Y%m%d")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    text = str(value).strip()
    if _YMD.match(text):
        return text
    if _ISO_DAY.match(text):
        return text.replace("-", "")
    raise ValueError(f"expected a date, YYYYMMDD or YYYY-MM-DD, got {value!r}")


def _as_date(value: DateLike) -> date:
    return datetime.strptime(_ymd(value), "%Y%m%d").date()


def _event(value: EventLike) -> dict[str, Any]:
    if isinstance(value, str):
        return {"event_type": value}
    if not isinstance(value, dict) or not value.get("event_type"):
        raise ValueError(f"an event needs an event_type, got {value!r}")
    return value


def _compact(value: Any) -> str:
    # httpx URL-encodes query values; the JSON itself stays compact.
    return json.dumps(value, separators=(",", ":"))


def _segment_counts(segments: Sequence[Any] | None) -> tuple[int, int]:
    """(segments, conditions inside them) of an ``s`` value, for the cost model.

    ``s`` is one segment: a list of conditions (property filters, cohorts, "who
    performed"). A list of lists is read as several segments.
    """
    if not segments:
        return 0, 0
    if all(isinstance(s, list | tuple) for s in segments):
        return len(segments), sum(len(s) for s in segments)
    return 1, len(segments)


def _group_bys(group_by: str | Sequence[str] | None) -> list[str]:
    if group_by is None:
        return []
    items = [group_by] if isinstance(group_by, str) else list(group_by)
    if len(items) > 2:
        raise ValueError("Amplitude groups by at most 2 properties (g and g2)")
    return items


def _objects(value: Any, what: str, path: str) -> list[dict[str, Any]]:
    """A JSON array of objects (``null`` is none); anything else raises ApiError."""
    if value is None:
        return []
    if not isinstance(value, list):
        problem = f"{what} is a {type(value).__name__}, not a list of objects"
    else:
        bad = next((i for i, item in enumerate(value) if not isinstance(item, dict)), None)
        if bad is None:
            return value
        problem = f"item {bad} of {what} is a {type(value[bad]).__name__}, not an object"
    raise ApiError(
        problem,
        service="amplitude",
        method="GET",
        url=path,
        hint="Check base_url points at Amplitude's API host; nothing was read from the answer.",
    )


def _members_check(expected: int) -> Callable[[Path], None]:
    """A download check: the cohort file holds at least ``expected`` members."""

    def check(path: Path) -> None:
        members = sum(1 for _ in AmplitudeClient.read_cohort_csv(path))
        if members < expected:
            raise _TooFewMembers(
                f"the file holds {members} members but the cohort list says {expected}: "
                "cut short on the way, or the cohort was recomputed meanwhile"
            )

    return check


def _cohort_file_error(path: Path, problem: str) -> ApiError:
    return ApiError(
        f"the cohort file {path.name} cannot be read: {problem}",
        service="amplitude",
        hint="Download the cohort again; if the file is the same, report it to Amplitude.",
    )


class AmplitudeClient:
    """One Amplitude project: Dashboard REST, Export, cohorts, taxonomy, profile, ingestion.

    ``region`` is ``"us"`` or ``"eu"``; ``base_url`` (REST, Export, cohorts, taxonomy),
    ``ingestion_url`` and ``profile_url`` override the region's hosts (a proxy, the sandbox).
    ``budgets`` are the limiters from :func:`amplitude_budgets`: share one dict per project
    (with ``ledger_path``, one SQLite ledger per host, so every process, client and thread
    draws on the same windows). Without ``budgets`` the client keeps its own, in memory.
    Thread-safe.

    ``throttle_pause_factor`` scales the 30 s (15 s) pause after an ingestion 429 (tests);
    ``sleep``, ``clock`` (monotonic) and ``http_transport`` are injectable for tests.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        region: str = "us",
        base_url: str | None = None,
        ingestion_url: str | None = None,
        profile_url: str | None = None,
        budgets: Mapping[str, Limiter] | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 180.0,
        max_attempts: int = 6,
        max_retry_time: float = 300.0,
        throttle_pause_factor: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        region = (region or "").strip().lower()
        if region not in HOSTS:
            raise ConfigurationError(
                f"unknown Amplitude region {region!r}; use 'us' or 'eu' (or pass base_url)",
                service="amplitude",
            )
        if not api_key or not secret_key:
            raise ConfigurationError(
                "the Amplitude API key and secret key are both required; set them from "
                "environment variables (AmplitudeResource uses EnvVar)",
                service="amplitude",
            )
        self.region = region
        self._api_key = Secret(api_key)
        self._secret = Secret(secret_key)
        self._sleep = sleep
        self._clock = clock
        self._throttle_pause_factor = throttle_pause_factor
        hosts = HOSTS[region]
        self.base_url = (base_url or hosts["rest"] or "").rstrip("/")
        self.ingestion_url = (ingestion_url or hosts["ingestion"] or "").rstrip("/")
        self.profile_url = (profile_url or hosts["profile"] or "").rstrip("/") or None

        common: dict[str, Any] = {
            "service": "amplitude",
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "max_attempts": max_attempts,
            "max_retry_time": max_retry_time,
            "secrets": (self._api_key, self._secret),
        }
        kw: dict[str, Any] = {"sleep": sleep, "clock": clock, "http_transport": http_transport}
        # Never follow redirects with credentials attached: the only redirect Amplitude
        # sends (a cohort file's presigned S3 link) is followed by hand, without auth.
        rest = TransportConfig(
            base_url=self.base_url,
            auth=(self._api_key, self._secret),
            follow_redirects=False,
            # 10 user-lookup + 5 REST queries may be in flight at once.
            max_connections=20,
            max_keepalive_connections=20,
            **common,
        )
        self._rest = Transport(rest, **kw)
        # The export gets its own transport: a 504 there means "too much data for one
        # call", which retrying unchanged cannot fix; the window is split instead.
        self._export = Transport(
            TransportConfig(
                base_url=self.base_url,
                auth=(self._api_key, self._secret),
                follow_redirects=False,
                retry_statuses=frozenset({408, 429, 500, 502, 503}),
                **common,
            ),
            **kw,
        )
        # Event ingestion reads its own 400/413/429 bodies (which events failed and why:
        # it passes them as `expected`); /identify leaves its 429s to the transport's
        # retries, as for every other API.
        self._ingestion = Transport(TransportConfig(base_url=self.ingestion_url, **common), **kw)
        # Presigned S3 links: no credentials at all, whatever host they point to. One attempt
        # each: a link lives about a minute, so every retry asks /file for a fresh one, in
        # the one retry loop of the cohort file download (see ``_cohort_file``).
        self._files = Transport(
            TransportConfig(
                base_url=self.base_url, follow_redirects=False, **{**common, "max_attempts": 1}
            ),
            **kw,
        )
        self._profile: Transport | None = None
        if self.profile_url:
            self._profile = Transport(
                TransportConfig(
                    base_url=self.profile_url,
                    default_headers={"Authorization": Secret(f"Api-Key {secret_key}")},
                    **common,
                ),
                **kw,
            )

        given = dict(budgets or {})
        missing = [f for f in FAMILIES if f not in given]
        if missing:
            given |= {f: lim for f, lim in amplitude_budgets().items() if f in missing}
        self._cost_lock = threading.Lock()
        self._cost_spent: dict[str, float] = dict.fromkeys(FAMILIES, 0.0)
        self._limiters: dict[str, MeteredLimiter] = {
            f: MeteredLimiter(given[f], f, self._charge, clock=clock, sleep=sleep) for f in FAMILIES
        }
        self.stats = AmplitudeStats(self._transports)
        self._chart_costs: dict[str, int] = {}

    # -- bookkeeping

    def _transports(self) -> list[Transport]:
        found = [self._rest, self._export, self._ingestion, self._files]
        return found + ([self._profile] if self._profile is not None else [])

    def _charge(self, family: str, cost: float) -> None:
        with self._cost_lock:
            self._cost_spent[family] = self._cost_spent.get(family, 0.0) + cost

    @property
    def cost_spent(self) -> dict[str, float]:
        """Cost units charged to each budget family so far (retries included), e.g.
        ``{"dashboard": 1800.0, "cohorts": 3.0, …}``."""
        with self._cost_lock:
            return dict(self._cost_spent)

    @property
    def budgets(self) -> Mapping[str, Limiter]:
        """The limiters in use, per family (read-only view)."""
        return MappingProxyType({f: m.inner for f, m in self._limiters.items()})

    def _request_json(
        self,
        transport: Transport,
        method: str,
        path: str,
        *,
        family: str | None,
        cost: float = 1,
        **kwargs: Any,
    ) -> JsonAnswer:
        """A JSON answer through the transport's one retry loop: a damaged body (HTML, empty,
        cut short) is resent like a dropped connection, then fails saying what it was."""
        limiter = self._limiters[family] if family else None
        try:
            return transport.request_json(method, path, limiter=limiter, cost=cost, **kwargs)
        except AuthenticationError as exc:
            raise self._auth_error(exc) from None

    def _auth_error(self, exc: AuthenticationError) -> AuthenticationError:
        """The same error with a hint naming this client's region and hosts."""
        return AuthenticationError(
            exc.summary,
            status=exc.status,
            method=exc.method,
            url=exc.url,
            service="amplitude",
            body_excerpt=exc.body_excerpt,
            attempts=exc.attempts,
            hint=(
                "Check the API key and secret and that they belong to this region "
                f"({self.region}; host {self.base_url}): Amplitude answers a key of the other "
                "region (us/eu) with 403 'Invalid API Key' and a wrong secret with "
                "'Invalid API/Secret Key combination'."
            ),
        )

    def _get(self, path: str, params: Any = None, *, family: str, cost: float = 1) -> Any:
        return self._request_json(
            self._rest, "GET", path, family=family, cost=cost, params=params
        ).data

    def _dashboard(self, path: str, params: Any, cost: float) -> Any:
        return self._dashboard_body(path, params, cost)[0]

    def _dashboard_body(self, path: str, params: Any, cost: float) -> tuple[Any, float | None]:
        """``data`` of a Dashboard answer, and the cost the server says it charged."""
        body = self._get(path, params, family="dashboard", cost=cost)
        if not isinstance(body, dict) or "data" not in body:
            return body, None
        charged = body.get("novaCost")
        charged = float(charged) if isinstance(charged, int | float) else None
        if charged is not None and charged > cost:
            # The server priced the query higher than our model (a saved chart, a cohort
            # segment): charge our ledger the difference so later queries wait for it.
            logger.debug(
                "[amplitude] %s cost %g, not %g: charging the difference", path, charged, cost
            )
            limiter = self._limiters["dashboard"]
            limiter.acquire(charged - cost)
            limiter.release(charged - cost)
        return body["data"], charged

    @staticmethod
    def _common_params(
        start: DateLike,
        end: DateLike,
        interval: int | None,
        segments: Sequence[Any] | None,
        group_by: Sequence[str],
    ) -> list[tuple[str, str]]:
        params = [("start", _ymd(start)), ("end", _ymd(end))]
        if interval is not None:
            params.append(("i", str(interval)))
        if segments:
            params.append(("s", _compact(list(segments))))
        for name, value in zip(("g", "g2"), group_by, strict=False):
            params.append((name, value))
        return params

    @staticmethod
    def _days(start: DateLike, end: DateLike) -> int:
        return amplitude_days(_ymd(start), _ymd(end))

    # -- Dashboard REST

    def active_users(
        self,
        start: DateLike,
        end: DateLike,
        *,
        metric: Literal["active", "new"] = "active",
        interval: int = 1,
        segments: list[dict[str, Any]] | None = None,
        group_by: str | None = None,
    ) -> list[dict[str, Any]]:
        """Active or new users per day/week/month (``/api/2/users``).

        Returns rows ``{"date": date, "group": str, "value": int}``, one per group and
        interval; ``group`` is ``"All Users"`` without ``group_by``.
        """
        if metric not in ("active", "new"):
            raise ValueError("metric must be 'active' or 'new'")
        groups = _group_bys(group_by)[:1]
        params = [("m", metric), *self._common_params(start, end, interval, segments, groups)]
        n_seg, n_cond = _segment_counts(segments)
        cost = amplitude_query_cost(
            "users",
            days=self._days(start, end),
            segments=n_seg,
            conditions=n_cond,
            group_bys=len(groups),
        )
        data = self._dashboard("/api/2/users", params, cost)
        return series_rows(data or {}, hourly=interval < 0)

    def events_list(self) -> list[dict[str, Any]]:
        """Event types with this week's totals (``/api/2/events/list``); hidden ones omitted."""
        data = self._dashboard("/api/2/events/list", None, 1)
        return _objects(data, "the event list", "/api/2/events/list")

    def segmentation(
        self,
        event: EventLike,
        start: DateLike,
        end: DateLike,
        *,
        metric: str = "totals",
        interval: int = 1,
        segments: list[dict[str, Any]] | None = None,
        group_by: str | Sequence[str] | None = None,
        limit: int | None = None,
        second_event: EventLike | None = None,
        formula: str | None = None,
    ) -> list[dict[str, Any]]:
        """Event segmentation (``/api/2/events/segmentation``) as rows
        ``{"date", "group", "value"}`` (plus ``"event"`` when ``second_event`` is given).

        ``event`` is an event type or an event definition (``{"event_type", "filters",
        "group_by"}``); ``group_by`` names one or two segment properties (``g``/``g2``);
        ``metric`` is ``uniques|totals|pct_dau|average|histogram|sums|value_avg|formula``.
        Costs days × conditions × (events + 4 per group-by per event) from the budget.
        """
        events = [_event(event)] + ([_event(second_event)] if second_event is not None else [])
        groups = _group_bys(group_by)
        params = [("e", _compact(events[0]))]
        if len(events) > 1:
            params.append(("e2", _compact(events[1])))
        params.append(("m", metric))
        params += self._common_params(start, end, interval, segments, groups)
        if limit is not None:
            params.append(("limit", str(limit)))
        if formula is not None:
            params.append(("formula", formula))
        n_seg, n_cond = _segment_counts(segments)
        cost = amplitude_query_cost(
            "segmentation",
            days=self._days(start, end),
            events=len(events),
            segments=n_seg,
            conditions=n_cond,
            group_bys=len(groups),
            event_group_bys=sum(len(e.get("group_by") or []) for e in events),
        )
        data = self._dashboard("/api/2/events/segmentation", params, cost)
        names = [e["event_type"] for e in events] if len(events) > 1 else None
        return series_rows(data or {}, hourly=interval < 0, event_names=names)

    def funnel(
        self,
        events: Sequence[EventLike],
        start: DateLike,
        end: DateLike,
        *,
        mode: Literal["ordered", "unordered", "sequential"] = "ordered",
        conversion_window_seconds: int | None = None,
        new_or_active: Literal["active", "new"] | None = None,
        interval: int | None = None,
        segments: list[dict[str, Any]] | None = None,
        group_by: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """A funnel (``/api/2/funnels``) as one row per group and step:
        ``{"group", "step", "event", "count", "cumulative_ratio", "step_ratio",
        "median_trans_time_ms", "avg_trans_time_ms"}``. Costs days × conditions × (steps × 2
        + 4 per group-by per event)."""
        steps = [_event(e) for e in events]
        if not steps:
            raise ValueError("a funnel needs at least one step")
        groups = _group_bys(group_by)[:1]
        params = [("e", _compact(e)) for e in steps]
        params += self._common_params(start, end, interval, segments, groups)
        params.append(("mode", mode))
        if new_or_active is not None:
            params.append(("n", new_or_active))
        if conversion_window_seconds is not None:
            params.append(("cs", str(int(conversion_window_seconds))))
        if limit is not None:
            params.append(("limit", str(limit)))
        n_seg, n_cond = _segment_counts(segments)
        cost = amplitude_query_cost(
            "funnel",
            days=self._days(start, end),
            steps=len(steps),
            segments=n_seg,
            conditions=n_cond,
            group_bys=len(groups),
            event_group_bys=sum(len(e.get("group_by") or []) for e in steps),
        )
        return funnel_rows(self._dashboard("/api/2/funnels", params, cost))

    def retention(
        self,
        start_event: EventLike,
        return_event: EventLike,
        start: DateLike,
        end: DateLike,
        *,
        mode: Literal["n-day", "rolling", "bracket"] = "n-day",
        brackets: list[list[int]] | None = None,
        interval: int | None = None,
        segments: list[dict[str, Any]] | None = None,
        group_by: str | None = None,
    ) -> list[dict[str, Any]]:
        """Retention (``/api/2/retention``) as rows ``{"group", "cohort_date", "interval",
        "count", "outof", "incomplete"}``; interval 0 is the cohort on its first day.
        ``start_event`` may be ``"_new"`` (new users) or ``"_all"``. Costs days × conditions
        × 8."""
        groups = _group_bys(group_by)[:1]
        params = [
            ("se", _compact(_event(start_event))),
            ("re", _compact(_event(return_event))),
            ("rm", mode),
        ]
        if brackets is not None:
            params.append(("rb", _compact(brackets)))
        params += self._common_params(start, end, interval, segments, groups)
        n_seg, n_cond = _segment_counts(segments)
        cost = amplitude_query_cost(
            "retention",
            days=self._days(start, end),
            segments=n_seg,
            conditions=n_cond,
            group_bys=len(groups),
        )
        data = self._dashboard("/api/2/retention", params, cost)
        return retention_rows(data or {}, _as_date(start), _as_date(end))

    def revenue_ltv(
        self,
        start: DateLike,
        end: DateLike,
        metric: int = 0,
        *,
        interval: int | None = None,
        segments: list[dict[str, Any]] | None = None,
        group_by: str | None = None,
    ) -> list[dict[str, Any]]:
        """Revenue LTV (``/api/2/revenue/ltv``): ``metric`` 0 ARPU, 1 ARPPU, 2 total revenue,
        3 paying users. Rows ``{"group", "date", "count", "paid", "total_amount", "r1d", …}``."""
        if metric not in (0, 1, 2, 3):
            raise ValueError("metric must be 0 (ARPU), 1 (ARPPU), 2 (total) or 3 (paying users)")
        groups = _group_bys(group_by)[:1]
        params = [("m", str(metric)), *self._common_params(start, end, interval, segments, groups)]
        n_seg, n_cond = _segment_counts(segments)
        cost = amplitude_query_cost(
            "revenue",
            days=self._days(start, end),
            segments=n_seg,
            conditions=n_cond,
            group_bys=len(groups),
        )
        data = self._dashboard("/api/2/revenue/ltv", params, cost)
        return ltv_rows(data or {}, _as_date(start), _as_date(end))

    def _chart(self, chart_id: str, kind: str, cost: int | None) -> Any:
        key = str(chart_id)
        estimate = cost if cost is not None else self._chart_costs.get(key, 1)
        path = f"/api/3/chart/{quote(key, safe='')}/{kind}"
        data, charged = self._dashboard_body(path, None, estimate)
        if charged is not None:
            self._chart_costs[key] = int(charged)
        return data

    def chart_results(self, chart_id: str, *, cost: int | None = None) -> list[dict[str, Any]]:
        """A saved chart's results (``/api/3/chart/{id}/query``) as rows: ``{"x", "group",
        "value"}`` for time series and single numbers (``x`` a date), the funnel rows of
        :meth:`funnel` for a funnel chart.

        A chart's cost depends on its definition, which the client cannot see. The first
        call charges ``cost`` (default 1) and then tops the ledger up to what the server
        reports (``novaCost``); later calls for the same chart charge that up front.
        """
        data = self._chart(chart_id, "query", cost)
        if isinstance(data, list):
            return funnel_rows(data)
        return chart_rows(data or {})

    def chart_csv(self, chart_id: str, *, cost: int | None = None) -> str:
        """A saved chart as the CSV text Amplitude's UI exports (``/api/3/chart/{id}/csv``);
        parse it with :func:`amplitude_tidy.parse_chart_csv`. Charged as
        :meth:`chart_results`."""
        data = self._chart(chart_id, "csv", cost)
        if data is None:
            return ""
        if not isinstance(data, str):
            raise ApiError(
                f"the chart CSV answer holds a {type(data).__name__}, not the CSV text",
                service="amplitude",
                method="GET",
                url=f"/api/3/chart/{quote(str(chart_id), safe='')}/csv",
                hint="Check base_url points at Amplitude's API host.",
            )
        return data

    # -- user lookup

    def user_search(self, user: str) -> dict[str, Any]:
        """Find users by Amplitude ID, device ID, user ID or user-ID prefix
        (``/api/2/usersearch``): ``{"type": "match_user_or_device_id"|"match_user_prefix"|
        "nomatch", "matches": [{"user_id", "amplitude_id", "last_seen", …}]}``."""
        return self._get("/api/2/usersearch", {"user": str(user)}, family="user_lookup")

    def user_activity(
        self,
        amplitude_id: int | str,
        *,
        offset: int = 0,
        limit: int = 1000,
        direction: Literal["latest", "earliest"] = "latest",
    ) -> dict[str, Any]:
        """One user's summary and events (``/api/2/useractivity``):
        ``{"userData": {…}, "events": [...]}`` (``limit`` ≤ 1000)."""
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        params = {
            "user": str(amplitude_id),
            "offset": str(offset),
            "limit": str(limit),
            "direction": direction,
        }
        return self._get("/api/2/useractivity", params, family="user_lookup")

    # -- export

    def export(
        self,
        start_hour: datetime,
        end_hour: datetime,
        dest_dir: Path,
        *,
        count_events: bool = False,
    ) -> ExportResult:
        """Raw events uploaded in hours ``start_hour``..``end_hour`` (inclusive, UTC; naive
        datetimes are UTC) as ``*.json.gz`` NDJSON files in ``dest_dir``.

        The zip is streamed to disk, checked, extracted and deleted; memory stays flat. The
        Export API's own "no data" 404 (``Raw data files were not found.``) gives an empty
        window, listed in ``no_data_windows`` (``result.no_data`` when every window was);
        any other 404 (an intermediary's HTML page, an empty body, another JSON) is retried
        and then raises :class:`DamagedResponseError` naming what came back. A window
        refused as too large (400) or too slow (504) is split in halves down to one hour,
        then :class:`ExportTooLargeError`. More than 365 days is refused before sending
        (``ValueError``). ``count_events`` counts the lines (one more streamed pass over the
        files).
        """
        exporter = Exporter(self._export, self._limiters["export"])
        try:
            return exporter.run(start_hour, end_hour, Path(dest_dir), count=count_events)
        except AuthenticationError as exc:
            raise self._auth_error(exc) from None

    # -- cohorts

    def list_cohorts(self, include_sync_info: bool = False) -> list[dict[str, Any]]:
        """Every cohort of the project (``/api/3/cohorts``)."""
        params = {"includeSyncInfo": "true"} if include_sync_info else None
        body = self._get("/api/3/cohorts", params, family="cohorts")
        if not isinstance(body, dict) or "cohorts" not in body:
            found = f"a {type(body).__name__}" if not isinstance(body, dict) else "no 'cohorts'"
            raise ApiError(
                f'the cohort list answer has {found}, not {{"cohorts": [...]}}',
                service="amplitude",
                method="GET",
                url="/api/3/cohorts",
                hint="Check base_url points at Amplitude's API host.",
            )
        return _objects(body["cohorts"], "the cohort list", "/api/3/cohorts")

    def get_cohort(self, cohort_id: str) -> dict[str, Any]:
        """One cohort (``/api/3/cohorts/{id}``): ``{"cohort": {...}, "user_ids": [...], …}``."""
        return self._get(f"/api/3/cohorts/{quote(str(cohort_id), safe='')}", family="cohorts")

    def download_cohort(
        self,
        cohort_id: str,
        dest: Path,
        *,
        props: bool = False,
        prop_keys: Sequence[str] = (),
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        deadline_seconds: float = 1800.0,
        expected_members: int | None = None,
    ) -> Path:
        """Download a cohort's members as CSV to ``dest`` and return ``dest``.

        The asynchronous flow of contract §5: request (202 with a request id), poll the
        request status with growing intervals until ``JOB COMPLETED``, then fetch the file,
        following a 302 to the presigned link without sending our credentials there.
        Raises :class:`AmplitudeTimeoutError` past ``deadline_seconds``.

        ``expected_members`` (the cohort list's ``size``): a file with fewer rows was cut
        short on the way at a line end, which its Content-Length cannot show, so it is
        downloaded again like a dropped connection; if it stays short, a
        :class:`TransportError` says so and ``dest`` is left as it was.
        """
        dest = Path(dest)
        params: list[tuple[str, str]] = [("props", "1" if props else "0")]
        params += [("propKeys", k) for k in prop_keys]
        cid = quote(str(cohort_id), safe="")
        started = self._clock()
        body = self._request_json(
            self._rest, "GET", f"/api/5/cohorts/request/{cid}", family="cohorts", params=params
        ).data
        request_id = str(body.get("request_id") or "") if isinstance(body, dict) else ""
        if not request_id:
            raise ApiError(
                "the cohort download request returned no request_id",
                service="amplitude",
                method="GET",
                url=f"/api/5/cohorts/request/{cid}",
            )
        rid = quote(request_id, safe="")
        interval = max(poll_interval, 0.0)
        while True:
            status = self._request_json(
                self._rest, "GET", f"/api/5/cohorts/request-status/{rid}", family="cohorts"
            ).data
            state = str(status.get("async_status", "")) if isinstance(status, dict) else ""
            if state.upper() == "JOB COMPLETED":
                break
            if state and "PROGRESS" not in state.upper():
                raise ApiError(
                    f"the cohort download job ended as {state!r}",
                    service="amplitude",
                    method="GET",
                    url=f"/api/5/cohorts/request-status/{rid}",
                    hint="Request the download again; with many properties try props=False.",
                )
            elapsed = self._clock() - started
            if elapsed + interval > deadline_seconds:
                raise AmplitudeTimeoutError(
                    f"cohort {cohort_id} was not ready after {elapsed:.0f} s "
                    f"(deadline {deadline_seconds:g} s, last status {state or 'unknown'!r}, "
                    f"request {request_id})",
                    service="amplitude",
                    method="GET",
                    url=f"/api/5/cohorts/request-status/{rid}",
                )
            self._sleep(interval)
            interval = min(max_poll_interval, max(interval * 1.5, 0.05))
        self._cohort_file(cohort_id, f"/api/5/cohorts/request/{rid}/file", dest, expected_members)
        return dest

    def _cohort_file(
        self, cohort_id: str, path: str, dest: Path, expected_members: int | None
    ) -> None:
        """Fetch a finished cohort's file in the transport's one retry loop: a dropped
        connection, a file shorter than its Content-Length or than ``expected_members``, or
        a presigned link that failed (expired, 5xx) asks ``/file`` again (its link stays
        valid 7 days and hands out a fresh presigned one), with one attempt count, backoff
        and time budget for all of them."""
        check = None if expected_members is None else _members_check(expected_members)

        def read(response: httpx.Response) -> Iterator[int]:
            if response.status_code in _REDIRECTS:
                yield self._follow_presigned(response, path, dest, check)
            elif response.status_code == 200:
                yield stream_to_file(response, dest, check=check)
            else:
                raise ApiError(
                    f"unexpected HTTP {response.status_code} for the cohort file",
                    status=response.status_code,
                    service="amplitude",
                    method="GET",
                    url=path,
                )

        written = self._rest.consume(
            "GET", path, read, retryable=_cohort_file_fault, limiter=self._limiters["cohorts"]
        )
        try:
            with contextlib.closing(written):
                next(written)
        except AuthenticationError as exc:
            raise self._auth_error(exc) from None
        except StreamInterruptedError as exc:
            raise TransportError(
                f"the file of cohort {cohort_id} did not arrive whole ({exc.detail}); {exc.reason}",
                service="amplitude",
                method="GET",
                url=path,
                attempts=exc.attempts,
                hint="Nothing was written; download the cohort again (its file link stays "
                "valid 7 days), or check the network and proxies if it keeps happening.",
            ) from exc

    def _follow_presigned(
        self,
        response: httpx.Response,
        path: str,
        dest: Path,
        check: Callable[[Path], None] | None,
    ) -> int:
        location = response.headers.get("location")
        if not location:
            raise ApiError(
                "a redirect without Location",
                status=response.status_code,
                service="amplitude",
                method="GET",
                url=path,
            )
        target = str(response.request.url.join(location))
        response.close()  # frees the REST connection and its cohort slot before S3
        # A presigned link (valid about a minute) on another host: the credential-free
        # transport fetches it, so neither Basic auth nor the API key goes to S3. It makes
        # one attempt; whatever fails there is retried by asking /file again.
        try:
            with contextlib.closing(self._files.request("GET", target, stream=True)) as s3:
                return stream_to_file(s3, dest, check=check)
        except (AuthenticationError, ServerError, TransportError) as exc:
            # S3 answers 403 to an expired link; /file hands out a fresh one.
            raise PresignedLinkError(f"the presigned link answered {exc.summary}") from exc

    @staticmethod
    def read_cohort_csv(path: Path) -> Iterator[dict[str, str]]:
        """Rows of a downloaded cohort file (CSV with a header row, e.g. ``user_id``),
        streamed. Amplitude sometimes pads headers with spaces; they are stripped.

        A file that is not UTF-8 CSV, or a row with more values than the header names
        (they could not be attributed), raises :class:`ApiError` naming the line.
        """
        path = Path(path)
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader, None)
                if header is None:
                    return
                names = [h.strip() for h in header]
                for record in reader:
                    if any(v.strip() for v in record[len(names) :]):
                        raise _cohort_file_error(
                            path,
                            f"line {reader.line_num} has {len(record)} values but the header "
                            f"names {len(names)} columns",
                        )
                    if record:
                        yield dict(zip(names, (v.strip() for v in record), strict=False))
            except UnicodeDecodeError as exc:
                raise _cohort_file_error(path, f"it is not UTF-8 (byte {exc.start})") from None
            except csv.Error as exc:
                raise _cohort_file_error(path, f"line {reader.line_num}: {exc}") from None

    def upload_cohort(
        self,
        name: str,
        ids: Iterable[str],
        *,
        id_type: Literal["BY_USER_ID", "BY_AMP_ID"] = "BY_USER_ID",
        app_id: int,
        owner: str,
        published: bool = True,
        existing_cohort_id: str | None = None,
        skip_invalid_ids: bool = True,
    ) -> dict[str, Any]:
        """Create a cohort from ids, or replace the members of ``existing_cohort_id``
        (``POST /api/3/cohorts/upload``): ``{"cohortId", "metadata": {"matched", …}}``."""
        ids = [str(i) for i in ids]
        if len(ids) > 2_000_000:
            raise ValueError("a cohort holds at most 2 million users")
        body: dict[str, Any] = {
            "name": name,
            "app_id": int(app_id),
            "id_type": id_type,
            "ids": ids,
            "owner": owner,
            "published": bool(published),
            "skip_invalid_ids": skip_invalid_ids,
        }
        if existing_cohort_id is not None:
            body["existing_cohort_id"] = existing_cohort_id
        # Idempotent only when it replaces a known cohort: a repeated create makes two.
        return self._request_json(
            self._rest,
            "POST",
            "/api/3/cohorts/upload",
            family="cohorts",
            json=body,
            idempotent=existing_cohort_id is not None,
        ).data

    def update_cohort_membership(
        self,
        cohort_id: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        id_type: Literal["BY_NAME", "BY_ID"] = "BY_NAME",
        count_group: str = "User",
        skip_invalid_ids: bool = True,
    ) -> dict[str, Any]:
        """Add and remove members (``POST /api/3/cohorts/membership``) in requests of at most
        100,000 ids. ``BY_NAME`` = user IDs, ``BY_ID`` = Amplitude IDs. Returns the last
        answer with ``memberships_result`` gathered over every request."""
        results: list[Any] = []
        last: dict[str, Any] = {"cohort_id": cohort_id}
        for operation, ids in (("ADD", list(add)), ("REMOVE", list(remove))):
            for i in range(0, len(ids), MEMBERSHIP_CHUNK):
                chunk = [str(x) for x in ids[i : i + MEMBERSHIP_CHUNK]]
                body = {
                    "cohort_id": cohort_id,
                    "count_group": count_group,
                    "memberships": [{"ids": chunk, "id_type": id_type, "operation": operation}],
                    "skip_invalid_ids": skip_invalid_ids,
                }
                # Adding or removing the same ids twice leaves the same membership: safe
                # to resend after a 5xx or a dropped connection.
                last = self._request_json(
                    self._rest,
                    "POST",
                    "/api/3/cohorts/membership",
                    family="cohorts",
                    json=body,
                    idempotent=True,
                ).data
                results += list(last.get("memberships_result") or [])
        return {**last, "memberships_result": results}

    def cohort_usage(self) -> dict[str, Any]:
        """Cohort downloads used this month: ``{"limit": 500, "count": 12}``."""
        return self._get("/api/3/cohorts/usage", family="cohorts")

    # -- taxonomy

    def _taxonomy(self, method: str, path: str, *, params: Any = None, data: Any = None) -> Any:
        answer = self._request_json(
            self._rest,
            method,
            f"/api/2/taxonomy/{path}",
            family="taxonomy",
            cost=taxonomy_cost(method),
            params=params,
            data=data,
            expected=(409,),
            # A write may answer nothing; a read must answer JSON (else it is retried).
            allow_empty=method != "GET",
        )
        body = {} if answer.data is None else answer.data
        status = answer.status
        if status == 409 or (isinstance(body, dict) and body.get("success") is False):
            errors = body.get("errors") if isinstance(body, dict) else None
            message = (
                "; ".join(
                    str(e.get("message", e)) if isinstance(e, dict) else str(e)
                    for e in errors or []
                )
                or f"HTTP {status}"
            )
            cls = NotFoundError if "not exist" in message.lower() else BadRequestError
            raise cls(
                f"taxonomy {method} {path} refused",
                status=status,
                method=method,
                url=f"/api/2/taxonomy/{path}",
                service="amplitude",
                body_excerpt=self._rest.redact(message),
            )
        return body.get("data") if isinstance(body, dict) else body

    @staticmethod
    def _form(fields: Mapping[str, Any]) -> dict[str, str]:
        out = {}
        for key, value in fields.items():
            if value is None:
                continue
            if isinstance(value, bool):
                out[key] = "true" if value else "false"
            elif isinstance(value, list | tuple):
                out[key] = ",".join(str(v) for v in value)  # tags, enum_values: comma strings
            else:
                out[key] = str(value)
        return out

    def list_event_types(self, *, show_deleted: bool = False) -> list[dict[str, Any]]:
        """Planned and live event types (``GET /api/2/taxonomy/event``)."""
        params = {"showDeleted": "true"} if show_deleted else None
        return list(self._taxonomy("GET", "event", params=params) or [])

    def create_event_type(
        self,
        event_type: str,
        *,
        category: str | None = None,
        description: str | None = None,
        **fields: Any,
    ) -> None:
        """Plan a new event type (``POST /api/2/taxonomy/event``, form-encoded)."""
        form = self._form(
            {"event_type": event_type, "category": category, "description": description, **fields}
        )
        self._taxonomy("POST", "event", data=form)

    def update_event_type(self, event_type: str, **fields: Any) -> None:
        """Change an event type (``PUT /api/2/taxonomy/event/{event_type}``): ``category``,
        ``description``, ``display_name``, ``new_event_type``, ``is_active``, ``tags``,
        ``owner``, ``is_hidden_from_*``."""
        if not fields:
            raise ValueError("update_event_type needs at least one field to change")
        self._taxonomy("PUT", f"event/{quote(event_type, safe='')}", data=self._form(fields))

    def list_event_properties(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Event properties (``GET /api/2/taxonomy/event-property``), of one event type or
        all."""
        params = {"event_type": event_type} if event_type else None
        return list(self._taxonomy("GET", "event-property", params=params) or [])

    def list_user_properties(self, *, show_deleted: bool = False) -> list[dict[str, Any]]:
        """User properties (``GET /api/2/taxonomy/user-property``); custom ones as ``gp:``."""
        params = {"showDeleted": "true"} if show_deleted else None
        return list(self._taxonomy("GET", "user-property", params=params) or [])

    def create_user_property(
        self,
        name: str,
        *,
        description: str | None = None,
        type: str | None = None,
        **fields: Any,
    ) -> None:
        """Plan a user property (``POST /api/2/taxonomy/user-property``); ``type`` is
        ``string|number|boolean|enum|any``."""
        form = self._form(
            {"user_property": name, "description": description, "type": type, **fields}
        )
        self._taxonomy("POST", "user-property", data=form)

    # -- user profile

    def user_profile(
        self, user_id: str | None = None, device_id: str | None = None, **flags: Any
    ) -> dict[str, Any]:
        """A user's profile (``/v1/userprofile``): ``userData`` with ``amp_props``,
        ``cohort_ids``, ``recommendations``… as asked by ``flags`` (``get_amp_props=True``,
        ``get_cohort_ids=True``, ``comp_id="a,b"``…). Not offered in the EU."""
        if self._profile is None:
            raise ConfigurationError(
                "Amplitude's User Profile API is not offered in the EU region; it exists only "
                "for US projects (pass profile_url only if Amplitude gave you one)",
                service="amplitude",
            )
        if not user_id and not device_id:
            raise ValueError("user_profile needs a user_id or a device_id")
        params: dict[str, str] = {}
        if user_id:
            params["user_id"] = str(user_id)
        if device_id:
            params["device_id"] = str(device_id)
        for key, value in flags.items():
            if isinstance(value, bool):
                params[key] = "true" if value else "false"
            elif isinstance(value, list | tuple):
                params[key] = ",".join(map(str, value))
            elif value is not None:
                params[key] = str(value)
        body = self._request_json(
            self._profile, "GET", "/v1/userprofile", family="profile", params=params
        ).data
        return body.get("userData", body) if isinstance(body, dict) else body

    # -- ingestion

    def _ingestor(self, batch_api: bool = False) -> Ingestor:
        return Ingestor(
            self._ingestion,
            self._api_key,
            batch_api=batch_api,
            throttle_pause_factor=self._throttle_pause_factor,
            sleep=self._sleep,
            clock=self._clock,
        )

    def send_events(
        self, events: Iterable[dict[str, Any]], *, batch_api: bool = False
    ) -> IngestResult:
        """Send events through HTTP V2 (``/2/httpapi``) or the batch API (``/batch``).

        Events are consumed lazily and sent in requests within the caps (≤ 2,000 events and
        < 1 MB, or ≤ 20 MB for batch). An event without ``insert_id`` gets one derived from
        its content, so a retry or a re-run never doubles it. Invalid events are reported
        in ``failed_events``, not raised; throttled users/devices are paused and their events
        resent. Raises only when the request itself cannot succeed (bad key, server down).
        """
        try:
            return self._ingestor(batch_api).send(events)
        except AuthenticationError as exc:
            raise self._auth_error(exc) from None

    def identify(self, identifications: Iterable[dict[str, Any]]) -> int:
        """Update user properties (``/identify``) in form-encoded batches of at most 1,024;
        each item has ``user_id`` or ``device_id`` and ``user_properties``. Returns how
        many identifications were accepted."""
        return self._ingestor().identify("/identify", identifications)

    def group_identify(self, group_type: str, group_value: str, properties: dict[str, Any]) -> int:
        """Set a group's properties (``/groupidentify``); plain keys are ``$set``."""
        return self.group_identify_many(
            [{"group_type": group_type, "group_value": group_value, "group_properties": properties}]
        )

    def group_identify_many(self, identifications: Iterable[dict[str, Any]]) -> int:
        """Several group identifications (``group_type``, ``group_value``,
        ``group_properties``) in batches of at most 1,024 per request."""
        return self._ingestor().identify("/groupidentify", identifications)

    # -- lifecycle

    def close(self) -> None:
        for transport in self._transports():
            transport.close()

    def __enter__(self) -> AmplitudeClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AmplitudeClient(region={self.region!r}, base_url={self.base_url!r})"

    # -- sessions and annotations

    def _sessions(self, path: str, start: DateLike, end: DateLike) -> list[dict[str, Any]]:
        params = [("start", _ymd(start)), ("end", _ymd(end))]
        cost = amplitude_query_cost("sessions", days=self._days(start, end))
        return series_rows(self._dashboard(path, params, cost) or {})

    def session_average_length(self, start: DateLike, end: DateLike) -> list[dict[str, Any]]:
        """Average session length in seconds per day (``/api/2/sessions/average``): rows
        ``{"date": date, "group": str, "value": float}``."""
        return self._sessions("/api/2/sessions/average", start, end)

    def sessions_per_user(self, start: DateLike, end: DateLike) -> list[dict[str, Any]]:
        """Average sessions per active user per day (``/api/2/sessions/peruser``), rows as
        :meth:`session_average_length`."""
        return self._sessions("/api/2/sessions/peruser", start, end)

    def list_annotations(self) -> list[dict[str, Any]]:
        """Every chart annotation of the project (``GET /api/2/annotations``): ``id``,
        ``date``, ``label``, ``details``. Not a chart query: no Dashboard cost."""
        body = self._request_json(self._rest, "GET", "/api/2/annotations", family=None).data
        data = body.get("data") if isinstance(body, dict) else body
        return _objects(data, "annotations", "/api/2/annotations")
