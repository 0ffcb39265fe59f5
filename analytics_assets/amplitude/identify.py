"""Amplitude's Identify and Group Identify APIs: user and group properties, in capped requests.

Both endpoints take a form-encoded ``api_key`` and ``identification`` (a JSON array) and
answer the text ``success`` (contract §1.3, §1.4). Limits (Amplitude's pages "Identify API"
and "Group Identify API"): at most 1,024 group identifies and 1,024 group properties per
request and 1 MB per request; identify follows the HTTP V2 API's limits (under 1 MB, and
per user 30 updates a second and 1,800 property updates an hour, which one update per user
per run never approaches). A request here holds at most 1,000 records of one kind, at most
1,024 properties in all (the conservative reading of "per request") and under 1 MB.

Every record sets its properties with ``$set`` (applying it twice changes nothing) and
carries a stable ``insert_id``, so a request resent after a dropped connection or a 5xx
is deduplicated where Amplitude honours it. Requests go through the shared transport's one
retry loop; a 200 whose body is not ``success`` (a proxy's page, a cut body) is retried
there too, so a batch is confirmed only by Amplitude's own answer.

No Dagster here; nothing reads the environment.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx
import orjson

from analytics_assets.amplitude.client import HOSTS
from analytics_assets.amplitude.ingest import _MinimumPause, bad_key_error
from analytics_assets.http.errors import BadRequestError, ConfigurationError
from analytics_assets.http.transport import DamagedBodyError, Secret, Transport, TransportConfig

__all__ = [
    "MAX_BYTES",
    "MAX_PROPERTIES",
    "MAX_RECORDS",
    "Identification",
    "IdentifyClient",
    "identify_insert_id",
    "plan_requests",
]

Kind = Literal["group", "user"]
MAX_RECORDS = 1000
MAX_PROPERTIES = 1024
MAX_BYTES = 1_000_000 - 1
PATHS: Mapping[str, str] = {"group": "/groupidentify", "user": "/identify"}
_SEPARATOR = len(quote_plus(","))


def identify_insert_id(kind: str, target: str, properties: Mapping[str, Any], after: str) -> str:
    """A stable id for one update: the same update of the same target, resent, has the same
    id; ``after`` (the id of the target's last confirmed update) makes a later update to the
    same values (A → B → A) a new one rather than a repeat Amplitude would drop."""
    body = orjson.dumps(
        [kind, target, dict(properties), after],
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )
    return hashlib.sha256(body).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Identification:
    """One record: ``$set`` ``properties`` on a group (``group_type`` = ``target``) or on the
    user ``target``."""

    kind: Kind
    target: str
    properties: dict[str, Any]
    insert_id: str
    group_type: str = ""

    def wire(self) -> dict[str, Any]:
        if self.kind == "group":
            return {
                "group_type": self.group_type,
                "group_value": self.target,
                "group_properties": {"$set": self.properties},
                "insert_id": self.insert_id,
            }
        return {
            "user_id": self.target,
            "user_properties": {"$set": self.properties},
            "insert_id": self.insert_id,
        }

    def encoded_size(self) -> int:
        """Bytes this record adds to the form body (URL-encoded JSON)."""
        return len(quote_plus(orjson.dumps(self.wire()).decode()))


def plan_requests(
    records: Sequence[Identification], max_records: int = MAX_RECORDS
) -> list[list[Identification]]:
    """Split ``records`` into requests of one kind each, within every per-request limit,
    keeping their order. A record too large for a request alone raises ``ValueError``."""
    if not 1 <= max_records <= MAX_RECORDS:
        raise ValueError(f"max_records must be 1 to {MAX_RECORDS}, got {max_records}")
    overhead = len("api_key=&identification=") + 2 * len(quote_plus("[")) + 64
    requests: list[list[Identification]] = []
    current: list[Identification] = []
    size = properties = 0
    for record in records:
        length = record.encoded_size() + _SEPARATOR
        count = len(record.properties)
        if length + overhead > MAX_BYTES or count > MAX_PROPERTIES:
            raise ValueError(
                f"the {record.kind} record {record.target!r} alone exceeds Amplitude's "
                f"per-request limits ({length} bytes, {count} properties)"
            )
        full = (
            len(current) >= max_records
            or size + length + overhead > MAX_BYTES
            or properties + count > MAX_PROPERTIES
        )
        if current and (full or current[0].kind != record.kind):
            requests.append(current)
            current, size, properties = [], 0, 0
        current.append(record)
        size += length
        properties += count
    if current:
        requests.append(current)
    return requests


class IdentifyClient:
    """Sends identify and group identify requests for one Amplitude project.

    ``region`` picks the ingestion host (``us``: api2.amplitude.com, ``eu``:
    api.eu.amplitude.com); ``ingestion_url`` overrides it (a proxy, the sandbox).
    ``throttle_pause_factor`` scales the documented 15 s pause after a 429 (tests);
    ``sleep``, ``clock`` and ``http_transport`` are injectable.
    """

    def __init__(
        self,
        api_key: str,
        *,
        region: str = "us",
        ingestion_url: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 6,
        max_retry_time: float = 300.0,
        throttle_pause_factor: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        http_transport: httpx.BaseTransport | None = None,
    ) -> None:
        region = (region or "").strip().lower()
        if region not in HOSTS:
            raise ConfigurationError(
                f"unknown Amplitude region {region!r}; use 'us' or 'eu' (or pass ingestion_url)",
                service="amplitude",
            )
        if not api_key:
            raise ConfigurationError(
                "the Amplitude API key is required; set it from an environment variable",
                service="amplitude",
            )
        self._key = Secret(api_key)
        base = (ingestion_url or HOSTS[region]["ingestion"] or "").rstrip("/")
        self._transport = Transport(
            TransportConfig(
                base_url=base,
                service="amplitude",
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
                max_retry_time=max_retry_time,
                secrets=(self._key,),
            ),
            sleep=sleep,
            clock=clock,
            http_transport=http_transport,
        )
        # "429 ... pause 15 s" (Identify API page): the transport retries the 429 and this
        # limiter holds the pause as a minimum, as for the client's other identify calls.
        self._pause = _MinimumPause(15.0 * throttle_pause_factor, clock, sleep)

    @property
    def stats(self) -> Any:
        return self._transport.stats

    def send(self, records: Sequence[Identification]) -> None:
        """One request of records of one kind (see :func:`plan_requests`); returns once
        Amplitude answered ``success``, raises an ``ApiError`` otherwise."""
        if not records:
            return
        kinds = {r.kind for r in records}
        if len(kinds) != 1:
            raise ValueError("one request holds records of one kind")
        path = PATHS[kinds.pop()]
        form = {
            "api_key": self._key.get(),
            "identification": orjson.dumps([r.wire() for r in records]).decode(),
        }

        def confirmed(response: httpx.Response) -> Iterator[None]:
            body = response.read().strip()
            if body != b"success":
                # Not Amplitude's word (a proxy's page, an empty or cut body): resent in the
                # transport's loop, then reported; never taken as applied.
                shown = body[:60].decode("utf-8", "replace")
                raise DamagedBodyError(f"expected 'success', got {shown!r}")
            yield None

        try:
            answers = self._transport.consume(
                "POST",
                path,
                confirmed,
                data=form,
                # Safe to resend: $set is idempotent and the insert_id deduplicates.
                idempotent=True,
                limiter=self._pause,
            )
            with contextlib.closing(answers):
                next(answers)
        except BadRequestError as exc:
            raise bad_key_error(exc, path) from None

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> IdentifyClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"IdentifyClient(base_url={self._transport.config.base_url!r})"
