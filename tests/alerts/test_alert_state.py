"""The sensor cursor: compact, versioned, round-trips, and survives being corrupted."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analytics_assets.alerts.model import Alert
from analytics_assets.alerts.state import (
    CURSOR_VERSION,
    PendingAlert,
    RuleState,
    SensorState,
    bound_outbox,
    dump_state,
    entity_key,
    load_state,
    value_digest,
)

ALERT = Alert(
    rule="r", kind="fired", severity="warning", entity_type="account", entity_id="a-1",
    message="m", observed_at="2026-11-18T15:00:00+00:00", values={"current": 1.5},
    sinks=("log", "webhook"),
)  # fmt: skip


def test_a_full_state_round_trips() -> None:
    state = SensorState(
        rules={
            "drop": RuleState("ab12cd34", {entity_key("a-1"): 0, entity_key("a-2"): 0}, {}, True),
            "field": RuleState(
                "00ff00ff", {entity_key("a-1", "plan"): value_digest("pro")}, {}, True
            ),  # fmt: skip
            "cohort": RuleState(
                "11111111", {}, {entity_key("c1"): 2_000_000, entity_key("c2"): -1}, True
            ),  # fmt: skip
            "storm": RuleState("22222222", {}, {}, True, saturated=12_000),
        },
        outbox=[PendingAlert(ALERT, ["webhook"], 3)],
        dropped=2,
        extra={"rot": 1},
    )
    text = dump_state(state)
    loaded, reset = load_state(text)
    assert reset is None
    assert loaded == state
    assert json.loads(text)["v"] == CURSOR_VERSION


def test_entities_cost_six_bytes_each_not_their_data() -> None:
    active = {entity_key(f"account-{i:06d}"): 0 for i in range(10_000)}
    text = dump_state(SensorState(rules={"drop": RuleState("f", active, {}, True)}))
    assert 60_000 <= len(text) <= 82_000  # 6 bytes per account, base64
    assert "account-" not in text


@pytest.mark.parametrize(
    ("cursor", "reason"),
    [
        ("not json at all", "unreadable cursor"),
        ("[1, 2]", "not a JSON object"),
        ('{"v": 0, "r": {}}', "cursor version 0"),
        ('{"seen": ["a", "b"]}', "cursor version None"),  # an older, other format
        ('{"v": 1, "r": {"x": {"a": "!!!notbase64"}}}', "unreadable cursor"),
        ('{"v": 1, "r": {"x": {"a": "AAAA"}}}', "truncated"),
        ('{"v": 1, "r": {"x": 5}}', "not an object"),
        ('{"v": 1, "r": {}, "o": [{"a": {"rule": "r"}}]}', "unreadable cursor"),
    ],
)
def test_a_bad_cursor_resets_to_an_empty_state_with_a_reason(cursor: str, reason: str) -> None:
    state, why = load_state(cursor)
    assert state == SensorState()
    assert why is not None and reason in why


def test_an_empty_cursor_is_a_fresh_start_not_a_reset() -> None:
    assert load_state(None) == (SensorState(), None)
    assert load_state("") == (SensorState(), None)


def test_the_outbox_is_bounded_and_counts_what_it_drops() -> None:
    state = SensorState(outbox=[PendingAlert(ALERT, ["webhook"]) for _ in range(10)])
    assert bound_outbox(state, 4) == 6
    assert len(state.outbox) == 4 and state.dropped == 6
    assert bound_outbox(state, 4) == 0


@given(
    active=st.dictionaries(st.integers(0, 2**48 - 1), st.integers(0, 2**32 - 1), max_size=50),
    memory=st.dictionaries(st.integers(0, 2**48 - 1), st.integers(-(2**62), 2**62), max_size=50),
    primed=st.booleans(),
    saturated=st.integers(0, 10**6),
)
def test_any_rule_state_round_trips(active, memory, primed, saturated) -> None:
    state = SensorState(rules={"r": RuleState("fp", active, memory, primed, saturated)})
    loaded, reset = load_state(dump_state(state))
    assert reset is None and loaded == state
