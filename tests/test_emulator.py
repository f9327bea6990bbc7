"""The emulator as FIBO: each code, balances, delivery, magic numbers, reads, restart persistence.

Every test talks to a running emulator over loopback sockets: through the real FiboClient where
the behaviour matters to users, and through raw HTTP where the exact answer matters or the client
would refuse the input before sending it. Expected values are the ones each test sets up.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import inspect
import json
import math
import socket
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from lxml import etree
from still_clock import StillClock

from fibo_soap import codec, wsdl
from fibo_soap.client import FiboClient
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.emulator.server import DEFAULT_SENDER_NAMES, DEFAULT_SERVICE_TYPES
from fibo_soap.errors import (
    AuthenticationError,
    BalanceError,
    InsufficientBalanceError,
    InvalidPhoneNumberError,
    InvalidServiceTypeError,
    ZeroBalanceError,
)
from fibo_soap.models import VN_TZ, IncomingStatus, SmsStatus, StatusDocument
from fibo_soap.operations import (
    MULTI_MESSAGE_DOCUMENT,
    OPERATIONS,
    PAGE_SIZE,
    PHONE_LIST_DOCUMENT,
    STATUS_QUERY_DOCUMENT,
)

pytestmark = pytest.mark.e2e

PROTOCOLS = ("soap11", "soap12", "get", "post")
NS = wsdl.wsdl_namespace()
SOAP_MEDIA = {"1.1": "text/xml; charset=utf-8", "1.2": "application/soap+xml; charset=utf-8"}

# Valid Vietnamese mobile numbers (MobiFone 090, Viettel 098, VinaPhone 091): the client's local
# validation takes them, so only the emulator's magic suffixes decide what happens to them.
PHONE_A = "0909128628"
PHONE_B = "0981234567"
PHONE_C = "0912345678"
REFUSED = "0909120101"  # magic suffix 0101: the gateway refuses the number


def magic(nn: int) -> str:
    """A valid mobile number ending in 00NN: the message ends in SMSStatus NN."""
    return f"09091200{nn:02d}"


# --- helpers -----------------------------------------------------------------------------------


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


@pytest.fixture
def emu(fibo_emulator: Emulator) -> Emulator:
    return fibo_emulator


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(emu: Emulator, protocol: str) -> Iterator[FiboClient]:
    with make_client(emu, protocol) as c:
        yield c


def account(emu: Emulator) -> dict[str, str]:
    return {"clientNo": emu.client_no, "clientPass": emu.client_pass}


def raw_call(
    emu: Emulator, protocol: str, method: str, params: Mapping[str, str]
) -> tuple[int, str, bytes]:
    """One wire call without the client: status, content type, body.

    GET/POST send every parameter of the method ('' when not given), as ASMX requires; SOAP sends
    only the elements given, so a test can leave one out.
    """
    op = OPERATIONS[method]
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    try:
        if protocol in ("get", "post"):
            fields = urlencode([(name, params.get(name, "")) for name in op.params])
            if protocol == "get":
                conn.request("GET", f"/Service.asmx/{method}?{fields}")
            else:
                conn.request(
                    "POST",
                    f"/Service.asmx/{method}",
                    body=fields.encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
        else:
            version = "1.1" if protocol == "soap11" else "1.2"
            headers = {"Content-Type": SOAP_MEDIA[version]}
            if version == "1.1":
                headers["SOAPAction"] = f'"{NS}{method}"'
            else:
                headers["Content-Type"] += f'; action="{NS}{method}"'
            conn.request(
                "POST", "/Service.asmx", body=envelope(version, method, params), headers=headers
            )
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def envelope(version: str, method: str, params: Mapping[str, str]) -> bytes:
    env_ns = codec.soap_namespace(version)  # type: ignore[arg-type]
    root = etree.Element(f"{{{env_ns}}}Envelope", nsmap={"soap": env_ns})
    body = etree.SubElement(root, f"{{{env_ns}}}Body")
    call = etree.SubElement(body, f"{{{NS}}}{method}", nsmap={None: NS})  # type: ignore[dict-item]
    for name, value in params.items():
        etree.SubElement(call, f"{{{NS}}}{name}").text = value
    return etree.tostring(root, xml_declaration=True, encoding="utf-8")


def raw_result(emu: Emulator, protocol: str, method: str, **params: str) -> codec.Decoded:
    """The decoded result of a raw call that ASMX answered with 200."""
    status, _, body = raw_call(emu, protocol, method, params)
    assert status == 200, body
    if protocol in ("get", "post"):
        text = codec.decode_http_body(body)
    else:
        found = etree.fromstring(body).find(f".//{{{NS}}}{method}Result")
        assert found is not None, body
        text = found.text or ""
    return codec.decode_result(OPERATIONS[method], text)


def code_of(decoded: codec.Decoded) -> int:
    assert isinstance(decoded, StatusDocument), decoded
    return decoded.code


def send_params(
    emu: Emulator, phone: str, message: str = "hi", guid: str = "g-1"
) -> dict[str, str]:
    return {
        **account(emu),
        "phoneNumber": phone,
        "smsMessage": message,
        "smsGUID": guid,
        "serviceType": "1",
    }


def to_vn_noon(emu: Emulator, days_ahead: int) -> date:
    """Moves the emulator's clock to noon (Vietnam time) ``days_ahead`` days from today, so that
    what the test sends lands on a day it knows, far from midnight; that day."""
    now = emu.clock.now().astimezone(VN_TZ)
    day = now.date() + timedelta(days=days_ahead)
    emu.advance((datetime.combine(day, time(12), VN_TZ) - now).total_seconds())
    return day


# --- codes -------------------------------------------------------------------------------------


def test_check_client_answers_code_0_with_the_account_name(emu: Emulator, protocol: str) -> None:
    emu.add_account("CL0042", "secret-42", "Tran Thi B")
    with FiboClient("CL0042", "secret-42", endpoint=emu.endpoint, protocol=protocol) as c:
        assert c.check_client() == "Tran Thi B"
    decoded = raw_result(emu, protocol, "CheckClient", clientNo="CL0042", clientPass="secret-42")
    assert decoded == StatusDocument(0, "Tran Thi B", "")


def test_wrong_password_and_unknown_account_are_code_100(emu: Emulator, protocol: str) -> None:
    for client_no, password in ((emu.client_no, emu.client_pass + "x"), ("NOBODY", "pw")):
        with FiboClient(client_no, password, endpoint=emu.endpoint, protocol=protocol) as c:
            with pytest.raises(AuthenticationError) as caught:
                c.check_client()
            assert caught.value.code == 100
            with pytest.raises(AuthenticationError):
                c.send_sms(PHONE_A, "hi", service_type=1)
    assert emu.received() == []


@pytest.mark.parametrize("left_out", ["clientNo", "clientPass"])
def test_a_soap_request_without_an_account_element_is_code_100(
    emu: Emulator, left_out: str
) -> None:
    # .NET binds a missing element to null; the method then refuses the account.
    params = {k: v for k, v in account(emu).items() if k != left_out}
    for protocol in ("soap11", "soap12"):
        assert code_of(raw_result(emu, protocol, "CheckClient", **params)) == 100
        sent = {k: v for k, v in send_params(emu, PHONE_A).items() if k != left_out}
        assert code_of(raw_result(emu, protocol, "SendSMS", **sent)) == 100
    assert emu.received() == []


def test_a_refused_number_is_code_101_and_costs_nothing(client: FiboClient, emu: Emulator) -> None:
    emu.set_balance(10)
    with pytest.raises(InvalidPhoneNumberError) as caught:
        client.send_sms(REFUSED, "hi")
    assert caught.value.code == 101
    assert emu.received() == []
    assert emu.balance() == 10


def test_a_number_the_gateway_cannot_use_is_code_101(emu: Emulator) -> None:
    # The client refuses these locally, so they go raw; 024… is a Hanoi landline: no SMS.
    emu.set_balance(10)
    numbers = ["12345", "not-a-number", "", "02438123456"]
    for protocol, number in zip(PROTOCOLS, numbers, strict=True):
        decoded = raw_result(emu, protocol, "SendSMS", **send_params(emu, number))
        assert code_of(decoded) == 101, (protocol, number)
    assert emu.received() == []
    assert emu.balance() == 10


def test_a_zero_balance_is_code_102(client: FiboClient, emu: Emulator) -> None:
    emu.set_balance(0)
    with pytest.raises(ZeroBalanceError) as caught:
        client.send_sms(PHONE_A, "hi")
    assert caught.value.code == 102
    with pytest.raises(ZeroBalanceError):
        client.send_multi_message([(PHONE_A, "one", "g-1"), (PHONE_B, "two", "g-2")])
    assert emu.received() == []
    assert emu.balance() == 0


def test_an_unknown_service_type_is_code_103_and_a_negative_balance(
    client: FiboClient, emu: Emulator
) -> None:
    unknown = 9
    assert unknown not in {seed.id for seed in DEFAULT_SERVICE_TYPES}
    with pytest.raises(InvalidServiceTypeError) as caught:
        client.send_sms(PHONE_A, "hi", service_type=unknown)
    assert caught.value.code == 103
    with pytest.raises(InvalidServiceTypeError):
        client.send_bulk_sms([(PHONE_A, "hi")], service_type=unknown)
    with pytest.raises(InvalidServiceTypeError):
        client.get_balance(unknown)
    assert emu.received() == []


def test_get_client_balance_of_a_wrong_service_type_is_negative(emu: Emulator) -> None:
    for protocol, service_type in zip(PROTOCOLS, ["9", "abc", "", "-1"], strict=True):
        balance = raw_result(
            emu, protocol, "GetClientBalance", **account(emu), serviceType=service_type
        )
        assert isinstance(balance, int), (protocol, service_type)
        assert balance < 0, (protocol, service_type)


def test_a_batch_larger_than_the_balance_is_code_104_and_refused_whole(
    client: FiboClient, emu: Emulator
) -> None:
    emu.set_balance(2)
    three = [(PHONE_A, "one", "g-1"), (PHONE_B, "two", "g-2"), (PHONE_C, "three", "g-3")]
    with pytest.raises(InsufficientBalanceError) as caught:
        client.send_bulk_sms([(phone, text) for phone, text, _ in three])
    assert caught.value.code == 104
    with pytest.raises(InsufficientBalanceError):
        client.send_multi_message(three)
    with pytest.raises(InsufficientBalanceError):
        client.send_to_list([(phone, guid) for phone, _, guid in three], "same text")
    assert emu.received() == []
    assert emu.balance() == 2
    # Two fit exactly.
    assert client.send_multi_message(three[:2]).accepted == ("g-1", "g-2")
    assert emu.balance() == 0


def test_an_accepted_send_is_code_200_stored_and_charged_one(
    client: FiboClient, emu: Emulator, protocol: str
) -> None:
    emu.set_balance(5)
    receipt = client.send_sms(PHONE_A, "Xin chào", guid="my-guid-1")
    assert (receipt.guid, receipt.code) == ("my-guid-1", 200)
    [row] = emu.received()
    assert (row.phone, row.message, row.guid, row.service_type_id) == (
        PHONE_A,
        "Xin chào",
        "my-guid-1",
        1,
    )
    assert row.client_no == emu.client_no
    assert row.protocol == protocol
    assert emu.balance() == 4


def test_get_sms_status_with_a_malformed_sms_list_is_code_202(emu: Emulator) -> None:
    malformed = ["not xml", "", "<SMS><msguid>a</msguid>", "<Other/>"]
    for protocol, sms_list in zip(PROTOCOLS, malformed, strict=True):
        decoded = raw_result(emu, protocol, "GetSMSStatus", **account(emu), smsList=sms_list)
        assert code_of(decoded) == 202, (protocol, sms_list)


def test_incoming_range_with_no_match_is_code_301(client: FiboClient, emu: Emulator) -> None:
    today = emu.clock.now().astimezone(VN_TZ).date()
    when = {"fromDate": today.strftime("%m-%d-%Y"), "toDate": today.strftime("%m-%d-%Y")}
    decoded = raw_result(
        emu,
        client.protocol,
        "GetClientCommingSMSNotDividePage",
        **account(emu),
        **when,
        smsStatus="",
        serviceTypeID="",
        key="",
    )
    assert code_of(decoded) == 301
    assert client.get_incoming(today, today) == []


@pytest.mark.parametrize("how", ["send_to_list", "send_multi_message"])
def test_a_list_send_rejects_wrong_numbers_and_keeps_the_others(
    emu: Emulator, protocol: str, how: str
) -> None:
    emu.set_balance(10)
    recipients = [(PHONE_A, "g-a"), (REFUSED, "g-bad"), (PHONE_B, "g-b"), ("0909110101", "g-bad2")]
    with make_client(emu, protocol) as c:
        if how == "send_to_list":
            receipt = c.send_to_list(recipients, "same text")
        else:
            receipt = c.send_multi_message([(p, f"text {g}", g) for p, g in recipients])
    assert receipt.accepted == ("g-a", "g-b")
    assert receipt.rejected == ("g-bad", "g-bad2")
    assert [(r.guid, r.phone) for r in emu.received()] == [("g-a", PHONE_A), ("g-b", PHONE_B)]
    assert emu.balance() == 10 - 2


def test_a_list_send_with_every_number_wrong_stores_and_charges_nothing(
    client: FiboClient, emu: Emulator
) -> None:
    emu.set_balance(10)
    receipt = client.send_to_list([(REFUSED, "g-1"), ("0981110101", "g-2")], "text")
    assert receipt.accepted == ()
    assert receipt.rejected == ("g-1", "g-2")
    assert emu.received() == []
    assert emu.balance() == 10


def test_rejected_recipients_come_as_a_list_wrong_phone_number_document(emu: Emulator) -> None:
    document = codec.encode_document(
        PHONE_LIST_DOCUMENT, [(PHONE_A, "g-ok"), (REFUSED, "g-bad"), ("12345", "g-junk")]
    )
    params = {
        **account(emu),
        "senderName": "n/a",
        "smsContent": "text",
        "listPhoneNumber": document,
        "serviceType": "1",
    }
    for protocol, guid in zip(("get", "soap12"), ("g-ok", "g-ok-2"), strict=True):
        params["listPhoneNumber"] = document.replace("g-ok", guid)
        decoded = raw_result(emu, protocol, "SendSMSToListMobilePhone", **params)
        assert decoded == codec.WrongPhones(("g-bad", "g-junk"))
    assert [r.guid for r in emu.received()] == ["g-ok", "g-ok-2"]


def test_sender_names_are_listed_in_the_order_registered(client: FiboClient, emu: Emulator) -> None:
    emu.add_sender_name("MyBrand")
    names = [s.name for s in client.get_sender_names()]
    assert names == [*DEFAULT_SENDER_NAMES, "MyBrand"]


def test_a_service_type_added_is_listed_and_sends_on_its_own_balance(
    client: FiboClient, emu: Emulator
) -> None:
    emu.add_service_type(7, "Zalo ZNS", 5)
    hosting = {row.service_type_name: row.balance for row in client.get_hosting_balances()}
    assert hosting["Zalo ZNS"] == 5
    client.send_sms(PHONE_A, "hi", service_type=7)
    assert (emu.balance(7), client.get_balance(7)) == (4, 4)
    with pytest.raises(ValueError, match="7"):
        emu.add_service_type(7, "again", 1)


def test_bulk_send_takes_a_refused_number_and_fails_it_at_once(
    client: FiboClient, emu: Emulator
) -> None:
    # SendBulkSMS carries no GUIDs to reject, so a refused number is taken, charged and failed.
    emu.set_balance(10)
    receipt = client.send_bulk_sms([(PHONE_A, "one"), (REFUSED, "two")])
    assert (receipt.count, receipt.code) == (2, 200)
    statuses = {row.phone: row.status for row in emu.received()}
    assert statuses == {PHONE_A: SmsStatus.SENT_SUCCESS, REFUSED: SmsStatus.TO_NUMBER_NOT_CORRECT}
    assert emu.balance() == 8


# --- balances ----------------------------------------------------------------------------------


def test_balances_are_kept_per_service_type(emu: Emulator, protocol: str) -> None:
    balances = {1: 7, 2: 5, 3: 4}
    for service_type, balance in balances.items():
        emu.set_balance(balance, service_type)
    with make_client(emu, protocol) as c:
        assert {t: c.get_balance(t) for t in balances} == balances
        assert [h.balance for h in c.get_hosting_balances()] == [
            balances[t] for t in sorted(balances)
        ]
        c.send_multi_message([(PHONE_A, "one", "g-1"), (PHONE_B, "two", "g-2")], service_type=2)
        assert {t: c.get_balance(t) for t in balances} == {**balances, 2: balances[2] - 2}
    assert {row.service_type_id for row in emu.received()} == {2}


def test_service_type_3_is_free_and_never_delivered(emu: Emulator, protocol: str) -> None:
    emu.set_balance(4, 3)
    with make_client(emu, protocol) as c:
        c.send_test_sms(PHONE_A, "test channel", guid="g-test")
        c.send_sms(PHONE_B, "test channel too", guid="g-test-2", service_type=3)
        emu.advance(24 * 3600)
        rows = c.get_sms_status(["g-test", "g-test-2"])
        assert [(r.guid, r.status) for r in rows] == [
            ("g-test", SmsStatus.PENDING),
            ("g-test-2", SmsStatus.PENDING),
        ]
        assert c.get_balance(3) == 4
    assert all(row.sent is None for row in emu.received())


def test_the_test_channel_takes_sends_even_at_zero_balance(
    client: FiboClient, emu: Emulator
) -> None:
    emu.set_balance(0, 3)
    client.send_test_sms(PHONE_A, "free", guid="g-free")
    assert [r.guid for r in emu.received()] == ["g-free"]
    assert emu.balance(3) == 0


def test_concurrent_single_sends_against_a_small_balance_end_exact() -> None:
    balance, threads, per_thread = 50, 8, 10
    with run_emulator(delivery_delay=0) as emu:
        emu.set_balance(balance)
        accepted: list[str] = []
        refused: list[BaseException] = []
        failures: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(threads)

        def worker(n: int) -> None:
            with make_client(emu, PROTOCOLS[n % len(PROTOCOLS)]) as c:
                c.about()  # connected (and the WSDL loaded) before the race starts
                start.wait()
                for i in range(per_thread):
                    try:
                        receipt = c.send_sms(PHONE_A, f"t{n} m{i}", guid=f"t{n}-m{i}")
                    except BalanceError as exc:
                        with lock:
                            refused.append(exc)
                    except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                        with lock:
                            failures.append(exc)
                    else:
                        with lock:
                            accepted.append(f"{receipt.code} {receipt.guid}")

        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=60)
        assert failures == []
        assert len(accepted) == balance
        assert {a.split()[0] for a in accepted} == {"200"}
        accepted = [a.split()[1] for a in accepted]
        assert len(refused) == threads * per_thread - balance
        assert all(isinstance(e, ZeroBalanceError | InsufficientBalanceError) for e in refused)
        stored = emu.received()
        assert len(stored) == balance
        assert sorted(r.guid or "" for r in stored) == sorted(accepted)
        assert emu.balance() == 0


def test_concurrent_batch_sends_never_overdraw() -> None:
    balance, threads, batch = 50, 6, 3
    with run_emulator(delivery_delay=0) as emu:
        emu.set_balance(balance)
        batches: list[tuple[str, ...]] = []
        lock = threading.Lock()
        start = threading.Barrier(threads)

        def worker(n: int) -> None:
            with make_client(emu, PROTOCOLS[n % len(PROTOCOLS)]) as c:
                c.about()
                start.wait()
                for i in range(balance):
                    items = [(PHONE_A, "x", f"t{n}-b{i}-{k}") for k in range(batch)]
                    try:
                        receipt = c.send_multi_message(items)
                    except InsufficientBalanceError:
                        return
                    with lock:
                        batches.append(receipt.accepted)

        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=60)
        assert len(batches) == balance // batch
        stored = emu.received()
        assert len(stored) == len(batches) * batch
        assert sorted(r.guid or "" for r in stored) == sorted(g for b in batches for g in b)
        assert emu.balance() == balance - len(stored) == balance % batch


# --- delivery ----------------------------------------------------------------------------------


def test_a_message_goes_pending_sending_sent_with_the_clock(protocol: str) -> None:
    delay = 10
    with run_emulator(delivery_delay=delay) as emu, make_client(emu, protocol) as c:
        c.send_sms(PHONE_A, "hi", guid="g-1")
        assert [r.status for r in c.get_sms_status(["g-1"])] == [SmsStatus.PENDING]
        [row] = c.get_sent_list(5)
        assert row.sent is None
        emu.advance(delay / 2)
        assert [r.status for r in c.get_sms_status(["g-1"])] == [SmsStatus.SENDING]
        emu.advance(delay / 2)
        assert [r.status for r in c.get_sms_status(["g-1"])] == [SmsStatus.SENT_SUCCESS]
        [row] = c.get_sent_list(5)
        assert row.status is SmsStatus.SENT_SUCCESS
        assert row.created is not None
        assert row.sent is not None
        assert row.sent - row.created == timedelta(seconds=delay)


@pytest.mark.parametrize("delay", [0.3, 1.7, 2.7, 4.0])
def test_a_clock_moved_by_exactly_the_delay_finds_every_message_final(delay: float) -> None:
    # A clock standing at an instant with microseconds, moved by exactly the delivery delay: a
    # delivery instant computed a float step late would leave a message Sending.
    with run_emulator(delivery_delay=delay) as emu, make_client(emu, "get") as c:
        emu.app.service.clock = StillClock(datetime(2025, 6, 1, 8, 0, 0, 3, tzinfo=UTC))
        guids = [f"g-{n}" for n in range(20)]
        for guid in guids:
            c.send_sms(PHONE_A, "one by one", guid=guid)
        c.send_bulk_sms([(PHONE_A, "bulk"), (PHONE_B, "bulk")])
        emu.advance(delay / 2)
        assert {r.status for r in emu.received()} == {SmsStatus.SENDING}
        emu.advance(delay / 2)
        assert {r.status for r in emu.received()} == {SmsStatus.SENT_SUCCESS}
        # The single sends and the bulk one keep the same timeline.
        assert {r.sent - r.created for r in emu.received() if r.sent} == {timedelta(seconds=delay)}


def test_a_message_with_no_delivery_delay_is_sent_at_once(client: FiboClient) -> None:
    # fibo_emulator delivers at once.
    client.send_sms(PHONE_A, "hi", guid="g-1")
    assert [r.status for r in client.get_sms_status(["g-1"])] == [SmsStatus.SENT_SUCCESS]
    [row] = client.get_sent_list(1)
    assert row.sent is not None


def test_magic_numbers_end_in_their_status(client: FiboClient, emu: Emulator) -> None:
    wanted = {f"g-{nn}": SmsStatus(nn) for nn in range(3, 12)}
    # Neighbours of the magic range end normally.
    wanted |= {"g-2": SmsStatus.SENT_SUCCESS, "g-12": SmsStatus.SENT_SUCCESS}
    for guid in wanted:
        client.send_sms(magic(int(guid[2:])), "magic", guid=guid)
    rows = client.get_sms_status(list(wanted))
    assert {r.guid: r.status for r in rows} == wanted


def test_magic_numbers_work_in_list_sends_with_delay() -> None:
    with run_emulator(delivery_delay=4) as emu, make_client(emu, "post") as c:
        c.send_to_list([(magic(3), "g-failed"), (magic(10), "g-spam"), (PHONE_A, "g-ok")], "x")
        before = {r.guid: r.status for r in c.get_sms_status(["g-failed", "g-spam", "g-ok"])}
        assert set(before.values()) == {SmsStatus.PENDING}
        emu.advance(4)
        after = {r.guid: r.status for r in c.get_sms_status(["g-failed", "g-spam", "g-ok"])}
        assert after == {
            "g-failed": SmsStatus.SENT_FAILED,
            "g-spam": SmsStatus.SPAM_SMS,
            "g-ok": SmsStatus.SENT_SUCCESS,
        }


def spellings(number: str) -> dict[str, str]:
    """``number`` (national, 10 digits) as people write it, by a name for each way."""
    head, mid, tail = number[:4], number[4:7], number[7:]
    return {
        "spaces": f"{head} {mid} {tail}",
        "dashes": f"{head}-{mid}-{tail}",
        "dots": f"{head}.{mid}.{tail}",
        "plus84": f"+84 {head[1:]} {mid} {tail}",
        "84": f"84{number[1:]}",
    }


@pytest.mark.parametrize("nn", [3, 10])
def test_a_magic_number_written_with_separators_ends_in_its_status(
    emu: Emulator, protocol: str, nn: int
) -> None:
    # The client normalizes numbers before sending; raw calls carry them as written, and the
    # gateway reads them as it reads them for a refusal: normalized, whatever the separators.
    number = magic(nn)
    written = {"plain": number, **spellings(number)}
    for name, spelled in written.items():
        decoded = raw_result(emu, protocol, "SendSMS", **send_params(emu, spelled, guid=name))
        assert code_of(decoded) == 200, spelled
    plain = {r.guid: r.status for r in emu.received(guid="plain")}
    assert plain == {"plain": SmsStatus(nn)}  # the rule itself, on the number as FIBO prints it
    assert {r.guid: r.status for r in emu.received()} == dict.fromkeys(written, SmsStatus(nn))


def test_magic_and_refused_numbers_with_separators_in_a_list_send(emu: Emulator) -> None:
    rows = [
        (spellings(magic(3))["spaces"], "l-failed"),
        (spellings(magic(10))["plus84"], "l-spam"),
        (spellings(PHONE_A)["dashes"], "l-ok"),
        (spellings(REFUSED)["spaces"], "l-refused"),
    ]
    params = {
        **account(emu),
        "senderName": "n/a",
        "smsContent": "text",
        "listPhoneNumber": codec.encode_document(PHONE_LIST_DOCUMENT, rows),
        "serviceType": "1",
    }
    decoded = raw_result(emu, "post", "SendSMSToListMobilePhone", **params)
    assert decoded == codec.WrongPhones(("l-refused",))
    assert {r.guid: r.status for r in emu.received()} == {
        "l-failed": SmsStatus.SENT_FAILED,
        "l-spam": SmsStatus.SPAM_SMS,
        "l-ok": SmsStatus.SENT_SUCCESS,
    }


def test_received_reports_the_state_at_the_emulators_now() -> None:
    with run_emulator(delivery_delay=10) as emu, make_client(emu) as c:
        c.send_sms(PHONE_A, "hi", guid="g-1")
        emu.clock.advance(10)  # the clock alone: nothing has asked the store yet
        assert [r.status for r in emu.received(guid="g-1")] == [SmsStatus.SENT_SUCCESS]


# --- reads -------------------------------------------------------------------------------------


def test_sent_messages_come_in_pages_of_20(emu: Emulator, protocol: str) -> None:
    keyed, other = 25, 20
    total = keyed + other
    messages = [(PHONE_A, f"KM-{i} giam gia") for i in range(keyed)]
    messages += [(PHONE_B, f"Hello {i}") for i in range(other)]
    with make_client(emu, protocol) as c:
        c.send_bulk_sms(messages)
        assert c.get_total_pages() == math.ceil(total / PAGE_SIZE) == 3
        pages = [c.get_sent_page(n) for n in (1, 2, 3, 4)]
        assert [len(p) for p in pages] == [PAGE_SIZE, PAGE_SIZE, total - 2 * PAGE_SIZE, 0]
        ids = [row.id for page in pages for row in page]
        assert len(set(ids)) == total
        assert ids == sorted(ids, reverse=True)  # newest first
        assert {row.message for page in pages for row in page} == {m for _, m in messages}
        # key filters, ignoring case
        assert c.get_total_pages(key="KM-") == math.ceil(keyed / PAGE_SIZE) == 2
        assert c.get_total_pages(key="km-") == 2
        assert c.get_total_pages(key="no such text") == 0
        keyed_rows = c.get_sent_page(1, key="km-") + c.get_sent_page(2, key="km-")
        assert len(keyed_rows) == keyed
        assert all((row.message or "").startswith("KM-") for row in keyed_rows)
        assert c.get_sent_page(1, key=PHONE_B[-6:]) == c.get_sent_page(1, key="hello")


def test_sent_pages_filter_by_day_status_and_service_type(emu: Emulator) -> None:
    day1 = to_vn_noon(emu, 1)
    with make_client(emu, "get") as c:
        c.send_sms(PHONE_A, "day one a", guid="d1-a")
        c.send_sms(magic(3), "day one failed", guid="d1-f")
        day3 = to_vn_noon(emu, 2)
        assert day3 == day1 + timedelta(days=2)
        c.send_sms(PHONE_A, "day three a", guid="d3-a")
        c.send_sms(PHONE_B, "day three b", guid="d3-b", service_type=2)
        c.send_sms(PHONE_C, "day three c", guid="d3-c")

        def guids(**filters: Any) -> set[str]:
            return {row.guid or "" for row in c.get_sent_page(1, **filters)}

        assert guids(from_date=day1, to_date=day1) == {"d1-a", "d1-f"}
        assert guids(from_date=day1 + timedelta(days=1), to_date=day1 + timedelta(days=1)) == set()
        assert guids(from_date=day3, to_date=day3) == {"d3-a", "d3-b", "d3-c"}
        assert len(guids(from_date=day1, to_date=day3)) == 5
        assert guids(from_date=day3) == {"d3-a", "d3-b", "d3-c"}
        assert guids(to_date=day1) == {"d1-a", "d1-f"}
        assert guids(status=SmsStatus.SENT_FAILED) == {"d1-f"}
        assert guids(service_type=2) == {"d3-b"}
        assert guids(from_date=day3, status=SmsStatus.SENT_SUCCESS, service_type=1) == {
            "d3-a",
            "d3-c",
        }


def _early_and_late(emu: Emulator, c: FiboClient) -> tuple[int, int]:
    """A message sent and one received, then ten minutes, then the same again: the ids of the
    two received (the sent ones are g-early and g-late)."""
    c.send_sms(PHONE_A, "early", guid="g-early")
    early = emu.inject_incoming(PHONE_B, "early reply")
    emu.advance(10 * 60)
    c.send_sms(PHONE_A, "late", guid="g-late")
    return early, emu.inject_incoming(PHONE_C, "late reply")


def test_sent_and_incoming_lists_keep_to_their_minutes_window(emu: Emulator, protocol: str) -> None:
    with make_client(emu, protocol) as c:
        early, late = _early_and_late(emu, c)
        assert [r.guid for r in c.get_sent_list(5)] == ["g-late"]
        assert [r.guid for r in c.get_sent_list(15)] == ["g-early", "g-late"]
        assert [r.id for r in c.get_incoming_list(5)] == [late]
        assert [r.id for r in c.get_incoming_list(15)] == [early, late]
        emu.advance(20 * 60)
        assert c.get_sent_list(15) == []
        assert c.get_incoming_list(15) == []


def request_date(day: date) -> str:
    """``day`` as a request writes it, MM-DD-YYYY with a four-digit year (strftime pads no year)."""
    return f"{day.month:02d}-{day.day:02d}-{day.year:04d}"


def test_the_first_and_last_days_a_date_can_name_bound_both_date_range_reads(
    emu: Emulator, protocol: str
) -> None:
    today = to_vn_noon(emu, 1)
    with make_client(emu, protocol) as c:
        c.send_sms(PHONE_A, "today", guid="g-today")
    injected = emu.inject_incoming(PHONE_B, "reply today")
    tomorrow = today + timedelta(days=1)

    def read(from_day: date, to_day: date) -> tuple[list[str | None], list[int | None]]:
        dates = {"fromDate": request_date(from_day), "toDate": request_date(to_day)}
        filters = {"smsStatus": "", "serviceTypeID": "", "key": ""}
        sent = raw_result(
            emu, protocol, "GetClientSMSListOfPage", **account(emu), pageNO="1", **dates, **filters
        )
        incoming = raw_result(
            emu, protocol, "GetClientCommingSMSNotDividePage", **account(emu), **dates, **filters
        )
        assert isinstance(sent, list), sent
        if isinstance(incoming, StatusDocument):  # code 301: nothing in the range
            assert incoming.code == 301, incoming
            incoming = []
        assert isinstance(incoming, list), incoming
        return [r.guid for r in sent], [r.id for r in incoming]

    todays = read(today, today)
    assert todays == (["g-today"], [injected])
    assert read(date.min, date.max) == todays
    assert read(today, date.max) == todays
    assert read(date.min, today) == todays
    # Open at the far end, the bounds still keep to the near one.
    assert read(tomorrow, date.max) == ([], [])
    assert read(date.min, today - timedelta(days=1)) == ([], [])


def test_a_minutes_window_longer_than_all_time_reads_everything(
    emu: Emulator, protocol: str
) -> None:
    with make_client(emu, protocol) as c:
        early, late = _early_and_late(emu, c)
        expected = ([r.guid for r in c.get_sent_list(60)], [r.id for r in c.get_incoming_list(60)])
    assert expected == (["g-early", "g-late"], [early, late])
    # No whole number is too many minutes: the wire's int has no limit here, a float's does.
    for minutes in (str(2**63), "1" + "0" * 400):
        sent = raw_result(emu, protocol, "GetSMSSentList", **account(emu), minutes=minutes)
        incoming = raw_result(emu, protocol, "GetCommingSMSList", **account(emu), minutes=minutes)
        assert isinstance(sent, list), sent
        assert isinstance(incoming, list), incoming
        assert ([r.guid for r in sent], [r.id for r in incoming]) == expected, minutes


def test_get_sms_status_answers_known_guids_in_the_order_asked(client: FiboClient) -> None:
    client.send_sms(PHONE_A, "one", guid="g-1")
    client.send_masked_sms(PHONE_B, "two", sender_name="FiboSMS", guid="g-2", service_type=2)
    rows = client.get_sms_status(["g-2", "never-sent", "g-1"])
    assert [(r.guid, r.sender_name) for r in rows] == [("g-2", "FiboSMS"), ("g-1", None)]
    assert client.get_sms_status(["never-sent"]) == []


def test_a_guid_with_surrounding_spaces_is_found_by_the_same_string(
    emu: Emulator, protocol: str
) -> None:
    def guid(kind: str) -> str:
        return f" \t{kind}-{protocol} "

    sends: dict[str, dict[str, str]] = {
        "SendSMS": send_params(emu, PHONE_A, guid=guid("single")),
        "SendMaskedSMS": {
            **send_params(emu, PHONE_B, guid=guid("masked")),
            "senderName": "FiboSMS",
        },
        "SendSMSToListMobilePhone": {
            **account(emu),
            "senderName": "n/a",
            "smsContent": "text",
            "listPhoneNumber": codec.encode_document(
                PHONE_LIST_DOCUMENT, [(PHONE_A, guid("list")), (REFUSED, guid("list-refused"))]
            ),
            "serviceType": "1",
        },
        "SendSMSWithMultiMessage": {
            **account(emu),
            "senderName": "n/a",
            "smsMessage": codec.encode_document(
                MULTI_MESSAGE_DOCUMENT, [(PHONE_C, guid("multi"), "text")]
            ),
            "serviceType": "1",
        },
    }
    answers = {
        method: raw_result(emu, protocol, method, **params) for method, params in sends.items()
    }
    taken = [guid(kind) for kind in ("single", "masked", "list", "multi")]
    asked = codec.encode_document(STATUS_QUERY_DOCUMENT, taken)
    rows = raw_result(emu, protocol, "GetSMSStatus", **account(emu), smsList=asked)
    assert isinstance(rows, list), rows
    # The very string each was sent with finds it, under the GUID it is stored by: trimmed, as
    # the look-up trims what it is asked for.
    stored = [r.guid for r in emu.received()]
    assert [r.guid for r in rows] == stored
    assert stored == [g.strip() for g in taken]
    # The rejected recipient is echoed under the GUID a look-up would use, too.
    refused_guid = guid("list-refused").strip()
    assert answers["SendSMSToListMobilePhone"] == codec.WrongPhones((refused_guid,))


def test_incoming_sms_are_read_by_both_operations(emu: Emulator, protocol: str) -> None:
    today = to_vn_noon(emu, 1)
    injected = [
        (PHONE_A, "DK KM gui 8022", IncomingStatus.JUST_RECEIVED, 1, "8022(FIBO)"),
        (PHONE_B, "Xin chào FIBO", IncomingStatus.CONFIRMED, 1, "8022(FIBO)"),
        (PHONE_C, "HUY dich vu", IncomingStatus.JUST_RECEIVED, 2, "8122(Brand)"),
    ]
    ids = [
        emu.inject_incoming(p, m, status=s, service_type_id=t, service_type_name=n)
        for p, m, s, t, n in injected
    ]
    with make_client(emu, protocol) as c:
        listed = c.get_incoming_list(5)
        assert [r.id for r in listed] == ids
        assert [
            (r.phone, r.message, r.status, r.service_type_id, r.service_type_name) for r in listed
        ] == injected
        # GetClientCommingSMSNotDividePage has no status column, but a SentDate.
        ranged = c.get_incoming(today, today)
        assert [r.id for r in ranged] == ids
        assert [(r.phone, r.message, r.service_type_id, r.service_type_name) for r in ranged] == [
            (p, m, t, n) for p, m, _, t, n in injected
        ]
        assert all(r.created is not None for r in listed + ranged)
        assert all(r.sent is not None for r in ranged)  # SentDate, dd/MM/yyyy(HH:mm:ss)

        def phones(**filters: Any) -> list[str | None]:
            return [r.phone for r in c.get_incoming(today, today, **filters)]

        assert phones(key="km") == [PHONE_A]
        assert phones(status=IncomingStatus.CONFIRMED) == [PHONE_B]
        assert phones(service_type=2) == [PHONE_C]
        assert phones(key="nothing like it") == []  # code 301
        tomorrow = today + timedelta(days=1)
        assert c.get_incoming(tomorrow, tomorrow) == []
        assert len(c.get_incoming(today - timedelta(days=1), today)) == 3


def test_accounts_see_only_their_own_rows(emu: Emulator, protocol: str) -> None:
    emu.add_account("CL0002", "second-pass", "Le Van C")
    emu.set_balance(10)
    emu.set_balance(10, client_no="CL0002")
    today = emu.clock.now().astimezone(VN_TZ).date()
    with make_client(emu, protocol) as first:
        first.send_sms(PHONE_A, "first's", guid="g-first")
    emu.inject_incoming(PHONE_B, "to the first")
    with FiboClient(
        "CL0002", "second-pass", endpoint=emu.endpoint, protocol=protocol, service_type=1
    ) as second:
        assert second.get_sms_status(["g-first"]) == []
        assert second.get_sent_list(60) == []
        assert second.get_sent_page(1) == []
        assert second.get_total_pages() == 0
        assert second.get_incoming_list(60) == []
        assert second.get_incoming(today, today) == []
        second.send_sms(PHONE_C, "second's", guid="g-second")
        assert second.get_balance() == 9
    assert emu.balance() == 9
    assert [r.guid for r in emu.received(client_no=emu.client_no)] == ["g-first"]
    assert [r.guid for r in emu.received(client_no="CL0002")] == ["g-second"]


# --- restart persistence -----------------------------------------------------------------------


def test_a_restarted_emulator_keeps_messages_balances_and_password(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    with run_emulator(db=db, delivery_delay=0) as emu:
        password = emu.client_pass
        emu.set_balance(30)
        emu.set_balance(7, 2)
        with make_client(emu) as c:
            c.send_multi_message([(PHONE_A, "one", "g-1"), (magic(5), "two", "g-2")])
        incoming = emu.inject_incoming(PHONE_B, "reply")
        emu.add_account("CL0002", "second-pass", "Le Van C")
    with run_emulator(db=db, delivery_delay=0) as emu:
        assert emu.client_pass == password
        with make_client(emu, "get") as c:
            assert {r.guid: r.status for r in c.get_sms_status(["g-1", "g-2"])} == {
                "g-1": SmsStatus.SENT_SUCCESS,
                "g-2": SmsStatus.TO_NUMBER_NOT_CORRECT,
            }
            assert (c.get_balance(1), c.get_balance(2)) == (28, 7)
            assert [r.id for r in c.get_incoming_list(60)] == [incoming]
            c.send_sms(PHONE_A, "after restart", guid="g-3")
        with FiboClient("CL0002", "second-pass", endpoint=emu.endpoint) as second:
            assert second.check_client() == "Le Van C"
        assert [r.guid for r in emu.received()] == ["g-1", "g-2", "g-3"]
        assert emu.balance() == 27


def test_a_restarted_emulator_keeps_its_clock_where_it_was_moved(tmp_path: Path) -> None:
    # A message sent in moved time is due in moved time: with the clock back at real time after
    # a restart, it would wait an hour, and fall out of every "last N minutes" window.
    db = tmp_path / "x.sqlite"
    hour = 3600
    with run_emulator(db=db, delivery_delay=10) as emu:
        emu.advance(hour)
        with make_client(emu) as c:
            c.send_sms(PHONE_A, "in moved time", guid="g-moved")
        admin = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
        body = json.dumps({"seconds": 5})  # the admin API's advance is kept too
        admin.request("POST", "/_emulator/advance", body, {"Content-Type": "application/json"})
        assert admin.getresponse().status == 200
        admin.close()
        ahead = emu.clock.now()
    with run_emulator(db=db, delivery_delay=10) as emu:
        assert emu.clock.now() - ahead >= timedelta(0)  # not back at real time
        assert emu.clock.now() - ahead < timedelta(minutes=1)
        with make_client(emu, "get") as c:
            assert [r.guid for r in c.get_sent_list(5)] == ["g-moved"]
            emu.advance(5)
            assert [r.status for r in c.get_sms_status(["g-moved"])] == [SmsStatus.SENT_SUCCESS]


def test_a_client_stalled_half_way_does_not_outlive_the_emulator() -> None:
    # Leaving run_emulator() with a request still coming in: the emulator's thread must be gone
    # when the block ends, not left running with its store closed under it.
    with run_emulator() as emu:
        stalled = socket.create_connection((emu.host, emu.port), timeout=10)
        stalled.sendall(
            b"POST /Service.asmx/About HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nab"
        )
        emu.fault("latency", method="CheckClient", seconds=300)
        held = threading.Thread(target=lambda: _check_quietly(emu), daemon=True)
        held.start()
        while not any(r.operation == "CheckClient" for r in emu.recorded):
            threading.Event().wait(0.01)
    try:
        assert not [t for t in threading.enumerate() if t.name == "fibo-emulator"]
    finally:
        stalled.close()


def _check_quietly(emu: Emulator) -> None:
    with contextlib.suppress(Exception), make_client(emu, "get", timeout=30) as c:
        c.check_client()


def test_a_request_leaves_no_reference_cycle_behind(emu: Emulator) -> None:
    # What a request makes is freed when it ends. A reference cycle (the request's scope holding
    # uvicorn's request cycle, which holds the scope) leaves it all to the garbage collector,
    # which then runs over it again and again under load.
    query = urlencode({"clientNo": emu.client_no, "clientPass": emu.client_pass})
    connection = http.client.HTTPConnection(emu.host, emu.port, timeout=10)

    def call(path: str) -> None:
        connection.request("GET", path)
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200

    paths = ("/_emulator/hello", f"/Service.asmx/CheckClient?{query}")
    for path in paths * 10:  # everything cached on first use is made
        call(path)
    gc.collect()
    gc.disable()
    try:
        for path in paths * 50:
            call(path)
        left = gc.collect()
    finally:
        gc.enable()
        connection.close()
    assert left == 0


def test_a_restart_with_the_same_given_password_works(tmp_path: Path) -> None:
    db = tmp_path / "x.sqlite"
    with run_emulator(db=db, client_pass="chosen-pass") as emu:
        assert emu.client_pass == "chosen-pass"
    with run_emulator(db=db, client_pass="chosen-pass") as emu, make_client(emu) as c:
        assert c.check_client()


def test_a_restart_with_another_password_is_refused(tmp_path: Path) -> None:
    # The stored account keeps its password; announcing another would hand out one that fails.
    db = tmp_path / "x.sqlite"
    with run_emulator(db=db, client_pass="first-pass"):
        pass
    with (
        pytest.raises(ValueError, match="another password") as caught,
        run_emulator(db=db, client_pass="second-pass"),
    ):
        pass
    assert "first-pass" not in str(caught.value)
    with run_emulator(db=db) as emu:
        assert emu.client_pass == "first-pass"
