"""Gzip files for DuckDB, inflated by ISA-L instead of DuckDB's own miniz.

DuckDB inflates gzip with its bundled miniz at about 630 MB/s a core on our machines;
ISA-L (the ``isal`` package) inflates the same files at 1.2-1.4 GB/s and releases the
GIL while it does. A day of the raw Amplitude export is ~9.6 GB of JSON, and inflating
it was 16 % of the load's CPU (bench/README.md, Daily sync), so the export is read
through this filesystem: ``read_json(['isalgz:///…/x.json.gz'], compression='none')``.

DuckDB reads an uncompressed file in fixed-size buffers at offsets, several threads at
once, each through its own handle. A gzip stream can only be inflated from its start,
so all handles on a file share one inflater: a read ahead of it inflates the bytes in
between and keeps them for the handle that will ask for them (DuckDB hands out buffers
in order, so that is one buffer at most); a read behind it starts the file again.

DuckDB must be told each file's size up front. Gzip's trailer holds it modulo 2**32, and
only for the last member, so the size is checked when the file is read to its end: a
file that inflates to more or fewer bytes than its trailer says raises ``GzipSizeError``,
never a silent loss (the export's load then reads the day with DuckDB's own reader:
``assets.amplitude._load_export``).
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path
from typing import Any

import duckdb
from fsspec.spec import AbstractFileSystem
from isal import igzip, isal_zlib

PROTOCOL = "isalgz"

# A gzip trailer's size is modulo 2**32: a file whose inflated size could pass 4 GiB is
# left to DuckDB's own reader. JSON lines rarely compress more than 20 times, so a
# compressed file under 128 MiB stays far below (it would need a ratio of 32).
MAX_COMPRESSED_BYTES = 128 * 1024 * 1024


class GzipSizeError(OSError):
    """A gzip file inflated to another size than its trailer gives (several members, or
    more than 4 GiB): read it with DuckDB's own gzip reader instead."""


def inflated_size(path: str | os.PathLike[str]) -> int:
    """The inflated size a gzip file's trailer gives (ISIZE: modulo 2**32, last member).

    Checked again when the file is read to that size; a size of 0 is checked here, since
    DuckDB would read nothing (a last member that is empty after others that are not)."""
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0, os.SEEK_END)
        if head != b"\x1f\x8b" or fh.tell() < 18:
            raise GzipSizeError(f"{os.fspath(path)} is not a gzip file")
        fh.seek(-4, os.SEEK_END)
        size = struct.unpack("<I", fh.read(4))[0]
    if size == 0:
        with igzip.open(path, "rb") as gz:
            if gz.read(1):
                raise GzipSizeError(
                    f"{os.fspath(path)} inflates to more than the 0 bytes its gzip trailer "
                    "gives (several gzip members)"
                )
    return size


def can_read(path: str | os.PathLike[str]) -> bool:
    """Whether this filesystem should read ``path``: a gzip file small enough that its
    trailer's size cannot have wrapped around 4 GiB."""
    return os.stat(path).st_size < MAX_COMPRESSED_BYTES


def url(path: str | os.PathLike[str]) -> str:
    """The path DuckDB reads through this filesystem (with ``compression='none'``)."""
    return f"{PROTOCOL}://{Path(path).resolve().as_posix()}"


# DuckDB's JSON reader asks for 16 MiB at a time and hands a file's buffers out in order,
# so what is inflated ahead is one buffer per other thread; a far jump is not kept whole.
_PIECE = 16 * 1024 * 1024
_MAX_AHEAD = 4 * _PIECE


