"""The YAML fields that say how to reach one Pendo subscription, shared by every component
that talks to Pendo (``PendoSync`` reads, ``CrmToPendo`` writes)."""

from __future__ import annotations

from typing import Any, Literal

import dagster as dg
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from analytics_assets.component_fields import env_var_name, finite_positive, http_url
from analytics_assets.http.errors import ConfigurationError
from analytics_assets.pendo.client import resolve_region
from analytics_assets.pendo.resource import PendoResource, rate_setting


class PendoConnectionFields(dg.Model):
    """Region, base URL, the key's variable name, the request rate and its ledger."""

    # A value that fails validation may be a key pasted into the wrong field: keep it
    # out of the error message.
    model_config = ConfigDict(hide_input_in_errors=True)

    region: str = Field(default="us", description="us, us1, eu, jpn or au.")
    base_url: str | None = Field(
        default=None, description="Explicit API base URL (a proxy, or the local sandbox)."
    )
    rate_per_second: float | Literal["auto"] = Field(
        default=5.0,
        description="Most requests per second to send (the client finds and holds Pendo's "
        "own rate below it), or 'auto' to find the rate with no number given.",
    )
    budget_ledger: str | None = Field(
        default=None,
        description="Where the Pendo rate learned from 429s is shared by every step and run "
        "(default: Amplitude's budget ledger, data/amplitude-budgets.sqlite under the "
        "working directory; a postgresql:// URL shares it across hosts); 'memory' keeps it "
        "per process.",
    )
    read_timeout: float = Field(default=300.0, description="Seconds; aggregations may run 5 min.")

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        try:
            return resolve_region("", value)[0]  # the client's one list of regions
        except ConfigurationError as exc:
            raise ValueError(exc.summary) from None

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return http_url(value)

    @field_validator("rate_per_second", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> float | Literal["auto"]:
        # Rendered templates arrive as text ("5", "auto"): one check for both forms.
        return rate_setting(value)

    @field_validator("read_timeout")
    @classmethod
    def _positive(cls, value: float, info: ValidationInfo) -> float:
        return finite_positive(value, info.field_name or "value")

    @field_validator("budget_ledger")
    @classmethod
    def _ledger(cls, value: str | None) -> str | None:
        # Blank means the default, so YAML can pass "{{ env('X', '') }}" through.
        return value if value and value.strip() else None

    def pendo_resource(self, key_env_var: str) -> PendoResource:
        """A resource whose key stays an ``EnvVar`` until run time."""
        return PendoResource(
            integration_key=dg.EnvVar(env_var_name(key_env_var)),
            region=self.region,
            base_url=self.base_url,
            rate_per_second=self.rate_per_second,
            budget_ledger=self.budget_ledger,
            read_timeout=self.read_timeout,
        )
