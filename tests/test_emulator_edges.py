"""The emulator at the edges: faults on demand, the admin API, ASMX's answers to odd requests,
and hostile requests refused without harm.

Raw HTTP (http.client) where the exact status, content type and body shape are the point; the real
FiboClient where what a user of the library sees is the point.
"""

from __future__ import annotations

import contextlib
import http.client
import inspect
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit

import pytest
from lxml import etree

from fibo_soap import codec, wsdl
from fibo_soap.client import FiboClient
from fibo_soap.emulator import Emulator, Fault, FaultKind, run_emulator
from fibo_soap.emulator.service import Clock
from fibo_soap.errors import (
    AmbiguousSendError,
    AsmxError,
    HttpStatusError,
    ProtocolError,
    SoapFaultError,
    TransportError,
)
from fibo_soap.models import VN_TZ, SmsStatus
from fibo_soap.operations import MULTI_MESSAGE_DOCUMENT, OPERATIONS, PHONE_LIST_DOCUMENT

pytestmark = pytest.mark.e2e

NS = wsdl.wsdl_namespace()
SOAP11 = codec.SOAP11_NS
SOAP12 = codec.SOAP12_NS
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
ADDRESS_NAMESPACES = {
    "http://schemas.xmlsoap.org/wsdl/soap/",
    "http://schemas.xmlsoap.org/wsdl/soap12/",
    "http://schemas.xmlsoap.org/wsdl/http/",
}
FORM = "application/x-www-form-urlencoded"
PHONE = "0909128628"


# --- helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    @property
    def media(self) -> str:
        return self.content_type.split(";")[0].strip().lower()

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def xml(self) -> Any:
        return etree.fromstring(self.body)


