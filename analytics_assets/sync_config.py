"""The sync's configuration: time zone, first partition, reports, charts and cohorts.

Read once when the code location loads (assets are defined from it), from
``ANALYTICS_ASSETS_SYNC_CONFIG`` or the file shipped in ``config/sync.yaml``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

DEFAULT_PATH = Path(__file__).resolve().parent / "config" / "sync.yaml"
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class SyncConfigError(ValueError):
    """The sync configuration is invalid; the message names the field and the fix."""


@dataclass(frozen=True)
class NamedItem:
    id: str
    name: str


@dataclass(frozen=True)
class SyncConfig:
    timezone: str = "America/New_York"
    start_date: date = date(2026, 9, 1)
    pendo_app_ids: str | tuple[int, ...] = "*"
    pendo_reports: tuple[NamedItem, ...] = ()
    amplitude_charts: tuple[NamedItem, ...] = ()
    amplitude_cohorts: str | tuple[str, ...] = "all"
    source: str = field(default="", compare=False)


def _named_items(raw: object, where: str) -> tuple[NamedItem, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SyncConfigError(f"{where} must be a list of {{id, name}} entries")
    items, seen = [], set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not entry.get("id") or not entry.get("name"):
            raise SyncConfigError(f"{where}[{i}] needs an id and a name")
        name = str(entry["name"])
        if not _NAME.match(name):
            raise SyncConfigError(
                f"{where}[{i}].name {name!r} must be lower-case letters, digits and underscores"
            )
        if name in seen:
            raise SyncConfigError(f"{where}[{i}].name {name!r} is used twice")
        seen.add(name)
        items.append(NamedItem(str(entry["id"]), name))
    return tuple(items)


def parse_sync_config(data: object, source: str = "<memory>") -> SyncConfig:
    if not isinstance(data, dict):
        raise SyncConfigError(f"{source}: the file must hold a mapping")
    tz = os.environ.get("PENDO_TIMEZONE") or str(data.get("timezone", "America/New_York"))
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise SyncConfigError(f"{source}: unknown timezone {tz!r} (use an IANA name)") from exc
    raw_start = os.environ.get("ANALYTICS_ASSETS_START_DATE") or data.get(
        "start_date", "2026-09-01"
    )
    try:
        start = date.fromisoformat(str(raw_start))
    except ValueError as exc:
        raise SyncConfigError(f"{source}: start_date {raw_start!r} is not YYYY-MM-DD") from exc
    pendo = data.get("pendo") or {}
    amplitude = data.get("amplitude") or {}
    app_ids = pendo.get("app_ids", "*")
    if app_ids != "*" and not (
        isinstance(app_ids, list) and all(isinstance(a, int) for a in app_ids)
    ):
        raise SyncConfigError(f'{source}: pendo.app_ids must be "*" or a list of integers')
    cohorts = amplitude.get("cohorts", "all")
    if cohorts != "all" and not isinstance(cohorts, list):
        raise SyncConfigError(f'{source}: amplitude.cohorts must be "all" or a list of ids')
    return SyncConfig(
        timezone=tz,
        start_date=start,
        pendo_app_ids="*" if app_ids == "*" else tuple(app_ids),
        pendo_reports=_named_items(pendo.get("reports"), "pendo.reports"),
        amplitude_charts=_named_items(amplitude.get("charts"), "amplitude.charts"),
        amplitude_cohorts="all" if cohorts == "all" else tuple(str(c) for c in cohorts),
        source=source,
    )


@lru_cache(maxsize=1)
def load_sync_config() -> SyncConfig:
    path = Path(os.environ.get("ANALYTICS_ASSETS_SYNC_CONFIG") or DEFAULT_PATH)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise SyncConfigError(
            f"sync config {path} not found: set ANALYTICS_ASSETS_SYNC_CONFIG to a file"
        ) from exc
    except yaml.YAMLError as exc:
        raise SyncConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_sync_config(data, str(path))
