"""Typed errors raised by the API clients.

Every error says what happened (service, method, URL, status, the server's own message) and
what to do next. The transport redacts secrets *before* it builds an error, so the fields stored
here are already safe to log; nothing in this module ever sees a raw key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

__all__ = [
    "ApiError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "DamagedResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ServerError",
    "StreamInterruptedError",
    "TransportError",
    "error_class_for_status",
]

#: The longest server message kept on an error (and shown in its text).
MAX_EXCERPT = 500


class ApiError(Exception):
    """Base class of every client error.

    Attributes: ``status`` (HTTP status, ``None`` when no response arrived), ``method``, ``url``
    (redacted, secret-looking query values removed), ``service`` (``"pendo"``/``"amplitude"``),
    ``body_excerpt`` (at most 500 characters of the server's message), ``attempts`` (how many
    times the request was sent) and ``hint`` (the next step, also part of ``str(err)``).
    """

    #: Next step shown when neither the service nor the caller gives a better one.
    default_hint: ClassVar[str] = (
        "Read the server's message above; retrying the same request will not help."
    )
    #: Service-specific next steps, keyed by ``service``.
    service_hints: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        summary: str,
        *,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        service: str | None = None,
        body_excerpt: str | None = None,
        hint: str | None = None,
        attempts: int | None = None,
    ) -> None:
        self.summary = summary
        self.status = status
        self.method = method
        self.url = url
        self.service = service
        self.body_excerpt = _excerpt(body_excerpt)
        self.attempts = attempts
        self.hint = hint or self.service_hints.get(service or "", self.default_hint)
        super().__init__(self._format())

    def _format(self) -> str:
        where = " ".join(
            p for p in (f"[{self.service}]" if self.service else None, self.method, self.url) if p
        )
        text = f"{where}: {self.summary}" if where else self.summary
        # Some summaries already say how many attempts were made; say it once.
        if self.attempts and self.attempts > 1 and f"{self.attempts} attempts" not in text:
            text += f" (after {self.attempts} attempts)"
        text += "."
        if self.body_excerpt:
            text += f' The server said: "{self.body_excerpt}".'
        return f"{text} {self.hint}"

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in ("status", "service", "method", "url")
            if getattr(self, name) is not None
        )
        return f"{type(self).__name__}({fields})"

    # Exceptions with keyword-only constructor arguments do not unpickle by default; Dagster
    # and multiprocessing may need to move them between processes.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(cls: type[ApiError], args: tuple[Any, ...], state: dict[str, Any]) -> ApiError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


def _excerpt(text: str | None) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= MAX_EXCERPT else text[: MAX_EXCERPT - 1] + "…"


class AuthenticationError(ApiError):
    """401, or 403 on a read: the key is missing, wrong, or for another region."""

    default_hint = (
        "Check the credentials and that they belong to this region's host; "
        "a key from another region is answered as a bad key."
    )
    service_hints = {
        "pendo": (
            "Check the integration key and that it belongs to this region (us, us1, eu, jpn, au); "
            "Pendo answers a wrong-region key as a bad key (403, empty body)."
        ),
        "amplitude": (
            "Check the API key and secret key and that they belong to this region (US or EU host); "
            "Amplitude answers an unknown or wrong-region key with 403 'Invalid API Key' and a "
            "wrong secret with 'Invalid API/Secret Key combination'."
        ),
    }


class PermissionDeniedError(ApiError):
    """403 when the key is valid but lacks the level (e.g. a read-only Pendo key writing)."""

    default_hint = (
        "The key is valid but may not do this; use a key with the needed access "
        "(for Pendo metadata writes: an integration key with 'Allow Write Access')."
    )
    service_hints = {
        "amplitude": (
            "The key may not do this (plan, permissions, or a firewall/region block); "
            "check the project's plan and the key's permissions."
        ),
    }


class NotFoundError(ApiError):
    """404: unknown id or path, an object this key cannot see, or (Amplitude) no data."""

    default_hint = (
        "Check the id and the path; an object the key cannot see is also answered with 404."
    )
    service_hints = {
        "amplitude": (
            "Check the id and the path; for export and cohort downloads a 404 means there is "
            "no data in that window yet (export data arrives about 2 hours after ingestion)."
        ),
        "pendo": (
            "Check the id (URL-encoded) and the region; Pendo answers an id this key cannot see "
            "with 404 too."
        ),
    }


class BadRequestError(ApiError):
    """400/413/414/422: the server refused the request as sent; its message says why."""

    default_hint = (
        "Fix the request or narrow the range; sending it again unchanged will fail again."
    )


class RateLimitedError(ApiError):
    """429 after every retry; ``retry_after`` holds the server's advice in seconds, if any."""

    default_hint = "The API is throttling; lower the rate, or let the run retry later."

    def __init__(self, summary: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(summary, **kwargs)

    def _format(self) -> str:
        text = super()._format()
        if self.retry_after is not None:
            text += f" The server asked to wait {self.retry_after:g} s."
        return text


class ServerError(ApiError):
    """5xx (or 408) after every retry."""

    default_hint = (
        "The service failed; retry later. If it keeps failing on a big request, "
        "narrow the range or send smaller batches."
    )


class TransportError(ApiError):
    """No complete answer: timeout, refused or dropped connection, truncated body."""

    default_hint = (
        "Check network access to the host; for slow queries raise the read timeout "
        "or narrow the range."
    )


class StreamInterruptedError(TransportError):
    """A streamed body broke while being read (``Transport.consume``), for good.

    ``items_yielded`` is how many items the reader had handed out before the break: 0 means
    every attempt broke before the first one and the retries ran out (``reason`` says why
    they stopped); more than 0 means the request was not resent, because the caller would
    see those items twice. ``detail`` names the fault (``ReadError: …``), redacted.
    """

    def __init__(
        self,
        summary: str,
        *,
        items_yielded: int = 0,
        detail: str = "",
        reason: str = "",
        **kwargs: Any,
    ) -> None:
        self.items_yielded = items_yielded
        self.detail = detail
        self.reason = reason
        super().__init__(summary, **kwargs)


class DamagedResponseError(StreamInterruptedError):
    """Every answer, until the retries ran out, arrived damaged: HTML where JSON was
    expected, an empty body, JSON cut short (its ``Content-Length`` matching the cut), or a
    body shorter than its ``Content-Length``. ``detail`` says what the last one was."""

    default_hint = (
        "The answers were damaged on the way, by the network or a proxy between this host "
        "and the API; run the job again, and if it keeps happening check the proxies."
    )


class ConfigurationError(ApiError):
    """The client is configured wrongly (missing key, bad URL, impossible limits)."""

    default_hint = "Fix the client configuration described above."


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    408: ServerError,
    413: BadRequestError,
    414: BadRequestError,
    422: BadRequestError,
    429: RateLimitedError,
}

#: Status-specific next steps, more precise than the class's own.
STATUS_HINTS: dict[int, str] = {
    408: (
        "The server gave up waiting on the request (Pendo: a metadata write ran over 5 minutes); "
        "send smaller batches or a narrower range."
    ),
    413: "The payload is too large; split it into smaller batches.",
    414: "The URL is too long; send fewer ids or a shorter filter per request.",
}


def error_class_for_status(status: int) -> type[ApiError]:
    """The error class for an HTTP status (403 defaults to authentication; see the transport)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return ApiError
