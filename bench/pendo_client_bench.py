"""Pendo client against a rate-limited sandbox: sustained rate and 429 share (not a test).

The sandbox allows R requests/s per key (token bucket, burst 1 by default). Each scenario runs
one PendoClient for ``--duration`` seconds of cheap reads (``GET /api/v1/token/verify``) from
``--threads`` threads sharing the client, with the client's own rate set to R (and to 1.5 R,
to show the AIMD bucket backing off). Figures: calls completed per second as a share of R,
and the share of HTTP requests answered 429.

    /work/venv/bin/python bench/pendo_client_bench.py                  # R=20, 60 s each
    /work/venv/bin/python bench/pendo_client_bench.py --rate 20 --duration 10 --threads 4

Target: at client rate R, sustained >= 95 % of R with < 1 % of requests answered 429.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.http import AdaptiveTokenBucket
from analytics_assets.pendo.client import PendoClient

ROOT = Path(__file__).resolve().parents[1]

READ_KEY = "sandbox-pendo-us-read-key"


@dataclass
class Result:
    name: str
    server_rate: float
    client_rate: float
    seconds: float
    completed: int
    requests: int
    throttled: int
    failed: int
    final_rate: float

    @property
    def sustained(self) -> float:
        return self.completed / self.seconds

    @property
    def share_of_r(self) -> float:
        return self.sustained / self.server_rate

    @property
    def share_429(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0


@contextmanager
def sandbox_process(rate: float, burst: int, retry_after: bool) -> Iterator[str]:
    """The sandbox in its own process, as a real server would be: sharing this process's GIL
    would add milliseconds of scheduling jitter to the arrival times it limits."""
    now = datetime(2024, 6, 15, 12, tzinfo=UTC).timestamp()
    code = (
        "import sys\n"
        "from datetime import datetime, UTC\n"
        "from analytics_assets.sandbox.config import PendoLimits, SandboxConfig\n"
        "from analytics_assets.sandbox.server import SandboxServer\n"
        f"limits = PendoLimits(rate={rate!r}, burst={burst!r}, retry_after_header={retry_after})\n"
        f"config = SandboxConfig(seed=7, now=datetime.fromtimestamp({now}, UTC),\n"
        "                       pendo_limits=limits)\n"
        "with SandboxServer(config) as server:\n"
        "    print(server.port, flush=True)\n"
        "    sys.stdin.read()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=30)


def make_limiter(rate: float, args: argparse.Namespace) -> AdaptiveTokenBucket | None:
    """The client's default bucket, unless the AIMD parameters are overridden."""
    tuned = {
        k: v
        for k, v in (
            ("increase", args.increase and args.increase * rate),
            ("recover_after", args.recover_after),
            ("decrease_factor", args.decrease_factor),
        )
        if v
    }
    return AdaptiveTokenBucket(rate, 1, name="pendo", **tuned) if tuned else None


def run(name: str, server_rate: float, client_rate: float, args: argparse.Namespace) -> Result:
    with sandbox_process(server_rate, args.burst, args.retry_after) as url:
        client = PendoClient(
            READ_KEY,
            base_url=url,
            rate=client_rate,
            burst=1,
            max_attempts=10,
            limiter=make_limiter(client_rate, args),
        )
        completed = failed = 0
        lock = threading.Lock()
        deadline = time.monotonic() + args.duration

        def worker() -> None:
            nonlocal completed, failed
            while time.monotonic() < deadline:
                try:
                    client.verify_token(refresh=True)
                    ok = True
                except Exception:  # a benchmark counts failures instead of stopping
                    ok = False
                with lock:
                    if ok:
                        completed += 1
                    else:
                        failed += 1

        # Time the calls only: the server's start and the client's first connection are not
        # part of the sustained rate.
        client.verify_token(refresh=True)
        client.stats.reset()
        started = time.monotonic()
        deadline = started + args.duration
        threads = [threading.Thread(target=worker) for _ in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        snap = client.stats.snapshot()
        final_rate = client.limiter.rate
        client.close()
    return Result(
        name,
        server_rate,
        client_rate,
        elapsed,
        completed,
        snap.requests_sent,
        snap.throttled,
        failed,
        final_rate,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="server limit R, requests/s")
    parser.add_argument("--burst", type=int, default=1, help="server bucket size")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per scenario")
    parser.add_argument("--threads", type=int, default=1, help="threads sharing the client")
    parser.add_argument(
        "--no-retry-after", dest="retry_after", action="store_false", help="429s without header"
    )
    parser.add_argument("--increase", type=float, help="AIMD step as a share of the rate")
    parser.add_argument("--recover-after", type=int, help="AIMD successes per step")
    parser.add_argument("--decrease-factor", type=float, help="AIMD factor on a 429")
    args = parser.parse_args(argv)
    r = args.rate
    results = [
        run("client rate = R", r, r, args),
        run("client rate = 1.5 R", r, 1.5 * r, args),
    ]
    print(
        f"\nPendo client vs sandbox limited to R={r:g} req/s (burst {args.burst}), "
        f"{args.duration:g} s per scenario, {args.threads} thread(s), "
        f"Retry-After {'on' if args.retry_after else 'off'}\n"
    )
    header = (
        f"{'scenario':<22}{'client rate':>12}{'completed':>11}{'req/s':>8}{'% of R':>8}"
        f"{'requests':>10}{'429s':>6}{'% 429':>8}{'failed':>8}{'rate at end':>13}"
    )
    print(header)
    print("-" * len(header))
    for res in results:
        print(
            f"{res.name:<22}{res.client_rate:>12.1f}{res.completed:>11}{res.sustained:>8.2f}"
            f"{100 * res.share_of_r:>7.1f}%{res.requests:>10}{res.throttled:>6}"
            f"{100 * res.share_429:>7.2f}%{res.failed:>8}{res.final_rate:>13.2f}"
        )
    first = results[0]
    ok = first.share_of_r >= 0.95 and first.share_429 < 0.01 and first.failed == 0
    print(f"\ntarget at client rate R (>= 95 % of R, < 1 % 429s): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
