"""History of visitor and account metadata and of features, pages and guides (SCD type 2).

Each ``<noun>_history`` table holds one row per version of a record: its values, and the
interval ``[valid_from, valid_to)`` in which the snapshots saw them (``valid_to`` NULL:
the current version). The intervals are also given as subscription-local days
(``valid_from_day``/``valid_to_day``, the day a version was first and last the day's
final value), so "the value as of day D" is one join::

    SELECT u.*, h.plan
    FROM pendo.account_daily_usage AS u
    JOIN pendo.account_history AS h
      ON h.account_id = u.account_id
     AND h.valid_from_day <= u.day AND (h.valid_to_day IS NULL OR h.valid_to_day > u.day)

(and with timestamps: ``h.valid_from <= t AND (h.valid_to IS NULL OR h.valid_to > t)``).

The history asset reads the snapshot table it follows (``pendo.accounts`` …), refreshed
just before by ``catalog_refresh``, so it costs no API call; what the CRM write-back
writes into Pendo is in the next snapshot, and so in the history. History starts with
the first snapshot: a version's ``valid_from`` is when a snapshot first saw it.

The update is three statements in the portable SQL subset, each idempotent, in an order
that leaves a state the next run completes if a run stops between them:

1. insert a new version of every record whose values differ from its current version
   (or that has none), valid from now;
2. close every current version that has a later one, at the later one's ``valid_from``;
3. close the current version of records that left the snapshot (deleted in Pendo).

A re-run on the same snapshot changes nothing. Only the tracked columns make a new
version: ``lastvisit`` changes with every visit and is left out; the full JSON of a
catalog object is kept with each version but compared through ``lastUpdatedAt``.
"""

# No `from __future__ import annotations`: Dagster reads the asset function's context
# annotation at definition time.
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from analytics_assets.naming import SNAPSHOT, AssetNaming, asset_tags
from analytics_assets.partitions import FRESHNESS_POLICY
from analytics_assets.warehouse import checks
from analytics_assets.warehouse.asset_kinds import WAREHOUSE_KIND
from analytics_assets.warehouse.base import WarehouseResource
from analytics_assets.warehouse.loading import Column, table_metadata
from analytics_assets.warehouse.types import DATE, TS_US

KINDS = {"pendo", WAREHOUSE_KIND}
OWNERS = ["team:data-engineering"]
INTERVALS_VALID = "history_intervals_valid"

VALID_FROM = Column("valid_from", TS_US, "When a snapshot first saw this version (UTC)")
VALID_TO = Column("valid_to", TS_US, "When a snapshot first saw the next version; NULL: current")
VALID_FROM_DAY = Column(
    "valid_from_day",
    DATE,
    "Subscription-local day of valid_from: the version is the day's value from this day",
)
VALID_TO_DAY = Column(
    "valid_to_day", DATE, "Subscription-local day of valid_to (exclusive); NULL: current"
)
INTERVAL = [VALID_FROM, VALID_TO, VALID_FROM_DAY, VALID_TO_DAY]


@dataclass(frozen=True)
class HistorySpec:
    """The history of one snapshot table: which record, which columns make a version."""

    noun: str
    source: str  # the snapshot asset (and table name) it follows
    id_column: str
    tracked: tuple[str, ...]  # a change in any of these is a new version
    kept: tuple[str, ...] = ()  # copied with each version, not compared


