"""Amplitude's Export API (``GET /api/2/export``): hour windows, streamed zips, extraction.

The archive can reach 4 GB, so nothing here holds it in memory: ``Transport.download``
streams it to a temporary file, the zip's central directory is read from disk, and each
``*.json.gz`` member is copied out in 1 MiB chunks. A window the server refuses as too big
(400) or too slow (504) is split in halves down to one hour, as Airbyte's connector does.

Evidence before emptiness: a window is empty only on the Export API's own "no data" answer,
a 404 whose JSON body says ``Raw data files were not found.`` (contract §4, recorded live).
Any other 404 (an intermediary's HTML page, an empty body, another JSON) is a fault that is
retried, then fails naming what came back; it never empties a day.
"""

from __future__ import annotations

import errno
import gzip
import logging
import lzma
import os
import re
import shutil
import struct
import uuid
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from analytics_assets.http.errors import (
    BadRequestError,
    DamagedResponseError,
    ServerError,
    StreamInterruptedError,
    TransportError,
)
from analytics_assets.http.limits import Limiter
from analytics_assets.http.transport import (
    DamagedBodyError,
    Transport,
    json_body_problem,
    server_message,
)

__all__ = [
    "EXPORT_PATH",
    "ExportResult",
    "ExportTooLargeError",
    "Exporter",
    "export_file_name",
    "extract_archive",
    "hour_param",
    "is_no_data_answer",
    "normalize_hour",
]

logger = logging.getLogger("analytics_assets.http")

EXPORT_PATH = "/api/2/export"
MAX_SPAN = timedelta(days=365)
HOUR = timedelta(hours=1)
_CHUNK = 1 << 20
# {project_id}/{project_id}_{YYYY-MM-DD}_{H}#{n}.json.gz, hour not zero-padded (contract §4).
_MEMBER = re.compile(
    r"(?P<project>\d+)_(?P<day>\d{4}-\d{2}-\d{2})_(?P<hour>\d{1,2})#(?P<n>\d+)\.json\.gz$"
)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# The details of the Export API's "no data" 404 (contract §4; the sandbox sends the same).
NO_DATA_DETAILS = "Raw data files were not found."
# A 404 body is an error envelope of a few hundred bytes; an intermediary's page may be big.
_NOT_FOUND_BODY_CAP = 64 * 1024


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    ``files``: the extracted ``*.json.gz`` files (gzip of NDJSON), sorted by name, which
    sorts by upload hour; ``events``: their event count when counting was asked for, else
    None; ``bytes``: their total size on disk; ``windows``: the (first hour, last hour)
    windows actually requested, after any splitting; ``no_data_windows``: those the Export
    API answered with its own "no data" 404 (``Raw data files were not found.``).
    """

    files: list[Path]
    events: int | None
    bytes: int
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)
    no_data_windows: list[tuple[datetime, datetime]] = field(default_factory=list)

    @property
    def no_data(self) -> bool:
        """True when every window was answered with the Export API's genuine "no data"
        404: the service itself said the range is empty. An empty ``files`` list without
        it (a 200 whose zip held no events) is not that evidence."""
        return bool(self.windows) and len(self.no_data_windows) == len(self.windows)


class ExportTooLargeError(BadRequestError):
    """Even a one-hour window is too large (400) or too slow (504) for the Export API."""

    service_hints = {}  # this error's own hint wins over any per-service one
    default_hint = (
        "An hour of this project's data is beyond what the Export API can serve; "
        "use Amplitude's S3/Snowflake export for this volume."
    )


def normalize_hour(moment: datetime) -> datetime:
    """``moment`` in UTC, floored to the hour (naive datetimes are taken as UTC)."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def hour_param(moment: datetime) -> str:
    """The Export API's hour format, ``YYYYMMDDTHH`` (UTC)."""
    return normalize_hour(moment).strftime("%Y%m%dT%H")


def export_file_name(member: str) -> str:
    """A deterministic, flat, safe file name for a zip member.

    ``187520/187520_2026-06-16_7#0.json.gz`` → ``187520_2026-06-16_07_0.json.gz``: the hour
    zero-padded so names sort chronologically, ``#`` (a URL fragment marker that trips glob
    and URL readers) replaced. Unknown layouts keep their base name, made safe.
    """
    base = member.replace("\\", "/").rsplit("/", 1)[-1]
    match = _MEMBER.search(base)
    if match:
        g = match.groupdict()
        return f"{g['project']}_{g['day']}_{int(g['hour']):02d}_{g['n']}.json.gz"
    safe = _UNSAFE.sub("_", base).lstrip(".")
    return safe or "member"


class CorruptArchiveError(Exception):
    """The downloaded archive is not a complete zip (truncated or damaged)."""


# What zipfile lets out of a damaged archive besides BadZipFile: a damaged header can claim
# any version, compression method or flag (NotImplementedError, RuntimeError for
# "encrypted"), corrupt data fails in the decompressor (zlib/lzma errors), a damaged name
# fails to decode (UnicodeDecodeError, a ValueError) or to index (IndexError).
_DAMAGED_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    NotImplementedError,
    RuntimeError,
    ValueError,
    IndexError,
)


