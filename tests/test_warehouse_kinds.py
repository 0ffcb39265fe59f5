"""The UI's kind tag on every table names the warehouse the project binds, not DuckDB
whatever the backend (issue 17): the factories mark their tables ``warehouse`` and the
code location names the backend when its definitions load."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from analytics_assets import definitions
from analytics_assets.warehouse.asset_kinds import WAREHOUSE_KIND, with_warehouse_kind

BACKENDS = ("duckdb", "postgres", "snowflake")


def _kinds_by_asset(defs: dg.Definitions) -> dict[str, set[str]]:
    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): set(graph.get(key).kinds) for key in graph.get_all_asset_keys()}


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("{tmp}/warehouse.duckdb", "duckdb"),
        ("postgresql://analyst@127.0.0.1:5432/analytics", "postgres"),
        ("snowflake://analyst@acme-xy12345/analytics/public?warehouse=WH", "snowflake"),
    ],
)
def test_every_table_names_the_bound_backend(monkeypatch, tmp_path, url, backend) -> None:
    monkeypatch.setenv("ANALYTICS_ASSETS_WAREHOUSE", url.format(tmp=tmp_path))
    loaded = with_warehouse_kind(
        dg.load_from_defs_folder(path_within_project=Path(definitions.__file__).parent)
    )
    kinds = _kinds_by_asset(loaded)
    # Every asset of the code location is a table in the warehouse: the syncs' tables,
    # the analytics, the alerts and the write-back's logs.
    assert len(kinds) > 40
    without = sorted(name for name, k in kinds.items() if backend not in k)
    assert not without, f"no {backend} kind on {without}"
    others = set(BACKENDS) - {backend} | {WAREHOUSE_KIND}
    wrong = sorted(name for name, k in kinds.items() if k & others)
    assert not wrong, f"a kind other than {backend} on {wrong}"
    assert kinds["pendo/feature_daily_usage"] == {"pendo", backend}
    assert kinds["amplitude/events"] == {"amplitude", backend}


def test_without_a_warehouse_resource_the_kind_stays_generic() -> None:
    """A project that binds its own resource under another key keeps the honest placeholder."""
    from analytics_assets.pendo.assets import pendo_assets

    unbound = dg.Definitions(assets=pendo_assets())
    assert with_warehouse_kind(unbound) is unbound
    specs = [spec for a in unbound.assets for spec in a.specs]
    assert specs
    assert all(WAREHOUSE_KIND in spec.kinds for spec in specs)