def request(
    emu: Emulator,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> Answer:
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return Answer(response.status, response.getheader("Content-Type", ""), response.read())
    finally:
        conn.close()


def account(emu: Emulator) -> dict[str, str]:
    return {"clientNo": emu.client_no, "clientPass": emu.client_pass}


def send_fields(emu: Emulator, message: str = "hi", guid: str = "g-1") -> dict[str, str]:
    return {
        **account(emu),
        "phoneNumber": PHONE,
        "smsMessage": message,
        "smsGUID": guid,
        "serviceType": "1",
    }


def http_get(emu: Emulator, method: str, fields: Mapping[str, str]) -> Answer:
    return request(emu, "GET", f"/Service.asmx/{method}?{urlencode(fields)}")


def http_post(emu: Emulator, method: str, fields: Mapping[str, str] | bytes) -> Answer:
    body = fields if isinstance(fields, bytes) else urlencode(fields).encode()
    return request(emu, "POST", f"/Service.asmx/{method}", body, {"Content-Type": FORM})


def envelope(version: str, method: str, params: Mapping[str, str], ns: str = NS) -> bytes:
    env_ns = SOAP11 if version == "1.1" else SOAP12
    root = etree.Element(f"{{{env_ns}}}Envelope", nsmap={"soap": env_ns})
    body = etree.SubElement(root, f"{{{env_ns}}}Body")
    call = etree.SubElement(body, f"{{{ns}}}{method}", nsmap={None: ns})  # type: ignore[dict-item]
    for name, value in params.items():
        etree.SubElement(call, f"{{{ns}}}{name}").text = value
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def soap(
    emu: Emulator,
    body: bytes,
    *,
    version: str = "1.1",
    action: str | None = None,
    content_type: str | None = None,
) -> Answer:
    headers: dict[str, str] = {}
    if version == "1.1":
        headers["Content-Type"] = content_type or "text/xml; charset=utf-8"
        if action is not None:
            headers["SOAPAction"] = f'"{action}"'
    else:
        headers["Content-Type"] = content_type or (
            "application/soap+xml; charset=utf-8" + (f'; action="{action}"' if action else "")
        )
    return request(emu, "POST", "/Service.asmx", body, headers)


def soap_call(
    emu: Emulator, method: str, params: Mapping[str, str], version: str = "1.1"
) -> Answer:
    return soap(emu, envelope(version, method, params), version=version, action=f"{NS}{method}")


def soap11_fault(answer: Answer) -> tuple[str, str]:
    """faultcode and faultstring of a SOAP 1.1 fault answer, after checking its shape."""
    assert answer.status == 500, answer
    assert answer.media == "text/xml"
    fault = answer.xml().find(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault")
    assert fault is not None, answer.text
    assert fault.find("detail") is not None
    return fault.findtext("faultcode"), fault.findtext("faultstring")


def soap12_fault(answer: Answer) -> tuple[str, str]:
    """Code/Value and Reason/Text of a SOAP 1.2 fault answer, after checking its shape."""
    assert answer.status == 500, answer
    assert answer.media == "application/soap+xml"
    fault = answer.xml().find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    assert fault is not None, answer.text
    value = fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value")
    reason = fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text")
    return value, reason


def inner(answer: Answer, method: str) -> codec.Decoded:
    """The decoded result of a 200 answer of any protocol."""
    assert answer.status == 200, answer
    if answer.xml().tag.endswith("Envelope"):
        text = answer.xml().findtext(f".//{{{NS}}}{method}Result") or ""
    else:
        text = codec.decode_http_body(answer.body)
    return codec.decode_result(OPERATIONS[method], text)


def make_client(emu: Emulator, protocol: str = "soap11", **options: Any) -> FiboClient:
    """A client of ``emu`` that shows each answer raw: one protocol, no fallback, no retries (once
    the client has them)."""
    accepted = inspect.signature(FiboClient).parameters
    if "retry" in accepted:
        options.setdefault("retry", None)
    if "protocols" in accepted:
        options["protocols"] = (protocol,)
    else:
        options["protocol"] = protocol
    client: FiboClient = emu.client(**options)
    return client


def serves(emu: Emulator) -> bool:
    """True when the emulator still answers About over SOAP and GET."""
    over_get = http_get(emu, "About", {})
    over_soap = soap_call(emu, "About", {})
    return over_get.status == over_soap.status == 200


@pytest.fixture
def emu(fibo_emulator: Emulator) -> Emulator:
    return fibo_emulator


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn logs at WARNING and above while the test runs (its loggers do not propagate
    to pytest's caplog)."""
    handler = _Records()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


SEND_FAILED_AFTER_REQUEST = (TransportError, AmbiguousSendError)
SEND_UNREADABLE = (ProtocolError, AmbiguousSendError)


# --- faults ------------------------------------------------------------------------------------


def test_latency_delays_the_answer_and_leaves_it_intact(emu: Emulator) -> None:
    delay = 0.3
    with make_client(emu) as c:
        undelayed = c.check_client()  # also loads the WSDL and opens a connection
        emu.fault("latency", method="CheckClient", seconds=delay)
        started = time.perf_counter()
        delayed = c.check_client()
        elapsed = time.perf_counter() - started
        receipt = c.send_sms(PHONE, "not delayed", guid="g-1")
    assert elapsed >= delay
    assert delayed == undelayed
    assert receipt.code == 200
    assert [r.guid for r in emu.received()] == ["g-1"]


def test_http_500_answers_plain_text_before_the_method_runs(emu: Emulator) -> None:
    emu.set_balance(5)
    emu.fault("http_500", method="SendSMS")
    emu.fault("http_500", method="CheckClient")
    for answer in (
        http_get(emu, "SendSMS", send_fields(emu, guid="g-get")),
        soap_call(emu, "SendSMS", send_fields(emu, guid="g-soap")),
    ):
        assert answer.status == 500
        assert answer.media == "text/plain"
    with make_client(emu) as c:
        with pytest.raises(HttpStatusError) as caught:
            c.check_client()
        assert caught.value.status == 500
        # The client cannot tell that the method never ran.
        with pytest.raises(SEND_FAILED_AFTER_REQUEST):
            c.send_sms(PHONE, "hi", guid="g-client")
    assert emu.received() == []
    assert emu.balance() == 5


def test_soap_fault_has_the_shape_of_each_soap_version(emu: Emulator) -> None:
    emu.set_balance(5)
    emu.fault("soap_fault", method="SendSMS")
    emu.fault("soap_fault", method="CheckClient")
    code, reason = soap11_fault(soap_call(emu, "SendSMS", send_fields(emu), "1.1"))
    assert code == "soap:Server"
    assert reason.startswith("Server was unable to process request. --->")
    value, reason = soap12_fault(soap_call(emu, "SendSMS", send_fields(emu), "1.2"))
    assert value == "soap:Receiver"
    assert reason.startswith("Server was unable to process request. --->")
    for protocol in ("soap11", "soap12"):
        with make_client(emu, protocol) as c:
            with pytest.raises(SoapFaultError) as caught:
                c.check_client()
            assert caught.value.fault_code == "Server"
            with pytest.raises((SoapFaultError, AmbiguousSendError)):
                c.send_sms(PHONE, "hi")
    assert emu.received() == []
    assert emu.balance() == 5


@pytest.mark.parametrize("verb", ["GET", "POST"])
def test_soap_fault_over_get_or_post_is_the_plain_text_500_of_a_method_that_throws(
    emu: Emulator, verb: str
) -> None:
    emu.fault("soap_fault", method="SendSMS")
    call = http_get if verb == "GET" else http_post
    answer = call(emu, "SendSMS", send_fields(emu, guid=f"g-{verb}"))
    assert (answer.status, answer.media) == (500, "text/plain")
    assert answer.text.startswith("System.Exception: ")
    assert emu.received() == []


@pytest.mark.parametrize("protocol", ["soap11", "get"])
def test_close_before_drops_the_connection_and_stores_nothing(
    emu: Emulator, protocol: str, server_errors: list[logging.LogRecord]
) -> None:
    emu.set_balance(5)
    emu.fault("close_before", method="SendSMS")
    emu.fault("close_before", method="CheckClient")
    with make_client(emu, protocol) as c:
        with pytest.raises(TransportError):
            c.check_client()
        with pytest.raises(SEND_FAILED_AFTER_REQUEST):
            c.send_sms(PHONE, "hi", guid="g-1")
    assert emu.received() == []
    assert emu.balance() == 5
    assert serves(emu)
    assert server_errors == []


@pytest.mark.parametrize("kind", ["close_before", "close_after", "truncate"])
def test_a_dropped_connection_with_a_request_pipelined_behind_it_logs_nothing(
    emu: Emulator, kind: str, server_errors: list[logging.LogRecord]
) -> None:
    # The client writes its next request before the first is answered (HTTP/1.1 pipelining): the
    # drop is still the fault's, not an app that forgot to answer.
    emu.fault(kind, method="SendSMS", protocol="get", times=1)
    query = urlencode(send_fields(emu, guid=f"g-{kind}"))
    with socket.create_connection((emu.host, emu.port), timeout=10) as sock:
        sock.sendall(
            f"GET /Service.asmx/SendSMS?{query} HTTP/1.1\r\nHost: x\r\n\r\n"
            "GET /Service.asmx/About HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        )
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    assert b"Internal Server Error" not in received
    assert serves(emu)
    assert server_errors == []
    assert [r.guid for r in emu.received()] == ([] if kind == "close_before" else [f"g-{kind}"])


@pytest.mark.parametrize("protocol", ["soap12", "post"])
def test_close_after_drops_the_connection_but_the_message_is_stored(
    emu: Emulator, protocol: str, server_errors: list[logging.LogRecord]
) -> None:
    emu.set_balance(5)
    emu.fault("close_after", method="SendSMS")
    with make_client(emu, protocol) as c, pytest.raises(SEND_FAILED_AFTER_REQUEST):
        c.send_sms(PHONE, "hi", guid="g-1")
    assert [r.guid for r in emu.received()] == ["g-1"]
    assert emu.balance() == 4
    assert serves(emu)
    assert server_errors == []


@pytest.mark.parametrize("protocol", ["soap11", "get"])
def test_truncate_cuts_the_answer_after_the_message_is_stored(
    emu: Emulator, protocol: str, server_errors: list[logging.LogRecord]
) -> None:
    emu.set_balance(5)
    emu.fault("truncate", method="SendSMS")
    emu.fault("truncate", method="CheckClient")
    with make_client(emu, protocol) as c:
        with pytest.raises(TransportError):
            c.check_client()
        with pytest.raises(SEND_FAILED_AFTER_REQUEST):
            c.send_sms(PHONE, "hi", guid="g-1")
    assert [r.guid for r in emu.received()] == ["g-1"]
    assert emu.balance() == 4
    # Raw: the declared length is not what arrives.
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    conn.request("GET", "/Service.asmx/CheckClient?" + urlencode(account(emu)))
    response = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    conn.close()
    assert serves(emu)
    assert server_errors == []


@pytest.mark.parametrize("protocol", ["soap12", "post"])
def test_bad_inner_xml_is_a_protocol_error_after_the_message_is_stored(
    emu: Emulator, protocol: str
) -> None:
    emu.set_balance(5)
    emu.fault("bad_inner_xml", method="SendSMS")
    emu.fault("bad_inner_xml", method="CheckClient")
    with make_client(emu, protocol) as c:
        with pytest.raises(ProtocolError):
            c.check_client()
        with pytest.raises(SEND_UNREADABLE):
            c.send_sms(PHONE, "hi", guid="g-1")
    assert [r.guid for r in emu.received()] == ["g-1"]
    assert emu.balance() == 4


def test_a_fault_keeps_to_its_method_and_protocol(emu: Emulator) -> None:
    emu.fault("http_500", method="SendSMS", protocol="get")
    assert http_get(emu, "SendSMS", send_fields(emu, guid="g-get")).status == 500
    assert http_get(emu, "About", {}).status == 200
    assert http_get(emu, "CheckClient", account(emu)).status == 200
    assert http_post(emu, "SendSMS", send_fields(emu, guid="g-post")).status == 200
    assert soap_call(emu, "SendSMS", send_fields(emu, guid="g-soap11")).status == 200
    with make_client(emu, "soap12") as c:
        c.send_sms(PHONE, "hi", guid="g-soap12")
    assert [r.guid for r in emu.received()] == ["g-post", "g-soap11", "g-soap12"]
    assert [rule.kind for rule in emu.faults.rules()] == [FaultKind.HTTP_500]


def test_a_fault_with_times_fires_that_often_then_stops(emu: Emulator) -> None:
    times = 2
    emu.fault("http_500", method="About", times=times)
    statuses = [http_get(emu, "About", {}).status for _ in range(times + 2)]
    assert statuses == [500] * times + [200, 200]
    assert emu.faults.rules() == []


@pytest.mark.parametrize(
    ("option", "value"),
    [("protocol", "GET"), ("protocol", "soap1.1"), ("method", "SendSms"), ("times", 0)],
)
def test_a_fault_that_could_never_fire_is_refused(emu: Emulator, option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        emu.fault("http_500", **{option: value})
    answer = request(
        emu,
        "POST",
        "/_emulator/faults",
        json.dumps({"kind": "http_500", option: value}).encode(),
        {"Content-Type": "application/json"},
    )
    assert answer.status == 400
    assert option in json.loads(answer.body)["error"]
    assert emu.faults.rules() == []


@pytest.mark.parametrize(
    ("spec", "fields"),
    [
        ("close_after", {"kind": "close_after"}),
        (
            "close_after,method=SendSMS,protocol=soap11,times=1",
            {"kind": "close_after", "method": "SendSMS", "protocol": "soap11", "times": 1},
        ),
        ("latency,seconds=2.5", {"kind": "latency", "seconds": 2.5}),
        (" http_500 , times = always , method = About ", {"kind": "http_500", "method": "About"}),
        ("truncate,seconds=0,times=3", {"kind": "truncate", "times": 3}),
    ],
)
def test_a_fault_spec_is_the_rule_the_admin_api_takes(spec: str, fields: dict[str, Any]) -> None:
    rule = Fault.from_spec(spec)
    assert rule == Fault.from_dict(fields)
    # What it writes back reads as the same rule, defaults left out.
    assert Fault.from_spec(rule.spec()) == rule
    assert len(rule.spec().split(",")) == len(fields)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("explode", "kind must be one of"),
        ("", "kind must be one of"),
        ("latency,seconds", "'seconds' is not one of"),
        ("latency,colour=red", "'colour=red' is not one of"),
        ("latency,times=1,times=2", "at most once"),
        ("latency,kind=http_500", "at most once"),
        ("latency,times=0", "times must be a whole number"),
        ("latency,times=1.5", "times must be a whole number"),
        ("latency,seconds=soon", "seconds must be a number, not 'soon'"),
        ("latency,seconds=nan", "seconds must be between"),
        ("latency,seconds=301", "seconds must be between"),
        ("http_500,method=SendSms", "method must be"),
        ("http_500,protocol=GET", "protocol must be"),
    ],
)
def test_a_fault_spec_that_is_no_rule_is_refused_naming_why(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        Fault.from_spec(spec)


# --- the admin API -----------------------------------------------------------------------------


def admin(emu: Emulator, method: str, path: str, data: Any = None) -> tuple[int, Any]:
    body = None if data is None else json.dumps(data).encode()
    answer = request(emu, method, path, body, {"Content-Type": "application/json"})
    return answer.status, json.loads(answer.body)


def test_admin_faults_add_list_and_clear(emu: Emulator) -> None:
    rule = {"kind": "http_500", "method": "About", "protocol": "get", "times": 1}
    status, added = admin(emu, "POST", "/_emulator/faults", rule)
    assert status == 201
    assert {k: added[k] for k in rule} == rule
    assert admin(emu, "GET", "/_emulator/faults") == (200, [added])
    assert http_get(emu, "About", {}).status == 500
    assert admin(emu, "GET", "/_emulator/faults") == (200, [])  # used up
    assert http_get(emu, "About", {}).status == 200
    status, latency = admin(emu, "POST", "/_emulator/faults", {"kind": "latency", "seconds": 0.1})
    assert status == 201
    assert latency["seconds"] == 0.1
    assert latency["method"] == latency["protocol"] == "*"
    assert latency["times"] is None
    admin(emu, "POST", "/_emulator/faults", {"kind": "close_after", "method": "SendSMS"})
    assert len(admin(emu, "GET", "/_emulator/faults")[1]) == 2
    assert admin(emu, "DELETE", "/_emulator/faults") == (200, [])
    assert emu.faults.rules() == []


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "explode"},
        {},
        [],
        "http_500",
        {"kind": "latency", "seconds": -1},
        {"kind": "latency", "times": True},
        {"kind": "latency", "times": 1.5},
    ],
)
def test_admin_faults_refuse_a_bad_rule(emu: Emulator, bad: Any) -> None:
    status, answer = admin(emu, "POST", "/_emulator/faults", bad)
    assert status == 400
    assert answer["error"]
    assert emu.faults.rules() == []


def test_admin_advance_moves_delivery() -> None:
    delay = 10
    with run_emulator(delivery_delay=delay) as emu, make_client(emu, "post") as c:
        c.send_sms(PHONE, "hi", guid="g-1")
        status, moved = admin(emu, "POST", "/_emulator/advance", {"seconds": delay})
        assert status == 200
        assert moved["changed"] == 1
        assert [r.status for r in c.get_sms_status(["g-1"])] == [SmsStatus.SENT_SUCCESS]


@pytest.mark.parametrize(
    "seconds",
    [
        "abc",
        "5",  # a number, but written as text
        -5,
        None,
        [1],
        True,
        # Past the year 9999 (and 10**400 past floats too).
        1e300,
        pytest.param(10**30, id="10**30"),
        pytest.param(10**400, id="10**400"),
    ],
)
def test_admin_advance_refuses_what_is_not_seconds(emu: Emulator, seconds: Any) -> None:
    status, answer = admin(emu, "POST", "/_emulator/advance", {"seconds": seconds})
    assert status == 400
    assert "seconds" in answer["error"]
    assert abs(emu.clock.now() - datetime.now(UTC)) < timedelta(seconds=5)  # not moved
    assert serves(emu)


@pytest.mark.parametrize(
    ("host", "origin"),
    [("127.0.0.1", "http://127.0.0.1:8091"), ("::1", "http://[::1]:8091")],
)
def test_the_addresses_given_out_are_urls_for_either_family(host: str, origin: str) -> None:
    emu = Emulator(cast(Any, None), host, 8091, "CL0001", "secret")
    assert emu.endpoint == f"{origin}/Service.asmx"
    assert emu.admin == f"{origin}/_emulator"
    assert urlsplit(emu.endpoint).port == 8091


def test_the_clock_refuses_to_leave_the_years_datetimes_can_name() -> None:
    clock = Clock()
    before = clock.now()
    for seconds in (
        1e300,
        10**30,
        -1e300,
        (datetime(9999, 1, 1, 12, tzinfo=UTC) - before).total_seconds(),
        (datetime(1, 6, 1, tzinfo=UTC) - before).total_seconds(),
    ):
        with pytest.raises(ValueError, match="out of the years 2 to 9998"):
            clock.advance(seconds)
    assert clock.now() - before < timedelta(seconds=5)  # not moved
    clock.advance((datetime(9998, 6, 1, tzinfo=UTC) - clock.now()).total_seconds())
    assert clock.now().year == 9998


def test_the_clock_reads_real_time_to_the_microsecond_and_moves_with_advance() -> None:
    clock = Clock()
    before = time.time()
    stamp = clock.timestamp()
    assert before - 1e-6 <= stamp <= time.time() + 1e-6
    assert stamp == round(stamp, 6)
    clock.advance(90.25)
    moved = clock.timestamp()
    assert 90.25 <= moved - stamp < 91
    # now() is the same reading as a datetime.
    assert moved - 1e-6 <= clock.now().timestamp() <= clock.timestamp() + 1e-6
    assert clock.now().utcoffset() == timedelta(0)


def test_admin_incoming_is_read_by_both_incoming_operations(emu: Emulator) -> None:
    status, made = admin(
        emu,
        "POST",
        "/_emulator/incoming",
        {"client_no": emu.client_no, "phone": PHONE, "message": "DK 8022", "service_type_id": 2},
    )
    assert status == 201
    today = emu.clock.now().astimezone(VN_TZ).date()
    with make_client(emu, "get") as c:
        [listed] = c.get_incoming_list(5)
        [ranged] = c.get_incoming(today, today)
    assert listed.id == ranged.id == made["id"]
    assert (listed.phone, listed.message, listed.service_type_id) == (PHONE, "DK 8022", 2)
    assert ranged.sent is not None  # SentDate is filled, as for Emulator.inject_incoming


@pytest.mark.parametrize(
    "bad",
    [
        {"phone": PHONE, "message": "x"},  # no client_no
        {"client_no": "NOBODY", "phone": PHONE, "message": "x"},
        {"client_no": "CL0001", "message": "x"},  # no phone
        {"client_no": "CL0001", "phone": PHONE, "message": "x", "status": 99},
        {"client_no": "CL0001", "phone": PHONE, "message": "x", "service_type_id": None},
        {"client_no": "CL0001", "phone": PHONE, "message": "x", "service_type_id": 10**30},
    ],
)
def test_admin_incoming_refuses_a_bad_sms(emu: Emulator, bad: dict[str, Any]) -> None:
    status, answer = admin(emu, "POST", "/_emulator/incoming", bad)
    assert status == 400
    assert answer["error"]
    assert emu.store.incoming_since(emu.client_no, 60, emu.clock.now()) == []


def test_admin_messages_lists_what_reached_the_gateway_now() -> None:
    with run_emulator(delivery_delay=10) as emu, make_client(emu) as c:
        c.send_sms(PHONE, "one", guid="g-1")
        c.send_sms(PHONE, "two", guid="g-2")
        status, rows = admin(emu, "GET", "/_emulator/messages?guid=g-2")
        assert status == 200
        assert [(r["guid"], r["message"], r["phone"]) for r in rows] == [("g-2", "two", PHONE)]
        assert rows[0]["status"] == SmsStatus.PENDING
        emu.clock.advance(10)  # the clock alone: the admin read reports the state at its now
        status, rows = admin(emu, "GET", f"/_emulator/messages?client_no={emu.client_no}")
        assert [(r["guid"], r["status"]) for r in rows] == [
            ("g-1", SmsStatus.SENT_SUCCESS),
            ("g-2", SmsStatus.SENT_SUCCESS),
        ]
        assert admin(emu, "GET", "/_emulator/messages?client_no=NOBODY") == (200, [])


def test_admin_balance_sets_a_balance(emu: Emulator) -> None:
    status, _ = admin(
        emu,
        "POST",
        "/_emulator/balance",
        {"client_no": emu.client_no, "service_type": 2, "balance": 3},
    )
    assert status == 200
    with make_client(emu, "soap12") as c:
        assert c.get_balance(2) == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"client_no": "CL0001", "service_type": 1, "balance": -1},
        {"client_no": "CL0001", "service_type": 9, "balance": 5},
        {"client_no": "NOBODY", "service_type": 1, "balance": 5},
        {"client_no": "CL0001", "service_type": 1, "balance": "many"},
        {"client_no": "CL0001", "service_type": 1, "balance": None},
        {"client_no": "CL0001", "service_type": 1},
        {"client_no": "CL0001", "service_type": 10**30, "balance": 5},
        {"client_no": "CL0001", "service_type": 1, "balance": 10**30},
    ],
)
def test_admin_balance_refuses_a_bad_balance(emu: Emulator, bad: dict[str, Any]) -> None:
    before = emu.balance()
    status, answer = admin(emu, "POST", "/_emulator/balance", bad)
    assert status == 400
    assert answer["error"]
    assert emu.balance() == before


