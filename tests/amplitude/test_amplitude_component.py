"""``AmplitudeSync`` and ``amplitude_assets``: what YAML and arguments define, and the
messages a mistake gets. No API is called here (see test_amplitude_component_sandbox.py)."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox
from pydantic import ValidationError

from analytics_assets.amplitude.assets import (
    ASSET_NAMES,
    EVENTS_KEY,
    amplitude_asset_names,
    amplitude_assets,
    events_key,
    events_table,
    selected_cohorts,
)
from analytics_assets.amplitude.component import AmplitudeSync
from analytics_assets.amplitude.resource import AmplitudeResource
from analytics_assets.component_fields import NamedItem
from analytics_assets.naming import CADENCE_TAG, DAILY, SNAPSHOT, SYSTEM_TAG, AssetNaming
from analytics_assets.partitions import DailyCalendar
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

DAILY_NAMES = {
    "daily_active_users",
    "event_type_daily_totals",
    "events",
    "session_daily_stats",
    "user_properties_daily",
}
DEFAULT_KEYS = {
    dg.AssetKey(["amplitude", name])
    for name in (*DAILY_NAMES, "cohorts", "cohort_membership", "annotations")
}


def _component(yaml: str) -> AmplitudeSync:
    return AmplitudeSync.resolve_from_yaml(textwrap.dedent(yaml))


def _defs(yaml: str) -> dg.Definitions:
    return _component(yaml).build_defs(None)  # type: ignore[arg-type]  # unused by build_defs


def _keys(defs: dg.Definitions) -> set[dg.AssetKey]:
    return {key for a in defs.assets or [] for key in a.keys}  # type: ignore[union-attr]


# ----- keys, groups, partitions ---------------------------------------------------------------


def test_defaults_define_the_keys_of_today() -> None:
    defs = _defs("")
    assert _keys(defs) == DEFAULT_KEYS
    assert set(defs.resources or {}) == {"amplitude"}
    for asset in defs.assets or []:
        (key,) = asset.keys  # type: ignore[union-attr]
        spec = asset.specs_by_key[key]  # type: ignore[union-attr]
        assert spec.group_name == "amplitude"
        assert spec.tags[SYSTEM_TAG] == "amplitude"
        daily = key.path[-1] in DAILY_NAMES
        assert spec.tags[CADENCE_TAG] == (DAILY if daily else SNAPSHOT)
        assert (asset.partitions_def is not None) == daily  # type: ignore[union-attr]
        assert asset.op.pool == "amplitude_api"  # type: ignore[union-attr]
        assert {c.asset_key for c in asset.check_specs} == {key}  # type: ignore[union-attr]
    assert EVENTS_KEY == events_key() == dg.AssetKey(["amplitude", "events"])
    assert events_table() == "amplitude.events"


def test_key_prefix_group_and_schema_name_every_asset() -> None:
    defs = _defs(
        """
        key_prefix: [acme, product]
        group_name: product_analytics
        table_schema: amp_acme
        timezone: Europe/Berlin
        start_date: "2026-01-01"
        charts:
          - {id: dau30dq, name: dau}
        """
    )
    expected = {dg.AssetKey(["acme", "product", *k.path]) for k in DEFAULT_KEYS}
    expected.add(dg.AssetKey(["acme", "product", "amplitude", "chart_dau"]))
    assert _keys(defs) == expected
    for asset in defs.assets or []:
        assert set(asset.group_names_by_key.values()) == {"product_analytics"}  # type: ignore[union-attr]
        for check in asset.check_specs:  # type: ignore[union-attr]
            assert check.asset_key.path[:2] == ["acme", "product"]
        partitions = asset.partitions_def  # type: ignore[union-attr]
        if partitions is not None:
            assert isinstance(partitions, dg.DailyPartitionsDefinition)
            assert partitions.timezone == "Europe/Berlin"
            assert partitions.start.date().isoformat() == "2026-01-01"
    naming = _component("key_prefix: [acme]\ntable_schema: amp_acme").naming("amplitude")
    assert events_key(naming) == dg.AssetKey(["acme", "amplitude", "events"])
    assert events_table(naming) == "amp_acme.events"


def test_assets_selects_by_name_and_charts_selects_every_chart() -> None:
    charts = "charts:\n  - {id: dau30dq, name: dau}\n  - {id: fnl3stp, name: funnel}\n"
    defs = _defs(charts + "assets: [events, cohorts]\n")
    assert _keys(defs) == {
        dg.AssetKey(["amplitude", "events"]),
        dg.AssetKey(["amplitude", "cohorts"]),
    }
    defs = _defs(charts + "assets: [charts]\n")
    assert {k.path[-1] for k in _keys(defs)} == {"chart_dau", "chart_funnel"}
    defs = _defs(charts + "assets: [chart_funnel, daily_active_users]\n")
    assert {k.path[-1] for k in _keys(defs)} == {"chart_funnel", "daily_active_users"}


def test_the_factory_takes_the_same_arguments_in_python() -> None:
    calendar = DailyCalendar("UTC", "2026-10-01")  # type: ignore[arg-type]
    assets = amplitude_assets(
        calendar=calendar,
        charts=[NamedItem(id="dau30dq", name="dau")],
        cohorts=["c1"],
        naming=AssetNaming("amplitude", ("team",), "g", "s"),
        include={"events", "chart_dau"},
    )
    assert [a.key for a in assets] == [
        dg.AssetKey(["team", "amplitude", "events"]),
        dg.AssetKey(["team", "amplitude", "chart_dau"]),
    ]
    assert assets[0].partitions_def is calendar.partitions_def
    assert amplitude_asset_names([NamedItem(id="x", name="dau")]) == [*ASSET_NAMES, "chart_dau"]


def test_an_unknown_asset_name_in_python_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"unknown Amplitude asset 'event'.*did you mean 'events'"):
        amplitude_assets(include=["event"])
    with pytest.raises(ValueError, match=r"valid names are daily_active_users, .*charts$"):
        amplitude_assets(include=["nothing_like_it"])


def test_a_schema_that_is_not_an_identifier_is_refused_when_defining() -> None:
    with pytest.raises(ValueError, match=r"invalid Amplitude table name 'amp; DROP"):
        amplitude_assets(naming=AssetNaming("amplitude", schema="amp; DROP"))


def test_selected_cohorts_follow_the_argument_not_a_global() -> None:
    cohorts = [
        {"id": "a", "size": 3},
        {"id": "b", "size": 1, "archived": True},
        {"id": "c", "size": None},
    ]
    assert [c["id"] for c in selected_cohorts(cohorts)] == ["a"]
    assert [c["id"] for c in selected_cohorts(cohorts, ["b", "a"])] == ["b", "a"]
    with pytest.raises(dg.Failure, match=r"not in the cohort list: \['zz'\].*AmplitudeSync"):
        selected_cohorts(cohorts, ["a", "zz"])


# ----- the resource and its secrets -----------------------------------------------------------


def test_keys_are_env_vars_resolved_at_run_time(monkeypatch) -> None:
    secret = "amp-secret-value-0123456789"
    monkeypatch.setenv("ACME_AMPLITUDE_KEY", secret)
    monkeypatch.setenv("ACME_AMPLITUDE_SECRET", secret + "-s")
    component = _component(
        """
        region: eu
        api_key_env_var: ACME_AMPLITUDE_KEY
        secret_key_env_var: ACME_AMPLITUDE_SECRET
        base_url: https://proxy.example.com/
        budget_ledger: memory
        read_timeout: 30
        """
    )
    resource = component.build_defs(None).resources["amplitude"]  # type: ignore[arg-type,index]
    assert isinstance(resource, AmplitudeResource)
    for field, name in (("api_key", "ACME_AMPLITUDE_KEY"), ("secret_key", "ACME_AMPLITUDE_SECRET")):
        value = getattr(resource, field)
        assert isinstance(value, dg.EnvVar) and value.env_var_name == name
    assert secret not in repr(component) and secret not in repr(resource)
    assert resource.region == "eu" and resource.base_url == "https://proxy.example.com"
    assert resource.budget_ledger == "memory" and resource.read_timeout == 30
    # Dagster resolves them when the resource is initialized for a run.
    with dg.build_resources({"amplitude": resource}) as built:
        assert built.amplitude.api_key == secret
        assert built.amplitude.secret_key == secret + "-s"


def test_a_blank_budget_ledger_means_the_default() -> None:
    assert _component('budget_ledger: ""').budget_ledger is None
    assert _component("budget_ledger: /tmp/x.sqlite").build_resource().budget_ledger == (
        "/tmp/x.sqlite"
    )


# ----- mistakes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("region: EU", r"region at <string>:1\n\s+Input should be 'us' or 'eu'"),
        ("regoin: eu", r"regoin at <string>:1\n\s+Extra inputs are not permitted"),
        (
            "charts:\n  - {id: a, nme: x}",
            r"nme at <string>:\d`?\n\s+Extra inputs are not permitted",
        ),
        ("assets: [event]", r"assets at <string>:1\n.*did you mean 'events'\?"),
        ("assets: []", r"assets at <string>:1\n.*name at least one asset"),
        (
            "charts:\n  - {id: a, name: weekly}\nassets: [chart_weekley]",
            r"assets at <string>:3\n.*did you mean 'chart_weekly'\?.*chart_weekly",
        ),
        ("read_timeout: 0", r"read_timeout at <string>:1\n.*finite number above 0"),
        ("read_timeout: .inf", r"read_timeout at <string>:1\n.*finite number above 0"),
        ("cohorts: some", r"cohorts at <string>:1\n.*'all' or a list of cohort ids"),
        ("cohorts: []", r"cohorts at <string>:1\n.*at least one cohort id"),
        ("cohorts: [a, a]", r"cohorts at <string>:1\n.*'a' is listed twice"),
        (
            "charts:\n  - {id: a, name: x}\n  - {id: b, name: x}",
            r"charts at <string>:1\n.*'x' is used twice",
        ),
        ("base_url: analytics.amplitude.com", r"base_url at <string>:1\n.*http:// or https://"),
        ("timezone: Mars/Olympus", r"timezone at <string>:1\n.*unknown time zone"),
        ("start_date: 2026-13-01", r"start_date at <string>:1\n.*not a date"),
    ],
)
def test_a_mistake_names_the_field_and_line(yaml: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _component(yaml)


def test_a_bad_chart_name_names_the_charts_field() -> None:
    # NamedItem is resolved by Dagster on its own: its error arrives wrapped, with the place.
    with pytest.raises(Exception, match=r"(?s)<string>:\d - charts.*'Weekly' must be lower-case"):
        _component("charts:\n  - {id: a, name: Weekly}")


def test_a_key_pasted_as_the_env_var_name_is_refused_without_echoing_it() -> None:
    pasted = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    with pytest.raises(ValidationError) as info:
        _component(f'api_key_env_var: "{pasted} "')
    assert "api_key_env_var at <string>:1" in str(info.value)
    assert "not the key itself" in str(info.value)
    assert pasted not in str(info.value)


# ----- as a dg project sees it ----------------------------------------------------------------

DEFS_YAML = """\
type: analytics_assets.amplitude.component.AmplitudeSync
attributes:
  key_prefix: [acme]
  charts:
    - {id: dau30dq, name: dau}
  assets:
    - events
    - chart_dua
