"""The ``analytics-assets`` command: ``sandbox``, ``demo`` and ``dev``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _sandbox_config(args: argparse.Namespace):
    from analytics_assets.sandbox.config import SandboxConfig

    config = SandboxConfig(seed=args.seed, scale=args.scale, host=args.host, port=args.port)
    config.pendo_timezone = args.timezone
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


def _add_sandbox_options(parser: argparse.ArgumentParser, port: int, scale: float = 1.0) -> None:
    parser.add_argument("--port", type=int, default=port, help="port on loopback (0 = any free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (keep it loopback)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the synthetic company")
    parser.add_argument(
        "--scale", type=float, default=scale, help="size: 1 = 100 accounts; 1000 = 100,000 accounts"
    )
    parser.add_argument(
        "--timezone",
        default="America/New_York",
        help="the Pendo subscription's time zone (day buckets)",
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
    from analytics_assets.demo import run_dev

    return run_dev(_sandbox_config(args), webserver_port=args.webserver_port)


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

    demo = sub.add_parser("demo", help="run the daily job against the sandbox and show the result")
    # Scale 5 (500 accounts): enough weekend traffic for every default alert rule to show.
    _add_sandbox_options(demo, port=0, scale=5.0)
    demo.add_argument("--days", type=int, default=3, help="how many recent days to materialize")
    demo.set_defaults(func=_cmd_demo)

    dev = sub.add_parser("dev", help="start the sandbox and `dagster dev` pointed at it")
    _add_sandbox_options(dev, port=8765)
    dev.add_argument("--webserver-port", type=int, default=3000)
    dev.set_defaults(func=_cmd_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
