"""The rest of the Pendo catalog against the sandbox: track types, guide steps, polls and
apps equal the sandbox company's catalog."""

from __future__ import annotations

from collections import Counter

import dagster as dg
import pytest

from analytics_assets.pendo.assets import pendo_assets
from analytics_assets.pendo.catalog_more import CATALOG_MORE_ASSETS

ASSETS = pendo_assets(include=list(CATALOG_MORE_ASSETS))


@pytest.fixture(scope="module")
def materialized(resources):
    result = dg.materialize(ASSETS, resources=resources)
    assert result.success
    return result


@pytest.fixture(scope="module")
def company(sandbox):
    return sandbox.state.world("us").company


def _query(resources, sql: str):
    return resources["warehouse"].query(sql)


def test_track_types_are_the_company_track_types(resources, materialized, company) -> None:
    got = _query(resources, "SELECT id, name, app_id FROM pendo.track_types")
    expected = {(t.id, t.name, t.app_id) for t in company.track_types}
    assert set(got.itertuples(index=False, name=None)) == expected


def test_guide_steps_are_every_step_in_order(resources, materialized, company) -> None:
    got = _query(resources, "SELECT id, guide_id, position, page_id FROM pendo.guide_steps")
    expected = {
        (s.id, g.id, position, s.page_id)
        for g in company.guides
        for position, s in enumerate(g.steps)
    }
    assert set(got.itertuples(index=False, name=None)) == expected


def test_polls_are_the_poll_guides_questions(resources, materialized, company) -> None:
    got = _query(resources, "SELECT id, guide_id, question, type FROM pendo.polls")
    assert {(r.id, r.guide_id) for r in got.itertuples()} == {
        (g.poll_id, g.id) for g in company.guides if g.poll_id
    }
    assert all(r.question and r.type == "NPSRating" for r in got.itertuples())


def test_apps_count_what_each_app_holds(resources, materialized, company) -> None:
    got = _query(resources, "SELECT * FROM pendo.apps ORDER BY app_id")
    counts = {
        "features": Counter(f.app_id for f in company.features),
        "pages": Counter(p.app_id for p in company.pages),
        "guides": Counter(g.app_id for g in company.guides),
        "track_types": Counter(t.app_id for t in company.track_types),
    }
    assert sorted(got.app_id) == sorted(a.id for a in company.apps)
    for row in got.itertuples():
        for column, counter in counts.items():
            assert getattr(row, column) == counter.get(row.app_id, 0), (row.app_id, column)


def test_checks_pass(materialized) -> None:
    evaluations = materialized.get_asset_check_evaluations()
    assert len(evaluations) == len(CATALOG_MORE_ASSETS) and all(e.passed for e in evaluations)
