"""Amplitude ingestion: HTTP V2 / batch events, identify and group identify, in capped batches.

Ingestion answers with a body that says *which* events failed and why (contract §1), so this
module reads 400/413/429 itself instead of letting the transport retry them blindly:

* 400: the listed events are invalid for good; report them, resend the rest at once;
* 413: the payload was too large; halve the batch size for the rest of the call;
* 429: pause the throttled users/devices (30 s for HTTP V2, 15 s for batch, times an
  injectable factor), resend the other events at once and the throttled ones after the pause;
  events over a daily quota are reported, not resent (Amplitude drops them anyway);
* 5xx / dropped connections: the transport retries (see ``send``'s comment on why it is safe).

``/identify`` and ``/groupidentify`` name no event in their 429, so they add no loop of their
own: the transport retries the 429 (not processed, so safe even for a cumulative ``$add``),
honouring ``Retry-After``, and a limiter holds the documented 15 s pause as a minimum.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import orjson

from analytics_assets.http.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    RateLimitedError,
)
from analytics_assets.http.transport import Secret, Transport

__all__ = [
    "BATCH_MAX_BYTES",
    "HTTPAPI_MAX_BYTES",
    "IDENTIFY_MAX",
    "MAX_EVENTS",
    "IngestResult",
    "Ingestor",
    "insert_id_for",
]

logger = logging.getLogger("analytics_assets.http")

# "< 1 MB" (HTTP V2) and "up to 20 MB" (batch): decimal megabytes, read conservatively.
HTTPAPI_MAX_BYTES = 1_000_000 - 1
BATCH_MAX_BYTES = 20_000_000
MAX_EVENTS = 2000
IDENTIFY_MAX = 1024
IDENTIFY_MAX_BYTES = 1_000_000 - 1
_BAD_KEY_HINT = (
    "Check the project API key and that it belongs to this region's ingestion host "
    "(us: api2.amplitude.com, eu: api.eu.amplitude.com)."
)
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def bad_key_error(exc: BadRequestError, path: str) -> Exception:
    """What an ingestion 400 means: a bad API key when Amplitude says ``invalid_api_key``
    (the ingestion APIs answer a wrong key with 400, not 403), else the 400 itself."""
    if "invalid_api_key" not in (exc.body_excerpt or "").lower():
        return exc
    return AuthenticationError(
        f"HTTP 400 invalid_api_key on {path}",
        status=400,
        method="POST",
        url=path,
        service="amplitude",
        hint=_BAD_KEY_HINT,
    )


# Identify ops whose repetition changes the result; a batch using them is not resent after a
# response that may have been processed (see ``_identify_idempotent``).
_CUMULATIVE_OPS = frozenset({"$add", "$append", "$prepend", "$preInsert", "$postInsert"})


@dataclass(frozen=True)
class IngestResult:
    """Outcome of a ``send_events`` call.

    ``ingested``: events the server accepted; ``failed_events``: ``(index in the input,
    reason)`` for events refused for good (invalid, silenced, over a daily quota, still
    throttled after every retry, too large alone), in input order; ``throttled_retries``:
    how many times an event was resent after a 429 pause.
    """

    ingested: int
    failed_events: list[tuple[int, str]]
    throttled_retries: int


class IngestionError(ApiError):
    """Ingestion stopped part-way; ``partial`` holds what was done before."""

    partial: IngestResult | None = None


def insert_id_for(event: dict[str, Any]) -> str:
    """A deterministic ``insert_id``: a hash of the event's content (keys sorted).

    The same event sent twice (a retry, a re-run of the same partition) gets the same id,
    so Amplitude keeps one copy (it ignores a repeat of device_id + insert_id within 7
    days). Two genuinely distinct events must therefore differ in content: give each a
    ``time``.
    """
    encoded = orjson.dumps(event, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(encoded).hexdigest()[:32]


def _keys(event: dict[str, Any]) -> list[tuple[str, str]]:
    keys = []
    if event.get("user_id") not in (None, ""):
        keys.append(("user", str(event["user_id"])))
    if event.get("device_id") not in (None, ""):
        keys.append(("device", str(event["device_id"])))
    return keys


class Ingestor:
    """Sends events for one client; not shared between threads (one per call)."""

    def __init__(
        self,
        transport: Transport,
        api_key: Secret,
        *,
        batch_api: bool = False,
        throttle_pause_factor: float = 1.0,
        max_throttle_retries: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._t = transport
        self._key = api_key
        self._path = "/batch" if batch_api else "/2/httpapi"
        self._max_bytes = BATCH_MAX_BYTES if batch_api else HTTPAPI_MAX_BYTES
        # Contract §1: pause a throttled user/device 30 s (HTTP V2); batch docs suggest 15 s.
        self._pause = (15.0 if batch_api else 30.0) * throttle_pause_factor
        # /identify and /groupidentify: "429 as HTTP V2 (pause 15 s)" (contract §1.3); the
        # transport retries the 429 and this limiter keeps the pause as a minimum.
        self._identify_limiter = _MinimumPause(15.0 * throttle_pause_factor, clock, sleep)
        self._max_throttle = max_throttle_retries
        self._sleep = sleep
        self._clock = clock
        self._max_events = MAX_EVENTS
        self._prefix = b'{"api_key":' + orjson.dumps(api_key.get()) + b',"events":['
        self._suffix = b"]}"
        # Per call state.
        self._encoded: dict[int, bytes] = {}
        self._keys: dict[int, list[tuple[str, str]]] = {}
        self._pending: deque[int] = deque()
        self._deferred: list[tuple[float, int]] = []
        self._paused: dict[tuple[str, str], float] = {}
        self._rounds: dict[int, int] = {}
        # Events per user/device per request, halved for a key each time it is throttled: a
        # request holding more events of one device than its allowance would never pass.
        self._key_cap: dict[tuple[str, str], int] = {}
        self._failed: list[tuple[int, str]] = []
        self._ingested = 0
        self._throttled_retries = 0

    # -- events

    def send(self, events: Iterable[dict[str, Any]]) -> IngestResult:
        """Send every event; return what was ingested and what failed for good."""
        source: Iterator[tuple[int, dict[str, Any]]] = enumerate(events)
        exhausted = False
        try:
            while True:
                self._promote_due()
                batch, exhausted = self._next_batch(source, exhausted)
                if batch:
                    self._post(batch)
                    continue
                if self._deferred:
                    wait = self._deferred[0][0] - self._clock()
                    if wait > 0:
                        logger.info(
                            "[amplitude] %d throttled events wait %.1f s before resending",
                            len(self._deferred),
                            wait,
                        )
                        self._sleep(wait)
                    continue
                if exhausted and not self._pending:
                    break
        except ApiError as exc:
            exc.partial = self._result()  # type: ignore[attr-defined]
            raise
        return self._result()

    def _result(self) -> IngestResult:
        return IngestResult(self._ingested, sorted(self._failed), self._throttled_retries)

    def _fail(self, index: int, reason: str) -> None:
        self._failed.append((index, reason))
        self._encoded.pop(index, None)
        self._keys.pop(index, None)

    def _paused_until(self, index: int) -> float:
        now = self._clock()
        until = max((self._paused.get(k, 0.0) for k in self._keys[index]), default=0.0)
        return until if until > now else 0.0

    def _promote_due(self) -> None:
        now = self._clock()
        due = []
        while self._deferred and self._deferred[0][0] <= now:
            due.append(heapq.heappop(self._deferred)[1])
        # Keep input order among the events let through together.
        self._pending.extendleft(sorted(due, reverse=True))

    def _pull(self, source: Iterator[tuple[int, dict[str, Any]]]) -> int | None:
        try:
            index, event = next(source)
        except StopIteration:
            return None
        if not isinstance(event, dict):
            self._failed.append((index, f"not an event object: {type(event).__name__}"))
            return -1
        if not event.get("insert_id"):
            event = {**event, "insert_id": insert_id_for(event)}
        self._encoded[index] = orjson.dumps(event, option=orjson.OPT_NON_STR_KEYS)
        self._keys[index] = _keys(event)
        return index

    def _next_batch(
        self, source: Iterator[tuple[int, dict[str, Any]]], exhausted: bool
    ) -> tuple[list[int], bool]:
        batch: list[int] = []
        held: list[int] = []  # over a throttled key's cap: next request
        per_key: dict[tuple[str, str], int] = {}
        size = len(self._prefix) + len(self._suffix)
        while len(batch) < self._max_events and len(held) < MAX_EVENTS:
            if self._pending:
                index = self._pending.popleft()
            elif exhausted:
                break
            else:
                pulled = self._pull(source)
                if pulled is None:
                    exhausted = True
                    break
                if pulled < 0:
                    continue
                index = pulled
            until = self._paused_until(index)
            if until:
                heapq.heappush(self._deferred, (until, index))
                continue
            length = len(self._encoded[index])
            if length + len(self._prefix) + len(self._suffix) > self._max_bytes:
                self._fail(index, f"event is {length} bytes, above the {self._max_bytes} limit")
                continue
            keys = self._keys[index]
            if any(per_key.get(k, 0) >= self._key_cap.get(k, MAX_EVENTS) for k in keys):
                held.append(index)
                continue
            if size + length + 1 > self._max_bytes:
                self._pending.appendleft(index)
                break
            batch.append(index)
            size += length + 1
            for k in keys:
                per_key[k] = per_key.get(k, 0) + 1
        self._pending.extendleft(reversed(held))
        return batch, exhausted

    def _post(self, batch: list[int]) -> None:
        body = self._prefix + b",".join(self._encoded[i] for i in batch) + self._suffix
        # Resending after a 5xx, a timeout or a dropped connection is safe although the
        # server may have ingested the first copy: every event carries an insert_id, and
        # Amplitude ignores a repeat of the same device_id + insert_id within 7 days.
        response = self._t.request(
            "POST",
            self._path,
            content=body,
            headers=_JSON,
            idempotent=True,
            expected=(400, 413, 429),
        )
        status = response.status_code
        data = _json_or_empty(response.content)
        if status < 300:
            self._ingested += len(batch)
            for i in batch:
                self._encoded.pop(i, None)
                for key in self._keys.pop(i, []):
                    if key in self._key_cap:  # accepted: let this key send more again
                        self._key_cap[key] *= 2
                        if self._key_cap[key] >= MAX_EVENTS:
                            del self._key_cap[key]
        elif status == 413:
            self._on_too_large(batch)
        elif status == 400:
            self._on_invalid(batch, data, response.text)
        else:
            self._on_throttled(batch, data)

    def _on_too_large(self, batch: list[int]) -> None:
        if len(batch) == 1:
            self._fail(batch[0], "payload too large (413) even alone")
            return
        self._max_events = max(1, len(batch) // 2)
        logger.info(
            "[amplitude] 413 for %d events; batches now hold at most %d",
            len(batch),
            self._max_events,
        )
        self._pending.extendleft(reversed(batch))

    def _on_invalid(self, batch: list[int], data: dict[str, Any], text: str) -> None:
        error = str(data.get("error") or text or "HTTP 400")
        reasons: dict[int, str] = {}
        for key, label in (
            ("events_with_invalid_fields", "invalid field"),
            ("events_with_missing_fields", "missing field"),
            ("events_with_invalid_id_lengths", "id too short"),
        ):
            by_field = data.get(key)
            if isinstance(by_field, dict):
                for name, positions in by_field.items():
                    for pos in positions or []:
                        reasons.setdefault(pos, f"{label} {name}")
        for pos in data.get("silenced_events") or []:
            reasons.setdefault(pos, "device silenced (Events silenced for device_id)")
        listed = {p: r for p, r in reasons.items() if isinstance(p, int) and 0 <= p < len(batch)}
        if not listed:
            if "invalid api key" in error.lower():
                raise AuthenticationError(
                    "HTTP 400 Invalid API key",
                    status=400,
                    method="POST",
                    url=self._path,
                    service="amplitude",
                    hint=_BAD_KEY_HINT,
                )
            for i in batch:
                self._fail(i, f"HTTP 400: {error}")
            return
        for pos, reason in listed.items():
            self._fail(batch[pos], reason)
        self._pending.extendleft(reversed([i for p, i in enumerate(batch) if p not in listed]))

    def _on_throttled(self, batch: list[int], data: dict[str, Any]) -> None:
        now = self._clock()
        over_quota = {("user", str(k)) for k in data.get("exceeded_daily_quota_users") or {}}
        over_quota |= {("device", str(k)) for k in data.get("exceeded_daily_quota_devices") or {}}
        positions = data.get("throttled_events")
        if isinstance(positions, list) and positions:
            throttled = {p for p in positions if isinstance(p, int) and 0 <= p < len(batch)}
        else:
            # No per-event detail (e.g. a proxy's 429): treat the whole batch as throttled.
            throttled = set(range(len(batch)))
        until = now + self._pause
        named = [("user", str(k)) for k in data.get("throttled_users") or {}]
        named += [("device", str(k)) for k in data.get("throttled_devices") or {}]
        for key in named:
            self._paused[key] = until
        in_batch: dict[tuple[str, str], int] = {}
        for pos in throttled:
            for key in self._keys.get(batch[pos], []):
                in_batch[key] = in_batch.get(key, 0) + 1
        for key in named or list(in_batch):
            if key in in_batch:
                self._key_cap[key] = max(1, in_batch[key] // 2)
        resend_now = []
        for pos, index in enumerate(batch):
            keys = self._keys.get(index, [])
            if over_quota.intersection(keys):
                self._fail(index, "over the daily event quota for this user/device (429)")
            elif pos in throttled:
                self._rounds[index] = self._rounds.get(index, 0) + 1
                if self._rounds[index] > self._max_throttle:
                    self._fail(index, f"still throttled after {self._max_throttle} retries (429)")
                    continue
                for key in keys:
                    self._paused[key] = max(self._paused.get(key, 0.0), until)
                heapq.heappush(self._deferred, (until, index))
                self._throttled_retries += 1
            else:
                resend_now.append(index)
        self._pending.extendleft(reversed(resend_now))

    # -- identify / group identify

    def identify(self, path: str, identifications: Iterable[dict[str, Any]]) -> int:
        """POST form-encoded ``identification`` arrays of at most 1,024 items and < 1 MB."""
        sent = 0
        batch: list[dict[str, Any]] = []
        size = 0
        for item in identifications:
            length = len(quote_plus(orjson.dumps(item).decode())) + 3  # "%2C" separator
            if batch and (len(batch) >= IDENTIFY_MAX or size + length > IDENTIFY_MAX_BYTES):
                sent += self._post_identify(path, batch)
                batch, size = [], 0
            batch.append(item)
            size += length
        if batch:
            sent += self._post_identify(path, batch)
        return sent

    def _post_identify(self, path: str, batch: list[dict[str, Any]]) -> int:
        form = {"api_key": self._key.get(), "identification": orjson.dumps(batch).decode()}
        try:
            self._t.request(
                "POST",
                path,
                data=form,
                idempotent=_identify_idempotent(batch),
                limiter=self._identify_limiter,
            )
        except BadRequestError as exc:
            raise bad_key_error(exc, path) from None
        except RateLimitedError as exc:
            # The transport's error, with the step that helps identify in particular.
            raise RateLimitedError(
                exc.summary,
                retry_after=exc.retry_after,
                status=exc.status,
                method=exc.method,
                url=exc.url,
                service="amplitude",
                body_excerpt=exc.body_excerpt,
                attempts=exc.attempts,
                hint="Send fewer identify updates per user per hour (Amplitude drops more than "
                "1,800 per user per hour), or retry later.",
            ) from None
        return len(batch)


class _MinimumPause:
    """A limiter that, after a 429, holds the next send until at least ``pause`` seconds
    (or the server's ``Retry-After``, if longer) have passed; otherwise it never waits.

    The transport's backoff after a 429 without ``Retry-After`` starts below a second,
    while Amplitude documents 15 s for identify; the wait here is pacing, so it does not
    use up the call's retry-time budget.
    """

    def __init__(
        self, pause: float, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self._pause = pause
        self._clock = clock
        self._sleep = sleep
        self._until = 0.0

    def acquire(self, cost: float = 1) -> float:
        wait = self._until - self._clock()
        if wait <= 0:
            return 0.0
        logger.info("[amplitude] identify throttled (429); pausing %.1f s", wait)
        self._sleep(wait)
        return wait

    def release(self, cost: float = 1) -> None:
        return None

    def on_throttled(self, retry_after: float | None) -> None:
        self._until = self._clock() + max(self._pause, retry_after or 0.0)

    def on_success(self) -> None:
        return None


def _identify_idempotent(batch: list[dict[str, Any]]) -> bool:
    """True when applying the batch twice gives the same result ($set, $setOnce, $unset…)."""
    for item in batch:
        for key in ("user_properties", "group_properties"):
            props = item.get(key)
            if isinstance(props, dict) and _CUMULATIVE_OPS.intersection(props):
                return False
    return True


def _json_or_empty(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}
