"""The shared transport over real HTTP (a scripted local server); sleeps go to a fake clock."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import json
import logging
import pickle
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from scripted_server import Drop, Reply, ScriptedServer

from analytics_assets.http import (
    AdaptiveTokenBucket,
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    CostBudget,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    Secret,
    ServerError,
    Transport,
    TransportConfig,
    TransportError,
    parse_retry_after,
    redact,
    redact_url,
)
from analytics_assets.http.errors import DamagedResponseError, StreamInterruptedError
from analytics_assets.http.transport import DamagedBodyError, json_body_problem


def make(server: ScriptedServer | str, clock: Any, service: str = "pendo", **cfg: Any) -> Transport:
    """A transport on the test server whose sleeps only advance the fake clock.

    Jitter returns its cap, so backoff sleeps are exact: 0.5, 1, 2, 4… with the defaults.
    """
    base_url = server if isinstance(server, str) else server.url
    cfg.setdefault("trust_env", False)
    return Transport(
        TransportConfig(base_url, service, **cfg),
        sleep=clock.sleep,
        clock=clock,
        jitter=lambda cap: cap,
    )


class RecordingLimiter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def acquire(self, cost: float = 1) -> float:
        self.calls.append(("acquire", cost))
        return 0.25

    def release(self, cost: float = 1) -> None:
        self.calls.append(("release", cost))

    def on_throttled(self, retry_after: float | None) -> None:
        self.calls.append(("throttled", retry_after))

    def on_success(self) -> None:
        self.calls.append(("success", None))


# --- retries ---------------------------------------------------------------------------------


def test_retries_server_errors_then_succeeds(server, fake_clock):
    server.script((500, {}, "boom"), (502, {}, "bad gateway"), (200, {}, {"ok": True}))
    with make(server, fake_clock) as t:
        response = t.get("/api/v1/page")
        stats = t.stats.snapshot()
    assert response.json() == {"ok": True}
    assert len(server.requests) == 3
    assert fake_clock.sleeps == [0.5, 1.0]  # exponential: base * 2**n
    assert stats.retries == 2
    assert dict(stats.responses_by_status) == {500: 1, 502: 1, 200: 1}
    assert stats.backoff_sleep_seconds == pytest.approx(1.5)


def test_default_jitter_is_full_jitter_within_the_exponential_cap(server, fake_clock):
    server.script(*[(500, {}, "")] * 4, (200, {}, "ok"))
    cfg = TransportConfig(server.url, "pendo", trust_env=False, backoff_base=0.5)
    with Transport(cfg, sleep=fake_clock.sleep, clock=fake_clock) as t:
        assert t.get("/x").text == "ok"
    assert len(fake_clock.sleeps) == 4
    for n, slept in enumerate(fake_clock.sleeps):
        assert 0 <= slept <= 0.5 * 2**n


def test_429_retry_after_seconds_is_honoured_and_fed_to_the_limiter(server, fake_clock):
    server.script((429, {"Retry-After": "7"}, ""), (200, {}, "ok"))
    limiter = RecordingLimiter()
    with make(server, fake_clock) as t:
        assert t.get("/x", limiter=limiter, cost=3).text == "ok"
        stats = t.stats.snapshot()
    assert fake_clock.sleeps == [7.0]
    assert limiter.calls == [
        ("acquire", 3),
        ("throttled", 7.0),  # before the slot is freed, so a waiting thread sees the pause
        ("release", 3),
        ("acquire", 3),
        ("success", None),
        ("release", 3),
    ]
    assert stats.throttled == 1
    assert stats.limiter_wait_seconds == pytest.approx(0.5)


def test_429_retry_after_http_date_is_honoured(server, fake_clock):
    wall = 1_800_000_000.0
    server.script(
        (429, {"Retry-After": email.utils.formatdate(wall + 30, usegmt=True)}, ""), "sleep:0"
    )
    cfg = TransportConfig(server.url, "pendo", trust_env=False)
    with Transport(cfg, sleep=fake_clock.sleep, clock=fake_clock, wall_clock=lambda: wall) as t:
        t.get("/x")
    assert fake_clock.sleeps == [pytest.approx(30.0)]


def test_retry_after_beyond_the_budget_raises_at_once(server, fake_clock):
    server.script((429, {"Retry-After": "3600"}, {"error": "Too many requests"}))
    with make(server, fake_clock, max_retry_time=60) as t, pytest.raises(RateLimitedError) as info:
        t.get("/x")
    err = info.value
    assert fake_clock.sleeps == []
    assert len(server.requests) == 1
    assert err.retry_after == 3600
    assert err.status == 429
    assert "throttling; lower the rate, or let the run retry later" in str(err)
    assert "exceeds the remaining retry budget" in str(err)


def test_total_retry_time_is_capped(server, fake_clock):
    server.script(*[(503, {}, "")] * 20)
    with (
        make(
            server, fake_clock, max_attempts=100, max_retry_time=10, backoff_base=1, backoff_max=4
        ) as t,
        pytest.raises(ServerError) as info,
    ):
        t.get("/x")
    # 1 + 2 + 4 = 7 s, then the last 3 s of the budget, then give up.
    assert fake_clock.sleeps == [1, 2, 4, 3]
    assert len(server.requests) == 5
    assert info.value.attempts == 5
    assert "retry time budget of 10 s used up" in str(info.value)


def test_attempts_are_capped(server, fake_clock):
    server.script(*[(500, {}, "boom")] * 3)
    with make(server, fake_clock, max_attempts=3) as t, pytest.raises(ServerError) as info:
        t.get("/x")
    assert len(server.requests) == 3
    assert "after 3 attempts" in str(info.value)
    assert 'The server said: "boom"' in str(info.value)


def test_non_idempotent_post_is_not_resent_after_a_read_timeout(server, fake_clock):
    server.script("sleep:0.6")
    with make(server, fake_clock) as t, pytest.raises(TransportError) as info:
        t.post("/api/v1/metadata/visitor/custom/value", json=[{"x": 1}], timeout=0.1)
    assert len(server.requests) == 1
    assert fake_clock.sleeps == []
    assert "ReadTimeout" in str(info.value)
    assert "not resent" in str(info.value) and "idempotent=True" in str(info.value)


def test_non_idempotent_post_is_resent_after_503_and_429(server, fake_clock):
    server.script((503, {}, ""), (429, {}, ""), (200, {}, "done"))
    with make(server, fake_clock) as t:
        assert t.post("/2/httpapi", json={"events": []}).text == "done"
    assert [r.method for r in server.requests] == ["POST"] * 3
    assert all(r.body == b'{"events":[]}' for r in server.requests)


@pytest.mark.parametrize("action", [(500, {}, "maybe processed"), "drop"])
def test_non_idempotent_post_is_not_resent_when_it_may_have_been_processed(
    server, fake_clock, action
):
    server.script(action, (200, {}, "should not be reached"))
    with make(server, fake_clock) as t, pytest.raises((ServerError, TransportError)):
        t.post("/x", json={})
    assert len(server.requests) == 1


def test_post_marked_idempotent_is_resent_after_a_read_timeout(server, fake_clock):
    server.script("sleep:0.6", (200, {}, {"results": []}))
    with make(server, fake_clock) as t:
        response = t.post("/api/v1/aggregation", json={}, idempotent=True, timeout=0.1)
    assert response.json() == {"results": []}
    assert len(server.requests) == 2


def test_connect_errors_are_retried_even_for_post(fake_clock):
    # A port nobody listens on: the request provably never reached a server.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        make(f"http://127.0.0.1:{port}", fake_clock, max_attempts=3) as t,
        pytest.raises(TransportError) as info,
    ):
        t.post("/x", json={})
    assert len(fake_clock.sleeps) == 2
    assert info.value.status is None
    assert "ConnectError" in str(info.value)


def test_connection_dropped_mid_body_is_retried_for_get(server, fake_clock):
    server.script("drop", (200, {}, "complete body"))
    with make(server, fake_clock) as t:
        assert t.get("/api/2/events/list").text == "complete body"
        assert t.stats.snapshot().transport_errors == 1
    assert len(server.requests) == 2


# --- downloads -------------------------------------------------------------------------------


def test_download_restarts_after_a_dropped_connection(server, fake_clock, tmp_path):
    payload = bytes(range(256)) * 1200  # ~300 KB, several chunks
    server.script(Drop(body=payload[:5000], declared_length=len(payload)), Reply(200, {}, payload))
    dest = tmp_path / "out" / "export.zip"
    with make(server, fake_clock) as t:
        written = t.download(
            "GET", "/api/2/export", dest, params={"start": "20260101T00"}, chunk_size=4096
        )
        assert t.stats.snapshot().bytes_received >= len(payload)
    assert written == len(payload)
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in dest.parent.iterdir()) == ["export.zip"]
    assert len(server.requests) == 2


def test_download_detects_a_body_shorter_than_its_content_length(fake_clock, tmp_path):
    bodies = [b"short", b"0123456789"]

    def handler(request: httpx.Request) -> httpx.Response:
        body = bodies.pop(0)
        return httpx.Response(200, headers={"content-length": "10"}, content=body)

    cfg = TransportConfig("https://example.test", "amplitude")
    dest = tmp_path / "file.bin"
    with Transport(
        cfg, sleep=fake_clock.sleep, clock=fake_clock, http_transport=httpx.MockTransport(handler)
    ) as t:
        assert t.download("GET", "/f", dest) == 10
    assert dest.read_bytes() == b"0123456789"
    assert len(fake_clock.sleeps) == 1


def test_download_gives_up_and_leaves_no_file(server, fake_clock, tmp_path):
    server.script("drop", "drop", "drop")
    dest = tmp_path / "x.bin"
    with make(server, fake_clock, max_attempts=3) as t, pytest.raises(TransportError) as info:
        t.download("GET", "/x", dest)
    assert list(tmp_path.iterdir()) == []
    assert "after 3 attempts" in str(info.value)


def test_download_error_status_raises_typed_error(server, fake_clock, tmp_path):
    details = {
        "error": {
            "http_code": 404,
            "message": "Unspecified Error",
            "metadata": {"details": "Raw data files were not found."},
        }
    }
    server.script((404, {}, details))
    with make(server, fake_clock, service="amplitude") as t, pytest.raises(NotFoundError) as info:
        t.download("GET", "/api/2/export", tmp_path / "x.zip")
    assert info.value.body_excerpt == "Raw data files were not found."
    assert "no data in that window" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_download_check_failure_downloads_again_in_the_same_loop(server, fake_clock, tmp_path):
    """A body that arrives whole but fails the caller's check (a zip that is not whole) is
    fetched again by the same loop: one attempt count, backoff and stats."""
    server.script((200, {}, b"PK-cut"), (200, {}, b"PK-whole"))
    seen: list[bytes] = []

    def whole_zip(path: Path) -> None:
        seen.append(path.read_bytes())
        if not path.read_bytes().endswith(b"whole"):
            raise ValueError("not a whole archive")

    dest = tmp_path / "a.zip"
    with make(server, fake_clock) as t:
        written = t.download(
            "GET",
            "/api/2/export",
            dest,
            check=whole_zip,
            check_retryable=lambda exc: isinstance(exc, ValueError),
        )
        stats = t.stats.snapshot()
    assert written == 8 and dest.read_bytes() == b"PK-whole"
    assert seen == [b"PK-cut", b"PK-whole"]
    assert fake_clock.sleeps == [0.5]
    assert (stats.retries, stats.transport_errors) == (1, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip"]


def test_download_check_error_not_retryable_propagates_and_leaves_no_file(
    server, fake_clock, tmp_path
):
    server.script((200, {}, b"data"))

    def refuse(path: Path) -> None:
        raise ValueError("wrong format")

    with make(server, fake_clock) as t, pytest.raises(ValueError, match="wrong format"):
        t.download("GET", "/f", tmp_path / "f.bin", check=refuse)
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1 and fake_clock.sleeps == []


# --- consume: one retry loop for a request and the reading of its body ---------------------


class BreakingStream(httpx.SyncByteStream):
    """A body that sends ``chunks`` and then, if ``error`` is set, breaks with it."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error


