"""The wire format, pinned by recorded conversations: every operation over SOAP 1.1, SOAP 1.2, HTTP
GET and HTTP POST, each FIBO error code, and a partial rejection, in ``cassettes/``.

``make record`` (``pytest --record-mode=rewrite tests/test_cassettes.py``) records them against an
emulator whose clock stands still, with a fixed password and seeded GUIDs, so that recording twice
gives the same files. ``make test`` replays them with recording off and the network blocked: the
client talks to an address where nothing listens, with another password, and every request must
match a recorded one on method, path, SOAP action and the canonical request (fibo_soap.testing).
A change to what the client sends fails here, and shows as a cassette diff when re-recorded.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import vcr as vcrpy
import yaml
from still_clock import StillClock
from vcr.errors import CannotOverwriteExistingCassetteException

from fibo_soap import (
    AsmxError,
    AuthenticationError,
    BatchReceipt,
    BulkReceipt,
    FiboClient,
    GatewayError,
    InsufficientBalanceError,
    InvalidPhoneNumberError,
    InvalidServiceTypeError,
    Message,
    SmsStatus,
    SoapFaultError,
    ZeroBalanceError,
    codec,
    logs,
)
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.errors import error_for_code
from fibo_soap.models import VN_TZ, StatusDocument
from fibo_soap.operations import OPERATIONS, operation
from fibo_soap.testing import (
    REPLAY_ENDPOINT,
    canonical_request,
    cassette_config,
    mask_digits,
    register_matchers,
    seeded_guids,
)

CASSETTES = Path(__file__).resolve().parent.parent / "cassettes"
PROTOCOLS = ("soap11", "soap12", "get", "post")
OPERATION_CASSETTES = {protocol: f"operations-{protocol}" for protocol in PROTOCOLS}
CASSETTE_NAMES = {*OPERATION_CASSETTES.values(), "error-codes", "partial-rejection"}

CLIENT_NO = "CL0001"
#: The recording password spells differently in a query, a form, XML: each spelling must go.
RECORDING_PASSWORD = "Rec0rd&<p@ss>+%/ word"
#: The replay sends another password; the cassettes match on everything but the password.
REPLAY_PASSWORD = "replay-password-is-not-recorded"
SEED = 20090420
#: The emulator's clock stands still at this instant while recording (16:37 in Vietnam).
RECORDED_AT = datetime(2009, 4, 22, 9, 37, tzinfo=UTC)

PHONE = "0909128628"
PHONE_2 = "0937100759"
PHONE_3 = "0903636635"
PHONE_4 = "0903636636"
REFUSED = "0909120101"  # the emulator's magic number: code 101, or ListWrongPhoneNumber
INCOMING = "84913122005"
FIXTURE_PHONES = (PHONE, PHONE_2, PHONE_3, PHONE_4, REFUSED, INCOMING)
GUID_A = "acce8d19-2106-46f9-a2d1-8b7991f30232"
GUID_B = "62c55648-29fb-4765-9ec4-a591f0a2b29f"
GUID_C = "0b6fd1ee-3c0b-4b57-9c43-4bd0d0a9a3f1"
TEXT = 'Mã OTP của bạn là 123456 <&> ]]> "quoted" 😀'

pytestmark = pytest.mark.block_network  # in replay; recording (any other mode) needs the emulator


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(CASSETTES)


@pytest.fixture
def default_cassette_name(request: pytest.FixtureRequest) -> str:
    # test_operations[soap11] → operations-soap11.yaml
    name = request.node.name.removeprefix("test_").replace("_", "-")
    return name.replace("[", "-").replace("]", "")


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    return _config()


def _config() -> dict[str, Any]:
    return cassette_config(secrets=[RECORDING_PASSWORD], phones=True)


@dataclass
class Wire:
    """Where the test's requests go: an emulator while recording, nowhere while replaying."""

    emulator: Emulator | None

    @property
    def password(self) -> str:
        return RECORDING_PASSWORD if self.emulator else REPLAY_PASSWORD

    def client(self, protocol: str, *, client_no: str = CLIENT_NO) -> FiboClient:
        options: dict[str, Any] = {"retry": None}
        return FiboClient(
            client_no,
            self.password,
            endpoint=self.emulator.endpoint if self.emulator else REPLAY_ENDPOINT,
            protocol=protocol,
            service_type="1",
            guid_factory=seeded_guids(SEED),
            **options,
        )

    def setup(self, action: Callable[[Emulator], object]) -> None:
        """Arrange the emulator's state (nothing to arrange when the answers are recorded)."""
        if self.emulator is not None:
            action(self.emulator)