# Numbers past SQLite's 64-bit INTEGER in each whole-number parameter (FIBO's WSDL types them
# all as strings): answered as for a number that names nothing, never as a failed method.
HUGE = ["9" * 25, "-" + "9" * 25]


@pytest.mark.parametrize("huge", HUGE)
@pytest.mark.parametrize("protocol", ["get", "soap11"])
def test_a_service_type_past_any_number_is_a_wrong_service_type(
    emu: Emulator, protocol: str, huge: str
) -> None:
    before = emu.balance()
    bulk = "<DocumentElement><SMSLIST><PhoneNumber>%s</PhoneNumber><Message>x</Message>"
    calls = {
        "SendSMS": {**send_fields(emu), "serviceType": huge},
        "SendMaskedSMS": {**send_fields(emu), "senderName": "FIBO", "serviceType": huge},
        "SendBulkSMS": {
            **account(emu),
            "smsList": bulk % PHONE + "</SMSLIST></DocumentElement>",
            "serviceType": huge,
        },
    }
    for method, fields in calls.items():
        answer = (
            http_get(emu, method, fields) if protocol == "get" else soap_call(emu, method, fields)
        )
        assert inner(answer, method).code == 103, method  # type: ignore[union-attr]
    fields = {**account(emu), "serviceType": huge}
    answer = (
        http_get(emu, "GetClientBalance", fields)
        if protocol == "get"
        else soap_call(emu, "GetClientBalance", fields)
    )
    assert inner(answer, "GetClientBalance") == -1
    assert emu.received() == []
    assert emu.balance() == before