def mock_transport(
    answers: list[httpx.Response], clock: Any, jitter: Any = lambda cap: cap, **cfg: Any
) -> tuple[Transport, list[httpx.Request]]:
    """A transport answering from ``answers`` in order; the requests it got are recorded."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers.pop(0)

    transport = Transport(
        TransportConfig("https://api.test", "pendo", **cfg),
        sleep=clock.sleep,
        clock=clock,
        jitter=jitter,
        http_transport=httpx.MockTransport(handler),
    )
    return transport, sent


def broken(*chunks: bytes) -> httpx.Response:
    return httpx.Response(200, stream=BreakingStream(list(chunks), httpx.ReadError("peer closed")))


def whole(*chunks: bytes) -> httpx.Response:
    return httpx.Response(200, stream=BreakingStream(list(chunks)))


def lines(response: httpx.Response) -> Iterator[bytes]:
    """A reader that hands out each line as soon as it is complete."""
    rest = b""
    for chunk in response.iter_bytes():
        *done, rest = (rest + chunk).split(b"\n")
        yield from done
    if rest:
        yield rest


def all_at_once(response: httpx.Response) -> Iterator[bytes]:
    """A reader that holds everything back until the body is complete."""
    yield b"".join(response.iter_bytes())


def test_consume_sends_nothing_until_asked_and_resends_a_body_broken_before_any_item(
    server, fake_clock
):
    server.script(Drop(b"half of it"), (200, {}, "the whole body"))
    with make(server, fake_clock) as t:
        items = t.consume("GET", "/api/2/export", all_at_once)
        assert server.requests == []  # lazy: the first next() sends
        assert list(items) == [b"the whole body"]
        stats = t.stats.snapshot()
    assert len(server.requests) == 2
    assert fake_clock.sleeps == [0.5]
    assert (stats.retries, stats.transport_errors, stats.requests_sent) == (1, 1, 2)
    assert stats.backoff_sleep_seconds == pytest.approx(0.5)


def test_consume_shares_attempts_backoff_and_retry_after_with_status_retries(fake_clock):
    """503, a broken body, a 429 with Retry-After, then success: one loop counts them all
    (the sleeps run 0.5, 1 by attempt number, then the server's 7 s)."""
    caps: list[float] = []
    answers = [
        httpx.Response(503),
        broken(b"a\n"),
        httpx.Response(429, headers={"Retry-After": "7"}),
        whole(b"a\nb\n", b"c"),
    ]
    t, sent = mock_transport(answers, fake_clock, jitter=lambda cap: caps.append(cap) or cap)
    with t:
        assert list(t.consume("GET", "/x", all_at_once)) == [b"a\nb\nc"]
        stats = t.stats.snapshot()
    assert len(sent) == 4
    assert caps == [0.5, 1.0]  # the injected jitter is asked once per backoff, by attempt
    assert fake_clock.sleeps == [0.5, 1.0, 7.0]
    assert (stats.retries, stats.transport_errors, stats.throttled) == (3, 1, 1)
    assert dict(stats.responses_by_status) == {503: 1, 200: 2, 429: 1}


def test_consume_gives_up_after_max_attempts_counted_across_both_kinds(fake_clock):
    answers = [httpx.Response(503), broken(b"a"), broken(b"a"), whole(b"never sent")]
    t, sent = mock_transport(answers, fake_clock, max_attempts=3)
    with t, pytest.raises(StreamInterruptedError) as info:
        list(t.consume("GET", "/x", all_at_once))
    err = info.value
    assert len(sent) == 3  # not 3 per kind
    assert err.attempts == 3 and err.items_yielded == 0
    assert err.reason == "gave up after 3 attempts"
    assert "no complete response (ReadError: peer closed); gave up after 3 attempts" in str(err)
    assert isinstance(err, TransportError) and err.__cause__ is not None
    assert fake_clock.sleeps == [0.5, 1.0]


def test_consume_retry_time_budget_is_shared(fake_clock):
    answers = [httpx.Response(503), broken(b"a"), whole(b"never sent")]
    t, sent = mock_transport(answers, fake_clock, max_retry_time=1, backoff_base=1)
    with t, pytest.raises(StreamInterruptedError) as info:
        list(t.consume("GET", "/x", all_at_once))
    assert len(sent) == 2
    assert fake_clock.sleeps == [1]  # the 503's backoff used the whole budget
    assert "retry time budget of 1 s used up" in info.value.reason


def test_consume_never_resends_once_an_item_was_handed_out(fake_clock):
    """Resending would hand the first lines out twice: the break is raised instead, and the
    consumer has exactly the lines before it, once each."""
    t, sent = mock_transport([broken(b"one\ntwo\nthr"), whole(b"one\ntwo\nthree\n")], fake_clock)
    got: list[bytes] = []
    with t, pytest.raises(StreamInterruptedError) as info:
        for line in t.consume("GET", "/x", lines):
            got.append(line)
    err = info.value
    assert got == [b"one", b"two"]
    assert err.items_yielded == 2 and err.detail == "ReadError: peer closed"
    assert "after 2 items" in str(err)
    assert len(sent) == 1 and fake_clock.sleeps == []
    stats = t.stats.snapshot()
    assert (stats.retries, stats.transport_errors) == (0, 1)


def test_consume_retries_what_the_predicate_calls_a_fault_and_nothing_else(fake_clock):
    def parse(response: httpx.Response) -> Iterator[int]:
        body = response.read()
        if not body.isdigit():
            raise ValueError(f"damaged: {body!r}")
        yield int(body)

    t, sent = mock_transport([whole(b"4x"), whole(b"42")], fake_clock)
    with t:
        damaged_is_a_fault = t.consume(
            "GET", "/x", parse, retryable=lambda exc: isinstance(exc, ValueError)
        )
        assert list(damaged_is_a_fault) == [42]
        assert len(sent) == 2 and t.stats.snapshot().transport_errors == 1

    t, sent = mock_transport([whole(b"4x"), whole(b"42")], fake_clock)
    with t, pytest.raises(ValueError, match="damaged"):
        list(t.consume("GET", "/x", parse))  # default: only a broken transfer is a fault
    assert len(sent) == 1 and t.stats.snapshot().transport_errors == 0


def test_consume_does_not_resend_a_non_idempotent_post_broken_mid_body(fake_clock):
    t, sent = mock_transport([broken(b"a"), whole(b"b")], fake_clock)
    with t, pytest.raises(StreamInterruptedError) as info:
        list(t.consume("POST", "/x", all_at_once, json={}))
    assert len(sent) == 1 and fake_clock.sleeps == []
    assert "may already have processed this POST" in str(info.value)
    t, sent = mock_transport([broken(b"a"), whole(b"b")], fake_clock)
    with t:
        assert list(t.consume("POST", "/x", all_at_once, json={}, idempotent=True)) == [b"b"]
    assert len(sent) == 2 and sent[0].content == sent[1].content == b"{}"


def test_consume_error_statuses_and_expected_ones(fake_clock):
    t, _ = mock_transport([httpx.Response(404, json={"message": "no such thing"})], fake_clock)
    with t, pytest.raises(NotFoundError, match="no such thing"):
        list(t.consume("GET", "/x", all_at_once))
    t, _ = mock_transport([httpx.Response(413, content=b"too big")], fake_clock)
    with t:
        statuses = t.consume("GET", "/x", lambda r: iter([r.status_code]), expected=(413,))
        assert list(statuses) == [413]


def test_consume_closes_and_releases_the_limiter_when_the_consumer_stops_early(fake_clock):
    limiter = RecordingLimiter()
    finished: list[str] = []

    def read(response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from lines(response)
        finally:
            finished.append("reader cleaned up")

    t, _ = mock_transport([whole(b"1\n2\n3\n")], fake_clock)
    with t:
        items = t.consume("GET", "/x", read, limiter=limiter)
        assert next(items) == b"1"
        assert ("release", 1) not in limiter.calls  # the slot is held while reading
        items.close()
    assert limiter.calls.count(("release", 1)) == 1
    assert finished == ["reader cleaned up"]


# --- download: an expected status read by the caller ---------------------------------------


class _Sentinel(Exception):
    """What a caller's ``on_expected`` raises for the service's own answer."""


def test_download_on_expected_resends_a_retryable_answer_and_propagates_the_rest(
    server, fake_clock, tmp_path
):
    """A 404 that is an intermediary's page is resent in the same loop; the service's own
    404 reaches the caller; neither writes a file."""
    server.script(
        (404, HTML, "<html><body><h1>404 Not Found</h1>nginx</body></html>"),
        (404, {}, {"error": {"metadata": {"details": "no data"}}}),
    )
    seen: list[bytes] = []

    def on_expected(response: httpx.Response) -> None:
        body = response.read()
        seen.append(body)
        if body.startswith(b"<"):
            raise DamagedBodyError("HTTP 404 with HTML")
        raise _Sentinel("the service's own 404")

    dest = tmp_path / "a.zip"
    with make(server, fake_clock) as t, pytest.raises(_Sentinel):
        t.download("GET", "/api/2/export", dest, expected=(404,), on_expected=on_expected)
    assert len(seen) == 2 and len(server.requests) == 2
    assert fake_clock.sleeps == [0.5]
    assert list(tmp_path.iterdir()) == []
    server.script((404, {}, "x"))
    with make(server, fake_clock) as t:
        assert t.download("GET", "/f", dest, expected=(404,), on_expected=lambda r: None) == 0
        stats = t.stats.snapshot()
    assert stats.retries == 0 and not dest.exists()


def test_download_on_expected_gives_up_with_the_last_answer_named(server, fake_clock, tmp_path):
    server.script(*[(404, HTML, "<html>404</html>")] * 3)

    def on_expected(response: httpx.Response) -> None:
        raise DamagedBodyError("HTTP 404 with HTML where the no-data answer was expected")

    with make(server, fake_clock, max_attempts=3) as t, pytest.raises(DamagedResponseError) as info:
        t.download("GET", "/x", tmp_path / "x", expected=(404,), on_expected=on_expected)
    assert info.value.attempts == 3 and len(server.requests) == 3
    assert "HTTP 404 with HTML where the no-data answer was expected" in str(info.value)


# --- JSON answers: a damaged body is retried like a dropped connection -----------------------


def json_answer(body: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return httpx.Response(200, headers=headers, content=body)


GOOD = b'{"results": [1, 2, 3]}'
PORTAL = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Log in</body></html>"


@pytest.mark.parametrize(
    ("damaged", "content_type", "said"),
    [
        (PORTAL, "text/html", "HTML where JSON was expected (text/html, 82 bytes"),
        (b"", "application/json", "an empty body where JSON was expected"),
        (GOOD[:13], "application/json", "JSON cut short after 13 bytes"),
        (b'{"a": 1}} trailing', "application/json", "JSON damaged at byte 8 of 18 bytes"),
        (b"Internal error", "text/plain", "a body that is not JSON where JSON was expected"),
    ],
)
def test_get_json_resends_a_damaged_answer_in_the_one_loop(fake_clock, damaged, content_type, said):
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("analytics_assets.http").addHandler(handler)
    try:
        t, sent = mock_transport(
            [json_answer(damaged, content_type), httpx.Response(503), json_answer(GOOD)],
            fake_clock,
        )
        with t:
            assert t.get_json("/api/v1/feature") == {"results": [1, 2, 3]}
            stats = t.stats.snapshot()
    finally:
        logging.getLogger("analytics_assets.http").removeHandler(handler)
    assert len(sent) == 3
    assert fake_clock.sleeps == [0.5, 1.0]  # one backoff series for the damage and the 503
    assert (stats.retries, stats.transport_errors) == (2, 1)
    assert sent[0].headers["accept"] == "application/json"
    assert any(said in w for w in warnings), warnings


def test_get_json_gives_up_saying_what_was_wrong_never_the_key(fake_clock):
    key = "integration-key-0123456789"
    page = f"<html><title>Proxy error</title><body>bad key {key}</body></html>".encode()
    t, sent = mock_transport(
        [json_answer(page, "text/html")] * 3, fake_clock, max_attempts=3, secrets=(key,)
    )
    with t, pytest.raises(DamagedResponseError) as info:
        t.get_json("/api/v1/report")
    err = info.value
    text = str(err)
    assert len(sent) == 3 and err.attempts == 3 and err.items_yielded == 0
    assert "no complete response (HTML where JSON was expected (text/html" in text
    assert "Proxy error" in text and "gave up after 3 attempts" in text
    assert key not in text and key not in repr(err) and key not in str(err.__cause__)
    assert "base_url" in text  # another party's page: the hint points at the host
    assert isinstance(err, StreamInterruptedError) and isinstance(err, TransportError)


def test_json_cut_short_says_so_and_does_not_blame_the_host(server, fake_clock):
    """Over a real socket: a body cut with a Content-Length that matches the cut."""
    cut = b'{"cohorts": [{"id": "c1"}, {"id": "c'
    server.script(*[(200, {"content-type": "application/json"}, cut)] * 2)
    with make(server, fake_clock, max_attempts=2) as t, pytest.raises(DamagedResponseError) as info:
        t.get_json("/api/3/cohorts")
    text = str(info.value)
    assert f"JSON cut short after {len(cut)} bytes" in text
    assert "base_url" not in text and "cut short or garbled on the way" in text
    assert len(server.requests) == 2


def test_request_json_never_resends_a_damaged_answer_to_a_non_idempotent_post(fake_clock):
    t, sent = mock_transport([json_answer(b"<html>oops</html>", "text/html")], fake_clock)
    with t, pytest.raises(DamagedResponseError) as info:
        t.request_json("POST", "/api/3/cohorts/upload", json={"name": "x"})
    assert len(sent) == 1 and fake_clock.sleeps == []
    assert "may already have processed this POST" in str(info.value)


def test_request_json_expected_statuses_empty_answers_and_redirects(fake_clock):
    t, _ = mock_transport(
        [
            httpx.Response(409, json={"success": False, "errors": [{"message": "exists"}]}),
            httpx.Response(409, content=b"<html>conflict</html>"),
            httpx.Response(204),
            json_answer(b"", None),
            json_answer(b'{"ok": true}', "text/plain"),  # parses: the label is not trusted
            httpx.Response(302, headers={"location": "https://elsewhere.test/?token=abc"}),
        ],
        fake_clock,
        follow_redirects=False,
    )
    with t:
        conflict = t.request_json("POST", "/t", data={"a": "1"}, expected=(409,))
        assert conflict.status == 409 and conflict.data["errors"][0]["message"] == "exists"
        assert t.request_json("POST", "/t", expected=(409,)).data is None
        assert t.request_json("PUT", "/t", allow_empty=True).data is None
        assert t.request_json("PUT", "/t", allow_empty=True).status == 200
        assert t.get_json("/t") == {"ok": True}
        with pytest.raises(ApiError, match="unexpected redirect") as info:
            t.get_json("/t")
        assert "abc" not in str(info.value)
        assert t.stats.snapshot().retries == 0


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b'{"a": 1}', "application/json", None),
        (b"null", None, None),
        (b"  ", "application/json", "an empty body where JSON was expected (application/json)"),
        (b"<html><h1>502 Bad Gateway</h1></html>", "text/html; charset=utf-8",
         'HTML where JSON was expected (text/html, 37 bytes: "502 Bad Gateway")'),
        (b"<p>hi</p>", None, 'HTML where JSON was expected (no content type, 9 bytes: "hi")'),
        (b'[1, 2, 3', None, "JSON cut short after 8 bytes (no content type)"),
        (b'[1, 2, 3]  \n', None, None),
        (b'{"a": tru', "application/json", "JSON cut short after 9 bytes (application/json)"),
    ],
)  # fmt: skip
def test_json_body_problem_names_what_came_back(body, content_type, expected):
    value, problem = json_body_problem(body, content_type)
    assert problem == expected
    if expected is None:
        assert value == json.loads(body)


