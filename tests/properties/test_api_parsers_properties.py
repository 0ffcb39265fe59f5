"""Property tests: every parser of an API response, fed malformed, mistyped and huge answers.

For each parser the property is the same two-sided promise: a well-formed answer comes
out whole (every row, unchanged, in order), and anything else ends in a clear typed error
(``ApiError`` and its subclasses, or a ValueError that says what was wrong), never in a
crash deep inside and never in fewer rows than the answer held.

The answers reach the parsers through the real clients over ``httpx.MockTransport`` (one
client per test, re-scripted per example: fast enough for hypothesis loops), and a few
examples per parser go over a real socket through the scripted server, as in production.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zipfile
import zlib
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from scripted_server import Reply, ScriptedServer

from analytics_assets.amplitude.client import AmplitudeClient
from analytics_assets.amplitude.export import (
    CorruptArchiveError,
    extract_archive,
    is_no_data_answer,
)
from analytics_assets.amplitude.tidy import (
    chart_rows,
    funnel_rows,
    ltv_rows,
    parse_chart_csv,
    retention_rows,
    series_rows,
)
from analytics_assets.http.errors import ApiError, DamagedResponseError
from analytics_assets.http.limits import AdaptiveTokenBucket
from analytics_assets.http.transport import (
    Transport,
    TransportConfig,
    json_body_problem,
    parse_retry_after,
    server_message,
)
from analytics_assets.pendo.client import (
    AggregationStreamError,
    BatchOutcome,
    FieldSchema,
    MetadataRecord,
    PendoClient,
    TokenInfo,
)
from analytics_assets.pendo.pipeline import Pipeline, Source

PROPS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = settings(PROPS, max_examples=20)

ClearError = Callable[..., None]

# --- strategies ------------------------------------------------------------------------------

#: Numbers at the edges: 64-bit limits, beyond them, the largest and smallest doubles.
EDGE_NUMBERS = [2**31, 2**53 + 1, 2**63 - 2, -(2**63) + 1, 1e308, -1e308, 5e-324, 0.1, -0.0]
BIG_NUMBERS = [2**63 - 1, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**30]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63) + 1, max_value=2**63 - 2)
    | st.sampled_from(EDGE_NUMBERS)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=6,
)
objects = st.dictionaries(st.text(max_size=10), values, max_size=4)
rows_of_objects = st.lists(objects, max_size=12)
#: Any JSON value a server might send where something else was expected.
any_json = values | st.sampled_from(BIG_NUMBERS) | rows_of_objects

#: Byte strings that are not UTF-8 (a lone continuation byte, a truncated sequence, an
#: encoded surrogate, Latin-1 text).
BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"caf\xe9", b"\xe2\x82", b"\x80\x80"]


def dumps(value: Any, *, ascii_only: bool = True) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")


@st.composite
def damaged(draw: st.DrawFn, good: bytes) -> bytes:
    """``good`` cut short, or with bytes that are not UTF-8 (or not JSON) put inside it."""
    how = draw(st.sampled_from(["truncate", "insert", "replace", "surrogate"]))
    if how == "truncate" or not good:
        return good[: draw(st.integers(0, max(0, len(good) - 1)))]
    at = draw(st.integers(0, len(good) - 1))
    if how == "surrogate":  # a lone UTF-16 surrogate escape: valid JSON syntax, not text
        return good[:at] + b'"\\ud800"' + good[at:]
    junk = draw(st.sampled_from(BAD_UTF8) | st.binary(min_size=1, max_size=6))
    end = at + (len(junk) if how == "replace" else 0)
    return good[:at] + junk + good[end:]


def parse_json(body: bytes) -> tuple[bool, Any]:
    """(True, value) when ``body`` is UTF-8 JSON text, else (False, None).

    Lenient where the streaming parser (yajl) is: lone UTF-16 surrogate escapes (which no
    UTF-8 text can hold; see ``has_lone_surrogate``). Strict on raw control characters in
    strings (RFC 8259): yajl and orjson both refuse them, so a lenient oracle called such a
    body "good" and failed the test for whichever seed drew one (e.g. ``{"\x00a": 1}``).
    """
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse, strict=True)
    except (ValueError, RecursionError):
        return False, None
    return True, value


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def has_lone_surrogate(value: Any) -> bool:
    """True when a string in ``value`` holds an unpaired surrogate ("\\ud800")."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, list):
        return any(has_lone_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(has_lone_surrogate(k) or has_lone_surrogate(v) for k, v in value.items())
    return False


def _in_int64(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        # The streaming parser (yajl) refuses the two int64 extremes as overflows.
        return -(2**63) < value < 2**63 - 1
    if isinstance(value, list):
        return all(_in_int64(v) for v in value)
    if isinstance(value, dict):
        return all(_in_int64(v) for v in value.values())
    return True


# ============================================================================== Pendo

ACCOUNTS = Pipeline(Source.accounts())


def aggregate(client: PendoClient) -> list[Any]:
    return list(client.aggregate(ACCOUNTS))


def check_aggregation(
    rows: list[Any] | None, error: BaseException | None, body: bytes, clear_error: ClearError
) -> None:
    """The aggregation contract for one answer ``body``."""
    ok, value = parse_json(body)
    well_formed = (
        ok
        and isinstance(value, dict)
        and "results" in value
        and (value["results"] is None or isinstance(value["results"], list))
        and all(isinstance(r, dict) for r in value["results"] or [])
    )
    if error is not None:
        clear_error(error, ApiError)
        # A well-formed answer is refused only for numbers the streaming parser cannot hold
        # or for text no UTF-8 string can hold (a lone surrogate escape).
        assert not well_formed or not _in_int64(value) or has_lone_surrogate(value), (
            f"refused a good answer: {error}"
        )
        return
    assert rows is not None
    assert well_formed, f"accepted a malformed answer {body[:120]!r} as {len(rows)} rows"
    results = value["results"] or []
    if has_lone_surrogate(results):
        # yajl writes an unpaired high surrogate as "?": the text changes, no row is lost.
        assert len(rows) == len(results), "rows were lost"
    else:
        assert rows == results, "rows were lost or changed"


def _collect(client: PendoClient) -> tuple[list[Any] | None, BaseException | None]:
    try:
        return aggregate(client), None
    except Exception as exc:
        return None, exc


@PROPS
@given(rows=rows_of_objects, ascii_only=st.booleans())
def test_aggregation_rows_come_out_whole_and_in_order(
    pendo_client: PendoClient,
    network: Any,
    rows: list[dict],
    ascii_only: bool,
    clear_error: ClearError,
) -> None:
    body = dumps({"startTime": 1, "results": rows}, ascii_only=ascii_only)
    network.reply(body)
    got, error = _collect(pendo_client)
    assert error is None, f"a well-formed answer failed: {error!r}"
    assert got == rows


@PROPS
@given(data=st.data(), rows=st.lists(objects, min_size=1, max_size=10))
@example(data=None, rows=[{"a": "x"}])
def test_a_damaged_aggregation_answer_is_an_error_never_fewer_rows(
    pendo_client: PendoClient, network: Any, data: Any, rows: list[dict], clear_error: ClearError
) -> None:
    good = dumps({"startTime": 1, "results": rows})
    body = good[:-3] if data is None else data.draw(damaged(good))
    network.reply(body)
    got, error = _collect(pendo_client)
    check_aggregation(got, error, body, clear_error)


@PROPS
@given(
    answer=any_json
    | st.builds(lambda r: {"results": r}, any_json)
    | st.builds(lambda r: {"startTime": 1, "rows": r}, rows_of_objects)
    | st.builds(lambda r: {"results": [*r, 7]}, rows_of_objects)
)
@example(answer={"results": None})
@example(answer={"results": []})
@example(answer={"results": 5})
@example(answer={"results": "abc"})
@example(answer={"results": [1, "x", None]})
@example(answer={"result": [{"a": 1}]})
@example(answer=[{"a": 1}])
@example(answer={"results": [{"a": 2**64}]})
def test_an_aggregation_answer_of_the_wrong_shape_is_refused(
    pendo_client: PendoClient, network: Any, answer: Any, clear_error: ClearError
) -> None:
    # A `results` object holding a key "item" reads like an array to the streaming parser
    # (both have the path results.item); that one shape is left out here.
    assume(
        not (
            isinstance(answer, dict)
            and isinstance(answer.get("results"), dict)
            and "item" in answer["results"]
        )
    )
    body = dumps(answer)
    network.reply(body)
    got, error = _collect(pendo_client)
    check_aggregation(got, error, body, clear_error)


@PROPS
@given(body=st.binary(max_size=200) | st.sampled_from(BAD_UTF8))
def test_aggregation_answers_that_are_not_json_are_refused(
    pendo_client: PendoClient, network: Any, body: bytes, clear_error: ClearError
) -> None:
    network.reply(body)
    got, error = _collect(pendo_client)
    check_aggregation(got, error, body, clear_error)


@pytest.mark.parametrize("depth", [10, 500, 2000])
def test_deeply_nested_aggregation_rows_are_rows_or_a_clear_error(
    pendo_client: PendoClient, network: Any, depth: int, clear_error: ClearError
) -> None:
    # Complete nesting is a row; nesting cut off is a clear error. (Far deeper nesting costs
    # the streaming parser, yajl via ijson, memory quadratic in the depth: 10,000 levels take
    # about 250 MB. Pendo never nests like that; this stays at depths it could.)
    network.reply(b'{"results":[{"a":' + b"[" * depth + b"]" * depth + b"}]}")
    got, error = _collect(pendo_client)
    assert error is None and got is not None and len(got) == 1
    level, value = 0, got[0]["a"]
    while value:  # walk down without recursion (== would recurse 2,000 deep)
        assert isinstance(value, list) and len(value) == 1
        level, value = level + 1, value[0]
    assert level == depth - 1
    network.reply(b'{"results":[{"a":' + b"[" * depth)
    got, error = _collect(pendo_client)
    assert error is not None
    clear_error(error, ApiError)


def test_aggregation_answers_over_a_real_socket(
    pendo_over_http: PendoClient, scripted: ScriptedServer, clear_error: ClearError
) -> None:
    rows = [{"accountId": f"a{i}", "n": i, "name": 'Zoë "quoted" \\ slash'} for i in range(3000)]
    good = dumps({"startTime": 1, "results": rows})
    cases = [
        good,
        good[: len(good) // 2],
        good.replace(b"a2999", b"a\xff\xfe"),
        b'{"results": [1, 2]}',
        b'{"rows": []}',
        b"<html>maintenance</html>",
    ]
    for body in cases:
        scripted.script(Reply(200, {"content-type": "application/json"}, body))
        got, error = _collect(pendo_over_http)
        check_aggregation(got, error, body, clear_error)


# --- a stream that breaks anywhere ----------------------------------------------------------

#: Rows the client parses before it hands the first one out (pendo.client._HOLD_ROWS).
HELD_BACK = 2000


class _CutStream(httpx.SyncByteStream):
    """``body`` in chunks of ``size`` bytes, then (if ``cut``) a dropped connection."""

    def __init__(self, body: bytes, size: int, cut: bool) -> None:
        self.body, self.size, self.cut = body, size, cut

    def __iter__(self) -> Iterator[bytes]:
        for at in range(0, len(self.body), self.size):
            yield self.body[at : at + self.size]
        if self.cut:
            raise httpx.ReadError("peer closed connection")


def _retrying_pendo(answers: list[httpx.Response], sent: list[httpx.Request]) -> PendoClient:
    """A PendoClient with three attempts, no waiting, answering from ``answers``."""

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers.pop(0)

    config = TransportConfig(
        base_url="http://pendo.test",
        service="pendo",
        default_headers={"x-pendo-integration-key": "property-test-key"},
        max_attempts=3,
    )
    transport = Transport(
        config,
        sleep=lambda _s: None,
        jitter=lambda cap: cap,
        http_transport=httpx.MockTransport(handler),
    )
    bucket = AdaptiveTokenBucket(1e9, 10**6)
    return PendoClient("", base_url="http://pendo.test", transport=transport, limiter=bucket)


@FEW
@given(
    n=st.integers(0, 2600) | st.sampled_from([0, 1, HELD_BACK - 1, HELD_BACK, HELD_BACK + 1]),
    where=st.floats(0, 1, exclude_max=True),
    size=st.sampled_from([1 << 16, 4096, 97]),
)
def test_a_stream_broken_anywhere_never_yields_a_row_twice(n: int, where: float, size: int) -> None:
    """Cut the first answer at any byte: the rows that come out are the answer's, in order,
    each at most once. A cut before HELD_BACK rows were complete is invisible (asked again,
    all rows once); after it, the error says how many rows were out and nothing is resent."""
    rows = [{"visitorId": f"v{i}", "n": i} for i in range(n)]
    parts = [dumps(r) for r in rows]
    prefix = b'{"startTime": 1, "results": ['
    body = prefix + b", ".join(parts) + b"]}"
    at = int(len(body) * where)
    ends, end = [], len(prefix)
    for part in parts:
        end += len(part)
        ends.append(end)
        end += 2
    complete_before_cut = sum(1 for e in ends if e <= at)
    answers = [
        httpx.Response(200, stream=_CutStream(body[:at], size, cut=True)),
        httpx.Response(200, stream=_CutStream(body, size, cut=False)),
    ]
    sent: list[httpx.Request] = []
    got: list[dict] = []
    with _retrying_pendo(answers, sent) as client:
        try:
            for row in client.aggregate(ACCOUNTS):
                got.append(row)
        except AggregationStreamError as exc:
            assert complete_before_cut >= HELD_BACK, "rows were handed out before the hold"
            assert exc.rows_yielded == len(got) >= HELD_BACK
            assert got == rows[: len(got)]
            assert len(sent) == 1, "resent after rows were out: they would repeat"
            return
        stats = client.stats.snapshot()
    assert got == rows, "rows were lost, repeated or reordered"
    assert len(sent) == 2 and (stats.retries, stats.transport_errors) == (1, 1)


# --- token verify ----------------------------------------------------------------------------


@PROPS
@given(
    answer=any_json
    | st.fixed_dictionaries({"valid": values, "writeAccess": values})
    | st.fixed_dictionaries({"valid": st.booleans(), "writeAccess": st.booleans()})
)
@example(answer={"valid": "false", "writeAccess": "false"})
@example(answer={"valid": 1, "writeAccess": [0]})
def test_token_verify_never_grants_more_than_the_answer_says(
    pendo_client: PendoClient, network: Any, answer: Any, clear_error: ClearError
) -> None:
    network.reply(dumps(answer))
    info, error = _call(pendo_client.verify_token, refresh=True)
    if error is not None:
        clear_error(error, ApiError)
        return
    assert isinstance(info, TokenInfo)
    assert isinstance(info.valid, bool) and isinstance(info.write_access, bool)
    said = answer if isinstance(answer, dict) else {}
    # Only a JSON `true` makes a key valid or writable: "false", 1 or [0] must not.
    assert info.valid == (said.get("valid") is True)
    assert info.write_access == (said.get("writeAccess") is True)


@PROPS
@given(body=st.binary(max_size=80), status=st.sampled_from([200, 401, 403, 500]))
def test_token_verify_on_garbage_is_a_typed_error_or_not_valid(
    pendo_client: PendoClient, network: Any, body: bytes, status: int, clear_error: ClearError
) -> None:
    network.reply(body, status=status)
    info, error = _call(pendo_client.verify_token, refresh=True)
    if error is not None:
        clear_error(error, ApiError)
        return
    ok, value = parse_json(body)
    assert status == 200 or info == TokenInfo(False, False)
    assert info.valid == (isinstance(value, dict) and value.get("valid") is True)


# --- metadata schema -------------------------------------------------------------------------

descriptor = st.fixed_dictionaries(
    {},
    optional={
        "Type": st.sampled_from(["string", "boolean", "integer", "float", "time", ""]) | values,
        "DisplayName": values,
        "ElementType": values,
        "isHidden": values,
        "isDeleted": values,
        "isCalculated": values,
        "isPerApp": values,
        "sample": values,
    },
)
schema_answers = st.dictionaries(
    st.text(max_size=10),
    st.dictionaries(st.text(max_size=10), descriptor | values, max_size=5) | values,
    max_size=5,
)


@PROPS
@given(answer=schema_answers | any_json)
@example(answer=[{"custom": {}}])
@example(answer="schema")
@example(answer=7)
@example(answer={"custom": {"plan": {"Type": ["string"], "DisplayName": 5}}})
def test_every_field_of_a_schema_answer_comes_out_typed(
    pendo_client: PendoClient, network: Any, answer: Any, clear_error: ClearError
) -> None:
    network.reply(dumps(answer))
    schema, error = _call(pendo_client.get_metadata_schema, "account")
    if error is not None:
        clear_error(error, ApiError)
        assert answer is not None and not isinstance(answer, dict), f"refused {answer!r}"
        return
    assert isinstance(schema, dict)
    groups = answer if isinstance(answer, dict) else {}
    for group, fields in groups.items():
        if not isinstance(fields, dict):
            continue  # not a group of fields
        # Every field of every group is there: nothing dropped, nothing invented.
        assert set(schema[group]) == set(fields)
        for name, desc in fields.items():
            parsed = schema[group][name]
            assert isinstance(parsed, FieldSchema)
            assert parsed.type in ("text", "number", "boolean", "date")
            assert isinstance(parsed.pendo_type, str)
            for flag in ("is_hidden", "is_deleted", "is_calculated", "is_per_app"):
                assert isinstance(getattr(parsed, flag), bool)
            if isinstance(desc, dict) and desc.get("Type") in ("integer", "float"):
                assert parsed.type == "number"


# --- bulk metadata writes --------------------------------------------------------------------

ids = st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=8, unique=True)


@st.composite
def write_answers(draw: st.DrawFn, sent: list[str]) -> Any:
    """Answers a bulk write could get: Pendo's shape with ids sent or not, or junk."""
    named = st.sampled_from(sent) | st.text(max_size=6)
    error_item = (
        st.fixed_dictionaries(
            {},
            optional={
                "accountId": named | values,
                "error": values,
                "field": values,
                "message": values,
            },
        )
        | named
        | values
    )
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "total": values,
            "updated": values,
            "failed": values,
            "missing": st.lists(named, max_size=4) | values,
            "errors": st.lists(error_item, max_size=4) | values,
            "kind": values,
        },
    )
    return draw(shaped | any_json)


