"""Pendo client against a rate-limited sandbox: sustained rate and 429 share (not a test).

The sandbox allows R requests/s per key (a token bucket of burst 1 or 2, ``Retry-After`` in
whole seconds), in its own process. Each scenario runs ``--clients`` processes (parallel
steps of a backfill; 1 by default), each one PendoClient doing cheap reads
(``GET /api/v1/token/verify``) for ``--duration`` seconds from ``--threads`` threads, its rate
set to 0.5 R, R, 1.5 R, 4 R or "auto", under one of these limiters:

* ``new``: the ``RateFinder`` the resource builds, its state in a fresh SQLite ledger (the
  product's default store, overhead included) shared by the scenario's clients: it starts
  knowing nothing;
* ``warm``: a ``RateFinder`` on the ledger ``new`` left, as the next step of a backfill
  starts: from the rate learned;
* ``old``: the AIMD ``AdaptiveTokenBucket`` (halves on a 429, recovers additively), per
  process; it needs a number, so it has no "auto".

Figures: calls completed per second as a share of R over the whole run and from
``--settle`` seconds on ("held"), and the share of HTTP requests answered 429; the summary
gives the median of the rounds.

``--plain 0.95,0.97`` measures instead what pacing alone earns: plain httpx GETs at those
shares of R, no limiter, no retries (a 429 is counted and pacing goes on), once as is and
once keeping each late answer's lag as ``RateFinder``'s lag guard does (the next request
waits the answer's lag over the fastest recent round trip, less half the margin under 1/R).

    /work/venv/bin/python bench/pendo_client_bench.py                 # R=20, 60 s, 3 rounds
    /work/venv/bin/python bench/pendo_client_bench.py --clients 3 --shares 1.5,auto
    /work/venv/bin/python bench/pendo_client_bench.py --plain 0.95,0.97 --bursts 1

Target (issue 21): ``new`` holds >= 90 % of R with < 1 % of requests answered 429 at every
client rate from R to 4 R and in auto; at 0.5 R it holds 0.5 R (the user's cap).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
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

import httpx

from analytics_assets.http import AdaptiveTokenBucket
from analytics_assets.http.limits import AUTO, Limiter, RateFinder
from analytics_assets.http.shared_budget import LedgerRateStore, ledger_at
from analytics_assets.pendo.client import PendoClient

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"

READ_KEY = "sandbox-pendo-us-read-key"
LIMITERS = ("new", "warm", "old")


@dataclass
class Result:
    round: int
    burst: int
    share: str  # "0.5", "1", ... or "auto": the client's rate as a multiple of R
    limiter: str
    clients: int
    server_rate: float
    seconds: float
    completed: int
    held_completed: int  # completed from --settle seconds on
    held_seconds: float
    requests: int
    throttled: int
    failed: int
    final_rate: float
    ceiling: float | None

    @property
    def share_of_r(self) -> float:
        return self.completed / self.seconds / self.server_rate

    @property
    def held_share_of_r(self) -> float:
        return self.held_completed / self.held_seconds / self.server_rate

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


def make_limiter(name: str, client_rate: float | str, ledger: Path) -> Limiter:
    if name == "old":
        assert client_rate != AUTO
        return AdaptiveTokenBucket(float(client_rate), 1, name="pendo")
    # As the resource builds it: its state a record of the ledger ("warm" finds "new"'s).
    store = LedgerRateStore(ledger_at(ledger), scope="bench", name="pendo.rate")
    return RateFinder(client_rate, store=store, name="pendo")


def drive(url: str, limiter: Limiter, duration: float, threads: int) -> dict:
    """``duration`` s of reads from ``threads`` threads sharing one client; the run starts
    when a line arrives on stdin (so that every client of a scenario starts together)."""
    client = PendoClient(READ_KEY, base_url=url, max_attempts=10, limiter=limiter)
    done: list[float] = []
    failed = 0
    lock = threading.Lock()

    def worker(deadline: float) -> None:
        nonlocal failed
        while time.monotonic() < deadline:
            try:
                client.verify_token(refresh=True)
                ok = True
            except Exception:  # a benchmark counts failures instead of stopping
                ok = False
            with lock:
                if ok:
                    done.append(time.monotonic())
                else:
                    failed += 1

    # The client's first connection is not part of the sustained rate (a single request,
    # far below any limit).
    client.verify_token(refresh=True)
    print("ready", flush=True)
    sys.stdin.readline()
    client.stats.reset()
    started = time.monotonic()
    pool = [threading.Thread(target=worker, args=(started + duration,)) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - started
    snap = client.stats.snapshot()
    client.close()
    return {
        "seconds": elapsed,
        "done": [t - started for t in done],
        "requests": snap.requests_sent,
        "throttled": snap.throttled,
        "failed": failed,
        "rate": getattr(limiter, "rate", math.nan),
        "ceiling": limiter.state().ceiling if isinstance(limiter, RateFinder) else None,
    }


def run_clients(url: str, name: str, client_rate: float | str, ledger: Path, args) -> list[dict]:
    """``--clients`` processes (parallel steps), started together."""
    cmd = [sys.executable, __file__, "--child", url, name, str(client_rate), str(ledger)]
    cmd += ["--duration", str(args.duration), "--threads", str(args.threads)]
    cmd += ["--verbose"] if args.verbose else []
    procs = [
        subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(args.clients)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("a client did not start")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=args.duration + 120)
        outs.append(json.loads(out.strip().splitlines()[-1]))
    return outs


def scenario(
    rnd: int, burst: int, share: str, args: argparse.Namespace, ledger_dir: Path
) -> list[Result]:
    """The limiters of one scenario in turns (the order flips every round), each against a
    fresh sandbox."""
    r = args.rate
    client_rate: float | str = AUTO if share == AUTO else float(share) * r
    ledger = ledger_dir / f"r{rnd}-b{burst}-{share}.sqlite"
    wanted = [name for name in args.limiters if not (name == "old" and share == AUTO)]
    if rnd % 2 == 0 and "old" in wanted:  # every other round: new first
        wanted = [w for w in wanted if w != "old"] + ["old"]
    results = []
    for name in wanted:
        with sandbox_process(r, burst, args.retry_after) as url:
            outs = run_clients(url, name, client_rate, ledger, args)
        seconds = max(o["seconds"] for o in outs)
        held = [t for o in outs for t in o["done"] if t >= args.settle]
        ceilings = [o["ceiling"] for o in outs if o["ceiling"]]
        res = Result(
            rnd, burst, share, name, args.clients, r, seconds,
            sum(len(o["done"]) for o in outs), len(held), seconds - args.settle,
            sum(o["requests"] for o in outs), sum(o["throttled"] for o in outs),
            sum(o["failed"] for o in outs), sum(o["rate"] for o in outs) / len(outs),
            ceilings[-1] if ceilings else None,
        )  # fmt: skip
        results.append(res)
        print(
            f"round {rnd} burst {burst} rate {share:>4}{'' if share == AUTO else ' R'} "
            f"{name:<5} x{args.clients} {100 * res.share_of_r:6.1f} % of R "
            f"(held {100 * res.held_share_of_r:5.1f} %)  {100 * res.share_429:5.2f} % 429  "
            f"({res.requests} requests, {res.failed} failed, rate at end {res.final_rate:.1f}"
            + (f", ceiling {res.ceiling:.1f})" if res.ceiling else ")"),
            flush=True,
        )
    return results


def median_of(
    results: list[Result], burst: int, share: str, name: str
) -> tuple[float, float, float] | None:
    runs = [x for x in results if (x.burst, x.share, x.limiter) == (burst, share, name)]
    if not runs:
        return None
    return (
        statistics.median(x.share_of_r for x in runs),
        statistics.median(x.share_429 for x in runs),
        statistics.median(x.held_share_of_r for x in runs),
    )


def summary(results: list[Result], args: argparse.Namespace) -> str:
    names = [n for n in LIMITERS if n in args.limiters]
    head = "| sandbox burst | client rate | " + " | ".join(
        f"{n}: share of R | {n}: held from {args.settle:g} s | {n}: 429s" for n in names
    )
    lines = [head + " |", "|" + "---|" * (head.count("|"))]
    for burst in args.bursts:
        for share in args.shares:
            cells = []
            for n in names:
                m = median_of(results, burst, share, n)
                cells += (
                    ["—"] * 3
                    if m is None
                    else [f"{100 * m[0]:.1f} %", f"{100 * m[2]:.1f} %", f"{100 * m[1]:.2f} %"]
                )
            row = f"| {burst} | {share if share == AUTO else share + ' R'} | " + " | ".join(cells)
            lines.append(row + " |")
    return "\n".join(lines)


def verdicts(results: list[Result], args: argparse.Namespace) -> list[str]:
    """The target on the medians: held (from --settle s on) and over the whole run, both
    with the whole run's 429s."""
    out = []
    for name in ("new", "warm"):
        for burst in args.bursts:
            checked = [s for s in args.shares if s == AUTO or float(s) >= 1]
            ms = [median_of(results, burst, s, name) for s in checked]
            if not checked or any(m is None for m in ms):
                continue
            held = all(m[2] >= 0.90 and m[1] < 0.01 for m in ms if m)
            whole = all(m[0] >= 0.90 and m[1] < 0.01 for m in ms if m)
            out.append(
                f"{name}, burst {burst}: >= 90 % of R with < 1 % 429s from R to 4 R and auto: "
                f"held from {args.settle:g} s {'met' if held else 'NOT met'}, "
                f"whole run {'met' if whole else 'NOT met'}"
            )
    return out


