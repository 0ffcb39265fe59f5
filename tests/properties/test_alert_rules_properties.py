"""Property tests: the alert rule loader under any rule file.

The promise: a rule file is either loaded whole (every rule as declared, in order) or
refused with a ``RuleFileError`` listing each problem with the line it is on, whatever the
file holds: wrong types, missing keys, unknown keys, duplicated keys, YAML that builds
values Python cannot hold (a 13th month, ``!!int abc``), anchors that refer to
themselves, nesting past the parser's stack, bytes that are not UTF-8. Never a bare
exception from PyYAML or pydantic, never a rule dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analytics_assets.alerts.rules import (
    SOURCES,
    RuleFileError,
    RuleSet,
    load_rules,
    parse_rules,
)

PROPS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ClearError = Callable[..., None]

names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
severities = st.sampled_from(["info", "warning", "critical"])
SINKS = ["log", "table", "hook"]


@st.composite
def conditions(draw: st.DrawFn, kind: str, window: int) -> dict[str, Any]:
    if kind == "threshold":
        side = draw(st.sampled_from(["above", "below"]))
        cond: dict[str, Any] = {"type": kind, side: draw(st.floats(-1e6, 1e6))}
        cond["current"] = draw(st.integers(1, window))
        return cond
    if kind == "change_pct":
        current = draw(st.integers(1, max(1, window - 1)))
        cond = {
            "type": kind,
            "direction": draw(st.sampled_from(["drop", "rise"])),
            "percent": draw(st.floats(0.5, 1000)),
            "current": current,
        }
        if window - current >= 1 and draw(st.booleans()):
            cond["baseline"] = draw(st.integers(1, window - current))
        if draw(st.booleans()):
            cond["min_zscore"] = draw(st.floats(0, 20))
        return cond
    if kind == "first_seen":
        return {"type": kind, "within_hours": draw(st.floats(1, 24 * 366))}
    if kind == "field_changed":
        return {
            "type": kind,
            "fields": draw(st.lists(names, min_size=1, max_size=3)),
            "reference": draw(st.sampled_from(["auto", "writeback_log", "previous"])),
        }
    return {"type": kind, "min_change": draw(st.floats(0, 100))}


@st.composite
def rules(draw: st.DrawFn, rule_name: str) -> dict[str, Any]:
    source_name = draw(st.sampled_from(sorted(SOURCES)))
    info = SOURCES[source_name]
    rule: dict[str, Any] = {"name": rule_name, "severity": draw(severities)}
    if info.series:
        window = draw(st.integers(2, 48))
        source: dict[str, Any] = {
            "name": source_name,
            "window": window,
            "period": draw(st.sampled_from(["day", "hour"])),
        }
        if source_name.startswith("pendo.") and draw(st.booleans()):
            source["filter"] = "appId == -323232"
        rule["source"] = source
    else:
        window = 8
        rule["source"] = source_name if draw(st.booleans()) else {"name": source_name}
    rule["entity"] = draw(st.sampled_from(info.entities))
    if info.metrics:
        rule["metric"] = draw(st.sampled_from(info.metrics))
    rule["condition"] = draw(conditions(draw(st.sampled_from(info.conditions)), window))
    if draw(st.booleans()):
        rule["sinks"] = draw(st.lists(st.sampled_from(SINKS), min_size=1, max_size=3, unique=True))
    return rule


@st.composite
def rule_files(draw: st.DrawFn) -> dict[str, Any]:
    rule_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    return {
        "version": 1,
        "defaults": {"severity": draw(severities), "sinks": ["log", "table"]},
        "sinks": {"hook": {"type": "webhook", "url_env": "ALERT_HOOK_URL"}},
        "rules": [draw(rules(n)) for n in rule_names],
    }


def dump(spec: Any) -> str:
    return yaml.safe_dump(spec, allow_unicode=True, sort_keys=False, width=1000)


def check_refusal(exc: BaseException, text: str, clear_error: ClearError) -> RuleFileError:
    clear_error(exc, RuleFileError)
    assert isinstance(exc, RuleFileError) and exc.problems
    last = max(1, len(text.splitlines()) + 1)
    for problem in exc.problems:
        assert problem.message, problem
        assert problem.line is None or 1 <= problem.line <= last, (problem, last)
    return exc


# ============================================================================== valid files


@PROPS
@given(spec=rule_files())
def test_a_valid_rule_file_loads_every_rule_as_declared(spec: dict[str, Any]) -> None:
    ruleset = parse_rules(dump(spec), "rules.yaml")
    assert isinstance(ruleset, RuleSet)
    assert [r.name for r in ruleset.rules] == [r["name"] for r in spec["rules"]]
    for rule, declared in zip(ruleset.rules, spec["rules"], strict=True):
        source = declared["source"]
        assert rule.source.name == (source if isinstance(source, str) else source["name"])
        assert rule.entity == declared["entity"] and rule.metric == declared.get("metric")
        assert rule.condition.type == declared["condition"]["type"]
        assert ruleset.severity(rule) == declared["severity"]
        assert ruleset.sinks_of(rule) == tuple(declared.get("sinks", ["log", "table"]))
        assert len(rule.fingerprint()) == 8


# ============================================================================== broken files

MUTATIONS = [
    "wrong_type",
    "drop_required",
    "unknown_key",
    "unknown_sink",
    "bad_name",
    "bad_entity",
    "duplicate_name",
    "duplicate_key",
    "bad_number",
]


@PROPS
@given(spec=rule_files(), how=st.sampled_from(MUTATIONS), data=st.data())
def test_a_broken_rule_is_refused_on_its_line(
    spec: dict[str, Any], how: str, data: Any, clear_error: ClearError
) -> None:
    index = data.draw(st.integers(0, len(spec["rules"]) - 1))
    rule = spec["rules"][index]
    key = "condition"
    if how == "wrong_type":
        key = data.draw(st.sampled_from(["severity", "entity", "condition", "max_tracked"]))
        wrong: list[Any] = [[1, 2], {"x": 1}, "nonsense", -5]
        # (pydantic's lax mode reads `max_tracked: true` as 1, so True is no test for it.)
        rule[key] = data.draw(st.sampled_from(wrong if key == "max_tracked" else [*wrong, True]))
    elif how == "drop_required":
        key = data.draw(st.sampled_from(["source", "entity", "condition"]))
        del rule[key]
    elif how == "unknown_key":
        key = "severty"
        rule[key] = "info"
    elif how == "unknown_sink":
        key = "sinks"
        rule[key] = ["pager"]
    elif how == "bad_name":
        key = "name"
        rule[key] = data.draw(st.sampled_from(["Bad-Name", "", "9lives", "x" * 70, "a b"]))
    elif how == "bad_entity":
        key = "entity"
        rule[key] = "galaxy"
    elif how == "duplicate_name":
        key = "name"
        spec["rules"].append(dict(rule))
        index = len(spec["rules"]) - 1
    elif how == "bad_number":
        key = "max_tracked"
        rule[key] = data.draw(st.sampled_from([0, -1, 10**9, "many", 1.5]))
    text = dump(spec)
    if how == "duplicate_key":  # the rule's `entity:` line written twice
        lines = text.splitlines()
        at = _line_of_rule_key(lines, index, "entity")
        lines.insert(at, lines[at - 1])
        text = "\n".join(lines) + "\n"
        key = "entity"
    with pytest.raises(RuleFileError) as info:
        parse_rules(text, "rules.yaml")
    error = check_refusal(info.value, text, clear_error)
    lines = text.splitlines()
    # The problem is reported on the mutated key's line (or, for a key that is missing,
    # within the rule that lacks it), and says which rule.
    start = _rule_start(lines, index)
    end = _rule_start(lines, index + 1) if index + 1 < len(spec["rules"]) else len(lines) + 1
    located = [p for p in error.problems if p.line is not None and start <= p.line < end]
    assert located, f"no problem inside rules[{index}] (lines {start}-{end}): {error}"
    if how not in ("drop_required",):
        assert any(key in p.where or key in p.message for p in located), error


def _rule_start(lines: list[str], index: int) -> int:
    starts = [i + 1 for i, line in enumerate(lines) if line.startswith("- ")]
    return starts[index]


def _line_of_rule_key(lines: list[str], index: int, key: str) -> int:
    start = _rule_start(lines, index)
    for i in range(start - 1, len(lines)):
        if lines[i].lstrip("- ").startswith(f"{key}:"):
            return i + 1
    raise AssertionError(f"{key} not found in rules[{index}]")


@PROPS
@given(
    text=st.text(max_size=200)
    | st.lists(
        st.sampled_from(
            [
                "version: 1",
                "rules:",
                "  - name: a",
                "    source: pendo.accounts",
                "    entity: account",
                "    condition: {type: first_seen}",
                "    condition: {type: threshold, above: x}",
                "defaults: {severity: loud}",
                "sinks: {w: {type: webhook, url: ftp://x}}",
                "version: 2026-13-45",
                "version: !!int abc",
                "version: !!float abc",
                "version: !!timestamp abc",
                "x: &a [*a]",
                "rules: &r [*r]",
                "? [1]\n: 2",
                "\x00",
                "version: !!binary '@@@'",
                "- a",
                "{",
                "]",
                "\t",
                "%TAG ! tag:x,2000:\n---",
                "    max_tracked: 1e999",
                "    max_tracked: 99999999999999999999999999",
            ]
        ),
        max_size=10,
    ).map("\n".join)
)
@example(text="version: 2026-13-45\nrules: []\n")
@example(text="version: !!int abc\n")
@example(text="version: !!float abc\n")
@example(text="version: !!timestamp abc\n")
@example(text="version: 1\nrules: &r [*r]\n")
@example(text="version: 1\nrules:\n - &x {name: a, source: *x}\n")
# 700 levels already run PyYAML's recursive composer out of stack (and its scanner is
# quadratic in flow nesting: 1,500 levels take seconds, so deeper adds nothing but time).
@example(text="[" * 700)
@example(text="version: 1\nrules: " + "[" * 700 + "]" * 700 + "\n")
@example(text="\x00")
@example(text="version: 1\n\x85rules: []")
def test_any_text_is_a_rule_set_or_a_rule_file_error(text: str, clear_error: ClearError) -> None:
    try:
        ruleset = parse_rules(text, "rules.yaml")
    except Exception as exc:
        check_refusal(exc, text, clear_error)
        return
    assert isinstance(ruleset, RuleSet)
    for rule in ruleset.rules:
        assert rule.name and rule.source.name in SOURCES


@PROPS
@given(body=st.binary(max_size=120), utf8_spec=rule_files())
@example(body=b"version: 1\nrules: []\n# caf\xe9\n", utf8_spec={"version": 1})
def test_a_rule_file_of_any_bytes_is_loaded_or_refused(
    tmp_path_factory: pytest.TempPathFactory,
    body: bytes,
    utf8_spec: dict[str, Any],
    clear_error: ClearError,
) -> None:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    for content in (body, dump(utf8_spec).encode("utf-8") + body):
        path.write_bytes(content)
        try:
            load_rules(path)
        except Exception as exc:
            clear_error(exc, RuleFileError, mentions="rules.yaml")


def test_the_shipped_rules_survive_every_single_line_deletion(clear_error: ClearError) -> None:
    from analytics_assets.alerts.rules import default_rules_path

    lines = default_rules_path().read_text(encoding="utf-8").splitlines()
    for i in range(len(lines)):
        text = "\n".join(lines[:i] + lines[i + 1 :])
        try:
            parse_rules(text, "rules.yaml")
        except Exception as exc:
            check_refusal(exc, text, clear_error)


def test_a_missing_rule_file_is_a_rule_file_error(tmp_path: Path, clear_error: ClearError) -> None:
    with pytest.raises(RuleFileError) as info:
        load_rules(tmp_path / "nope.yaml")
    clear_error(info.value, RuleFileError, mentions="nope.yaml")