def _write_route(network: Any) -> None:
    network.routes.clear()
    network.on("/token/verify", dumps({"valid": True, "writeAccess": True}))


def check_outcome(outcome: BatchOutcome, sent: list[str], answer: Any) -> None:
    updated, failed = set(outcome.updated_ids), set(outcome.failed)
    # Conservation: every id sent is updated or failed, never both, never neither.
    assert updated <= set(sent)
    assert not updated & failed
    assert set(sent) <= updated | failed
    assert isinstance(answer, dict), "a non-object answer cannot confirm any write"
    assert set(answer) & {"total", "updated", "failed", "missing", "errors"}, (
        "an answer with none of Pendo's keys cannot confirm any write"
    )
    named_missing = {str(m) for m in answer.get("missing") or ()}
    assert not updated & named_missing, "an id Pendo called missing was reported written"
    for reason in outcome.failed.values():
        assert isinstance(reason, str) and reason


@PROPS
@given(data=st.data(), sent=ids)
@example(data=None, sent=["a1", "a2"])
def test_a_bulk_write_answer_accounts_for_every_record_sent(
    pendo_client: PendoClient, network: Any, data: Any, sent: list[str], clear_error: ClearError
) -> None:
    answer = {"missing": 5} if data is None else data.draw(write_answers(sent))
    _write_route(network)
    network.reply(dumps(answer))
    records = [MetadataRecord(i, {"plan": "pro"}) for i in sent]
    outcomes, error = _call(lambda: list(pendo_client.update_metadata("account", records)))
    if error is not None:
        clear_error(error, ApiError)
        return
    (outcome,) = outcomes
    check_outcome(outcome, sent, answer)


