"""Benchmark: the Amplitude client spends an hour's Dashboard budget without a single 429.

Not a test (nothing here asserts on time). It starts the sandbox with every budget window
shortened (``--window-scale 0.01``: the hour lasts 36 s), gives the client budgets with the
same scale, and runs a workload of segmentation queries from many threads:

* ``90%``: queries costing 90% of the hourly budget (108,000 × 0.9 = 97,200 cost units),
  each over many days with a group-by so each costs hundreds;
* ``150%`` (with ``--over``): half again more than the budget, so the client must wait for
  the window to slide instead of earning 429s.

For each it prints: queries, cost, wall time, 429s seen by the server (``/_sandbox/counters``)
and by the client, the server's peak of concurrent Dashboard queries (its ConcurrencyGate,
from ``/_sandbox/limits``) and the seconds the client waited for budget.

    /work/venv/bin/python bench/amplitude_client_bench.py [--window-scale 0.01] [--over]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.amplitude.client import AmplitudeClient  # noqa: E402
from analytics_assets.amplitude.costs import amplitude_budgets, amplitude_query_cost  # noqa: E402
from analytics_assets.sandbox.config import AmplitudeLimits, SandboxConfig  # noqa: E402
from analytics_assets.sandbox.server import SandboxServer  # noqa: E402

NOW = datetime(2026, 6, 18, 12, tzinfo=UTC)
HOURLY_BUDGET = 108_000
EVENTS = ("Page Viewed", "Search Performed", "Report Exported", "Session Start", "Invite Sent")
GROUP_BYS = ("country", "platform", "language", "device_type")


@dataclass(frozen=True)
class Query:
    event: str
    start: date
    end: date
    group_by: str

    @property
    def cost(self) -> int:
        days = (self.end - self.start).days + 1
        return amplitude_query_cost("segmentation", days=days, events=1, group_bys=1)


def workload(target_cost: int, days: int) -> list[Query]:
    """Segmentation queries over ``days`` days with one group-by (cost days × 5 each),
    ending on different days so the server cannot answer them all from one cache entry."""
    queries: list[Query] = []
    total = 0
    i = 0
    last = NOW.date() - timedelta(days=1)
    while True:
        end = last - timedelta(days=i % 20)
        q = Query(
            EVENTS[i % len(EVENTS)],
            end - timedelta(days=days - 1),
            end,
            GROUP_BYS[i % len(GROUP_BYS)],
        )
        if total + q.cost > target_cost:
            break
        queries.append(q)
        total += q.cost
        i += 1
    return queries


def run(sandbox: SandboxServer, scale: float, fraction: float, days: int, threads: int) -> dict:
    keys = sandbox.config.amplitude_keys["us"]
    control = sandbox.urls.control()
    httpx.post(f"{control}/counters/reset")
    queries = workload(int(HOURLY_BUDGET * fraction), days)
    budgets = amplitude_budgets(scale)
    with AmplitudeClient(
        keys.api_key,
        keys.secret_key,
        base_url=sandbox.urls.amplitude("us"),
        budgets=budgets,
        read_timeout=120,
    ) as client:
        before = client.stats.snapshot()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            rows = list(
                pool.map(
                    lambda q: client.segmentation(q.event, q.start, q.end, group_by=q.group_by),
                    queries,
                )
            )
        wall = time.perf_counter() - t0
        spent = client.stats.delta(before)
        cost = client.cost_spent["dashboard"]
    counters = httpx.get(f"{control}/counters").json()
    limits = httpx.get(f"{control}/limits").json()["amplitude"]["us"]
    return {
        "workload": f"{fraction:.0%} of budget",
        "queries": len(queries),
        "cost": int(cost),
        "wall_s": wall,
        "429_server": int(counters["by_status"].get("429", 0)),
        "429_client": spent.throttled,
        "peak_concurrency": limits.get("dashboard_peak"),
        "limiter_wait_s": spent.limiter_wait_seconds,
        "rows": sum(len(r) for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window-scale", type=float, default=0.01)
    parser.add_argument("--days", type=int, default=40, help="days per query (cost = days × 5)")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--over", action="store_true", help="also run 150%% of the budget")
    args = parser.parse_args()

    limits = AmplitudeLimits(window_scale=args.window_scale, processing_lag_hours=0)
    config = SandboxConfig(seed=7, now=NOW, amplitude_limits=limits)
    results = []
    with SandboxServer(config) as sandbox:
        for fraction in (0.9, 1.5) if args.over else (0.9,):
            results.append(run(sandbox, args.window_scale, fraction, args.days, args.threads))
            if args.over:
                time.sleep(3600 * args.window_scale)  # let the window empty between runs

    window = 3600 * args.window_scale
    print(
        f"\nAmplitude client vs sandbox: budget {HOURLY_BUDGET:,} cost per {window:g} s window "
        f"(window_scale {args.window_scale}), {args.threads} threads, {args.days}-day "
        "segmentation queries with one group-by\n"
    )
    header = (
        "workload",
        "queries",
        "cost",
        "wall s",
        "429s (server)",
        "429s (client)",
        "peak concurrent",
        "limiter wait s (sum over queries)",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        print(
            f"| {r['workload']} | {r['queries']} | {r['cost']:,} | {r['wall_s']:.1f} | "
            f"{r['429_server']} | {r['429_client']} | {r['peak_concurrency']} | "
            f"{r['limiter_wait_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