# --- error mapping ---------------------------------------------------------------------------

WAF_PAGE = (
    "<html><head><style>h1{}</style></head><body><h1>503 Service Unavailable</h1></body></html>"
)
CHART_ERROR = {
    "error": {
        "http_code": 400,
        "type": "invalid",
        "message": "Invalid chart definition",
        "metadata": {"details": "Invalid user property country"},
    }
}
INGESTION_ERROR = {
    "code": 400,
    "error": "Request missing required field",
    "missing_field": "api_key",
}
TAXONOMY_ERROR = {"success": False, "errors": [{"message": "Not found"}]}
HTML = {"content-type": "text/html"}

STATUS_CASES = [
    (400, "Cannot parse filter expression", {}, BadRequestError,
     ['The server said: "Cannot parse filter expression"', "Fix the request or narrow the range"]),
    (400, CHART_ERROR, {}, BadRequestError,
     ["Invalid chart definition: Invalid user property country"]),
    (400, INGESTION_ERROR, {}, BadRequestError,
     ["missing required field", '"missing_field":"api_key"']),
    (401, "", {}, AuthenticationError, ["HTTP 401", "integration key", "region (us"]),
    (403, "", {}, AuthenticationError, ["HTTP 403", "wrong-region key as a bad key"]),
    (404, "", {}, NotFoundError, ["HTTP 404", "Check the id"]),
    (408, "", {}, ServerError, ["HTTP 408", "smaller batches"]),
    (409, TAXONOMY_ERROR, {}, ApiError, ['"Not found"']),
    (413, {"code": 413, "error": "Payload too large"}, {}, BadRequestError,
     ["Payload too large", "split it into smaller batches"]),
    (414, "", {}, BadRequestError, ["URL is too long"]),
    (422, "unprocessable", {}, BadRequestError, ["unprocessable"]),
    (429, "", {}, RateLimitedError, ["HTTP 429", "lower the rate, or let the run retry later"]),
    (500, "", {}, ServerError, ["HTTP 500", "retry later"]),
    (503, WAF_PAGE, HTML, ServerError, ['"503 Service Unavailable"']),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "headers", "cls", "phrases"), STATUS_CASES)
