"""Each of the 17 operations end to end over loopback sockets, through SOAP 1.1, SOAP 1.2, HTTP GET
and HTTP POST: the emulator records the exact request it received, the test asserts on it (method,
path, SOAPAction or action, parameter names, order and values, the request document), and on the
typed result the client made of the ASMX-shaped answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest

from fibo_soap import FiboClient, Message
from fibo_soap.codec import decode_document, decode_soap_request, parse_xml
from fibo_soap.emulator import Emulator
from fibo_soap.errors import AuthenticationError
from fibo_soap.models import (
    VN_TZ,
    BatchReceipt,
    BulkReceipt,
    IncomingSms,
    SendReceipt,
    SentSms,
    SmsStatus,
    SmsStatusRow,
)
from fibo_soap.operations import OPERATIONS
from fibo_soap.wsdl import wsdl_namespace

PROTOCOLS = ("soap11", "soap12", "get", "post")
GUID_A = "acce8d19-2106-46f9-a2d1-8b7991f30232"
GUID_B = "62c55648-29fb-4765-9ec4-a591f0a2b29f"
TEXT = 'Mã OTP của bạn là 123456 <&> ]]> "quoted" 😀'


@dataclass
class Case:
    """One operation: how the user calls it, what must reach the wire, what comes back."""

    name: str
    wire: str
    call: Callable[[FiboClient, Emulator], Any]
    params: dict[str, str]
    documents: dict[str, list[tuple[str | None, ...]]] = field(default_factory=dict)
    check: Callable[[Any, Emulator], None] = lambda result, emu: None
    prepare: Callable[[FiboClient, Emulator], None] = lambda client, emu: None


def _vn_day_string(offset: int = 0) -> str:
    return (datetime.now(VN_TZ).date() + timedelta(days=offset)).strftime("%m-%d-%Y")


def _send_one(client: FiboClient, emu: Emulator) -> None:
    client.send_sms("0909128628", "earlier message", guid=GUID_B)


def _check_receipt(guid: str) -> Callable[[Any, Emulator], None]:
    def check(result: Any, emu: Emulator) -> None:
        assert isinstance(result, SendReceipt)
        assert (result.guid, result.code) == (guid, 200)
        [stored] = emu.received(guid=guid)
        assert stored.message == TEXT
        assert stored.phone == "0909128628"

    return check


def _check_batch(accepted: tuple[str, ...], rejected: tuple[str, ...]) -> Callable[..., None]:
    def check(result: Any, emu: Emulator) -> None:
        assert result == BatchReceipt(accepted=accepted, rejected=rejected)
        for guid in accepted:
            assert len(emu.received(guid=guid)) == 1
        for guid in rejected:
            assert emu.received(guid=guid) == []

    return check


def _check_bulk(result: Any, emu: Emulator) -> None:
    assert result == BulkReceipt(count=2, code=200, message="Sending...")
    texts = sorted(sms.message for sms in emu.received() if sms.operation == "SendBulkSMS")
    assert texts == sorted([TEXT, "second"])


def _check_status(result: Any, emu: Emulator) -> None:
    assert result == [SmsStatusRow(guid=GUID_B, status=SmsStatus.SENT_SUCCESS, sender_name=None)]


def _check_sent(result: Any, emu: Emulator) -> None:
    assert [type(row) for row in result] == [SentSms]
    [row] = result
    assert (row.guid, row.phone, row.message, row.status) == (
        GUID_B,
        "0909128628",
        "earlier message",
        SmsStatus.SENT_SUCCESS,
    )
    assert row.created is not None
    assert row.created.utcoffset() == timedelta(hours=7)


def _inject(client: FiboClient, emu: Emulator) -> None:
    emu.inject_incoming("84913122005", "FIBO DEMODGN 50", service_type_id=229)


def _check_incoming(result: Any, emu: Emulator) -> None:
    [row] = result
    assert isinstance(row, IncomingSms)
    assert (row.phone, row.message, row.service_type_id) == ("84913122005", "FIBO DEMODGN 50", 229)


CASES = [
    Case(
        "about",
        "About",
        lambda c, e: c.about(),
        {},
        check=lambda r, e: _eq(r, "www.Fibovietnam.com"),
    ),
    Case(
        "check_client",
        "CheckClient",
        lambda c, e: c.check_client(),
        {},
        check=lambda r, e: _eq(r, "Nguyen Van A"),
    ),
    Case(
        "get_balance",
        "GetClientBalance",
        lambda c, e: c.get_balance(2),
        {"serviceType": "2"},
        check=lambda r, e: _eq(r, e.balance(2)),
    ),
    Case(
        "get_hosting_balances",
        "GetListSMSHostingWithBalance",
        lambda c, e: c.get_hosting_balances(),
        {},
        check=lambda r, e: _eq(
            [(h.service_type_name, h.balance) for h in r],
            [(h.service_type_name, h.balance) for h in e.store.hosting_balances(e.client_no)],
        ),
    ),
    Case(
        "get_sender_names",
        "GetClientSenderNameList",
        lambda c, e: c.get_sender_names(),
        {},
        prepare=lambda c, e: e.add_sender_name("BrandX"),
        check=lambda r, e: _contains([s.name for s in r], "BrandX"),
    ),
    Case(
        "send_sms",
        "SendSMS",
        lambda c, e: c.send_sms("0909 128 628", TEXT, guid=GUID_A),
        {"phoneNumber": "0909128628", "smsMessage": TEXT, "smsGUID": GUID_A, "serviceType": "1"},
        check=_check_receipt(GUID_A),
    ),
    Case(
        "send_test_sms",
        "SendSMS",
        lambda c, e: c.send_test_sms("+84 909 128 628", TEXT, guid=GUID_A),
        {"phoneNumber": "0909128628", "smsMessage": TEXT, "smsGUID": GUID_A, "serviceType": "3"},
        check=_check_receipt(GUID_A),
    ),
    Case(
        "send_masked_sms",
        "SendMaskedSMS",
        lambda c, e: c.send_masked_sms("0909.128.628", TEXT, sender_name="FiboSMS", guid=GUID_A),
        {
            "senderName": "FiboSMS",
            "phoneNumber": "0909128628",
            "smsMessage": TEXT,
            "smsGUID": GUID_A,
            "serviceType": "1",
        },
        check=_check_receipt(GUID_A),
    ),
    Case(
        "send_bulk_sms",
        "SendBulkSMS",
        lambda c, e: c.send_bulk_sms([Message("0909128628", TEXT), ("0937100759", "second")]),
        {"serviceType": "1"},
        documents={"smsList": [("0909128628", TEXT), ("0937100759", "second")]},
        check=_check_bulk,
    ),
    Case(
        "send_to_list",
        "SendSMSToListMobilePhone",
        lambda c, e: c.send_to_list([("0903636635", GUID_A), ("0909120101", GUID_B)], TEXT),
        {"senderName": "n/a", "smsContent": TEXT, "serviceType": "1"},
        documents={"listPhoneNumber": [("0903636635", GUID_A), ("0909120101", GUID_B)]},
        check=_check_batch((GUID_A,), (GUID_B,)),
    ),
    Case(
        "send_multi_message",
        "SendSMSWithMultiMessage",
        lambda c, e: c.send_multi_message(
            [Message("0903636635", TEXT, GUID_A), Message("0903636636", "hai", GUID_B)],
            sender_name="FiboSMS",
        ),
        {"senderName": "FiboSMS", "serviceType": "1"},
        documents={
            "smsMessage": [("0903636635", GUID_A, TEXT), ("0903636636", GUID_B, "hai")],
        },
        check=_check_batch((GUID_A, GUID_B), ()),
    ),
    Case(
        "get_sms_status",
        "GetSMSStatus",
        lambda c, e: c.get_sms_status([GUID_B, "unknown-guid"]),
        {},
        documents={"smsList": [(GUID_B,), ("unknown-guid",)]},
        prepare=_send_one,
        check=_check_status,
    ),
    Case(
        "get_sent_list",
        "GetSMSSentList",
        lambda c, e: c.get_sent_list(30),
        {"minutes": "30"},
        prepare=_send_one,
        check=_check_sent,
    ),
    Case(
        "get_sent_page",
        "GetClientSMSListOfPage",
        lambda c, e: c.get_sent_page(
            1,
            from_date=date.fromisoformat("2009-04-20"),
            to_date=date.fromisoformat("2099-04-22"),
            status=SmsStatus.SENT_SUCCESS,
            service_type=1,
            key="0909",
        ),
        {
            "pageNO": "1",
            "fromDate": "04-20-2009",
            "toDate": "04-22-2099",
            "smsStatus": "2",
            "serviceTypeID": "1",
            "key": "0909",
        },
        prepare=_send_one,
        check=_check_sent,
    ),
    Case(
        "get_total_pages",
        "GetTotalPageOfClientSMS",
        lambda c, e: c.get_total_pages(key="0909"),
        {"key": "0909"},
        prepare=_send_one,
        check=lambda r, e: _eq(r, 1),
    ),
    Case(
        "get_incoming_list",
        "GetCommingSMSList",
        lambda c, e: c.get_incoming_list(15),
        {"minutes": "15"},
        prepare=_inject,
        check=_check_incoming,
    ),
    Case(
        "get_incoming",
        "GetClientCommingSMSNotDividePage",
        lambda c, e: c.get_incoming(
            datetime.now(VN_TZ) - timedelta(days=1),
            datetime.now(VN_TZ) + timedelta(days=1),
            key="DEMO",
        ),
        {
            "fromDate": _vn_day_string(-1),
            "toDate": _vn_day_string(1),
            "smsStatus": "",
            "serviceTypeID": "",
            "key": "DEMO",
        },
        prepare=_inject,
        check=_check_incoming,
    ),
]


def _eq(actual: Any, expected: Any) -> None:
    assert actual == expected


def _contains(items: list[Any], item: Any) -> None:
    assert item in items


def _wire_params(recorded: Any, protocol: str) -> list[tuple[str, str | None]]:
    """The parameters as they travelled, in wire order, parsed from the raw request."""
    if protocol in ("soap11", "soap12"):
        return list(decode_soap_request(recorded.body).params.items())
    raw = recorded.query if protocol == "get" else recorded.body.decode("ascii")
    return parse_qsl(raw, keep_blank_values=True)


def test_every_operation_has_a_case() -> None:
    assert {case.wire for case in CASES} == set(OPERATIONS)
    assert len(CASES) == 17


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_operation_end_to_end(fibo_emulator: Emulator, case: Case, protocol: str) -> None:
    emu = fibo_emulator
    namespace = wsdl_namespace()
    with emu.client(protocol=protocol, retry=None) as client:
        case.prepare(client, emu)
        emu.advance(0)
        before = len(emu.recorded)
        result = case.call(client, emu)
        emu.advance(0)
        case.check(result, emu)

    [request] = emu.recorded[before:]
    op = OPERATIONS[case.wire]
    assert request.operation == case.wire

    if protocol == "soap11":
        assert (request.method, request.path) == ("POST", "/Service.asmx")
        assert request.headers["content-type"].startswith("text/xml")
        assert request.headers["soapaction"].strip('"') == f"{namespace}{case.wire}"
    elif protocol == "soap12":
        assert (request.method, request.path) == ("POST", "/Service.asmx")
        content_type = request.headers["content-type"]
        assert content_type.startswith("application/soap+xml")
        assert f'action="{namespace}{case.wire}"' in content_type
    elif protocol == "get":
        assert (request.method, request.path) == ("GET", f"/Service.asmx/{case.wire}")
        assert request.body == b""
    else:
        assert (request.method, request.path) == ("POST", f"/Service.asmx/{case.wire}")
        assert request.headers["content-type"] == "application/x-www-form-urlencoded"

    wire = _wire_params(request, protocol)
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
def test_wrong_password_is_an_authentication_error(fibo_emulator: Emulator, protocol: str) -> None:
    client = FiboClient(
        fibo_emulator.client_no,
        "not-the-password",
        endpoint=fibo_emulator.endpoint,
        protocol=protocol,
    )
    with pytest.raises(AuthenticationError) as caught:
        client.check_client()
    assert caught.value.code == 100
    assert caught.value.operation == "CheckClient"
    assert "not-the-password" not in str(caught.value)
    assert "not-the-password" not in repr(caught.value)


def test_soap12_answer_has_soap12_envelope(fibo_emulator: Emulator) -> None:
    with fibo_emulator.client(protocol="soap12") as client:
        assert client.about() == "www.Fibovietnam.com"
    [request] = fibo_emulator.recorded[-1:]
    envelope = parse_xml(request.body)
    assert envelope.tag == "{http://www.w3.org/2003/05/soap-envelope}Envelope"
