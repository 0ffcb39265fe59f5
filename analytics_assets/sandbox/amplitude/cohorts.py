"""Behavioral cohorts: definitions, on-demand computation, uploads and membership changes.

The seeded cohorts are computed from the project's events (``tenant.events``, the
same events the export serves), so a user active in Pendo is active in Amplitude and
an Amplitude ID here is the export's. A computation reads the last 14 project-time-zone
days once for all cohorts (:class:`WindowSummary`) and is cached per (day, world
version, ingested events, user properties, users): a cohort's members are fixed for
the day unless the data changes, which is what makes the list's ``size`` equal the
row count of a download. Uploaded cohorts hold explicit members; membership changes
on computed cohorts are kept as additions and removals applied after each computation.

The HTTP side (list, get, asynchronous download, upload, membership, usage) is in
``cohort_routes.py``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant
from analytics_assets.sandbox.amplitude.users import UserDirectory

# A power user has at least this many events in the last 7 days (about the top quarter
# of weekly actives with the default company).
POWER_MIN_EVENTS = 40
MAX_IDS_PER_REQUEST = 100_000
MAX_COHORT_SIZE = 2_000_000
CSV_CHUNK_ROWS = 5_000
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
OWNER = "amp"  # the live samples' owner login of built-in cohorts


class CohortError(Exception):
    """A refused cohort request: status and the envelope's ``details``."""

    def __init__(self, status: int, details: str) -> None:
        super().__init__(details)
        self.status = status
        self.details = details


def cohort_id(*parts: object) -> str:
    """An 8-character lowercase alphanumeric id, stable for the same parts (``9apg8e8f``)."""
    number = int.from_bytes(hashlib.sha1("/".join(map(str, parts)).encode()).digest()[:8], "big")
    chars = []
    for _ in range(8):
        number, digit = divmod(number, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(chars)


def _definition(or_clause: dict[str, Any] | None) -> dict[str, Any]:
    """A definition in the live shape (version 3, one AND of one OR clause)."""
    clauses = [] if or_clause is None else [{"negated": False, "orClauses": [or_clause]}]
    return {
        "version": 3,
        "countGroup": {"name": "User", "is_computed": False},
        "cohortType": "UNIQUES",
        "andClauses": clauses,
        "referenceFrameTimeParams": {},
        "orClauses": [clauses] if clauses else [],
    }


def _event_clause(days: int, operator: str, value: int, event_type: str = "_active") -> dict:
    return {
        "type": "event",
        "time_type": "rolling",
        "time_value": days,
        "offset": 0,
        "interval": 1,
        "exclude_current_interval": False,
        "type_value": event_type,
        "operator": operator,
        "operator_value": value,
        "group_by": [],
        "metric": None,
    }


def _property_clause(prop: str, value: str) -> dict:
    return {
        "type": "user_property",
        "prop_type": "user",
        "prop": f"gp:{prop}",
        "op": "is",
        "values": [value],
    }


@dataclass(frozen=True)
class CohortSpec:
    """A seeded cohort: what it means and how its members are computed."""

    key: str
    name: str
    description: str
    rule: str | None  # a WindowSummary rule name, or None for a never-computed cohort
    definition: dict[str, Any]
    archived: bool = False
    profile_sync: bool = False  # synced to the Profile API (get_cohort_ids)


SEEDED = (
    CohortSpec(
        "power",
        "Power users",
        f"Users with at least {POWER_MIN_EVENTS} events in the last 7 days",
        "power",
        _definition(_event_clause(7, ">=", POWER_MIN_EVENTS)),
        profile_sync=True,
    ),
    CohortSpec(
        "weekly",
        "Weekly active users",
        "Users with any event in the last 7 days",
        "weekly",
        _definition(_event_clause(7, ">=", 1)),
    ),
    CohortSpec(
        "enterprise",
        "Enterprise users",
        "Users whose account is on the enterprise plan",
        "enterprise",
        _definition(_property_clause("plan", "enterprise")),
        profile_sync=True,
    ),
    CohortSpec(
        "dormant",
        "Dormant users",
        "Users with no event in the last 14 days",
        "dormant",
        _definition({**_event_clause(14, "=", 0)}),
    ),
    CohortSpec(
        "new",
        "New users this week",
        "Users whose first event was in the last 7 days",
        "new",
        _definition(
            {
                "type": "new_active",
                "time_type": "rolling",
                "time_value": 7,
                "offset": 0,
                "interval": 1,
                "exclude_current_interval": False,
                "type_value": "new",
            }
        ),
    ),
    CohortSpec(
        "trial",
        "Trial sign-ups",
        "Users who started a trial (not computed yet)",
        None,
        _definition(_event_clause(30, ">=", 1, "Plan Upgraded")),
    ),
    CohortSpec(
        "free",
        "Free plan users",
        "Users whose account is on the free plan (archived)",
        "free",
        _definition(_property_clause("plan", "free")),
        archived=True,
    ),
)


@dataclass
class Cohort:
    """One cohort of the project, seeded or uploaded."""

    id: str
    name: str
    description: str | None
    kind: str  # "behavioral" or "uploaded"
    definition: dict[str, Any]
    created_s: int
    last_mod_s: int
    owners: list[str]
    published: bool = True
    archived: bool = False
    rule: str | None = None
    computed: bool = True
    profile_sync: bool = False
    static: np.ndarray | None = None  # uploaded members (sorted Amplitude IDs)
    static_computed_s: int | None = None
    added: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)
    overlay_version: int = 0