class _Inflater:
    """One file's gzip stream, shared by every DuckDB handle on it."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        self.handles = 0
        self._lock = threading.Lock()
        self._file: Any = None
        self._pos = 0  # bytes inflated so far
        self._ahead: dict[int, bytes] = {}  # offset -> bytes inflated before they were asked for

    def read_at(self, offset: int, length: int) -> bytes:
        try:
            return self._read_at(offset, length)
        except GzipSizeError:
            raise
        except (EOFError, OSError, isal_zlib.error) as exc:  # truncated or damaged: say which
            raise OSError(f"{self.path} cannot be inflated: {type(exc).__name__}: {exc}") from exc

    def _read_at(self, offset: int, length: int) -> bytes:
        with self._lock:
            end = min(offset + length, self.size)
            if offset >= end:
                return b""
            parts: list[bytes] = []
            while offset < end and offset in self._ahead:
                piece = self._ahead.pop(offset)
                if len(piece) > end - offset:
                    self._ahead[end] = piece[end - offset :]
                    piece = piece[: end - offset]
                parts.append(piece)
                offset += len(piece)
            if offset < end:
                if self._file is None or offset < self._pos:
                    self._restart()
                while self._pos < offset:  # other handles' buffers: keep them for those
                    start = self._pos
                    piece = self._inflate(min(offset - start, _PIECE))
                    if sum(map(len, self._ahead.values())) < _MAX_AHEAD:
                        self._ahead[start] = piece  # else dropped: asked for later, it restarts
                parts.append(self._inflate(end - offset))
            return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
            self._file = None
            self._ahead.clear()

    def _restart(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = igzip.open(self.path, "rb")
        self._pos = 0
        self._ahead.clear()

    def _inflate(self, length: int) -> bytes:
        data = self._file.read(length)
        while len(data) < length:  # a short read is not the end until read returns nothing
            more = self._file.read(length - len(data))
            if not more:
                raise GzipSizeError(
                    f"{self.path} inflates to {self._pos + len(data):,} bytes, fewer than the "
                    f"{self.size:,} its gzip trailer gives"
                )
            data += more
        self._pos += length
        if self._pos == self.size:
            if self._file.read(1):
                raise GzipSizeError(
                    f"{self.path} inflates to more than the {self.size:,} bytes its gzip "
                    "trailer gives (several gzip members, or over 4 GiB)"
                )
            # DuckDB keeps its handles open until the whole scan ends, and an open reader
            # holds ~0.7 MB: four times the day (~280 files) peaked 120-150 MB higher.
            self._file.close()
            self._file = None
        return data


class _Handle:
    """What DuckDB reads from: a position on the file's shared inflater."""

    def __init__(self, fs: IsalGzipFileSystem, inflater: _Inflater) -> None:
        self._fs = fs
        self._inflater = inflater
        self._pos = 0
        self.closed = False

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._inflater.size}
        self._pos = base[whence] + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, length: int = -1) -> bytes:
        if length is None or length < 0:
            length = self._inflater.size - self._pos
        data = self._inflater.read_at(self._pos, length)
        self._pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._fs._release(self._inflater)

    def __enter__(self) -> _Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class IsalGzipFileSystem(AbstractFileSystem):
    """A read-only fsspec filesystem of local gzip files, seen inflated, for DuckDB."""

    protocol = PROTOCOL

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._lock = threading.Lock()
        self._inflaters: dict[str, _Inflater] = {}

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> _Handle:  # type: ignore[override]
        if "r" not in mode or "+" in mode:
            raise PermissionError(f"{PROTOCOL}:// is read-only; cannot open {path} with {mode!r}")
        local = self._strip_protocol(path)
        with self._lock:
            inflater = self._inflaters.get(local)
            if inflater is None:
                inflater = self._inflaters[local] = _Inflater(local, inflated_size(local))
            inflater.handles += 1
        return _Handle(self, inflater)

    def _release(self, inflater: _Inflater) -> None:
        with self._lock:
            inflater.handles -= 1
            if inflater.handles:
                return
            self._inflaters.pop(inflater.path, None)
        inflater.close()

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        local = self._strip_protocol(path)
        if not os.path.isfile(local):
            raise FileNotFoundError(local)
        # DuckDB asks a file's size on every handle; an open file's is already known.
        inflater = self._inflaters.get(local)
        size = inflater.size if inflater else inflated_size(local)
        return {"name": local, "size": size, "type": "file"}

    # Whether a file is there is not whether it can be read: a file that is not gzip
    # exists, and fails with its reason when DuckDB asks its size, not as "no files found".
    def exists(self, path: str, **kwargs: Any) -> bool:
        return os.path.exists(self._strip_protocol(path))

    def isfile(self, path: str) -> bool:
        return os.path.isfile(self._strip_protocol(path))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        entry = self.info(path)
        return [entry] if detail else [entry["name"]]

    def modified(self, path: str) -> Any:
        from datetime import UTC, datetime

        return datetime.fromtimestamp(os.stat(self._strip_protocol(path)).st_mtime, tz=UTC)


def register(conn: duckdb.DuckDBPyConnection) -> None:
    """Let ``conn`` read ``isalgz://`` paths (undo with ``unregister`` before closing it)."""
    # A fresh instance per connection: fsspec would otherwise share one (and its open
    # files) between every connection of the process.
    conn.register_filesystem(IsalGzipFileSystem(skip_instance_cache=True))


def unregister(conn: duckdb.DuckDBPyConnection) -> None:
    conn.unregister_filesystem(PROTOCOL)
