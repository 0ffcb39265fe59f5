"""What the benchmarks that run the sandbox as a separate process share: start it through
the project's CLI and wait until it answers, freeze its clock, and read the machine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """This process's highest resident memory while the block runs (MB), sampled every
    ``every`` seconds from ``/proc/self/status``; ``start`` is the memory at entry."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.start = self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(self.every)

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def start_cli_sandbox(
    options: list[str], log: Path, *, wait_seconds: float = 120
) -> tuple[subprocess.Popen, str, dict[str, Any]]:
    """``analytics-assets sandbox --port <free> <options>`` in its own process, logging to
    ``log``; returns the process, its base URL and its ``/_sandbox/info`` once it answers."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "analytics_assets.cli", "sandbox", "--port", str(port), *options]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_seconds
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the sandbox exited ({proc.returncode}); see {log}")
        try:
            return proc, base, httpx.get(f"{base}/_sandbox/info", timeout=5).json()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.terminate()
                raise SystemExit(f"the sandbox did not answer within {wait_seconds:g} s") from None
            time.sleep(0.5)


def freeze_clock(base: str, now: datetime) -> None:
    """Fix the sandbox's "now": every answer is then reproducible."""
    import httpx

    httpx.post(
        f"{base}/_sandbox/clock", json={"now": now.isoformat()}, timeout=10
    ).raise_for_status()