def test_status_maps_to_an_instructive_typed_error(
    server, fake_clock, status, body, headers, cls, phrases
):
    server.script((status, headers, body))
    with make(server, fake_clock, max_attempts=1) as t, pytest.raises(ApiError) as info:
        t.get("/api/v1/thing", params={"id": "a b"})
    err = info.value
    assert type(err) is cls
    assert (err.status, err.service, err.method) == (status, "pendo", "GET")
    assert err.url == f"{server.url}/api/v1/thing?id=a+b"
    for phrase in phrases:
        assert phrase in str(err)
    assert "<" not in (err.body_excerpt or "")


def test_403_meaning_is_chosen_per_service(server, fake_clock):
    def pendo_403(request: httpx.Request, response: httpx.Response) -> type[ApiError]:
        # A write answered 403 means a read-only key; a read answered 403 means a bad key.
        is_write = "/metadata/" in request.url.path and request.method in ("POST", "PUT")
        return PermissionDeniedError if is_write else AuthenticationError

    server.script((403, {}, ""), (403, {}, ""))
    with make(server, fake_clock, classify_403=pendo_403, max_attempts=1) as t:
        with pytest.raises(PermissionDeniedError, match="Allow Write Access"):
            t.post("/api/v1/metadata/account/custom/value", json=[], idempotent=True)
        with pytest.raises(AuthenticationError):
            t.get("/api/v1/visitor/v1")


