"""The Dagster resource that holds Pendo's key and settings and hands out clients.

The key is an ``EnvVar``: Dagster resolves it at run time, never writes it into run config,
and the client redacts it from every log line and error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from analytics_assets.api_session import api_session
from analytics_assets.pendo.client import PendoClient


class PendoResource(dg.ConfigurableResource):
    """Pendo's REST API v1. The sync and the sensors use a read-only integration key."""

    integration_key: str = Field(description="Integration key; set it with EnvVar.")
    region: str = Field(default="us", description="us, us1, eu, jpn or au.")
    base_url: str | None = Field(
        default=None, description="Explicit base URL (a proxy or the local sandbox)."
    )
    rate_per_second: float = Field(
        default=5.0, description="Requests per second before Pendo answers 429 (adapts down)."
    )
    connect_timeout: float = 10.0
    read_timeout: float = Field(default=300.0, description="Aggregations may run 5 minutes.")
    max_attempts: int = 6
    max_retry_time: float = Field(default=300.0, description="Cap on retrying one request.")
    bulk_path: str = Field(
        default="value", description="Bulk write path: 'value' (array body) or 'value/bulk'."
    )

    def get_client(
        self,
        *,
        read_timeout: float | None = None,
        max_attempts: int | None = None,
        max_retry_time: float | None = None,
    ) -> PendoClient:
        """A client with this resource's settings; the keyword arguments override its
        timeout and retry settings (the sensors keep each tick short)."""
        return PendoClient(
            self.integration_key,
            region=self.region,
            base_url=self.base_url or None,
            rate=self.rate_per_second,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout if read_timeout is None else read_timeout,
            max_attempts=self.max_attempts if max_attempts is None else max_attempts,
            max_retry_time=self.max_retry_time if max_retry_time is None else max_retry_time,
            bulk_path=self.bulk_path,
        )

    @contextmanager
    def session(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext | None = None
    ) -> Iterator[PendoClient]:
        """A client for one step; logs the step's one-line API summary when it ends."""
        client = self.get_client()
        try:
            with api_session(client, context, "pendo"):
                yield client
        finally:
            client.close()