@pytest.mark.parametrize("huge", HUGE)
def test_filters_and_pages_past_any_number_find_nothing(emu: Emulator, huge: str) -> None:
    with make_client(emu, "get") as c:
        c.send_sms(PHONE, "hello", guid="g-1")
    emu.inject_incoming(PHONE, "hi")
    days = {"fromDate": "01-01-2000", "toDate": "12-31-2099", "key": ""}
    plain = {"pageNO": "1", "smsStatus": "", "serviceTypeID": ""}
    assert (
        len(
            inner(
                http_get(emu, "GetClientSMSListOfPage", {**account(emu), **days, **plain}),
                "GetClientSMSListOfPage",
            )
        )
        == 1
    )  # type: ignore[arg-type]
    for name in ("pageNO", "smsStatus", "serviceTypeID"):
        fields = {**account(emu), **days, **plain, name: huge}
        if name == "pageNO" and huge.startswith("-"):
            continue  # a page below 1 is refused (code 202) whatever its size
        answer = inner(http_get(emu, "GetClientSMSListOfPage", fields), "GetClientSMSListOfPage")
        assert answer == [], name
    for name in ("smsStatus", "serviceTypeID"):
        fields = {**account(emu), **days, "smsStatus": "", "serviceTypeID": "", name: huge}
        answer = inner(
            http_get(emu, "GetClientCommingSMSNotDividePage", fields),
            "GetClientCommingSMSNotDividePage",
        )
        assert answer.code == 301, name  # type: ignore[union-attr]