def test_amplitude_bad_key_message(server, fake_clock):
    body = {"error": {"http_code": 403, "type": "unspecified", "message": "Unspecified Error",
                      "metadata": {"details": "Invalid API Key"}}}  # fmt: skip
    server.script((403, {}, body))
    with (
        make(server, fake_clock, service="amplitude") as t,
        pytest.raises(AuthenticationError) as info,
    ):
        t.get("/api/2/events/list")
    assert info.value.body_excerpt == "Invalid API Key"
    assert "US or EU" in str(info.value)


def test_expected_statuses_are_returned_not_raised(server, fake_clock):
    server.script((404, {}, "no data"))
    with make(server, fake_clock) as t:
        response = t.get("/api/2/export", expected=(404,))
    assert response.status_code == 404
    assert response.text == "no data"


def test_body_excerpt_is_capped(server, fake_clock):
    server.script((400, {}, "x" * 5000))
    with make(server, fake_clock) as t, pytest.raises(BadRequestError) as info:
        t.get("/x")
    assert len(info.value.body_excerpt) == 500


def test_errors_survive_pickling(server, fake_clock):
    server.script((429, {"Retry-After": "5000"}, "slow down"))
    with make(server, fake_clock, max_retry_time=1) as t, pytest.raises(RateLimitedError) as info:
        t.get("/x")
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is RateLimitedError
    assert str(copy) == str(info.value)
    assert (copy.status, copy.retry_after, copy.body_excerpt) == (429, 5000, "slow down")


