"""Pendo history (SCD2) against the sandbox: the first snapshot is one current version per
record; a change staged in the sandbox (a write-back style bulk write, a single field PUT,
an edit of a catalog object) becomes a new version and closes the old one; a re-run of
the same snapshot changes nothing; "as of" joins answer with the value of the time."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import httpx
import pytest

from analytics_assets.pendo.assets import SNAPSHOT_ASSETS, pendo_assets
from analytics_assets.pendo.client import MetadataRecord
from analytics_assets.pendo.history import HISTORY_ASSETS, apply_snapshot, history_columns

SOURCES = ("visitors", "accounts", "features", "pages", "guides")
ASSETS = pendo_assets(include=[*SOURCES, *HISTORY_ASSETS])
ACCOUNT = "account-000003"
VISITOR = "visitor-0000005"


def _refresh(resources) -> dg.ExecuteInProcessResult:
    result = dg.materialize(ASSETS, resources=resources)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    return result


def _records(resources, sql: str, params=None) -> list[dict]:
    return resources["warehouse"].records(sql, params or [])


def _count(resources, sql: str) -> int:
    return int(_records(resources, sql)[0]["n"])


@pytest.fixture(scope="module")
def first(sandbox, resources):
    return _refresh(resources)


def test_first_snapshot_is_one_current_version_per_record(sandbox, resources, first) -> None:
    company = sandbox.state.world("us").company
    for table, n in (
        ("account_history", company.n_accounts),
        ("visitor_history", company.n_visitors),
        ("feature_history", len(company.features)),
        ("page_history", len(company.pages)),
        ("guide_history", len(company.guides)),
    ):
        assert _count(resources, f"SELECT count(*) AS n FROM pendo.{table}") == n
        current = f"SELECT count(*) AS n FROM pendo.{table} WHERE valid_to IS NULL"
        assert _count(resources, current) == n


def test_rerun_of_the_same_snapshot_changes_nothing(resources, first) -> None:
    def every():
        return {
            t: resources["warehouse"].query(f"SELECT * FROM pendo.{t} ORDER BY ALL").to_dict("list")
            for t in HISTORY_ASSETS
        }

    before = every()
    _refresh(resources)
    assert every() == before


@pytest.fixture(scope="module")
def changed(sandbox, resources, first):
    """Stage changes in the sandbox through Pendo's own write endpoints and the control
    API, then refresh the snapshots and their history."""
    before = _records(
        resources, f"SELECT * FROM pendo.account_history WHERE account_id = '{ACCOUNT}'"
    )[0]
    with resources["pendo_write"].get_client() as client:
        outcomes = list(
            client.update_metadata(
                "account", [MetadataRecord(ACCOUNT, {"plan": "enterprise", "seats": 250})]
            )
        )
        assert all(o.ok for o in outcomes)
        client.set_metadata_value("visitor", VISITOR, "role", "owner", group="agent")
    feature = _records(resources, "SELECT id, name FROM pendo.features ORDER BY id LIMIT 1")[0]
    response = httpx.post(
        f"{sandbox.urls.base}/_sandbox/pendo/catalog/us/feature/{feature['id']}",
        json={"name": "Renamed feature"},
    )
    assert response.status_code == 200, response.text
    _refresh(resources)
    return before, feature


def test_a_write_back_change_is_a_new_version_and_closes_the_old(resources, changed) -> None:
    before, _ = changed
    versions = _records(
        resources,
        "SELECT custom, valid_from, valid_to FROM pendo.account_history "
        f"WHERE account_id = '{ACCOUNT}' ORDER BY valid_from",
    )
    assert len(versions) == 2
    old, new = versions
    assert old["custom"] == before["custom"]
    assert '"plan":"enterprise"' in new["custom"] and '"seats":250' in new["custom"]
    assert old["valid_to"] == new["valid_from"] and new["valid_to"] is None
    # Nobody else changed.
    assert _count(resources, "SELECT count(*) AS n FROM pendo.account_history") == (
        _count(resources, "SELECT count(*) AS n FROM pendo.accounts") + 1
    )


def test_visitor_agent_and_catalog_edits_are_versions(resources, changed) -> None:
    _, feature = changed
    roles = _records(
        resources,
        "SELECT role, valid_to FROM pendo.visitor_history "
        f"WHERE visitor_id = '{VISITOR}' ORDER BY valid_from",
    )
    assert [r["role"] for r in roles][-1] == "owner" and len(roles) == 2
    assert roles[0]["valid_to"] is not None
    names = _records(
        resources,
        "SELECT name, valid_to FROM pendo.feature_history "
        f"WHERE id = '{feature['id']}' ORDER BY valid_from",
    )
    assert [r["name"] for r in names] == [feature["name"], "Renamed feature"]
    assert names[0]["valid_to"] is not None and names[1]["valid_to"] is None


def test_as_of_joins_answer_with_the_value_of_the_time(resources, changed) -> None:
    old, new = _records(
        resources,
        "SELECT valid_from FROM pendo.account_history "
        f"WHERE account_id = '{ACCOUNT}' ORDER BY valid_from",
    )

    def plan_as_of(moment) -> str | None:
        rows = _records(
            resources,
            "SELECT h.custom FROM pendo.accounts AS a JOIN pendo.account_history AS h "
            "ON h.account_id = a.account_id AND h.valid_from <= ? "
            "AND (h.valid_to IS NULL OR h.valid_to > ?) WHERE a.account_id = ?",
            [moment, moment, ACCOUNT],
        )
        assert len(rows) <= 1
        return rows[0]["custom"] if rows else None

    assert plan_as_of(old["valid_from"]) is not None
    assert "enterprise" not in (plan_as_of(old["valid_from"]) or "")
    assert "enterprise" in plan_as_of(new["valid_from"])
    # By day: both versions began today, so today's value is the new one, and only it.
    days = _records(
        resources,
        "SELECT h.custom FROM pendo.account_history AS h "
        "WHERE h.account_id = ? AND h.valid_from_day <= ? "
        "AND (h.valid_to_day IS NULL OR h.valid_to_day > ?)",
        [ACCOUNT, new["valid_from"].date(), new["valid_from"].date()],
    )
    assert len(days) == 1 and "enterprise" in days[0]["custom"]


def _pages_update(resources, source: str) -> object:
    spec = HISTORY_ASSETS["page_history"]
    columns = history_columns(spec, SNAPSHOT_ASSETS["pages"].columns)
    now = datetime.now(UTC)
    applied = apply_snapshot(
        resources["warehouse"], "pendo.page_history", source, spec, columns, now, now.date()
    )
    return now, applied


def test_a_record_gone_from_the_snapshot_is_closed(resources, changed) -> None:
    warehouse = resources["warehouse"]
    warehouse.execute("CREATE TABLE pendo.pages_minus_one AS SELECT * FROM pendo.pages")
    gone = _records(resources, "SELECT id FROM pendo.pages ORDER BY id LIMIT 1")[0]["id"]
    warehouse.execute("DELETE FROM pendo.pages_minus_one WHERE id = ?", [gone])
    now, applied = _pages_update(resources, "pendo.pages_minus_one")
    assert (applied.versions_added, applied.versions_closed) == (0, 1)
    closed = _records(resources, "SELECT valid_to FROM pendo.page_history WHERE id = ?", [gone])
    assert [r["valid_to"] for r in closed] == [now]


def test_an_update_stopped_midway_is_completed_by_the_next(resources, changed) -> None:
    """A run that stopped after inserting the new versions (two current versions of a
    record) is completed by the next: the old one ends where the new one begins."""
    warehouse = resources["warehouse"]
    _pages_update(resources, "pendo.pages")  # every page current again, whatever ran before
    page = _records(resources, "SELECT id FROM pendo.pages ORDER BY id DESC LIMIT 1")[0]["id"]
    warehouse.execute("CREATE TABLE pendo.pages_renamed AS SELECT * FROM pendo.pages")
    warehouse.execute("UPDATE pendo.pages_renamed SET name = 'Renamed' WHERE id = ?", [page])
    first, applied = _pages_update(resources, "pendo.pages_renamed")
    assert (applied.versions_added, applied.versions_closed) == (1, 1)
    # Undo step 2, as if the run had stopped after step 1.
    warehouse.execute(
        "UPDATE pendo.page_history SET valid_to = NULL, valid_to_day = NULL "
        "WHERE id = ? AND valid_to = ?",
        [page, first],
    )
    _, again = _pages_update(resources, "pendo.pages_renamed")
    assert (again.versions_added, again.versions_closed) == (0, 1)
    versions = _records(
        resources,
        "SELECT name, valid_from, valid_to FROM pendo.page_history WHERE id = ? "
        "ORDER BY valid_from",
        [page],
    )
    assert [v["name"] for v in versions][-1] == "Renamed"
    assert versions[-2]["valid_to"] == versions[-1]["valid_from"] == first
    assert versions[-1]["valid_to"] is None


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_the_update_is_portable_sql(request, tmp_path, backend) -> None:
    """The same three statements on each backend: a version, a change, a re-run, a delete."""
    import pandas as pd

    from analytics_assets.warehouse.duckdb import DuckDBWarehouse
    from analytics_assets.warehouse.postgres import PostgresWarehouse

    if backend == "duckdb":
        warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    else:
        server = request.getfixturevalue("postgres_server")
        warehouse = PostgresWarehouse(url=server.new_database("history"))
    spec = HISTORY_ASSETS["account_history"]
    source_columns = SNAPSHOT_ASSETS["accounts"].columns
    columns = history_columns(spec, source_columns)

    def snapshot(plans: dict[str, str | None]) -> tuple[datetime, object]:
        frame = pd.DataFrame(
            [{"account_id": a, "plan": p, "custom": "{}"} for a, p in plans.items()],
            columns=[c.name for c in source_columns],
        )
        warehouse.replace_table("pendo.accounts", frame, columns=source_columns)
        now = datetime.now(UTC)
        return now, apply_snapshot(
            warehouse, "pendo.account_history", "pendo.accounts", spec, columns, now, now.date()
        )

    def versions() -> list[tuple]:
        rows = warehouse.records(
            "SELECT account_id, plan, valid_to IS NULL AS current FROM pendo.account_history "
            "ORDER BY account_id, valid_from"
        )
        return [(r["account_id"], r["plan"], bool(r["current"])) for r in rows]

    snapshot({"a": "pro", "b": None})
    _, same = snapshot({"a": "pro", "b": None})
    assert (same.versions_added, same.versions_closed) == (0, 0)
    snapshot({"a": "enterprise", "b": None})
    snapshot({"a": "enterprise"})
    assert versions() == [
        ("a", "pro", False),
        ("a", "enterprise", True),
        ("b", None, False),
    ]