def test_minutes_past_any_number_reach_back_to_the_first_sms(emu: Emulator) -> None:
    with make_client(emu, "get") as c:
        c.send_sms(PHONE, "hello", guid="g-1")
    emu.inject_incoming(PHONE, "hi")
    for method in ("GetSMSSentList", "GetCommingSMSList"):
        answer = inner(http_get(emu, method, {**account(emu), "minutes": "9" * 25}), method)
        assert len(answer) == 1, method  # type: ignore[arg-type]


# --- ASMX at the edges -------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["WSDL", "wsdl"])
def test_the_wsdl_names_the_emulators_own_address(emu: Emulator, query: str) -> None:
    answer = request(emu, "GET", f"/Service.asmx?{query}")
    assert answer.status == 200
    assert answer.media == "text/xml"
    root = answer.xml()
    locations = [
        element.get("location")
        for port in root.iterfind(f"{{{WSDL_NS}}}service/{{{WSDL_NS}}}port")
        for element in port
        if etree.QName(element).localname == "address"
        and etree.QName(element).namespace in ADDRESS_NAMESPACES
    ]
    assert locations == [emu.endpoint] * 4
    # A client built from the served WSDL works against it.
    with make_client(emu, wsdl=f"{emu.endpoint}?WSDL") as c:
        assert c.check_client()


def test_the_help_page_lists_every_operation(emu: Emulator) -> None:
    answer = request(emu, "GET", "/Service.asmx")
    assert answer.status == 200
    assert answer.media == "text/html"
    for name in OPERATIONS:
        assert f">{name}<" in answer.text


@pytest.mark.parametrize(("protocol", "media"), [("get", "text/xml"), ("post", "text/xml")])
def test_http_success_is_a_string_or_int_document(emu: Emulator, protocol: str, media: str) -> None:
    call = http_get if protocol == "get" else http_post
    about = call(emu, "About", {})
    assert (about.status, about.media) == (200, media)
    assert etree.QName(about.xml()).localname == "string"
    assert about.xml().text == inner(about, "About")
    pages = call(emu, "GetTotalPageOfClientSMS", {**account(emu), "key": ""})
    assert etree.QName(pages.xml()).localname == "int"
    assert inner(pages, "GetTotalPageOfClientSMS") == 0


@pytest.mark.parametrize(
    ("version", "media"), [("1.1", "text/xml"), ("1.2", "application/soap+xml")]
)
def test_soap_success_has_the_content_type_of_its_version(
    emu: Emulator, version: str, media: str
) -> None:
    answer = soap_call(emu, "CheckClient", account(emu), version)
    assert (answer.status, answer.media) == (200, media)
    assert answer.xml().tag == f"{{{SOAP11 if version == '1.1' else SOAP12}}}Envelope"
    decoded = inner(answer, "CheckClient")
    assert getattr(decoded, "code", None) == 0


