"""Visitor-level Pendo usage against the sandbox: each table's rows equal an independent
count from the sandbox's generated day; the visitor tables sum to the item tables; a
re-run leaves identical tables."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import dagster as dg
import numpy as np
import pytest
from sync_day import DAY

from analytics_assets.pendo.assets import pendo_assets
from analytics_assets.pendo.visitor_usage import VISITOR_USAGE_ASSETS
from analytics_assets.sandbox.company import GUIDE_EVENT_TYPES
from analytics_assets.sandbox.pendo.provider import POLL_RESPONSE, PendoRegion
from analytics_assets.sandbox.pendo.store import PendoStore

ITEM_TABLES = ("feature_daily_usage", "page_daily_usage", "guide_daily_activity")
CATALOG = ("features", "pages", "guides", "track_types", "guide_steps", "polls")
ASSETS = pendo_assets(include=[*CATALOG, *ITEM_TABLES, *VISITOR_USAGE_ASSETS])
DAILY = [a.key for a in ASSETS if a.partitions_def is not None]
SNAPSHOTS = [a.key for a in ASSETS if a.partitions_def is None]


@pytest.fixture(scope="module")
def materialized(sandbox, resources):
    snap = dg.materialize(ASSETS, selection=SNAPSHOTS, resources=resources)
    daily = dg.materialize(ASSETS, selection=DAILY, partition_key=DAY, resources=resources)
    assert snap.success and daily.success
    return daily


@pytest.fixture(scope="module")
def day(sandbox):
    world = sandbox.state.world("us")
    return world.company, world.activity(date.fromisoformat(DAY))


def _rows(resources, table: str, columns: str) -> list[tuple]:
    frame = resources["warehouse"].query(
        f"SELECT {columns} FROM pendo.{table} WHERE day = DATE '{DAY}'"
    )
    return list(frame.itertuples(index=False, name=None))


def _children(company, act, parent, child, events, minutes, ids):
    """(visitor id, account id, item id) -> [events, minutes] over the day's hours."""
    out: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    visitors = act.visitor[parent]
    accounts = company.visitor_account[visitors]
    for v, a, c, e, m in zip(
        visitors.tolist(),
        accounts.tolist(),
        child.tolist(),
        events.tolist(),
        minutes.tolist(),
        strict=True,
    ):
        cell = out[(company.visitor_id(v), company.account_id(a), ids[c])]
        cell[0] += e
        cell[1] += m
    return {k: tuple(v) for k, v in out.items()}


def _got(rows: list[tuple]) -> dict:
    return {tuple(r[:3]): (int(r[3]), int(r[4])) for r in rows}


def test_feature_visitor_usage_equals_the_sandbox_day(resources, materialized, day) -> None:
    company, act = day
    ids = [f.id for f in company.features]
    expected = _children(
        company,
        act,
        act.feature_parent,
        act.feature,
        act.feature_events,
        act.feature_minutes,
        ids,
    )
    got = _rows(
        resources,
        "feature_visitor_daily_usage",
        "visitor_id, account_id, feature_id, events, minutes",
    )
    assert len(got) == len(expected) > 0
    assert _got(got) == expected


def test_page_visitor_usage_equals_the_sandbox_day(resources, materialized, day) -> None:
    company, act = day
    ids = [p.id for p in company.pages]
    expected = _children(
        company, act, act.page_parent, act.page, act.page_events, act.page_minutes, ids
    )
    got = _rows(
        resources, "page_visitor_daily_usage", "visitor_id, account_id, page_id, events, minutes"
    )
    assert len(got) == len(expected) > 0
    assert _got(got) == expected


def test_track_event_usage_has_counts_and_names(resources, materialized, day) -> None:
    company, act = day
    ids = [t.id for t in company.track_types]
    # Track rows carry no minutes of their own: at most the hour's, one per event.
    minutes = np.minimum(act.num_minutes[act.track_parent], act.track_events)
    expected = _children(company, act, act.track_parent, act.track, act.track_events, minutes, ids)
    got = _rows(
        resources,
        "track_event_visitor_daily_usage",
        "visitor_id, account_id, track_type_id, events, minutes, track_type_name",
    )
    assert _got(got) == expected and expected
    names = {t.id: t.name for t in company.track_types}
    assert all(r[5] == names[r[2]] for r in got)


