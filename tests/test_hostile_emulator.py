"""The emulator under hostile requests (issue 9): the hostile XML the client is fed, sent the
other way (as SOAP envelopes and as request documents over every protocol), wrong content types,
bad encodings, huge query strings and headers, slow-loris connections, and attempts to read or
spend another account's data.

Each is answered with the ASMX-shaped error (a SOAP fault of the request's version, or ASMX's
plain-text 500, or the HTTP status IIS gives) or dropped; none opens a file or a connection,
crashes the server, leaks another account's rows or grows its memory; the store stays consistent
(every stored message charged once, to its own account). tests/test_emulator_edges.py checks the
ASMX edges one by one; this sweeps the hostile corpus shared with tests/test_hostile_client.py.
"""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import pytest
from hostile import (
    HOSTILE_PROLOGS,
    INERT_REFERENCES,
    Listener,
    Prolog,
    Tripwire,
    laughs,
    start_tripwire,
)
from lxml import etree

from fibo_soap import codec, wsdl
from fibo_soap.client import FiboClient
from fibo_soap.emulator import Emulator, run_emulator

pytestmark = pytest.mark.e2e

NS = wsdl.wsdl_namespace()
SOAP11, SOAP12 = codec.SOAP11_NS, codec.SOAP12_NS
FORM = "application/x-www-form-urlencoded"
PHONE = "0909128628"
SEED_BALANCE = 1000  # service type 1 of a seeded account

OTHER_NO, OTHER_PASS, OTHER_NAME = "CL0777", "other-Secret-9", "Tran Thi Bich"
OTHER_TEXT = "OTHER-ACCOUNT-PRIVATE-TEXT"
OTHER_GUID = "other-guid-0001"


# --- the emulator, shared by the module; every test leaves it as it found it -----------------


@dataclass
class World:
    emu: Emulator
    tripwire: Tripwire
    listener: Listener


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not hasattr(os, "mkfifo"):
        pytest.skip("needs POSIX FIFOs")
    tripwire, halt = start_tripwire(tmp_path_factory.mktemp("tripwire"))
    listener = Listener()
    with run_emulator(delivery_delay=0) as emu:
        emu.add_account(OTHER_NO, OTHER_PASS, OTHER_NAME)
        with FiboClient(
            OTHER_NO, OTHER_PASS, endpoint=emu.endpoint, service_type="1", retry=None
        ) as other:
            other.send_sms(PHONE, OTHER_TEXT, guid=OTHER_GUID)
        try:
            yield World(emu, tripwire, listener)
        finally:
            listener.close()
            halt()


@pytest.fixture
def emu(world: World) -> Iterator[Emulator]:
    """The shared emulator, checked after each test: nothing opened or fetched, nothing stored or
    charged by a hostile request, and still serving."""
    before = snapshot(world.emu)
    yield world.emu
    assert not world.tripwire.opened.is_set(), "a hostile request made the emulator open a file"
    assert world.listener.connections == 0, "a hostile request made the emulator connect out"
    assert snapshot(world.emu) == before, "a hostile request changed the emulator's state"
    assert serves(world.emu)


def snapshot(emu: Emulator) -> tuple[object, ...]:
    rows = tuple((r.client_no, r.guid, r.message, r.service_type_id) for r in emu.received())
    balances = tuple(
        emu.balance(st, client_no=no) for no in (emu.client_no, OTHER_NO) for st in (1, 2, 3)
    )
    return rows, balances


# --- raw HTTP ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes

    @property
    def media(self) -> str:
        return self.content_type.split(";")[0].strip().lower()


def request(
    emu: Emulator,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return Answer(response.status, response.getheader("Content-Type", ""), response.read())
    finally:
        conn.close()


def serves(emu: Emulator) -> bool:
    answer = request(emu, "GET", f"/Service.asmx/About?{urlencode({})}")
    return answer.status == 200 and b"Fibovietnam" in answer.body


def account(emu: Emulator) -> dict[str, str]:
    return {"clientNo": emu.client_no, "clientPass": emu.client_pass}


def soap_call(version: str, method: str, params: Mapping[str, str], *, prolog: str = "") -> bytes:
    """A SOAP request whose parameters are raw XML (markup goes in as it is)."""
    env = SOAP11 if version == "1.1" else SOAP12
    inner = "".join(f"<{name}>{value}</{name}>" for name, value in params.items())
    return (
        f'<?xml version="1.0" encoding="utf-8"?>{prolog}<soap:Envelope xmlns:soap="{env}">'
        f'<soap:Body><{method} xmlns="{NS}">{inner}</{method}></soap:Body></soap:Envelope>'
    ).encode()


def soap(emu: Emulator, version: str, method: str, body: bytes) -> Answer:
    if version == "1.1":
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NS}{method}"'}
    else:
        headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{NS}{method}"'}
    return request(emu, "POST", "/Service.asmx", body, headers)


