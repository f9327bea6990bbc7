"""The path every send takes through the emulator: group commit, the balance a batch keeps, the
single send's submit, the form reader, and the answer writers, each held to the slower, simpler
way it replaces.

The group commit tests drive the ASGI app in-process, so that which calls arrive together is
decided by the test, not by the scheduler: requests started in one turn of the loop share a group.
"""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import threading
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp

from fibo_soap import codec, wsdl
from fibo_soap.emulator import app as emulator_app
from fibo_soap.emulator.app import SOAP12, XML, EmulatorApp, _post_headers, form_fields
from fibo_soap.emulator.server import build
from fibo_soap.emulator.store import Outgoing, Store, SubmitResult
from fibo_soap.models import VN_TZ, SmsStatus, StatusDocument
from fibo_soap.operations import OPERATIONS

NS = wsdl.wsdl_namespace()
PASSWORD = "hot-path-secret"
PHONES = [f"09091286{n:02d}" for n in range(12)]
POST_HEADERS = ("content-length", "content-type", "soapaction")


@pytest.fixture
def app() -> Iterator[EmulatorApp]:
    app, _ = build(client_pass=PASSWORD, delivery_delay=0, record=0)
    try:
        yield app
    finally:
        app.service.store.close()


def send_query(phone: str, guid: str) -> bytes:
    return urlencode(
        {
            "clientNo": "CL0001",
            "clientPass": PASSWORD,
            "phoneNumber": phone,
            "smsMessage": "Ma OTP 123456",
            "smsGUID": guid,
            "serviceType": "1",
        }
    ).encode()


async def get(
    app: ASGIApp, query: bytes, events: list[str], headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, bytes]:
    """One HTTP GET SendSMS through the ASGI app: its status and body (the answer's headers are
    appended to ``headers`` when it is given)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/Service.asmx/SendSMS",
        "raw_path": b"/Service.asmx/SendSMS",
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *(headers or [])],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 50000),
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            events.append("answer")
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if headers is not None:
        headers[:] = list(sent[0]["headers"])
    return sent[0]["status"], body


def all_at_once(
    app: EmulatorApp, queries: list[bytes], events: list[str]
) -> list[tuple[int, bytes]]:
    async def main() -> list[tuple[int, bytes]]:
        return list(await asyncio.gather(*(get(app, q, events) for q in queries)))

    return asyncio.run(main())


def count_commits(app: EmulatorApp, events: list[str], *, fail: bool = False) -> None:
    """Records each group's commit in ``events``; with ``fail``, the commit fails instead."""
    store = app.service.store
    batch = store.batch

    @contextmanager
    def recorded() -> Iterator[None]:
        with batch():
            yield
            if fail:
                raise sqlite3.OperationalError("disk I/O error")
        events.append("commit")

    store.batch = recorded  # type: ignore[method-assign]


def code(body: bytes) -> int:
    decoded = codec.decode_result(OPERATIONS["SendSMS"], codec.decode_http_body(body))
    assert isinstance(decoded, StatusDocument), decoded
    return decoded.code


def test_sends_arriving_together_share_one_commit_and_are_answered_after_it(
    app: EmulatorApp,
) -> None:
    events: list[str] = []
    count_commits(app, events)
    answers = all_at_once(app, [send_query(p, f"g-{i}") for i, p in enumerate(PHONES)], events)
    assert [(status, code(body)) for status, body in answers] == [(200, 200)] * len(PHONES)
    assert events == ["commit"] + ["answer"] * len(PHONES)
    stored = app.service.store.outgoing()
    assert sorted(s.guid or "" for s in stored) == sorted(f"g-{i}" for i in range(len(PHONES)))
    assert app.service.store.balance("CL0001", 1) == 1000 - len(PHONES)