def extract_archive(zip_path: Path, dest_dir: Path) -> list[Path]:
    """Copy every ``*.json.gz`` member of ``zip_path`` into ``dest_dir``; return the paths.

    Members are written to temporary names and renamed only when every member was read in
    full with a matching CRC, so a damaged archive leaves nothing behind. Raises
    :class:`CorruptArchiveError` for a truncated or damaged archive.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    names: set[str] = set()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.endswith(".json.gz"):
                    continue
                name = export_file_name(info.filename)
                stem, n = name, 1
                while name in names:  # two members mapping to one name: keep both
                    n += 1
                    name = stem.replace(".json.gz", f"_{n}.json.gz")
                names.add(name)
                final = dest_dir / name
                tmp = dest_dir / f".{name}.{uuid.uuid4().hex[:8]}.part"
                staged.append((tmp, final))
                # Stored members are a plain streamed copy; ZipExtFile checks the CRC at EOF.
                with archive.open(info) as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except _DAMAGED_ZIP_ERRORS as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        # EINVAL: a damaged directory makes zipfile seek before the file's start.
        if isinstance(exc, OSError) and exc.errno and exc.errno != errno.EINVAL:
            raise  # a disk problem (full, permissions), not a bad archive
        raise CorruptArchiveError(f"{type(exc).__name__}: {exc}") from exc
    for tmp, final in staged:
        os.replace(tmp, final)
    return sorted(final for _, final in staged)


def is_no_data_answer(body: bytes) -> bool:
    """True for the Export API's own "no data" 404 body: the Basic-auth error envelope whose
    ``error.metadata.details`` is ``Raw data files were not found.`` (contract §4, recorded
    live; case, spacing and the final period are not insisted on). Anything else, an
    intermediary's HTML page, an empty body or another JSON, is not that answer."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    error = value.get("error") if isinstance(value, dict) else None
    metadata = error.get("metadata") if isinstance(error, dict) else None
    details = metadata.get("details") if isinstance(metadata, dict) else None
    if not isinstance(details, str):
        return False
    return (
        " ".join(details.split()).rstrip(".").casefold() == NO_DATA_DETAILS.rstrip(".").casefold()
    )


class _NoExportData(Exception):
    """The Export API's own "no data" 404: the window is empty (not a fault, not retried)."""


class _NotTheNoDataAnswer(DamagedBodyError):
    """A 404 on the export path that is not the Export API's "no data" answer (an
    intermediary's error page, an empty body, another JSON): retried like a damaged body."""