# --- secrets -----------------------------------------------------------------------------------

KEY = "SECRET-KEY-123"
USER = "amp-api-key-789"
PASSWORD = "p@ss/SECRET+456"  # characters that change when URL-encoded


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}


def test_secrets_never_appear_in_logs_errors_or_stats(server, fake_clock, caplog):
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    server.script(
        (500, {}, f"upstream said key={KEY}"),
        (
            403,
            {},
            {
                "error": {
                    "message": f"Invalid API key: {KEY}",
                    "metadata": {"details": f"Basic {basic}"},
                }
            },
        ),
    )
    caplog.set_level(logging.DEBUG)
    with (
        make(
            server,
            fake_clock,
            default_headers={"x-pendo-integration-key": Secret(KEY)},
            auth=(Secret(USER), Secret(PASSWORD)),
        ) as t,
        pytest.raises(AuthenticationError) as info,
    ):
        t.get("/api/v1/visitor/v1", params={"api_key": KEY, "password": PASSWORD, "q": "kept"})
    err = info.value
    # The secrets really were sent, so the checks below are not vacuous.
    assert server.requests[0].headers["x-pendo-integration-key"] == KEY
    assert server.requests[0].headers["authorization"] == f"Basic {basic}"
    assert any(r.name == "httpx" for r in caplog.records)
    assert any(
        r.levelno == logging.WARNING and "retry 2/6" in r.getMessage() for r in caplog.records
    )

    texts = [r.getMessage() for r in caplog.records]
    texts += [str(err), repr(err), err.url or "", err.body_excerpt or ""]
    texts += [
        repr(t),
        repr(t.config),
        repr(t.stats),
        t.stats.summary(),
        str(t.stats.snapshot().as_dict()),
    ]
    forbidden = _forms(KEY) | _forms(PASSWORD) | {basic}
    for text in texts:
        for secret in forbidden:
            assert secret not in text, f"{secret!r} leaked in {text!r}"
    assert "q=kept" in err.url and "api_key=***" in err.url
    assert "Invalid API key: ***" in str(err)


