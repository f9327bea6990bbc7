"""Log events (structlog) and redaction: what a call leaves in the log, and what it never does.

Events are captured with ``structlog.testing.capture_logs()`` and asserted on as dicts; the
secret sweeps look at every event, every exception (message, repr, traceback, chain, notes) and
every stdlib log record of the libraries underneath, over every protocol and under every fault.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from datetime import date
from urllib.parse import quote
from xml.sax.saxutils import escape

import pytest
import structlog
from structlog.contextvars import bound_contextvars, merge_contextvars
from structlog.testing import capture_logs

from fibo_soap import logs
from fibo_soap.client import AsyncFiboClient, FiboClient
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.errors import (
    AmbiguousSendError,
    AsmxError,
    AuthenticationError,
    FiboError,
    TransportError,
)
from fibo_soap.resilience import RetryPolicy

#: A password with every character that changes spelling on the wire (URL, form, XML).
SECRET = 'S3cr&t<pa ss>+%/"x'
#: What must not appear anywhere, whatever the spelling around it.
SECRET_CORE = "S3cr"
PHONE = "0909123628"
PHONE_CORE = "909123628"  # national and international spellings both hold it
OTHER_PHONE = "0912345678"
TEXT = "marker-text-Zq7"

FAST = RetryPolicy(
    attempts=2, deadline=10.0, backoff_initial=0.001, backoff_max=0.002, jitter=0.0, settle=0.0
)
PROTOCOLS = ("soap11", "soap12", "get", "post")
FAULTS = (
    None,
    "http_500",
    "soap_fault",
    "close_before",
    "close_after",
    "truncate",
    "bad_inner_xml",
)

Call = Callable[[FiboClient], object]

#: Every operation of the facade, with arguments that carry the phone and the text.
OPERATIONS: dict[str, Call] = {
    "about": lambda c: c.about(),
    "check_client": lambda c: c.check_client(),
    "get_balance": lambda c: c.get_balance(),
    "get_hosting_balances": lambda c: c.get_hosting_balances(),
    "get_sender_names": lambda c: c.get_sender_names(),
    "send_sms": lambda c: c.send_sms(PHONE, TEXT),
    "send_test_sms": lambda c: c.send_test_sms(PHONE, TEXT),
    "send_masked_sms": lambda c: c.send_masked_sms(PHONE, TEXT, sender_name="FiboSMS"),
    "send_bulk_sms": lambda c: c.send_bulk_sms([(PHONE, TEXT), (OTHER_PHONE, TEXT)]),
    "send_to_list": lambda c: c.send_to_list([PHONE, OTHER_PHONE], TEXT),
    "send_multi_message": lambda c: c.send_multi_message([(PHONE, TEXT), (OTHER_PHONE, TEXT)]),
    "get_sms_status": lambda c: c.get_sms_status(["no-such-guid"]),
    "get_sent_list": lambda c: c.get_sent_list(5),
    "get_sent_page": lambda c: c.get_sent_page(1, key=PHONE),
    "get_total_pages": lambda c: c.get_total_pages(PHONE),
    "get_incoming_list": lambda c: c.get_incoming_list(5),
    "get_incoming": lambda c: c.get_incoming(date(2024, 1, 1), date(2030, 1, 1), key=PHONE),
}


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with run_emulator(delivery_delay=0, client_pass=SECRET) as emulator:
        emulator.set_balance(1_000_000)
        emulator.inject_incoming(PHONE, f"incoming {TEXT}")
        yield emulator


@pytest.fixture(autouse=True)
def _fresh(emu: Emulator) -> Iterator[None]:
    emu.faults.clear()
    structlog.reset_defaults()
    yield
    emu.faults.clear()
    structlog.reset_defaults()


def exception_texts(exc: BaseException) -> list[str]:
    """Everything an exception shows: message, repr, traceback, attributes, along its chain."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), "".join(traceback.format_exception(current))]
        texts += [repr(vars(current)), *getattr(current, "__notes__", [])]
        todo += [current.__cause__, current.__context__]
    return texts