HISTORY_ASSETS: dict[str, HistorySpec] = {
    "visitor_history": HistorySpec(
        "identified visitor's metadata (agent, custom and Pendo fields, account)",
        "visitors",
        "visitor_id",
        ("account_id", "email", "name", "role", "language", "agent", "custom", "pendo"),
        ("first_visit",),
    ),
    "account_history": HistorySpec(
        "account's metadata (agent, custom and Pendo fields; the write-back's included)",
        "accounts",
        "account_id",
        ("name", "plan", "agent", "custom", "pendo"),
        ("first_visit",),
    ),
    "feature_history": HistorySpec(
        "feature (name, app, page, last change)",
        "features",
        "id",
        ("name", "kind", "app_id", "page_id", "last_updated_at"),
        ("created_at", "details"),
    ),
    "page_history": HistorySpec(
        "page (name, app, last change)",
        "pages",
        "id",
        ("name", "kind", "app_id", "last_updated_at"),
        ("created_at", "details"),
    ),
    "guide_history": HistorySpec(
        "guide (name, state, launch method, steps, last change)",
        "guides",
        "id",
        ("name", "kind", "app_id", "state", "launch_method", "step_count", "last_updated_at"),
        ("created_at", "details"),
    ),
}


def history_columns(spec: HistorySpec, source_columns: Sequence[Column]) -> list[Column]:
    """The source's id, tracked and kept columns (with their types), then the interval."""
    by_name = {c.name: c for c in source_columns}
    names = [spec.id_column, *spec.tracked, *spec.kept]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ValueError(f"history of {spec.source}: no column {missing} in the snapshot")
    return [by_name[n] for n in names] + INTERVAL


@dataclass(frozen=True)
class Applied:
    """What one update did."""

    versions_added: int
    versions_closed: int
    current: int


def _count(warehouse: WarehouseResource, sql: str, params: Sequence[object] = ()) -> int:
    return int(warehouse.records(sql, list(params))[0]["n"])


def apply_snapshot(
    warehouse: WarehouseResource,
    history: str,
    source: str,
    spec: HistorySpec,
    columns: Sequence[Column],
    now: datetime,
    today: object,
) -> Applied:
    """Bring ``history`` up to the snapshot in ``source`` as seen at ``now`` (local ``today``)."""
    warehouse.create_table(history, columns)
    key = spec.id_column
    values = [key, *spec.tracked, *spec.kept]
    closed_before = _count(
        warehouse, f"SELECT count(*) AS n FROM {history} WHERE valid_to IS NOT NULL"
    )
    rows_before = _count(warehouse, f"SELECT count(*) AS n FROM {history}")
    same = " AND ".join(f"c.{col} IS NOT DISTINCT FROM s.{col}" for col in spec.tracked)
    names = ", ".join([*values, "valid_from", "valid_to", "valid_from_day", "valid_to_day"])
    selected = ", ".join(f"s.{col}" for col in values)
    # 1. New versions: records whose values differ from every current version of theirs.
    warehouse.execute(
        f"INSERT INTO {history} ({names}) "
        f"SELECT {selected}, ?, CAST(NULL AS TIMESTAMP), ?, CAST(NULL AS DATE) FROM {source} AS s "
        f"WHERE s.{key} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {history} AS c "
        f"WHERE c.{key} = s.{key} AND c.valid_to IS NULL AND {same})",
        [now, today],
    )
    # 2. A current version with a later one ends where the next begins (also heals a run
    # that stopped after step 1: the interval is the same whenever this runs).
    bare = history.rsplit(".", 1)[-1]
    warehouse.execute(
        f"UPDATE {history} SET valid_to = n.next_from, valid_to_day = n.next_day "
        f"FROM (SELECT c.{key} AS id, c.valid_from AS valid_from, "
        f"min(l.valid_from) AS next_from, min(l.valid_from_day) AS next_day "
        f"FROM {history} AS c JOIN {history} AS l "
        f"ON l.{key} = c.{key} AND l.valid_from > c.valid_from "
        f"WHERE c.valid_to IS NULL GROUP BY c.{key}, c.valid_from) AS n "
        f"WHERE {bare}.{key} = n.id AND {bare}.valid_from = n.valid_from",
    )
    # 3. Records gone from the snapshot: their current version ends now.
    warehouse.execute(
        f"UPDATE {history} SET valid_to = ?, valid_to_day = ? WHERE valid_to IS NULL "
        f"AND {key} NOT IN (SELECT {key} FROM {source} WHERE {key} IS NOT NULL)",
        [now, today],
    )
    closed_after = _count(
        warehouse, f"SELECT count(*) AS n FROM {history} WHERE valid_to IS NOT NULL"
    )
    rows_after = _count(warehouse, f"SELECT count(*) AS n FROM {history}")
    current = _count(warehouse, f"SELECT count(*) AS n FROM {history} WHERE valid_to IS NULL")
    return Applied(rows_after - rows_before, closed_after - closed_before, current)


