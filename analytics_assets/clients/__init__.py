"""Plain-Python API clients (no Dagster here): the shared transport, its errors and limits."""

from .errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServerError,
    TransportError,
    error_class_for_status,
)
from .http import (
    Redactor,
    Secret,
    StatsSnapshot,
    Transport,
    TransportConfig,
    TransportStats,
    parse_retry_after,
    redact,
    redact_url,
    reveal,
    server_message,
)
from .limits import (
    AdaptiveTokenBucket,
    CompositeLimiter,
    CostBudget,
    Limiter,
    amplitude_budgets,
    amplitude_days,
    amplitude_query_cost,
    taxonomy_cost,
)
from .shared_budget import BudgetLedger, SharedBudget

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
    "SharedBudget",
    "StatsSnapshot",
    "Transport",
    "TransportConfig",
    "TransportError",
    "TransportStats",
    "amplitude_budgets",
    "amplitude_days",
    "amplitude_query_cost",
    "error_class_for_status",
    "parse_retry_after",
    "redact",
    "redact_url",
    "reveal",
    "server_message",
    "taxonomy_cost",
]

from .amplitude import (  # noqa: E402
    AmplitudeClient,
    AmplitudeStats,
    AmplitudeTimeoutError,
    ExportResult,
    ExportTooLargeError,
    IngestResult,
)

__all__ += [
    "AmplitudeClient",
    "AmplitudeStats",
    "AmplitudeTimeoutError",
    "ExportResult",
    "ExportTooLargeError",
    "IngestResult",
]

# Pendo client and pipeline builder.
from .pendo import (  # noqa: E402
    PENDO_HOSTS,
    AggregationLimitError,
    AggregationStreamError,
    BatchOutcome,
    FieldSchema,
    MetadataRecord,
    PendoClient,
    TokenInfo,
    field_type_of,
    is_aggregation_limit_error,
    resolve_region,
    split_windows,
)
from .pendo_pipeline import Agg, AggSpec, Expr, Pipeline, Source, TimeSeries, quote  # noqa: E402

__all__ += [
    "PENDO_HOSTS",
    "Agg",
    "AggSpec",
    "AggregationLimitError",
    "AggregationStreamError",
    "BatchOutcome",
    "Expr",
    "FieldSchema",
    "MetadataRecord",
    "PendoClient",
    "Pipeline",
    "Source",
    "TimeSeries",
    "TokenInfo",
    "field_type_of",
    "is_aggregation_limit_error",
    "quote",
    "resolve_region",
    "split_windows",
]
