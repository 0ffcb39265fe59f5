"""``GET /api/2/export``: a streamed zip of gzipped NDJSON, one member per upload hour (§4).

The archive is never held whole: members are produced one at a time (at most
``MEMBER_EVENTS`` events each), gzip-compressed in parallel slices, written into a
zip whose sink hands out its bytes after each member, and streamed by Starlette
from a worker thread. Each member is ZIP_STORED with correct sizes and CRC in its
local header (the sink lets zipfile seek back inside the member not yet sent).

Answers before streaming (so a client sees the status at once): 400 for bad or
reversed parameters, a span above 365 days, or an estimated size above
``export_max_bytes``; 404 (the live body) when the range has no visible data; 504
when the estimated generation time exceeds ``export_time_budget_seconds``; 429 when
the project's Dashboard concurrency pool is full (see ``budget``).
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import threading
import zipfile
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from analytics_assets.sandbox.amplitude.auth import check_basic
from analytics_assets.sandbox.amplitude.budget import error_body
from analytics_assets.sandbox.amplitude.events import (
    AVG_RECORD_BYTES,
    EXPORT_EVENTS_PER_SECOND,
    HOUR_MS,
)

if TYPE_CHECKING:
    from analytics_assets.sandbox.amplitude.tenant import AmplitudeTenant

MAX_SPAN_DAYS = 365
GZIP_LEVEL = 1  # speed over ratio: level 1 is ~3x faster than 6 for ~1.5x the bytes
try:  # ISA-L's deflate is ~3x faster than zlib's at level 1 with a better ratio.
    from isal import isal_zlib as _deflate_lib
except ImportError:  # pragma: no cover - optional dependency
    _deflate_lib = zlib
_HOUR_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})$")
_POOL = ThreadPoolExecutor(
    max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="amplitude-gzip"
)

NOT_FOUND_DETAILS = "Raw data files were not found."


def parse_hour(value: str | None) -> int | None:
    """``YYYYMMDDTHH`` (UTC) -> epoch ms of the hour, or None when malformed."""
    match = _HOUR_RE.match(value or "")
    if not match:
        return None
    try:
        moment = datetime(*map(int, match.groups()), tzinfo=UTC)
    except ValueError:
        return None
    return int(moment.timestamp() * 1000)


def last_exported_hour_ms(now_ms: int, lag_seconds: float) -> int:
    """Start of the newest upload hour the Export API serves at ``now_ms``.

    An hour is exported once it has ended and ``lag_seconds`` more have passed (the
    docs' "sent between 8-9 PM ... available at 11 PM"); with no lag the current,
    still-filling hour is served as before.
    """
    if lag_seconds <= 0:
        return now_ms - now_ms % HOUR_MS
    ready = now_ms - int(lag_seconds * 1000)
    return ready - ready % HOUR_MS - HOUR_MS


def member_name(project_id: int, hour_ms: int, part: int) -> str:
    """``{id}/{id}_{YYYY-MM-DD}_{H}#{n}.json.gz``: the hour is not zero-padded."""
    moment = datetime.fromtimestamp(hour_ms / 1000, tz=UTC)
    return f"{project_id}/{project_id}_{moment:%Y-%m-%d}_{moment.hour}#{part}.json.gz"


def _deflate_slice(data: bytes) -> bytes:
    # Raw deflate ended by a sync flush: byte-aligned, so slices compressed on their
    # own concatenate into one valid deflate stream (what pigz does).
    c = _deflate_lib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(_deflate_lib.Z_SYNC_FLUSH)


def gzip_member(pieces: Iterator[bytes], in_flight: int = 4) -> bytes:
    """One gzip stream (single member) of the pieces, compressed in parallel threads."""
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"]  # header: no name, mtime 0, OS unknown
    crc, size = 0, 0
    pending: deque[Future[bytes]] = deque()
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
        size += len(piece)
        pending.append(_POOL.submit(_deflate_slice, piece))
        while len(pending) > in_flight:
            out.append(pending.popleft().result())
    out.extend(f.result() for f in pending)
    out.append(b"\x03\x00")  # final empty fixed-Huffman block
    out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(out)


class _ZipSink:
    """A write-only, seekable-within-the-unsent-tail buffer for ``zipfile``.

    zipfile seeks back to a member's local header to write its CRC and sizes; we only
    hand bytes out (``drain``) between members, so those seeks land in the buffer.
    """

    def __init__(self) -> None:
        self._base = 0
        self._buf = bytearray()
        self._pos = 0

    def write(self, data: bytes) -> int:
        end = self._pos + len(data)
        self._buf[self._pos : end] = data
        self._pos = end
        return len(data)

    def tell(self) -> int:
        return self._base + self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        target = (
            offset
            if whence == 0
            else (self.tell() + offset if whence == 1 else self._base + len(self._buf) + offset)
        )
        if target < self._base:
            raise OSError("cannot seek into bytes already sent")
        self._pos = target - self._base
        return target

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = bytes(self._buf)
        self._base += len(data)
        self._buf = bytearray()
        self._pos = 0
        return data


def _error(status: int, details: str, kind: str = "unspecified") -> JSONResponse:
    return JSONResponse(error_body(status, details, kind), status_code=status)


def export_routes(tenant: AmplitudeTenant) -> list[Route]:
    async def export(request: Request) -> Response:
        refused = check_basic(tenant, request)
        if refused is not None:
            return refused
        start = parse_hour(request.query_params.get("start"))
        end = parse_hour(request.query_params.get("end"))
        if start is None or end is None:
            return _error(400, "Invalid parameters: start and end must be YYYYMMDDTHH", "invalid")
        if end < start:
            return _error(400, "Invalid parameters: end is before start", "invalid")
        if end - start >= MAX_SPAN_DAYS * 24 * HOUR_MS:
            return _error(400, f"Time range exceeds {MAX_SPAN_DAYS} days", "invalid")
        limits = tenant.limits
        # Hours not exported yet are left out; a window of nothing but those is "no data".
        end = min(end, last_exported_hour_ms(tenant.now_ms(), limits.export_lag_seconds))
        if end < start:
            return _error(404, NOT_FOUND_DETAILS)
        max_events = max(0, limits.export_max_bytes // AVG_RECORD_BYTES)
        # Counting is CPU work over the time columns; keep it off the event loop.
        counts = await run_in_threadpool(tenant.events.upload_hour_counts, start, end, max_events)
        total = int(counts.sum())
        if total == 0:
            return _error(404, NOT_FOUND_DETAILS)
        if total * AVG_RECORD_BYTES > limits.export_max_bytes:
            return _error(
                400,
                "Raw data files exceed the export size limit (4GB); shorten the time "
                "range or use the Amazon S3 export",
                "invalid",
            )
        if total / EXPORT_EVENTS_PER_SECOND > limits.export_time_budget_seconds:
            return _error(504, "Gateway Timeout: the export took too long")
        admission = tenant.gates.admit_export()
        if not admission.allowed:
            return admission.response()
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                admission.release()

        def stream() -> Iterator[bytes]:
            try:
                sink = _ZipSink()
                with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                    for chunk in tenant.events.iter_export_records(start, end):
                        data = gzip_member(chunk.pieces)
                        moment = datetime.fromtimestamp(chunk.hour_ms / 1000, tz=UTC)
                        info = zipfile.ZipInfo(
                            member_name(tenant.project_id, chunk.hour_ms, chunk.part),
                            date_time=moment.timetuple()[:6],
                        )
                        info.compress_type = zipfile.ZIP_STORED
                        zf.writestr(info, data)
                        yield sink.drain()
                yield sink.drain()
            finally:
                release()

        async def body() -> AsyncIterator[bytes]:
            # Pull the sync generator from a worker thread ourselves, so that a client
            # that goes away (the task is cancelled here) frees the slot at once.
            iterator = stream()
            try:
                while True:
                    chunk = await run_in_threadpool(next, iterator, None)
                    if chunk is None:
                        break
                    yield chunk
            finally:
                release()
                with contextlib.suppress(ValueError):  # still running in its thread
                    iterator.close()

        name = f"{tenant.project_id}_{request.query_params['start']}.zip"
        return StreamingResponse(
            body(),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return [Route("/api/2/export", export, methods=["GET"])]
