"""A throwaway PostgreSQL server for the tests (a pytest plugin; tests/conftest.py loads it).

The session-scoped ``postgres_server`` fixture runs ``initdb`` and ``pg_ctl start`` from
Debian's ``postgresql`` package (``.ci/install-postgres`` installs it) on a free port of
127.0.0.1, with its data, socket and log in one temporary directory, and removes it all at
the end of the session. Each test that needs a clean slate asks it for a database of its
own (``new_database()``), which is far cheaper than a cluster per test.

Root may not run a PostgreSQL server, so as root the cluster belongs to an unprivileged
system user (``postgres`` when the package created it, else ``nobody``).

Without the server binaries the tests that use it skip, saying how to install them; with
``CI=true`` they fail instead, so CI cannot go green by skipping them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_postgres_bindir", "postgres_server", "start_postgres"]

# The cluster's superuser; trust authentication on 127.0.0.1 and the socket, so a test can
# put any password into its URLs (the server never asks for it).
SUPERUSER = "postgres"
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
# /tmp rather than $TMPDIR: as root, the server's account must be able to reach it, and the
# socket path must stay under the 107-byte limit of a Unix socket address.
_BASE_DIR = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
# Non-durable: a test cluster never outlives its session, and fsync costs seconds.
_SERVER_SETTINGS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",  # every spawned worker process opens its own connection
    "shared_buffers=32MB",
)


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_postgres_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest
    ``/usr/lib/postgresql/<version>/bin`` (the package does not put them on PATH)."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).resolve().parent
    candidates = sorted(_DEBIAN_ROOT.glob("*/bin"), key=_version_key, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    """Skip, or fail in CI: a CI run must not pass by skipping the Postgres tests."""
    if _in_ci():
        pytest.fail(f"{reason} (CI=true: the Postgres tests must run in CI)", pytrace=False)
    pytest.skip(reason)


def _server_account() -> pwd.struct_passwd | None:
    """Whom the server runs as: ourselves, or, as root, an unprivileged system user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, but there is no 'postgres' or 'nobody' user to own it")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A running throwaway cluster: connect as ``user`` (trusted, no password) to ``host``."""

    host: str
    port: int
    user: str
    dbname: str
    base: Path
    bindir: Path
    account: pwd.struct_passwd | None = field(repr=False)
    # A forked child that exits normally finalizes the fixture's generator too: only the
    # process that started the server may stop it.
    owner: int = field(default_factory=os.getpid, repr=False)
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        """``postgresql://user@127.0.0.1:port/dbname`` of the default database."""
        return self.url_for(self.dbname)

    def url_for(self, dbname: str, password: str | None = None) -> str:
        auth = self.user if password is None else f"{self.user}:{password}"
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def new_database(self, prefix: str = "test", password: str | None = None) -> str:
        """Create an empty database and return its URL (one per test keeps tests apart);
        ``password`` only goes into the URL (trust authentication never asks for it)."""
        import psycopg

        with self._lock:
            name = f"{re.sub(r'[^a-z0-9_]', '_', prefix.lower())[:40]}_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name, password)

    # -- life cycle

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        account = self.account
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.base,  # the account may not be able to enter our working directory
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )

    def _log_tail(self) -> str:
        log = self.base / "server.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def start(self) -> None:
        data, sockets = self.base / "data", self.base / "sockets"
        (self.base / "owner").write_text(str(self.owner))  # see _reap_orphans
        sockets.mkdir()
        if self.account is not None:
            for path in (self.base, sockets):
                os.chown(path, self.account.pw_uid, self.account.pw_gid)
        done = self._run(
            "initdb", "-D", str(data), "-U", self.user, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        for attempt in range(3):  # another process may take the free port before we do
            self.port = _free_port()
            options = " ".join(
                [
                    f"-p {self.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories='{sockets}'",  # not /var/run/postgresql
                    *(f"-c {setting}" for setting in _SERVER_SETTINGS),
                ]
            )
            done = self._run(
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(data),
                "-l", str(self.base / "server.log"), "-o", options,
            )  # fmt: skip
            if done.returncode == 0:
                return
            if attempt == 2 or "already in use" not in self._log_tail():
                break
        raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}\n{self._log_tail()}")

    def stop(self) -> None:
        if os.getpid() != self.owner:
            return
        if (self.base / "data" / "postmaster.pid").exists():
            # Throwaway data: no checkpoint needed, so do not wait for one.
            done = self._run("pg_ctl", "stop", "-w", "-t", "30", "-m", "immediate",
                             "-D", str(self.base / "data"))  # fmt: skip
            if done.returncode != 0:
                print(f"pg_ctl stop failed: {done.stderr}")
        shutil.rmtree(self.base, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:  # a killed process nobody has reaped yet is dead too
        return ") Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True


def _reap_orphans(bindir: Path, account: pwd.struct_passwd | None) -> None:
    """Stop and delete the clusters of test sessions that were killed before their teardown
    (pg_ctl detaches the server, so it outlives a SIGKILLed pytest)."""
    for base in _BASE_DIR.glob("pgtest-*"):
        try:
            owner = int((base / "owner").read_text())
        except (OSError, ValueError):
            continue  # not ours to judge, or still starting
        if owner == os.getpid() or _pid_alive(owner):
            continue
        orphan = PostgresServer("127.0.0.1", 0, SUPERUSER, "postgres", base, bindir, account)
        orphan.owner = os.getpid()
        orphan.stop()


@contextlib.contextmanager
def start_postgres() -> Iterator[PostgresServer]:
    """A started cluster, stopped and deleted on exit; raises when it cannot start."""
    bindir = find_postgres_bindir()
    if bindir is None:
        raise FileNotFoundError("initdb/pg_ctl not found")
    account = _server_account()
    _reap_orphans(bindir, account)
    base = Path(tempfile.mkdtemp(prefix="pgtest-", dir=_BASE_DIR))
    server = PostgresServer(
        host="127.0.0.1", port=0, user=SUPERUSER, dbname="postgres", base=base,
        bindir=bindir, account=account,
    )  # fmt: skip
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the session; see the module's docstring."""
    if find_postgres_bindir() is None:
        _unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
            "install them with .ci/install-postgres (as root) or apt-get install postgresql"
        )
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable('psycopg is not installed: pip install "psycopg[binary]"')
    started = time.monotonic()
    with start_postgres() as server:
        print(f"postgres_server: {server.url} ready in {time.monotonic() - started:.2f} s")
        yield server