def plain_pacing(url: str, share: float, keep_lag: bool, seconds: float, r: float) -> dict:
    """GETs paced at ``share`` x R from one thread: no limiter, no retry, 429s counted."""
    interval = 1 / (share * r)
    least = (interval + 1 / r) / 2  # as RateFinder once its ceiling is R: see on_success
    rtts: list[float] = []
    sent = refused = 0
    with httpx.Client(base_url=url, headers={"x-pendo-integration-key": READ_KEY}) as client:
        client.get("/api/v1/token/verify")  # the connection, not part of the run
        due = start = time.monotonic()
        while time.monotonic() < start + seconds:
            if due > time.monotonic():
                time.sleep(due - time.monotonic())
            t0 = time.monotonic()
            status = client.get("/api/v1/token/verify").status_code
            rtt = time.monotonic() - t0
            rtts = [*rtts[-63:], rtt]
            sent += 1
            refused += status == 429
            due = t0 + interval
            if keep_lag:
                due = max(due, t0 + rtt - min(rtts) + least)
        elapsed = time.monotonic() - start
    return {"share": share, "keep_lag": keep_lag, "sent": sent, "refused": refused,
            "rate": sent / elapsed / r}  # fmt: skip


def plain(args: argparse.Namespace) -> int:
    shares = [float(x) for x in args.plain.split(",")]
    rows = []
    for rnd in range(1, args.rounds + 1):
        for burst in args.bursts:
            for share in shares:
                for keep_lag in (False, True):
                    with sandbox_process(args.rate, burst, args.retry_after) as url:
                        row = plain_pacing(url, share, keep_lag, args.duration, args.rate)
                    row.update(round=rnd, burst=burst)
                    rows.append(row)
                    print(
                        f"round {rnd} burst {burst} plain {share:g} R"
                        f"{', lag kept' if keep_lag else '':<10} sent {100 * row['rate']:5.1f} % "
                        f"of R, {100 * row['refused'] / row['sent']:5.2f} % 429 "
                        f"({row['refused']} of {row['sent']})",
                        flush=True,
                    )
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nmedians of {args.rounds} rounds (load at the end {load}):\n")
    print("| sandbox burst | paced at | lag kept | sent, share of R | answered 429 | values |")
    print("|---|---|---|---|---|---|")
    for burst in args.bursts:
        for share in shares:
            for keep_lag in (False, True):
                runs = [
                    x for x in rows
                    if (x["burst"], x["share"], x["keep_lag"]) == (burst, share, keep_lag)
                ]  # fmt: skip
                pct = [100 * x["refused"] / x["sent"] for x in runs]
                print(
                    f"| {burst} | {share:g} R | {'yes' if keep_lag else 'no'} | "
                    f"{100 * statistics.median(x['rate'] for x in runs):.1f} % | "
                    f"{statistics.median(pct):.2f} % | {', '.join(f'{p:.2f}' for p in pct)} |"
                )
    return 0


