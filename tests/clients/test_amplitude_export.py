"""AmplitudeClient.export over real HTTP against the sandbox: clean runs, no data (only on
the Export API's own 404), truncated archives, windows split on 400/504, the 365-day cap,
flat memory."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from scripted_server import Reply, ScriptedServer

from analytics_assets.amplitude.client import AmplitudeClient, ExportTooLargeError
from analytics_assets.amplitude.export import is_no_data_answer
from analytics_assets.http.errors import DamagedResponseError, TransportError
from analytics_assets.sandbox.amplitude.events import AVG_RECORD_BYTES, EXPORT_EVENTS_PER_SECOND
from analytics_assets.sandbox.config import AmplitudeLimits, SandboxConfig
from analytics_assets.sandbox.server import SandboxServer

NOW = datetime(2026, 6, 18, 12, tzinfo=UTC)
DAY_START = datetime(2026, 6, 16, 0, tzinfo=UTC)
DAY_END = datetime(2026, 6, 16, 23, tzinfo=UTC)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(
        seed=7, now=NOW, amplitude_limits=AmplitudeLimits(processing_lag_hours=0)
    )
    with SandboxServer(config) as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[AmplitudeClient]:
    keys = sandbox.config.amplitude_keys["us"]
    with AmplitudeClient(
        keys.api_key, keys.secret_key, base_url=sandbox.urls.amplitude("us"), max_retry_time=30
    ) as c:
        yield c


@pytest.fixture
def quick_client(sandbox: SandboxServer) -> Iterator[AmplitudeClient]:
    """A client whose backoff sleeps return at once (for faults that repeat every time)."""
    keys = sandbox.config.amplitude_keys["us"]
    with AmplitudeClient(
        keys.api_key,
        keys.secret_key,
        base_url=sandbox.urls.amplitude("us"),
        max_retry_time=30,
        sleep=lambda _seconds: None,
    ) as c:
        yield c


@pytest.fixture
def limits(sandbox: SandboxServer) -> Iterator[AmplitudeLimits]:
    """The sandbox's live limits; restored after the test."""
    lim = sandbox.config.amplitude_limits
    saved = (lim.export_max_bytes, lim.export_time_budget_seconds)
    yield lim
    lim.export_max_bytes, lim.export_time_budget_seconds = saved


@pytest.fixture
def control(sandbox: SandboxServer) -> Iterator[str]:
    url = sandbox.urls.control()
    httpx.delete(f"{url}/faults")
    yield url
    httpx.delete(f"{url}/faults")


def digest(files: list[Path]) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def events_in(files: list[Path]) -> int:
    return sum(len(gzip.decompress(f.read_bytes()).splitlines()) for f in files)


@pytest.fixture(scope="module")
def clean_run(sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory):
    keys = sandbox.config.amplitude_keys["us"]
    dest = tmp_path_factory.mktemp("clean")
    with AmplitudeClient(keys.api_key, keys.secret_key, base_url=sandbox.urls.amplitude("us")) as c:
        return c.export(DAY_START, DAY_END, dest, count_events=True)


def test_export_a_day(clean_run) -> None:
    result = clean_run
    assert result.files and result.windows == [(DAY_START, DAY_END)]
    names = [f.name for f in result.files]
    assert names == sorted(names) and all(n.startswith("187520_2026-06-16_") for n in names)
    assert result.events == events_in(result.files) > 0
    assert result.bytes == sum(f.stat().st_size for f in result.files)
    # Only the extracted files are left: no zip, no partial files.
    assert sorted(p.name for p in result.files[0].parent.iterdir()) == names


def test_no_data_is_an_empty_result(client: AmplitudeClient, tmp_path: Path) -> None:
    future = NOW + timedelta(days=2)
    result = client.export(future, future + timedelta(hours=3), tmp_path)
    assert result.files == [] and result.bytes == 0
    assert not list(tmp_path.iterdir())


def test_span_over_365_days_is_refused_before_sending(
    client: AmplitudeClient, tmp_path: Path
) -> None:
    before = client.stats.snapshot().requests_sent
    with pytest.raises(ValueError, match="365 days"):
        client.export(NOW - timedelta(days=366), NOW, tmp_path)
    assert client.stats.snapshot().requests_sent == before


def test_truncated_archive_is_downloaded_again(
    client: AmplitudeClient, control: str, tmp_path: Path, clean_run
) -> None:
    httpx.post(f"{control}/faults", json={"kind": "truncate", "count": 1, "path": "/api/2/export"})
    before = httpx.get(f"{control}/counters").json()["faults"].get("truncate", 0)
    result = client.export(DAY_START, DAY_END, tmp_path)
    after = httpx.get(f"{control}/counters").json()["faults"].get("truncate", 0)
    assert after == before + 1
    assert digest(result.files) == digest(clean_run.files)


