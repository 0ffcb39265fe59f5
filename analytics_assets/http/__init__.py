"""The one HTTP transport both API clients share (no Dagster here): limiter hook, retries
with backoff and jitter, ``Retry-After``, timeouts, typed errors, redaction and stats."""

from analytics_assets.http.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    StreamInterruptedError,
    TransportError,
    error_class_for_status,
)
from analytics_assets.http.limits import AdaptiveTokenBucket, CompositeLimiter, CostBudget, Limiter
from analytics_assets.http.shared_budget import BudgetLedger, SharedBudget
from analytics_assets.http.transport import (
    Redactor,
    Secret,
    StatsSnapshot,
    Transport,
    TransportConfig,
    TransportStats,
    is_transport_fault,
    parse_retry_after,
    redact,
    redact_url,
    reveal,
    server_message,
)

__all__ = [
    "AdaptiveTokenBucket",
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetLedger",
    "CompositeLimiter",
    "ConfigurationError",
    "CostBudget",
    "Limiter",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "Redactor",
    "Secret",
    "ServerError",
    "StreamInterruptedError",
    "SharedBudget",
    "StatsSnapshot",
    "Transport",
    "TransportConfig",
    "TransportError",
    "TransportStats",
    "error_class_for_status",
    "is_transport_fault",
    "parse_retry_after",
    "redact",
    "redact_url",
    "reveal",
    "server_message",
]