def test_a_call_that_throws_fails_alone_and_its_group_is_stored(app: EmulatorApp) -> None:
    events: list[str] = []
    count_commits(app, events)
    call = app.service.call

    def throwing(op: Any, params: Any, protocol: str) -> str | int:
        if params.get("smsGUID") == "g-3":
            app.service.store.set_balance("CL0001", 2, 0)  # a write the failed call made first
            raise RuntimeError("the method broke")
        return call(op, params, protocol)

    app.service.call = throwing  # type: ignore[method-assign]
    answers = all_at_once(app, [send_query(p, f"g-{i}") for i, p in enumerate(PHONES)], events)
    assert answers[3] == (500, b"System.Exception: RuntimeError")
    assert [status for status, _ in answers[:3] + answers[4:]] == [200] * (len(PHONES) - 1)
    assert events[0] == "commit"
    assert len(app.service.store.outgoing()) == len(PHONES) - 1
    assert app.service.store.balance("CL0001", 1) == 1000 - (len(PHONES) - 1)
    # The store calls a failing method made before it threw stay (each is atomic on its own),
    # as they did when every store call committed by itself.
    assert app.service.store.balance("CL0001", 2) == 0


def test_when_the_group_commit_fails_no_call_of_it_succeeds_or_is_stored(
    app: EmulatorApp,
) -> None:
    events: list[str] = []
    count_commits(app, events, fail=True)
    answers = all_at_once(app, [send_query(p, f"g-{i}") for i, p in enumerate(PHONES)], events)
    assert answers == [(500, b"System.Exception: OperationalError")] * len(PHONES)
    assert app.service.store.outgoing() == []
    assert app.service.store.balance("CL0001", 1) == 1000


def test_groups_follow_the_turns_of_the_loop(app: EmulatorApp) -> None:
    events: list[str] = []
    count_commits(app, events)

    async def main() -> None:
        await asyncio.gather(*(get(app, send_query(PHONES[0], f"a-{i}"), events) for i in range(3)))
        await get(app, send_query(PHONES[1], "b"), events)

    asyncio.run(main())
    assert events == ["commit", "answer", "answer", "answer", "commit", "answer"]
    assert len(app.service.store.outgoing()) == 4


def test_a_kept_answer_edited_by_a_middleware_is_whole_for_the_next_call(
    app: EmulatorApp,
) -> None:
    # Every SendSMS that is accepted gets the same kept answer. Starlette's GZipMiddleware edits
    # the headers of the answer it compresses in place; the next answer must not carry them.
    wrapped = GZipMiddleware(app, minimum_size=10)
    answers = []
    for n, encoding in enumerate([b"gzip", b"identity", b"identity"]):
        headers = [(b"accept-encoding", encoding)]
        status, body = asyncio.run(get(wrapped, send_query(PHONES[n], f"g-{n}"), [], headers))
        answers.append((status, dict(headers), body))
    gzipped, *plain = answers
    assert gzipped[1][b"content-encoding"] == b"gzip"
    assert code(gzip.decompress(gzipped[2])) == 200
    for status, headers, body in plain:
        assert status == 200
        assert b"content-encoding" not in headers
        assert int(headers[b"content-length"]) == len(body)
        assert code(body) == 200


def test_calls_on_a_later_loop_form_their_own_group(app: EmulatorApp) -> None:
    events: list[str] = []
    count_commits(app, events)
    for run in range(2):
        answers = all_at_once(
            app, [send_query(p, f"r{run}-{i}") for i, p in enumerate(PHONES)], events
        )
        assert [(status, code(body)) for status, body in answers] == [(200, 200)] * len(PHONES)
    assert events == (["commit"] + ["answer"] * len(PHONES)) * 2