def test_secret_holder_never_shows_its_value():
    s = Secret(KEY)
    assert s.get() == KEY
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in f"{s}"
    assert Secret(s) == s and bool(Secret("")) is False


def test_redact_covers_encoded_forms():
    basic = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    text = f"raw {PASSWORD} url {quote(PASSWORD, safe='')} basic {basic} other"
    clean = redact(text, [PASSWORD, "user"])
    assert clean == "raw *** url *** basic *** other"
    assert redact("nothing here", []) == "nothing here"


def test_redact_url_drops_secret_looking_query_values():
    url = "https://u:pw@amplitude.com/api/2/x?api_key=abc&secret=def&token=ghi&start=20260101&Key=z"
    assert (
        redact_url(url)
        == "https://***@amplitude.com/api/2/x?api_key=***&secret=***&token=***&start=20260101&Key=***"
    )


def test_secret_headers_do_not_follow_a_redirect_to_another_origin(server, fake_clock):
    other = server.url.replace("127.0.0.1", "localhost")
    server.script((302, {"location": f"{other}/s3/file.csv"}, ""), (200, {}, "user_id\nu1\n"))
    with make(
        server,
        fake_clock,
        default_headers={"x-pendo-integration-key": Secret(KEY)},
        auth=("amp-user", "amp-pass"),
    ) as t:
        assert t.get("/api/5/cohorts/request/r1/file").text == "user_id\nu1\n"
    first, second = server.requests
    assert first.headers["x-pendo-integration-key"] == KEY and "authorization" in first.headers
    assert second.path == "/s3/file.csv"
    assert "x-pendo-integration-key" not in second.headers and "authorization" not in second.headers


def test_configuration_errors_are_raised_before_any_request():
    with pytest.raises(ConfigurationError, match="is its key set"):
        Transport(
            TransportConfig(
                "https://app.pendo.io",
                "pendo",
                default_headers={"x-pendo-integration-key": Secret("")},
            )
        )
    with pytest.raises(ConfigurationError, match="absolute http"):
        Transport(TransportConfig("app.pendo.io", "pendo"))
    with pytest.raises(ConfigurationError, match="max_attempts"):
        Transport(TransportConfig("https://app.pendo.io", "pendo", max_attempts=0))


