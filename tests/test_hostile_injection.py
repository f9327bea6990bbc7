"""No text a caller passes can change the structure of a request (issue 9).

Property tests (hypothesis) send arbitrary Unicode, salted with the pieces of markup and escaping
that break naive writers (``<![CDATA[``, ``]]>``, ``&#0;``, closing tags of the envelope and of
the inner documents, ``&``, ``=``, ``%``, ``+``), lone surrogates, NUL and the other characters XML
cannot carry, through real sends to the emulator over SOAP 1.1, SOAP 1.2, GET and POST. For each
text either exactly that text arrives (the message as the client documents it: NFC-composed), or
a typed error names the character that is not allowed and nothing at all was sent.

What arrives is read on the emulator's side twice: the stored row (what the gateway took) and the
raw request (its envelope, query string or form body, and any inner document), whose structure is
checked with a plain parser: every parameter exactly once, in wire order, and nothing else.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import unicodedata
from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from fibo_soap import wsdl
from fibo_soap.client import AsyncFiboClient, FiboClient
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.emulator.app import Recorded
from fibo_soap.errors import FiboCodeError, InvalidInputError, MessageTooLongError
from fibo_soap.models import IncomingStatus, Message, SmsStatus
from fibo_soap.operations import OPERATIONS

pytestmark = pytest.mark.e2e

PROTOCOLS = ("soap11", "soap12", "get", "post")
PHONE = "0909128628"
NS = wsdl.wsdl_namespace()

#: Pieces that break a writer that pastes text into markup or a query string.
SNIPPETS = [
    "<![CDATA[",
    "]]>",
    "&#0;",
    "&#x1F;",
    "&amp;",
    "&lt;",
    "&",
    "<",
    ">",
    '"',
    "'",
    "</smsMessage>",
    "</SendSMS></soap:Body></soap:Envelope>",
    "<clientNo>CL9999</clientNo>",
    "</Message></SMSLIST><SMSLIST><PhoneNumber>0999999999</PhoneNumber><Message>",
    "</MSGUID></ListMobilePhone><ListMobilePhone><PhoneNumber>0999999999",
    "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>&e;",
    "<?xml version='1.0'?>",
    "&clientNo=CL9999&",
    "=",
    "%00",
    "%26",
    "+",
    ";",
    "\r\n",
    "\r",
    "\t",
    "\x00",
    "\x01",
    "\x1b",
    "\x7f",
    "\x85",
    "\ufffe",
    "\uffff",
    "\ud800",
    "\udfff",
    "🎉",
    "e\u0301",  # decomposed: NFC turns it into é
    "Mã OTP",
]

TEXT = st.lists(
    st.one_of(st.sampled_from(SNIPPETS), st.text(st.characters(), max_size=6)), max_size=8
).map("".join)


def refused_char(text: str) -> str | None:
    """The first character the client must refuse: a control character other than tab, line
    feed and carriage return, or one that XML cannot carry at all."""
    for char in text:
        code = ord(char)
        if unicodedata.category(char) == "Cc" and char not in "\t\n\r":
            return char
        if 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            return char
    return None


def problem(text: str) -> str | None:
    """Why the client must refuse ``text`` as a value: "empty", "U+XXXX" for the first
    character it cannot send, or None."""
    if not text.strip():
        return "empty"
    char = refused_char(text)
    return None if char is None else f"U+{ord(char):04X}"


def first_problem(*texts: str) -> str | None:
    return next((found for found in map(problem, texts) if found), None)


def guid_problem(guid: str) -> str | None:
    """Why the client must refuse ``guid``: as any value, or for the outer whitespace FIBO trims
    (a look-up or a ListWrongPhoneNumber would name another string)."""
    return problem(guid) or ("whitespace" if guid.strip() != guid else None)


# --- the emulator and one client per protocol, shared by every example ------------------


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with run_emulator(delivery_delay=0) as emulator:
        emulator.set_balance(1_000_000)
        yield emulator


@pytest.fixture(scope="module")
def clients(emu: Emulator) -> Iterator[dict[str, FiboClient]]:
    made = {protocol: emu.client(protocols=(protocol,), retry=None) for protocol in PROTOCOLS}
    yield made
    for client in made.values():
        client.close()


_guids = itertools.count()


def new_guid(protocol: str) -> str:
    return f"inj-{protocol}-{next(_guids)}"


# --- reading what arrived ------------------------------------------------------------------


def call_params(recorded: Recorded) -> list[tuple[str, str]]:
    """The parameters of a recorded request as they are on the wire, in order, each occurrence
    kept: read with plain parsers, not the emulator's."""
    if recorded.protocol in ("soap11", "soap12"):
        root = etree.fromstring(recorded.body, etree.XMLParser(resolve_entities=False))
        (body,) = [child for child in root if etree.QName(child).localname == "Body"]
        (call,) = list(body)
        assert etree.QName(call).namespace == NS
        return [(etree.QName(child).localname, child.text or "") for child in call]
    raw = recorded.query if recorded.protocol == "get" else recorded.body.decode("ascii")
    return parse_qsl(raw, keep_blank_values=True, strict_parsing=True)