@FEW
@given(sent=ids, body=st.binary(max_size=60))
def test_a_bulk_write_answer_that_is_not_json_is_an_error(
    pendo_client: PendoClient, network: Any, sent: list[str], body: bytes, clear_error: ClearError
) -> None:
    _write_route(network)
    network.reply(body)
    records = [MetadataRecord(i, {"plan": "pro"}) for i in sent]
    outcomes, error = _call(lambda: list(pendo_client.update_metadata("account", records)))
    ok, answer = parse_json(body)
    if error is not None:
        clear_error(error, ApiError)
        return
    assert ok, f"accepted {body!r}"
    check_outcome(outcomes[0], sent, answer)


@PROPS
@given(data=st.data(), sent=ids)
@example(data=None, sent=["a1", "a2", "a3"])
def test_the_push_never_counts_a_record_written_that_the_answer_did_not_confirm(
    pendo_client: PendoClient, network: Any, data: Any, sent: list[str], clear_error: ClearError
) -> None:
    from analytics_assets.crm_writeback.push import read_outcome

    if data is None:  # Pendo's counts disagree with what it names: trust neither
        answer: Any = {"total": 3, "updated": 1, "failed": 0, "missing": [], "errors": []}
    else:
        answer = data.draw(write_answers(sent))
    _write_route(network)
    network.reply(dumps(answer))
    records = [MetadataRecord(i, {"plan": "pro"}) for i in sent]
    outcomes, error = _call(lambda: list(pendo_client.update_metadata("account", records)))
    if error is not None:
        clear_error(error, ApiError)  # the push logs the batch unconfirmed
        return
    updated, failed, missing = read_outcome(outcomes[0], sent)
    assert updated | set(failed) | missing >= set(sent)
    assert not updated & (set(failed) | missing)
    count = answer.get("updated")
    if isinstance(count, int) and not isinstance(count, bool):
        assert len(updated) <= max(count, 0)
    named = {str(m) for m in answer.get("missing") or ()}
    assert not updated & named


