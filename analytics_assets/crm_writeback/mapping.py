"""The declared mapping from CRM columns to Pendo custom account fields.

A YAML file (see ``data/mapping.yaml``) names the column holding the account id and, for
each Pendo field, the CRM column, the type (text, number, boolean, date) and optional
transforms applied in order. The file is checked as a whole before anything runs, and
every problem is reported with its line, so a typo costs one edit, not one run per typo.

The file only declares; ``convert.py`` turns CRM values into typed values. The YAML is
read node by node (not with ``safe_load``) for two reasons: line numbers for
every error, and YAML 1.1's habit of turning ``yes``/``no`` into booleans, which would
mangle the boolean word lists this file exists to declare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

__all__ = [
    "DEFAULT_MAPPING_PATH",
    "FIELD_TYPES",
    "FieldMapping",
    "Mapping",
    "MappingError",
    "Transform",
    "date_order",
    "load_mapping",
    "parse_mapping",
]

DEFAULT_MAPPING_PATH = Path(__file__).resolve().parent / "data" / "mapping.yaml"
FIELD_TYPES = ("text", "number", "boolean", "date")
DEFAULT_DATE_FORMATS = ("%Y-%m-%d",)
# What parse_date reads with ``day_first`` and no formats: ISO, and the numeric order said.
DAY_FIRST_FORMATS = ("%Y-%m-%d", "%d/%m/%Y")
MONTH_FIRST_FORMATS = ("%Y-%m-%d", "%m/%d/%Y")
# Which transforms make sense for which field type (None: any type).
TRANSFORMS: dict[str, tuple[str, ...] | None] = {
    "trim": None,
    "lower": None,
    "upper": None,
    "currency_to_number": ("number",),
    "parse_date": ("date",),
    "boolean_words": ("boolean",),
}
# Pendo field names become paths like metadata.custom.<name>: no dots or spaces.
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class MappingError(ValueError):
    """The mapping file is invalid; ``problems`` are ``line N: what to fix`` strings."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"mapping {source} is not valid ({len(problems)} problem(s)):\n{listed}")


@dataclass(frozen=True)
class Transform:
    name: str
    formats: tuple[str, ...] = ()
    true_words: tuple[str, ...] = ()
    false_words: tuple[str, ...] = ()
    decimal_separator: str = "."
    # parse_date: True reads 03/04/2026 as 3 April, False as March 4; None: not said, so
    # a column whose dates read both ways is refused (see convert.check_date_order).
    day_first: bool | None = None


def date_order(fmt: str) -> bool | None:
    """Whether a numeric date format reads the day before the month (True), the month first
    (False), or neither can be confused (None: no %d or %m, a month name, or the year
    first as in ISO %Y-%m-%d)."""
    if "%m" not in fmt or "%d" not in fmt:
        return None
    day, month = fmt.index("%d"), fmt.index("%m")
    year = fmt.find("%Y") if "%Y" in fmt else fmt.find("%y")
    if 0 <= year < min(day, month):
        return None
    return day < month


@dataclass(frozen=True)
class FieldMapping:
    """One Pendo field fed by one CRM column."""

    field: str
    column: str
    type: str
    transforms: tuple[Transform, ...] = ()
    required: bool = False
    line: int = 0

    def describe(self) -> str:
        return f"{self.field} (from {self.column!r}, line {self.line})"


@dataclass(frozen=True)
class Mapping:
    id_column: str
    id_transforms: tuple[Transform, ...]
    fields: tuple[FieldMapping, ...]
    source: str = "<mapping>"
    id_line: int = 0

    def field(self, name: str) -> FieldMapping:
        return next(f for f in self.fields if f.field == name)

    @property
    def columns(self) -> list[str]:
        return [self.id_column, *dict.fromkeys(f.column for f in self.fields)]


# ----- loading ------------------------------------------------------------------------


def load_mapping(path: str | Path | None = None) -> Mapping:
    """Read and check a mapping file (default: the one shipped with the package)."""
    file = Path(path) if path else DEFAULT_MAPPING_PATH
    if not file.is_file():
        raise MappingError(str(file), ["the file does not exist"])
    return parse_mapping(file.read_text(encoding="utf-8"), source=str(file))