def assert_one_call(recorded: Recorded, operation: str) -> dict[str, str]:
    """Exactly the parameters of ``operation``, each once, in wire order; returned by name."""
    params = call_params(recorded)
    assert recorded.operation == operation
    assert [name for name, _ in params] == list(OPERATIONS[operation].params)
    return dict(params)


def fresh(emu: Emulator) -> int:
    """Forget the requests recorded so far (the record is bounded); how many are left: 0."""
    emu.app.recorded.clear()
    return len(emu.recorded)


def last_request(emu: Emulator, before: int) -> Recorded:
    recorded = emu.recorded
    assert len(recorded) == before + 1, "one call, one request"
    return recorded[-1]


def expect_refusal(error: InvalidInputError, why: str | None) -> None:
    """A refusal that says why: the character by its code point, or that the text is empty. A
    text with neither problem may only be too long."""
    if why is None:
        assert isinstance(error, MessageTooLongError), f"refused for no reason: {error}"
    else:
        assert why in str(error), f"expected {why} in: {error}"


HYPOTHESIS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- the properties ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@HYPOTHESIS
@given(text=TEXT)
def test_a_message_arrives_exactly_or_is_refused_naming_the_character(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str, text: str
) -> None:
    before, guid = fresh(emu), new_guid(protocol)
    try:
        receipt = clients[protocol].send_sms(PHONE, text, guid=guid)
    except InvalidInputError as error:
        expect_refusal(error, problem(text))
        assert len(emu.recorded) == before, "a refused message must not be sent"
        return
    assert problem(text) is None, "a message the client must refuse went out"
    assert receipt.guid == guid
    expected = unicodedata.normalize("NFC", text)
    params = assert_one_call(last_request(emu, before), "SendSMS")
    assert params["smsMessage"] == expected
    (stored,) = emu.received(guid=guid)
    assert stored.message == expected
    assert stored.phone == PHONE


@pytest.mark.parametrize("protocol", PROTOCOLS)
@HYPOTHESIS
@given(guid=TEXT, sender=TEXT)
def test_a_guid_and_a_sender_name_arrive_exactly_or_are_refused(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str, guid: str, sender: str
) -> None:
    before = fresh(emu)
    try:
        clients[protocol].send_masked_sms(PHONE, "hello", guid=guid, sender_name=sender)
    except InvalidInputError as error:
        # The GUID is checked first (FIBO trims it, so outer whitespace is refused too); a blank
        # sender name means "none", never an error.
        expect_refusal(error, guid_problem(guid) or (problem(sender) if sender.strip() else None))
        assert len(emu.recorded) == before
        return
    assert guid_problem(guid) is None
    params = assert_one_call(last_request(emu, before), "SendMaskedSMS")
    assert params["smsGUID"] == guid
    # The sender name is trimmed by the client (a brand name has no outer spaces).
    assert params["senderName"] == sender.strip()
    stored = [row for row in emu.received(guid=guid) if row.message == "hello"]
    assert stored, "the message did not reach the gateway under its GUID"
    assert stored[-1].guid == guid


@pytest.mark.parametrize("protocol", PROTOCOLS)
@HYPOTHESIS
@given(key=TEXT)
def test_a_search_key_arrives_exactly_or_is_refused(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str, key: str
) -> None:
    before = fresh(emu)
    try:
        clients[protocol].get_total_pages(key)
    except InvalidInputError as error:
        expect_refusal(error, problem(key) if key else None)
        assert len(emu.recorded) == before
        return
    assert key == "" or problem(key) is None
    params = assert_one_call(last_request(emu, before), "GetTotalPageOfClientSMS")
    assert params["key"] == key


@pytest.mark.parametrize("protocol", PROTOCOLS)
@HYPOTHESIS
@given(junk=TEXT)
def test_a_phone_number_with_markup_around_it_is_refused_or_sent_as_digits(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str, junk: str
) -> None:
    before, guid = fresh(emu), new_guid(protocol)
    try:
        clients[protocol].send_sms(PHONE + junk, "hi", guid=guid)
    except InvalidInputError:
        # InvalidPhoneNumberError mostly; a typed refusal either way, and nothing sent.
        assert len(emu.recorded) == before
        return
    params = assert_one_call(last_request(emu, before), "SendSMS")
    assert re.fullmatch(r"\d{9,15}", params["phoneNumber"])