# --- catalog lists and report results --------------------------------------------------------

LISTS: dict[str, Callable[[PendoClient], Any]] = {
    "features": lambda c: c.list_features(expand_all=True),
    "pages": lambda c: c.list_pages(app_id=1),
    "guides": lambda c: c.list_guides(),
    "track types": lambda c: c.list_track_types(),
    "reports": lambda c: c.list_reports(),
    "report results": lambda c: c.report_results("r1"),
}


@PROPS
@given(which=st.sampled_from(sorted(LISTS)), answer=rows_of_objects | any_json)
@example(which="features", answer={"id": "f1"})
@example(which="pages", answer="page")
@example(which="guides", answer=12)
@example(which="report results", answer=[{"a": 1}, "b"])
def test_catalog_lists_and_report_results_are_lists_of_objects_or_an_error(
    pendo_client: PendoClient, network: Any, which: str, answer: Any, clear_error: ClearError
) -> None:
    network.reply(dumps(answer))
    got, error = _call(LISTS[which], pendo_client)
    well_formed = answer is None or (
        isinstance(answer, list) and all(isinstance(r, dict) for r in answer)
    )
    if error is not None:
        clear_error(error, ApiError)
        assert not well_formed, f"refused a good answer: {error}"
        return
    assert well_formed, f"{which}: accepted {answer!r} as {got!r}"
    assert got == (answer or [])


@FEW
@given(which=st.sampled_from(sorted(LISTS)), body=st.binary(max_size=60))
def test_catalog_answers_that_are_not_json_are_an_error(
    pendo_client: PendoClient, network: Any, which: str, body: bytes, clear_error: ClearError
) -> None:
    network.reply(body)
    got, error = _call(LISTS[which], pendo_client)
    ok, answer = parse_json(body)
    if error is not None:
        clear_error(error, ApiError)
        return
    assert ok and (answer is None or isinstance(answer, list)), f"accepted {body!r}"


def test_catalog_answers_over_a_real_socket(
    pendo_over_http: PendoClient, scripted: ScriptedServer, clear_error: ClearError
) -> None:
    good = [{"id": f"f{i}", "name": f"Feature {i}", "appId": 1} for i in range(50)]
    for answer in (good, {"features": good}, [*good, None], "nope"):
        scripted.script(Reply(200, {"content-type": "application/json"}, dumps(answer)))
        got, error = _call(pendo_over_http.list_features, expand_all=True)
        if answer is good:
            assert got == good
        else:
            assert error is not None, f"accepted {answer!r}"
            clear_error(error, ApiError)


def test_bulk_write_answers_over_a_real_socket(
    pendo_over_http: PendoClient, scripted: ScriptedServer, clear_error: ClearError
) -> None:
    sent = ["a1", "a2", "a3"]
    records = [MetadataRecord(i, {"plan": "pro"}) for i in sent]
    verify = Reply(200, {}, {"valid": True, "writeAccess": True})
    answers: list[Any] = [
        {"total": 3, "updated": 2, "failed": 1, "missing": ["a2"], "errors": []},
        [],
        {"ok": True},
        {"missing": "a1"},
        "<html>502 Bad Gateway</html>",
    ]
    for n, answer in enumerate(answers):
        scripted.script(*([verify] if n == 0 else []), Reply(200, {}, answer))
        outcomes, error = _call(lambda: list(pendo_over_http.update_metadata("account", records)))
        if n == 0:
            assert error is None
            check_outcome(outcomes[0], sent, answer)
            assert outcomes[0].updated_ids == ("a1", "a3")
        else:
            assert error is not None, f"accepted {answer!r}"
            clear_error(error, ApiError)


# ============================================================================== Amplitude

DAY1, DAY2 = date(2026, 9, 1), date(2026, 9, 30)


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, BaseException | None]:
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:
        return None, exc


def envelope(data: Any, **extra: Any) -> bytes:
    return dumps({"data": data, **extra})


# --- Dashboard envelopes -> rows -------------------------------------------------------------

numbers = st.integers(-(10**9), 10**9) | st.floats(allow_nan=False, allow_infinity=False)
x_values = st.lists(st.dates().map(date.isoformat) | st.text(max_size=8), max_size=8)