def parse_mapping(text: str, source: str = "<mapping>") -> Mapping:
    """Parse mapping YAML; raises MappingError listing every problem with its line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise MappingError(source, [f"{where}not valid YAML: {problem}"]) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise MappingError(source, ["line 1: not valid YAML: nested too deeply"]) from None
    reader = _Reader()
    mapping = reader.mapping(root, source)
    if reader.problems:
        raise MappingError(source, sorted(reader.problems, key=_line_of))
    assert mapping is not None
    return mapping


def _line_of(problem: str) -> int:
    return int(problem.split(":", 1)[0].removeprefix("line "))


def _line(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 0


class _Reader:
    """Walks the composed YAML, collecting problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, node: yaml.Node | None, text: str) -> None:
        self.problems.append(f"line {_line(node)}: {text}")

    def table(self, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            self.bad(node, f"{what} must be a mapping of keys to values")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in node.value:
            name = str(key.value).strip() if isinstance(key, yaml.ScalarNode) else ""
            if not name:
                self.bad(key, f"{what}: keys must be plain names")
            elif name in out:
                # PyYAML keeps the last duplicate silently; a mapping file must not.
                first = _line(out[name][0])
                self.bad(key, f"{what}: {name!r} appears twice (first on line {first})")
            else:
                out[name] = (key, value)
        return out

    def text(self, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
            self.bad(node, f"{what} must be a non-empty text")
            return None
        return str(node.value).strip()

    def flag(self, node: yaml.Node, what: str) -> bool:
        raw = str(node.value).lower() if isinstance(node, yaml.ScalarNode) else ""
        if raw in ("true", "yes", "on"):
            return True
        if raw in ("false", "no", "off"):
            return False
        self.bad(node, f"{what} must be true or false")
        return False

    def words(self, node: yaml.Node, what: str) -> tuple[str, ...]:
        items = node.value if isinstance(node, yaml.SequenceNode) else None
        if not items or not all(isinstance(i, yaml.ScalarNode) for i in items):
            self.bad(node, f"{what} must be a non-empty list of words")
            return ()
        return tuple(str(i.value).strip().lower() for i in items)

    def mapping(self, root: yaml.Node | None, source: str) -> Mapping | None:
        if root is None:
            self.bad(None, "the file is empty; it needs account_id and fields")
            return None
        top = self.table(root, "the file")
        for key in set(top) - {"version", "account_id", "fields"}:
            self.bad(top[key][0], f"unknown key {key!r}; use version, account_id and fields")
        if "version" in top and str(top["version"][1].value) != "1":
            self.bad(top["version"][1], "version must be 1")
        id_column, id_transforms, id_line = None, (), 0
        if "account_id" not in top:
            self.bad(root, "account_id is missing: name the CRM column holding Pendo's account id")
        else:
            key, node = top["account_id"]
            id_line = _line(key)
            spec = self.table(node, "account_id")
            for extra in set(spec) - {"column", "transforms"}:
                self.bad(
                    spec[extra][0], f"account_id: unknown key {extra!r}; use column or transforms"
                )
            if "column" not in spec:
                self.bad(key, "account_id needs a column")
            else:
                id_column = self.text(spec["column"][1], "account_id.column")
            if "transforms" in spec:
                id_transforms = self.transforms(spec["transforms"][1], "account_id", "text")
        fields: list[FieldMapping] = []
        if "fields" not in top:
            self.bad(root, "fields is missing: map at least one CRM column to a Pendo field")
        else:
            entries = self.table(top["fields"][1], "fields")
            if not entries and isinstance(top["fields"][1], yaml.MappingNode):
                self.bad(top["fields"][1], "fields is empty: map at least one column")
            for name, (key, node) in entries.items():
                parsed = self.field(name, key, node)
                if parsed:
                    fields.append(parsed)
        if self.problems or id_column is None:
            return None
        return Mapping(id_column, id_transforms, tuple(fields), source, id_line)

    def field(self, name: str, key: yaml.Node, node: yaml.Node) -> FieldMapping | None:
        what = f"field {name!r}"
        if not _FIELD_NAME.match(name):
            self.bad(key, f"{what}: Pendo field names are letters, digits and underscores")
        spec = self.table(node, what)
        for extra in set(spec) - {"column", "type", "transforms", "required"}:
            self.bad(
                spec[extra][0],
                f"{what}: unknown key {extra!r}; use column, type, transforms, required",
            )
        column = self.text(spec["column"][1], f"{what}.column") if "column" in spec else None
        if "column" not in spec and spec:
            self.bad(key, f"{what} needs a column (the CRM column it is read from)")
        kind = self.text(spec["type"][1], f"{what}.type") if "type" in spec else None
        if "type" not in spec and spec:
            self.bad(key, f"{what} needs a type: one of {', '.join(FIELD_TYPES)}")
        elif kind is not None and kind not in FIELD_TYPES:
            self.bad(
                spec["type"][1],
                f"{what}: unknown type {kind!r}; use one of {', '.join(FIELD_TYPES)}",
            )
            kind = None
        transforms = (
            self.transforms(spec["transforms"][1], what, kind) if "transforms" in spec else ()
        )
        required = "required" in spec and self.flag(spec["required"][1], f"{what}.required")
        if column is None or kind is None:
            return None
        return FieldMapping(name, column, kind, transforms, required, _line(key))

    def transforms(self, node: yaml.Node, what: str, kind: str | None) -> tuple[Transform, ...]:
        if not isinstance(node, yaml.SequenceNode):
            self.bad(node, f"{what}.transforms must be a list, e.g. [trim, lower]")
            return ()
        out = []
        for item in node.value:
            parsed = self.transform(item, what, kind)
            if parsed:
                out.append(parsed)
        return tuple(out)

    def transform(self, node: yaml.Node, what: str, kind: str | None) -> Transform | None:
        args: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        args_node: yaml.Node | None = None
        if isinstance(node, yaml.ScalarNode):
            name = str(node.value).strip()
        elif isinstance(node, yaml.MappingNode) and len(node.value) == 1:
            key, args_node = node.value[0]
            name = str(key.value).strip()
        else:
            self.bad(
                node,
                f"{what}: a transform is a name (trim) or one name with options "
                "({parse_date: {formats: [...]}})",
            )
            return None
        if name not in TRANSFORMS:
            known = ", ".join(TRANSFORMS)
            self.bad(node, f"{what}: unknown transform {name!r}; use one of {known}")
            return None
        allowed = TRANSFORMS[name]
        if allowed is not None and kind is not None and kind not in allowed:
            self.bad(node, f"{what}: {name} applies to {'/'.join(allowed)} fields, not {kind}")
            return None
        if args_node is not None:
            if name == "parse_date" and isinstance(args_node, yaml.SequenceNode):
                return Transform(name, formats=self.formats(args_node, what))
            args = self.table(args_node, f"{what}: {name}")
        return self.transform_options(name, args, node, what)

    def transform_options(
        self, name: str, args: dict[str, tuple[yaml.Node, yaml.Node]], node: yaml.Node, what: str
    ) -> Transform | None:
        known = {
            "parse_date": {"formats", "day_first"},
            "boolean_words": {"true", "false"},
            "currency_to_number": {"decimal_separator"},
        }.get(name, set())
        for extra in set(args) - known:
            hint = f"use {', '.join(sorted(known))}" if known else "it takes no options"
            self.bad(args[extra][0], f"{what}: {name} has no option {extra!r}; {hint}")
        if name == "parse_date":
            return self.parse_date(args, what)
        if name == "boolean_words":
            if "true" not in args or "false" not in args:
                self.bad(node, f"{what}: boolean_words needs both true: [...] and false: [...]")
                return None
            true = self.words(args["true"][1], f"{what}: boolean_words.true")
            false = self.words(args["false"][1], f"{what}: boolean_words.false")
            if set(true) & set(false):
                self.bad(
                    node, f"{what}: words {sorted(set(true) & set(false))} are both true and false"
                )
            return Transform(name, true_words=true, false_words=false)
        if name == "currency_to_number" and "decimal_separator" in args:
            sep = str(args["decimal_separator"][1].value)
            if sep not in (".", ","):
                self.bad(args["decimal_separator"][1], f"{what}: decimal_separator is . or ,")
                return None
            return Transform(name, decimal_separator=sep)
        return Transform(name)

    def parse_date(self, args: dict[str, tuple[yaml.Node, yaml.Node]], what: str) -> Transform:
        day_first: bool | None = None
        if "day_first" in args:
            day_first = self.flag(args["day_first"][1], f"{what}: parse_date.day_first")
        if "formats" in args:
            formats = self.formats(args["formats"][1], what)
        elif day_first is None:
            formats = DEFAULT_DATE_FORMATS
        else:
            formats = DAY_FIRST_FORMATS if day_first else MONTH_FIRST_FORMATS
        if day_first is not None and "formats" in args:
            # One reading per column: a format of the other order would read 03/04 both ways.
            wrong = [f for f in formats if date_order(f) is not None and date_order(f) != day_first]
            if wrong:
                order = "day-first" if day_first else "month-first"
                self.bad(
                    args["day_first"][1],
                    f"{what}: parse_date says day_first: {str(day_first).lower()} ({order}) but "
                    f"format(s) {', '.join(repr(f) for f in wrong)} read the other way; remove "
                    "them or change day_first",
                )
        return Transform("parse_date", formats=formats, day_first=day_first)

    def formats(self, node: yaml.Node, what: str) -> tuple[str, ...]:
        items = node.value if isinstance(node, yaml.SequenceNode) else None
        if not items or not all(isinstance(i, yaml.ScalarNode) for i in items):
            self.bad(node, f"{what}: parse_date formats must be a list like ['%Y-%m-%d']")
            return DEFAULT_DATE_FORMATS
        formats = tuple(str(i.value) for i in items)
        for item, fmt in zip(items, formats, strict=True):
            if "%" not in fmt:
                self.bad(
                    item,
                    f"{what}: date format {fmt!r} has no % directives "
                    "(strftime codes such as %Y-%m-%d)",
                )
        return formats
