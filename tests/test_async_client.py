"""AsyncFiboClient against the emulator over loopback sockets: every operation over SOAP 1.1,
SOAP 1.2, HTTP GET and HTTP POST (the cases of test_client_e2e.py, awaited), retries, fallback and
send safety under the emulator's faults, tasks sharing one client, and parity with FiboClient: the
same errors, the same log events, the same methods.

The tests run on asyncio through anyio's pytest plugin.
"""

from __future__ import annotations

import asyncio
import builtins
import gzip
import inspect
import logging
import random
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import structlog
from hostile import ThreadedServer
from structlog.testing import capture_logs
from test_client_e2e import CASES, PROTOCOLS, Case
from test_logs import FAULTS as LOGGED_FAULTS
from test_logs import OPERATIONS as LOGGED_OPERATIONS
from test_logs import SECRET, assert_clean, exception_texts

from fibo_soap import AsyncFiboClient, FiboClient, Message, RetryPolicy
from fibo_soap.client import FacadeMethod, _Client
from fibo_soap.codec import decode_document, decode_soap_request, encode_rows, encode_status
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.errors import (
    AmbiguousSendError,
    AuthenticationError,
    ConnectError,
    FiboCodeError,
    FiboError,
    ProtocolError,
    TimeoutError,
    TransportError,
)
from fibo_soap.models import BatchReceipt, SendReceipt, SmsStatus, SmsStatusRow, StatusDocument
from fibo_soap.operations import OPERATIONS, PHONE_LIST_DOCUMENT, operation
from fibo_soap.protocols.async_transport import AsyncHttpTransport
from fibo_soap.resilience import CONFIRMED_MESSAGE, AsyncCaller, Attempt, Caller
from fibo_soap.wsdl import wsdl_namespace

pytestmark = pytest.mark.anyio

#: Retries without waiting to speak of.
FAST = RetryPolicy(
    attempts=3, deadline=10.0, backoff_initial=0.001, backoff_max=0.005, jitter=0.001, settle=0.0
)
PHONE = "0909123628"
PHONES = ["0909123628", "0912345678", "0987654321", "0933111222", "0944555666"]
SENDS = ("SendSMS", "SendMaskedSMS", "SendSMSToListMobilePhone", "SendSMSWithMultiMessage")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with run_emulator(delivery_delay=0) as emulator:
        emulator.set_balance(1_000_000)
        yield emulator


@pytest.fixture(autouse=True)
def _fresh(emu: Emulator) -> Iterator[None]:
    emu.faults.clear()
    emu.app.recorded.clear()
    yield
    emu.faults.clear()
    # capture_logs leaves structlog marked as configured; the library must go silent again.
    structlog.reset_defaults()


def aclient(emu: Emulator, **options: Any) -> AsyncFiboClient:
    options.setdefault("service_type", 1)
    options.setdefault("retry", FAST)
    options.setdefault("timeout", (2.0, 2.0))
    return AsyncFiboClient(emu.client_no, emu.client_pass, endpoint=emu.endpoint, **options)


def sclient(emu: Emulator, **options: Any) -> FiboClient:
    options.setdefault("service_type", 1)
    options.setdefault("retry", FAST)
    options.setdefault("timeout", (2.0, 2.0))
    return FiboClient(emu.client_no, emu.client_pass, endpoint=emu.endpoint, **options)


def received(emu: Emulator, operation: str | None = None) -> list[Any]:
    return [r for r in emu.recorded if operation is None or r.operation == operation]


def events(logs: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in logs
        if e["event"] == name and all(e.get(key) == value for key, value in match.items())
    ]


def new_guids(operation: str, prefix: str, n: int = 3) -> list[str]:
    count = 1 if operation in ("SendSMS", "SendMaskedSMS") else n
    return [f"{prefix}-{operation}-{i}-{random.getrandbits(32):08x}" for i in range(count)]