def assert_clean(texts: list[str], where: str) -> None:
    for text in texts:
        for form in (*logs.secret_forms(SECRET), SECRET_CORE):
            assert form not in text, f"the password ({form!r}) leaks in {where}: {text[:300]!r}"
        assert PHONE_CORE not in text, f"a full phone number leaks in {where}: {text[:300]!r}"


# --- the library is silent until an application configures logging ---------------------------


def test_the_library_configures_nothing_on_import() -> None:
    code = (
        "import logging, structlog\n"
        "import fibo_soap, fibo_soap.client, fibo_soap.resilience, fibo_soap.logs\n"
        "assert not structlog.is_configured()\n"
        "assert not logging.getLogger().handlers\n"
        "import fibo_soap.protocols.async_transport\n"
        "assert not logging.getLogger('fibo_soap').handlers\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_silent_until_configured(emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    client = emu.client(retry=FAST)
    assert not logs.enabled()
    client.about()
    client.send_sms(PHONE, TEXT)
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


# --- what a call leaves ---------------------------------------------------------------------


def test_a_successful_call_leaves_one_attempt_and_one_call_event(emu: Emulator) -> None:
    client = emu.client(protocols=("get",), retry=FAST)
    with capture_logs() as captured:
        receipt = client.send_sms(PHONE, TEXT)
    attempt, call = captured
    assert attempt == {
        "event": "fibo.attempt",
        "log_level": "debug",
        "client_no": emu.client_no,
        "operation": "SendSMS",
        "protocol": "get",
        "attempt": 1,
        "duration_ms": attempt["duration_ms"],
        "http_status": 200,
        "fibo_code": 200,
        "outcome": "ok",
        "guids": 1,
    }
    assert call == {
        "event": "fibo.call",
        "log_level": "info",
        "client_no": emu.client_no,
        "operation": "SendSMS",
        "protocol": "get",
        "attempts": 1,
        "duration_ms": call["duration_ms"],
        "http_status": 200,
        "fibo_code": 200,
        "outcome": "ok",
        "guids": 1,
        "phone": "0909***628",
    }
    assert isinstance(call["duration_ms"], float)
    assert call["duration_ms"] > 0
    assert receipt.code == 200


def test_the_story_of_a_flaky_call(emu: Emulator) -> None:
    waits: list[float] = []
    policy = RetryPolicy(attempts=3, jitter=0, sleep=waits.append)
    client = emu.client(protocols=("soap11",), retry=policy)
    emu.fault("close_before", method="CheckClient", times=2)
    with capture_logs() as captured:
        client.check_client()
    story = [
        (e["event"], e.get("attempt"), e["outcome"], e.get("error"), e.get("next"))
        for e in captured
    ]
    assert story == [
        ("fibo.attempt", 1, "failed", "TransportError", "retry"),
        ("fibo.attempt", 2, "failed", "TransportError", "retry"),
        ("fibo.attempt", 3, "ok", None, None),
        ("fibo.call", None, "ok", None, None),
    ]
    assert [e["wait_ms"] for e in captured[:2]] == [200.0, 400.0]
    assert waits == [0.2, 0.4]
    assert captured[-1]["attempts"] == 3
    assert [e["log_level"] for e in captured] == ["debug", "debug", "debug", "info"]


def test_the_story_of_a_fallback_and_of_a_resolved_send(emu: Emulator) -> None:
    client = emu.client(retry=FAST)  # soap11, then get
    emu.fault("soap_fault", method="SendSMS", protocol="soap11")
    with capture_logs() as captured:
        client.send_sms(PHONE, TEXT, guid="story-1")
    story = [
        (e["event"], e.get("operation"), e.get("protocol"), e["outcome"], e.get("next"))
        for e in captured
    ]
    lookup = [
        ("fibo.attempt", "GetSMSStatus", "soap11", "ok", None),
        ("fibo.call", "GetSMSStatus", "soap11", "ok", None),
    ]
    assert story == [
        ("fibo.attempt", "SendSMS", "soap11", "failed", "reconcile"),
        *lookup,
        ("fibo.reconcile", "SendSMS", None, "ok", "retry"),
        ("fibo.attempt", "SendSMS", "soap11", "failed", "reconcile"),
        *lookup,
        ("fibo.reconcile", "SendSMS", None, "ok", "fallback"),
        ("fibo.attempt", "SendSMS", "get", "ok", None),
        ("fibo.call", "SendSMS", "get", "ok", None),
    ]
    assert {e.get("lookup_for") for e in captured if e.get("operation") == "GetSMSStatus"} == {
        "SendSMS"
    }
    first = captured[0]
    assert (first["error"], first["maybe_sent"], first["http_status"]) == (
        "SoapFaultError",
        True,
        None,
    )
    call = captured[-1]
    assert (call["attempts"], call["protocols"], call["confirmed"]) == (3, ["soap11", "get"], 0)


def test_an_ambiguous_send_is_logged_as_such(emu: Emulator) -> None:
    client = emu.client(retry=FAST)
    emu.fault("close_after", method="SendBulkSMS", times=1)
    with capture_logs() as captured, pytest.raises(AmbiguousSendError):
        client.send_bulk_sms([(PHONE, TEXT)])
    attempt, call = captured
    assert (attempt["maybe_sent"], attempt["next"]) == (True, "raise")
    assert (call["outcome"], call["error"]) == ("ambiguous", "AmbiguousSendError")


def test_callers_bind_their_own_context(emu: Emulator) -> None:
    client = emu.client(retry=FAST)
    view = client.bind(request_id="req-1")
    with capture_logs() as captured:
        view.about()
        client.about()
    assert [e.get("request_id") for e in captured] == ["req-1", "req-1", None, None]
    assert {e["client_no"] for e in captured} == {emu.client_no}
    with capture_logs(processors=[merge_contextvars]) as captured, bound_contextvars(job="j-9"):
        client.about()
    assert {e["job"] for e in captured} == {"j-9"}


def test_texts_are_logged_only_when_asked_and_phones_masked_unless_asked(emu: Emulator) -> None:
    with capture_logs() as captured:
        emu.client(retry=FAST).send_sms(PHONE, TEXT)
        emu.client(retry=FAST, log_text=True).send_sms(PHONE, TEXT)
        emu.client(retry=FAST, mask_phones=False).send_sms(PHONE, TEXT)
        emu.client(retry=FAST, log_text=True).send_to_list([PHONE, OTHER_PHONE], TEXT)
    calls = [e for e in captured if e["event"] == "fibo.call"]
    assert [(e.get("phone"), e.get("text")) for e in calls] == [
        ("0909***628", None),
        ("0909***628", TEXT),
        (PHONE, None),
        (None, TEXT),
    ]


# --- nothing secret, anywhere -----------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_password_or_full_phone_in_any_event_exception_or_record(
    emu: Emulator, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clients = [emu.client(protocols=(protocol,), retry=FAST)]
    clients.append(emu.client(protocols=(protocol,), retry=None))
    texts: list[str] = [repr(c) for c in clients] + [repr(c._caller) for c in clients]
    raised: set[str] = set()
    with capture_logs() as captured:
        for name, call in OPERATIONS.items():
            for fault in FAULTS:
                for client in clients:
                    if fault is not None:
                        emu.fault(fault, times=1)
                    try:
                        call(client)
                    except FiboError as exc:
                        raised.add(type(exc).__name__)
                        texts += exception_texts(exc)
                    emu.faults.clear()
            assert name  # every operation ran under every fault
    assert {"AmbiguousSendError", "TransportError"} <= raised
    assert len(captured) > 300
    assert_clean([repr(event) for event in captured], "a log event")
    assert_clean(texts, "an exception")
    assert_clean([record.getMessage() for record in caplog.records], "a stdlib log record")
    assert not any(TEXT in repr(event) for event in captured)


def test_wrong_password_is_not_echoed(emu: Emulator) -> None:
    wrong = 'Wr0ng&<pass> "word"'
    for protocol in PROTOCOLS:
        client = FiboClient(emu.client_no, wrong, endpoint=emu.endpoint, protocols=(protocol,))
        with pytest.raises(AuthenticationError) as caught:
            client.check_client()
        for text in [*exception_texts(caught.value), repr(client)]:
            assert all(form not in text for form in logs.secret_forms(wrong))


@pytest.mark.parametrize("password", [SECRET, "S3cr&t<" + "x" * 40])
@pytest.mark.parametrize("protocol", ["get", "post"])
def test_a_password_echoed_by_the_server_is_redacted(protocol: str, password: str) -> None:
    # ASP.NET request validation quotes the offending field back, cut at 20 characters.
    with run_emulator(client_pass=password, request_validation=True) as strict:
        client = strict.client(protocols=(protocol,), retry=FAST)
        with capture_logs() as captured, pytest.raises(AsmxError) as caught:
            client.check_client()
    texts = exception_texts(caught.value) + [repr(e) for e in captured]
    assert any('clientPass="***"' in text for text in texts)
    for text in texts:
        assert "S3cr" not in text


def test_the_blocking_clients_http_writes_no_log_record_with_the_password(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for protocol in ("get", "post", "soap11"):
        emu.client(protocols=(protocol,), retry=FAST).send_sms(PHONE, TEXT)
    assert_clean([r.getMessage() for r in caplog.records], "the standard library's log")


#: A password that bytes reprs spell otherwise: non-ASCII, both quotes, a backslash.
BYTES_SECRET = "M\u1eadt'k\"h\\\u1ea9u S3cr&<9>"
#: What must not appear of it: its start as text, URL-encoded, and its UTF-8 as repr shows it
#: inside bytes (``\\xba``), and that inside a str (``\\\\xba``).
BYTES_SECRET_CORES = ("M\u1eadt", "%BA%AD", "xba")


def test_the_async_clients_http_writes_no_log_record_with_the_password(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    # AsyncHttpTransport writes no log record of its own (httpx, which it replaced, wrote every
    # request line, a GET's query string included).
    caplog.set_level(logging.DEBUG)

    async def send(protocol: str) -> None:
        async with AsyncFiboClient(
            emu.client_no,
            SECRET,
            endpoint=emu.endpoint,
            protocols=(protocol,),
            retry=FAST,
            service_type="1",
        ) as client:
            await client.send_sms(PHONE, TEXT)

    for protocol in ("get", "post", "soap11"):
        asyncio.run(send(protocol))
    lines = [r.getMessage() for r in caplog.records]
    assert not any("SendSMS" in line for line in lines), lines
    assert_clean(lines, "the standard library's log")


@pytest.mark.parametrize("password", [SECRET, BYTES_SECRET], ids=["xml-url", "bytes"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_broken_answer_echoing_the_password_shows_it_nowhere(
    protocol: str, password: str, caplog: pytest.LogCaptureFixture
) -> None:
    from hostile import CannedServer

    # A status line llhttp refuses, echoing the password as it went (URL- or XML-encoded) and
    # decoded: neither the error nor any log record shows it.
    echo = f"{password} {quote(password, safe='')} {escape(password)}".encode()
    server = CannedServer(lambda _request: [b"HELLO " + echo + b"\r\n\r\n"])
    caplog.set_level(logging.DEBUG)

    async def call() -> None:
        async with AsyncFiboClient(
            "CL0001", password, endpoint=server.endpoint, protocols=(protocol,), retry=None
        ) as client:
            await client.check_client()

    try:
        with pytest.raises(TransportError) as caught:
            asyncio.run(call())
    finally:
        server.close()
    assert server.requests
    texts = [r.getMessage() for r in caplog.records] + exception_texts(caught.value)
    for text in texts:
        for form in (*logs.secret_forms(password), SECRET_CORE, *BYTES_SECRET_CORES):
            assert form not in text, f"the password ({form!r}) leaks: {text!r}"


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("0909123628", "0909***628"),
        ("84909123628", "8490***628"),
        ("+84909123628", "+849***628"),
        ("1234567", "***"),
    ],
)
def test_mask_phone(number: str, masked: str) -> None:
    assert logs.mask_phone(number) == masked


def test_redact_every_spelling() -> None:
    text = " | ".join(
        [
            SECRET,
            "clientPass=S3cr%26t%3Cpa+ss%3E%2B%25%2F%22x",
            '<clientPass>S3cr&amp;t&lt;pa ss&gt;+%/"x</clientPass>',
            'S3cr&amp;amp;t&amp;lt;pa ss&amp;gt;+%/"x',
            'client (clientPass="S3cr&t<pa ss>+%/...")',
            "call 0909123628 or +84 is not a phone but 84909123628 is",
        ]
    )
    cleaned = logs.redact(text, [SECRET])
    assert "S3cr" not in cleaned
    assert PHONE_CORE not in cleaned
    assert "0909***628" in cleaned
    assert "8490***628" in cleaned
    assert logs.redact("no secrets, 12345 and a guid", [SECRET]) == "no secrets, 12345 and a guid"


def test_configure_json_lines_at_a_level(emu: Emulator) -> None:
    stream = io.StringIO()
    logs.configure(json=True, level="info", stream=stream)
    assert logs.enabled()
    emu.client(retry=FAST).about()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["event"], e["level"]) for e in lines] == [("fibo.call", "info")]
    assert lines[0]["timestamp"].endswith("Z")

    stream = io.StringIO()
    logs.configure(json=True, level=logging.DEBUG, stream=stream)
    emu.client(retry=FAST).about()
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == [
        "fibo.attempt",
        "fibo.call",
    ]

    stream = io.StringIO()
    logs.configure(level="DEBUG", stream=stream)
    emu.client(retry=FAST).about()
    assert "fibo.call" in stream.getvalue()
    assert "operation=About" in stream.getvalue()
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure(level="chatty")


def test_event_logger_follows_the_configuration() -> None:
    events = logs.EventLogger(client_no="C1")
    with capture_logs() as first:
        events.get().info("one")
    with capture_logs() as second:
        events.get().info("two")
    assert [e["event"] for e in first] == ["one"]
    assert [e["event"] for e in second] == ["two"]
    assert events.bind(request_id="r").context == {"client_no": "C1", "request_id": "r"}


def test_fixed_fields_follow_the_configuration_and_the_call(emu: Emulator) -> None:
    client = emu.client(protocols=("get",), retry=FAST)
    for _ in range(2):  # the second configuration must not get the first one's loggers
        with capture_logs() as captured:
            client.send_sms(PHONE, TEXT)
            client.about()
        calls = [
            (e["operation"], e["fibo_code"], e.get("phone"))
            for e in captured
            if e["event"] == "fibo.call"
        ]
        assert calls == [("SendSMS", 200, "0909***628"), ("About", None, None)]


def test_an_event_logger_keeps_a_bounded_number_of_fixed_loggers() -> None:
    events = logs.EventLogger(client_no="C1")
    count = logs._FIXED_MOST + 5
    with capture_logs() as captured:
        events.get()
        for n in range(count):
            events.fix(n, n=n).info("e")
        assert events.fixed(0) is None  # all let go when the bound was reached
        assert events.fixed(count - 1) is not None
    assert [(e["client_no"], e["n"]) for e in captured] == [("C1", n) for n in range(count)]