ROWS = st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=4)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@HYPOTHESIS
@given(rows=ROWS)
def test_a_multi_message_document_carries_every_text_exactly(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str, rows: list[tuple[str, str]]
) -> None:
    # Each row: (GUID suffix, message). The inner document is escaped inside the envelope (or
    # percent-encoded in the form): one row per message, every field exactly once.
    before = fresh(emu)
    prefix = new_guid(protocol)
    messages = [(PHONE, text, f"{prefix}-{i}{suffix}") for i, (suffix, text) in enumerate(rows)]
    try:
        clients[protocol].send_multi_message(messages)
    except InvalidInputError as error:
        # Every GUID is checked before any text.
        guids, texts = [guid for _, _, guid in messages], [text for _, text, _ in messages]
        guid_refusal = next(filter(None, map(guid_problem, guids)), None)
        expect_refusal(error, guid_refusal or first_problem(*texts))
        assert len(emu.recorded) == before
        return
    params = assert_one_call(last_request(emu, before), "SendSMSWithMultiMessage")
    document = etree.fromstring(params["smsMessage"].encode())
    assert document.tag == "Document"
    assert len(document) == len(messages)
    for element, (phone, text, guid) in zip(document, messages, strict=True):
        assert element.tag == "ListMobilePhone"
        assert [child.tag for child in element] == ["PhoneNumber", "MSGUID", "Message"]
        assert [child.text or "" for child in element] == [
            phone,
            guid,
            unicodedata.normalize("NFC", text),
        ]
    for _, text, guid in messages:
        (stored,) = emu.received(guid=guid)
        assert stored.message == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@HYPOTHESIS
@given(guids=st.lists(TEXT, min_size=1, max_size=4, unique=True))
def test_a_status_query_carries_every_guid_exactly(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str, guids: list[str]
) -> None:
    before = fresh(emu)
    try:
        clients[protocol].get_sms_status(guids)
    except InvalidInputError as error:
        expect_refusal(error, next(filter(None, map(guid_problem, guids)), None))
        assert len(emu.recorded) == before
        return
    assert not any(map(guid_problem, guids))
    params = assert_one_call(last_request(emu, before), "GetSMSStatus")
    document = etree.fromstring(params["smsList"].encode())
    assert [(child.tag, child.text or "") for child in document] == [("msguid", g) for g in guids]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "bad_date",
    ["01-01-2020", "01-01-2020&clientNo=CL9999", "</fromDate><key>x</key>", 20200101, None],
)
def test_a_date_that_is_not_a_date_is_refused_before_anything_is_sent(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str, bad_date: Any
) -> None:
    before = fresh(emu)
    client = clients[protocol]
    if bad_date is None:
        # None means "no bound" for a page of sent messages: sent as an empty field.
        client.get_sent_page(1, from_date=None)
        params = assert_one_call(last_request(emu, before), "GetClientSMSListOfPage")
        assert params["fromDate"] == ""
        return
    with pytest.raises(InvalidInputError):
        client.get_sent_page(1, from_date=bad_date)
    with pytest.raises(InvalidInputError):
        client.get_incoming(bad_date, bad_date)
    assert len(emu.recorded) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("bad_status", ["SentSuccess", "2", "2&key=x", 2.0, True, -1, 999])
def test_a_status_filter_that_is_no_status_is_refused_before_anything_is_sent(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str, bad_status: Any
) -> None:
    before = fresh(emu)
    client = clients[protocol]
    with pytest.raises(InvalidInputError) as page:
        client.get_sent_page(1, status=bad_status)
    with pytest.raises(InvalidInputError) as incoming:
        client.get_incoming(date(2020, 1, 1), date(2020, 1, 2), status=bad_status)
    assert page.value.field == incoming.value.field == "status"
    assert repr(bad_status) in str(page.value)
    # A status of the other kind, though its number is one of this kind's, is a mix-up.
    with pytest.raises(InvalidInputError, match=r"an SmsStatus member .* not <IncomingStatus"):
        client.get_sent_page(1, status=IncomingStatus.CONFIRMED)
    with pytest.raises(InvalidInputError, match=r"an IncomingStatus member .* not <SmsStatus"):
        client.get_incoming(date(2020, 1, 1), date(2020, 1, 2), status=SmsStatus.SENT_SUCCESS)
    assert len(emu.recorded) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_page_range_in_the_wrong_order_is_refused_before_anything_is_sent(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str
) -> None:
    before = fresh(emu)
    with pytest.raises(InvalidInputError) as caught:
        clients[protocol].get_sent_page(1, from_date=date(2020, 1, 2), to_date=date(2020, 1, 1))
    assert caught.value.field == "from_date"
    assert len(emu.recorded) == before
    # A status given as its enum or its number goes out as the number.
    clients[protocol].get_sent_page(1, status=SmsStatus.SENT_FAILED)
    clients[protocol].get_sent_page(1, status=int(SmsStatus.SENT_FAILED))
    sent = [r.params["smsStatus"] for r in emu.recorded[before:]]
    assert sent == [str(int(SmsStatus.SENT_FAILED))] * 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_dates_arrive_in_the_one_format(
    emu: Emulator, clients: dict[str, FiboClient], protocol: str
) -> None:
    before = fresh(emu)
    clients[protocol].get_sent_page(2, from_date=date(2009, 4, 22), to_date=date(2009, 12, 31))
    params = assert_one_call(last_request(emu, before), "GetClientSMSListOfPage")
    assert (params["fromDate"], params["toDate"], params["pageNO"]) == (
        "04-22-2009",
        "12-31-2009",
        "2",
    )