async def send(client: AsyncFiboClient, operation: str, guids: list[str]) -> Any:
    """One send of ``operation`` carrying ``guids`` (one GUID for the single sends)."""
    if operation == "SendSMS":
        return await client.send_sms(PHONE, "hello", guid=guids[0])
    if operation == "SendMaskedSMS":
        return await client.send_masked_sms(PHONE, "hello", sender_name="FiboSMS", guid=guids[0])
    phones = (PHONES * (len(guids) // len(PHONES) + 1))[: len(guids)]
    if operation == "SendSMSToListMobilePhone":
        return await client.send_to_list(list(zip(phones, guids, strict=True)), "hello")
    return await client.send_multi_message(
        [Message(p, f"text {g}", g) for p, g in zip(phones, guids, strict=True)]
    )


def accepted(receipt: SendReceipt | BatchReceipt) -> tuple[str, ...]:
    return (receipt.guid,) if isinstance(receipt, SendReceipt) else receipt.accepted


def stored(emu: Emulator, guids: list[str]) -> dict[str, int]:
    counts = emu.store.count_by_guid(emu.client_no)
    return {g: counts.get(g, 0) for g in guids}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- every operation over every protocol ------------------------------------------------------


def assert_wire(request: Any, case: Case, protocol: str, emu: Emulator) -> None:
    """The request on the wire is the one test_client_e2e.py asserts FiboClient makes."""
    namespace = wsdl_namespace()
    op = OPERATIONS[case.wire]
    assert request.operation == case.wire
    if protocol == "soap11":
        assert (request.method, request.path) == ("POST", "/Service.asmx")
        assert request.headers["content-type"].startswith("text/xml")
        assert request.headers["soapaction"].strip('"') == f"{namespace}{case.wire}"
        wire = list(decode_soap_request(request.body).params.items())
    elif protocol == "soap12":
        assert (request.method, request.path) == ("POST", "/Service.asmx")
        content_type = request.headers["content-type"]
        assert content_type.startswith("application/soap+xml")
        assert f'action="{namespace}{case.wire}"' in content_type
        wire = list(decode_soap_request(request.body).params.items())
    elif protocol == "get":
        assert (request.method, request.path) == ("GET", f"/Service.asmx/{case.wire}")
        assert request.body == b""
        wire = parse_qsl(request.query, keep_blank_values=True)
    else:
        assert (request.method, request.path) == ("POST", f"/Service.asmx/{case.wire}")
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"
        wire = parse_qsl(request.body.decode("ascii"), keep_blank_values=True)
    assert [name for name, _ in wire] == list(op.params)
    values = dict(wire)
    if op.authenticated:
        assert values.pop("clientNo") == emu.client_no
        assert values.pop("clientPass") == emu.client_pass
    documents = {name: values.pop(name) for name in case.documents}
    assert values == case.params
    for name, rows in case.documents.items():
        shape = op.document(name)
        assert shape is not None
        assert decode_document(shape, documents[name] or "") == rows


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_operation_end_to_end(fibo_emulator: Emulator, case: Case, protocol: str) -> None:
    emu = fibo_emulator
    with emu.client(protocol=protocol, retry=None) as setup:
        case.prepare(setup, emu)
    emu.advance(0)
    before = len(emu.recorded)
    async with aclient(emu, protocols=(protocol,), retry=None) as client:
        result = await case.call(client, emu)  # type: ignore[arg-type]
    emu.advance(0)
    case.check(result, emu)
    [request] = emu.recorded[before:]
    assert_wire(request, case, protocol, emu)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_wrong_password_is_an_authentication_error(emu: Emulator, protocol: str) -> None:
    async with AsyncFiboClient(
        emu.client_no, "not-the-password", endpoint=emu.endpoint, protocol=protocol
    ) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.check_client()
    assert (caught.value.code, caught.value.operation) == (100, "CheckClient")
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in repr(caught.value)


async def test_fibo_codes_are_answers(emu: Emulator) -> None:
    async with aclient(emu) as client:
        answer = await client._call("GetSMSSentList", {"minutes": "soon"})  # 202
    assert isinstance(answer, StatusDocument)
    assert answer.code == 202
    assert len(received(emu)) == 1


# --- retries, fallback, send safety ------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["soap11", "get"])
async def test_a_lost_answer_to_a_send_is_found_and_not_resent(
    emu: Emulator, protocol: str
) -> None:
    emu.fault("close_after", method="SendSMS", times=1)
    async with aclient(emu, protocols=(protocol,)) as client:
        receipt = await client.send_sms(PHONE, "hello", guid=f"lost-{protocol}")
    assert receipt.message == CONFIRMED_MESSAGE
    assert stored(emu, [f"lost-{protocol}"]) == {f"lost-{protocol}": 1}
    assert len(received(emu, "SendSMS")) == 1
    assert len(received(emu, "GetSMSStatus")) == 1


@pytest.mark.parametrize("kind", ["close_after", "truncate", "close_before", "http_500"])
@pytest.mark.parametrize("operation", SENDS)
async def test_every_send_is_stored_once_under_a_fault(
    emu: Emulator, operation: str, kind: str
) -> None:
    guids = new_guids(operation, kind)
    emu.fault(kind, method=operation, times=1)
    async with aclient(emu) as client:
        receipt = await send(client, operation, guids)
    assert set(accepted(receipt)) == set(guids)
    assert stored(emu, guids) == dict.fromkeys(guids, 1)
    resent = kind in ("close_before", "http_500")
    assert len(received(emu, operation)) == (2 if resent else 1)
    assert len(received(emu, "GetSMSStatus")) == 1


async def test_closed_soap11_falls_back_to_get(emu: Emulator) -> None:
    emu.fault("close_before", protocol="soap11")
    async with aclient(emu) as client:  # soap11, then get
        with capture_logs() as logs:
            assert await client.about() == "www.Fibovietnam.com"
    assert [r.protocol for r in received(emu)] == ["soap11"] * 3 + ["get"]
    attempts = events(logs, "fibo.attempt", operation="About")
    assert [e.get("next", "-") for e in attempts] == ["retry", "retry", "fallback", "-"]
    [call] = events(logs, "fibo.call")
    assert (call["protocol"], call["protocols"], call["attempts"]) == ("get", ["soap11", "get"], 4)


async def test_a_send_falls_back_with_the_same_guid(emu: Emulator) -> None:
    emu.fault("http_500", method="SendSMS", protocol="soap11")
    async with aclient(emu) as client:
        receipt = await client.send_sms(PHONE, "hello", guid="fallback-async")
    assert receipt.guid == "fallback-async"
    assert stored(emu, ["fallback-async"]) == {"fallback-async": 1}
    assert [r.protocol for r in received(emu, "SendSMS")] == ["soap11"] * 3 + ["get"]


async def test_list_send_resends_only_what_the_gateway_does_not_know(emu: Emulator) -> None:
    guids = new_guids("SendSMSToListMobilePhone", "subset", 4)
    async with aclient(emu) as client:
        await client.send_sms(PHONE, "sent before", guid=guids[0])
        emu.app.recorded.clear()
        emu.fault("close_before", method="SendSMSToListMobilePhone", times=1)
        receipt = await send(client, "SendSMSToListMobilePhone", guids)
    assert receipt.accepted == tuple(guids)
    assert stored(emu, guids) == dict.fromkeys(guids, 1)
    first, resend = received(emu, "SendSMSToListMobilePhone")

    def carried(request: Any) -> list[str | None]:
        return [row[1] for row in decode_document(PHONE_LIST_DOCUMENT, request.params[name])]

    name = "listPhoneNumber"
    assert carried(first) == guids
    assert carried(resend) == guids[1:]


async def test_bulk_send_is_never_resent(emu: Emulator) -> None:
    emu.fault("close_after", method="SendBulkSMS", times=1)
    async with aclient(emu) as client:
        with pytest.raises(AmbiguousSendError) as caught:
            await client.send_bulk_sms([(PHONE, "b1"), (PHONES[1], "b2")])
    assert caught.value.guids == ()
    assert "2 message(s) may or may not have reached the gateway" in str(caught.value)
    assert isinstance(caught.value.__cause__, TransportError)
    assert len(received(emu, "SendBulkSMS")) == 1
    assert received(emu, "GetSMSStatus") == []


async def test_read_heals_after_a_fault(emu: Emulator) -> None:
    emu.fault("http_500", method="CheckClient", protocol="post", times=1)
    async with aclient(emu, protocols=("post",)) as client:
        assert await client.check_client() == "Nguyen Van A"
    assert len(received(emu, "CheckClient")) == 2


async def test_deadline_cuts_a_request_in_flight(emu: Emulator) -> None:
    policy = RetryPolicy(attempts=5, deadline=0.3, backoff_initial=0.01)
    emu.fault("latency", method="About", seconds=1.5)
    async with aclient(emu, protocols=("get",), retry=policy, timeout=(2.0, 5.0)) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.about()
    assert time.monotonic() - started < 0.8
    assert len(received(emu, "About")) == 1


async def test_timed_out_send_settles_before_the_lookup(emu: Emulator) -> None:
    policy = RetryPolicy(attempts=3, backoff_initial=0.001, settle=0.5)
    emu.fault("latency", method="SendSMS", times=1, seconds=0.3)
    async with aclient(emu, protocols=("get",), retry=policy, timeout=(1.0, 0.1)) as client:
        receipt = await client.send_sms(PHONE, "slow", guid="async-settle")
    assert receipt.message == CONFIRMED_MESSAGE
    assert stored(emu, ["async-settle"]) == {"async-settle": 1}


async def test_refused_connection_is_a_connect_error(emu: Emulator) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/Service.asmx"
    client = AsyncFiboClient("CL0001", "pw", endpoint=endpoint, protocols=("post",), retry=FAST)
    with pytest.raises(ConnectError) as caught:
        await client.send_sms(PHONE, "never", service_type=1)
    await client.aclose()
    assert caught.value.request_sent is False
    assert any("after 3 attempts over post" in note for note in caught.value.__notes__)


async def test_a_long_get_goes_as_post(emu: Emulator) -> None:
    guids = [f"long-{i}-{random.getrandbits(32):08x}" for i in range(60)]
    phones = [f"09091{i:05d}" for i in range(60)]
    async with aclient(emu, protocols=("get",)) as client:
        with capture_logs() as logs:
            receipt = await client.send_to_list(list(zip(phones, guids, strict=True)), "long")
    assert receipt.accepted == tuple(guids)
    [long] = received(emu, "SendSMSToListMobilePhone")
    assert (long.method, long.protocol) == ("POST", "post")
    [switch] = events(logs, "fibo.get_as_post")
    assert switch["url_length"] > 2000


async def test_waits_do_not_block_the_event_loop(emu: Emulator) -> None:
    policy = RetryPolicy(attempts=3, backoff_initial=0.1, backoff_max=0.1, jitter=0.0)
    emu.fault("http_500", method="About", times=2)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(ticker())
    async with aclient(emu, protocols=("get",), retry=policy) as client:
        started = time.monotonic()
        assert await client.about() == "www.Fibovietnam.com"
        waited = time.monotonic() - started
    beat.cancel()
    assert waited >= 0.2
    assert ticks >= 10  # the loop went on running while the call waited


async def test_a_policy_sleep_is_called_or_awaited(emu: Emulator) -> None:
    recorded: list[float] = []
    awaited: list[float] = []

    async def nap(seconds: float) -> None:
        awaited.append(seconds)

    for sleep, seen in ((recorded.append, recorded), (nap, awaited)):
        policy = RetryPolicy(attempts=3, deadline=None, backoff_initial=0.01, sleep=sleep)
        emu.fault("http_500", method="About", times=2)
        async with aclient(emu, protocols=("get",), retry=policy) as client:
            assert await client.about() == "www.Fibovietnam.com"
        assert len(seen) == 2


# --- one client, many tasks ----------------------------------------------------------------


async def test_tasks_sharing_one_client_each_send_stored_once(emu: Emulator) -> None:
    tasks, sends_each = 8, 12
    for method in SENDS:  # some answers lost, some requests refused, mid-way
        emu.fault("close_after", method=method, times=3)
        emu.fault("close_before", method=method, times=2)

    async def worker(client: AsyncFiboClient, n: int) -> list[tuple[set[str], set[str]]]:
        outcomes = []
        for i in range(sends_each):
            operation = SENDS[(n + i) % len(SENDS)]
            guids = new_guids(operation, f"task{n}-{i}", 1 + i % 3)
            receipt = await send(client, operation, guids)
            outcomes.append((set(accepted(receipt)), set(guids)))
        return outcomes

    async with aclient(emu, pool_size=4) as client:
        results = await asyncio.gather(*(worker(client, n) for n in range(tasks)))
    expected = [g for outcomes in results for _, guids in outcomes for g in guids]
    assert all(got == wanted for outcomes in results for got, wanted in outcomes)
    counts = stored(emu, expected)
    assert Counter(counts.values()) == Counter({1: len(expected)})
    assert len(received(emu, "GetSMSStatus")) >= 3


# --- parity with FiboClient: the same errors -------------------------------------------------


def _set_zero_balance(emu: Emulator) -> None:
    emu.set_balance(0, service_type=2)


# name: (client options, what to arm before each run, the call)
SCENARIOS: dict[str, tuple[dict[str, Any], Callable[[Emulator], object], Callable[..., Any]]] = {
    "wrong password": ({"client_pass": "nope"}, lambda e: None, lambda c, g: c.check_client()),
    "invalid phone": ({}, lambda e: None, lambda c, g: c.send_sms("12", "x", guid=g)),
    "text too long": ({}, lambda e: None, lambda c, g: c.send_sms(PHONE, "x" * 2000, guid=g)),
    "wrong service type": (
        {},
        lambda e: None,
        lambda c, g: c.send_sms(PHONE, "x", guid=g, service_type=9),
    ),
    "zero balance": (
        {},
        _set_zero_balance,
        lambda c, g: c.send_sms(PHONE, "x", guid=g, service_type=2),
    ),
    "asmx 500": (
        {"protocols": ("get",)},
        lambda e: e.fault("http_500", method="About"),
        lambda c, g: c.about(),
    ),
    "http 500 on soap": (
        {"protocols": ("soap11",)},
        lambda e: e.fault("http_500", method="About"),
        lambda c, g: c.about(),
    ),
    "soap fault": (
        {"protocols": ("soap12",)},
        lambda e: e.fault("soap_fault", method="SendSMS"),
        lambda c, g: c.send_sms(PHONE, "x", guid=g),
    ),
    "dropped, no retries": (
        {"retry": None, "protocols": ("soap11",)},
        lambda e: e.fault("close_before", method="About", times=1),
        lambda c, g: c.about(),
    ),
    "bulk answer lost": (
        {},
        lambda e: e.fault("close_after", method="SendBulkSMS", times=1),
        lambda c, g: c.send_bulk_sms([(PHONE, "b")]),
    ),
    "look-up down": (
        {},
        lambda e: (
            e.fault("close_after", method="SendSMS", times=1),
            e.fault("http_500", method="GetSMSStatus"),
        ),
        lambda c, g: c.send_sms(PHONE, "x", guid=g),
    ),
    "answer too large": (
        {"max_response_bytes": 200, "protocols": ("post",)},
        lambda e: None,
        lambda c, g: c.get_hosting_balances(),
    ),
    "read timeout": (
        {"timeout": (1.0, 0.1), "protocols": ("soap11",), "retry": None},
        lambda e: e.fault("latency", method="About", seconds=0.4, times=1),
        lambda c, g: c.about(),
    ),
    "malformed answer to a read": (
        {"protocols": ("post",)},
        lambda e: e.fault("bad_inner_xml", method="GetSMSSentList"),
        lambda c, g: c.get_sent_list(5),
    ),
    "refused connection": (
        {"endpoint": "refused"},
        lambda e: None,
        lambda c, g: c.about(),
    ),
}


def _options(emu: Emulator, options: dict[str, Any]) -> dict[str, Any]:
    made = {"retry": FAST, "timeout": (2.0, 2.0), "service_type": 1, **options}
    made.setdefault("client_pass", emu.client_pass)
    made.setdefault("endpoint", emu.endpoint)
    if made["endpoint"] == "refused":
        made["endpoint"] = f"http://127.0.0.1:{free_port()}/Service.asmx"
    return made


def _shape(exc: BaseException) -> dict[str, Any]:
    """What must be the same in both clients' error: its class, its attributes, its chain."""
    shape: dict[str, Any] = {"type": type(exc)}
    if isinstance(exc, FiboError):
        shape |= {"operation": exc.operation, "protocol": exc.protocol, "code": exc.code}
        notes = [note.split(" in ")[0] for note in getattr(exc, "__notes__", [])]
        shape["notes"] = notes
        shape["cause"] = type(exc.__cause__) if exc.__cause__ is not None else None
    if isinstance(exc, FiboCodeError):
        shape["detail"] = exc.detail
    if isinstance(exc, TransportError):
        shape["request_sent"] = exc.request_sent
    if isinstance(exc, AmbiguousSendError):
        shape["guids"] = len(exc.guids)
    for name in ("status", "fault_code", "field"):
        shape[name] = getattr(exc, name, None)
    return shape


async def _outcome(
    emu: Emulator, kind: str, options: dict[str, Any], call: Callable[..., Any], guid: str
) -> Any:
    """What ``call`` returns or raises on a fresh client of ``kind``."""
    made = _options(emu, options)
    client_no, client_pass = emu.client_no, made.pop("client_pass")
    try:
        if kind == "sync":
            with FiboClient(client_no, client_pass, **made) as sync:
                return call(sync, guid)
        async with AsyncFiboClient(client_no, client_pass, **made) as client:
            return await call(client, guid)
    except FiboError as exc:
        return exc


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_errors_are_those_of_the_sync_client(emu: Emulator, scenario: str) -> None:
    options, arm, call = SCENARIOS[scenario]
    shapes = []
    for kind in ("sync", "async"):
        emu.faults.clear()
        emu.set_balance(1_000_000, service_type=2)
        arm(emu)
        guid = f"parity-{kind}-{random.getrandbits(32):08x}"
        failed = await _outcome(emu, kind, options, call, guid)
        assert isinstance(failed, FiboError), f"{kind} client: no error but {failed!r}"
        shapes.append(_shape(failed))
    emu.set_balance(1_000_000, service_type=2)
    sync_shape, async_shape = shapes
    assert async_shape == sync_shape


# --- parity with FiboClient: the same log events -------------------------------------------

#: Keys whose values are timings.
_VOLATILE = {"duration_ms", "wait_ms"}


def _event_shape(event: dict[str, Any]) -> dict[str, Any]:
    shape = {k: v for k, v in event.items() if k not in _VOLATILE}
    if "detail" in shape:  # the HTTP libraries word a dropped connection differently
        shape["detail"] = "…"
    return shape


STORIES: dict[str, tuple[dict[str, Any], Callable[[Emulator], object], Callable[..., Any]]] = {
    "a read": ({}, lambda e: None, lambda c, g: c.get_balance()),
    "a send": ({}, lambda e: None, lambda c, g: c.send_sms(PHONE, "hi", guid=g)),
    "a flaky read": (
        {"protocols": ("post",)},
        lambda e: e.fault("http_500", method="CheckClient", times=1),
        lambda c, g: c.check_client(),
    ),
    "a fallback": (
        {},
        lambda e: e.fault("soap_fault", protocol="soap11"),
        lambda c, g: c.about(),
    ),
    "a lost answer found": (
        {},
        lambda e: e.fault("close_after", method="SendSMS", times=1),
        lambda c, g: c.send_sms(PHONE, "hi", guid=g),
    ),
    "a list send partly resent": (
        {"protocols": ("get",)},
        lambda e: e.fault("close_before", method="SendSMSWithMultiMessage", times=1),
        lambda c, g: c.send_multi_message([(PHONE, "a", f"{g}-1"), (PHONES[1], "b", f"{g}-2")]),
    ),
    "an ambiguous bulk send": (
        {},
        lambda e: e.fault("truncate", method="SendBulkSMS", times=1),
        lambda c, g: c.send_bulk_sms([(PHONE, "b")]),
    ),
}


@pytest.mark.parametrize("story", list(STORIES))
async def test_log_events_are_those_of_the_sync_client(emu: Emulator, story: str) -> None:
    options, arm, call = STORIES[story]
    told: list[list[dict[str, Any]]] = []
    for kind in ("sync", "async"):
        emu.faults.clear()
        arm(emu)
        with capture_logs() as logs:
            guid = f"story-{kind}-{random.getrandbits(32):08x}"
            await _outcome(emu, kind, options, lambda c, g: call(c.bind(request_id="r1"), g), guid)
        told.append([_event_shape(e) for e in logs])
    sync_events, async_events = told
    assert sync_events
    assert async_events == sync_events
    assert all(e["client_no"] == emu.client_no and e["request_id"] == "r1" for e in async_events)


# --- parity with FiboClient: the same methods ------------------------------------------------


def _operations() -> list[str]:
    return sorted(n for n, v in vars(_Client).items() if isinstance(v, FacadeMethod))


def test_both_clients_have_every_operation_with_the_same_signature() -> None:
    names = _operations()
    assert len(names) == 18  # the 17 of test_client_e2e.py and estimate
    for name in names:
        blocking = getattr(FiboClient, name)
        awaited = getattr(AsyncFiboClient, name)
        assert not inspect.iscoroutinefunction(blocking)
        assert inspect.iscoroutinefunction(awaited)
        assert inspect.signature(blocking) == inspect.signature(awaited)
        assert "Plan" not in str(inspect.signature(blocking))
        assert blocking.__doc__ == awaited.__doc__
        assert "wire method" in (blocking.__doc__ or "")
        assert awaited.__qualname__ == f"AsyncFiboClient.{name}"
    public = {n for n in dir(FiboClient) if not n.startswith("_")} - {"close"}
    assert public == {n for n in dir(AsyncFiboClient) if not n.startswith("_")} - {"aclose"}


async def test_estimate_with_and_without_the_balance(emu: Emulator) -> None:
    async with aclient(emu) as client:
        checked = await client.estimate(["xin chào", (PHONE, "hello")])
        unchecked = await client.estimate(["x" * 200], check_balance=False)
    assert checked.total_parts == 2
    assert checked.balance == emu.balance(1)
    assert (unchecked.total_parts, unchecked.balance) == (2, None)
    assert [r.operation for r in received(emu)] == ["GetClientBalance"]


async def test_from_env_repr_bind_and_closing(emu: Emulator) -> None:
    env = {
        "FIBO_CLIENT_NO": emu.client_no,
        "FIBO_CLIENT_PASS": emu.client_pass,
        "FIBO_ENDPOINT": emu.endpoint,
        "FIBO_PROTOCOL": "soap12,get",
        "FIBO_SERVICE_TYPE": "1",
    }
    client = AsyncFiboClient.from_env(env)
    assert client.protocols == ("soap12", "get")
    assert AsyncFiboClient.from_env(env, protocol="post").protocols == ("post",)
    assert repr(client).startswith("AsyncFiboClient(client_no='CL0001'")
    assert emu.client_pass not in repr(client)
    view = client.bind(request_id="r9")
    assert isinstance(view, AsyncFiboClient)
    assert await view.get_balance() > 0
    await client.aclose()
    # As FiboClient reconnects after close(), a closed client opens a new pool when used again.
    assert await client.about() == "www.Fibovietnam.com"
    await client.aclose()
    await client.aclose()


async def test_zeep_async_service_and_a_remote_wsdl(emu: Emulator) -> None:
    async with aclient(emu, protocols=("soap12",), wsdl=f"{emu.endpoint}?WSDL") as client:
        assert await client.about() == "www.Fibovietnam.com"
        assert await client.service.About() == "www.Fibovietnam.com"
        assert await client.service.CheckClient(emu.client_no, emu.client_pass) is not None


async def test_a_get_call_writes_no_request_line_to_any_log(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    # The transport logs nothing (httpx, which it replaced, wrote every request line, query
    # string and password included).
    with caplog.at_level(logging.DEBUG):
        async with aclient(emu, protocols=("get",)) as client:
            assert await client.check_client() == "Nguyen Van A"
    lines = [r.getMessage() for r in caplog.records]
    assert not any("CheckClient" in line or emu.client_pass in line for line in lines), lines


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_no_password_or_full_phone_in_any_event_exception_or_record(
    protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    raised: set[str] = set()
    with run_emulator(delivery_delay=0, client_pass=SECRET) as secret_emu:
        secret_emu.set_balance(1_000_000)
        clients = [aclient(secret_emu, protocols=(protocol,), retry=r) for r in (FAST, None)]
        texts += [repr(c) for c in clients] + [repr(c._caller) for c in clients]
        with capture_logs() as captured:
            for name, call in LOGGED_OPERATIONS.items():
                for fault in LOGGED_FAULTS:
                    for client in clients:
                        if fault is not None:
                            secret_emu.fault(fault, times=1)
                        try:
                            await call(client)
                        except FiboError as exc:
                            raised.add(type(exc).__name__)
                            texts += exception_texts(exc)
                        secret_emu.faults.clear()
                assert name
        for client in clients:
            await client.aclose()
    assert {"AmbiguousSendError", "TransportError"} <= raised
    assert len(captured) > 300
    assert_clean([repr(event) for event in captured], "a log event")
    assert_clean(texts, "an exception")
    assert_clean([record.getMessage() for record in caplog.records], "a stdlib log record")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_timed_out_get_keeps_the_password_out_of_its_exception_chain(kind: str) -> None:
    # The HTTP libraries' own exceptions hold the URL, a GET's query and password with it: the
    # error raised must not keep one as its __context__, suppressed or not.
    with run_emulator(delivery_delay=0, client_pass=SECRET) as secret_emu:
        secret_emu.fault("latency", seconds=0.5)
        options = {"protocols": ("get",), "retry": None, "timeout": (1.0, 0.1)}
        failed = await _outcome(secret_emu, kind, options, lambda c, g: c.check_client(), "")
    assert isinstance(failed, TimeoutError)
    assert failed.__context__ is None
    assert_clean(exception_texts(failed), "an exception")


def test_nothing_heavy_is_imported_until_needed() -> None:
    code = """
import sys
heavy = ("lxml", "zeep", "urllib3", "phonenumbers", "httpx", "httptools")
loaded = lambda: {m.split(".")[0] for m in sys.modules} & set(heavy)
import fibo_soap
assert not loaded(), loaded()
client = fibo_soap.FiboClient("CL0001", "pw")
assert "httptools" in loaded() and "zeep" not in loaded(), loaded()  # answers are llhttp's
fibo_soap.AsyncFiboClient("CL0001", "pw")
assert not loaded() & {"httpx", "urllib3", "zeep"}, loaded()
assert fibo_soap.RetryPolicy.__module__ == "fibo_soap.resilience"
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- the logic is I/O-free: plans driven by hand ----------------------------------------------


def test_an_operation_is_a_plan_of_steps_without_io() -> None:
    client = FiboClient("CL0001", "pw", service_type=1, retry=FAST)  # nothing listens: no I/O
    plan = _Client.send_sms.flow(client, "0909 123 628", "hi", guid="g-1")
    step = next(plan)
    assert isinstance(step, Attempt)
    assert (step.op.name, step.protocol.name) == ("SendSMS", "soap11")
    assert step.wire["phoneNumber"] == "0909123628"
    assert step.wire["clientPass"] == "pw"
    # The answer was lost: the plan looks the GUID up rather than send again.
    step = plan.throw(TransportError("connection reset"))
    assert isinstance(step, Attempt)
    assert step.op.name == "GetSMSStatus"
    found = encode_rows(operation("GetSMSStatus"), [SmsStatusRow("g-1", SmsStatus.PENDING, None)])
    with pytest.raises(StopIteration) as done:
        plan.send(found)
    assert done.value.value == SendReceipt("g-1", 200, CONFIRMED_MESSAGE)


class _Scripted:
    """A protocol, blocking or async, that plays back answers or raises errors, in order."""

    def __init__(self, script: list[str | FiboError]) -> None:
        self.name = "soap11"
        self.script = script
        self.calls: list[str] = []

    def _next(self, op: Any) -> str:
        self.calls.append(op.name)
        step = self.script.pop(0)
        if isinstance(step, FiboError):
            raise step
        return step

    def call(self, op: Any, params: Any) -> str:
        return self._next(op)


class _AsyncScripted(_Scripted):
    async def call(self, op: Any, params: Any) -> str:  # type: ignore[override]
        return self._next(op)


@pytest.mark.parametrize(("code", "outcome"), [(202, "ambiguous"), (301, "resent")])
async def test_both_callers_decide_alike(code: int, outcome: str) -> None:
    def script() -> list[str | FiboError]:
        return [TransportError("reset"), encode_status(code, "no"), encode_status(200, "Sent")]

    params = {"phoneNumber": PHONE, "smsMessage": "m", "smsGUID": "g1", "serviceType": "1"}
    options: dict[str, Any] = {
        "client_no": "C1",
        "client_pass": "secret-pw",
        "policy": FAST,
        "max_bytes": 1_000_000,
    }
    blocking_proto, awaited_proto = _Scripted(script()), _AsyncScripted(script())
    sync_caller = Caller([blocking_proto], **options)
    async_caller = AsyncCaller([awaited_proto], **options)
    send = operation("SendSMS")
    if outcome == "ambiguous":
        with pytest.raises(AmbiguousSendError) as sync_error:
            sync_caller.call(send, params, guids=("g1",))
        with pytest.raises(AmbiguousSendError) as async_error:
            await async_caller.call(send, params, guids=("g1",))
        assert str(async_error.value) == str(sync_error.value)
        assert "GatewayError" in str(async_error.value)
    else:
        answer = sync_caller.call(send, params, guids=("g1",))
        assert await async_caller.call(send, params, guids=("g1",)) == answer
        assert answer == StatusDocument(200, "Sent")
    assert awaited_proto.calls == blocking_proto.calls
    assert blocking_proto.calls[:2] == ["SendSMS", "GetSMSStatus"]


# --- AsyncHttpTransport: pool, framing, proxies, TLS, over a loopback server of the test's own ---


class Loopback(ThreadedServer):
    """A loopback server: each connection answers each request head with ``answer(head)`` (raw
    bytes, or none, which ends the connection unanswered; a request body, when the head declares
    one, is read and kept). ``close`` after an answer ends the connection; ``tls`` (an
    SSLContext) wraps each connection, after a CONNECT when ``tunnel`` (as a proxy would open one
    and an origin then speak in it)."""

    def __init__(
        self,
        answer: Callable[[bytes], bytes] = lambda head: OK,
        *,
        close: bool = False,
        tls: Any = None,
        tunnel: bytes | None = None,
    ) -> None:
        self.answer, self.close_after, self.tls, self.tunnel = answer, close, tls, tunnel
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connects: list[bytes] = []
        self.ended = threading.Event()  # set when a connection ends from the client's side
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        try:
            if self.tunnel is not None:
                connect, _ = _read_head(conn, b"")
                self.connects.append(connect)
                conn.sendall(self.tunnel)
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            data = b""
            while True:
                head, data = _read_head(conn, data)
                if not head:
                    self.ended.set()
                    return
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(data) < length:
                    data += conn.recv(65536)
                self.heads.append(head)
                self.bodies.append(data[:length])
                data = data[length:]
                reply = self.answer(head)
                if not reply:  # no answer: the connection closes
                    return
                conn.sendall(reply)
                if self.close_after:
                    return
        except OSError:
            self.ended.set()
        finally:
            conn.close()

    def url(self, path: str = "/Service.asmx/About", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


def _read_head(conn: socket.socket, data: bytes) -> tuple[bytes, bytes]:
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b"", b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK"


@pytest.fixture
def loopbacks() -> Iterator[list[Loopback]]:
    servers: list[Loopback] = []
    yield servers
    for server in servers:
        server.close()


def transport(**options: Any) -> AsyncHttpTransport:
    options.setdefault("max_response_bytes", 100_000)
    options.setdefault("proxies", {})
    return AsyncHttpTransport(**options)


async def test_kept_alive_connections_are_reused_and_one_the_server_closed_is_not(
    loopbacks: list[Loopback],
) -> None:
    kept, closing = Loopback(), Loopback(close=True)
    loopbacks += [kept, closing]
    http = transport()
    try:
        for _ in range(5):
            assert (await http.request("GET", kept.url())).content == b"OK"
        for _ in range(3):
            assert (await http.request("GET", closing.url())).content == b"OK"
            await asyncio.sleep(0.05)  # the server's close arrives, as it would between calls
        # One origin, one pool: another path of it reuses the kept connection.
        await http.request("POST", kept.url("/Service.asmx/CheckClient"), body=b"a=1")
    finally:
        await http.aclose()
    assert kept.connections == 1
    assert closing.connections == 3
    assert await asyncio.to_thread(kept.ended.wait, 5)  # aclose closed the idle connection
    head = kept.heads[0].decode("latin-1")
    assert head.startswith("GET /Service.asmx/About HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{kept.port}" in head
    assert "User-Agent: fibo-soap" in head
    assert "Content-Length" not in head
    assert "Content-Length: 3" in kept.heads[-1].decode("latin-1")
    assert kept.bodies[-1] == b"a=1"


async def test_tasks_beyond_the_pool_open_more_connections_and_only_pool_size_are_kept(
    loopbacks: list[Loopback],
) -> None:
    def slow(head: bytes) -> bytes:
        time.sleep(0.05)
        return OK

    server = Loopback(slow)
    loopbacks.append(server)
    http = transport(pool_size=2)
    try:
        await asyncio.gather(*(http.request("GET", server.url()) for _ in range(6)))
        assert server.connections == 6
        await asyncio.gather(*(http.request("GET", server.url()) for _ in range(2)))
        assert server.connections == 6
        await asyncio.gather(*(http.request("GET", server.url()) for _ in range(3)))
        assert server.connections == 7
    finally:
        await http.aclose()


ANSWERS = [
    pytest.param(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        True,
        id="chunked",
    ),
    pytest.param(b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\nhello world", False, id="1.0"),
    pytest.param(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 11\r\n\r\nhello world",
        True,
        id="1.0-keep-alive",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 11\r\n\r\nhello world",
        False,
        id="connection-close",
    ),
    pytest.param(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world",
        True,
        id="100-continue-first",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 31\r\n\r\n"
        + gzip.compress(b"hello world", mtime=0),
        True,
        id="gzip",
    ),
    pytest.param(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\n\r\n" + zlib.compress(b"hello world"),
        False,
        id="deflate-to-the-end",
    ),
]


@pytest.mark.parametrize(("answer", "kept"), ANSWERS)
async def test_every_framing_reads_the_whole_body_and_keeps_only_what_may_be_kept(
    loopbacks: list[Loopback], answer: bytes, kept: bool
) -> None:
    server = Loopback(lambda head: answer, close=not kept)
    loopbacks.append(server)
    http = transport()
    try:
        for _ in range(2):
            response = await http.request("GET", server.url())
            assert (response.status, response.content) == (200, b"hello world")
            await asyncio.sleep(0.02)
    finally:
        await http.aclose()
    assert server.connections == (1 if kept else 2)
    assert b"Accept-Encoding: identity" in server.heads[0]


async def test_header_names_are_read_in_any_case_and_repeats_are_joined(
    loopbacks: list[Loopback],
) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-TYPE: text/xml\r\nX-A: 1\r\nX-A: 2\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    server = Loopback(lambda head: answer)
    loopbacks.append(server)
    http = transport()
    try:
        response = await http.request("GET", server.url())
    finally:
        await http.aclose()
    assert response.media_type == "text/xml"
    assert response.headers["Content-Type"] == response.headers.get("content-type") == "text/xml"
    assert response.headers.get("x-a") == "1, 2"
    assert "X-A" in response.headers
    assert response.headers.get("Missing", "-") == "-"


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("http://127.0.0.1:9/a b", None),
        ("http://127.0.0.1:9/\u00e0", None),
        ("ftp://127.0.0.1/x", None),
        ("http://127.0.0.1:9/x", {"X-Evil": "a\r\nX-Injected: 1"}),
        ("http://127.0.0.1:9/x", {"Bad Name": "a"}),
        ("http://127.0.0.1:9/x", {"X-Name": "Nguy\u1ec5n"}),
    ],
)
async def test_a_request_that_cannot_be_sent_is_refused_before_anything_is(
    url: str, headers: dict[str, str] | None
) -> None:
    http = transport(connect_timeout=0.5)
    with pytest.raises(ProtocolError):
        await http.request("GET", url, headers=headers)
    await http.aclose()


async def test_a_server_that_closes_a_kept_connection_unanswered_is_a_transport_error(
    loopbacks: list[Loopback],
) -> None:
    answers = iter([OK, b""])
    server = Loopback(lambda head: next(answers))  # the second request: the connection closes
    loopbacks.append(server)
    http = transport()
    try:
        await http.request("GET", server.url())
        with pytest.raises(TransportError) as caught:
            await http.request("GET", server.url())
    finally:
        await http.aclose()
    assert type(caught.value) is TransportError
    assert caught.value.request_sent is True
    assert "kept-alive" in str(caught.value)


async def test_a_cancelled_request_closes_its_connection(loopbacks: list[Loopback]) -> None:
    def late(head: bytes) -> bytes:
        time.sleep(0.5)
        return OK

    server = Loopback(late)
    loopbacks.append(server)
    http = transport()
    try:
        with pytest.raises(builtins.TimeoutError):
            async with asyncio.timeout(0.1):
                await http.request("GET", server.url())
        assert await asyncio.to_thread(server.ended.wait, 5)  # closed, not kept for the next call
        assert (await http.request("GET", server.url())).content == b"OK"
    finally:
        await http.aclose()
    assert server.connections == 2


def test_one_transport_serves_one_event_loop_after_another(loopbacks: list[Loopback]) -> None:
    server = Loopback()
    loopbacks.append(server)
    http = transport()

    async def call() -> bytes:
        return (await http.request("GET", server.url())).content

    assert asyncio.run(call()) == b"OK"
    assert asyncio.run(call()) == b"OK"  # the first loop's connection is not awaited here
    asyncio.run(http.aclose())
    assert server.connections == 2


async def test_a_plain_http_proxy_gets_the_whole_url_and_its_credentials(
    loopbacks: list[Loopback],
) -> None:
    proxy = Loopback()
    loopbacks.append(proxy)
    http = transport(proxies={"http": f"http://us%40er:p%3Ass@127.0.0.1:{proxy.port}"})
    try:
        await http.request("GET", "http://fibo.example:8080/Service.asmx/About?x=1")
    finally:
        await http.aclose()
    head = proxy.heads[0].decode()
    assert head.startswith("GET http://fibo.example:8080/Service.asmx/About?x=1 HTTP/1.1\r\n")
    assert "Host: fibo.example:8080\r\n" in head
    assert "Proxy-Authorization: Basic dXNAZXI6cDpzcw==" in head  # base64 of "us@er:p:ss"


async def test_a_proxy_that_refuses_the_tunnel_is_a_connect_error(
    loopbacks: list[Loopback],
) -> None:
    refusing = Loopback(tunnel=b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    loopbacks.append(refusing)
    http = transport(proxies={"https": f"http://127.0.0.1:{refusing.port}"})
    with pytest.raises(ConnectError) as caught:
        await http.request("GET", "https://fibo.example/Service.asmx/About")
    await http.aclose()
    assert caught.value.request_sent is False
    assert "407" in str(caught.value)
    assert caught.value.__context__ is None


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and fibo.example, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", key, "-out", cert, "-subj", "/CN=fibo.example"),
            *("-addext", "subjectAltName=DNS:fibo.example,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _server_tls(certificate: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


async def test_tls_is_verified_with_the_default_context(
    loopbacks: list[Loopback], certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Loopback(tls=_server_tls(certificate))
    loopbacks.append(server)
    untrusted = transport()
    with pytest.raises(ConnectError) as caught:
        await untrusted.request("GET", server.url(scheme="https"))
    await untrusted.aclose()
    assert "certificate" in str(caught.value).lower()
    # ssl.create_default_context() trusts what SSL_CERT_FILE names.
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    http = transport()
    try:
        for _ in range(2):
            assert (await http.request("GET", server.url(scheme="https"))).content == b"OK"
    finally:
        await http.aclose()
    assert server.connections == 2  # the refused handshake's, then one kept alive


async def test_https_through_a_proxy_is_a_connect_tunnel_then_tls(
    loopbacks: list[Loopback], certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    proxy = Loopback(
        tls=_server_tls(certificate), tunnel=b"HTTP/1.1 200 Connection established\r\n\r\n"
    )
    loopbacks.append(proxy)
    http = transport(proxies={"https": f"http://us%40er:p%3Ass@127.0.0.1:{proxy.port}"})
    try:
        for _ in range(2):
            response = await http.request("GET", "https://fibo.example/Service.asmx/About?x=1")
            assert response.content == b"OK"
    finally:
        await http.aclose()
    assert proxy.connections == 1
    connect = proxy.connects[0].decode()
    assert connect.startswith("CONNECT fibo.example:443 HTTP/1.1\r\n")
    assert "Proxy-Authorization: Basic dXNAZXI6cDpzcw==" in connect
    head = proxy.heads[0].decode()  # inside the tunnel: no credentials, the path only
    assert head.startswith("GET /Service.asmx/About?x=1 HTTP/1.1\r\nHost: fibo.example\r\n")
    assert "Proxy-Authorization" not in head