def fault_code(answer: Answer, version: str) -> str:
    """The fault code of a SOAP fault answer of ``version`` (asserting its ASMX shape)."""
    assert answer.status == 500, answer
    assert answer.media == ("text/xml" if version == "1.1" else "application/soap+xml")
    root = etree.fromstring(answer.body)
    if version == "1.1":
        return root.findtext(f"{{{SOAP11}}}Body/{{{SOAP11}}}Fault/faultcode") or ""
    path = f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault/{{{SOAP12}}}Code/{{{SOAP12}}}Value"
    return root.findtext(path) or ""


def client_fault(answer: Answer, version: str) -> None:
    assert fault_code(answer, version) == ("soap:Client" if version == "1.1" else "soap:Sender")


def form_call(emu: Emulator, verb: str, method: str, fields: Mapping[str, str]) -> Answer:
    encoded = urlencode(fields)
    if verb == "get":
        return request(emu, "GET", f"/Service.asmx/{method}?{encoded}")
    return request(emu, "POST", f"/Service.asmx/{method}", encoded.encode(), {"Content-Type": FORM})


def result_text(answer: Answer) -> str:
    """The text inside a GET/POST ``<string>`` answer (or a SOAP ``<XResult>``)."""
    assert answer.status == 200, answer
    root = etree.fromstring(answer.body)
    if etree.QName(root).localname == "Envelope":
        return "".join(root.itertext())
    return root.text or ""


def inner_code(answer: Answer) -> int:
    return int(etree.fromstring(result_text(answer).encode()).findtext("Code") or "-1")


def send_params(emu: Emulator, message: str, guid: str = "hostile-guid") -> dict[str, str]:
    return {
        **account(emu),
        "phoneNumber": PHONE,
        "smsMessage": message,
        "smsGUID": guid,
        "serviceType": "1",
    }


def _id(prolog: Prolog) -> str:
    return prolog.name


# --- hostile XML as SOAP envelopes and as request documents --------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize("prolog", HOSTILE_PROLOGS, ids=_id)
def test_a_doctype_in_a_soap_request_is_a_client_fault(
    world: World, emu: Emulator, prolog: Prolog, version: str
) -> None:
    path, url = world.tripwire.path, world.listener.url
    params = send_params(emu, prolog.use(path, url))
    body = soap_call(version, "SendSMS", params, prolog=prolog.doctype(path, url))
    answer = soap(emu, version, "SendSMS", body)
    client_fault(answer, version)
    assert len(answer.body) < 4096
    assert emu.client_pass.encode() not in answer.body


@pytest.mark.parametrize("protocol", ["soap11", "soap12", "get", "post"])
@pytest.mark.parametrize("prolog", HOSTILE_PROLOGS, ids=_id)
def test_a_doctype_in_a_request_document_is_code_202(
    world: World, emu: Emulator, prolog: Prolog, protocol: str
) -> None:
    path, url = world.tripwire.path, world.listener.url
    document = (
        f"{prolog.doctype(path, url)}<DocumentElement><SMSLIST><PhoneNumber>{PHONE}</PhoneNumber>"
        f"<Message>{prolog.use(path, url)}</Message></SMSLIST></DocumentElement>"
    )
    fields = {**account(emu), "smsList": document, "serviceType": "1"}
    if protocol == "get" and len(urlencode(fields)) > 32 * 1024:
        # Refused before it reaches the method: 414 from the emulator, or 400 from the server
        # when the request line passes what it reads at all.
        assert form_call(emu, protocol, "SendBulkSMS", fields).status in (400, 414)
        return
    if protocol in ("get", "post"):
        answer = form_call(emu, protocol, "SendBulkSMS", fields)
    else:
        version = "1.1" if protocol == "soap11" else "1.2"
        escaped = {name: escape(value) for name, value in fields.items()}
        answer = soap(emu, version, "SendBulkSMS", soap_call(version, "SendBulkSMS", escaped))
    assert inner_code(answer) == 202


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize("reference", INERT_REFERENCES, ids=_id)
def test_references_in_a_soap_request_are_never_followed(
    world: World, emu: Emulator, reference: Prolog, version: str
) -> None:
    # An element inside a parameter is refused (it is not a string); an instruction is dropped.
    # Either way nothing is read or fetched (the fixture asserts it). CheckClient stores nothing.
    path, url = world.tripwire.path, world.listener.url
    params = {**account(emu)}
    params["clientNo"] += reference.use(path, url)
    body = soap_call(version, "CheckClient", params, prolog=reference.doctype(path, url))
    answer = soap(emu, version, "CheckClient", body)
    if reference.name == "xml-stylesheet":
        assert inner_code(answer) == 0
    else:
        client_fault(answer, version)


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_comment_inside_a_parameter_does_not_cut_it_short(emu: Emulator, version: str) -> None:
    # <clientPass>ab<!-- -->cd</clientPass> is "abcd" to XML; read as "ab" it would be a wrong
    # password, and a message would be stored cut short.
    password = emu.client_pass
    params = {**account(emu), "clientPass": f"{password[:3]}<!-- x -->{password[3:]}"}
    answer = soap(emu, version, "CheckClient", soap_call(version, "CheckClient", params))
    assert inner_code(answer) == 0


