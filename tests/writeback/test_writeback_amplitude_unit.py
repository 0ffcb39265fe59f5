"""The Amplitude side's pure parts: request planning, insert ids, the diff against the log,
and the component's YAML (no HTTP)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox

from analytics_assets.amplitude.identify import (
    MAX_PROPERTIES,
    Identification,
    identify_insert_id,
    plan_requests,
)
from analytics_assets.crm_writeback.amplitude_diff import (
    RecordState,
    diff_for_amplitude,
    read_amplitude_state,
    to_amplitude,
)
from analytics_assets.crm_writeback.amplitude_push import push_to_amplitude
from analytics_assets.crm_writeback.amplitude_targets import AmplitudeTargets, TargetsError
from analytics_assets.crm_writeback.component import CrmToPendo
from analytics_assets.crm_writeback.mapping import load_mapping
from analytics_assets.crm_writeback.tables import AMPLITUDE_LOG_TABLE, append_log
from analytics_assets.crm_writeback.validate import Record
from analytics_assets.http.errors import ServerError
from analytics_assets.warehouse.duckdb import DuckDBWarehouse

MAPPING = load_mapping()
TYPES = {"plan": "string", "arr": "float", "seats": "integer", "renewal_date": "time"}


def group(n: int, props: int = 1) -> Identification:
    values = {f"p{i}": i for i in range(props)}
    return Identification("group", f"a{n}", values, f"id{n}", "account")


def test_requests_hold_at_most_1000_records_1024_properties_and_one_kind() -> None:
    sizes = [len(r) for r in plan_requests([group(i) for i in range(2500)])]
    assert sizes == [1000, 1000, 500]
    # 7 properties each: 146 records fill 1,022 of the 1,024 properties a request may hold.
    wide = plan_requests([group(i, 7) for i in range(300)])
    assert [len(r) for r in wide] == [146, 146, 8]
    assert all(sum(len(x.properties) for x in r) <= MAX_PROPERTIES for r in wide)
    users = [Identification("user", f"u{i}", {"p": 1}, f"u{i}") for i in range(3)]
    mixed = plan_requests([group(0), *users, group(1)])
    assert [[x.kind for x in r] for r in mixed] == [["group"], ["user"] * 3, ["group"]]
    with pytest.raises(ValueError, match="max_records"):
        plan_requests([group(0)], 1001)


def test_insert_ids_are_stable_and_follow_the_last_confirmed_update() -> None:
    first = identify_insert_id("group", "a1", {"plan": "pro", "arr": 1.0}, "")
    assert first == identify_insert_id("group", "a1", {"arr": 1.0, "plan": "pro"}, "")
    assert first != identify_insert_id("user", "a1", {"plan": "pro", "arr": 1.0}, "")
    # A -> B -> A: the second A follows another confirmed update, so it is not a repeat.
    assert first != identify_insert_id("group", "a1", {"plan": "pro", "arr": 1.0}, "other")


def test_wire_form_sets_properties_with_their_insert_id() -> None:
    item = Identification("group", "account-1", {"plan": "pro"}, "x1", "account")
    assert item.wire() == {
        "group_type": "account",
        "group_value": "account-1",
        "group_properties": {"$set": {"plan": "pro"}},
        "insert_id": "x1",
    }
    user = Identification("user", "visitor-1", {"account_plan": "pro"}, "x2")
    assert user.wire()["user_properties"] == {"$set": {"account_plan": "pro"}}


def test_values_take_amplitudes_forms() -> None:
    assert to_amplitude(date(2027, 1, 5), "time") == "2027-01-05"
    assert to_amplitude(25.0, "integer") == 25 and to_amplitude(25.5, "float") == 25.5
    assert to_amplitude(True, "boolean") is True


def diff(records: list[Record], state: dict, **kw) -> list[tuple[str, str, dict]]:
    targets = AmplitudeTargets(user_properties={"plan": "account_plan"})
    result = diff_for_amplitude(
        records,
        mapping=MAPPING,
        types=TYPES,
        targets=targets,
        state=state,
        users={"a1": ["u1", "u2"]},
        **kw,
    )
    return [(c.kind, c.record_id, c.values) for c in result.changes]


def test_diff_sends_what_differs_from_the_last_confirmed_push() -> None:
    record = Record("a1", {"plan": "pro", "arr": 1200.0, "seats": 25.0}, (1,))
    assert diff([record], {}) == [
        ("group", "a1", {"plan": "pro", "arr": 1200.0, "seats": 25}),
        ("user", "u1", {"account_plan": "pro"}),
        ("user", "u2", {"account_plan": "pro"}),
    ]
    held = {
        ("group", "a1"): RecordState({"plan": "pro", "arr": 1200, "seats": 25}),
        ("user", "u1"): RecordState({"account_plan": "pro"}),
        ("user", "u2"): RecordState({"account_plan": "free"}),
    }
    assert diff([record], held) == [("user", "u2", {"account_plan": "pro"})]
    assert len(diff([record], held, force=True)) == 3


def test_an_unconfirmed_property_is_sent_again_with_the_same_insert_id(tmp_path: Path) -> None:
    warehouse = DuckDBWarehouse(database=str(tmp_path / "w.duckdb"))
    record = Record("a1", {"plan": "pro"}, (1,))
    targets = AmplitudeTargets(group_properties={"plan": "plan"})

    def plan() -> list:
        return diff_for_amplitude(
            [record],
            mapping=MAPPING,
            types=TYPES,
            targets=targets,
            state=read_amplitude_state(warehouse),
        ).changes

    class Down:
        def send(self, records: object) -> None:
            raise ServerError("HTTP 503", status=503, service="amplitude")

    def logged(rows: list) -> None:
        append_log(warehouse, "run-1", rows, False, table=AMPLITUDE_LOG_TABLE)

    (first,) = plan()
    summary = push_to_amplitude(Down(), [first], record_log=logged)
    assert summary.unconfirmed == 1 and summary.updated == 0 and not summary.ok
    (again,) = plan()  # unconfirmed: still to send, as the same update
    assert (again.values, again.insert_id) == (first.values, first.insert_id)

    class Up:
        def send(self, records: object) -> None:
            return None

    def logged2(rows: list) -> None:
        append_log(warehouse, "run-2", rows, False, table=AMPLITUDE_LOG_TABLE)

    assert push_to_amplitude(Up(), [again], record_log=logged2).updated == 1
    assert plan() == []  # confirmed: nothing left


def test_targets_must_name_mapped_fields() -> None:
    AmplitudeTargets(user_properties={"plan": "account_plan"}).check(MAPPING)
    with pytest.raises(TargetsError, match="'tier' is not a field of the mapping"):
        AmplitudeTargets(group_properties={"tier": "tier"}).check(MAPPING)
    with pytest.raises(TargetsError, match="fed by two fields"):
        AmplitudeTargets(user_properties={"plan": "x", "csm_owner": "x"}).check(MAPPING)


def load(attributes: str) -> dg.JobDefinition:
    with create_defs_folder_sandbox() as project:
        folder = project.defs_folder_path / "crm"
        folder.mkdir(parents=True)
        (folder / "defs.yaml").write_text(
            "type: analytics_assets.crm_writeback.component.CrmToPendo\n"
            f"attributes:\n  crm_path: crm.csv\n{attributes}"
        )
        with project.load_component_and_build_defs(defs_path=folder) as (_, defs):
            # defs.jobs: resolving the job would want the warehouse, another component's.
            (job,) = [j for j in defs.jobs or [] if isinstance(j, dg.JobDefinition)]
            return job


def test_the_component_builds_one_job_for_both_destinations() -> None:
    job = load(
        "  destinations: [pendo, amplitude]\n"
        "  amplitude:\n    user_properties: {plan: account_plan}\n",
    )
    names = {node.name for node in job.nodes}
    assert {"read_crm_export", "push_crm_changes", "push_crm_to_amplitude"} <= names
    assert [n for n in names if n.startswith("read_crm")] == ["read_crm_export"]  # one read
    solo = load("  destinations: [amplitude]\n")
    names = {node.name for node in solo.nodes}
    assert "crm_mapping_preflight" in names and "crm_writeback_preflight" not in names


def test_the_component_refuses_targets_the_mapping_lacks() -> None:
    with pytest.raises(Exception) as caught:
        load("  destinations: [amplitude]\n  amplitude:\n    group_properties: {tier: tier}\n")
    chain, error = [], caught.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert "'tier' is not a field of the mapping" in "\n".join(chain)
    assert CrmToPendo.model_fields["destinations"].default_factory() == ["pendo"]