def test_an_unknown_soap_action_is_a_client_fault(emu: Emulator) -> None:
    body = envelope("1.1", "SendSMS", send_fields(emu))
    code, reason = soap11_fault(soap(emu, body, action=f"{NS}NoSuchMethod"))
    assert code == "soap:Client"
    assert reason.startswith("Server did not recognize the value of HTTP Header SOAPAction")
    assert "NoSuchMethod" in reason
    code, reason = soap11_fault(soap(emu, body, action=None))  # no SOAPAction header at all
    assert code == "soap:Client"
    assert "SOAPAction" in reason
    code, _ = soap11_fault(soap(emu, body, action=f"{NS}About"))  # names another method
    assert code == "soap:Client"
    assert emu.received() == []


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_an_envelope_without_a_body_is_a_client_fault(emu: Emulator, version: str) -> None:
    env_ns = SOAP11 if version == "1.1" else SOAP12
    body = f'<soap:Envelope xmlns:soap="{env_ns}"><soap:Header/></soap:Envelope>'.encode()
    answer = soap(emu, body, version=version, action=f"{NS}About")
    if version == "1.1":
        assert soap11_fault(answer)[0] == "soap:Client"
    else:
        assert soap12_fault(answer)[0] == "soap:Sender"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_an_unknown_body_element_is_a_client_fault(emu: Emulator, version: str) -> None:
    unknown = envelope(version, "DeleteEverything", account(emu))
    foreign = envelope(version, "CheckClient", account(emu), ns="http://example.com/other/")
    for body, action in ((unknown, f"{NS}DeleteEverything"), (foreign, f"{NS}CheckClient")):
        answer = soap(emu, body, version=version, action=action)
        if version == "1.1":
            assert soap11_fault(answer)[0] == "soap:Client"
        else:
            assert soap12_fault(answer)[0] == "soap:Sender"


@pytest.mark.parametrize(
    "body", [b"this is not XML", b"", b"<unclosed>", b"<a/>", "<x>é</x>".encode("latin-1")]
)
def test_a_body_that_is_not_a_soap_envelope_is_a_client_fault(emu: Emulator, body: bytes) -> None:
    code, _ = soap11_fault(soap(emu, body, action=f"{NS}About"))
    assert code == "soap:Client"
    assert serves(emu)


def test_a_soap_version_sent_under_the_other_content_type_is_415(emu: Emulator) -> None:
    as_12 = soap(emu, envelope("1.1", "About", {}), version="1.2", action=f"{NS}About")
    assert as_12.status == 415
    as_11 = soap(emu, envelope("1.2", "About", {}), version="1.1", action=f"{NS}About")
    assert as_11.status == 415
    other = soap(emu, envelope("1.1", "About", {}), content_type="application/json")
    assert other.status == 415


@pytest.mark.parametrize("verb", ["GET", "POST"])
def test_an_unknown_http_method_is_request_format_unrecognized(emu: Emulator, verb: str) -> None:
    if verb == "GET":
        answer = request(emu, "GET", "/Service.asmx/NoSuchMethod?clientNo=x")
    else:
        answer = request(emu, "POST", "/Service.asmx/NoSuchMethod", b"a=b", {"Content-Type": FORM})
    assert answer.status == 500
    assert answer.media == "text/plain"
    assert answer.text == (
        "Request format is unrecognized for URL unexpectedly ending in '/NoSuchMethod'."
    )


def test_a_post_that_is_not_a_form_is_request_format_unrecognized(emu: Emulator) -> None:
    body = urlencode(account(emu)).encode()
    answer = request(emu, "POST", "/Service.asmx/CheckClient", body, {"Content-Type": "text/plain"})
    assert answer.status == 500
    assert answer.media == "text/plain"
    assert answer.text.startswith("Request format is unrecognized")


@pytest.mark.parametrize("verb", ["GET", "POST"])
def test_a_missing_parameter_is_refused_by_name(emu: Emulator, verb: str) -> None:
    call = http_get if verb == "GET" else http_post
    answer = call(emu, "CheckClient", {"clientNo": emu.client_no})
    assert answer.status == 500
    assert answer.media == "text/plain"
    first_line = answer.text.splitlines()[0]
    assert first_line.endswith("Missing parameter: clientPass.")
    fields = send_fields(emu)
    del fields["smsGUID"]
    answer = call(emu, "SendSMS", fields)
    assert answer.text.splitlines()[0].endswith("Missing parameter: smsGUID.")
    assert emu.received() == []
    with make_client(emu, verb.lower()) as c:
        assert c.check_client()  # the client sends every parameter, '' when unset


@pytest.mark.parametrize("verb", ["GET", "POST"])
def test_get_and_post_names_are_found_whatever_their_case(emu: Emulator, verb: str) -> None:
    call = http_get if verb == "GET" else http_post
    fields = {"CLIENTNO": emu.client_no, "clientpass": emu.client_pass}
    assert getattr(inner(call(emu, "CheckClient", fields), "CheckClient"), "code", None) == 0
    sent = {name.lower(): value for name, value in send_fields(emu, guid=f"g-{verb}").items()}
    assert getattr(inner(call(emu, "SendSMS", sent), "SendSMS"), "code", None) == 200
    assert [r.guid for r in emu.received()] == [f"g-{verb}"]


@pytest.mark.parametrize("verb", ["GET", "POST"])
def test_a_get_or_post_name_given_twice_has_its_values_joined(emu: Emulator, verb: str) -> None:
    # A NameValueCollection joins them with a comma: neither value alone reaches the method.
    call = http_get if verb == "GET" else http_post
    query = urlencode({"clientNo": "nobody", "clientPass": emu.client_pass})
    twice = f"{query}&ClientNo={quote(emu.client_no)}"
    answer = (
        call(emu, "CheckClient", twice.encode())
        if verb == "POST"
        else request(emu, "GET", f"/Service.asmx/CheckClient?{twice}")
    )
    assert getattr(inner(answer, "CheckClient"), "code", None) == 100
    assert [r.params["clientNo"] for r in emu.recorded][-1] == f"nobody,{emu.client_no}"


def test_a_missing_soap_element_reaches_the_method_as_null(emu: Emulator) -> None:
    fields = send_fields(emu)
    del fields["smsGUID"]
    answer = soap_call(emu, "SendSMS", fields)
    assert getattr(inner(answer, "SendSMS"), "code", None) == 200
    assert [r.guid for r in emu.received()] == [None]