def test_archive_truncated_every_time_fails_clearly(
    quick_client: AmplitudeClient, control: str, tmp_path: Path
) -> None:
    # The re-downloads now back off like every other retry: the sleeps are skipped here.
    httpx.post(f"{control}/faults", json={"kind": "truncate", "count": 50, "path": "/api/2/export"})
    before = quick_client.stats.snapshot()
    with pytest.raises(TransportError, match="incomplete") as info:
        quick_client.export(DAY_START, DAY_START + timedelta(hours=5), tmp_path)
    assert not list(tmp_path.iterdir())
    # One retry loop: the transport's attempts, backoff and stats, not a loop around it.
    spent = quick_client.stats.delta(before)
    assert info.value.attempts == 6 == spent.requests_sent
    assert spent.retries == 5 and spent.transport_errors == 6
    assert "was incomplete 6 times" in str(info.value)


# --- evidence before emptiness: only the Export API's own 404 means "no data" -------------


def test_genuine_no_data_is_flagged_on_the_result(client: AmplitudeClient, tmp_path: Path) -> None:
    future = NOW + timedelta(days=2)
    result = client.export(future, future + timedelta(hours=3), tmp_path)
    assert result.no_data and result.no_data_windows == result.windows
    assert result.files == []


def test_a_day_with_data_is_not_flagged_empty(clean_run) -> None:
    assert not clean_run.no_data and clean_run.no_data_windows == []


def test_an_intermediarys_html_404_is_retried_not_read_as_no_data(
    client: AmplitudeClient, control: str, tmp_path: Path, clean_run
) -> None:
    """Issue 18: a proxy's HTML 404 on /api/2/export emptied a day that had data."""
    httpx.post(
        f"{control}/faults",
        json={"kind": "html", "status": 404, "count": 1, "path": "/api/2/export"},
    )
    before = client.stats.snapshot()
    result = client.export(DAY_START, DAY_END, tmp_path)
    assert digest(result.files) == digest(clean_run.files)
    assert not result.no_data
    spent = client.stats.delta(before)
    assert spent.responses_by_status.get(404) == 1 and spent.retries == 1
    assert httpx.get(f"{control}/counters").json()["faults"].get("html", 0) >= 1


def test_an_html_404_every_time_fails_loudly_naming_it(
    quick_client: AmplitudeClient, control: str, tmp_path: Path, sandbox: SandboxServer
) -> None:
    httpx.post(
        f"{control}/faults",
        json={"kind": "html", "status": 404, "count": 50, "path": "/api/2/export"},
    )
    with pytest.raises(DamagedResponseError) as info:
        quick_client.export(DAY_START, DAY_END, tmp_path)
    text = str(info.value)
    assert "HTTP 404 with HTML where JSON was expected (text/html" in text
    assert "404 Not Found" in text and "not taken as empty" in text
    assert info.value.status == 404 and info.value.attempts == 6
    assert not list(tmp_path.iterdir())
    keys = sandbox.config.amplitude_keys["us"]
    assert keys.api_key not in text and keys.secret_key not in text


NO_DATA = {
    "error": {
        "http_code": 404,
        "type": "unspecified",
        "message": "Unspecified Error",
        "metadata": {"details": "Raw data files were not found."},
    }
}


@pytest.mark.parametrize(
    ("bogus", "said"),
    [
        (Reply(404, {"content-type": "text/html"}, b"<html><h1>Not Found</h1></html>"), "HTML"),
        (Reply(404, {}, b""), "an empty body"),
        (Reply(404, {}, {"message": "Not Found"}), "Not Found"),
        (Reply(404, {}, {"error": {"metadata": {"details": "No such route"}}}), "No such route"),
    ],
)
def test_only_the_export_apis_own_404_body_means_no_data(
    tmp_path: Path, fake_clock, bogus: Reply, said: str
) -> None:
    """Against a scripted server: each other 404 is retried, then the real one is empty."""
    with ScriptedServer() as api:
        api.script(bogus, Reply(404, {"content-type": "application/json"}, NO_DATA))
        with AmplitudeClient(
            "scripted-api-key-123",
            "scripted-secret-456",
            base_url=api.url,
            sleep=fake_clock.sleep,
            clock=fake_clock,
        ) as c:
            result = c.export(DAY_START, DAY_START, tmp_path)
        assert result.no_data and result.files == []
        assert len(api.requests) == 2 and len(fake_clock.sleeps) == 1
        api.script(*[bogus] * 2)
        with (
            AmplitudeClient(
                "scripted-api-key-123",
                "scripted-secret-456",
                base_url=api.url,
                max_attempts=2,
                sleep=fake_clock.sleep,
                clock=fake_clock,
            ) as c,
            pytest.raises(DamagedResponseError, match=said) as info,
        ):
            c.export(DAY_START, DAY_START, tmp_path)
    assert "scripted-secret-456" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_is_no_data_answer_reads_the_body_not_the_status() -> None:
    assert is_no_data_answer(json.dumps(NO_DATA).encode())
    # The live recording's spacing and a missing final period are the same answer.
    assert is_no_data_answer(
        b'{"error": {"http_code": 404, "metadata": {"details": "Raw data files were not found"}}}'
    )
    for other in (
        b"",
        b"<html>Raw data files were not found.</html>",
        b"Raw data files were not found.",
        b'{"error": "Raw data files were not found."}',
        b'{"error": {"metadata": {"details": "Invalid API Key"}}}',
        b"[]",
    ):
        assert not is_no_data_answer(other), other