@pytest.fixture
def wire(record_mode: str) -> Iterator[Wire]:
    if record_mode == "none":
        yield Wire(None)
        return
    # The seeded account's sender names carry the real time; the recorded account is added once
    # the clock stands still, so that nothing in an answer depends on when it was recorded.
    with run_emulator(client_no="SEED0000", delivery_delay=0) as emulator:
        emulator.app.service.clock = StillClock(RECORDED_AT)
        emulator.add_account(CLIENT_NO, RECORDING_PASSWORD)
        yield Wire(emulator)


def _same_phone(actual: str | None, expected: str) -> bool:
    """A phone of an answer: as sent while recording, masked in the cassette."""
    return actual in (expected, mask_digits(expected))


def _cassette_methods(cassette: Any) -> set[str]:
    return {canonical_request(request)[2] for request in cassette.requests}


# --- every operation, per protocol -----------------------------------------------------------


@pytest.mark.vcr
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_operations(wire: Wire, vcr: Any, protocol: str) -> None:
    made = seeded_guids(SEED)  # the client's GUIDs, predicted
    recorded_at = RECORDED_AT.astimezone(VN_TZ)
    with wire.client(protocol) as client:
        assert client.about() == "www.Fibovietnam.com"
        assert client.check_client() == "Nguyen Van A"
        assert client.get_balance(2) == 500
        assert [(h.service_type_name, h.balance) for h in client.get_hosting_balances()] == [
            ("+841223100690", 1000),
            ("FiboSMS brand name", 500),
            ("Email (Free for testing)", 2870),
        ]

        wire.setup(lambda emu: emu.add_sender_name("BrandX", client_no=CLIENT_NO))
        senders = client.get_sender_names()
        assert [s.name for s in senders] == ["FiboSMS", "SenderName1", "BrandX"]
        assert {s.created for s in senders} == {recorded_at}

        sent = client.send_sms("0909 128 628", TEXT)
        assert (sent.guid, sent.code, sent.message) == (made(), 200, "Sending...")
        test = client.send_test_sms("+84 909 128 628", TEXT, guid=GUID_A)
        assert (test.guid, test.code) == (GUID_A, 200)
        masked = client.send_masked_sms("0909.128.628", TEXT, sender_name="FiboSMS")
        assert (masked.guid, masked.code) == (made(), 200)
        bulk = client.send_bulk_sms([Message(PHONE, TEXT), (PHONE_2, "second")])
        assert bulk == BulkReceipt(count=2, code=200, message="Sending...")
        to_list = client.send_to_list([PHONE_3, (PHONE_4, GUID_B)], TEXT)
        assert to_list == BatchReceipt(accepted=(made(), GUID_B), rejected=())
        multi = client.send_multi_message(
            [Message(PHONE_3, TEXT), Message(PHONE_4, "hai", GUID_C)], sender_name="FiboSMS"
        )
        assert multi == BatchReceipt(accepted=(made(), GUID_C), rejected=())

        statuses = client.get_sms_status([sent.guid, GUID_A, "unknown-guid"])
        assert {(row.guid, row.status) for row in statuses} == {
            (sent.guid, SmsStatus.SENT_SUCCESS),
            (GUID_A, SmsStatus.PENDING),  # the test channel never delivers
        }

        sent_list = client.get_sent_list(30)
        assert len(sent_list) == 9
        assert {row.created for row in sent_list} == {recorded_at}
        first = sent_list[0]
        assert (first.guid, first.message, first.status) == (
            sent.guid,
            TEXT,
            SmsStatus.SENT_SUCCESS,
        )
        assert _same_phone(first.phone, PHONE)

        page = client.get_sent_page(
            1,
            from_date=date(2009, 4, 20),
            to_date=date(2099, 4, 22),
            status=SmsStatus.SENT_SUCCESS,
            service_type=1,
            key="0909",
        )
        assert [row.guid for row in page] == [None, masked.guid, sent.guid]  # newest first
        assert all(_same_phone(row.phone, PHONE) for row in page)
        assert client.get_total_pages(key="0909") == 1

        wire.setup(
            lambda emu: emu.inject_incoming(
                INCOMING, "FIBO DEMODGN 50", service_type_id=229, client_no=CLIENT_NO
            )
        )
        [incoming] = client.get_incoming_list(15)
        assert (incoming.message, incoming.service_type_id) == ("FIBO DEMODGN 50", 229)
        assert _same_phone(incoming.phone, INCOMING)
        assert incoming.created == recorded_at
        [ranged] = client.get_incoming(date(2009, 4, 21), date(2009, 4, 23), key="DEMO")
        assert ranged.id == incoming.id
        assert ranged.sent == recorded_at

    assert _cassette_methods(vcr) == set(OPERATIONS)
    if wire.emulator is None:
        assert vcr.play_count == len(vcr), "every recorded request was sent again"