# --- bodies, encodings and content types ---------------------------------------------------

ABOUT = soap_call("1.1", "About", {})


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(ABOUT.replace(b"<About", b"\xff\xfe<About"), id="invalid-utf-8"),
        pytest.param(ABOUT.replace(b'encoding="utf-8"', b'encoding="no-such"'), id="unknown-enc"),
        pytest.param(ABOUT.replace(b"<About", b"\x00<About"), id="nul-byte"),
        pytest.param(ABOUT.replace(b"<About", b"&#0;<About"), id="nul-reference"),
        pytest.param(ABOUT[:60], id="truncated"),
        pytest.param(b"", id="empty"),
        pytest.param(b"<a>" * 20_000 + b"</a>" * 20_000, id="deep-nesting"),
        pytest.param(b"<x " + b" ".join(b"a%d='1'" % i for i in range(20_000)) + b"/>", id="attrs"),
        pytest.param(ABOUT + ABOUT, id="two-documents"),
        pytest.param(b'{"method": "About"}', id="json"),
        pytest.param(laughs().encode() + ABOUT.split(b"?>", 1)[1], id="laughs-before-root"),
    ],
)
def test_a_soap_body_that_is_not_one_good_envelope_is_a_client_fault(
    emu: Emulator, body: bytes
) -> None:
    answer = soap(emu, "1.1", "About", body)
    client_fault(answer, "1.1")
    assert len(answer.body) < 4096


@pytest.mark.parametrize(
    ("encoding", "declared"),
    [("utf-16", "utf-16"), ("utf-16-be", "utf-16be"), ("iso-8859-1", "iso-8859-1")],
)
def test_an_honest_encoding_of_a_soap_request_is_read_exactly(
    emu: Emulator, encoding: str, declared: str
) -> None:
    # CheckClient echoes nothing, so the account name proves the whole envelope was read right.
    text = soap_call("1.1", "CheckClient", account(emu)).decode()
    body = text.replace('encoding="utf-8"', f'encoding="{declared}"').encode(encoding)
    assert inner_code(soap(emu, "1.1", "CheckClient", body)) == 0


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("application/json", 415),
        ("multipart/form-data; boundary=x", 415),
        (FORM, 415),
        ("", 415),
        ("text/xml; charset=bogus", 200),  # the XML declaration says how the body is encoded
        ("TEXT/XML", 200),
        ("text/xml;;;", 200),
    ],
)
def test_a_soap_post_with_a_wrong_content_type_is_refused(
    emu: Emulator, content_type: str, status: int
) -> None:
    headers = {"SOAPAction": f'"{NS}About"'}
    if content_type:
        headers["Content-Type"] = content_type
    answer = request(emu, "POST", "/Service.asmx", ABOUT, headers)
    assert answer.status == status
    if status == 415:
        assert answer.media == "text/plain"


@pytest.mark.parametrize("verb", ["get", "post"])
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f\x08", "\ufffe", "\uffff"])
def test_a_form_value_xml_cannot_carry_is_refused_before_it_is_stored(
    emu: Emulator, verb: str, char: str
) -> None:
    # Once stored, such a message broke every list answer of its account for good.
    answer = form_call(emu, verb, "SendSMS", send_params(emu, f"poison{char}text", "poison"))
    assert answer.status == 500
    assert answer.media == "text/plain"
    assert b"invalid character" in answer.body
    listed = form_call(emu, verb, "GetSMSSentList", {**account(emu), "minutes": "60"})
    assert listed.status == 200


