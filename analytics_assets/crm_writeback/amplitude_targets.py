"""Where the CRM's mapped fields go in Amplitude: group properties, and user properties of
the account's users.

The mapping file (``mapping.yaml``) says how each CRM column becomes a typed field; this
says which of those fields Amplitude gets and under what name. The account's users are
read from a warehouse table of (user id, account id): by default the Pendo sync's
``pendo.visitors``, on the assumption that Amplitude's ``user_id`` is Pendo's visitor id
(both tools fed the same id, as is usual and as the sandbox does). Amplitude's user search
cannot list an account's users (it looks up one user at a time, 360 an hour).
"""

from __future__ import annotations

import re
from typing import Any

import dagster as dg
from pydantic import Field, field_validator

from analytics_assets.crm_writeback.mapping import Mapping

__all__ = ["AmplitudeTargets", "TargetsError"]

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TargetsError(ValueError):
    """The Amplitude targets name fields the mapping lacks; nothing was written."""


class AmplitudeTargets(dg.Model, dg.Resolvable):
    """The Amplitude side of the write-back (the ``amplitude`` block of ``CrmToPendo``)."""

    group_type: str = Field(
        default="account",
        description="Amplitude group type of an account (its group value is the account id).",
    )
    group_properties: dict[str, str] | None = Field(
        default=None,
        description="Mapping field -> Amplitude group property. Default: every mapped field, "
        "under its own name. {} sends no group properties.",
    )
    user_properties: dict[str, str] = Field(
        default_factory=dict,
        description="Mapping field -> user property set on each of the account's users "
        "(e.g. {plan: account_plan}). Default: none.",
    )
    users_table: str = Field(
        default="pendo.visitors",
        description="Warehouse table listing each user's account (needed only when "
        "user_properties is set).",
    )
    user_id_column: str = Field(default="visitor_id", description="Its Amplitude user id.")
    account_id_column: str = Field(default="account_id", description="Its account id.")

    @field_validator("group_type")
    @classmethod
    def _group_type(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("group_type must not be empty")
        return value.strip()

    @field_validator("users_table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not _TABLE.match(value):
            raise ValueError(f"users_table must be schema.table, got {value!r}")
        return value

    @field_validator("user_id_column", "account_id_column")
    @classmethod
    def _column(cls, value: str) -> str:
        if not _COLUMN.match(value):
            raise ValueError(f"not a plain column name: {value!r}")
        return value

    def group_map(self, mapping: Mapping) -> dict[str, str]:
        """Mapping field -> group property."""
        if self.group_properties is None:
            return {f.field: f.field for f in mapping.fields}
        return dict(self.group_properties)

    def check(self, mapping: Mapping) -> None:
        """Raise TargetsError naming every target field the mapping does not define."""
        known = {f.field for f in mapping.fields}
        problems = [
            f"amplitude.{where}: {name!r} is not a field of the mapping {mapping.source}"
            for where, names in (
                ("group_properties", self.group_map(mapping)),
                ("user_properties", self.user_properties),
            )
            for name in names
            if name not in known
        ]
        for where, names in (
            ("group_properties", self.group_map(mapping)),
            ("user_properties", self.user_properties),
        ):
            taken = list(names.values())
            doubles = sorted({p for p in taken if taken.count(p) > 1})
            if doubles:
                problems.append(f"amplitude.{where}: {doubles} are each fed by two fields")
        if problems:
            raise TargetsError(
                "the Amplitude targets do not fit the mapping; nothing was written:\n"
                + "\n".join(f"  {p}" for p in problems)
                + f"\nMapped fields: {', '.join(sorted(known))}."
            )

    def describe(self) -> dict[str, Any]:
        return {
            "group_type": self.group_type,
            "group_properties": self.group_properties,
            "user_properties": self.user_properties,
            "users_table": self.users_table if self.user_properties else None,
        }
