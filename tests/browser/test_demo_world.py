"""The demo's world, which ``analytics-assets dev`` serves again (no browser needed).

The demo records, in ``<data dir>/demo.json``, the sandbox's settings and every write that
changed its world (``WriteJournal``, an ASGI wrapper around the sandbox); ``dev`` starts a
sandbox with those settings and replays the writes under the clock each was answered at
(``replay_writes``). Checked here against real sandboxes on loopback: what a replay leaves
is what the original writes left, timestamps included; reads, refused writes and headers
are never journaled, nor a write that carries a key; and the command line's world settings
come from the demo unless a flag says otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx
import pytest

from analytics_assets.cli import _sandbox_config, build_parser
from analytics_assets.demo import DemoWorld, WriteJournal, replay_writes
from analytics_assets.sandbox.config import SandboxConfig
from analytics_assets.sandbox.server import SandboxServer

ACCOUNT = "account-000003"


def _journaled_server(config: SandboxConfig) -> tuple[SandboxServer, WriteJournal]:
    server = SandboxServer(config)
    keys = config.pendo_keys["us"]
    journal = WriteJournal(server.app, server.state.now_ms, [keys.read, keys.write])
    server.app = journal  # type: ignore[assignment]
    return server, journal


def _stored(base: str) -> dict:
    answer = httpx.get(f"{base}/_sandbox/pendo/metadata/us/account/{ACCOUNT}", timeout=30)
    answer.raise_for_status()
    return answer.json()


def _write_plan(base: str, key: str, plan: str) -> httpx.Response:
    return httpx.post(
        f"{base}/api/v1/metadata/account/custom/value",
        headers={"x-pendo-integration-key": key},
        json=[{"accountId": ACCOUNT, "values": {"plan": plan}}],
        timeout=30,
    )


def test_replay_leaves_what_the_writes_left() -> None:
    config = SandboxConfig(seed=7)
    keys = config.pendo_keys["us"]
    server, journal = _journaled_server(config)
    with server as sandbox:
        base = sandbox.urls.base
        # Reads, refusals and test-only controls are not world writes.
        httpx.post(f"{base}/_sandbox/faults", json=[], timeout=30).raise_for_status()
        assert _write_plan(base, keys.read, "pro").status_code in (401, 403)
        assert _write_plan(base, keys.write, "enterprise").status_code == 200
        httpx.post(
            f"{base}/_sandbox/stage",
            json={"action": "account_quiet", "account_id": ACCOUNT, "from": "2026-01-05"},
            timeout=30,
        ).raise_for_status()
        original = _stored(base)
        staged = httpx.get(f"{base}/_sandbox/stage", timeout=30).json()
    writes = journal.snapshot()
    assert [w.path for w in writes] == ["/api/v1/metadata/account/custom/value", "/_sandbox/stage"]
    for write in writes:  # no header, so no key, is ever kept
        assert keys.write not in write.body and keys.write not in write.query
    assert writes[0].auth == "pendo_write:us" and writes[1].auth is None

    fresh = SandboxConfig(seed=7)
    with SandboxServer(fresh) as again:
        assert replay_writes(writes, again.urls.base, fresh) == 2
        replayed = _stored(again.urls.base)
        assert httpx.get(f"{again.urls.base}/_sandbox/stage", timeout=30).json() == staged
        clock = httpx.get(f"{again.urls.base}/_sandbox/clock", timeout=30).json()
    assert replayed["custom"] == original["custom"] == {"plan": "enterprise"}
    # Each write was replayed under the clock it first arrived at (the handler stamps it a
    # moment later), then the clock was let go.
    assert 0 <= original["lastupdated"] - replayed["lastupdated"] < 1000
    assert clock["frozen"] is False


def test_a_write_that_carries_a_key_is_not_journaled() -> None:
    config = SandboxConfig(seed=7)
    keys = config.pendo_keys["us"]
    server, journal = _journaled_server(config)
    with server as sandbox:
        answer = httpx.post(
            f"{sandbox.urls.base}/api/v1/metadata/account/custom/value",
            headers={"x-pendo-integration-key": keys.write},
            json=[{"accountId": ACCOUNT, "values": {"csm_owner": keys.read}}],
            timeout=30,
        )
        assert answer.status_code == 200
    assert journal.snapshot() == []


def test_world_round_trips_through_its_file(tmp_path: Path) -> None:
    config = SandboxConfig(seed=3, scale=2.5, pendo_timezone="Europe/Paris")
    config.amplitude_timezone = config.pendo_timezone
    world = DemoWorld.from_config(config)
    world.start_date, world.days, world.port = "2026-01-01", ["2026-01-01"], 4321
    path = tmp_path / "demo.json"
    world.save(path)
    loaded = DemoWorld.load(path)
    assert loaded == world
    again = SandboxConfig()
    loaded.apply(again)
    assert loaded.differences(again) == []
    assert "seed 3, scale 2.5" in loaded.describe() and "Europe/Paris" in loaded.describe()


def _dev_args(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["dev", *flags])


def test_dev_takes_the_demo_world_unless_flags_change_it() -> None:
    config = SandboxConfig(seed=9, scale=5.0, pendo_timezone="America/Chicago")
    config.amplitude_timezone = config.pendo_timezone
    world = DemoWorld.from_config(config)
    same = _sandbox_config(_dev_args(), world)
    assert (same.seed, same.scale, same.pendo_timezone, same.amplitude_timezone) == (
        9, 5.0, "America/Chicago", "America/Chicago",
    )  # fmt: skip
    assert world.differences(same) == []
    other = _sandbox_config(_dev_args("--seed", "1", "--timezone", "UTC"), world)
    assert (other.seed, other.scale, other.pendo_timezone, other.amplitude_timezone) == (
        1, 5.0, "UTC", "UTC",
    )  # fmt: skip
    assert len(world.differences(other)) == 3


def test_the_sandboxs_amplitude_days_follow_its_timezone() -> None:
    """The project's rule (the Amplitude project in the subscription's time zone) holds
    for a bare sandbox too; a flag sets another on purpose."""
    args = build_parser().parse_args(["sandbox", "--timezone", "Europe/Berlin"])
    assert _sandbox_config(args).amplitude_timezone == "Europe/Berlin"
    assert _sandbox_config(build_parser().parse_args(["sandbox"])).amplitude_timezone == (
        "America/New_York"
    )
    args = build_parser().parse_args(["sandbox", "--amplitude-timezone", "UTC"])
    assert _sandbox_config(args).amplitude_timezone == "UTC"


@pytest.mark.parametrize("command", ["sandbox", "demo"])
def test_other_commands_keep_their_own_defaults(command: str) -> None:
    config = _sandbox_config(build_parser().parse_args([command]))
    assert config.seed == 42 and config.pendo_timezone == "America/New_York"
    assert config.scale == (5.0 if command == "demo" else 1.0)


def test_an_amplitude_group_identify_is_journaled_without_its_key_and_replayed() -> None:
    """The write-back's Identify calls carry the API key in their form body: the journal
    keeps the body without it, and a replay puts the fresh sandbox's key back."""
    import json

    config = SandboxConfig(seed=7)
    key = config.amplitude_keys["us"].api_key
    server = SandboxServer(config)
    journal = WriteJournal(server.app, server.state.now_ms, [key])
    server.app = journal  # type: ignore[assignment]
    identification = json.dumps(
        [{"group_type": "account", "group_value": ACCOUNT, "group_properties": {"plan": "pro"}}]
    )
    with server as sandbox:
        answer = httpx.post(
            f"{sandbox.urls.base}/groupidentify",
            data={"api_key": key, "identification": identification},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        before = httpx.get(f"{sandbox.urls.base}/_sandbox/amplitude/state", timeout=30).json()
    (write,) = journal.snapshot()
    assert write.auth == "amplitude_form:us"
    assert key not in write.body and "api_key" not in write.body
    assert "identification=" in write.body

    fresh = SandboxConfig(seed=7)
    with SandboxServer(fresh) as again:
        assert replay_writes([write], again.urls.base, fresh) == 1  # a refusal would raise
        after = httpx.get(f"{again.urls.base}/_sandbox/amplitude/state", timeout=30).json()
    # The replayed world ingested the group identify as the first one did.
    assert after["us"]["ingested_events"] == before["us"]["ingested_events"] == 1