@st.composite
def series_answers(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed series answer: xValues, one value list per group, group labels."""
    xs = draw(x_values)
    n = draw(st.integers(0, 4))
    series = [
        draw(
            st.lists(
                numbers | st.builds(lambda v: {"setId": "", "value": v}, numbers), max_size=len(xs)
            )
        )
        for _ in range(n)
    ]
    labels = draw(
        st.lists(
            st.text(max_size=6) | st.lists(st.text(max_size=4), max_size=2), min_size=n, max_size=n
        )
    )
    key = draw(st.sampled_from(["seriesLabels", "seriesMeta"]))
    return {"xValues": xs, "series": series, key: labels}


def expected_points(data: dict[str, Any]) -> list[Any]:
    out = []
    for values in data["series"]:
        for _x, v in zip(data["xValues"], values, strict=False):
            out.append(v["value"] if isinstance(v, dict) else v)
    return out


@PROPS
@given(data=series_answers())
def test_every_series_point_becomes_exactly_one_row(
    amplitude_client: AmplitudeClient, network: Any, data: dict[str, Any]
) -> None:
    network.reply(envelope(data))
    rows = amplitude_client.active_users(DAY1, DAY2)
    assert [r["value"] for r in rows] == expected_points(data)
    assert all(set(r) == {"date", "group", "value"} and isinstance(r["group"], str) for r in rows)
    if data["xValues"]:
        network.reply(envelope(data, novaCost=3))
        assert [r["value"] for r in amplitude_client.chart_results("c1")] == expected_points(data)


def _wrong(shape: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({}, optional=shape) | any_json


series_junk = _wrong(
    {
        "xValues": values,
        "series": values,
        "seriesLabels": values,
        "seriesMeta": values,
        "seriesCollapsed": values,
    }
)
funnel_junk = (
    st.lists(
        _wrong(
            {
                "events": values,
                "cumulativeRaw": values,
                "cumulative": values,
                "stepByStep": values,
                "medianTransTimes": values,
                "avgTransTimes": values,
                "groupValue": values,
                "meta": values,
            }
        ),
        max_size=3,
    )
    | any_json
)
dated_junk = _wrong(
    {
        "series": st.lists(_wrong({"dates": values, "values": values}), max_size=3) | values,
        "seriesLabels": values,
    }
)

DASHBOARD: dict[str, tuple[Callable[[AmplitudeClient], Any], st.SearchStrategy[Any]]] = {
    "events_list": (lambda c: c.events_list(), rows_of_objects | any_json),
    "active_users": (lambda c: c.active_users(DAY1, DAY2), series_junk),
    "segmentation": (lambda c: c.segmentation("e", DAY1, DAY2), series_junk),
    "segmentation of two events": (
        lambda c: c.segmentation("e", DAY1, DAY2, second_event="f"),
        series_junk,
    ),
    "chart_results": (lambda c: c.chart_results("c1"), series_junk | funnel_junk),
    "funnel": (lambda c: c.funnel(["a", "b"], DAY1, DAY2), funnel_junk),
    "retention": (lambda c: c.retention("a", "b", DAY1, DAY2), dated_junk),
    "revenue_ltv": (lambda c: c.revenue_ltv(DAY1, DAY2), dated_junk),
}


def check_rows(rows: Any) -> None:
    assert isinstance(rows, list)
    for row in rows:
        assert isinstance(row, dict)
        assert all(isinstance(k, str) for k in row)
        if "group" in row:
            assert isinstance(row["group"], str)


@PROPS
@given(which=st.sampled_from(sorted(DASHBOARD)), data=st.data())
def test_a_dashboard_answer_of_any_shape_is_rows_or_a_clear_error(
    amplitude_client: AmplitudeClient,
    network: Any,
    which: str,
    data: Any,
    clear_error: ClearError,
) -> None:
    method, junk = DASHBOARD[which]
    answer = data.draw(junk)
    wrapped = data.draw(st.booleans())
    network.reply(envelope(answer) if wrapped else dumps(answer))
    rows, error = _call(method, amplitude_client)
    if error is not None:
        clear_error(error, (ApiError, ValueError))
        return
    check_rows(rows)


DEEP: Any = "label"
for _ in range(900):  # under orjson's 1,024 levels, past Python's recursion limit
    DEEP = [DEEP]


@pytest.mark.parametrize(
    ("which", "data"),
    [
        ("active_users", {"xValues": 5, "series": [[1]]}),
        ("active_users", {"xValues": ["2026-09-01"], "series": 7}),
        ("active_users", {"xValues": ["2026-09-01"], "series": [{"0": 1}]}),
        (
            "segmentation of two events",
            {"xValues": ["2026-09-01"], "series": [[1]], "seriesLabels": {"0": "x"}},
        ),
        ("funnel", [{"events": ["a", "b"], "cumulativeRaw": [5, "x"]}]),
        ("funnel", [{"events": ["a", "b"], "cumulativeRaw": {"0": 5}}]),
        ("retention", {"series": [{"dates": 5, "values": {}}]}),
        ("retention", {"series": [{"dates": ["Sep 01"], "values": ["x"]}]}),
        ("retention", {"series": [{"dates": [["Sep 01"]], "values": {}}]}),
        ("revenue_ltv", {"series": [{"dates": ["Sep 01"], "values": {"Sep 01": 5}}]}),
        ("active_users", {"xValues": ["2026-09-01"], "series": [[1]], "seriesLabels": [DEEP]}),
        ("chart_results", {"seriesCollapsed": 5}),
        ("chart_results", [1, 2]),
        ("active_users", [1, 2]),
    ],
)
def test_known_malformed_dashboard_answers(
    amplitude_client: AmplitudeClient, network: Any, which: str, data: Any, clear_error: ClearError
) -> None:
    network.reply(envelope(data))
    rows, error = _call(DASHBOARD[which][0], amplitude_client)
    if error is not None:
        clear_error(error, (ApiError, ValueError))
    else:
        check_rows(rows)


@PROPS
@given(data=series_answers())
def test_the_tidy_functions_keep_every_point_pure(data: dict[str, Any]) -> None:
    rows = series_rows(data)
    assert [r["value"] for r in rows] == expected_points(data)
    groups = [r["group"] for r in rows]
    assert all(isinstance(g, str) and g for g in groups)
    if data["xValues"]:
        assert [r["value"] for r in chart_rows(data)] == expected_points(data)


@PROPS
@given(
    funnel=st.lists(
        st.fixed_dictionaries(
            {
                "events": st.lists(st.text(max_size=5), max_size=5),
                "cumulativeRaw": st.lists(st.integers(0, 10**6), max_size=5),
            }
        ),
        max_size=3,
    )
)
def test_every_funnel_step_becomes_one_row(funnel: list[dict[str, Any]]) -> None:
    rows = funnel_rows(funnel)
    expected = sum(max(len(g["events"]), len(g["cumulativeRaw"])) for g in funnel)
    assert len(rows) == expected
    i = 0
    for group in funnel:
        for step in range(max(len(group["events"]), len(group["cumulativeRaw"]))):
            row = rows[i]
            assert row["step"] == step + 1
            raw = group["cumulativeRaw"]
            assert row["count"] == (raw[step] if step < len(raw) else None)
            i += 1


@PROPS
@given(
    days=st.lists(
        st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)), unique=True, max_size=6
    ),
    counts=st.lists(st.integers(0, 10**6), max_size=5),
)
def test_every_retention_cell_becomes_one_row(days: list[date], counts: list[int]) -> None:
    labels = [d.isoformat() for d in days]
    data = {"series": [{"dates": labels, "values": {k: counts for k in labels}}]}
    rows = retention_rows(data, DAY1, DAY2)
    assert len(rows) == len(days) * len(counts)
    assert sorted({r["cohort_date"] for r in rows}) == (sorted(days) if counts else [])
    ltv = ltv_rows(
        {"series": [{"dates": labels, "values": {k: {"count": 1} for k in labels}}]}, DAY1, DAY2
    )
    assert [r["date"] for r in ltv] == sorted(days)


@pytest.mark.parametrize("label", ["Feb 29", "Feb 30", "Sep 31", "2026-02-29", "Sep 01, 99999"])
def test_impossible_retention_labels_never_crash(label: str, clear_error: ClearError) -> None:
    data = {"series": [{"dates": [label], "values": {label: [1, 2]}}]}
    rows, error = _call(retention_rows, data, date(2026, 1, 10), date(2026, 1, 20))
    if error is not None:
        clear_error(error, ValueError, mentions=label)
    else:
        assert len(rows) == 2


# --- cohort list -----------------------------------------------------------------------------


@PROPS
@given(
    answer=st.fixed_dictionaries({"cohorts": rows_of_objects})
    | any_json
    | st.fixed_dictionaries({"cohorts": any_json})
)
@example(answer={"cohorts": {"id": "c1"}})
@example(answer={"cohorts": "c1"})
@example(answer={"cohorts": 3})
@example(answer={"cohorts": [{"id": "c1"}, None]})
@example(answer=[{"id": "c1"}])
@example(answer={"items": [{"id": "c1"}]})
def test_the_cohort_list_is_every_cohort_or_a_clear_error(
    amplitude_client: AmplitudeClient, network: Any, answer: Any, clear_error: ClearError
) -> None:
    network.reply(dumps(answer))
    cohorts, error = _call(amplitude_client.list_cohorts)
    well_formed = isinstance(answer, dict) and (
        answer.get("cohorts") is None
        and "cohorts" in answer
        or isinstance(answer.get("cohorts"), list)
        and all(isinstance(c, dict) for c in answer["cohorts"])
    )
    if error is not None:
        clear_error(error, ApiError)
        assert not well_formed, f"refused a good answer: {error}"
        return
    assert well_formed, f"accepted {answer!r} as {cohorts!r}"
    assert cohorts == (answer["cohorts"] or [])


@FEW
@given(body=st.binary(max_size=60) | st.sampled_from(BAD_UTF8))
def test_a_cohort_list_that_is_not_json_is_an_error(
    amplitude_client: AmplitudeClient, network: Any, body: bytes, clear_error: ClearError
) -> None:
    network.reply(body)
    cohorts, error = _call(amplitude_client.list_cohorts)
    if error is not None:
        clear_error(error, ApiError)
        return
    ok, answer = parse_json(body)
    assert ok and isinstance(answer, dict) and isinstance(answer.get("cohorts"), list | None)


def test_amplitude_answers_over_a_real_socket(
    amplitude_over_http: AmplitudeClient, scripted: ScriptedServer, clear_error: ClearError
) -> None:
    client = amplitude_over_http
    good = {"xValues": ["2026-09-01", "2026-09-02"], "series": [[3, 4]], "seriesMeta": [0]}
    cases: list[tuple[Callable[[], Any], Any, bool]] = [
        (lambda: client.active_users(DAY1, DAY2), {"data": good}, True),
        (lambda: client.active_users(DAY1, DAY2), {"data": {**good, "series": 7}}, False),
        (lambda: client.list_cohorts(), {"cohorts": [{"id": "c1", "size": 3}]}, True),
        (lambda: client.list_cohorts(), {"cohorts": "c1"}, False),
        (lambda: client.list_cohorts(), [{"id": "c1"}], False),
        (lambda: client.chart_csv("c1"), {"data": ["Segment", "All"]}, False),
        (lambda: client.events_list(), {"data": {"e": 1}}, False),
    ]
    for method, answer, ok in cases:
        scripted.script(Reply(200, {"content-type": "application/json"}, answer))
        got, error = _call(method)
        if ok:
            assert error is None and got, (answer, error)
        else:
            assert error is not None, f"accepted {answer!r} as {got!r}"
            clear_error(error, (ApiError, ValueError))


# --- cohort CSV reader -----------------------------------------------------------------------

cells = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@PROPS
@given(
    header=st.lists(
        st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
        .map(str.strip)
        .filter(bool),
        min_size=1,
        max_size=4,
        unique=True,
    ),
    data=st.data(),
)
def test_every_cohort_csv_row_comes_back(tmp_path: Path, header: list[str], data: Any) -> None:
    records = data.draw(
        st.lists(
            st.lists(cells, min_size=len(header), max_size=len(header)).filter(lambda r: any(r)),
            max_size=20,
        )
    )
    path = tmp_path / "cohort.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([f" {h} " for h in header])  # Amplitude pads headers
        writer.writerows(records)
    rows = list(AmplitudeClient.read_cohort_csv(path))
    assert rows == [dict(zip(header, (v.strip() for v in r), strict=True)) for r in records]


@PROPS
@given(
    body=st.binary(max_size=300)
    | st.lists(
        st.sampled_from(
            [
                b"user_id,amplitude_id\n",
                b"u1,1\n",
                b"u2,2,extra\n",
                b"\xff\xfe,3\n",
                b'"open quote,4\n',
                b"\n",
                b"u3\n",
            ]
        ),
        max_size=8,
    ).map(b"".join)
)
@example(body=b"user_id\n" + b"x" * 200_000 + b"\n")
@example(body=b"user_id,amplitude_id\nu1,1,surplus\n")
@example(body=b"user_id\n\xe9t\xe9\n")
def test_a_damaged_cohort_csv_is_rows_or_a_clear_error(
    tmp_path: Path, body: bytes, clear_error: ClearError
) -> None:
    path = tmp_path / "cohort.csv"
    path.write_bytes(body)
    rows, error = _call(lambda: list(AmplitudeClient.read_cohort_csv(path)))
    if error is not None:
        clear_error(error, (ApiError, ValueError))
        return
    header_fields = None
    for row in rows:
        assert isinstance(row, dict) and all(isinstance(v, str) for v in row.values())
        header_fields = header_fields or len(row)
    # A row whose values would not fit under the header must not lose them silently.
    text = body.decode("utf-8-sig")
    parsed = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    if parsed:
        width = len(parsed[0])
        extra = [r for r in parsed[1:] if any(v.strip() for v in r[width:])]
        assert not extra, f"values beyond the header were dropped silently: {extra[:2]}"
        assert len(rows) == len(parsed) - 1


# --- chart CSV inside JSON -------------------------------------------------------------------


@st.composite
def chart_csvs(draw: st.DrawFn) -> tuple[str, list[tuple[str, str, str]]]:
    """Amplitude's chart CSV: title lines, a Segment header of x values, a row per group."""
    days = draw(st.lists(st.dates(min_value=date(2000, 1, 1)), min_size=1, max_size=5, unique=True))
    groups = draw(
        st.lists(
            st.text(
                st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                min_size=1,
                max_size=6,
            ),
            max_size=4,
            unique=True,
        )
    )
    points = []
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Event Segmentation: Totals"])
    writer.writerow([])
    writer.writerow(["Segment", *(f"\t{d.isoformat()}" for d in days)])
    for group in groups:
        vals = draw(
            st.lists(st.integers(-1000, 10**9).map(str), min_size=len(days), max_size=len(days))
        )
        writer.writerow([f"\t{group}", *vals])
        points += [(group, d.isoformat(), v) for d, v in zip(days, vals, strict=True)]
    return out.getvalue(), points


@PROPS
@given(chart=chart_csvs())
def test_every_chart_csv_cell_becomes_one_row(
    amplitude_client: AmplitudeClient, network: Any, chart: tuple[str, list[Any]]
) -> None:
    text, points = chart
    network.reply(envelope(text))
    rows = parse_chart_csv(amplitude_client.chart_csv("c1"))
    assert [(r["group"], r["x"].isoformat(), str(r["value"])) for r in rows] == [
        (g.strip(), x, v) for g, x, v in points
    ]


@PROPS
@given(answer=any_json | st.text(max_size=200))
@example(answer=["Segment,2026-09-01", "All,5"])
@example(answer={"csv": "Segment,a\nAll,1"})
def test_a_chart_csv_answer_is_text_or_a_clear_error(
    amplitude_client: AmplitudeClient, network: Any, answer: Any, clear_error: ClearError
) -> None:
    network.reply(envelope(answer))
    text, error = _call(amplitude_client.chart_csv, "c1")
    if error is not None:
        clear_error(error, ApiError)
        assert not isinstance(answer, str)
        return
    assert isinstance(text, str)
    # The text as sent (no CSV at all, null, is empty text): never replaced by "".
    assert text == (answer if answer is not None else ""), f"{answer!r} became {text!r}"


@PROPS
@given(
    text=st.text(max_size=300)
    | st.lists(
        st.sampled_from(
            [
                "Segment,\t2026-09-01,\t2026-09-02",
                "\tAll,1,2",
                "\tUS,3",
                "\tEU,4,5,6",
                'x,"unclosed',
                "",
                "Title",
            ]
        ),
        max_size=6,
    ).map("\n".join)
)
@example(text="Segment,a\n" + "x" * 200_000)
@example(text="Segment,\t2026-09-01\n\tAll,1,2,3")
@example(text="Series,\t2026-09-01\n\tAll,1")
def test_a_malformed_chart_csv_is_rows_or_a_clear_error(text: str, clear_error: ClearError) -> None:
    rows, error = _call(parse_chart_csv, text)
    if error is not None:
        clear_error(error, ValueError)
        return
    assert all(set(r) == {"x", "group", "value"} for r in rows)
    # Cells beyond the header's x values have no x: they must not vanish silently.
    records = list(csv.reader(io.StringIO(text.replace("\r\n", "\n"))))
    header = next(
        (i for i, r in enumerate(records) if r and r[0].strip().lower() == "segment"), None
    )
    if header is None:  # only title lines (single cells) may go without a header
        assert all(sum(1 for c in r if c.strip()) <= 1 for r in records), "values dropped"
    else:
        width = len(records[header])
        for record in records[header + 1 :]:
            assert all(not c.strip() for c in record[width:]), "cells beyond the header dropped"


# --- export zip validation -------------------------------------------------------------------


def export_zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


members = st.dictionaries(
    st.builds(
        lambda d, h, n: f"187520/187520_{d.isoformat()}_{h}#{n}.json.gz",
        st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)),
        st.integers(0, 23),
        st.integers(0, 3),
    ),
    st.binary(max_size=200),
    min_size=1,
    max_size=4,
)


