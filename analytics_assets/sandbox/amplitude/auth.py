"""Authentication of the Amplitude APIs (contract §0).

* Basic-auth APIs (Dashboard REST, Export, Cohorts, Taxonomy): ``api_key:secret_key``.
  An unknown key, including the other region's key, is 403 ``Invalid API Key``; the
  right key with a wrong or missing secret is 403 ``Invalid API/Secret Key combination``.
* Ingestion: ``api_key`` in the JSON body or form; a wrong key is 400 ``Invalid API key``.

Reusable by the rest of the half:

* ``check_basic(tenant, request) -> Response | None`` (None = authorised);
* ``@basic_auth(tenant)`` decorator for ``async def handler(request)``;
* ``ingestion_key_ok(tenant, api_key) -> bool``;
* ``check_profile_key(tenant, request) -> Response | None`` for ``Authorization: Api-Key``.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from analytics_assets.sandbox.amplitude.budget import error_body

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant

Handler = Callable[[Request], Awaitable[Response]]

INVALID_KEY = "Invalid API Key"
INVALID_COMBINATION = "Invalid API/Secret Key combination"


def forbidden(details: str) -> JSONResponse:
    return JSONResponse(error_body(403, details), status_code=403)


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """The (user, password) of a Basic ``Authorization`` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (user, "")


def check_basic(tenant: AmplitudeTenant, request: Request) -> Response | None:
    """None when the request carries this project's key pair, else the 403 to answer."""
    creds = basic_credentials(request)
    if creds is None or creds[0] != tenant.keys.api_key:
        # A key of the other region is unknown here: the usual symptom of a wrong host.
        return forbidden(INVALID_KEY)
    if creds[1] != tenant.keys.secret_key:
        return forbidden(INVALID_COMBINATION)
    return None


def basic_auth(tenant: AmplitudeTenant) -> Callable[[Handler], Handler]:
    """Decorator: answer 403 before the handler runs when the key pair is wrong."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            refused = check_basic(tenant, request)
            if refused is not None:
                return refused
            return await handler(request)

        return endpoint

    return wrap


def ingestion_key_ok(tenant: AmplitudeTenant, api_key: object) -> bool:
    """Ingestion authenticates by the project's API key alone (no secret)."""
    return isinstance(api_key, str) and api_key == tenant.keys.api_key


def check_profile_key(tenant: AmplitudeTenant, request: Request) -> Response | None:
    """User Profile API: ``Authorization: Api-Key <secret_key>``; 401 text otherwise."""
    header = request.headers.get("authorization")
    if not header:
        return PlainTextResponse("Missing Api-Key in Authorization header", status_code=401)
    scheme, _, key = header.partition(" ")
    if scheme != "Api-Key" or key.strip() != tenant.keys.secret_key:
        return PlainTextResponse("Invalid Api-Key", status_code=401)
    return None