def test_dropped_connection_is_retried(
    client: AmplitudeClient, control: str, tmp_path: Path, clean_run
) -> None:
    httpx.post(f"{control}/faults", json={"kind": "drop", "count": 1, "path": "/api/2/export"})
    result = client.export(DAY_START, DAY_END, tmp_path)
    assert digest(result.files) == digest(clean_run.files)


def _hour_counts(files: list[Path]) -> list[int]:
    return [len(gzip.decompress(f.read_bytes()).splitlines()) for f in files]


def test_too_large_window_is_split_in_halves(
    client: AmplitudeClient, limits: AmplitudeLimits, tmp_path: Path, clean_run
) -> None:
    # The biggest hour fits; the day does not: the client must halve until windows fit.
    biggest = max(_hour_counts(clean_run.files))
    limits.export_max_bytes = (biggest + 1) * AVG_RECORD_BYTES
    result = client.export(DAY_START, DAY_END, tmp_path)
    assert digest(result.files) == digest(clean_run.files)
    assert len(result.windows) > 1
    covered = sorted(result.windows)
    assert covered[0][0] == DAY_START and covered[-1][1] == DAY_END
    for (_, a_end), (b_start, _) in zip(covered, covered[1:], strict=False):
        assert b_start == a_end + timedelta(hours=1)


def test_timeout_504_is_split_too(
    client: AmplitudeClient, limits: AmplitudeLimits, tmp_path: Path, clean_run
) -> None:
    biggest = max(_hour_counts(clean_run.files))
    limits.export_time_budget_seconds = (biggest + 1) / EXPORT_EVENTS_PER_SECOND
    result = client.export(DAY_START, DAY_END, tmp_path)
    assert digest(result.files) == digest(clean_run.files) and len(result.windows) > 1


def test_one_hour_still_too_large_says_use_s3(
    client: AmplitudeClient, limits: AmplitudeLimits, tmp_path: Path
) -> None:
    limits.export_max_bytes = 1
    with pytest.raises(ExportTooLargeError, match="S3/Snowflake export") as info:
        client.export(DAY_START, DAY_START + timedelta(hours=3), tmp_path)
    assert info.value.status == 400


_SERVE = """
import sys
from datetime import datetime, timezone
from analytics_assets.sandbox.config import AmplitudeLimits, SandboxConfig
from analytics_assets.sandbox.server import SandboxServer
config = SandboxConfig(seed=7, now=datetime(2026, 6, 18, 12, tzinfo=timezone.utc),
                       amplitude_events_per_pendo_event=20.0,
                       amplitude_limits=AmplitudeLimits(processing_lag_hours=0))
with SandboxServer(config) as server:
    print(server.urls.amplitude("us"), flush=True)
    sys.stdin.read()
"""


@pytest.fixture(scope="module")
def big_sandbox_url() -> Iterator[str]:
    """A sandbox with ~30x the events, in its own process so tracemalloc sees only us."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=20)


def test_memory_stays_flat(big_sandbox_url: str, sandbox: SandboxServer, tmp_path: Path) -> None:
    """The archive is streamed to disk: peak Python memory stays far below its size."""
    keys = sandbox.config.amplitude_keys["us"]  # the same default keys in the other process
    with AmplitudeClient(keys.api_key, keys.secret_key, base_url=big_sandbox_url) as client:
        tracemalloc.start()
        try:
            result = client.export(DAY_START, DAY_END + timedelta(hours=12), tmp_path)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    print(f"export {result.bytes / 2**20:.1f} MiB, client peak {peak / 2**20:.1f} MiB")
    assert result.bytes > 15 * 2**20, result.bytes  # an archive of tens of MB...
    assert peak < 6 * 2**20, peak  # ...read through 1 MiB buffers
