"""Small helpers the cohort, taxonomy, profile and user-lookup routes share."""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from analytics_assets.sandbox.amplitude.budget import error_body
from analytics_assets.sandbox.limits import Decision

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant

# A request carrying this header is held (sleeping, inside its concurrency slot) for
# that many seconds before it is answered. Real clients never send it; tests use it to
# keep N requests in flight and show that request N+1 is refused.
HOLD_HEADER = "x-sandbox-hold-seconds"
MAX_HOLD_SECONDS = 10.0


def window(tenant: AmplitudeTenant, seconds: float) -> float:
    """A real window (hour, 10 minutes, minute) shortened by the configured scale."""
    return seconds * tenant.limits.window_scale


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON, as Amplitude sends it."""
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def envelope_response(status: int, details: str, headers: dict[str, str] | None = None) -> Response:
    """The Basic-auth APIs' error envelope; 400s are ``type: invalid`` as in the live sample."""
    kind = "invalid" if status == 400 else "unspecified"
    return json_response(error_body(status, details, kind), status, headers)


def retry_headers(tenant: AmplitudeTenant, decision: Decision) -> dict[str, str]:
    """``Retry-After`` only when configured: the real services never send it (contract §3)."""
    if not tenant.limits.retry_after_header:
        return {}
    return {"Retry-After": str(max(1, math.ceil(decision.retry_after)))}


async def hold(request: Request) -> None:
    """Sleep for the sandbox hold header, if any (see ``HOLD_HEADER``)."""
    raw = request.headers.get(HOLD_HEADER)
    if not raw:
        return
    try:
        seconds = float(raw)
    except ValueError:
        return
    if seconds > 0:
        await asyncio.sleep(min(seconds, MAX_HOLD_SECONDS))


def truthy(value: str | None, default: bool = False) -> bool:
    """Amplitude's boolean parameters: ``true``/``1``/``yes`` (any case)."""
    if value is None or value == "":
        return default
    return value.strip().lower() in ("true", "1", "yes", "on")
