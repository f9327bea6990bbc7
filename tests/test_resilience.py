"""Retries, fallback and send safety, each shown against the emulator's fault injection.

What is asserted comes from the emulator's side (what it received, what its store holds) as much
as from the client's: a send "stored exactly once" is counted in the store.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from fibo_soap.client import DEFAULT_PROTOCOLS, FiboClient, protocol_list
from fibo_soap.codec import decode_document
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.errors import (
    AmbiguousSendError,
    AsmxError,
    AuthenticationError,
    ConnectError,
    FiboError,
    HttpStatusError,
    InsufficientBalanceError,
    InvalidInputError,
    InvalidServiceTypeError,
    ProtocolError,
    ResponseTooLargeError,
    SoapFaultError,
    TimeoutError,
    TransportError,
    ZeroBalanceError,
)
from fibo_soap.models import BatchReceipt, Message, SendReceipt, StatusDocument
from fibo_soap.operations import MULTI_MESSAGE_DOCUMENT, PHONE_LIST_DOCUMENT
from fibo_soap.resilience import CONFIRMED_MESSAGE, Action, RetryPolicy, classify

#: Retries without waiting to speak of.
FAST = RetryPolicy(
    attempts=3, deadline=10.0, backoff_initial=0.001, backoff_max=0.005, jitter=0.001, settle=0.0
)

PHONE = "0909123628"
PHONES = ["0909123628", "0912345678", "0987654321", "0933111222", "0944555666"]
#: The emulator refuses numbers ending in 0101 (REFUSED_SUFFIX).
REFUSED = "0909120101"

SENDS = ("SendSMS", "SendMaskedSMS", "SendSMSToListMobilePhone", "SendSMSWithMultiMessage")


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


def client(emu: Emulator, **options: Any) -> FiboClient:
    options.setdefault("retry", FAST)
    options.setdefault("timeout", (2.0, 2.0))
    made: FiboClient = emu.client(**options)
    return made


def received(emu: Emulator, operation: str | None = None) -> list[Any]:
    return [r for r in emu.recorded if operation is None or r.operation == operation]


def events(logs: list[dict[str, Any]], name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        e
        for e in logs
        if e["event"] == name and all(e.get(key) == value for key, value in match.items())
    ]


def send(client_: FiboClient, operation: str, guids: list[str]) -> SendReceipt | BatchReceipt:
    """One send of ``operation`` carrying ``guids`` (one GUID for the single sends)."""
    if operation == "SendSMS":
        return client_.send_sms(PHONE, "hello", guid=guids[0])
    if operation == "SendMaskedSMS":
        return client_.send_masked_sms(PHONE, "hello", sender_name="FiboSMS", guid=guids[0])
    phones = (PHONES * (len(guids) // len(PHONES) + 1))[: len(guids)]
    if operation == "SendSMSToListMobilePhone":
        return client_.send_to_list(list(zip(phones, guids, strict=True)), "hello")
    return client_.send_multi_message(
        [Message(p, f"text {g}", g) for p, g in zip(phones, guids, strict=True)]
    )


def new_guids(operation: str, prefix: str, n: int = 3) -> list[str]:
    count = 1 if operation in ("SendSMS", "SendMaskedSMS") else n
    return [f"{prefix}-{operation}-{i}-{random.getrandbits(32):08x}" for i in range(count)]


def stored(emu: Emulator, guids: list[str]) -> dict[str, int]:
    counts = emu.store.count_by_guid(emu.client_no)
    return {g: counts.get(g, 0) for g in guids}


def accepted(receipt: SendReceipt | BatchReceipt) -> tuple[str, ...]:
    return (receipt.guid,) if isinstance(receipt, SendReceipt) else receipt.accepted


# --- the decision table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "maybe_ran", "action", "settle"),
    [
        (ConnectError("refused"), False, Action.RETRY, False),
        (TransportError("deadline", request_sent=False), False, Action.RETRY, False),
        (TimeoutError("read timeout"), True, Action.RETRY, True),
        (TransportError("reset after write"), True, Action.RETRY, False),
        (HttpStatusError("bad gateway", status=502), True, Action.RETRY, True),
        (HttpStatusError("unavailable", status=503), True, Action.RETRY, False),
        (HttpStatusError("internal", status=500), True, Action.RETRY, False),
        (HttpStatusError("too many", status=429), False, Action.RETRY, False),
        (HttpStatusError("not found", status=404), False, Action.FALLBACK, False),
        (HttpStatusError("unsupported", status=415), False, Action.FALLBACK, False),
        (SoapFaultError("server", fault_code="Server"), True, Action.RETRY, False),
        (SoapFaultError("client", fault_code="Client"), False, Action.FALLBACK, False),
        (AsmxError("Missing parameter: clientPass.", status=500), True, Action.RETRY, False),
        (ProtocolError("malformed inner XML"), True, Action.FALLBACK, False),
        (ProtocolError("not an envelope", status=200), True, Action.FALLBACK, False),
        (ProtocolError("not an envelope", status=415), False, Action.FALLBACK, False),
        (ProtocolError("not an envelope", status=500), True, Action.RETRY, False),
        (ResponseTooLargeError("too big"), True, Action.RAISE, False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, FiboError) else None,
)
def test_classify_decision_table(
    exc: FiboError, maybe_ran: bool, action: Action, settle: bool
) -> None:
    failure = classify(exc)
    assert (failure.maybe_ran, failure.action, failure.settle) == (maybe_ran, action, settle)


def test_retry_policy_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(backoff_initial=0.1, backoff_max=0.5, jitter=0.05)
    for _ in range(50):
        waits = [policy.backoff(n) for n in (1, 2, 3, 4)]
        assert 0.1 <= waits[0] <= 0.15
        assert 0.2 <= waits[1] <= 0.25
        assert 0.4 <= waits[2] <= 0.45
        assert waits[3] == 0.5
    assert RetryPolicy(jitter=0, backoff_initial=0.1).backoff(2) == 0.2


@pytest.mark.parametrize(
    "options",
    [
        {"attempts": 0},
        {"attempts": True},
        {"deadline": 0},
        {"backoff_initial": -1},
        {"jitter": -0.1},
        {"settle": -1},
    ],
)
def test_retry_policy_refuses_nonsense(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        RetryPolicy(**options)


# --- protocol lists -------------------------------------------------------------------------


def test_protocol_lists() -> None:
    assert protocol_list(None) == DEFAULT_PROTOCOLS == ("soap11", "get")
    assert protocol_list("soap12") == ("soap12",)
    assert protocol_list(" SOAP11 , get ") == ("soap11", "get")
    assert protocol_list(["soap11", "get", "post"]) == ("soap11", "post", "get")
    for bad in ("smtp", "", "get,get", []):
        with pytest.raises(InvalidInputError):
            protocol_list(bad)


def test_client_protocol_arguments(emu: Emulator) -> None:
    assert emu.client().protocols == ("soap11", "get")
    single = emu.client(protocol="get")
    assert (single.protocol, single.protocols) == ("get", ("get",))
    chain = emu.client(protocols=("soap12", "post"))
    assert (chain.protocol, chain.protocols) == ("soap12", ("soap12", "post"))
    assert chain.protocols == ("soap12", "post")
    with pytest.raises(InvalidInputError):
        emu.client(protocol="get", protocols=("post",))
    with pytest.raises(InvalidInputError):
        emu.client(retry=3)
    env = {
        "FIBO_CLIENT_NO": emu.client_no,
        "FIBO_CLIENT_PASS": emu.client_pass,
        "FIBO_ENDPOINT": emu.endpoint,
        "FIBO_PROTOCOL": "soap12,get",
    }
    assert FiboClient.from_env(env).protocols == ("soap12", "get")
    assert FiboClient.from_env(env, protocol="post").protocols == ("post",)


# --- reads ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "protocol"),
    [
        ("close_before", "soap11"),
        ("close_after", "soap11"),
        ("truncate", "soap11"),
        ("bad_inner_xml", None),  # not retried on one protocol: it falls back
        ("http_500", "soap11"),
        ("http_500", "get"),
        ("soap_fault", "soap12"),
        ("latency", "post"),
    ],
)
def test_read_heals_after_a_fault(emu: Emulator, kind: str, protocol: str | None) -> None:
    protocols = (protocol,) if protocol else ("soap11", "get")
    c = client(emu, protocols=protocols, timeout=(1.0, 0.2))
    emu.fault(kind, times=1, seconds=0.5)
    with capture_logs() as logs:
        assert c.check_client() == "Nguyen Van A"
    assert len(received(emu, "CheckClient")) == 2
    first, second = events(logs, "fibo.attempt", operation="CheckClient")
    assert first["outcome"] == "failed"
    assert first["next"] == ("fallback" if protocol is None else "retry")
    assert second["outcome"] == "ok"
    [call] = events(logs, "fibo.call", operation="CheckClient")
    assert (call["attempts"], call["outcome"]) == (2, "ok")


def test_read_gives_up_after_its_attempts(emu: Emulator) -> None:
    c = client(emu, protocols=("soap11",))
    emu.fault("http_500", method="CheckClient")
    with capture_logs() as logs, pytest.raises(HttpStatusError) as caught:
        c.check_client()
    assert len(received(emu, "CheckClient")) == 3
    assert [e["next"] for e in events(logs, "fibo.attempt")] == ["retry", "retry", "raise"]
    assert any("after 3 attempts over soap11" in note for note in caught.value.__notes__)
    [call] = events(logs, "fibo.call")
    assert (call["attempts"], call["outcome"], call["error"]) == (3, "failed", "HttpStatusError")


def test_backoff_waits_between_attempts(emu: Emulator) -> None:
    waits: list[float] = []
    policy = RetryPolicy(
        attempts=4,
        deadline=None,
        backoff_initial=0.01,
        backoff_max=0.025,
        jitter=0.004,
        sleep=waits.append,
    )
    c = client(emu, protocols=("get",), retry=policy)
    emu.fault("http_500", method="GetClientBalance", times=3)
    assert c.get_balance() > 0
    assert len(waits) == 3
    assert 0.01 <= waits[0] <= 0.014
    assert 0.02 <= waits[1] <= 0.024
    assert waits[2] == 0.025


def test_deadline_bounds_the_retries(emu: Emulator) -> None:
    policy = RetryPolicy(attempts=1000, deadline=0.3, backoff_initial=0.02, backoff_max=0.02)
    c = client(emu, protocols=("get",), retry=policy)
    emu.fault("http_500", method="About")
    started = time.monotonic()
    # The last attempt may be cut short by the deadline itself: a timeout rather than the 500.
    with pytest.raises((AsmxError, TimeoutError)):
        c.about()
    assert time.monotonic() - started < 0.6
    assert 3 <= len(received(emu, "About")) < 30


def test_deadline_cuts_a_request_in_flight(emu: Emulator) -> None:
    policy = RetryPolicy(attempts=5, deadline=0.3, backoff_initial=0.01)
    c = client(emu, protocols=("get",), retry=policy, timeout=(2.0, 5.0))
    emu.fault("latency", method="About", seconds=1.5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        c.about()
    assert time.monotonic() - started < 0.8
    assert len(received(emu, "About")) == 1


def test_retry_none_means_one_attempt(emu: Emulator) -> None:
    c = client(emu, protocols=("soap11",), retry=None)
    emu.fault("close_before", times=1)
    with pytest.raises(TransportError):
        c.check_client()
    assert len(received(emu, "CheckClient")) == 1
    assert c.check_client() == "Nguyen Van A"


def test_fibo_codes_are_answers_never_retried(emu: Emulator) -> None:
    wrong = FiboClient(emu.client_no, "not-it", endpoint=emu.endpoint, retry=FAST, service_type=1)
    with capture_logs() as logs, pytest.raises(AuthenticationError):
        wrong.check_client()
    with pytest.raises(AuthenticationError):
        wrong.send_sms(PHONE, "hello")
    assert len(received(emu)) == 2
    [call] = events(logs, "fibo.call")
    assert (call["fibo_code"], call["outcome"], call["attempts"]) == (100, "refused", 1)

    c = client(emu)
    with pytest.raises(InvalidServiceTypeError):
        c.send_sms(PHONE, "hello", service_type=9)  # 103
    answer = c._call("GetSMSSentList", {"minutes": "soon"})  # 202: FIBO's own error
    assert isinstance(answer, StatusDocument)
    assert answer.code == 202
    emu.set_balance(0, service_type=2)
    with pytest.raises(ZeroBalanceError):  # 102
        c.send_sms(PHONE, "hello", service_type=2)
    emu.set_balance(1, service_type=2)
    with pytest.raises(InsufficientBalanceError):  # 104
        c.send_to_list(PHONES[:2], "hello", service_type=2)
    assert len(received(emu)) == 6
    emu.set_balance(1_000_000, service_type=2)


# --- sends: certainly not sent, retried -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_send_refused_at_connect_is_retried_and_stored_once() -> None:
    port = _free_port()
    up = threading.Event()
    done = threading.Event()
    holder: list[Emulator] = []

    def serve_later() -> None:
        time.sleep(0.3)
        with run_emulator(port=port, client_pass="pw-later", delivery_delay=0) as late:
            holder.append(late)
            up.set()
            done.wait(10)

    thread = threading.Thread(target=serve_later, daemon=True)
    thread.start()
    policy = RetryPolicy(attempts=60, deadline=8.0, backoff_initial=0.02, backoff_max=0.05)
    c = FiboClient(
        "CL0001",
        "pw-later",
        endpoint=f"http://127.0.0.1:{port}/Service.asmx",
        protocols=("post",),
        retry=policy,
        service_type=1,
        timeout=(0.5, 2.0),
    )
    try:
        with capture_logs() as logs:
            receipt = c.send_bulk_sms([(PHONE, "bulk one"), (PHONES[1], "bulk two")])
        assert receipt.count == 2
        assert up.wait(5)  # the server may answer before run_emulator hands it over
        late = holder[0]
        assert [m.message for m in late.received()] == ["bulk one", "bulk two"]
        refused = events(logs, "fibo.attempt", error="ConnectError")
        assert refused
        assert all(e["maybe_sent"] is False and e["next"] == "retry" for e in refused)
    finally:
        done.set()
        thread.join(10)


# --- sends: uncertain, resolved through GetSMSStatus ----------------------------------------


@pytest.mark.parametrize("kind", ["close_after", "truncate", "bad_inner_xml"])
@pytest.mark.parametrize("operation", SENDS)
def test_uncertain_send_found_by_status_is_not_resent(
    emu: Emulator, operation: str, kind: str
) -> None:
    c = client(emu)
    guids = new_guids(operation, kind)
    emu.fault(kind, method=operation, times=1)
    with capture_logs() as logs:
        receipt = send(c, operation, guids)
    assert set(accepted(receipt)) == set(guids)
    if isinstance(receipt, SendReceipt):
        assert receipt.message == CONFIRMED_MESSAGE
    assert stored(emu, guids) == dict.fromkeys(guids, 1)
    assert len(received(emu, operation)) == 1
    assert len(received(emu, "GetSMSStatus")) == 1
    [reconcile] = events(logs, "fibo.reconcile")
    assert (reconcile["found"], reconcile["resend"]) == (len(guids), 0)


@pytest.mark.parametrize("kind", ["close_before", "http_500", "soap_fault"])
@pytest.mark.parametrize("operation", SENDS)
def test_uncertain_send_unknown_to_the_gateway_is_resent(
    emu: Emulator, operation: str, kind: str
) -> None:
    c = client(emu)
    guids = new_guids(operation, kind)
    emu.fault(kind, method=operation, times=1)
    receipt = send(c, operation, guids)
    assert set(accepted(receipt)) == set(guids)
    assert stored(emu, guids) == dict.fromkeys(guids, 1)
    sends = received(emu, operation)
    assert len(sends) == 2
    assert len(received(emu, "GetSMSStatus")) == 1


def test_timed_out_send_settles_before_the_lookup(emu: Emulator) -> None:
    policy = RetryPolicy(attempts=3, backoff_initial=0.001, settle=0.5)
    c = client(emu, protocols=("get",), retry=policy, timeout=(1.0, 0.1))
    emu.fault("latency", method="SendSMS", times=1, seconds=0.3)
    receipt = c.send_sms(PHONE, "slow", guid="settle-1")
    assert receipt.message == CONFIRMED_MESSAGE
    assert stored(emu, ["settle-1"]) == {"settle-1": 1}


def test_without_settle_a_slow_gateway_can_double_a_send(emu: Emulator) -> None:
    # Why ``settle`` exists: GetSMSStatus proves presence, but absence only once the server is
    # done with the request. Asked while the server still works on it, it answers "unknown".
    c = client(emu, protocols=("get",), timeout=(1.0, 0.1))  # FAST: settle=0
    emu.fault("latency", method="SendSMS", times=1, seconds=0.6)
    c.send_sms(PHONE, "slow", guid="settle-0")
    time.sleep(0.8)
    assert stored(emu, ["settle-0"]) == {"settle-0": 2}


def test_the_lookup_has_a_deadline_of_its_own(emu: Emulator) -> None:
    # The send's deadline (0.8 s) has passed when GetSMSStatus is asked (timeout 0.2 s, then
    # settle 0.7 s): the look-up is a call of its own and must not inherit it.
    policy = RetryPolicy(attempts=3, deadline=0.8, backoff_initial=0.001, settle=0.7)
    c = client(emu, protocols=("get",), retry=policy, timeout=(0.5, 0.2))
    emu.fault("latency", method="SendSMS", times=1, seconds=0.4)
    with capture_logs() as logs:
        receipt = c.send_sms(PHONE, "late", guid="own-deadline")
    assert receipt.message == CONFIRMED_MESSAGE
    lookups = events(logs, "fibo.attempt", operation="GetSMSStatus")
    assert [e["outcome"] for e in lookups] == ["ok"]
    assert stored(emu, ["own-deadline"]) == {"own-deadline": 1}


@pytest.mark.parametrize("operation", ["SendSMSToListMobilePhone", "SendSMSWithMultiMessage"])
def test_list_send_resends_only_what_the_gateway_does_not_know(
    emu: Emulator, operation: str
) -> None:
    c = client(emu)
    guids = new_guids(operation, "subset", 4)
    c.send_sms(PHONE, "sent before", guid=guids[0])  # the gateway already knows this one
    emu.app.recorded.clear()
    emu.fault("close_before", method=operation, times=1)
    with capture_logs() as logs:
        receipt = send(c, operation, guids)
    assert isinstance(receipt, BatchReceipt)
    assert receipt.accepted == tuple(guids)
    assert stored(emu, guids) == dict.fromkeys(guids, 1)
    first, resend = received(emu, operation)
    if operation == "SendSMSToListMobilePhone":
        name, shape = "listPhoneNumber", PHONE_LIST_DOCUMENT
    else:
        name, shape = "smsMessage", MULTI_MESSAGE_DOCUMENT

    def carried(request: Any) -> list[str | None]:
        return [row[1] for row in decode_document(shape, request.params[name])]

    assert carried(first) == guids
    assert carried(resend) == guids[1:]
    [reconcile] = events(logs, "fibo.reconcile")
    assert (reconcile["asked"], reconcile["found"], reconcile["resend"]) == (4, 1, 3)
    [call] = events(logs, "fibo.call", operation=operation)
    assert (call["confirmed"], call["resent"]) == (1, 3)


def test_list_send_with_a_refused_number_after_an_uncertain_attempt(emu: Emulator) -> None:
    c = client(emu)
    good = [f"wrong-{i}-{random.getrandbits(32):08x}" for i in range(2)]
    bad = f"wrong-bad-{random.getrandbits(32):08x}"
    emu.fault("close_after", method="SendSMSToListMobilePhone", times=1)
    with capture_logs() as logs:
        receipt = c.send_to_list([(PHONES[0], good[0]), (REFUSED, bad), (PHONES[1], good[1])], "x")
    assert receipt.accepted == tuple(good)
    assert receipt.rejected == (bad,)
    assert stored(emu, [*good, bad]) == {good[0]: 1, good[1]: 1, bad: 0}
    [reconcile] = events(logs, "fibo.reconcile")
    assert (reconcile["found"], reconcile["resend"]) == (2, 1)
    [call] = events(logs, "fibo.call", operation="SendSMSToListMobilePhone")
    assert (call["outcome"], call["confirmed"], call["resent"]) == ("partial", 2, 1)


def test_a_later_attempt_can_be_resolved_by_the_lookup(emu: Emulator) -> None:
    c = client(emu)
    emu.fault("close_before", method="SendSMS", times=1)  # attempt 1: not stored
    emu.fault("close_after", method="SendSMS", times=2)  # attempt 2: stored, answer lost
    receipt = c.send_sms(PHONE, "third time", guid="later")
    assert receipt.message == CONFIRMED_MESSAGE
    assert stored(emu, ["later"]) == {"later": 1}
    assert len(received(emu, "SendSMS")) == 2
    assert len(received(emu, "GetSMSStatus")) == 2


class _Scripted:
    """A protocol that plays back answers (result texts) or raises errors, in order."""

    def __init__(self, name: str, script: list[str | FiboError]) -> None:
        self.name = name
        self.script = script
        self.calls: list[tuple[str, dict[str, str]]] = []

    def call(self, op: Any, params: Any) -> str:
        self.calls.append((op.name, dict(params)))
        step = self.script.pop(0)
        if isinstance(step, FiboError):
            raise step
        return step

    def close(self) -> None:
        return None


def _caller(script: list[str | FiboError]) -> tuple[Any, _Scripted]:
    from fibo_soap.resilience import Caller

    proto = _Scripted("soap11", script)
    caller = Caller(
        [proto], client_no="C1", client_pass="secret-pw", policy=FAST, max_bytes=1_000_000
    )
    return caller, proto


def test_lookup_answered_with_a_fibo_code_makes_the_send_ambiguous() -> None:
    from fibo_soap.codec import encode_status
    from fibo_soap.operations import operation

    for code, found_nothing in ((202, False), (301, True)):
        caller, proto = _caller(
            [
                TransportError("reset"),
                encode_status(code, "no"),
                encode_status(200, "Sending..."),
            ]
        )
        params = {"phoneNumber": PHONE, "smsMessage": "m", "smsGUID": "g1", "serviceType": "1"}
        if found_nothing:  # 301: the gateway knows none of them, so the send goes again
            answer = caller.call(operation("SendSMS"), params, guids=("g1",))
            assert isinstance(answer, StatusDocument)
            assert answer.code == 200
            assert [name for name, _ in proto.calls] == ["SendSMS", "GetSMSStatus", "SendSMS"]
        else:
            with pytest.raises(AmbiguousSendError) as caught:
                caller.call(operation("SendSMS"), params, guids=("g1",))
            error = caught.value
            assert error.guids == error.unknown == ("g1",)
            assert (error.accepted, error.unsent) == ((), ())
            assert "GatewayError" in str(error)


def test_a_list_send_that_cannot_be_rebuilt_is_ambiguous() -> None:
    from fibo_soap.codec import encode_rows
    from fibo_soap.models import SmsStatus, SmsStatusRow
    from fibo_soap.operations import operation

    found = encode_rows(operation("GetSMSStatus"), [SmsStatusRow("g1", SmsStatus.PENDING, None)])
    caller, _ = _caller([TransportError("reset"), found])
    with pytest.raises(AmbiguousSendError) as caught:
        caller.call(
            operation("SendSMSWithMultiMessage"),
            {"senderName": "n/a", "smsMessage": "<Document/>", "serviceType": "1"},
            guids=("g1", "g2"),
        )
    error = caught.value
    # g1 was found; g2 was not, and was not sent again: certainly not taken, nothing unknown.
    assert (error.guids, error.accepted, error.unsent, error.unknown) == (
        ("g2",),
        ("g1",),
        ("g2",),
        (),
    )
    assert "cannot be rebuilt" in str(error)
    assert "secret-pw" not in repr(caller)


def test_an_ambiguous_resend_keeps_what_the_first_lookup_found_apart() -> None:
    # g1 is found after the first uncertain attempt; the resend of g2 and g3 is uncertain too,
    # and the second look-up cannot be made: g1 is taken, g2 and g3 unknown, none certainly not.
    from fibo_soap.codec import encode_rows
    from fibo_soap.models import SmsStatus, SmsStatusRow
    from fibo_soap.operations import operation

    found = encode_rows(operation("GetSMSStatus"), [SmsStatusRow("g1", SmsStatus.PENDING, None)])
    lookup_down = [TransportError("lookup reset") for _ in range(FAST.attempts)]
    caller, proto = _caller([TransportError("reset"), found, TransportError("reset"), *lookup_down])
    resent: list[tuple[str, ...]] = []

    def rebuild(pending: Sequence[str]) -> dict[str, str]:
        resent.append(tuple(pending))
        return {"senderName": "n/a", "smsMessage": f"<Document>{len(pending)}</Document>"}

    with pytest.raises(AmbiguousSendError) as caught:
        caller.call(
            operation("SendSMSWithMultiMessage"),
            {"senderName": "n/a", "smsMessage": "<Document/>", "serviceType": "1"},
            guids=("g1", "g2", "g3"),
            rebuild=rebuild,
        )
    error = caught.value
    assert resent == [("g2", "g3")]
    assert (error.accepted, error.guids, error.unknown, error.unsent) == (
        ("g1",),
        resent[0],
        resent[0],
        (),
    )
    assert [name for name, _ in proto.calls].count("GetSMSStatus") == 1 + FAST.attempts


def test_refusal_of_the_rest_after_part_was_taken_is_ambiguous(emu: Emulator) -> None:
    c = client(emu, service_type=2)
    guids = new_guids("SendSMSToListMobilePhone", "partial", 3)
    c.send_sms(PHONE, "sent before", guid=guids[0])
    emu.set_balance(1, service_type=2)  # not enough for the two left
    emu.fault("close_before", method="SendSMSToListMobilePhone", times=1)
    with pytest.raises(AmbiguousSendError) as caught:
        send(c, "SendSMSToListMobilePhone", guids)
    error = caught.value
    assert error.guids == tuple(guids[1:])
    assert "1 of 3 messages reached the gateway" in str(error)
    assert isinstance(error.__cause__, InsufficientBalanceError)
    counts = stored(emu, guids)
    assert counts == {guids[0]: 1, guids[1]: 0, guids[2]: 0}
    # What the error says taken and not taken is what the gateway holds.
    assert error.accepted == tuple(g for g in guids if counts[g] == 1)
    assert error.unsent == tuple(g for g in guids if counts[g] == 0)
    assert error.unknown == ()
    emu.set_balance(1_000_000, service_type=2)


def test_bulk_send_is_never_resent(emu: Emulator) -> None:
    c = client(emu)
    before = len(emu.received())
    emu.fault("close_after", method="SendBulkSMS", times=1)
    with capture_logs() as logs, pytest.raises(AmbiguousSendError) as caught:
        c.send_bulk_sms([(PHONE, "b1"), (PHONES[1], "b2"), (PHONES[2], "b3")])
    error = caught.value
    assert (error.guids, error.accepted, error.unsent) == ((), (), ())
    assert "3 message(s) may or may not have reached the gateway" in str(error)
    assert "carries no GUIDs" in str(error)
    assert isinstance(error.__cause__, TransportError)
    assert len(received(emu, "SendBulkSMS")) == 1
    assert received(emu, "GetSMSStatus") == []
    assert len(emu.received()) == before + 3  # it did go out, once
    [call] = events(logs, "fibo.call")
    assert (call["outcome"], call["error"]) == ("ambiguous", "AmbiguousSendError")


def test_bulk_send_certainly_not_sent_falls_back(emu: Emulator) -> None:
    # A 404 from the first protocol is a refusal of the request itself: safe to send elsewhere.
    broken = FiboClient(
        emu.client_no,
        emu.client_pass,
        endpoint=emu.endpoint,
        protocols=("post",),
        retry=FAST,
        service_type=1,
    )
    broken._caller.protocols[0].endpoint = emu.endpoint + "/nowhere"  # type: ignore[attr-defined]
    with pytest.raises(HttpStatusError):
        broken.send_bulk_sms([(PHONE, "never")])
    c = client(emu, protocols=("post", "get"))
    c._caller.protocols[0].endpoint = emu.endpoint + "/nowhere"  # type: ignore[attr-defined]
    with capture_logs() as logs:
        assert c.send_bulk_sms([(PHONE, "fell back")]).count == 1
    [first, second] = events(logs, "fibo.attempt", operation="SendBulkSMS")
    assert (first["http_status"], first["maybe_sent"], first["next"]) == (404, False, "fallback")
    assert (second["protocol"], second["outcome"]) == ("get", "ok")
    assert [m.message for m in emu.received()].count("fell back") == 1


def test_lookup_that_fails_makes_the_send_ambiguous(emu: Emulator) -> None:
    c = client(emu)
    emu.fault("close_after", method="SendSMS", times=1)
    emu.fault("http_500", method="GetSMSStatus")
    with pytest.raises(AmbiguousSendError) as caught:
        c.send_sms(PHONE, "hello", guid="lookup-down")
    assert caught.value.guids == caught.value.unknown == ("lookup-down",)
    assert (caught.value.accepted, caught.value.unsent) == ((), ())
    assert "GetSMSStatus could not tell" in str(caught.value)
    assert isinstance(caught.value.__cause__, TransportError)
    assert stored(emu, ["lookup-down"]) == {"lookup-down": 1}
    assert len(received(emu, "SendSMS")) == 1


def test_retry_none_makes_an_uncertain_send_ambiguous_at_once(emu: Emulator) -> None:
    c = client(emu, retry=None)
    emu.fault("close_before", method="SendSMS", times=1)
    with pytest.raises(AmbiguousSendError) as caught:
        c.send_sms(PHONE, "hello", guid="no-retry")
    assert caught.value.guids == caught.value.unknown == ("no-retry",)
    assert (caught.value.accepted, caught.value.unsent) == ((), ())
    assert "retries are off" in str(caught.value)
    assert received(emu, "GetSMSStatus") == []
    assert len(received(emu, "SendSMS")) == 1


def test_send_that_never_gets_through_raises_and_says_nothing_was_taken(emu: Emulator) -> None:
    c = client(emu, protocols=("soap11",))
    emu.fault("soap_fault", method="SendSMS")
    with pytest.raises(SoapFaultError) as caught:
        c.send_sms(PHONE, "hello", guid="never")
    notes = "\n".join(caught.value.__notes__)
    assert "after 3 attempts" in notes
    assert "the gateway took nothing" in notes
    assert stored(emu, ["never"]) == {"never": 0}


# --- fallback -------------------------------------------------------------------------------


def test_read_falls_back_to_the_next_protocol(emu: Emulator) -> None:
    c = client(emu)  # soap11, then get
    emu.fault("soap_fault", protocol="soap11")
    with capture_logs() as logs:
        assert c.get_balance() > 0
    attempts = events(logs, "fibo.attempt", operation="GetClientBalance")
    assert [(e["protocol"], e.get("next", "-")) for e in attempts] == [
        ("soap11", "retry"),
        ("soap11", "retry"),
        ("soap11", "fallback"),
        ("get", "-"),
    ]
    [call] = events(logs, "fibo.call")
    assert (call["protocol"], call["protocols"], call["attempts"]) == ("get", ["soap11", "get"], 4)


@pytest.mark.parametrize("operation", SENDS)
def test_send_falls_back_with_the_same_guids(emu: Emulator, operation: str) -> None:
    c = client(emu)
    guids = new_guids(operation, "fallback")
    emu.fault("http_500", method=operation, protocol="soap11")
    receipt = send(c, operation, guids)
    assert set(accepted(receipt)) == set(guids)
    assert stored(emu, guids) == dict.fromkeys(guids, 1)
    assert [r.protocol for r in received(emu, operation)] == ["soap11"] * 3 + ["get"]
    assert {m.protocol for g in guids for m in emu.received(guid=g)} == {"get"}


def test_a_long_get_goes_as_post(emu: Emulator) -> None:
    c = client(emu, protocols=("get",))
    with capture_logs() as logs:
        assert c.check_client() == "Nguyen Van A"
        guids = [f"long-{i}-{random.getrandbits(32):08x}" for i in range(60)]
        phones = [f"09091{i:05d}" for i in range(60)]
        receipt = c.send_to_list(list(zip(phones, guids, strict=True)), "a long batch")
    assert receipt.accepted == tuple(guids)
    [short] = received(emu, "CheckClient")
    [long] = received(emu, "SendSMSToListMobilePhone")
    assert (short.method, short.protocol) == ("GET", "get")
    assert (long.method, long.protocol) == ("POST", "post")
    [switch] = events(logs, "fibo.get_as_post")
    assert switch["operation"] == "SendSMSToListMobilePhone"
    assert switch["url_length"] > 2000
    [call] = events(logs, "fibo.call", operation="SendSMSToListMobilePhone")
    assert call["protocol"] == "post"


def test_post_is_preferred_to_get(emu: Emulator) -> None:
    c = client(emu, protocols=("soap12", "get", "post"))
    assert c.protocols == ("soap12", "post", "get")
    emu.fault("close_before", protocol="soap12")
    assert c.about() == "www.Fibovietnam.com"
    assert [r.protocol for r in received(emu)] == ["soap12"] * 3 + ["post"]


# --- the proof: thousands of sends, each GUID stored exactly once ---------------------------


Sender = Callable[[FiboClient, list[str]], SendReceipt | BatchReceipt]


@pytest.mark.parametrize("mode", ["close_after_always", "mixed_faults"])
def test_thousands_of_sends_each_guid_stored_exactly_once(mode: str) -> None:
    rng = random.Random(4)
    calls = 600
    with run_emulator(delivery_delay=0, record=1) as emu:
        emu.set_balance(1_000_000)
        clients = [client(emu), client(emu, protocols=("get",))]
        if mode == "close_after_always":
            for operation in SENDS:
                emu.fault("close_after", method=operation)
        kinds = [None, "close_after", "truncate", "bad_inner_xml"]
        kinds += ["close_before", "http_500", "soap_fault"]
        expected: list[str] = []
        results: list[bool] = []
        for i in range(calls):
            operation = SENDS[i % len(SENDS)]
            if mode == "mixed_faults":
                kind = rng.choice(kinds)
                if kind is not None:
                    emu.fault(kind, method=operation, times=1)
                if rng.random() < 0.1:
                    # Transient faults only: a malformed answer to a read is not retried on the
                    # same protocol, and the GET-only client has no other.
                    transient = ["close_before", "close_after", "truncate", "http_500"]
                    emu.fault(rng.choice(transient), method="GetSMSStatus", times=1)
            guids = [f"{mode}-{i}-{j}" for j in range(1 if i % 4 < 2 else 1 + i % 7)]
            receipt = send(clients[i % 2], operation, guids)
            results.append(set(accepted(receipt)) == set(guids))
            expected += guids
        counts = emu.store.count_by_guid(emu.client_no)
    assert all(results)
    assert len(expected) > 1000
    assert Counter(counts.values()) == Counter({1: len(expected)})
    assert counts == dict.fromkeys(expected, 1)