@pytest.mark.parametrize("verb", ["get", "post"])
def test_numbers_out_of_any_range_are_answered_not_crashed(emu: Emulator, verb: str) -> None:
    for minutes in ("99999999999999999999", "9" * 5000, "-1", "1e9", "0x10", " ", "٣"):
        answer = form_call(emu, verb, "GetSMSSentList", {**account(emu), "minutes": minutes})
        assert answer.status in (200, 500)
        assert answer.media in ("text/xml", "text/plain")


# --- sizes and slow clients ------------------------------------------------------------------


def test_a_query_string_past_32_kb_is_414_and_one_within_it_is_read(emu: Emulator) -> None:
    base = f"/Service.asmx/CheckClient?{urlencode(account(emu))}&pad="
    assert request(emu, "GET", base + "a" * (33 * 1024)).status == 414
    answer = request(emu, "GET", base + "a" * (30 * 1024))
    assert inner_code(answer) == 0


def test_thousands_of_parameters_are_read_as_the_last_of_each(emu: Emulator) -> None:
    fields = "&".join(f"p{i}=1" for i in range(3000))
    answer = request(emu, "GET", f"/Service.asmx/CheckClient?{fields}&{urlencode(account(emu))}")
    assert inner_code(answer) == 0


def test_a_request_head_of_1_mb_is_refused(emu: Emulator) -> None:
    with socket.create_connection((emu.host, emu.port), timeout=10) as sock:
        sock.sendall(b"GET /Service.asmx/About HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2**20)
        sock.sendall(b"\r\n\r\n")
        head = sock.recv(64)
    assert not head.startswith(b"HTTP/1.1 200")


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("shape", ["one-header", "many-headers", "url", "second-request"])
def test_a_head_past_64_kb_is_400_request_too_long_and_closed(emu: Emulator, shape: str) -> None:
    # As http.sys answers a head past its MaxRequestBytes; the bound is on the head as sent.
    about = b"GET /Service.asmx/About HTTP/1.1\r\nHost: x\r\n"
    heads = {
        "one-header": about + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        "many-headers": about + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 90) for i in range(800)),
        "url": b"GET /Service.asmx/About?pad=" + b"u" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        # After a good request on the same connection: the bound holds for every head.
        "second-request": about + b"X-Big: " + b"c" * 70_000 + b"\r\n\r\n",
    }
    with socket.create_connection((emu.host, emu.port), timeout=10) as sock:
        if shape == "second-request":
            sock.sendall(about + b"\r\n")
            first = http.client.HTTPResponse(sock)
            first.begin()
            assert first.status == 200
            assert b"Fibovietnam" in first.read()
        sock.sendall(heads[shape])
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(b"\r\n\r\nThe size of the request headers is too long.")


def test_a_head_of_60_kb_in_small_reads_is_read(emu: Emulator) -> None:
    # Just under the bound, in 4 KB writes: every read counts, and none refuses early.
    head = f"GET /Service.asmx/CheckClient?{urlencode(account(emu))} HTTP/1.1\r\nHost: x\r\n"
    pad = "".join(f"X-Pad-{i}: {'p' * 80}\r\n" for i in range(700))
    data = (head + pad + "Connection: close\r\n\r\n").encode()
    assert 60_000 < len(data) < 64 * 1024
    with socket.create_connection((emu.host, emu.port), timeout=10) as sock:
        for start in range(0, len(data), 4096):
            sock.sendall(data[start : start + 4096])
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")


def _slow_clients(emu: Emulator, stop: threading.Event) -> list[socket.socket]:
    """Connections that start a request and never finish it, in every way one can."""
    partial = [
        b"POST /Service.asmx HTTP/1.1\r\n",
        b"POST /Service.asmx HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n",
        b"POST /Service.asmx HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        b"Content-Length: 100000\r\n\r\n<soap:Envelope",
        b"POST /Service.asmx/CheckClient HTTP/1.1\r\nHost: x\r\nContent-Type: " + FORM.encode()
        + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nclien",
        b"GET /Service.asmx/About?clientNo=",
    ]  # fmt: skip
    sockets = []
    for i in range(40):
        sock = socket.create_connection((emu.host, emu.port), timeout=10)
        sock.sendall(partial[i % len(partial)])
        sockets.append(sock)

    def drip() -> None:
        # A few connections send one more byte of their header every 50 ms.
        while not stop.wait(0.05):
            for sock in sockets[:5]:
                try:
                    sock.sendall(b"X")
                except OSError:
                    return

    threading.Thread(target=drip, daemon=True).start()
    return sockets


