"""Alert rules declared as YAML: the schema, and a loader whose errors name the line.

A rule file looks like this (``default_rules.yaml`` is the shipped example)::

    version: 1                       # required; the only version so far
    defaults:                        # optional
      severity: warning              # info | warning | critical
      sinks: [log, table, webhook]   # sinks of rules that name none
    sinks:                           # named sinks; `log` and `table` exist without being declared
      webhook:
        type: webhook                # log | table | webhook
        url_env: ANALYTICS_ALERTS_WEBHOOK_URL   # or `url:` (never put a Slack URL in git);
                                     # neither: the sensors' webhook_url_env_var
        timeout_seconds: 10
        retries: 2
    run_failure:                     # optional: alerts for failed runs of these jobs
      jobs: [daily_sync]
      severity: critical
      sinks: [log, table, webhook]
    rules:
      - name: account_activity_dropped          # [a-z][a-z0-9_]*, unique
        description: ...
        enabled: true
        severity: warning
        source:                                 # or just `source: pendo.accounts`
          name: pendo.events                    # see SOURCES below
          period: day                           # day | hour (event sources)
          window: 8                             # buckets fetched, newest last
          include_current: false                # include the current, still-filling bucket
          filter: 'appId == -323232'            # optional Pendo filter expression
        entity: account                         # see SOURCES below
        metric: numEvents                       # see SOURCES below
        condition:
          type: change_pct                      # threshold | change_pct | first_seen
          direction: drop                       #   | field_changed | count_changed
          percent: 50
        sinks: [log, table, webhook]
        notify_on_clear: false                  # also tell when the condition clears
        max_tracked: 20000                      # entities in alert kept in the cursor

Conditions (``type`` and its keys):

* ``threshold``: ``above`` or ``below`` (exactly one); ``current`` (newest buckets averaged,
  default 1); ``min_samples`` (skip entities with less denominator, e.g. guide views).
* ``change_pct``: ``direction`` (drop | rise), ``percent`` (> 0); ``current`` (newest buckets,
  default 1); ``baseline`` (the buckets before them, default all the rest of the window);
  ``min_baseline`` (ignore entities whose baseline is smaller); ``min_samples``;
  ``min_zscore`` (counts: the change must be this many times the entity's own standard
  deviation over the baseline buckets); ``weekdays_only`` (day period: weekend days are
  neither current nor baseline).
* ``first_seen``: ``field`` (default ``metadata.auto.firstvisit``), ``within_hours``
  (default 168): holds while the entity is younger than that.
* ``field_changed``: ``fields`` (names under ``metadata.custom``, or dotted paths);
  ``reference`` (auto | writeback_log | previous): compare with what the write-back last wrote
  (``writeback_table``, default ``analytics.writeback_log``) or, without it, with the
  previous observation; ``auto`` picks the log when its table exists.
* ``count_changed``: ``min_change`` (absolute, default 1), ``min_change_pct`` (default 0).

Alerts fire on transitions only: when a condition starts holding for an entity, never again
while it holds, and again only after it has cleared (``field_changed`` and ``count_changed``
fire once per change).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# --------------------------------------------------------------------------- vocabulary

PENDO_EVENT_SOURCES = ("events", "featureEvents", "pageEvents", "trackEvents")


@dataclass(frozen=True)
class SourceInfo:
    """What a source can be asked: its entities, metrics and conditions."""

    entities: tuple[str, ...]
    metrics: tuple[str, ...]
    conditions: tuple[str, ...]
    series: bool  # bucketed over time (window/period apply)


_SERIES_CONDITIONS = ("threshold", "change_pct")
_EVENT_METRICS = ("numEvents", "numMinutes", "visitors", "accounts")

SOURCES: dict[str, SourceInfo] = {
    "pendo.events": SourceInfo(("account", "visitor"), _EVENT_METRICS, _SERIES_CONDITIONS, True),
    "pendo.featureEvents": SourceInfo(
        ("feature", "account", "visitor"), _EVENT_METRICS, _SERIES_CONDITIONS, True
    ),
    "pendo.pageEvents": SourceInfo(
        ("page", "account", "visitor"), _EVENT_METRICS, _SERIES_CONDITIONS, True
    ),
    "pendo.trackEvents": SourceInfo(
        ("trackType", "account", "visitor"), _EVENT_METRICS, _SERIES_CONDITIONS, True
    ),
    "pendo.guideEvents": SourceInfo(
        ("guide", "account", "visitor"),
        ("seen", "advanced", "dismissed", "dismissal_rate", "advance_rate"),
        _SERIES_CONDITIONS,
        True,
    ),
    "pendo.accounts": SourceInfo(("account",), (), ("first_seen", "field_changed"), False),
    "pendo.visitors": SourceInfo(("visitor",), (), ("first_seen", "field_changed"), False),
    "amplitude.cohorts": SourceInfo(("cohort",), ("size",), ("threshold", "count_changed"), False),
    "amplitude.active_users": SourceInfo(("project",), ("active_users",), _SERIES_CONDITIONS, True),
}

ENTITIES = ("account", "visitor", "feature", "page", "trackType", "guide", "cohort", "project")
BUILTIN_SINKS = ("log", "table")
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

# ------------------------------------------------------------------------------ schema


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Model):
    name: Literal[tuple(SOURCES)]  # type: ignore[valid-type]
    period: Literal["day", "hour"] = "day"
    window: int = Field(8, ge=1, le=24 * 31)
    include_current: bool = False
    filter: str | None = None

    @property
    def system(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def kind(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def info(self) -> SourceInfo:
        return SOURCES[self.name]


class ThresholdCondition(_Model):
    type: Literal["threshold"]
    above: float | None = None
    below: float | None = None
    current: int = Field(1, ge=1)
    min_samples: float = Field(0, ge=0)


class ChangePctCondition(_Model):
    type: Literal["change_pct"]
    direction: Literal["drop", "rise"]
    percent: float = Field(gt=0, le=100_000)
    current: int = Field(1, ge=1)
    baseline: int | None = Field(None, ge=1)
    min_baseline: float = Field(0, ge=0)
    min_samples: float = Field(0, ge=0)
    min_zscore: float = Field(0, ge=0, le=20)
    weekdays_only: bool = False


class FirstSeenCondition(_Model):
    type: Literal["first_seen"]
    field: str = "metadata.auto.firstvisit"
    within_hours: float = Field(168, gt=0, le=24 * 366)


class FieldChangedCondition(_Model):
    type: Literal["field_changed"]
    fields: list[Annotated[str, Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_$][\w$]*)*$")]] = Field(
        min_length=1, max_length=50
    )
    reference: Literal["auto", "writeback_log", "previous"] = "auto"
    writeback_table: str = Field("analytics.writeback_log", pattern=r"^[A-Za-z_]\w*(\.\w+)?$")

    def paths(self) -> dict[str, str]:
        """Field name -> dotted path in the row (bare names live under metadata.custom)."""
        return {f: (f if "." in f else f"metadata.custom.{f}") for f in self.fields}


class CountChangedCondition(_Model):
    type: Literal["count_changed"]
    min_change: float = Field(1, ge=0)
    min_change_pct: float = Field(0, ge=0)


Condition = Annotated[
    ThresholdCondition
    | ChangePctCondition
    | FirstSeenCondition
    | FieldChangedCondition
    | CountChangedCondition,
    Field(discriminator="type"),
]


class LogSinkSpec(_Model):
    type: Literal["log"]
    max_alerts_per_tick: int = Field(50, ge=1)


class TableSinkSpec(_Model):
    type: Literal["table"]
    table: str = Field("analytics.alerts", pattern=r"^[A-Za-z_]\w*(\.\w+)?$")


class WebhookSinkSpec(_Model):
    type: Literal["webhook"]
    url: str | None = Field(None, pattern=r"^https?://")
    url_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_seconds: float = Field(10.0, gt=0, le=60)
    retries: int = Field(2, ge=0, le=5)
    backoff_seconds: float = Field(0.5, ge=0, le=10)
    max_alerts_per_message: int = Field(20, ge=1, le=45)
    include_data: bool = True


SinkSpec = Annotated[LogSinkSpec | TableSinkSpec | WebhookSinkSpec, Field(discriminator="type")]


class Defaults(_Model):
    severity: Literal["info", "warning", "critical"] = "warning"
    sinks: list[str] = Field(default_factory=lambda: ["log", "table"])


class RunFailureSpec(_Model):
    jobs: list[str] = Field(default_factory=lambda: ["daily_sync"], min_length=1)
    severity: Literal["info", "warning", "critical"] = "critical"
    sinks: list[str] | None = None
    enabled: bool = True


class RuleSpec(_Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    enabled: bool = True
    severity: Literal["info", "warning", "critical"] | None = None
    source: SourceSpec
    entity: Literal[ENTITIES]  # type: ignore[valid-type]
    metric: str | None = None
    condition: Condition
    sinks: list[str] | None = None
    sensor: str | None = None
    notify_on_clear: bool = False
    max_tracked: int = Field(20_000, ge=1, le=200_000)

    @field_validator("source", mode="before")
    @classmethod
    def _source_shorthand(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    def fingerprint(self) -> str:
        """Changes when what the rule computes changes, so its stored state is reset."""
        core = self.model_dump(include={"source", "entity", "metric", "condition"})
        text = json.dumps(core, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


class RuleFileModel(_Model):
    version: Literal[1]
    defaults: Defaults = Field(default_factory=Defaults)
    sinks: dict[str, SinkSpec] = Field(default_factory=dict)
    run_failure: RunFailureSpec | None = None
    rules: list[RuleSpec] = Field(default_factory=list)


# ------------------------------------------------------------------------------ errors


@dataclass(frozen=True)
class RuleProblem:
    line: int | None
    where: str
    message: str

    def render(self, filename: str) -> str:
        at = f"{filename}:{self.line}" if self.line else filename
        return f"{at}: {self.where}: {self.message}" if self.where else f"{at}: {self.message}"


class RuleFileError(ValueError):
    """A rule file that cannot be used; ``problems`` lists every problem with its line."""

    def __init__(self, filename: str, problems: Sequence[RuleProblem]) -> None:
        self.filename = filename
        self.problems = list(problems)
        lines = [p.render(filename) for p in self.problems]
        count = f"{len(lines)} problem{'s' if len(lines) != 1 else ''}"
        super().__init__(f"invalid alert rules in {filename} ({count}):\n  " + "\n  ".join(lines))


# ------------------------------------------------------------------------------ loader

Path_ = tuple[Any, ...]


def _compose(text: str, filename: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML into Python objects and a map from each key path to its line (1-based)."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML refuses (NUL...), found up front
        line = text.count("\n", 0, exc.position) + 1
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        problem = RuleProblem(line, "", f"YAML error: {exc.reason} (character {char})")
        raise RuleFileError(filename, [problem]) from None
    node = None
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        reason = " ".join(filter(None, [exc.context, exc.problem])) or "cannot parse"
        problem = RuleProblem(line, "", f"YAML syntax error: {reason}")
        raise RuleFileError(filename, [problem]) from None
    except yaml.YAMLError as exc:
        raise RuleFileError(filename, [RuleProblem(None, "", f"YAML error: {exc}")]) from None
    except RecursionError:
        problem = RuleProblem(None, "", "YAML error: the file nests too deeply")
        raise RuleFileError(filename, [problem]) from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # PyYAML builds some scalars with Python's own constructors and lets their errors
        # out: `2026-13-45` (read as a date), `!!int abc`, `!!timestamp abc`.
        bad = _bad_scalar(node)
        line = bad.start_mark.line + 1 if bad is not None else None
        what = f"{bad.value!r} is not a valid {bad.tag.rsplit(':', 1)[-1]}" if bad else "a value"
        problem = RuleProblem(line, "", f"YAML value cannot be read: {what} ({exc})")
        raise RuleFileError(filename, [problem]) from None
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    problems: list[RuleProblem] = []
    if node is not None:
        try:
            _walk(node, (), lines, problems)
        except RecursionError:  # `a: &x [*x]`: an alias inside its own anchor
            problem = RuleProblem(None, "", "an alias (*name) refers to its own anchor (&name)")
            raise RuleFileError(filename, [problem]) from None
    if problems:
        raise RuleFileError(filename, problems)
    return data, lines


def _bad_scalar(root: yaml.Node | None) -> yaml.ScalarNode | None:
    """The first scalar PyYAML cannot build, if it can be found."""
    loader = yaml.SafeLoader("")  # a fresh one: the failed one holds half-built objects
    stack, seen = [root], set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            try:
                loader.construct_object(node, deep=True)
            except Exception:
                return node
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
    return None


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                # YAML itself keeps the last value silently; a duplicated key is almost
                # always a mistake (two `condition:` blocks), so refuse it.
                problems.append(
                    RuleProblem(
                        line,
                        _where(path, None),
                        f"duplicate key {key!r} (first on line {seen[key]})",
                    )
                )
            seen[key] = line
            lines[path + (key,)] = line
            _walk(value_node, path + (key,), lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, path + (index,), lines, problems)


def _where(path: Path_, data: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        name = _rule_name(data, path[1])
        if name:
            out = out.replace(f"rules[{path[1]}]", f"rules[{path[1]}] ({name})", 1)
    return out


def _rule_name(data: Any, index: int) -> str | None:
    try:
        name = data["rules"][index]["name"]
    except (TypeError, KeyError, IndexError):
        return None
    return name if isinstance(name, str) else None


def _line_for(loc: Iterable[Any], lines: Mapping[Path_, int]) -> tuple[Path_, int | None]:
    """The deepest path of ``loc`` present in the file (skipping union tags) and its line."""
    path: Path_ = ()
    for part in loc:
        if path + (part,) in lines:
            path = path + (part,)
    return path, lines.get(path)


def _describe(err: Mapping[str, Any]) -> str:
    kind, loc, value = err["type"], err["loc"], err.get("input")
    key = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        return f"unknown key {key!r}"
    if kind == "missing":
        return f"{key!r} is required"
    message = err["msg"]
    if isinstance(value, str | int | float | bool) or value is None:
        message += f" (got {value!r})"
    return message


def _pydantic_problems(exc: ValidationError, data: Any, lines: Mapping[Path_, int]) -> list:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path, line = _line_for(loc, lines)
        # A missing key is not in the file (its parent is): name it in the shown path.
        shown = path
        if err["type"] == "missing" and loc and (not path or path[-1] != loc[-1]):
            shown = path + (loc[-1],)
        problems.append(RuleProblem(line, _where(shown, data), _describe(err)))
    return problems


def _semantic_problems(model: RuleFileModel, lines: Mapping[Path_, int]) -> list[RuleProblem]:
    """What the schema alone cannot say: combinations, references, uniqueness."""
    problems: list[RuleProblem] = []
    data = {"rules": [{"name": r.name} for r in model.rules]}

    def add(path: Path_, message: str) -> None:
        found, line = _line_for(path, lines)
        problems.append(RuleProblem(line, _where(path, data), message))

    sink_names = set(model.sinks) | set(BUILTIN_SINKS)
    for name in model.defaults.sinks:
        if name not in sink_names:
            add(("defaults", "sinks"), f"unknown sink {name!r} (declared: {sorted(sink_names)})")
    if model.run_failure and model.run_failure.sinks:
        for name in model.run_failure.sinks:
            if name not in sink_names:
                add(("run_failure", "sinks"), f"unknown sink {name!r}")
    seen: dict[str, int] = {}
    for i, rule in enumerate(model.rules):
        base: Path_ = ("rules", i)
        if rule.name in seen:
            add(
                base + ("name",),
                f"duplicate rule name {rule.name!r} (also rules[{seen[rule.name]}])",
            )
        seen.setdefault(rule.name, i)
        info, cond = rule.source.info, rule.condition
        if rule.entity not in info.entities:
            add(
                base + ("entity",),
                f"source {rule.source.name} tracks {list(info.entities)}, not {rule.entity!r}",
            )
        if cond.type not in info.conditions:
            add(
                base + ("condition", "type"),
                f"condition {cond.type!r} does not apply to "
                f"source {rule.source.name} (use one of {list(info.conditions)})",
            )
        if info.metrics:
            if rule.metric is None:
                add(
                    base,
                    f"'metric' is required for source {rule.source.name} "
                    f"(one of {list(info.metrics)})",
                )
            elif rule.metric not in info.metrics:
                add(
                    base + ("metric",),
                    f"unknown metric {rule.metric!r} for source "
                    f"{rule.source.name} (one of {list(info.metrics)})",
                )
        elif rule.metric is not None:
            add(base + ("metric",), f"source {rule.source.name} has no metrics; remove 'metric'")
        for name in rule.sinks or []:
            if name not in sink_names:
                add(base + ("sinks",), f"unknown sink {name!r} (declared: {sorted(sink_names)})")
        _check_condition(rule, base, add)
    return problems


def _check_condition(rule: RuleSpec, base: Path_, add) -> None:
    cond, src = rule.condition, rule.source
    where = base + ("condition",)
    if isinstance(cond, ThresholdCondition) and (cond.above is None) == (cond.below is None):
        add(where, "threshold needs exactly one of 'above' or 'below'")
    if isinstance(cond, ThresholdCondition | ChangePctCondition) and src.info.series:
        # change_pct needs at least one baseline bucket before the current ones.
        baseline = getattr(cond, "baseline", None) or (
            1 if isinstance(cond, ChangePctCondition) else 0
        )
        if cond.current + baseline > src.window:
            add(
                where,
                f"current ({cond.current}) + baseline ({baseline}) buckets do not fit "
                f"in the source window ({src.window})",
            )
    if isinstance(cond, ChangePctCondition) and cond.weekdays_only and src.period != "day":
        add(where + ("weekdays_only",), "weekdays_only needs a source with period: day")
    if not src.info.series and (src.window != 8 or src.period != "day" or src.include_current):
        add(
            base + ("source",),
            f"source {src.name} is not a time series; remove period/window/include_current",
        )
    if src.filter is not None and src.system != "pendo":
        add(base + ("source", "filter"), "filter applies to Pendo sources only")


# ------------------------------------------------------------------------------ result


class RuleSet:
    """A validated rule file, with the lookups the sensors need."""

    def __init__(self, model: RuleFileModel, origin: str = "<rules>") -> None:
        self.model = model
        self.origin = origin

    @property
    def rules(self) -> list[RuleSpec]:
        return [rule for rule in self.model.rules if rule.enabled]

    @property
    def sinks(self) -> dict[str, Any]:
        declared: dict[str, Any] = {
            "log": LogSinkSpec(type="log"),
            "table": TableSinkSpec(type="table"),
        }
        declared.update(self.model.sinks)
        return declared

    def severity(self, rule: RuleSpec) -> str:
        return rule.severity or self.model.defaults.severity

    def sinks_of(self, rule: RuleSpec) -> tuple[str, ...]:
        return tuple(rule.sinks if rule.sinks is not None else self.model.defaults.sinks)

    @property
    def run_failure(self) -> RunFailureSpec:
        return self.model.run_failure or RunFailureSpec()

    def run_failure_sinks(self) -> tuple[str, ...]:
        spec = self.run_failure
        return tuple(spec.sinks if spec.sinks is not None else self.model.defaults.sinks)


def parse_rules(text: str, filename: str = "<rules>") -> RuleSet:
    """Validate rule YAML; raise ``RuleFileError`` naming each bad line and the reason."""
    data, lines = _compose(text, filename)
    if not isinstance(data, dict):
        line = lines.get(())
        raise RuleFileError(
            filename,
            [RuleProblem(line, "", "the file must be a mapping with 'version' and 'rules'")],
        )
    try:
        model = RuleFileModel.model_validate(data)
    except ValidationError as exc:
        problems = sorted(_pydantic_problems(exc, data, lines), key=lambda p: p.line or 0)
        raise RuleFileError(filename, problems) from None
    problems = _semantic_problems(model, lines)
    if problems:
        raise RuleFileError(filename, sorted(problems, key=lambda p: p.line or 0))
    return RuleSet(model, filename)


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load a rule file (the shipped defaults when ``path`` is None)."""
    if path is None:
        text = resources.files("analytics_assets.alerts").joinpath("default_rules.yaml")
        return parse_rules(text.read_text(encoding="utf-8"), "default_rules.yaml")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problem = RuleProblem(None, "", f"cannot read: {exc.strerror}")
        raise RuleFileError(str(path), [problem]) from None
    except UnicodeDecodeError as exc:
        raw = path.read_bytes()
        line = raw.count(b"\n", 0, exc.start) + 1
        problem = RuleProblem(line, "", f"not UTF-8 text (byte {exc.start}); save it as UTF-8")
        raise RuleFileError(str(path), [problem]) from None
    return parse_rules(text, str(path))


def default_rules_path() -> Path:
    return Path(__file__).with_name("default_rules.yaml")