"""


def test_in_a_defs_folder_the_error_names_the_file_and_line() -> None:
    with warnings.catch_warnings(), create_defs_folder_sandbox() as sandbox:
        warnings.simplefilter("ignore")  # Dagster's beta warnings about code references
        path = sandbox.scaffold_component(AmplitudeSync, defs_path="amplitude")
        (path / "defs.yaml").write_text(DEFS_YAML)
        with (
            pytest.raises(Exception) as info,  # noqa: PT011 - Dagster wraps the error
            sandbox.load_component_and_build_defs(defs_path=path),
        ):
            pass
        causes = []
        error: BaseException | None = info.value
        while error is not None:
            causes.append(str(error))
            error = error.__cause__ or error.__context__
        text = "\n".join(causes)
        assert f"attributes.assets at {Path(path, 'defs.yaml')}:6" in text
        assert "did you mean 'chart_dau'?" in text


def test_the_scaffolded_component_loads_with_the_defaults(tmp_path) -> None:
    with warnings.catch_warnings(), create_defs_folder_sandbox() as sandbox:
        warnings.simplefilter("ignore")
        path = sandbox.scaffold_component(AmplitudeSync, defs_path="amplitude")
        assert "AmplitudeSync" in (path / "defs.yaml").read_text()
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, AmplitudeSync)
            assert _keys(defs) == DEFAULT_KEYS
            # The warehouse resource comes from another component (or the project).
            warehouse = dg.Definitions(
                resources={"warehouse": DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))}
            )
            dg.Definitions.validate_loadable(dg.Definitions.merge(defs, warehouse))


def test_every_field_is_documented_in_the_schema() -> None:
    assert AmplitudeSync.get_description()
    properties = AmplitudeSync.get_model_cls().model_json_schema()["properties"]  # type: ignore[union-attr]
    assert {"region", "api_key_env_var", "charts", "cohorts", "assets"} <= set(properties)
    undocumented = [name for name, field in properties.items() if not field.get("description")]
    assert undocumented == []