# --- FIBO's error codes and a partial rejection ----------------------------------------------


def _code(caught: pytest.ExceptionInfo[Any]) -> int | None:
    return getattr(caught.value, "code", None)


@pytest.mark.vcr
def test_error_codes(wire: Wire, vcr: Any) -> None:
    for protocol in PROTOCOLS:
        client = wire.client(protocol)
        stranger = wire.client(protocol, client_no="CL9999")
        with client, stranger:
            with pytest.raises(AuthenticationError) as caught:
                stranger.check_client()
            assert _code(caught) == 100

            with pytest.raises(InvalidPhoneNumberError) as caught:
                client.send_sms(REFUSED, "refused", guid=GUID_A)
            assert _code(caught) == 101

            wire.setup(lambda emu: emu.set_balance(0, client_no=CLIENT_NO))
            with pytest.raises(ZeroBalanceError) as caught:
                client.send_sms(PHONE, "no balance", guid=GUID_A)
            assert _code(caught) == 102

            wire.setup(lambda emu: emu.set_balance(1, client_no=CLIENT_NO))
            with pytest.raises(InsufficientBalanceError) as caught:
                client.send_bulk_sms([(PHONE, "one"), (PHONE_2, "two")])
            assert _code(caught) == 104
            wire.setup(lambda emu: emu.set_balance(1000, client_no=CLIENT_NO))

            with pytest.raises(InvalidServiceTypeError) as caught:
                client.send_sms(PHONE, "wrong type", guid=GUID_A, service_type=9)
            assert _code(caught) == 103
            with pytest.raises(InvalidServiceTypeError) as caught:
                client.get_balance(9)
            assert _code(caught) == -1

            assert client.get_incoming(date(2009, 1, 1), date(2009, 1, 2)) == []  # code 301

            if protocol.startswith("soap"):
                # Code 202 needs a request the facade never builds: zeep's proxy sends it raw.
                raw = client.service.GetSMSStatus(
                    clientNo=CLIENT_NO, clientPass=wire.password, smsList="not a document"
                )
                answer = codec.decode_result(operation("GetSMSStatus"), raw)
                assert isinstance(answer, StatusDocument)
                error = error_for_code(answer.code, answer.message, operation="GetSMSStatus")
                assert isinstance(error, GatewayError)
                assert error.code == 202

                wire.setup(
                    lambda emu, p=protocol: emu.fault(
                        "soap_fault", method="CheckClient", protocol=p, times=1
                    )
                )
                with pytest.raises(SoapFaultError) as fault:
                    client.check_client()
                assert fault.value.fault_code == "Server"
            else:
                wire.setup(
                    lambda emu, p=protocol: emu.fault(
                        "http_500", method="CheckClient", protocol=p, times=1
                    )
                )
                with pytest.raises(AsmxError):
                    client.check_client()
            assert client.check_client() == "Nguyen Van A"

    if wire.emulator is None:
        assert vcr.play_count == len(vcr)


