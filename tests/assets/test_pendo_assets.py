"""The Pendo assets against the sandbox: rows equal what the sandbox holds for the day,
computed independently from its generated activity; re-runs leave identical tables."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

import dagster as dg
import numpy as np
import pytest
from sync_day import DAY

from analytics_assets.pendo.assets import pendo_assets
from analytics_assets.sandbox.company import GUIDE_EVENT_TYPES

ASSETS = pendo_assets()
DAILY = [a.key for a in ASSETS if a.partitions_def is not None]
SNAPSHOTS = [a.key for a in ASSETS if a.partitions_def is None]


@pytest.fixture(scope="module")
def materialized(sandbox, resources):
    snap = dg.materialize(ASSETS, selection=SNAPSHOTS, resources=resources)
    daily = dg.materialize(ASSETS, selection=DAILY, partition_key=DAY, resources=resources)
    assert snap.success and daily.success
    return daily


def _activity(sandbox):
    world = sandbox.state.world("us")
    return world.company, world.activity(date.fromisoformat(DAY))


def _table(resources, sql):
    return resources["warehouse"].query(sql)


def test_visitor_usage_equals_the_sandbox_day(sandbox, resources, materialized) -> None:
    company, act = _activity(sandbox)
    expected: dict[str, int] = defaultdict(int)
    for v, n in zip(act.visitor.tolist(), act.num_events.tolist(), strict=True):
        expected[company.visitor_id(v)] += n
    got = _table(
        resources,
        f"SELECT visitor_id, events FROM pendo.visitor_daily_usage WHERE day = DATE '{DAY}'",
    )
    assert dict(zip(got.visitor_id, got.events.astype(int), strict=True)) == dict(expected)


def test_account_usage_sums_and_active_visitors(sandbox, resources, materialized) -> None:
    company, act = _activity(sandbox)
    accounts = company.visitor_account[act.visitor]
    got = _table(
        resources,
        "SELECT account_id, events, minutes, active_visitors "
        f"FROM pendo.account_daily_usage WHERE day = DATE '{DAY}'",
    )
    assert len(got) == len(np.unique(accounts))
    for row in got.itertuples():
        index = company.account_index(row.account_id)
        mine = accounts == index
        assert row.events == act.num_events[mine].sum()
        assert row.minutes == act.num_minutes[mine].sum()
        assert row.active_visitors == len(np.unique(act.visitor[mine]))


def test_feature_usage_per_feature(sandbox, resources, materialized) -> None:
    company, act = _activity(sandbox)
    expected: dict[str, int] = defaultdict(int)
    for f, n in zip(act.feature.tolist(), act.feature_events.tolist(), strict=True):
        expected[company.features[f].id] += n
    got = _table(
        resources,
        "SELECT feature_id, events, unique_visitors FROM "
        f"pendo.feature_daily_usage WHERE day = DATE '{DAY}'",
    )
    assert dict(zip(got.feature_id, got.events.astype(int), strict=True)) == dict(expected)
    first = got.iloc[0]
    f_index = next(i for i, f in enumerate(company.features) if f.id == first.feature_id)
    parents = act.feature_parent[act.feature == f_index]
    assert first.unique_visitors == len(np.unique(act.visitor[parents]))


def test_guide_activity_counts_each_type(sandbox, resources, materialized) -> None:
    company, act = _activity(sandbox)
    expected: dict[tuple[str, str], int] = defaultdict(int)
    for g, t in zip(act.guide.tolist(), act.guide_type.tolist(), strict=True):
        expected[(company.guides[g].id, GUIDE_EVENT_TYPES[t])] += 1
    got = _table(
        resources,
        f"SELECT guide_id, type, events FROM pendo.guide_daily_activity WHERE day = DATE '{DAY}'",
    )
    rows = {(r.guide_id, r.type): r.events for r in got.itertuples()}
    # Poll responses are answers to the NPS guide, derived by the sandbox from its views.
    polls = {k: v for k, v in rows.items() if k[1] == "pollResponse"}
    poll_guides = {g.id for g in company.guides if g.poll_id}
    assert polls and {g for g, _ in polls} <= poll_guides
    assert {k: v for k, v in rows.items() if k[1] != "pollResponse"} == dict(expected)


def test_catalog_and_entities_match_the_company(sandbox, resources, materialized) -> None:
    company, _ = _activity(sandbox)
    features = _table(resources, "SELECT id FROM pendo.features")
    assert set(features.id) == {f.id for f in company.features}
    accounts = _table(resources, "SELECT count(*) AS n FROM pendo.accounts")
    assert int(accounts.n[0]) == company.n_accounts
    visitors = _table(resources, "SELECT count(*) AS n FROM pendo.visitors")
    assert int(visitors.n[0]) == company.n_visitors


def test_checks_pass_and_metadata_reports_cost(materialized) -> None:
    evaluations = materialized.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
    usage = next(
        m
        for m in materialized.get_asset_materialization_events()
        if m.asset_key == dg.AssetKey(["pendo", "account_daily_usage"])
    )
    metadata = usage.materialization.metadata
    assert metadata["pendo_requests"].value >= 1
    assert metadata["dagster/row_count"].value > 0


def test_rerunning_a_partition_leaves_identical_tables(resources, materialized) -> None:
    tables = [
        "visitor_daily_usage",
        "account_daily_usage",
        "feature_daily_usage",
        "page_daily_usage",
        "guide_daily_activity",
        "events_hourly",
    ]

    def snapshot():
        return {
            t: _table(resources, f"SELECT * FROM pendo.{t} ORDER BY ALL").to_dict("list")
            for t in tables
        }

    before = snapshot()
    again = dg.materialize(ASSETS, selection=DAILY, partition_key=DAY, resources=resources)
    assert again.success
    assert snapshot() == before


def test_events_hourly_holds_what_to_row_makes_of_the_answer(resources, materialized) -> None:
    """events_hourly is read as Arrow columns (``arrow_rows.EVENTS_HOURLY``, no dict per
    row): its partition holds exactly what the spec's row-by-row ``to_row`` makes of the
    same answer."""
    from analytics_assets.partitions import DailyCalendar
    from analytics_assets.pendo.assets import DAILY_ASSETS, _series

    spec = DAILY_ASSETS["events_hourly"]
    window = DailyCalendar().window(DAY)
    names = ["day", *(c.name for c in spec.columns)]

    def plain(row: dict) -> tuple:  # instants compared as instants, whatever their zone
        return tuple(v.timestamp() if isinstance(v, datetime) else v for v in map(row.get, names))

    with resources["pendo"].get_client() as client:
        answer = client.aggregate(spec.pipeline(_series([window], spec.period), "*"))
        want = sorted((plain({"day": window.day, **spec.to_row(raw)}) for raw in answer), key=repr)
    rows = resources["warehouse"].records(
        f"SELECT {', '.join(names)} FROM pendo.events_hourly WHERE day = ?", [window.day]
    )
    assert want and sorted(map(plain, rows), key=repr) == want