@dataclass
class WindowSummary:
    """The last 14 days of the project's events, read once for every cohort."""

    computed_ms: int
    known: np.ndarray  # every user as of now (sorted Amplitude IDs)
    amps7: np.ndarray  # users with events in the last 7 days (sorted)
    counts7: np.ndarray  # their event counts
    active14: np.ndarray  # users with events in the last 14 days (sorted)
    days14: np.ndarray  # their number of active days
    new7: np.ndarray  # users whose first event was in the last 7 days (sorted)
    plan: Callable[[str], np.ndarray] = field(repr=False, default=lambda name: np.zeros(0))

    def count7(self, amp: int) -> int:
        pos = int(np.searchsorted(self.amps7, amp))
        return int(self.counts7[pos]) if pos < self.amps7.size and self.amps7[pos] == amp else 0

    def active_days14(self, amp: int) -> int:
        pos = int(np.searchsorted(self.active14, amp))
        ok = pos < self.active14.size and self.active14[pos] == amp
        return int(self.days14[pos]) if ok else 0

    def members(self, rule: str) -> np.ndarray:
        if rule == "power":
            return self.amps7[self.counts7 >= POWER_MIN_EVENTS]
        if rule == "weekly":
            return self.amps7
        if rule == "dormant":
            return np.setdiff1d(self.known, self.active14, assume_unique=True)
        if rule == "new":
            return self.new7
        if rule in ("enterprise", "free"):
            return self.plan(rule)
        raise ValueError(f"unknown cohort rule {rule!r}")