def test_a_call_joins_no_group_of_a_loop_running_in_another_thread(app: EmulatorApp) -> None:
    # One app on two loops at once (two servers' threads): thread a opens a group and blocks
    # while its loop runs; thread b's call must form a group of its own loop, not join a's.
    op = OPERATIONS["SendSMS"]
    opened, joined = threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def params(guid: str) -> dict[str, str | None]:
        return dict(parse_qsl(send_query(PHONES[0], guid).decode()))

    async def first() -> None:
        future = app._call(op, params("a"), "get")
        opened.set()
        joined.wait(10)  # the loop blocked, running: its group stays open meanwhile
        results["a"] = await future

    async def second() -> None:
        await asyncio.get_running_loop().run_in_executor(None, opened.wait, 10)
        future = app._call(op, params("b"), "get")
        results["b loop"] = future.get_loop() is asyncio.get_running_loop()
        joined.set()
        results["b"] = await asyncio.wait_for(future, 10)

    threads = [threading.Thread(target=asyncio.run, args=(main(),)) for main in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results["b loop"] is True
    for name in "ab":
        answer = codec.decode_result(op, str(results[name]))
        assert isinstance(answer, StatusDocument)
        assert answer.code == 200
    assert sorted(s.guid or "" for s in app.service.store.outgoing()) == ["a", "b"]


def test_a_group_left_open_on_a_stopped_loop_holds_no_call_of_another(app: EmulatorApp) -> None:
    events: list[str] = []
    count_commits(app, events)
    stale = asyncio.new_event_loop()
    try:
        waiting = stale.create_task(get(app, send_query(PHONES[0], "stale"), events))

        async def until_grouped() -> None:
            while app._group is None:
                await asyncio.sleep(0)

        stale.run_until_complete(until_grouped())
        left = app._group
        assert left is not None
        assert not left.closed  # the loop stopped before the group ran

        async def fresh() -> tuple[int, bytes]:
            return await asyncio.wait_for(get(app, send_query(PHONES[1], "fresh"), events), 10)

        status, body = asyncio.run(fresh())
        assert (status, code(body)) == (200, 200)
        assert events == ["commit", "answer"]
        # The stale loop, run again, commits and answers its own call.
        assert code(stale.run_until_complete(waiting)[1]) == 200
    finally:
        stale.close()
    assert sorted(s.guid or "" for s in app.service.store.outgoing()) == ["fresh", "stale"]


# --- the form reader ---------------------------------------------------------------------------

# Pieces of forms as clients write them, and as they should not.
form_pieces = [
    "a",
    "b",
    "A",
    "=",
    "&",
    "+",
    "%",
    "%2",
    "%20",
    "%C3%A9",
    "%C3",
    "%ZZ",
    "%FF",
    " ",
    "é",
]
form_text = st.lists(st.sampled_from(form_pieces), max_size=20).map("".join) | st.text(max_size=30)


@settings(max_examples=300, deadline=None)
@given(text=form_text)
def test_form_fields_read_what_parse_qsl_reads(text: str) -> None:
    # parse_qsl's pairs, gathered as a NameValueCollection gathers them: one name whatever its
    # case, first spelling kept, the values of a repeated name joined with commas.
    expected: dict[str, str] | type[Exception] = {}
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        expected = type(exc)
    else:
        assert isinstance(expected, dict)
        for name, value in pairs:
            same = [key for key in expected if key.lower() == name.lower()]
            if same:
                expected[same[0]] += f",{value}"
            else:
                expected[name] = value
    try:
        got: dict[str, str] | type[Exception] = form_fields(text)
    except (UnicodeDecodeError, ValueError) as exc:
        got = type(exc)
    assert got == expected
    if isinstance(expected, dict):
        assert list(got) == list(expected)  # type: ignore[arg-type]


# --- the POST edges: headers and body ----------------------------------------------------------

header_lists = st.lists(
    st.tuples(
        st.sampled_from(
            [b"content-length", b"content-type", b"soapaction", b"host", b"x-soapaction"]
        ),
        st.binary(max_size=12) | st.sampled_from([b"text/xml; charset=utf-8", b"\xe9", b""]),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(headers=header_lists)
def test_post_headers_read_what_request_headers_read(headers: list[tuple[bytes, bytes]]) -> None:
    request = Request({"type": "http", "headers": list(headers)})
    expected = tuple(request.headers.get(name, "") for name in POST_HEADERS)
    assert _post_headers({"type": "http", "headers": list(headers)}) == expected


@pytest.mark.parametrize(
    ("chunks", "limit", "expected"),
    [
        ([b"<soap/>"], 100, b"<soap/>"),
        ([b""], 100, b""),
        ([b"<so", b"ap/", b">"], 100, b"<soap/>"),
        ([b"<soap/>", b""], 100, b"<soap/>"),
        ([b"", b"<soap/>"], 100, b"<soap/>"),
        ([b"<soap/>"], 7, b"<soap/>"),
        ([b"<soap/>"], 6, None),
        ([b"<so", b"ap/>"], 6, None),
    ],
)
def test_a_body_is_its_messages_joined_and_none_past_the_limit(
    monkeypatch: pytest.MonkeyPatch, chunks: list[bytes], limit: int, expected: bytes | None
) -> None:
    monkeypatch.setattr(emulator_app, "MAX_REQUEST_BYTES", limit)
    messages = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    request = Request({"type": "http", "headers": []}, receive)
    assert asyncio.run(emulator_app._body(request, "")) == expected
    # A declared length past the limit is refused before anything is read.
    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    assert asyncio.run(emulator_app._body(request, str(limit + 1))) is None
    assert messages


@pytest.mark.parametrize("before", [0, 1])
def test_a_client_gone_before_its_body_is_whole_is_a_disconnect(before: int) -> None:
    messages: list[dict[str, Any]] = [
        *({"type": "http.request", "body": b"<so", "more_body": True} for _ in range(before)),
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    request = Request({"type": "http", "headers": []}, receive)
    with pytest.raises(ClientDisconnect):
        asyncio.run(emulator_app._body(request, ""))


# --- the answer writers ------------------------------------------------------------------------

texts = st.text() | st.sampled_from(["", "\r\n", "a]]>b", "&amp;", "<SMS/>", "x\ufffey", "\ud800"])


def tree_or_error(write: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return write(*args, **kwargs)
    except (ValueError, UnicodeError) as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(message=texts, code_=st.integers(min_value=-1000, max_value=100_000))
def test_status_documents_are_what_the_lxml_tree_writes(message: str, code_: int) -> None:
    assert tree_or_error(codec.encode_status, code_, message) == tree_or_error(
        codec._encode_status_tree, code_, message
    )


@settings(max_examples=300, deadline=None)
@given(
    value=texts | st.integers(),
    method=st.sampled_from(sorted(OPERATIONS)),
    namespace=st.sampled_from([NS, "urn:x", 'http://e.com/?a=1&b="2"<', "fibo-text-slot"]),
)
def test_http_bodies_are_what_the_lxml_tree_writes(
    value: str | int, method: str, namespace: str
) -> None:
    op = OPERATIONS[method]
    assert tree_or_error(codec.encode_http_body, op, value, namespace) == tree_or_error(
        codec._encode_http_body_tree, op.returns_int, str(value), namespace
    )


@settings(max_examples=300, deadline=None)
@given(
    value=texts | st.integers(),
    method=st.sampled_from(sorted(OPERATIONS)),
    version=st.sampled_from(["1.1", "1.2"]),
    namespace=st.sampled_from([NS, "urn:x", 'http://e.com/?a=1&b="2"<', "fibo-text-slot"]),
)
def test_soap_responses_are_what_the_lxml_tree_writes(
    value: str | int, method: str, version: codec.SoapVersion, namespace: str
) -> None:
    op = OPERATIONS[method]
    expected = tree_or_error(
        codec._encode_soap_response_tree, op.name, str(value), version, namespace
    )
    assert (
        tree_or_error(codec.encode_soap_response, op, value, version=version, namespace=namespace)
        == expected
    )
    if isinstance(expected, bytes) and isinstance(value, str):
        # And the client reads the text back as it was written.
        found = etree.fromstring(expected).find(f".//{{{namespace}}}{method}Result")
        assert found is not None
        assert (found.text or "") == value


@pytest.mark.parametrize("namespace", ["", NS, "urn:x"])
def test_a_soap_call_element_is_split_as_qname_splits_it(namespace: str) -> None:
    body = (
        f'<soap:Envelope xmlns:soap="{codec.SOAP11_NS}"><soap:Body>'
        f'<SendSMS xmlns="{namespace}"><clientNo>C</clientNo></SendSMS>'
        "</soap:Body></soap:Envelope>"
    ).encode()
    call = codec.parse_xml(body)[0][0]
    request = codec.decode_soap_request(body)
    assert (request.namespace, request.method) == (
        etree.QName(call).namespace or "",
        codec.local_name(call),
    )
    assert request.params == {"clientNo": "C"}


# One app for all the inputs: the answers it keeps from one input to the next are under test.
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=texts | st.integers(),
    method=st.sampled_from(sorted(OPERATIONS)),
    protocol=st.sampled_from(["soap11", "soap12", "get", "post"]),
    long=st.booleans(),
)
def test_answers_kept_once_written_are_what_the_codec_writes(
    app: EmulatorApp, value: str | int, method: str, protocol: str, long: bool
) -> None:
    op = OPERATIONS[method]
    if long and isinstance(value, str):
        value += "x" * 600  # longer than what is kept: written on every call
    if protocol == "soap11":
        expected = tree_or_error(codec.encode_soap_response, op, value, version="1.1", namespace=NS)
    elif protocol == "soap12":
        expected = tree_or_error(codec.encode_soap_response, op, value, version="1.2", namespace=NS)
    else:
        expected = tree_or_error(codec.encode_http_body, op, value, NS)
    for _ in range(2):  # written, then kept
        answer = tree_or_error(app._answer, op, value, protocol)
        if not isinstance(expected, bytes):
            assert answer is expected
            continue
        plain = Response(expected, media_type=SOAP12 if protocol == "soap12" else XML)
        assert isinstance(answer, Response)
        assert (answer.status_code, answer.body, answer.raw_headers, answer.media_type) == (
            plain.status_code,
            plain.body,
            plain.raw_headers,
            plain.media_type,
        )
        assert answer.background is None


# --- the single send's submit ------------------------------------------------------------------

NOW = datetime(2024, 5, 10, 9, 0, tzinfo=VN_TZ)
# Seconds from NOW, or None for an instant never reached.
offsets = st.none() | st.sampled_from([-2.0, -0.5, 0.0, 0.25, 0.5, 1.0, 3.0]) | st.floats(-5, 5)


def stored_rows(path: Path) -> list[tuple[Any, ...]]:
    """Every column of every sms row, the internal ones (timeline, next_at) included."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM sms ORDER BY id").fetchall()


def store_at(path: Path, balance: int) -> Store:
    store = Store(path)
    store.add_account("C1", "p", "One")
    store.add_service_type("C1", 1, "Hosting", balance)
    return store


def result_or_error(submit: Any) -> SubmitResult | tuple[type[Exception], str]:
    try:
        result: SubmitResult = submit()
    except (ValueError, TypeError) as exc:
        return type(exc), str(exc)
    return result


@settings(max_examples=250, deadline=None)
@given(
    phone=st.sampled_from(["0909128628", "84913122005", ""]) | st.text(max_size=12),
    message=st.text(max_size=20),
    guid=st.none() | st.text(max_size=10),
    sender=st.none() | st.sampled_from(["FiboSMS", ""]),
    final_status=st.sampled_from(list(SmsStatus)),
    sending=offsets,
    final=offsets,
    service_type=st.sampled_from([1, 2]),
    balance=st.sampled_from([0, 1, 5]),
    charge=st.booleans(),
    batched=st.booleans(),
)
def test_submit_one_and_submit_stamped_are_submit_of_one_outgoing(
    tmp_path_factory: pytest.TempPathFactory,
    phone: str,
    message: str,
    guid: str | None,
    sender: str | None,
    final_status: SmsStatus,
    sending: float | None,
    final: float | None,
    service_type: int,
    balance: int,
    charge: bool,
    batched: bool,
) -> None:
    def at(offset: float | None) -> datetime | None:
        if offset is None:
            return None
        instant = NOW + timedelta(seconds=offset)
        return instant.astimezone(UTC)

    def stamp(offset: float | None) -> float | None:
        instant = at(offset)
        return None if instant is None else instant.timestamp()

    fields = (phone, message, guid, sender, final_status, at(sending), at(final))
    # submit_one takes the same instants as timestamps, where no datetime can be naive.
    stamped = (*fields[:5], stamp(sending), stamp(final))
    options: dict[str, Any] = {"operation": "SendSMS", "protocol": "get", "charge": charge}
    folder = tmp_path_factory.mktemp("submit-one")
    with (
        store_at(folder / "one.sqlite3", balance) as one,
        store_at(folder / "many.sqlite3", balance) as many,
        store_at(folder / "stamped.sqlite3", balance) as listed,
    ):
        results = []
        for store, submit in (
            (
                one,
                lambda: one.submit_one(
                    "C1", service_type, *stamped, now_ts=NOW.timestamp(), **options
                ),
            ),
            (
                many,
                lambda: many.submit("C1", service_type, [Outgoing(*fields)], now=NOW, **options),
            ),
            (
                listed,
                lambda: listed.submit_stamped(
                    "C1", service_type, [stamped], now_ts=NOW.timestamp(), **options
                ),
            ),
        ):
            if batched:
                with store.batch():
                    results.append(result_or_error(submit))
            else:
                results.append(result_or_error(submit))
        assert results[0] == results[1] == results[2]
        assert one.balance("C1", 1) == many.balance("C1", 1) == listed.balance("C1", 1)
    assert stored_rows(folder / "one.sqlite3") == stored_rows(folder / "many.sqlite3")
    assert stored_rows(folder / "stamped.sqlite3") == stored_rows(folder / "many.sqlite3")


# --- the balance a batch keeps -----------------------------------------------------------------

# One step of a script: a submit (account, service type, messages, charged?) or a balance set.
submits = st.tuples(
    st.just("submit"),
    st.sampled_from(["C1", "C2", "nobody"]),
    st.sampled_from([1, 2, 3]),
    st.integers(min_value=0, max_value=4),
    st.booleans(),
)
balance_sets = st.tuples(
    st.just("set"), st.sampled_from(["C1", "C2"]), st.just(1), st.integers(0, 6), st.just(True)
)
reads = st.tuples(st.just("read"), st.just("C1"), st.just(1), st.just(0), st.just(True))


def run_script(store: Store, script: list[tuple[str, str, int, int, bool]]) -> list[Any]:
    seen: list[Any] = []
    for n, (step, client_no, service_type, count, charge) in enumerate(script):
        options = submit_options(charge)
        if step == "submit" and count == 1:
            one = {**options, "now_ts": NOW.timestamp()}
            del one["now"]
            seen.append(store.submit_one(client_no, service_type, "0909128600", f"m{n}", **one))
        elif step == "submit":
            messages = [Outgoing(f"09091286{i:02d}", f"m{n}", f"g{n}-{i}") for i in range(count)]
            seen.append(store.submit(client_no, service_type, messages, **options))
        elif step == "set":
            store.set_balance(client_no, service_type, count)
        else:
            seen.append(store.balance(client_no, service_type))
    return seen


def submit_options(charge: bool) -> dict[str, Any]:
    return {"now": NOW, "operation": "SendSMS", "protocol": "get", "charge": charge}


@settings(max_examples=150, deadline=None)
@given(script=st.lists(submits | balance_sets | reads, max_size=14))
def test_a_batch_takes_balances_as_single_calls_do(
    tmp_path_factory: pytest.TempPathFactory, script: list[tuple[str, str, int, int, bool]]
) -> None:
    folder = tmp_path_factory.mktemp("balances")
    stores = []
    for name in ("plain", "batched"):
        store = Store(folder / f"{name}.sqlite3")
        for client_no in ("C1", "C2"):
            store.add_account(client_no, "p", client_no)
            store.add_service_type(client_no, 1, "Hosting", 5)
            store.add_service_type(client_no, 3, "Test", 0)
        stores.append(store)
    plain, batched = stores
    try:
        expected = run_script(plain, script)
        with batched.batch():
            got = run_script(batched, script)
        assert got == expected
        for client_no in ("C1", "C2"):
            for service_type in (1, 3):
                assert batched.balance(client_no, service_type) == plain.balance(
                    client_no, service_type
                )
    finally:
        plain.close()
        batched.close()
    assert stored_rows(folder / "batched.sqlite3") == stored_rows(folder / "plain.sqlite3")


def test_a_balance_set_inside_a_batch_is_the_one_later_submits_see(tmp_path: Path) -> None:
    with store_at(tmp_path / "set.sqlite3", 5) as store:
        with store.batch():
            options = submit_options(charge=True)
            options["now_ts"] = options.pop("now").timestamp()
            assert store.submit_one("C1", 1, "0909128628", "a", **options).accepted
            store.set_balance("C1", 1, 0)
            assert store.submit_one("C1", 1, "0909128628", "b", **options).reason == "zero_balance"
            store.set_balance("C1", 1, 1)
            assert store.submit_one("C1", 1, "0909128628", "c", **options).accepted
            assert store.submit_one("C1", 1, "0909128628", "d", **options).reason == "zero_balance"
        assert store.balance("C1", 1) == 0
        assert [s.message for s in store.outgoing()] == ["a", "c"]
