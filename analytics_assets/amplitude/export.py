"""Amplitude's Export API (``GET /api/2/export``): hour windows, streamed zips, extraction.

The archive can reach 4 GB, so nothing here holds it in memory: ``Transport.download``
streams it to a temporary file, the zip's central directory is read from disk, and each
``*.json.gz`` member is copied out in 1 MiB chunks. A window the server refuses as too big
(400) or too slow (504) is split in halves down to one hour, as Airbyte's connector does.
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

from analytics_assets.http.errors import BadRequestError, NotFoundError, ServerError, TransportError
from analytics_assets.http.limits import Limiter
from analytics_assets.http.transport import Transport

__all__ = [
    "EXPORT_PATH",
    "ExportResult",
    "ExportTooLargeError",
    "Exporter",
    "export_file_name",
    "extract_archive",
    "hour_param",
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


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    ``files``: the extracted ``*.json.gz`` files (gzip of NDJSON), sorted by name, which
    sorts by upload hour; ``events``: their event count when counting was asked for, else
    None; ``bytes``: their total size on disk; ``windows``: the (first hour, last hour)
    windows actually requested, after any splitting.
    """

    files: list[Path]
    events: int | None
    bytes: int
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)


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
    """Runs one export: validates the range, downloads and extracts each window."""

    def __init__(
        self,
        transport: Transport,
        limiter: Limiter | None,
        *,
        max_attempts: int = 4,
        on_window: Callable[[datetime, datetime], None] | None = None,
    ) -> None:
        self._transport = transport
        self._limiter = limiter
        self._max_attempts = max(1, max_attempts)
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
        self._window(start, end, dest_dir, files, windows)
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
        return ExportResult(files=files, events=events, bytes=size, windows=windows)

    def _window(
        self,
        start: datetime,
        end: datetime,
        dest_dir: Path,
        files: list[Path],
        windows: list[tuple[datetime, datetime]],
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
            self._window(start, half - HOUR, dest_dir, files, windows)
            self._window(half, end, dest_dir, files, windows)
            return
        windows.append((start, end))
        if self._on_window is not None:
            self._on_window(start, end)
        files.extend(got)

    def _fetch(self, start: datetime, end: datetime, dest_dir: Path) -> list[Path]:
        """Download one window's zip and extract it; [] when the server has no data (404).

        The transport already retries dropped connections and bodies shorter than their
        Content-Length; a body that arrives "complete" yet is not a whole zip (a proxy or
        the server cut it) is caught here by reading the archive, and downloaded again.
        """
        params = {"start": hour_param(start), "end": hour_param(end)}
        archive = dest_dir / f".amplitude-export-{params['start']}-{params['end']}.zip"
        problem = ""
        try:
            for attempt in range(1, self._max_attempts + 1):
                try:
                    self._transport.download(
                        "GET",
                        EXPORT_PATH,
                        archive,
                        params=params,
                        limiter=self._limiter,
                        cost=1,
                    )
                except NotFoundError:
                    return []  # "Raw data files were not found": no data in this window
                try:
                    return extract_archive(archive, dest_dir)
                except CorruptArchiveError as exc:
                    problem = str(exc)
                    logger.warning(
                        "[amplitude] export %s..%s: the archive is incomplete (%s); "
                        "downloading it again (%d/%d)",
                        params["start"],
                        params["end"],
                        problem,
                        attempt,
                        self._max_attempts,
                    )
        finally:
            archive.unlink(missing_ok=True)
        raise TransportError(
            f"the export archive for {params['start']}..{params['end']} was incomplete "
            f"{self._max_attempts} times ({problem})",
            method="GET",
            url=EXPORT_PATH,
            service="amplitude",
            attempts=self._max_attempts,
            hint="The download keeps getting cut short; check the network or proxy, "
            "or export a shorter window.",
        )