def test_a_soap_element_the_method_has_no_parameter_for_is_ignored(emu: Emulator) -> None:
    # What a call does follows from the method it names, as in ASMX, whatever else it carries.
    emu.add_sender_name("MyBrand")
    stray = soap_call(emu, "SendSMS", {**send_fields(emu, guid="g-one"), "senderName": "MyBrand"})
    assert getattr(inner(stray, "SendSMS"), "code", None) == 200
    multi = codec.encode_document(MULTI_MESSAGE_DOCUMENT, [(PHONE, "g-multi", "per-row text")])
    listed = codec.encode_document(PHONE_LIST_DOCUMENT, [(PHONE, "g-listed")])
    fields = {**account(emu), "smsMessage": multi, "listPhoneNumber": listed, "serviceType": "1"}
    answer = soap_call(emu, "SendSMSWithMultiMessage", {**fields, "senderName": "n/a"})
    assert getattr(inner(answer, "SendSMSWithMultiMessage"), "code", None) == 200
    stored = [(r.guid, r.operation, r.sender_name, r.message) for r in emu.received()]
    assert stored == [
        ("g-one", "SendSMS", None, "hi"),
        ("g-multi", "SendSMSWithMultiMessage", None, "per-row text"),
    ]


def test_a_soap_list_send_without_its_list_is_a_call_with_a_null_list(emu: Emulator) -> None:
    multi = codec.encode_document(MULTI_MESSAGE_DOCUMENT, [(PHONE, "g-multi", "per-row text")])
    fields = {**account(emu), "smsContent": "hi", "smsMessage": multi, "serviceType": "1"}
    answer = soap_call(emu, "SendSMSToListMobilePhone", {**fields, "senderName": "n/a"})
    assert getattr(inner(answer, "SendSMSToListMobilePhone"), "code", None) == 202
    masked = soap_call(emu, "SendMaskedSMS", send_fields(emu, guid="g-masked"))  # no senderName
    assert getattr(inner(masked, "SendMaskedSMS"), "code", None) == 200
    assert [(r.guid, r.operation, r.sender_name) for r in emu.received()] == [
        ("g-masked", "SendMaskedSMS", None)
    ]


def test_soap_parameters_outside_the_methods_namespace_are_not_read(emu: Emulator) -> None:
    # The WSDL's elementFormDefault is qualified: .NET reads <clientNo xmlns=""> as an unknown
    # element, and the method sees no clientNo.
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><CheckClient xmlns="{NS}">'
        f'<clientNo xmlns="">{emu.client_no}</clientNo>'
        f'<o:clientPass xmlns:o="urn:other">{emu.client_pass}</o:clientPass>'
        "</CheckClient></soap:Body></soap:Envelope>"
    ).encode()
    answer = soap(emu, body, action=f"{NS}CheckClient")
    assert getattr(inner(answer, "CheckClient"), "code", None) == 100
    qualified = soap_call(emu, "CheckClient", account(emu))
    assert getattr(inner(qualified, "CheckClient"), "code", None) == 0


@pytest.fixture
def validating() -> Iterator[Emulator]:
    with run_emulator(delivery_delay=0, request_validation=True) as emulator:
        yield emulator


def test_request_validation_comes_before_a_missing_parameter(validating: Emulator) -> None:
    fields = {**send_fields(validating, "<b>bold</b>")}
    del fields["smsGUID"]
    answer = http_get(validating, "SendSMS", fields)
    assert answer.status == 500
    assert answer.text.startswith("A potentially dangerous Request.QueryString value")


def test_request_validation_refuses_markup_in_a_query_or_form_value(validating: Emulator) -> None:
    emu = validating
    for verb, source in (("GET", "QueryString"), ("POST", "Form")):
        call = http_get if verb == "GET" else http_post
        for dangerous in ("<b>bold</b>", "&#60;script", "a</b", "<!--", "<?x"):
            answer = call(emu, "SendSMS", send_fields(emu, dangerous, guid=f"{verb}-bad"))
            assert answer.status == 500, dangerous
            assert answer.media == "text/plain"
            assert answer.text.startswith(
                f"A potentially dangerous Request.{source} value was detected from the client"
            )
            assert "smsMessage" in answer.text
        # .NET lets "<" through when no tag can start there.
        for n, harmless in enumerate(("1 < 2", "<3 you", "x<", "a & b", "&amp;")):
            guid = f"{verb}-{n}"
            answer = call(emu, "SendSMS", send_fields(emu, harmless, guid=guid))
            assert getattr(inner(answer, "SendSMS"), "code", None) == 200, harmless
    assert all(not (r.guid or "").endswith("-bad") for r in emu.received())
    assert len(emu.received()) == 2 * 5


def test_request_validation_reaches_the_client_as_an_asmx_error(validating: Emulator) -> None:
    emu = validating
    for protocol in ("get", "post"):
        with make_client(emu, protocol) as c:
            with pytest.raises(AsmxError) as caught:
                c.get_sent_page(1, key="<b>")
            assert "A potentially dangerous Request." in str(caught.value)
            assert emu.client_pass not in str(caught.value)
            # On a send the client cannot tell this refusal from a method that failed half way
            # (both are ASMX's plain-text 500), so it may report the send as uncertain: the
            # reason still reaches the caller.
            with pytest.raises((AsmxError, AmbiguousSendError)) as caught_send:
                c.send_sms(PHONE, "<b>sale</b>", guid=f"g-{protocol}")
            assert "A potentially dangerous Request." in str(caught_send.value)
            # List sends carry an XML document: over GET/POST .NET refuses every one of them.
            with pytest.raises((AsmxError, AmbiguousSendError)):
                c.send_to_list([(PHONE, f"g-list-{protocol}")], "plain text")
    assert emu.received() == []
    # SOAP bodies are not request-validated.
    with make_client(emu, "soap11") as c:
        c.send_sms(PHONE, "<b>sale</b>", guid="g-soap")
        assert c.send_to_list([(PHONE, "g-soap-list")], "plain").accepted == ("g-soap-list",)
    assert [r.message for r in emu.received()] == ["<b>sale</b>", "plain"]


def test_without_request_validation_markup_passes(emu: Emulator) -> None:
    answer = http_get(emu, "SendSMS", send_fields(emu, "<b>sale</b>"))
    assert getattr(inner(answer, "SendSMS"), "code", None) == 200
    assert [r.message for r in emu.received()] == ["<b>sale</b>"]