def test_guide_visitor_activity_counts_each_step_and_type(resources, materialized, day) -> None:
    company, act = day
    expected: dict[tuple, int] = defaultdict(int)
    for v, g, s, t in zip(
        act.guide_visitor.tolist(),
        act.guide.tolist(),
        act.guide_step.tolist(),
        act.guide_type.tolist(),
        strict=True,
    ):
        guide = company.guides[g]
        key = (company.visitor_id(v), guide.id, guide.steps[s].id, GUIDE_EVENT_TYPES[t])
        expected[key] += 1
    got = _rows(
        resources,
        "guide_visitor_daily_activity",
        "visitor_id, guide_id, guide_step_id, type, events",
    )
    rows = {tuple(r[:4]): int(r[4]) for r in got}
    # Poll responses are guide events too, derived by the sandbox: checked with the polls.
    assert {k: v for k, v in rows.items() if k[3] != "pollResponse"} == dict(expected)


def test_poll_responses_equal_the_sandbox_answers(sandbox, resources, materialized, day) -> None:
    company, act = day
    region = PendoRegion("us", sandbox.state.world("us"), PendoStore())
    provider = region.provider(sandbox.state.now_ms(), 0)
    visitor, guide, step, kind, when = provider._guide_arrays(act)
    answers = kind == POLL_RESPONSE
    rows = provider._guide_rows(
        True, visitor[answers], guide[answers], step[answers], kind[answers], when[answers]
    )
    expected: dict[tuple[str, str], list] = {}
    for row in rows:  # in time order: the last one is the day's answer
        key = (row["visitorId"], row["pollId"])
        count = expected.get(key, [0, None])[0]
        expected[key] = [count + 1, str(row["pollResponse"])]
    got = _rows(resources, "poll_responses", "visitor_id, poll_id, responses, response")
    assert expected
    assert {(r[0], r[1]): [int(r[2]), r[3]] for r in got} == expected
    polls = resources["warehouse"].query("SELECT id FROM pendo.polls")
    assert {r[1] for r in got} <= set(polls.id)


@pytest.mark.parametrize(
    ("visitor_table", "item_table", "keys"),
    [
        ("feature_visitor_daily_usage", "feature_daily_usage", ["feature_id"]),
        ("page_visitor_daily_usage", "page_daily_usage", ["page_id"]),
        ("guide_visitor_daily_activity", "guide_daily_activity", ["guide_id", "type"]),
    ],
)
def test_visitor_tables_sum_to_the_item_tables(
    resources, materialized, visitor_table, item_table, keys
) -> None:
    key = ", ".join(keys)
    mismatched = resources["warehouse"].records(
        f"SELECT count(*) AS n FROM (SELECT {key}, sum(events) AS events, "
        f"count(DISTINCT visitor_id) AS visitors FROM pendo.{visitor_table} "
        f"WHERE day = DATE '{DAY}' GROUP BY {key}) AS v FULL OUTER JOIN "
        f"(SELECT * FROM pendo.{item_table} WHERE day = DATE '{DAY}') AS i USING ({key}) "
        "WHERE v.events IS DISTINCT FROM i.events "
        "OR v.visitors IS DISTINCT FROM i.unique_visitors"
    )
    assert mismatched[0]["n"] == 0


def test_checks_pass(materialized) -> None:
    evaluations = materialized.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)


def test_rerunning_the_day_leaves_identical_tables(resources, materialized) -> None:
    def snapshot():
        return {
            t: resources["warehouse"].query(f"SELECT * FROM pendo.{t} ORDER BY ALL").to_dict("list")
            for t in VISITOR_USAGE_ASSETS
        }

    before = snapshot()
    again = dg.materialize(ASSETS, selection=DAILY, partition_key=DAY, resources=resources)
    assert again.success and snapshot() == before