@pytest.mark.vcr
def test_partial_rejection(wire: Wire, vcr: Any) -> None:
    for protocol in PROTOCOLS:
        made = seeded_guids(SEED)
        with wire.client(protocol) as client:
            receipt = client.send_to_list([PHONE, REFUSED, PHONE_2], TEXT)
            first, refused, third = made(), made(), made()
            assert receipt == BatchReceipt(accepted=(first, third), rejected=(refused,))

            receipt = client.send_multi_message(
                [Message(PHONE_3, "một", GUID_A), Message(REFUSED, "hai", GUID_B)],
                sender_name="FiboSMS",
            )
            assert receipt == BatchReceipt(accepted=(GUID_A,), rejected=(GUID_B,))

            receipt = client.send_to_list([(REFUSED, GUID_C)], "nobody")
            assert receipt == BatchReceipt(accepted=(), rejected=(GUID_C,))
        if wire.emulator is not None:
            assert wire.emulator.received(guid=refused, client_no=CLIENT_NO) == []

    if wire.emulator is None:
        assert vcr.play_count == len(vcr)


# --- a changed request does not replay -------------------------------------------------------


def _replay(cassette: str) -> Any:
    """The cassette as ``make test`` replays it, whatever ``--record-mode`` says."""
    recorder = vcrpy.VCR(cassette_library_dir=str(CASSETTES), record_mode="none")
    register_matchers(recorder)
    return recorder.use_cassette(f"{cassette}.yaml", **_config())


def _replay_client(protocol: str = "soap11", password: str = REPLAY_PASSWORD) -> FiboClient:
    options: dict[str, Any] = {"retry": None}
    return FiboClient(
        CLIENT_NO,
        password,
        endpoint=REPLAY_ENDPOINT,
        protocol=protocol,
        service_type="1",
        guid_factory=seeded_guids(SEED),
        **options,
    )


@pytest.mark.parametrize("password", [REPLAY_PASSWORD, RECORDING_PASSWORD, "x"])
@pytest.mark.parametrize("endpoint", [REPLAY_ENDPOINT, "http://center.fibosms.com/Service.asmx"])
def test_the_recorded_request_replays_with_any_password_and_endpoint(
    password: str, endpoint: str
) -> None:
    with (
        _replay("operations-soap11"),
        FiboClient(
            CLIENT_NO,
            password,
            endpoint=endpoint,
            service_type="1",
            guid_factory=seeded_guids(SEED),
        ) as client,
    ):
        receipt = client.send_sms("0909 128 628", TEXT)
    assert (receipt.guid, receipt.code) == (seeded_guids(SEED)(), 200)


