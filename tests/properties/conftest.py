"""Shared helpers of the property-based bad-input tests.

* ``assert_clear_error``: what "a clear error, never a crash deep inside" means here: the
  exception is one of the types the caller allows (the project's typed errors or a
  ValueError subclass that names the problem), it was raised on purpose by a ``raise``
  statement in ``analytics_assets`` (not by a builtin or a library tripping over a value),
  and its message is not empty. A bare ``KeyError``/``TypeError``/``AttributeError``/
  ``IndexError``/``UnicodeDecodeError``/``RecursionError`` never passes.
  Use it through the ``clear_error`` fixture.
* ``pendo_client`` / ``amplitude_client``: real clients whose network is an
  ``httpx.MockTransport`` answering from a mutable script, so a hypothesis loop reuses one
  client (no retries, no backoff, no rate limits) and each example costs microseconds.
* ``scripted``: the real HTTP scripted server of ``tests/clients`` for the examples that
  run over a socket, as production does.
"""

from __future__ import annotations

import linecache
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parents[1]
for _path in (_HERE.parent / "clients", _ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from scripted_server import ScriptedServer  # noqa: E402

from analytics_assets.amplitude.client import FAMILIES, AmplitudeClient  # noqa: E402
from analytics_assets.http.transport import Transport, TransportConfig  # noqa: E402
from analytics_assets.pendo.client import PendoClient  # noqa: E402

PACKAGE_DIR = str(_ROOT / "analytics_assets")

#: Exceptions that always mean "crashed deep inside", whatever raised them.
CRASHES: tuple[type[BaseException], ...] = (
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    UnicodeDecodeError,
    RecursionError,
    OverflowError,
    ZeroDivisionError,
    AssertionError,
)


def raised_on_purpose(exc: BaseException) -> bool:
    """True when the innermost frame is a ``raise`` statement in the project's code."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename
    line = linecache.getline(filename, tb.tb_lineno).strip()
    return filename.startswith(PACKAGE_DIR) and line.startswith("raise")


def assert_clear_error(
    exc: BaseException,
    allowed: type[BaseException] | tuple[type[BaseException], ...],
    *,
    mentions: str | None = None,
    crashes_allowed: tuple[type[BaseException], ...] = (),
) -> None:
    """Fail unless ``exc`` is a deliberate, typed, non-empty error (see the module doc).

    ``crashes_allowed`` lists builtin types a module raises on purpose with its own message
    (the pipeline builder's ``TypeError("cannot write a list in a filter")``).
    """
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    assert isinstance(exc, allowed), f"{name} escaped: {exc!r}"
    if isinstance(exc, CRASHES) and not isinstance(exc, crashes_allowed):
        raise AssertionError(f"a bare {name} escaped: {exc!r}") from exc
    assert raised_on_purpose(exc), f"{name} was raised by a library, not on purpose: {exc!r}"
    text = str(exc).strip()
    assert text, f"{name} has no message"
    if mentions is not None:
        assert mentions in text, f"{name} does not mention {mentions!r}: {text}"


# --- a mocked network for the real clients --------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})


Route = Callable[[httpx.Request], Answer | None]


@dataclass
class MockNetwork:
    """The answers of a MockTransport: ``routes`` tried in order, then ``answer``."""

    answer: Answer = field(default_factory=Answer)
    routes: list[Route] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def reply(self, body: bytes, status: int = 200, **headers: str) -> None:
        self.answer = Answer(status, body, {"content-type": "application/json", **headers})

    def on(self, path_suffix: str, body: bytes, status: int = 200) -> None:
        """Answer requests whose path ends with ``path_suffix`` with ``body``."""

        def route(request: httpx.Request) -> Answer | None:
            return Answer(status, body) if request.url.path.endswith(path_suffix) else None

        self.routes.append(route)

    def __repr__(self) -> str:
        return f"MockNetwork(answer={self.answer!r}, {len(self.requests)} requests)"

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for route in self.routes:
            found = route(request)
            if found is not None:
                return httpx.Response(found.status, headers=found.headers, content=found.body)
        a = self.answer
        return httpx.Response(a.status, headers=a.headers, content=a.body)


class Unlimited:
    """A limiter that never waits (the budgets are not what these tests are about)."""

    def acquire(self, cost: float = 1) -> float:
        return 0.0

    def release(self, cost: float = 1) -> None:
        return None

    def on_throttled(self, retry_after: float | None) -> None:
        return None

    def on_success(self) -> None:
        return None


def _pendo_transport(base_url: str, http_transport: httpx.BaseTransport | None) -> Transport:
    config = TransportConfig(
        base_url=base_url,
        service="pendo",
        default_headers={"x-pendo-integration-key": "property-test-key"},
        secrets=("property-test-key",),
        max_attempts=1,
        backoff_base=0.0,
        read_timeout=10.0,
    )
    return Transport(config, sleep=lambda _s: None, http_transport=http_transport)


@pytest.fixture
def clear_error() -> Callable[..., None]:
    """``assert_clear_error`` as a fixture (test modules cannot import a conftest)."""
    return assert_clear_error


@pytest.fixture
def network() -> MockNetwork:
    return MockNetwork()


@pytest.fixture
def pendo_client(network: MockNetwork) -> Iterator[PendoClient]:
    """A PendoClient on the mock network: one attempt per request, no waiting."""
    transport = _pendo_transport("http://pendo.test", httpx.MockTransport(network.handler))
    with PendoClient(
        "", base_url="http://pendo.test", transport=transport, limiter=Unlimited()
    ) as c:
        yield c


@pytest.fixture
def amplitude_client(network: MockNetwork) -> Iterator[AmplitudeClient]:
    """An AmplitudeClient on the mock network: one attempt per request, unlimited budgets."""
    with AmplitudeClient(
        "property-api-key",
        "property-secret-key",
        base_url="http://amplitude.test",
        budgets={family: Unlimited() for family in FAMILIES},
        max_attempts=1,
        sleep=lambda _s: None,
        http_transport=httpx.MockTransport(network.handler),
    ) as c:
        yield c


@pytest.fixture(scope="session")
def scripted() -> Iterator[ScriptedServer]:
    """The scripted real HTTP server (one per session; tests reset it)."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def pendo_over_http(scripted: ScriptedServer) -> Iterator[PendoClient]:
    """A PendoClient talking to the scripted server over a real socket (one attempt)."""
    scripted.reset()
    transport = _pendo_transport(scripted.url, None)
    with PendoClient("", base_url=scripted.url, transport=transport, limiter=Unlimited()) as c:
        yield c
    scripted.reset()


@pytest.fixture
def amplitude_over_http(scripted: ScriptedServer) -> Iterator[AmplitudeClient]:
    """An AmplitudeClient talking to the scripted server over a real socket (one attempt)."""
    scripted.reset()
    with AmplitudeClient(
        "property-api-key",
        "property-secret-key",
        base_url=scripted.url,
        budgets={family: Unlimited() for family in FAMILIES},
        max_attempts=1,
        sleep=lambda _s: None,
    ) as c:
        yield c
    scripted.reset()