def intervals_spec(asset_key: dg.AssetKey) -> dg.AssetCheckSpec:
    return checks.check_spec(
        INTERVALS_VALID,
        asset_key,
        "Every record of the snapshot has exactly one current version, no other "
        "record has one, and every closed interval ends after it starts",
    )


def check_intervals(
    warehouse: WarehouseResource, history: str, source: str, key: str
) -> dg.AssetCheckResult:
    stats = warehouse.records(
        f"SELECT "
        f"(SELECT count(*) FROM (SELECT {key} FROM {history} WHERE valid_to IS NULL "
        f"GROUP BY {key} HAVING count(*) > 1) AS d) AS many_current, "
        f"(SELECT count(*) FROM {history} WHERE valid_to IS NOT NULL "
        f"AND valid_to <= valid_from) AS bad_intervals, "
        f"(SELECT count(*) FROM {source} AS s WHERE NOT EXISTS (SELECT 1 FROM {history} AS h "
        f"WHERE h.{key} = s.{key} AND h.valid_to IS NULL)) AS without_current, "
        f"(SELECT count(*) FROM {history} AS h WHERE h.valid_to IS NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {source} AS s WHERE s.{key} = h.{key})) AS stale_current"
    )[0]
    found = {k: int(v) for k, v in stats.items()}
    return dg.AssetCheckResult(
        check_name=INTERVALS_VALID, passed=not any(found.values()), metadata=found
    )


def history_asset(
    naming: AssetNaming,
    name: str,
    spec: HistorySpec,
    source_columns: Sequence[Column],
    timezone: str,
    built: Collection[str],
) -> dg.AssetsDefinition:
    """The history of ``spec.source``, updated from its table after each snapshot."""
    key = naming.key(name)
    table = naming.table(name)
    source = naming.table(spec.source)
    columns = history_columns(spec, source_columns)
    keys = [spec.id_column, "valid_from"]
    zone = ZoneInfo(timezone)

    @dg.asset(
        key=key,
        group_name=naming.group,
        kinds=KINDS,
        owners=OWNERS,
        tags=asset_tags(naming, SNAPSHOT),
        description=(
            f"Every version of each {spec.noun}, with its validity interval (valid_from, "
            f"valid_to; NULL is current), from the {spec.source} snapshots."
        ),
        deps=[naming.key(spec.source)] if spec.source in built else [],
        freshness_policy=FRESHNESS_POLICY,
        check_specs=[checks.keys_spec(key, keys), intervals_spec(key)],
    )
    def _history(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        if not warehouse.table_exists(source):
            raise dg.Failure(f"{source} does not exist yet: materialize {spec.source} first")
        now = datetime.now(UTC)
        applied = apply_snapshot(
            warehouse, table, source, spec, columns, now, now.astimezone(zone).date()
        )
        context.log.info(
            f"{table}: {applied.versions_added} versions added, "
            f"{applied.versions_closed} closed, {applied.current} current"
        )
        return dg.MaterializeResult(
            metadata={
                **table_metadata(warehouse, table, columns),
                "versions_added": dg.MetadataValue.int(applied.versions_added),
                "versions_closed": dg.MetadataValue.int(applied.versions_closed),
                "current_versions": dg.MetadataValue.int(applied.current),
            },
            check_results=[
                checks.check_keys_unique(warehouse, table, keys),
                check_intervals(warehouse, table, source, spec.id_column),
            ],
        )

    _history.__name__ = "_".join([*naming.key_prefix, "pendo", name])
    return _history
