"""Schema pieces that several components share: the calendar, the naming, named items.

Components validate their YAML once, when the code location loads; a mistake names the
file and line (Dagster's resolution does that for every field these models reject).
Unknown keys are errors: ``dg.Model`` forbids extra fields.
"""

from __future__ import annotations

import math
import re
from datetime import date
from typing import Self

import dagster as dg
from pydantic import BaseModel, Field, ValidationError, field_validator

from analytics_assets.api_session import api_retry_policy
from analytics_assets.naming import AssetNaming
from analytics_assets.partitions import (
    DEFAULT_START_DATE,
    DEFAULT_TIMEZONE,
    DailyCalendar,
    check_timezone,
)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NamedItem(dg.Model, dg.Resolvable):
    """A saved report, chart or cohort: its id in the tool, and the name its asset gets."""

    id: str = Field(description="The id in Pendo or Amplitude.")
    name: str = Field(description="Lower-case letters, digits and underscores; names the asset.")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("id must not be empty")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"name {value!r} must be lower-case letters, digits and underscores")
        return value


def unique_names(items: list[NamedItem], what: str) -> list[NamedItem]:
    seen: set[str] = set()
    for item in items:
        if item.name in seen:
            raise ValueError(f"{what}: the name {item.name!r} is used twice")
        seen.add(item.name)
    return items


def finite_positive(value: float, what: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a finite number above 0, got {value!r}")
    return value


class CalendarFields(dg.Model):
    """The subscription's days; every component of one deployment must use the same."""

    timezone: str = Field(
        default=DEFAULT_TIMEZONE,
        description="The Pendo subscription's IANA time zone: daily partitions start at its "
        "local midnight (set the Amplitude project to the same zone).",
    )
    start_date: str = Field(
        default=DEFAULT_START_DATE.isoformat(), description="The first daily partition, YYYY-MM-DD."
    )

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("start_date")
    @classmethod
    def _start_date(cls, value: str) -> str:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"start_date {value!r} is not a date YYYY-MM-DD") from None
        return value

    def calendar(self) -> DailyCalendar:
        return DailyCalendar(self.timezone, date.fromisoformat(self.start_date))


class StepRetryFields(dg.Model):
    """How often a step that calls an API runs again after failing (Dagster's step
    ``RetryPolicy``, on top of each request's own retries)."""

    step_retries: int = Field(
        default=2, description="Runs of a failed API-bound step after the first (0-10); 0: none."
    )
    step_retry_delay_seconds: float = Field(
        default=60,
        description="Seconds before the first step retry; each next one waits twice as long.",
    )

    # Validators, not Field bounds: the YAML's templates reach the schema as text first.
    @field_validator("step_retries")
    @classmethod
    def _step_retries(cls, value: int) -> int:
        if not 0 <= value <= 10:
            raise ValueError(f"step_retries must be 0 to 10, not {value}")
        return value

    @field_validator("step_retry_delay_seconds")
    @classmethod
    def _step_retry_delay(cls, value: float) -> float:
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"step_retry_delay_seconds must be a number >= 0, not {value}")
        return value

    def retry_policy(self) -> dg.RetryPolicy | None:
        return api_retry_policy(self.step_retries, self.step_retry_delay_seconds)


class NamingFields(dg.Model):
    """Where the assets go: key prefix, group and warehouse schema."""

    key_prefix: list[str] = Field(
        default_factory=list, description="Prepended to every asset key, e.g. [acme]."
    )
    group_name: str | None = Field(default=None, description="Asset group (default: the system).")
    table_schema: str | None = Field(
        default=None, description="Warehouse schema of the tables (default: the system)."
    )

    def naming(self, system: str) -> AssetNaming:
        return AssetNaming.of(system, self.key_prefix, self.group_name, self.table_schema)


def check_cron(value: str | None, what: str) -> str | None:
    """A cron expression Dagster's schedules accept, or None (no schedule)."""
    if value is not None:
        try:  # Dagster's own parser: what it accepts here, the schedule accepts
            dg.ScheduleDefinition(name="check", job_name="check", cron_schedule=value)
        except dg.DagsterInvalidDefinitionError:
            raise ValueError(
                f"{what} {value!r} is not a cron expression of 5 fields, e.g. '0 4 * * *'; "
                "use null for no schedule"
            ) from None
    return value


def env_var_name(value: str) -> str:
    """``value`` if it is an environment variable's name; the error never echoes it (it may
    be a key pasted into the wrong field)."""
    if not _ENV_VAR.match(value):
        raise ValueError(
            "must be the name of an environment variable (letters, digits, underscores, "
            "e.g. PENDO_INTEGRATION_KEY), not the key itself"
        )
    return value


def http_url(value: str | None) -> str | None:
    """An http(s) URL without its trailing slash; blank means none (``{{ env.X }}`` unset)."""
    if value is None or not value.strip():
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


class LocatedErrors:
    """Mixin for this package's components: every validation error names the YAML file and
    line, and every field's description reaches ``dg docs``."""

    @classmethod
    def model(cls) -> type[BaseModel]:
        # Dagster's derived schema (shown by `dg docs` and editors) drops the description
        # of every field that has a default; copy them over once.
        derived = super().model()
        missing = {
            name: info.description
            for name, info in cls.model_fields.items()
            if info.description and name in derived.model_fields
            if derived.model_fields[name].description is None
        }
        if missing:
            for name, description in missing.items():
                derived.model_fields[name].description = description
            derived.model_rebuild(force=True)
        return derived

    @classmethod
    def resolve_from_model(cls, context: dg.ResolutionContext, model: BaseModel) -> Self:
        # The derived model only checks types; the field validators run when the component
        # is built, so point their errors at the YAML line as Dagster does for the types.
        try:
            return super().resolve_from_model(context, model)
        except ValidationError as exc:
            raise located(exc, context) from None


def located(exc: ValidationError, context: dg.ResolutionContext) -> ValidationError:
    """``exc`` with each error's location given as its YAML path and ``file:line``, the form
    Dagster uses for the errors of a component's derived model; the input values stay out
    of the message."""
    tree = context.source_position_tree
    if tree is None:
        return exc
    line_errors = []
    for error in exc.errors():
        path = [*context.path, *error["loc"]]
        position, _ = tree.lookup_closest_and_path(path, None)
        where = ".".join(str(part) for part in path) or "attributes"
        line_errors.append({**error, "loc": (f"{where} at {position}",)})
    return ValidationError.from_exception_data(
        exc.title,
        line_errors,  # type: ignore[arg-type]
        input_type="json",
        hide_input=True,
    )