def test_a_method_that_throws_answers_as_asmx_does(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any) -> str:
        raise RuntimeError("the database is on fire")

    monkeypatch.setattr(emu.app.service, "call", explode)
    code, reason = soap11_fault(soap_call(emu, "CheckClient", account(emu), "1.1"))
    assert code == "soap:Server"
    assert reason.startswith("Server was unable to process request. --->")
    value, _ = soap12_fault(soap_call(emu, "CheckClient", account(emu), "1.2"))
    assert value == "soap:Receiver"
    for call in (http_get, http_post):
        answer = call(emu, "CheckClient", account(emu))
        assert answer.status == 500
        assert answer.media == "text/plain"


# --- hostile requests --------------------------------------------------------------------------

_LAUGHS = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10)).replace(
    "&lol0;", "lol"
)
BILLION_LAUGHS = (
    f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">{_LAUGHS}]>'
    f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><SendSMS xmlns="{NS}">'
    "<clientNo>{client_no}</clientNo><clientPass>{client_pass}</clientPass>"
    f"<phoneNumber>{PHONE}</phoneNumber><smsMessage>&lol9;</smsMessage>"
    "<smsGUID>g-lol</smsGUID><serviceType>1</serviceType></SendSMS></soap:Body></soap:Envelope>"
)


def test_entity_expansion_in_a_soap_body_is_refused_unexpanded(emu: Emulator) -> None:
    body = BILLION_LAUGHS.format(client_no=emu.client_no, client_pass=emu.client_pass)
    # The request's 10 s socket timeout is the hang detector: expanding would never end.
    answer = soap(emu, body.encode(), action=f"{NS}SendSMS")
    assert soap11_fault(answer)[0] == "soap:Client"
    assert len(answer.body) < 4096
    assert emu.received() == []
    assert serves(emu)


def test_entity_expansion_in_an_inner_document_is_refused(emu: Emulator) -> None:
    doc = f'<!DOCTYPE lolz [<!ENTITY lol0 "lol">{_LAUGHS}]><SMS><msguid>&lol9;</msguid></SMS>'
    for call in (http_get, http_post):
        answer = call(emu, "GetSMSStatus", {**account(emu), "smsList": doc})
        assert getattr(inner(answer, "GetSMSStatus"), "code", None) == 202
    assert serves(emu)


def test_external_entities_never_reach_the_answer(emu: Emulator, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    marker = "TOP-SECRET-MARKER-5F3A"
    secret.write_text(marker)
    uri = secret.as_uri()
    bodies = [
        # a general entity in the element the method echoes (the account name of CheckClient)
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "{uri}">]>'
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body><CheckClient xmlns="{NS}">'
        "<clientNo>&x;</clientNo><clientPass>&x;</clientPass></CheckClient></soap:Body>"
        "</soap:Envelope>",
        # an external DTD and an external parameter entity
        f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "{uri}"><soap:Envelope xmlns:soap="{SOAP11}">'
        "<soap:Body/></soap:Envelope>",
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % p SYSTEM "{uri}"> %p;]>'
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body/></soap:Envelope>',
    ]
    for body in bodies:
        answer = soap(emu, body.encode(), action=f"{NS}CheckClient")
        assert soap11_fault(answer)[0] == "soap:Client"
        assert marker not in answer.text
    inner_doc = f'<!DOCTYPE r [<!ENTITY x SYSTEM "{uri}">]><SMS><msguid>&x;</msguid></SMS>'
    answer = http_post(emu, "GetSMSStatus", {**account(emu), "smsList": inner_doc})
    assert marker not in answer.text
    assert getattr(inner(answer, "GetSMSStatus"), "code", None) == 202


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_an_external_dtd_naming_a_fifo_does_not_hang_the_server(
    emu: Emulator, tmp_path: Path
) -> None:
    fifo = tmp_path / "never-written"
    os.mkfifo(fifo)
    body = (
        f'<?xml version="1.0"?><!DOCTYPE r SYSTEM "{fifo.as_uri()}">'
        f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body/></soap:Envelope>'
    )
    answer = soap(emu, body.encode(), action=f"{NS}About")
    assert soap11_fault(answer)[0] == "soap:Client"
    assert serves(emu)


def status_of_declared_body(emu: Emulator, path: str, media: str, length: int) -> int:
    """The status answered to a request that declares ``length`` bytes of body and sends 1 KB."""
    with socket.create_connection((emu.host, emu.port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {emu.host}\r\nContent-Type: {media}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        sock.sendall(head.encode() + b"a" * 1024)
        received = b""
        while b"\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    return int(received.split(b" ", 2)[1])


def test_a_body_over_4_mb_is_refused(emu: Emulator) -> None:
    limit = 4 * 1024 * 1024
    # Refused on the declared length, before the body is read.
    assert status_of_declared_body(emu, "/Service.asmx", "text/xml", limit + 1) == 413
    assert status_of_declared_body(emu, "/Service.asmx/CheckClient", FORM, limit + 1) == 413

    # With no length declared, the emulator counts what arrives.
    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 1):
            yield b"a" * 65536

    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    conn.request(
        "POST", "/Service.asmx", chunks(), {"Content-Type": "text/xml"}, encode_chunked=True
    )
    assert conn.getresponse().status == 413
    conn.close()
    assert serves(emu)


def test_bad_utf8_in_a_form_or_query_is_refused(emu: Emulator) -> None:
    body = b"clientNo=" + quote(emu.client_no).encode() + b"&clientPass=\xff\xfe"
    answer = http_post(emu, "CheckClient", body)
    assert answer.status == 500
    assert answer.media == "text/plain"
    answer = request(emu, "GET", "/Service.asmx/CheckClient?clientNo=%FF&clientPass=%C3")
    assert answer.status == 500
    assert answer.media == "text/plain"
    assert serves(emu)


def test_many_hostile_requests_at_once_leave_the_emulator_serving(emu: Emulator) -> None:
    emu.set_balance(5)
    lol = BILLION_LAUGHS.format(client_no=emu.client_no, client_pass=emu.client_pass).encode()
    answers: list[int] = []
    lock = threading.Lock()

    def attack() -> None:
        for _ in range(5):
            status = soap(emu, lol, action=f"{NS}SendSMS").status
            with lock:
                answers.append(status)

    threads = [threading.Thread(target=attack) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert answers == [500] * 20
    assert emu.received() == []
    assert emu.balance() == 5
    with make_client(emu) as c:
        assert c.about()
        assert c.send_sms(PHONE, "still here").code == 200