def _read_not_found(response: httpx.Response, redact: Callable[[str], str]) -> None:
    """Say what a 404 of the export path is: raise :class:`_NoExportData` for the Export
    API's own "no data" answer, :class:`_NotTheNoDataAnswer` for anything else."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= _NOT_FOUND_BODY_CAP:
            break
    if is_no_data_answer(bytes(body)):
        raise _NoExportData()
    content_type = response.headers.get("content-type")
    _, problem = json_body_problem(bytes(body), content_type)
    if problem is None:
        kind = (content_type or "").split(";")[0].strip() or "no content type"
        said = (server_message(bytes(body), content_type) or "")[:80]
        problem = f'JSON that is not the Export API\'s "no data" answer ({kind}: "{said}")'
    raise _NotTheNoDataAnswer(redact(f"HTTP 404 with {problem}"))


def count_events(path: Path) -> int:
    """Lines (events) in a gzip NDJSON file, streamed."""
    lines = 0
    last = b"\n"
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (0 if last == b"\n" else 1)


class Exporter:
    """Runs one export: validates the range, downloads and extracts each window.

    Every retry (dropped connections, 5xx, a damaged archive, a 404 that is not the Export
    API's own "no data" answer) happens in the transport's one retry loop, with its
    attempts, backoff, jitter, ``Retry-After``, time budget and stats.
    """

    def __init__(
        self,
        transport: Transport,
        limiter: Limiter | None,
        *,
        on_window: Callable[[datetime, datetime], None] | None = None,
    ) -> None:
        self._transport = transport
        self._limiter = limiter
        self._on_window = on_window

    def run(
        self, start_hour: datetime, end_hour: datetime, dest_dir: Path, *, count: bool = False
    ) -> ExportResult:
        start, end = normalize_hour(start_hour), normalize_hour(end_hour)
        if end < start:
            raise ValueError(f"end hour {hour_param(end)} is before start hour {hour_param(start)}")
        if end - start + HOUR > MAX_SPAN:
            raise ValueError(
                f"an export spans at most 365 days; {hour_param(start)}..{hour_param(end)} is "
                f"{(end - start + HOUR) / timedelta(days=1):.1f} days: export it in several calls"
            )
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        files: list[Path] = []
        windows: list[tuple[datetime, datetime]] = []
        empty: list[tuple[datetime, datetime]] = []
        self._window(start, end, dest_dir, files, windows, empty)
        files = sorted(set(files))
        size = sum(f.stat().st_size for f in files)
        try:
            events = sum(count_events(f) for f in files) if count else None
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # a member that is not gzip
            raise ServerError(
                f"an exported file is not gzip-compressed NDJSON ({type(exc).__name__}: {exc})",
                method="GET",
                url=EXPORT_PATH,
                service="amplitude",
                hint="Export the window again; if it persists, report the archive to Amplitude.",
            ) from exc
        return ExportResult(
            files=files, events=events, bytes=size, windows=windows, no_data_windows=empty
        )

    def _window(
        self,
        start: datetime,
        end: datetime,
        dest_dir: Path,
        files: list[Path],
        windows: list[tuple[datetime, datetime]],
        empty: list[tuple[datetime, datetime]],
    ) -> None:
        try:
            got = self._fetch(start, end, dest_dir)
        except (BadRequestError, ServerError) as exc:
            too_big = exc.status == 400 or exc.status == 504
            if not too_big:
                raise
            hours = int((end - start) / HOUR) + 1
            if hours == 1:
                raise ExportTooLargeError(
                    f"the export of hour {hour_param(start)} failed with HTTP {exc.status} even "
                    "as a one-hour window (too large or too slow for the Export API)",
                    status=exc.status,
                    method="GET",
                    url=exc.url,
                    service=exc.service,
                    body_excerpt=exc.body_excerpt,
                    attempts=exc.attempts,
                ) from exc
            half = start + (hours // 2) * HOUR
            logger.info(
                "[amplitude] export %s..%s answered HTTP %s; splitting it at %s",
                hour_param(start),
                hour_param(end),
                exc.status,
                hour_param(half),
            )
            self._window(start, half - HOUR, dest_dir, files, windows, empty)
            self._window(half, end, dest_dir, files, windows, empty)
            return
        windows.append((start, end))
        if self._on_window is not None:
            self._on_window(start, end)
        if got is None:
            empty.append((start, end))
        else:
            files.extend(got)

    def _fetch(self, start: datetime, end: datetime, dest_dir: Path) -> list[Path] | None:
        """Download one window's zip and extract it; None on the Export API's own "no
        data" 404.

        The transport's one loop retries dropped connections, bodies shorter than their
        Content-Length, an archive that arrives "complete" yet is not a whole zip (a proxy
        cut it and fixed Content-Length up), and a 404 that is not the "no data" answer.
        """
        params = {"start": hour_param(start), "end": hour_param(end)}
        archive = dest_dir / f".amplitude-export-{params['start']}-{params['end']}.zip"
        extracted: list[Path] = []

        def extract(path: Path) -> None:
            # The check is the extraction: it reads every member with its CRC, so a damaged
            # archive fails it (leaving nothing) and is downloaded again, and a whole one is
            # read once, not once to check and once more to extract.
            extracted[:] = extract_archive(path, dest_dir)

        try:
            self._transport.download(
                "GET",
                EXPORT_PATH,
                archive,
                params=params,
                limiter=self._limiter,
                cost=1,
                check=extract,
                check_retryable=lambda exc: isinstance(exc, CorruptArchiveError),
                expected=(404,),
                on_expected=lambda response: _read_not_found(response, self._transport.redact),
            )
        except _NoExportData:
            return None
        except StreamInterruptedError as exc:
            reworded = self._gave_up(params, exc)
            if reworded is None:
                raise
            raise reworded from exc
        finally:
            archive.unlink(missing_ok=True)
        return extracted

    @staticmethod
    def _gave_up(params: dict[str, str], exc: StreamInterruptedError) -> TransportError | None:
        """The transport's "no complete response" said in the export's terms (None: its
        own words say it best, e.g. a connection that kept dropping)."""
        cause = exc.__cause__
        window = f"{params['start']}..{params['end']}"
        if isinstance(cause, CorruptArchiveError):
            return TransportError(
                f"the export archive for {window} was incomplete {exc.attempts} times "
                f"({exc.detail}); {exc.reason}",
                method="GET",
                url=EXPORT_PATH,
                service="amplitude",
                attempts=exc.attempts,
                hint="The download keeps getting cut short; check the network or proxy, "
                "or export a shorter window.",
            )
        if isinstance(cause, _NotTheNoDataAnswer):
            return DamagedResponseError(
                f"the export of {window} answered {exc.detail}, not Amplitude's own "
                f'"no data" answer ({NO_DATA_DETAILS!r}), {exc.attempts} times; '
                "the window was not taken as empty",
                status=404,
                method="GET",
                url=EXPORT_PATH,
                service="amplitude",
                attempts=exc.attempts,
                detail=exc.detail,
                reason=exc.reason,
                hint="Something between this host and Amplitude (a proxy, gateway or "
                "firewall) answered instead of the Export API, or base_url points elsewhere; "
                "check base_url and the proxies, then run the partition again.",
            )
        return None