@PROPS
@given(files=members, stored=st.booleans())
def test_an_export_archive_extracts_every_member_unchanged(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes], stored: bool
) -> None:
    tmp = tmp_path_factory.mktemp("export")
    archive = tmp / "export.zip"
    archive.write_bytes(export_zip(files, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED))
    out = extract_archive(archive, tmp / "out")
    assert len(out) == len(files)
    assert sorted(p.read_bytes() for p in out) == sorted(files.values())


@PROPS
@given(files=members, data=st.data(), stored=st.booleans())
def test_a_damaged_export_archive_is_refused_and_leaves_nothing(
    tmp_path_factory: pytest.TempPathFactory,
    files: dict[str, bytes],
    data: Any,
    stored: bool,
    clear_error: ClearError,
) -> None:
    good = export_zip(files, zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    bad = data.draw(damaged(good))
    assume(bad != good)
    tmp = tmp_path_factory.mktemp("export")
    archive = tmp / "export.zip"
    archive.write_bytes(bad)
    out, error = _call(extract_archive, archive, tmp / "out")
    if error is not None:
        clear_error(error, CorruptArchiveError)
        assert not any((tmp / "out").iterdir()), "a refused archive left files behind"
        return
    # Accepted: then every file is a member's exact content (damage outside the members'
    # data, e.g. in a comment or a central directory field zipfile does not check).
    contents = sorted(p.read_bytes() for p in out)
    assert all(c in files.values() for c in contents)


@FEW
@given(
    files=st.dictionaries(
        st.integers(0, 23),
        st.lists(objects, max_size=5).map(
            lambda rows: gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
        )
        | st.binary(max_size=40),
        min_size=1,
        max_size=3,
    )
)
def test_an_export_counts_every_event_or_names_the_file_that_is_not_gzip(
    amplitude_client: AmplitudeClient,
    network: Any,
    tmp_path_factory: pytest.TempPathFactory,
    files: dict[int, bytes],
    clear_error: ClearError,
) -> None:
    archive = export_zip({f"187520/187520_2026-09-01_{h}#0.json.gz": c for h, c in files.items()})
    network.reply(archive, **{"content-type": "application/zip"})
    dest = tmp_path_factory.mktemp("export")
    start = datetime(2026, 9, 1, 0)
    result, error = _call(amplitude_client.export, start, start, dest, count_events=True)
    lines = 0
    for content in files.values():
        try:
            lines += gzip.decompress(content).count(b"\n")
        except (OSError, EOFError, zlib.error):
            assert error is not None, "a member that is not gzip was counted"
            clear_error(error, ApiError, mentions="gzip")
            return
    assert error is None, error
    assert result.events == lines and len(result.files) == len(files)


@FEW
@given(body=st.binary(max_size=400))
def test_export_answers_that_are_not_zips_end_in_a_typed_error(
    amplitude_client: AmplitudeClient,
    network: Any,
    tmp_path_factory: pytest.TempPathFactory,
    body: bytes,
    clear_error: ClearError,
) -> None:
    network.reply(body, **{"content-type": "application/zip"})
    dest = tmp_path_factory.mktemp("export")
    start = datetime(2026, 9, 1, 3)
    result, error = _call(amplitude_client.export, start, start, dest, count_events=True)
    if error is not None:
        clear_error(error, ApiError)
        assert not [p for p in dest.iterdir() if not p.name.startswith(".")]
        return
    assert body.startswith(b"PK"), "a body that is not a zip was accepted"


# ============================================================================== http helpers


@PROPS
@given(
    body=st.binary(max_size=300)
    | any_json.map(dumps)
    | st.builds(lambda m: dumps({"error": {"message": m, "metadata": {"details": m}}}), values)
    | st.text(max_size=200).map(lambda t: f"<html><body><p>{t}</p></body></html>".encode())
    | st.integers(1, 70_000).map(lambda n: b"[" * n)
    | st.integers(1, 70_000).map(lambda n: b'{"a":' * n)
    | st.sampled_from(BAD_UTF8),
    content_type=st.none() | st.sampled_from(["application/json", "text/html", "text/plain", ""]),
)
@example(body=b"[" * 60_000, content_type="application/json")
def test_server_message_is_text_or_none_and_never_raises(body: bytes, content_type: Any) -> None:
    message = server_message(body, content_type)
    assert message is None or (isinstance(message, str) and message == message.strip() and message)


@PROPS
@given(text=st.text(min_size=1, max_size=50).filter(lambda t: t.strip()))
def test_server_message_finds_the_message_field(text: str) -> None:
    for body in ({"message": text}, {"error": text}, {"errors": [{"message": text}]}):
        assert server_message(dumps(body)) == text


@PROPS
@given(
    value=st.none()
    | st.text(max_size=40)
    | st.floats(allow_nan=True, allow_infinity=True).map(str)
    | st.integers(-(10**30), 10**30).map(str)
    | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")
    )
    | st.sampled_from(
        [
            "Mon, 01 Jan 99999 00:00:00 GMT",
            "Mon, 01 Jan 2020 00:00:00 +9999",
            "1e400",
            "nan",
            "-inf",
            "\x00",
            "Thu, 31 Feb 2026 00:00:00 GMT",
        ]
    ),
    now=st.floats(0, 4e9),
)
def test_retry_after_is_none_or_a_finite_wait(value: Any, now: float) -> None:
    wait = parse_retry_after(value, now)
    assert wait is None or (isinstance(wait, float) and math.isfinite(wait) and wait >= 0)
    if value is not None:
        try:
            number = float(value.strip())
        except ValueError:
            return
        if math.isfinite(number):
            assert wait == max(0.0, number)