def test_slow_loris_connections_do_not_stop_others_being_served(emu: Emulator) -> None:
    stop = threading.Event()
    sockets = _slow_clients(emu, stop)
    try:
        for protocol in ("soap11", "soap12", "get", "post"):
            with emu.client(protocols=(protocol,), retry=None) as client:
                assert client.check_client()
        assert serves(emu)
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    assert serves(emu)


# --- other accounts ------------------------------------------------------------------------


def _leaks(answer: Answer) -> bool:
    secrets = (OTHER_TEXT, OTHER_GUID, OTHER_NAME, OTHER_PASS)
    return any(secret.encode() in answer.body for secret in secrets)


@pytest.mark.parametrize("verb", ["get", "post"])
def test_no_request_of_one_account_reads_anothers_rows(emu: Emulator, verb: str) -> None:
    mine = account(emu)
    page = {"pageNO": "1", "fromDate": "", "toDate": "", "smsStatus": "", "serviceTypeID": ""}
    attempts: list[tuple[str, dict[str, str]]] = [
        ("GetSMSStatus", {**mine, "smsList": f"<SMS><msguid>{OTHER_GUID}</msguid></SMS>"}),
        ("GetSMSSentList", {**mine, "minutes": "100000"}),
        ("GetClientSMSListOfPage", {**mine, **page, "key": OTHER_TEXT}),
        ("GetClientSMSListOfPage", {**mine, **page, "key": "%"}),
        ("GetTotalPageOfClientSMS", {**mine, "key": OTHER_TEXT}),
        ("CheckClient", {"clientNo": OTHER_NO, "clientPass": emu.client_pass}),
        ("CheckClient", {"clientNo": OTHER_NO, "clientPass": ""}),
        ("CheckClient", {"clientNo": OTHER_NO.lower(), "clientPass": OTHER_PASS.upper()}),
        ("CheckClient", {"clientNo": f"{OTHER_NO}' OR '1'='1", "clientPass": "' OR '1'='1"}),
        ("CheckClient", {"clientNo": f"{OTHER_NO} ", "clientPass": OTHER_PASS[:-1]}),
        ("GetClientSenderNameList", {"clientNo": OTHER_NO, "clientPass": "%"}),
    ]
    for method, fields in attempts:
        answer = form_call(emu, verb, method, fields)
        assert not _leaks(answer), (method, fields)
    pages = form_call(emu, verb, "GetTotalPageOfClientSMS", {**mine, "key": OTHER_TEXT})
    assert result_text(pages) == "0"


@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_a_soap_request_naming_two_accounts_reads_neither_others_rows(
    emu: Emulator, version: str
) -> None:
    # Duplicated account elements, the other account last: the emulator binds the last one, so
    # the password (this account's) is wrong for it: code 100, and nothing of it is shown.
    mine = account(emu)
    params = (
        f"<clientNo>{mine['clientNo']}</clientNo><clientPass>{mine['clientPass']}</clientPass>"
        f"<clientNo>{OTHER_NO}</clientNo><minutes>100000</minutes>"
    )
    env = SOAP11 if version == "1.1" else SOAP12
    body = (
        f'<soap:Envelope xmlns:soap="{env}"><soap:Body><GetSMSSentList xmlns="{NS}">{params}'
        "</GetSMSSentList></soap:Body></soap:Envelope>"
    ).encode()
    answer = soap(emu, version, "GetSMSSentList", body)
    assert not _leaks(answer)
    assert inner_code(answer) == 100


