"""The YAML fields that say how to reach one Pendo subscription, shared by every component
that talks to Pendo (``PendoSync`` reads, ``CrmToPendo`` writes)."""

from __future__ import annotations

import dagster as dg
from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from analytics_assets.component_fields import env_var_name, finite_positive, http_url
from analytics_assets.http.errors import ConfigurationError
from analytics_assets.pendo.client import resolve_region
from analytics_assets.pendo.resource import PendoResource


class PendoConnectionFields(dg.Model):
    """Region, base URL, the key's variable name and the request rate."""

    # A value that fails validation may be a key pasted into the wrong field: keep it
    # out of the error message.
    model_config = ConfigDict(hide_input_in_errors=True)

    region: str = Field(default="us", description="us, us1, eu, jpn or au.")
    base_url: str | None = Field(
        default=None, description="Explicit API base URL (a proxy, or the local sandbox)."
    )
    rate_per_second: float = Field(
        default=5.0, description="Requests per second before Pendo answers 429 (adapts down)."
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

    @field_validator("rate_per_second", "read_timeout")
    @classmethod
    def _positive(cls, value: float, info: ValidationInfo) -> float:
        return finite_positive(value, info.field_name or "value")

    def pendo_resource(self, key_env_var: str) -> PendoResource:
        """A resource whose key stays an ``EnvVar`` until run time."""
        return PendoResource(
            integration_key=dg.EnvVar(env_var_name(key_env_var)),
            region=self.region,
            base_url=self.base_url,
            rate_per_second=self.rate_per_second,
            read_timeout=self.read_timeout,
        )