@PROPS
@given(
    status=st.sampled_from([400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503]),
    body=st.binary(max_size=200) | any_json.map(dumps) | st.sampled_from(BAD_UTF8),
    retry_after=st.none()
    | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
)
def test_every_error_status_with_any_body_is_a_typed_error(
    pendo_client: PendoClient,
    network: Any,
    status: int,
    body: bytes,
    retry_after: str | None,
    clear_error: ClearError,
) -> None:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    network.reply(body, status=status, **headers)
    _, error = _call(pendo_client.list_features)
    assert error is not None
    clear_error(error, ApiError)
    assert f"HTTP {status}" in str(error)
    assert error.status == status  # type: ignore[attr-defined]


# ============================================================================== damaged answers
# Issue 18: a JSON read whose body arrives damaged (cut short with a matching length, HTML, an
# empty body) is retried like a dropped connection; the error after the retries names it.


def _orjson_ok(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


@PROPS
@given(
    body=st.binary(max_size=300)
    | any_json.map(dumps)
    | st.builds(lambda v, n: dumps(v)[:n], any_json, st.integers(0, 200))
    | st.text(max_size=120).map(lambda t: f"<html><body>{t}</body></html>".encode())
    | st.sampled_from([b"", b"  \n", *BAD_UTF8]),
    content_type=st.none() | st.sampled_from(["application/json", "text/html", "text/plain", ""]),
)
def test_json_body_problem_is_the_parse_or_a_short_reason(body: bytes, content_type: Any) -> None:
    value, problem = json_body_problem(body, content_type)
    assert (problem is None) == _orjson_ok(body)
    if problem is None:
        assert value == orjson.loads(body)
        return
    assert value is None and problem.strip() and len(problem) < 300
    if not body.strip():
        assert problem.startswith("an empty body")
    elif body.lstrip().startswith(b"<"):
        assert problem.startswith("HTML where JSON was expected")


@PROPS
@given(answer=any_json, cut=st.floats(0, 1, exclude_max=True))
def test_a_json_text_cut_anywhere_says_cut_short_after_its_length(answer: Any, cut: float) -> None:
    whole = dumps(answer)
    body = whole[: int(len(whole) * cut)]
    assume(body.strip() and not _orjson_ok(body))
    _, problem = json_body_problem(body, "application/json")
    assert problem == f"JSON cut short after {len(body):,} bytes (application/json)"


def _retrying_get_json(answers: list[httpx.Response], attempts: int = 2) -> tuple[Transport, list]:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers.pop(0)

    config = TransportConfig(
        base_url="http://api.test",
        service="pendo",
        secrets=("property-test-key",),
        max_attempts=attempts,
    )
    transport = Transport(
        config,
        sleep=lambda _s: None,
        jitter=lambda cap: cap,
        http_transport=httpx.MockTransport(handler),
    )
    return transport, sent


@PROPS
@given(data=st.data(), answer=rows_of_objects | any_json)
def test_a_damaged_json_answer_is_asked_again_and_the_whole_one_returned(
    data: Any, answer: Any
) -> None:
    good = dumps(answer)
    bad = data.draw(
        damaged(good)
        | st.just(b"")
        | st.text(max_size=60).map(lambda t: f"<html><h1>{t}</h1></html>".encode())
    )
    assume(not _orjson_ok(bad))
    content_type = data.draw(st.sampled_from(["application/json", "text/html", None]))
    headers = {"content-type": content_type} if content_type else {}
    answers = [
        httpx.Response(200, headers=headers, content=bad),
        httpx.Response(200, headers={"content-type": "application/json"}, content=good),
    ]
    transport, sent = _retrying_get_json(answers)
    with transport:
        assert transport.get_json("/api/v1/feature") == orjson.loads(good)
        stats = transport.stats.snapshot()
    assert len(sent) == 2 and (stats.retries, stats.transport_errors) == (1, 1)


@FEW
@given(bad=st.binary(max_size=80).filter(lambda b: not _orjson_ok(b)))
def test_a_json_read_damaged_every_time_is_a_clear_typed_error(
    bad: bytes, clear_error: ClearError
) -> None:
    answers = [httpx.Response(200, content=bad + b"property-test-key") for _ in range(2)]
    transport, sent = _retrying_get_json(answers)
    with transport:
        _, error = _call(transport.get_json, "/api/v1/page")
    assert isinstance(error, DamagedResponseError) and len(sent) == 2
    clear_error(error, ApiError)
    assert "property-test-key" not in str(error)
    assert "where JSON was expected" in str(error) or "JSON " in str(error)


@PROPS
@given(
    body=st.binary(max_size=200)
    | any_json.map(dumps)
    | st.builds(lambda d: dumps({"error": {"http_code": 404, "metadata": {"details": d}}}), values)
    | st.text(max_size=60).map(
        lambda t: f"<html>{t} Raw data files were not found.</html>".encode()
    )
)
@example(body=dumps({"error": {"metadata": {"details": "Raw data files were not found."}}}))
def test_only_the_export_envelope_with_its_words_means_no_data(body: bytes) -> None:
    ok, value = parse_json(body)
    details = (
        ((value.get("error") or {}).get("metadata") or {}).get("details")
        if ok
        and isinstance(value, dict)
        and isinstance(value.get("error"), dict)
        and isinstance(value["error"].get("metadata"), dict)
        else None
    )
    genuine = isinstance(details, str) and " ".join(details.split()).rstrip(".").lower() == (
        "raw data files were not found"
    )
    assert is_no_data_answer(body) == (genuine and _orjson_ok(body))