#: A deliberate change to one request, and the parameter the mismatch names.
CHANGES: dict[str, tuple[str, Callable[[FiboClient], object], str]] = {
    "message text": ("soap11", lambda c: c.send_sms(PHONE, TEXT + "!"), "smsMessage"),
    "GUID": ("soap11", lambda c: c.send_sms(PHONE, TEXT, guid=GUID_B), "smsGUID"),
    "phone number": ("soap11", lambda c: c.send_sms("0909128629", TEXT), "phoneNumber"),
    "service type": ("soap11", lambda c: c.send_sms(PHONE, TEXT, service_type=2), "serviceType"),
    "request document": (
        "soap11",
        lambda c: c.send_bulk_sms([Message(PHONE, TEXT), (PHONE_2, "2nd")]),
        "smsList",
    ),
    "query field": ("get", lambda c: c.get_sent_list(31), "minutes"),
    "form field": ("post", lambda c: c.get_total_pages(key="0908"), "key"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_request_fails_the_replay(change: str) -> None:
    protocol, call, parameter = CHANGES[change]
    with (
        _replay(f"operations-{protocol}"),
        _replay_client(protocol) as client,
        pytest.raises(CannotOverwriteExistingCassetteException) as caught,
    ):
        call(client)
    # VCR.py names the closest recorded requests and the matchers they failed.
    message = str(caught.value)
    assert "fibo_body" in message
    assert f"{parameter}: sent" in message


def test_another_protocol_does_not_replay_a_soap11_cassette() -> None:
    with (
        _replay("operations-soap11"),
        _replay_client("soap12") as client,
        pytest.raises(CannotOverwriteExistingCassetteException) as caught,
    ):
        client.about()
    assert "fibo_action" in str(caught.value)
    assert "fibo_body" in str(caught.value)


def test_the_replay_runs_with_the_network_blocked() -> None:
    with pytest.raises(RuntimeError, match="Network is disabled"):
        socket.create_connection(("127.0.0.1", 1), timeout=1)


# --- what the cassettes hold ---------------------------------------------------------------


def _load(name: str) -> list[dict[str, Any]]:
    data = yaml.safe_load((CASSETTES / f"{name}.yaml").read_text("utf-8"))
    interactions: list[dict[str, Any]] = data["interactions"]
    return interactions


def _request(interaction: dict[str, Any]) -> Any:
    recorded = interaction["request"]
    return vcrpy.request.Request(
        recorded["method"], recorded["uri"], recorded["body"], recorded["headers"]
    )


def _strings(node: object) -> Iterator[str]:
    """Every string of a cassette, unfolded from YAML's line wrapping."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, bytes):
        yield node.decode("utf-8", "replace")
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _passwords(request: Any) -> list[str | None]:
    """The clientPass values a recorded request carries."""
    body = request.body or b""
    if request.method == "GET":
        fields = parse_qsl(urlsplit(request.uri).query, keep_blank_values=True)
    elif request.headers.get("Content-Type", "").startswith("application/x-www-form"):
        fields = parse_qsl(body.decode("ascii"), keep_blank_values=True)
    else:
        fields = list(codec.decode_soap_request(body).params.items())
    return [value for name, value in fields if name == "clientPass"]


def test_every_cassette_is_there() -> None:
    assert {path.stem for path in CASSETTES.glob("*.yaml")} == CASSETTE_NAMES
    assert list(CASSETTES.glob("*")) == list(CASSETTES.glob("*.yaml"))


def test_no_cassette_holds_the_password_or_a_fixture_phone() -> None:
    forbidden = {form: "the recording password" for form in logs.secret_forms(RECORDING_PASSWORD)}
    forbidden["Rec0rd"] = "part of the recording password"
    forbidden[REPLAY_PASSWORD] = "the replay password"
    for phone in FIXTURE_PHONES:
        national = phone if phone.startswith("0") else f"0{phone[2:]}"
        forbidden[national] = forbidden[f"84{national[1:]}"] = f"the phone number {phone}"
    for path in sorted(CASSETTES.glob("*.yaml")):
        raw = path.read_text("utf-8")
        texts = [raw, *_strings(yaml.safe_load(raw))]
        leaks = sorted({label for needle, label in forbidden.items() for t in texts if needle in t})
        assert not leaks, f"{path.name} holds {', '.join(leaks)}"


@pytest.mark.parametrize("name", sorted(CASSETTE_NAMES))
def test_every_recorded_password_is_the_placeholder(name: str) -> None:
    passwords = [value for i in _load(name) for value in _passwords(_request(i))]
    assert passwords
    assert set(passwords) == {"***"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_protocol_cassette_holds_every_operation(protocol: str) -> None:
    requests = [_request(i) for i in _load(OPERATION_CASSETTES[protocol])]
    kinds = {"soap11": "soap1.1", "soap12": "soap1.2", "get": "query", "post": "form"}
    assert {canonical_request(r)[0] for r in requests} == {kinds[protocol]}
    assert {canonical_request(r)[2] for r in requests} == set(OPERATIONS)
    hosts = {urlsplit(r.uri).netloc for r in requests}
    assert hosts == {"127.0.0.1:1"}, "recorded under the stable origin, not the emulator's port"


def test_the_error_cassette_holds_each_fibo_code() -> None:
    bodies = " ".join(i["response"]["body"]["string"] for i in _load("error-codes"))
    codes = {int(code) for code in re.findall(r"&lt;Code&gt;(\d+)&lt;/Code&gt;", bodies)}
    assert codes == {0, 100, 101, 102, 103, 104, 202, 301}
    statuses = {i["response"]["status"]["code"] for i in _load("error-codes")}
    assert statuses == {200, 500}


def test_the_partial_rejection_cassette_holds_rejected_guids() -> None:
    bodies = " ".join(i["response"]["body"]["string"] for i in _load("partial-rejection"))
    assert bodies.count("ListWrongPhoneNumber&gt;") == 2 * 3 * len(PROTOCOLS)