# --- values of the wrong shape: refused by name, before anything is sent ------------------------

#: (call, field): each call gives one value where its argument wants another shape.
WRONG_SHAPES: list[tuple[str, Any, str]] = [
    (
        "one GUID as a str",
        lambda c: c.get_sms_status("2207a1b2-0000-4000-8000-000000000001"),
        "guids",
    ),
    ("one text as a str", lambda c: c.estimate("hello", check_balance=False), "messages"),
    ("one Message", lambda c: c.send_multi_message(Message(PHONE, "x")), "messages"),
    ("one Message, bulk", lambda c: c.send_bulk_sms(Message(PHONE, "x")), "messages"),
    ("one phone as a str", lambda c: c.send_to_list(PHONE, "x"), "phones"),
    ("a 1-tuple recipient", lambda c: c.send_to_list([(PHONE,)], "x"), "phones"),
    ("a GUID that is a number", lambda c: c.send_sms(PHONE, "x", guid=123), "guid"),
    ("a GUID padded with spaces", lambda c: c.send_sms(PHONE, "x", guid=" g1 "), "guid"),
    ("a padded GUID in a list", lambda c: c.send_to_list([(PHONE, "g1\n")], "x"), "guid"),
    ("a None to look up", lambda c: c.get_sms_status([None]), "guids"),
    ("a number to look up", lambda c: c.get_sms_status([123]), "guids"),
    ("a padded GUID to look up", lambda c: c.get_sms_status([" g1"]), "guids"),
    (
        "a sender name that is a number",
        lambda c: c.send_masked_sms(PHONE, "x", sender_name=5),
        "sender_name",
    ),
    ("an empty content", lambda c: c.send_to_list([PHONE], " "), "content"),
    ("a content too long", lambda c: c.send_to_list([PHONE], "x" * 900), "content"),
    ("a service type in other digits", lambda c: c.get_balance(service_type="１"), "service_type"),
    ("a service type in superscript", lambda c: c.get_balance(service_type="²"), "service_type"),
]


@pytest.mark.parametrize(
    ("call", "field"), [pytest.param(call, field, id=name) for name, call, field in WRONG_SHAPES]
)
def test_a_value_of_the_wrong_shape_is_refused_by_name_before_anything_is_sent(
    emu: Emulator, clients: dict[str, FiboClient], call: Any, field: str
) -> None:
    before = fresh(emu)
    with pytest.raises(InvalidInputError) as sync_error:
        call(clients["get"])

    async def refused() -> InvalidInputError:
        client = AsyncFiboClient(
            emu.client_no, emu.client_pass, endpoint=emu.endpoint, retry=None, service_type="1"
        )
        async with client:
            with pytest.raises(InvalidInputError) as async_error:
                await call(client)
        return async_error.value

    async_value = asyncio.run(refused())
    assert sync_error.value.field == async_value.field == field
    assert str(sync_error.value) == str(async_value)
    assert len(emu.recorded) == before


def test_a_negative_page_count_is_fibo_refusing_the_call_not_bad_input(emu: Emulator) -> None:
    # GetTotalPageOfClientSMS answers a negative number for "wrong parameters" (here the
    # account): the request went out, so it is FIBO's answer, not an input refused before.
    with emu.client(retry=None) as good:
        assert good.get_total_pages() >= 0
    wrong = FiboClient(emu.client_no, "not-the-password", endpoint=emu.endpoint, retry=None)
    before = fresh(emu)
    with wrong, pytest.raises(FiboCodeError) as caught:
        wrong.get_total_pages()
    assert not isinstance(caught.value, InvalidInputError)
    assert caught.value.code is not None
    assert caught.value.code < 0
    assert f"answer {caught.value.code}" in str(caught.value)
    assert [r.operation for r in emu.recorded[before:]] == ["GetTotalPageOfClientSMS"]
