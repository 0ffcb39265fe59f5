"""The ``analytics-assets`` command: ``sandbox``, ``demo``, ``dev`` and ``sql``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analytics_assets.demo import DemoWorld
    from analytics_assets.sandbox.config import SandboxConfig


# The world `demo` runs against by default; `dev` serves the last demo's world instead.
DEFAULT_SEED = 42
DEFAULT_TIMEZONE = "America/New_York"
# Scale 5 (500 accounts): enough weekend traffic for every default alert rule to show.
DEMO_SCALE = 5.0
DEV_PORT = 8765


def _sandbox_config(args: argparse.Namespace, world: DemoWorld | None = None) -> SandboxConfig:
    """The sandbox's settings from the flags; with ``world`` (``dev``), the demo's world
    for every world setting no flag gave."""
    from analytics_assets.sandbox.config import SandboxConfig

    config = SandboxConfig(host=args.host, port=args.port or 0)
    if world is not None:
        world.apply(config)
    else:
        config.seed, config.scale, config.pendo_timezone = DEFAULT_SEED, 1.0, DEFAULT_TIMEZONE
    if args.seed is not None:
        config.seed = args.seed
    if args.scale is not None:
        config.scale = args.scale
    if args.timezone is not None:
        config.pendo_timezone = args.timezone
    # The project's rule (README): the Amplitude project's time zone is the subscription's,
    # so its Dashboard days are the partitions' days. A sandbox whose Amplitude days are UTC
    # fails the export-count check on every day with a weekday trend.
    if getattr(args, "amplitude_timezone", None) is not None:
        config.amplitude_timezone = args.amplitude_timezone
    elif args.timezone is not None or world is None:
        config.amplitude_timezone = config.pendo_timezone
    if getattr(args, "amplitude_events_per_pendo_event", None) is not None:
        config.amplitude_events_per_pendo_event = args.amplitude_events_per_pendo_event
    if getattr(args, "amplitude_export_max_gb", None) is not None:
        config.amplitude_limits.export_max_bytes = int(args.amplitude_export_max_gb * 1024**3)
    if getattr(args, "pendo_rate", None) is not None:
        config.pendo_limits.rate = args.pendo_rate if args.pendo_rate > 0 else None
    if getattr(args, "auth_failure_status", None):
        config.pendo_limits.auth_failure_status = args.auth_failure_status
    if getattr(args, "pendo_read_key", None):
        config.pendo_keys["us"].read = args.pendo_read_key
    if getattr(args, "pendo_write_key", None):
        config.pendo_keys["us"].write = args.pendo_write_key
    if getattr(args, "amplitude_api_key", None):
        config.amplitude_keys["us"].api_key = args.amplitude_api_key
    if getattr(args, "amplitude_secret_key", None):
        config.amplitude_keys["us"].secret_key = args.amplitude_secret_key
    return config


def _add_sandbox_options(
    parser: argparse.ArgumentParser, port: int, scale: float | None = 1.0, *, of_demo: bool = False
) -> None:
    """The sandbox's flags; ``of_demo``: world flags default to the last demo's world."""
    parser.add_argument(
        "--port",
        type=int,
        default=None if of_demo else port,
        help="port on loopback (0 = any free)"
        + (f" (default: the last demo's, else {port})" if of_demo else ""),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (keep it loopback)")
    inherited = " (default: the last demo's, else %s)"
    parser.add_argument(
        "--seed",
        type=int,
        default=None if of_demo else DEFAULT_SEED,
        help="seed of the synthetic company" + (inherited % DEFAULT_SEED if of_demo else ""),
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None if of_demo else scale,
        help="size: 1 = 100 accounts; 1000 = 100,000 accounts"
        + (inherited % "1" if of_demo else ""),
    )
    parser.add_argument(
        "--timezone",
        default=None if of_demo else DEFAULT_TIMEZONE,
        help="the Pendo subscription's time zone (day buckets)"
        + (inherited % DEFAULT_TIMEZONE if of_demo else ""),
    )
    if not of_demo:
        parser.add_argument(
            "--amplitude-timezone",
            default=None,
            help="the Amplitude project's time zone (Dashboard days; default: --timezone's)",
        )
    parser.add_argument(
        "--amplitude-events-per-pendo-event",
        type=float,
        default=None,
        metavar="RATIO",
        help="Amplitude events per Pendo event (default 0.6); raise it to "
        "grow the Amplitude export on its own, as the benchmarks do",
    )
    parser.add_argument(
        "--amplitude-export-max-gb",
        type=float,
        default=None,
        metavar="GB",
        help="the Export API's size cap per request (default 4, Amplitude's); the 4x-volume "
        "benchmark raises it, since its busiest hour alone is estimated above 4 GB",
    )


def _cmd_sandbox(args: argparse.Namespace) -> int:
    from analytics_assets.sandbox.server import SandboxServer

    config = _sandbox_config(args)
    server = SandboxServer(config, log_level="info")
    server.start()
    urls = server.urls
    print(f"Sandbox (seed {config.seed}, scale {config.scale:g}) listening on {urls.base}")
    print(f"  control API: {urls.control()}/info, /faults, /counters, /stage")
    for region, keys in config.pendo_keys.items():
        print(
            f"  Pendo {region:<4} {urls.pendo(region):<32} read key {keys.read}  "
            f"write key {keys.write}"
        )
    for region, keys in config.amplitude_keys.items():
        print(
            f"  Amplitude {region:<3} {urls.amplitude(region):<29} api key {keys.api_key}  "
            f"secret key {keys.secret_key}  project {keys.project_id}"
        )
    print("Press Ctrl+C to stop.", flush=True)
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from analytics_assets.demo import run_demo

    return run_demo(_sandbox_config(args), days=args.days)


def _cmd_dev(args: argparse.Namespace) -> int:
    from analytics_assets.demo import load_world, run_dev

    # The last demo's world, so the UI shows what the demo printed; flags override it.
    world = load_world()
    config = _sandbox_config(args, world)
    if world is None and args.scale is None:
        config.scale = DEMO_SCALE  # no demo yet: the demo's default world all the same
    if args.port is None:
        # The demo's port: the code location then loads exactly as it did for the demo.
        config.port = world.port if world is not None and world.port else DEV_PORT
    return run_dev(config, webserver_port=args.webserver_port, world=world)


def _cmd_sql(args: argparse.Namespace) -> int:
    from analytics_assets.demo import run_sql

    return run_sql(args.query, warehouse=args.warehouse, max_rows=args.max_rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analytics-assets",
        description="Keep Pendo and Amplitude data in sync with a warehouse, with Dagster.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    sandbox = sub.add_parser("sandbox", help="serve the local Pendo and Amplitude emulator")
    _add_sandbox_options(sandbox, port=8765)
    sandbox.add_argument("--pendo-rate", type=float, help="Pendo requests per second (0 = off)")
    sandbox.add_argument(
        "--auth-failure-status",
        type=int,
        choices=(401, 403),
        help="status for a missing or bad Pendo key (default 403)",
    )
    sandbox.add_argument("--pendo-read-key", help="US read-only integration key to accept")
    sandbox.add_argument("--pendo-write-key", help="US read-write integration key to accept")
    sandbox.add_argument("--amplitude-api-key", help="US project API key to accept")
    sandbox.add_argument("--amplitude-secret-key", help="US project secret key to accept")
    sandbox.set_defaults(func=_cmd_sandbox)

    demo = sub.add_parser(
        "demo", help="run the project's jobs and sensors against the sandbox and show the result"
    )
    _add_sandbox_options(demo, port=0, scale=DEMO_SCALE)
    demo.add_argument("--days", type=int, default=3, help="how many recent days to materialize")
    demo.set_defaults(func=_cmd_demo)

    dev = sub.add_parser(
        "dev",
        help="serve the last demo's sandbox world again and `dagster dev` on its Dagster home",
    )
    _add_sandbox_options(dev, port=DEV_PORT, scale=None, of_demo=True)
    dev.add_argument("--webserver-port", type=int, default=3000)
    dev.set_defaults(func=_cmd_dev)

    sql = sub.add_parser(
        "sql",
        help="query the warehouse (a DuckDB file through a snapshot copy, so a reader never "
        "blocks a run); no query: every table and its row count",
    )
    sql.add_argument("query", nargs="?", help='e.g. "SELECT * FROM analytics.alerts"')
    sql.add_argument(
        "--warehouse",
        help="a DuckDB file or a postgresql:// URL (default: $ANALYTICS_ASSETS_WAREHOUSE, "
        "else <data dir>/warehouse.duckdb)",
    )
    sql.add_argument("--max-rows", type=int, default=40, help="rows to print at most")
    sql.set_defaults(func=_cmd_sql)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