# --- memory and state after a barrage --------------------------------------------------------


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _barrage(emu: Emulator, rounds: int) -> None:
    """``rounds`` of hostile requests of every kind above, none of which may store anything."""
    lol = soap_call("1.1", "SendSMS", send_params(emu, "&lol9;"), prolog=laughs())
    inner_lol = f"{laughs(root='SMS')}<SMS><msguid>&lol9;</msguid></SMS>"
    big = b"<soap:Envelope>" + b"A" * (3 * 2**20)  # read whole (under 4 MB), then refused
    for i in range(rounds):
        kind = i % 8
        if kind == 0:
            assert soap(emu, "1.1", "SendSMS", lol).status == 500
        elif kind == 1:
            fields = {**account(emu), "smsList": inner_lol}
            assert form_call(emu, "post", "GetSMSStatus", fields).status == 200
        elif kind == 2:
            assert request(emu, "GET", "/Service.asmx/About?" + "a" * 40_000).status == 414
        elif kind == 3:
            bad = send_params(emu, "x\x01", f"barrage-{i}")
            assert form_call(emu, "get", "SendSMS", bad).status == 500
        elif kind == 4:
            assert soap(emu, "1.2", "About", ABOUT.replace(b"<About", b"\xff<About")).status in (
                415,
                500,
            )
        elif kind == 5 and i % 40 == 5:
            assert soap(emu, "1.1", "About", big).status == 500
        elif kind == 6:
            headers = {"Content-Type": "text/xml", "Content-Length": str(5 * 2**20)}
            with socket.create_connection((emu.host, emu.port), timeout=10) as sock:
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                sock.sendall(f"POST /Service.asmx HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
                assert sock.recv(64).startswith(b"HTTP/1.1 413")
        elif kind == 7:
            body = soap_call("1.1", "CheckClient", {"clientNo": "<a>" * 300 + "</a>" * 300})
            assert soap(emu, "1.1", "CheckClient", body).status == 500


def test_two_hundred_hostile_requests_leave_memory_and_state_as_they_were(emu: Emulator) -> None:
    _barrage(emu, 48)  # warm-up: caches, pools, arenas
    before = _rss_mb()
    _barrage(emu, 200)
    grown = _rss_mb() - before
    assert grown < 40, f"the process grew by {grown:.1f} MB over 200 hostile requests"
    # And the accounts still work as before, each on its own rows (the fixture compares the
    # store with its state before the test: nothing was stored or charged).
    with emu.client(protocols=("get",), retry=None) as client:
        assert client.get_balance() == emu.balance()
        assert all(row.guid != OTHER_GUID for row in client.get_sent_list(100_000))


def test_every_stored_message_is_charged_once_to_its_own_account(world: World) -> None:
    emu = world.emu
    for no in (emu.client_no, OTHER_NO):
        charged = [r for r in emu.received(client_no=no) if r.service_type_id == 1]
        assert emu.balance(1, client_no=no) == SEED_BALANCE - len(charged)
    # The only messages are the ones sent on purpose (the other account's one, in the fixture).
    assert [(r.client_no, r.guid) for r in emu.received()] == [(OTHER_NO, OTHER_GUID)]


def test_the_tripwire_and_listener_of_this_module_work(world: World, tmp_path: Path) -> None:
    # Guards the guards: a real open of the FIFO and a real connection are seen.
    seen = Listener()
    try:
        socket.create_connection(("127.0.0.1", int(seen.url.split(":")[2].split("/")[0]))).close()
        deadline = time.monotonic() + 5
        while seen.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen.connections == 1
    finally:
        seen.close()
    tripwire, halt = start_tripwire(tmp_path)
    try:
        with open(tripwire.path, "rb") as reader:
            assert reader.read() == b""
        assert tripwire.opened.is_set()
    finally:
        halt()


# --- requests that never arrive whole -----------------------------------------------------------


@pytest.fixture
def impatient(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator that gives a request a fraction of a second to arrive, as http.sys gives
    120 s."""
    from fibo_soap.emulator.server import _BoundedHttpTools

    monkeypatch.setattr(_BoundedHttpTools, "request_seconds", 0.3)
    with run_emulator() as emulator:
        yield emulator


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # a connection that sends nothing
        b"GET /Service.asmx/About HTTP/1.1\r\nHo",  # a head that stops half way
        b"POST /Service.asmx/About HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n\r\nab",  # and a body
    ],
    ids=["nothing", "half-a-head", "half-a-body"],
)
def test_a_request_that_never_arrives_whole_has_its_connection_closed(
    impatient: Emulator, sent: bytes
) -> None:
    with socket.create_connection((impatient.host, impatient.port), timeout=10) as sock:
        sock.sendall(sent)
        assert sock.recv(4096) == b""  # closed by the emulator, the answer never asked for
    # A request sent in pieces that come in time is answered, and the emulator still serves.
    with socket.create_connection((impatient.host, impatient.port), timeout=10) as sock:
        sock.sendall(b"GET /Service.asmx/About HTTP/1.1\r\n")
        sock.sendall(b"Host: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
