"""Pendo client against a rate-limited sandbox: sustained rate and 429 share (not a test).

The sandbox allows R requests/s per key (a token bucket of burst 1 or 2, ``Retry-After`` in
whole seconds). Each scenario runs one PendoClient for ``--duration`` seconds of cheap reads
(``GET /api/v1/token/verify``) from ``--threads`` threads sharing the client, its rate set
to 0.5 R, R, 1.5 R, 4 R or "auto", under three limiters, side by side in every round:

* ``old``: the AIMD ``AdaptiveTokenBucket`` (halves on a 429, recovers additively); it
  needs a number, so it has no "auto";
* ``new``: the ``RateFinder`` the resource builds, its state in a fresh SQLite ledger (the
  product's default store, overhead included): it starts knowing nothing;
* ``warm``: a second ``RateFinder`` on the ledger ``new`` left, as the next step of a
  backfill starts: from the rate learned.

Figures: calls completed per second as a share of R, and the share of HTTP requests
answered 429; the summary gives the median of the rounds and new/old.

    /work/venv/bin/python bench/pendo_client_bench.py                 # R=20, 60 s, 3 rounds
    /work/venv/bin/python bench/pendo_client_bench.py --bursts 2 --shares 1.5 --rounds 1

Target (issue 21): ``new`` holds >= 90 % of R with < 1 % of requests answered 429 at every
client rate from R to 4 R and in auto; at 0.5 R it holds 0.5 R (the user's cap).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.http import AdaptiveTokenBucket
from analytics_assets.http.limits import AUTO, Limiter, RateFinder
from analytics_assets.http.shared_budget import LedgerRateStore, ledger_at
from analytics_assets.pendo.client import PendoClient

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"

READ_KEY = "sandbox-pendo-us-read-key"
LIMITERS = ("old", "new", "warm")


@dataclass
class Result:
    round: int
    burst: int
    share: str  # "0.5", "1", ... or "auto": the client's rate as a multiple of R
    limiter: str
    server_rate: float
    seconds: float
    completed: int
    requests: int
    throttled: int
    failed: int
    final_rate: float
    ceiling: float | None

    @property
    def share_of_r(self) -> float:
        return self.completed / self.seconds / self.server_rate

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


def drive(url: str, limiter: Limiter, args: argparse.Namespace) -> tuple[float, int, int, int, int]:
    """(seconds, completed, requests, 429s, failed) of ``--duration`` s of reads."""
    client = PendoClient(READ_KEY, base_url=url, max_attempts=10, limiter=limiter)
    completed = failed = 0
    lock = threading.Lock()

    def worker(deadline: float) -> None:
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
    threads = [
        threading.Thread(target=worker, args=(started + args.duration,))
        for _ in range(args.threads)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    snap = client.stats.snapshot()
    client.close()
    return elapsed, completed, snap.requests_sent, snap.throttled, failed


def scenario(
    rnd: int, burst: int, share: str, args: argparse.Namespace, ledger_dir: Path
) -> list[Result]:
    """The limiters of one scenario, old and new in turns (the order flips every round)."""
    r = args.rate
    client_rate = AUTO if share == AUTO else float(share) * r
    ledger = ledger_at(ledger_dir / f"r{rnd}-b{burst}-{share}.sqlite")
    store = LedgerRateStore(ledger, scope="bench", name="pendo.rate")
    wanted = [name for name in args.limiters if not (name == "old" and share == AUTO)]
    if rnd % 2 == 0 and "old" in wanted:  # every other round: new first
        wanted = [w for w in wanted if w != "old"] + ["old"]
    results = []
    for name in wanted:
        limiter: AdaptiveTokenBucket | RateFinder
        if name == "old":
            assert client_rate != AUTO
            limiter = AdaptiveTokenBucket(client_rate, 1, name="pendo")
        else:  # "warm" reuses the store "new" left
            limiter = RateFinder(client_rate, store=store, name="pendo")
        with sandbox_process(r, burst, args.retry_after) as url:
            seconds, completed, requests, throttled, failed = drive(url, limiter, args)
        ceiling = limiter.state().ceiling if isinstance(limiter, RateFinder) else None
        res = Result(
            rnd, burst, share, name, r, seconds, completed, requests, throttled, failed,
            limiter.rate, ceiling,
        )  # fmt: skip
        results.append(res)
        print(
            f"round {rnd} burst {burst} rate {share:>4}{'' if share == AUTO else ' R'} "
            f"{name:<5} {100 * res.share_of_r:6.1f} % of R  {100 * res.share_429:5.2f} % 429  "
            f"({requests} requests, {failed} failed, rate at end {res.final_rate:.1f}"
            + (f", ceiling {ceiling:.1f})" if ceiling else ")"),
            flush=True,
        )
    ledger.close()
    return results


def median_of(
    results: list[Result], burst: int, share: str, name: str
) -> tuple[float, float] | None:
    runs = [x for x in results if (x.burst, x.share, x.limiter) == (burst, share, name)]
    if not runs:
        return None
    return (
        statistics.median(x.share_of_r for x in runs),
        statistics.median(x.share_429 for x in runs),
    )


def summary(results: list[Result], args: argparse.Namespace) -> str:
    names = [n for n in LIMITERS if n in args.limiters]
    head = "| sandbox burst | client rate | " + " | ".join(
        f"{n}: share of R | {n}: 429s" for n in names
    )
    if "old" in names and "new" in names:
        head += " | new / old |"
    else:
        head += " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for burst in args.bursts:
        for share in args.shares:
            cells = []
            medians = {n: median_of(results, burst, share, n) for n in names}
            for n in names:
                m = medians[n]
                cells += ["—", "—"] if m is None else [f"{100 * m[0]:.1f} %", f"{100 * m[1]:.2f} %"]
            row = f"| {burst} | {share if share == AUTO else share + ' R'} | " + " | ".join(cells)
            if "old" in names and "new" in names:
                old, new = medians["old"], medians["new"]
                row += f" | {new[0] / old[0]:.2f} ×" if old and new else " | —"
            lines.append(row + " |")
    return "\n".join(lines)


def verdicts(results: list[Result], args: argparse.Namespace) -> list[str]:
    out = []
    for name in ("new", "warm"):
        for burst in args.bursts:
            checked = [s for s in args.shares if s == AUTO or float(s) >= 1]
            ms = [median_of(results, burst, s, name) for s in checked]
            if not checked or any(m is None for m in ms):
                continue
            ok = all(m[0] >= 0.90 and m[1] < 0.01 for m in ms if m)
            out.append(
                f"{name}, burst {burst}: >= 90 % of R with < 1 % 429s from R to 4 R and auto: "
                + ("met" if ok else "NOT met")
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="server limit R, requests/s")
    parser.add_argument("--bursts", default="1,2", help="server bucket sizes, comma-separated")
    parser.add_argument(
        "--shares", default="0.5,1,1.5,4,auto", help="client rates as multiples of R, or auto"
    )
    parser.add_argument("--limiters", default="old,new,warm", help="which of old,new,warm")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each scenario")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--threads", type=int, default=1, help="threads sharing the client")
    parser.add_argument(
        "--no-retry-after", dest="retry_after", action="store_false", help="429s without header"
    )
    parser.add_argument("--verbose", action="store_true", help="log every cut of the rate")
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(format="%(relativeCreated)9.0f ms %(name)s: %(message)s")
        logging.getLogger("analytics_assets.http.limits").setLevel(logging.INFO)
    args.bursts = [int(b) for b in args.bursts.split(",")]
    args.shares = [s.strip() for s in args.shares.split(",")]
    args.limiters = [n.strip() for n in args.limiters.split(",")]
    if set(args.limiters) - set(LIMITERS):
        parser.error(f"--limiters: choose from {', '.join(LIMITERS)}")
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"Pendo client vs sandbox limited to R={args.rate:g} req/s, {args.duration:g} s per run, "
        f"{args.rounds} rounds, {args.threads} thread(s), "
        f"Retry-After {'on' if args.retry_after else 'off'}; load {load}\n",
        flush=True,
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="pendo-rate-bench-") as tmp:
        for rnd in range(1, args.rounds + 1):
            for burst in args.bursts:
                for share in args.shares:
                    results += scenario(rnd, burst, share, args, Path(tmp))
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nmedians of {args.rounds} rounds (load at the end {load}):\n")
    print(summary(results, args))
    print()
    for line in verdicts(results, args):
        print(line)
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = OUT / f"pendo_client_bench-{stamp}.json"
    path.write_text(json.dumps([asdict(x) for x in results], indent=1))
    print(f"\nevery run: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