def child(argv: list[str]) -> int:
    """One client process: ``--child URL LIMITER RATE LEDGER --duration S --threads N``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("limiter")
    parser.add_argument("rate")
    parser.add_argument("ledger", type=Path)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--verbose", action="store_true")
    a = parser.parse_args(argv)
    if a.verbose:
        logging.basicConfig(format=f"%(asctime)s {os.getpid()} %(name)s: %(message)s")
        logging.getLogger("analytics_assets.http.limits").setLevel(logging.INFO)
    rate: float | str = AUTO if a.rate == AUTO else float(a.rate)
    out = drive(a.url, make_limiter(a.limiter, rate, a.ledger), a.duration, a.threads)
    print(json.dumps(out), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="server limit R, requests/s")
    parser.add_argument("--bursts", default="1,2", help="server bucket sizes, comma-separated")
    parser.add_argument(
        "--shares", default="0.5,1,1.5,4,auto", help="client rates as multiples of R, or auto"
    )
    parser.add_argument("--limiters", default="new", help="which of new,warm,old")
    parser.add_argument("--clients", type=int, default=1, help="client processes at once")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="'held' counts from this many seconds on"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each scenario")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--threads", type=int, default=1, help="threads sharing the client")
    parser.add_argument(
        "--no-retry-after", dest="retry_after", action="store_false", help="429s without header"
    )
    parser.add_argument("--verbose", action="store_true", help="log every cut of the rate")
    parser.add_argument(
        "--plain", metavar="SHARES", help="plain httpx paced at these shares of R, instead"
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1:])
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
    if args.plain:
        print(
            f"Plain httpx paced against the sandbox limited to R={args.rate:g} req/s, "
            f"{args.duration:g} s per run, {args.rounds} rounds; load {load}\n",
            flush=True,
        )
        return plain(args)
    print(
        f"Pendo client vs sandbox limited to R={args.rate:g} req/s, {args.duration:g} s per run, "
        f"{args.rounds} rounds, {args.clients} client process(es) of {args.threads} thread(s), "
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
