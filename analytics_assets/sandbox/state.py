"""The shared state of one running sandbox: config, worlds, faults, counters, halves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.routing import BaseRoute

from analytics_assets.sandbox.company import Company
from analytics_assets.sandbox.config import PENDO_REGIONS, SandboxConfig
from analytics_assets.sandbox.faults import FaultPlan, RequestCounters
from analytics_assets.sandbox.world import World


@dataclass
class SandboxHalf:
    """What one emulated product (Pendo, Amplitude) contributes to the server.

    ``routes(region)`` are served at the root for ``us`` and under ``/<region>``
    otherwise; ``control_routes`` are served under ``/_sandbox/<name>``;
    ``describe()`` feeds ``GET /_sandbox/limits`` (what each limiter refused).
    """

    name: str
    regions: tuple[str, ...]
    routes: Callable[[str], list[BaseRoute]]
    control_routes: list[BaseRoute] = field(default_factory=list)
    describe: Callable[[], dict[str, Any]] = dict


class SandboxState:
    """Everything a request handler may need, built once per server."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.faults = FaultPlan(seed=config.seed)
        for spec in config.faults:
            self.faults.add(dict(spec))
        self.counters = RequestCounters()
        # One world per region: Pendo's subscription and Amplitude's project of a
        # region are the same company, so Amplitude "eu" reads the "eu" world.
        self.worlds = {
            region: World(
                Company(config.seed, config.scale, region, config.pendo_timezone),
                config.now_ms,
            )
            for region in PENDO_REGIONS
        }
        self.halves: dict[str, SandboxHalf] = {}

    def now_ms(self) -> int:
        return self.config.now_ms()

    def world(self, region: str) -> World:
        return self.worlds[region]