# --- streaming, limiters, threads, stats -------------------------------------------------------


def test_stream_returns_an_unread_response_and_releases_the_limiter_on_close(server, fake_clock):
    server.script((200, {}, "a" * 10_000))
    limiter = RecordingLimiter()
    with make(server, fake_clock) as t:
        response = t.get("/x", stream=True, limiter=limiter)
        assert not response.is_stream_consumed
        assert ("release", 1) not in limiter.calls
        with contextlib.closing(response):
            assert sum(len(c) for c in response.iter_bytes()) == 10_000
        assert limiter.calls.count(("release", 1)) == 1
        assert t.stats.snapshot().bytes_received == 10_000


def test_429_halves_the_token_bucket_rate(server, fake_clock):
    bucket = AdaptiveTokenBucket(rate=10, burst=1, clock=fake_clock, sleep=fake_clock.sleep)
    server.script((429, {}, ""), (200, {}, "ok"))
    with make(server, fake_clock) as t:
        t.get("/x", limiter=bucket)
    assert bucket.rate == 5


def test_one_transport_serves_many_threads(server):
    n_threads, per_thread = 8, 5
    server.script(*[(200, {}, "ok")] * (n_threads * per_thread))
    budget = CostBudget(None, 60, max_concurrent=3)
    errors: list[BaseException] = []
    cfg = TransportConfig(server.url, "amplitude", trust_env=False)
    with Transport(cfg) as t:

        def work() -> None:
            try:
                for _ in range(per_thread):
                    assert t.get("/x", limiter=budget).text == "ok"
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        stats = t.stats.snapshot()
    assert errors == []
    assert stats.requests_sent == n_threads * per_thread
    assert stats.responses_by_status[200] == n_threads * per_thread
    assert budget.in_flight == 0


def test_stats_snapshot_delta_and_reset(server, fake_clock):
    server.script((200, {}, "a"), (500, {}, ""), (200, {}, "bb"))
    with make(server, fake_clock) as t:
        t.get("/1")
        before = t.stats.snapshot()
        t.get("/2")
        delta = t.stats.delta(before)
        assert (delta.requests_sent, delta.retries, dict(delta.responses_by_status)) == (
            2,
            1,
            {500: 1, 200: 1},
        )
        assert delta.bytes_received == 2
        assert "2 requests (200×1, 500×1), 1 retries" in delta.summary()
        with pytest.raises(AttributeError):
            before.retries = 5  # type: ignore[misc]
        total = before.plus(delta)
        assert total == t.stats.snapshot()
        assert dict(total.responses_by_status) == {200: 2, 500: 1}
        t.stats.reset()
        assert t.stats.snapshot().requests_sent == 0


def test_one_debug_line_per_attempt(server, fake_clock, caplog):
    server.script((500, {}, ""), (200, {}, "ok"))
    caplog.set_level(logging.DEBUG, logger="analytics_assets.http")
    with make(server, fake_clock) as t:
        t.get("/x")
    ours = [r for r in caplog.records if r.name == "analytics_assets.http"]
    debug = [r.getMessage() for r in ours if r.levelno == logging.DEBUG]
    assert len(debug) == 2
    assert "GET" in debug[0] and "-> 500" in debug[0] and "(attempt 1/6)" in debug[0]
    assert "-> 200" in debug[1]
    assert [r.levelno for r in ours].count(logging.WARNING) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None), (None, None), ("", None),
     ("Thu, 01 Jan 2026 00:01:00 GMT", 60.0)],
)  # fmt: skip
def test_parse_retry_after(value, expected):
    now = 1767225600.0  # 2026-01-01T00:00:00Z
    assert parse_retry_after(value, now) == expected


def test_transport_never_imports_dagster():
    package = Path(__file__).resolve().parents[2] / "analytics_assets"
    # The layout by system moved the clients out of clients/: name the files, so a future
    # move fails here instead of turning this into a check of nothing.
    paths = [*(package / "http").glob("*.py"), package / "pendo" / "client.py"]
    paths += [package / "pendo" / "pipeline.py", package / "amplitude" / "client.py"]
    assert len(paths) > 4 and all(p.exists() for p in paths), paths
    for path in paths:
        assert not re.search(r"^\s*(import|from)\s+dagster", path.read_text(), re.M), path
    code = (
        "import sys, analytics_assets.http, analytics_assets.pendo.client; "
        "assert 'dagster' not in sys.modules, 'dagster was imported'"
    )
    root = str(package.parent)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, timeout=60)


def test_presigned_link_signatures_are_hidden_in_httpx_log_lines(server, fake_clock, caplog):
    other = server.url.replace("127.0.0.1", "localhost")
    link = f"{other}/bucket/f.csv?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef&v=1"
    server.script((302, {"location": link}, ""), (200, {}, "ok"))
    caplog.set_level(logging.INFO, logger="httpx")
    with make(server, fake_clock) as t:
        t.get("/api/5/cohorts/request/r1/file")
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert any("X-Amz-Signature=***" in line and "v=1" in line for line in lines)
    assert not any("deadbeef" in line or "AKIAEXAMPLE" in line for line in lines)