class CohortStore:
    """One project's cohorts and their memberships (thread-safe)."""

    def __init__(self, tenant: AmplitudeTenant, directory: UserDirectory) -> None:
        self.tenant = tenant
        self.directory = directory
        self._lock = threading.RLock()
        self._summary: tuple[tuple, WindowSummary] | None = None
        self._members: dict[str, tuple[tuple, np.ndarray]] = {}
        self._uploads = 0
        created = int(datetime(2025, 3, 3, 9, 30, tzinfo=UTC).timestamp())
        self.cohorts: dict[str, Cohort] = {}
        for i, spec in enumerate(SEEDED):
            cid = cohort_id(tenant.project_id, spec.key)
            self.cohorts[cid] = Cohort(
                id=cid,
                name=spec.name,
                description=spec.description,
                kind="behavioral",
                definition=spec.definition,
                created_s=created + i * 86_400,
                last_mod_s=created + i * 86_400 + 3_600,
                owners=[OWNER],
                archived=spec.archived,
                rule=spec.rule,
                computed=spec.rule is not None,
                profile_sync=spec.profile_sync,
            )

    # ----- lookups -------------------------------------------------------------------------

    def get(self, cid: str) -> Cohort:
        with self._lock:
            cohort = self.cohorts.get(cid)
        if cohort is None:
            raise CohortError(404, f"Cohort {cid} not found")
        return cohort

    def all(self) -> list[Cohort]:
        with self._lock:
            return list(self.cohorts.values())

    # ----- computation ---------------------------------------------------------------------

    def _data_key(self) -> tuple:
        t = self.tenant
        return (
            t.today(),
            t.world.version,
            t.ingested.version,
            t.user_props.version,
            t.users.version,
        )

    def summary(self) -> WindowSummary:
        """The 14-day summary for today's data (cached per data version)."""
        key = self._data_key()
        with self._lock:
            if self._summary is not None and self._summary[0] == key:
                return self._summary[1]
        summary = self._compute_summary()
        with self._lock:
            self._summary = (key, summary)
        return summary

    def _compute_summary(self) -> WindowSummary:
        events, today = self.tenant.events, self.tenant.today()
        parts7: list[tuple[np.ndarray, np.ndarray]] = []
        days14: list[np.ndarray] = []
        new7: list[np.ndarray] = []
        for back in range(14):
            day = today - timedelta(days=back)
            amps, counts = events.user_counts(day)
            days14.append(amps)
            if back < 7:
                parts7.append((amps, counts))
                new7.append(events.new_users(day))
        amps7, counts7 = _sum_by_key(parts7)
        active14, n_days = np.unique(np.concatenate(days14), return_counts=True)
        known = self.directory.known_amplitude_ids()
        return WindowSummary(
            computed_ms=self.tenant.now_ms(),
            known=known,
            amps7=amps7,
            counts7=counts7,
            active14=active14.astype(np.int64),
            days14=n_days,
            new7=np.unique(np.concatenate(new7)).astype(np.int64),
            plan=lambda name: self._plan_members(known, name),
        )

    def _plan_members(self, known: np.ndarray, plan: str) -> np.ndarray:
        """Known users whose ``plan`` user property is ``plan`` (identify updates included)."""
        events = self.tenant.events
        codes, labels = events.catalog.user_property_table("plan")  # type: ignore[misc]
        offset = known - events.amp_base
        synthetic = (offset >= 0) & (offset < codes.size)
        hit = np.zeros(known.size, dtype=bool)
        hit[synthetic] = codes[offset[synthetic]] == labels.index(plan)
        changed = set(self.tenant.user_props.updated_users())
        for i in np.flatnonzero(~synthetic).tolist() + [
            j for j in np.flatnonzero(synthetic).tolist() if int(known[j]) in changed
        ]:
            hit[i] = events.user_properties(int(known[i])).get("plan") == plan
        return known[hit]

    def members(self, cohort: Cohort) -> np.ndarray:
        """Sorted Amplitude IDs of a cohort now (computing it when needed)."""
        if cohort.kind == "uploaded":
            with self._lock:
                return cohort.static if cohort.static is not None else np.zeros(0, np.int64)
        key = (*self._data_key(), cohort.overlay_version)
        with self._lock:
            cached = self._members.get(cohort.id)
            if cached is not None and cached[0] == key:
                return cached[1]
        assert cohort.rule is not None or not cohort.computed
        base = (
            self.summary().members(cohort.rule)
            if cohort.rule is not None
            else self._never_computed_members()
        )
        with self._lock:
            added = np.fromiter(cohort.added, np.int64, len(cohort.added))
            removed = np.fromiter(cohort.removed, np.int64, len(cohort.removed))
        result = np.setdiff1d(np.union1d(base, added), removed).astype(np.int64)
        with self._lock:
            self._members[cohort.id] = (key, result)
        return result

    def _never_computed_members(self) -> np.ndarray:
        # "Trial sign-ups": users with a Plan Upgraded event in the last 7 days, computed
        # only once a download asks for it.
        events, today = self.tenant.events, self.tenant.today()
        etype = events.catalog.type_index("Plan Upgraded")
        found = [events.user_counts(today - timedelta(days=b), etype)[0] for b in range(7)]
        return np.unique(np.concatenate(found)).astype(np.int64)

    def size(self, cohort: Cohort) -> int | None:
        return int(self.members(cohort).size) if cohort.computed else None

    def last_computed_s(self, cohort: Cohort) -> int | None:
        if not cohort.computed:
            return None
        if cohort.kind == "uploaded":
            return cohort.static_computed_s
        return self.summary().computed_ms // 1000

    def mark_computed(self, cohort: Cohort) -> None:
        with self._lock:
            cohort.computed = True

    def members_for_query(self, cid: str) -> np.ndarray | None:
        """For ``userdata_cohort`` segments of the Dashboard API (``tenant.cohort_members``)."""
        with self._lock:
            cohort = self.cohorts.get(cid)
        return None if cohort is None else self.members(cohort)

    def profile_cohorts_of(self, amplitude_id: int) -> list[str]:
        """Ids of the cohorts synced to the Profile API that hold the user."""
        out = []
        for cohort in self.all():
            if cohort.profile_sync and cohort.computed and not cohort.archived:
                members = self.members(cohort)
                pos = int(np.searchsorted(members, amplitude_id))
                if pos < members.size and members[pos] == amplitude_id:
                    out.append(cohort.id)
        return out

    # ----- uploads and membership ----------------------------------------------------------

    def _resolve(self, ids: list[Any], by_amplitude_id: bool) -> tuple[list[int], list[Any]]:
        """(Amplitude IDs of the valid ids, the invalid ids) for a user-id or amp-id list."""
        good, bad = [], []
        for raw in ids:
            amp: int | None = None
            if by_amplitude_id:
                text = str(raw).strip()
                if text.isdigit() and self.directory.known(int(text)):
                    amp = int(text)
            elif isinstance(raw, str | int) and not isinstance(raw, bool):
                amp = self.directory.lookup_user(str(raw))
            if amp is None:
                bad.append(raw)
            else:
                good.append(amp)
        return good, bad

    def upload(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise CohortError(400, "name is required")
        app_id = body.get("app_id")
        if str(app_id) != str(self.tenant.project_id):
            raise CohortError(400, f"app_id {app_id!r} does not match this project's API key")
        id_type = body.get("id_type")
        if id_type not in ("BY_AMP_ID", "BY_USER_ID"):
            raise CohortError(400, "id_type must be BY_AMP_ID or BY_USER_ID")
        ids = _id_list(body.get("ids"))
        good, bad = self._resolve(ids, id_type == "BY_AMP_ID")
        if bad and not _flag(body.get("skip_invalid_ids"), True):
            raise CohortError(
                400, f"{len(bad)} invalid ids (skip_invalid_ids is false), for example {bad[:10]}"
            )
        members = np.unique(np.array(good, dtype=np.int64))
        if members.size > MAX_COHORT_SIZE:
            raise CohortError(400, f"A cohort holds at most {MAX_COHORT_SIZE} users")
        now_s = self.tenant.now_ms() // 1000
        owner = body.get("owner") if isinstance(body.get("owner"), str) else OWNER
        existing = body.get("existing_cohort_id")
        with self._lock:
            if existing:
                cohort = self.get(str(existing))
                if cohort.kind != "uploaded":
                    raise CohortError(
                        400, f"Cohort {existing} is not an uploaded cohort and cannot be replaced"
                    )
                cohort.name = name
                cohort.last_mod_s = now_s
            else:
                self._uploads += 1
                cid = cohort_id(self.tenant.project_id, "upload", self._uploads)
                cohort = Cohort(
                    id=cid,
                    name=name,
                    description=None,
                    kind="uploaded",
                    definition=_definition(None),
                    created_s=now_s,
                    last_mod_s=now_s,
                    owners=[owner],
                )
                self.cohorts[cid] = cohort
            cohort.published = _flag(body.get("published"), True)
            cohort.static = members
            cohort.static_computed_s = now_s
        return {
            "cohortId": cohort.id,
            "metadata": {
                # matched = ids that resolved to a user (duplicates included); totals = the
                # distinct users the cohort now holds (the live sample has matched >= totals).
                "matched": len(good),
                "totals": int(members.size),
                "invalid_ids_sample": bad[:10],
            },
        }

    def change_membership(self, body: dict[str, Any]) -> dict[str, Any]:
        cid = body.get("cohort_id")
        if not isinstance(cid, str) or not cid:
            raise CohortError(400, "cohort_id is required")
        cohort = self.get(cid)
        if body.get("count_group", "User") != "User":
            raise CohortError(400, "Only the User count group is supported in this project")
        memberships = body.get("memberships")
        if not isinstance(memberships, list) or not memberships:
            raise CohortError(400, "memberships must be a non-empty list")
        total = 0
        plans = []
        for m in memberships:
            if not isinstance(m, dict):
                raise CohortError(400, "each membership must be an object")
            if m.get("id_type") not in ("BY_ID", "BY_NAME"):
                raise CohortError(400, "id_type must be BY_ID or BY_NAME")
            if m.get("operation") not in ("ADD", "REMOVE"):
                raise CohortError(400, "operation must be ADD or REMOVE")
            ids = m.get("ids")
            if not isinstance(ids, list):
                raise CohortError(400, "ids must be a list")
            total += len(ids)
            plans.append((m["id_type"], m["operation"], ids))
        if total > MAX_IDS_PER_REQUEST:
            raise CohortError(400, f"At most {MAX_IDS_PER_REQUEST} ids per request ({total} given)")
        skip = _flag(body.get("skip_invalid_ids"), True)
        resolved = []
        for id_type, operation, ids in plans:
            good, bad = self._resolve(ids, id_type == "BY_ID")
            if bad and not skip:
                raise CohortError(
                    400,
                    f"{len(bad)} invalid ids (skip_invalid_ids is false), for example {bad[:10]}",
                )
            resolved.append((id_type, operation, good, bad))
        added = sum(len(good) for _, operation, good, _ in resolved if operation == "ADD")
        if self.members(cohort).size + added > MAX_COHORT_SIZE:
            raise CohortError(400, f"A cohort holds at most {MAX_COHORT_SIZE} users")
        with self._lock:
            for _, operation, good, _ in resolved:
                self._apply(cohort, operation, good)
            cohort.overlay_version += 1
            cohort.last_mod_s = self.tenant.now_ms() // 1000
            if cohort.kind == "uploaded":
                cohort.static_computed_s = cohort.last_mod_s
        return {
            "cohort_id": cohort.id,
            "memberships_result": [
                {"skipped_ids": bad, "id_type": id_type, "operation": operation}
                for id_type, operation, _, bad in resolved
            ],
        }

    def _apply(self, cohort: Cohort, operation: str, amps: list[int]) -> None:
        if cohort.kind == "uploaded":
            base = cohort.static if cohort.static is not None else np.zeros(0, np.int64)
            ids = np.array(amps, dtype=np.int64)
            cohort.static = (
                np.union1d(base, ids) if operation == "ADD" else np.setdiff1d(base, ids)
            ).astype(np.int64)
            return
        if operation == "ADD":
            cohort.added.update(amps)
            cohort.removed.difference_update(amps)
        else:
            cohort.removed.update(amps)
            cohort.added.difference_update(amps)

    # ----- views ---------------------------------------------------------------------------

    def view(self, cohort: Cohort, sync_info: bool = False) -> dict[str, Any]:
        """A cohort as ``/api/3/cohorts`` lists it (the live sample's fields and order)."""
        out: dict[str, Any] = {
            "appId": self.tenant.project_id,
            "archived": cohort.archived,
            "definition": cohort.definition,
            "description": cohort.description,
            "finished": cohort.computed,
            "id": cohort.id,
            "name": cohort.name,
            "published": cohort.published,
            "type": "redshift",
            "lastMod": cohort.last_mod_s,
            "createdAt": cohort.created_s,
            "lastComputed": self.last_computed_s(cohort),
            "hidden": False,
            "metadata": None,
            "view_count": None,
            "popularity": None,
            "last_viewed": None,
            "chart_id": None,
            "edit_id": None,
            "is_predictive": False,
            "is_official_content": False,
            "location_id": None,
            "shortcut_ids": [],
            "per_app_metadata": None,
            "cohort_definition_type": None,
            "cohort_output_type": "UNIQUES",
            "is_generated_content": False,
            "owners": list(cohort.owners),
            "viewers": [],
            "size": self.size(cohort),
        }
        if sync_info:
            out["syncMetadata"] = self._sync_metadata(cohort)
        return out

    def _sync_metadata(self, cohort: Cohort) -> list[dict[str, Any]]:
        if not cohort.profile_sync or not cohort.computed:
            return []
        # The target name is ours: the docs show the shape, not the Profile API's name.
        return [
            {
                "target": "profile_api",
                "frequency": "daily",
                "last_successful": self.last_computed_s(cohort),
                "last_failure": None,
                "params": {},
            }
        ]


def _sum_by_key(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = np.concatenate([p[0] for p in parts]).astype(np.int64)
    values = np.concatenate([p[1] for p in parts]).astype(np.int64)
    uniq, inverse = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inverse, weights=values, minlength=uniq.size).astype(np.int64)


def _id_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise CohortError(400, "ids must be a list")
    if len(value) > MAX_IDS_PER_REQUEST:
        raise CohortError(
            400, f"At most {MAX_IDS_PER_REQUEST} ids per request ({len(value)} given)"
        )
    return value


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")
