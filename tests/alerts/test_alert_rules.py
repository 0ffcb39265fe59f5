"""Alert rule files: the shipped defaults load; bad files are refused naming line and reason."""

from __future__ import annotations

import textwrap

import pytest

from analytics_assets.alerts.rules import (
    ChangePctCondition,
    RuleFileError,
    default_rules_path,
    load_rules,
    parse_rules,
)


def _problems(text: str) -> list[str]:
    with pytest.raises(RuleFileError) as info:
        parse_rules(textwrap.dedent(text), "rules.yaml")
    return [p.render("rules.yaml") for p in info.value.problems]


def test_the_shipped_defaults_load_with_the_five_rules_the_issue_asks_for() -> None:
    rules = load_rules()
    names = {r.name for r in rules.rules}
    assert names == {
        "account_activity_dropped",
        "new_account_seen",
        "guide_dismissal_spike",
        "writeback_field_changed_in_pendo",
        "cohort_size_changed",
    }
    drop = next(r for r in rules.rules if r.name == "account_activity_dropped")
    assert isinstance(drop.condition, ChangePctCondition)
    assert (drop.condition.direction, drop.condition.percent) == ("drop", 50)
    assert rules.sinks_of(drop) == ("log", "table", "webhook")
    assert rules.run_failure.jobs == ["daily_sync"]
    # The disabled example is parsed (so it is validated) but not evaluated.
    assert "daily_active_users_dropped" in {r.name for r in rules.model.rules}
    assert load_rules(default_rules_path()).model == rules.model


def test_a_misspelled_key_and_a_bad_value_name_their_lines() -> None:
    problems = _problems(
        """\
        version: 1
        rules:
          - name: quiet
            source: pendo.events
            entity: account
            metric: numEvents
            condition:
              type: change_pct
              direction: down
              percnt: 50
        """
    )
    assert "rules.yaml:7: rules[0] (quiet).condition.percent: 'percent' is required" in problems
    assert any(p.startswith("rules.yaml:9:") and "'drop' or 'rise'" in p and "'down'" in p
               for p in problems)  # fmt: skip
    assert any(p.startswith("rules.yaml:10:") and "unknown key 'percnt'" in p for p in problems)


def test_combinations_the_schema_cannot_see_are_refused_on_their_line() -> None:
    problems = _problems(
        """\
        version: 1
        rules:
          - name: spike
            source: {name: pendo.events, window: 2}
            entity: guide
            metric: numEvnts
            condition: {type: change_pct, direction: rise, percent: 5, current: 2}
            sinks: [slack]
          - name: spike
            source: amplitude.cohorts
            entity: cohort
            metric: size
            condition: {type: first_seen}
        """
    )
    text = "\n".join(problems)
    assert "rules.yaml:5: rules[0] (spike).entity: source pendo.events tracks" in text
    assert "rules.yaml:6: rules[0] (spike).metric: unknown metric 'numEvnts'" in text
    assert "rules.yaml:7:" in text and "do not fit in the source window (2)" in text
    assert "rules.yaml:8: rules[0] (spike).sinks: unknown sink 'slack'" in text
    assert "rules.yaml:9:" in text and "duplicate rule name 'spike'" in text
    assert "rules.yaml:13:" in text and "'first_seen' does not apply to source amplitude" in text


def test_a_duplicated_key_is_refused_rather_than_silently_overwritten() -> None:
    problems = _problems(
        """\
        version: 1
        rules:
          - name: a
            source: pendo.accounts
            entity: account
            condition: {type: first_seen}
            condition: {type: field_changed, fields: [plan]}
        """
    )
    assert problems == ["rules.yaml:7: rules[0]: duplicate key 'condition' (first on line 6)"]


def test_yaml_syntax_errors_name_the_line() -> None:
    problems = _problems("version: 1\nrules:\n  - name: a\n    source: [pendo.events\n")
    assert len(problems) == 1
    assert problems[0].startswith("rules.yaml:5: YAML syntax error")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: []\n", "rules.yaml:1: version: 'version' is required"),
        ("version: 2\nrules: []\n", "rules.yaml:1: version: Input should be 1 (got 2)"),
        ("- a\n- b\n", "rules.yaml:1: the file must be a mapping"),
        (
            "version: 1\nsinks:\n  hook: {type: webhook, url: ftp://x}\nrules: []\n",
            "rules.yaml:3: sinks.hook.url: String should match pattern",
        ),
        (
            "version: 1\nrules:\n  - name: Bad-Name\n    source: pendo.accounts\n"
            "    entity: account\n    condition: {type: first_seen}\n",
            "rules.yaml:3: rules[0] (Bad-Name).name: String should match pattern",
        ),
        (
            "version: 1\nrules:\n  - name: t\n    source: pendo.events\n    entity: account\n"
            "    metric: numEvents\n    condition: {type: threshold, above: 1, below: 2}\n",
            "rules.yaml:7: rules[0] (t).condition: threshold needs exactly one",
        ),
        (
            "version: 1\nrules:\n  - name: t\n    source: {name: pendo.guideEvents, period: hour,"
            " window: 48}\n    entity: guide\n    metric: seen\n"
            "    condition: {type: change_pct, direction: rise, percent: 5, weekdays_only: true}\n",
            "rules.yaml:7: rules[0] (t).condition.weekdays_only: weekdays_only needs a source",
        ),
    ],
)
def test_each_kind_of_mistake_is_reported_with_line_and_reason(text: str, expected: str) -> None:
    problems = _problems(text)
    assert any(p.startswith(expected) for p in problems), problems


def test_an_unreadable_file_says_so(tmp_path) -> None:
    with pytest.raises(RuleFileError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")


def test_fingerprint_changes_with_what_the_rule_computes_only() -> None:
    base = """\
    version: 1
    rules:
      - name: r
        description: {description}
        source: pendo.events
        entity: account
        metric: numEvents
        condition: {{type: change_pct, direction: drop, percent: {percent}}}
    """
    a = parse_rules(textwrap.dedent(base.format(description="one", percent=50))).rules[0]
    b = parse_rules(textwrap.dedent(base.format(description="two", percent=50))).rules[0]
    c = parse_rules(textwrap.dedent(base.format(description="one", percent=60))).rules[0]
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
