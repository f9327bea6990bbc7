"""fibo_soap.campaign: send_many, the journal, resuming, reconciliation.

The plan's decisions are tested with a fake Gateway (no network: chunk sizes under a balance,
what each kind of failure means); everything else runs against the emulator over loopback: a
streamed campaign, rejections and local refusals, the balance running out (by our count and by
FIBO's 104), faults in the middle of a campaign, and crashes left in the journal at every point
of a chunk's life. The kill -9 test of a real process is in test_campaign_cli.py.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from fibo_soap.campaign import (
    Campaign,
    ClientGateway,
    CsvSource,
    Journal,
    JournalMismatchError,
    JournalState,
    Outcome,
    OutcomeState,
    Refusal,
    SendPlan,
    reconcile,
    send_many,
    summarize,
    template_fields,
)
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.errors import (
    AmbiguousSendError,
    AuthenticationError,
    ConnectError,
    FiboError,
    InsufficientBalanceError,
    InvalidInputError,
)
from fibo_soap.models import BatchReceipt, Message, SmsStatus, SmsStatusRow
from fibo_soap.resilience import RetryPolicy

pytestmark = pytest.mark.e2e

FAST = RetryPolicy(attempts=3, backoff_initial=0.005, backoff_max=0.02, jitter=0, settle=0.02)
CAMPAIGN = "6f1d7c52-3a43-4c55-9d7e-0c8b3f1e2a10"


def phone(i: int) -> str:
    """A valid mobile number for message i, never one of the emulator's magic numbers (last four
    digits 0101 or 00NN), so that every message is accepted and delivered."""
    number = f"0912{i:06d}"
    tail = number[-4:]
    return number if tail != "0101" and not tail.startswith("00") else f"{number[:-4]}5{tail[1:]}"


def messages(count: int, start: int = 0) -> Iterator[Message]:
    for i in range(start, start + count):
        yield Message(phone(i), f"Xin chào khách hàng {i}")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with run_emulator(delivery_delay=0, record=0) as emulator:
        yield emulator


@pytest.fixture
def fresh(emu: Emulator) -> Iterator[Emulator]:
    """The emulator with a large balance, no faults, and a new account per test (so that
    count_by_guid sees only this test's messages)."""
    client_no = f"T{uuid.uuid4().hex[:8].upper()}"
    emu.add_account(client_no, "campaign-secret")
    previous = emu.client_no
    emu.client_no, emu.client_pass = client_no, "campaign-secret"
    emu.set_balance(1_000_000)
    yield emu
    emu.faults.clear()
    emu.client_no = previous


def client_of(emu: Emulator, **options: object) -> object:
    options.setdefault("retry", FAST)
    options.setdefault("protocols", ("soap11", "get"))
    return emu.client(**options)


def stored(emu: Emulator) -> Counter[str]:
    return Counter(emu.store.count_by_guid(emu.client_no))


def journal_states(path: Path) -> dict[int, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT idx, state FROM message"))


# --- the plan alone (no network) -----------------------------------------------------------


class FakeGateway:
    """A Gateway that takes everything (minus ``reject``), recording each chunk."""

    def __init__(self, balance: int | None = None, reject: Sequence[str] = ()) -> None:
        self._balance = balance
        self.reject = set(reject)
        self.chunks: list[list[str]] = []
        self.taken: set[str] = set()
        self.lock = threading.Lock()
        self.fail: BaseException | None = None
        self.client_no = "FAKE"

    def balance(self) -> int | None:
        return self._balance

    def send(self, batch: Sequence[Message]) -> BatchReceipt:
        guids = [m.guid or "" for m in batch]
        with self.lock:
            self.chunks.append(guids)
            if self.fail is not None:
                raise self.fail
            accepted = [g for g in guids if g not in self.reject]
            self.taken.update(accepted)
        return BatchReceipt(tuple(accepted), tuple(g for g in guids if g in self.reject))

    def lookup(self, guids: Sequence[str]) -> list[SmsStatusRow]:
        return [SmsStatusRow(g, SmsStatus.SENT_SUCCESS, None) for g in guids if g in self.taken]


def test_guids_are_fixed_by_campaign_and_position() -> None:
    plan = SendPlan([], campaign_id=CAMPAIGN)
    assert plan.guid(7) == str(uuid.uuid5(uuid.UUID(CAMPAIGN), "7"))
    assert SendPlan([], campaign_id="spring-sale").guid(0) == SendPlan(
        [], campaign_id="spring-sale"
    ).guid(0)
    assert plan.guid(0) != SendPlan([], campaign_id=str(uuid.uuid4())).guid(0)


def test_a_chunk_never_outruns_the_balance() -> None:
    gateway = FakeGateway(balance=1234)
    sending = send_many(gateway, messages(3000), campaign_id=CAMPAIGN, concurrency=4)
    outcomes = list(sending)
    assert [len(c) for c in gateway.chunks] == [500, 500, 234]
    summary = sending.summary
    assert (summary.accepted, summary.not_sent, summary.stopped) == (1234, 1766, "balance")
    assert summary.balance == 0
    accepted = sorted(o.index for o in outcomes if o.state is OutcomeState.ACCEPTED)
    assert accepted == list(range(1234))
    not_sent = [o for o in outcomes if o.state is OutcomeState.NOT_SENT]
    assert {o.reason for o in not_sent} == {"not sent: the balance ran out"}


def test_rejected_numbers_leave_room_for_more() -> None:
    # FIBO charges nothing for a number it rejects; the plan spends what that leaves.
    plan = SendPlan([], campaign_id=CAMPAIGN)
    gateway = FakeGateway(balance=500, reject=[plan.guid(3)])
    summary = send_many(gateway, messages(501), campaign_id=CAMPAIGN).run()
    assert [len(c) for c in gateway.chunks] == [500, 1]
    assert (summary.accepted, summary.rejected, summary.not_sent) == (500, 1, 0)
    assert summary.complete


def test_the_input_is_read_as_the_sends_go() -> None:
    read = 0

    def source() -> Iterator[Message]:
        nonlocal read
        for message in messages(100_000):
            read += 1
            yield message

    sending = send_many(
        FakeGateway(), source(), campaign_id=CAMPAIGN, chunk_size=100, concurrency=4
    )
    first = next(sending)
    assert first.state is OutcomeState.ACCEPTED
    assert read <= 100 * (4 + 3)
    seen = 1
    for _ in sending:
        seen += 1
        # Never more than a few chunks read ahead of what has been yielded.
        assert read - seen <= 100 * (4 + 3)
    assert seen == 100_000


def test_every_entry_kind_gets_an_outcome() -> None:
    entries = [
        Message("0909128628", "hello"),
        ("0909128629", "hi"),
        ("0909128630", "hi", "my-own-guid"),
        Refusal("0909", "line 5: the template failed"),
        42,
        ("0909128631", None),
    ]
    outcomes = list(send_many(FakeGateway(), entries, campaign_id=CAMPAIGN))  # type: ignore[arg-type]
    by_index = {o.index: o for o in outcomes}
    assert [by_index[i].state for i in range(6)] == [
        OutcomeState.ACCEPTED,
        OutcomeState.ACCEPTED,
        OutcomeState.ACCEPTED,
        OutcomeState.REFUSED,
        OutcomeState.REFUSED,
        OutcomeState.REFUSED,
    ]
    assert by_index[2].guid == "my-own-guid"
    assert by_index[3].reason == "line 5: the template failed"
    assert summarize(outcomes).refused == 3


def test_an_ambiguous_chunk_is_looked_up_once_more() -> None:
    gateway = FakeGateway()
    plan = SendPlan([], campaign_id=CAMPAIGN)
    guids = [plan.guid(i) for i in range(4)]
    # The client confirmed guids 0 and 1; 2 is at the gateway after all, 3 is not.
    gateway.taken.update(guids[:3])
    gateway.fail = AmbiguousSendError("lost", guids=guids[2:])
    sending = send_many(gateway, messages(4), campaign_id=CAMPAIGN, settle=0)
    states = {o.index: o.state for o in sending}
    assert states == {
        0: OutcomeState.ACCEPTED,
        1: OutcomeState.ACCEPTED,
        2: OutcomeState.ACCEPTED,
        3: OutcomeState.NOT_SENT,
    }
    assert sending.summary.stopped == "error"


def test_what_the_client_settled_needs_no_second_look_up() -> None:
    # The client found guid 0 and showed the others absent before FIBO refused them (104): the
    # campaign records that as it is, without waiting to ask again.
    gateway = FakeGateway()
    plan = SendPlan([], campaign_id=CAMPAIGN)
    guids = [plan.guid(i) for i in range(4)]
    refusal = InsufficientBalanceError("over", code=104)
    error = AmbiguousSendError("1 of 4", guids=guids[1:], accepted=guids[:1], unsent=guids[1:])
    error.__cause__ = refusal
    gateway.fail = error
    asked: list[Sequence[str]] = []

    def lookup(wanted: Sequence[str]) -> list[SmsStatusRow]:
        asked.append(wanted)
        raise ConnectError("not needed")

    gateway.lookup = lookup  # type: ignore[method-assign]
    slept: list[float] = []
    sending = send_many(gateway, messages(4), campaign_id=CAMPAIGN, settle=2, sleep=slept.append)
    outcomes = {o.index: o for o in sending}
    assert (asked, slept) == ([], [])
    assert {i: (o.state, o.code) for i, o in outcomes.items()} == {
        0: (OutcomeState.ACCEPTED, 200),
        **{i: (OutcomeState.NOT_SENT, refusal.code) for i in range(1, 4)},
    }
    assert sending.summary.stopped == "balance"


def test_an_ambiguous_chunk_stays_ambiguous_when_the_look_up_fails() -> None:
    gateway = FakeGateway()
    gateway.fail = AmbiguousSendError("lost", guids=[SendPlan([], campaign_id=CAMPAIGN).guid(0)])

    def no_lookup(guids: Sequence[str]) -> list[SmsStatusRow]:
        raise ConnectError("down")

    gateway.lookup = no_lookup  # type: ignore[method-assign]
    outcomes = list(send_many(gateway, messages(1), campaign_id=CAMPAIGN, settle=0))
    assert [o.state for o in outcomes] == [OutcomeState.AMBIGUOUS]


def test_a_refusal_of_fibo_stops_the_campaign_with_exact_accounting() -> None:
    gateway = FakeGateway()
    gateway.fail = AuthenticationError("no", code=100)
    sending = send_many(gateway, messages(2000), campaign_id=CAMPAIGN, concurrency=1)
    outcomes = list(sending)
    assert len(outcomes) == 2000
    assert {o.state for o in outcomes} == {OutcomeState.NOT_SENT}
    assert len(gateway.chunks) == 1
    assert isinstance(sending.summary.error, AuthenticationError)
    assert outcomes[0].code == 100


def test_a_bug_in_the_gateway_leaves_the_chunk_ambiguous() -> None:
    gateway = FakeGateway()
    gateway.fail = RuntimeError("boom")
    outcomes = list(send_many(gateway, messages(10), campaign_id=CAMPAIGN))
    assert {o.state for o in outcomes} == {OutcomeState.AMBIGUOUS}


def test_options_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="chunk_size"):
        send_many(FakeGateway(), [], chunk_size=0)
    with pytest.raises(InvalidInputError, match="concurrency"):
        send_many(FakeGateway(), [], concurrency=0)
    with pytest.raises(InvalidInputError, match="settle"):
        send_many(FakeGateway(), [], settle=-1)


# --- against the emulator ------------------------------------------------------------------


def test_send_many_end_to_end(fresh: Emulator, tmp_path: Path) -> None:
    client = client_of(fresh)
    entries: list[Message | Refusal] = list(messages(2400))
    entries[10] = Message("0912000101", "rejected by the gateway")  # the emulator's 0101
    entries[11] = Message("12", "not a phone number")
    entries[12] = Message(phone(12), "x" * 2000)  # more than five parts
    entries[13] = Refusal("0909", "line 15: the template failed")
    journal = tmp_path / "c.db"
    sending = send_many(client, entries, journal=journal, chunk_size=500, concurrency=4)  # type: ignore[arg-type]
    outcomes = {o.index: o for o in sending}
    summary = sending.summary
    assert (summary.accepted, summary.rejected, summary.refused) == (2396, 1, 3)
    assert summary.complete
    assert summary.requests >= 5
    assert outcomes[10].state is OutcomeState.REJECTED
    assert outcomes[11].state is OutcomeState.REFUSED
    assert "too short" in (outcomes[11].reason or "")
    assert outcomes[12].state is OutcomeState.REFUSED
    assert "parts" in (outcomes[12].reason or "")
    # Every accepted message is at the gateway exactly once, under the campaign's GUID.
    at_gateway = stored(fresh)
    accepted = {o.guid for o in outcomes.values() if o.state is OutcomeState.ACCEPTED}
    assert set(at_gateway) == accepted
    assert set(at_gateway.values()) == {1}
    [row] = fresh.received(guid=outcomes[5].guid)
    assert (row.phone, row.message, row.operation) == (
        phone(5),
        "Xin chào khách hàng 5",
        "SendSMSWithMultiMessage",
    )
    states = Counter(journal_states(journal).values())
    assert states == {"accepted": 2396, "rejected": 1, "refused": 3}
    # The journal knows the campaign: the GUIDs follow from its id.
    with Journal(journal) as book:
        campaign_id = book.meta()["campaign_id"]
    assert outcomes[0].guid == str(uuid.uuid5(uuid.UUID(campaign_id), "0"))


def test_a_guid_the_client_refuses_is_refused_alone(fresh: Emulator, tmp_path: Path) -> None:
    client = client_of(fresh)
    entries: list[object] = [Message(phone(i), f"hi {i}", f"order-{i}") for i in range(30)]
    given: dict[int, object] = {12: "order-12 ", 25: "\torder-25", 27: 27}  # CHAR(n) padding...
    refused: dict[int, str] = {}
    for i, guid in given.items():
        entries[i] = (phone(i), f"hi {i}", guid)
        with pytest.raises(InvalidInputError) as caught:
            client.send_sms(phone(i), f"hi {i}", guid=guid)  # type: ignore[attr-defined]
        refused[i] = caught.value.detail
    journal = tmp_path / "c.db"
    for run in range(2):
        sending = send_many(client, entries, journal=journal, chunk_size=10, concurrency=1)  # type: ignore[arg-type]
        outcomes = {o.index: o for o in sending}
        summary = sending.summary
        assert (summary.stopped, summary.complete) == (None, True), summary.error
        assert {i: o.reason for i, o in outcomes.items() if o.state is OutcomeState.REFUSED} == (
            refused
        )
        assert (summary.accepted, summary.resumed) == (30 - len(given), 30 * run)
    assert stored(fresh) == Counter({f"order-{i}": 1 for i in range(30) if i not in given})


def test_rerunning_a_finished_campaign_sends_nothing(fresh: Emulator, tmp_path: Path) -> None:
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    send_many(client, messages(1200), journal=journal).run()  # type: ignore[arg-type]
    again = send_many(client, messages(1200), journal=journal)  # type: ignore[arg-type]
    summary = again.run()
    assert (summary.accepted, summary.resumed, summary.requests) == (1200, 1200, 0)
    assert set(stored(fresh).values()) == {1}
    assert len(stored(fresh)) == 1200


def test_the_balance_runs_out(fresh: Emulator, tmp_path: Path) -> None:
    fresh.set_balance(1234)
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    sending = send_many(client, messages(3000), journal=journal, concurrency=4)  # type: ignore[arg-type]
    summary = sending.run()
    assert (summary.accepted, summary.not_sent, summary.stopped) == (1234, 1766, "balance")
    assert fresh.balance(1) == 0
    # The journal says exactly which went and which did not; the gateway agrees.
    states = journal_states(journal)
    assert {i for i, s in states.items() if s == "accepted"} == set(range(1234))
    assert {i for i, s in states.items() if s == "not_sent"} == set(range(1234, 3000))
    assert len(stored(fresh)) == 1234
    # Topped up, the same campaign sends the rest, and nothing twice.
    fresh.set_balance(5000)
    summary = send_many(client, messages(3000), journal=journal).run()  # type: ignore[arg-type]
    assert (summary.accepted, summary.resumed, summary.not_sent) == (3000, 1234, 0)
    at_gateway = stored(fresh)
    assert len(at_gateway) == 3000
    assert set(at_gateway.values()) == {1}
    assert fresh.balance(1) == 5000 - 1766


def test_fibo_104_stops_cleanly(fresh: Emulator, tmp_path: Path) -> None:
    # Without the balance read first, FIBO's own 104 (a chunk larger than the balance is
    # refused whole) stops the campaign; chunks in flight finish and are counted exactly.
    fresh.set_balance(1200)
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    sending = send_many(
        client,  # type: ignore[arg-type]
        messages(4000),
        journal=journal,
        concurrency=4,
        check_balance=False,
    )
    outcomes = list(sending)
    summary = sending.summary
    assert summary.stopped == "balance"
    assert isinstance(summary.error, InsufficientBalanceError)
    assert summary.accepted == 1000
    assert fresh.balance(1) == 200
    accepted = {o.guid for o in outcomes if o.state is OutcomeState.ACCEPTED}
    assert set(stored(fresh)) == accepted
    refused_whole = [o for o in outcomes if o.code == 104]
    assert len(refused_whole) >= 500
    states = Counter(journal_states(journal).values())
    assert states == {"accepted": 1000, "not_sent": 3000}


@pytest.mark.parametrize(
    ("kind", "protocol", "times"),
    [
        ("close_after", "*", 3),  # stored, then the connection dies: found by GetSMSStatus
        ("truncate", "*", 2),
        ("http_500", "*", 4),
        ("http_500", "soap11", None),  # the SOAP endpoint dies for good: GET takes over
    ],
)
def test_faults_mid_campaign_change_nothing(
    fresh: Emulator, tmp_path: Path, kind: str, protocol: str, times: int | None
) -> None:
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    sending = send_many(
        client,  # type: ignore[arg-type]
        messages(3000),
        journal=journal,
        chunk_size=250,
        concurrency=4,
        settle=0.02,
    )
    outcomes: list[Outcome] = []
    for outcome in sending:
        outcomes.append(outcome)
        if len(outcomes) == 500:
            fresh.fault(kind, method="SendSMSWithMultiMessage", protocol=protocol, times=times)
    summary = sending.summary
    if times is not None:
        assert not fresh.faults.rules(), "the fault did not fire as often as set"
    fresh.faults.clear()
    if not summary.complete:  # a chunk the client could not settle: the rerun does
        summary = send_many(client, messages(3000), journal=journal, settle=0.02).run()  # type: ignore[arg-type]
    assert summary.complete
    assert summary.accepted == 3000
    at_gateway = stored(fresh)
    assert len(at_gateway) == 3000
    assert set(at_gateway.values()) == {1}
    if protocol == "soap11":
        protocols = Counter(r.protocol for r in fresh.received(client_no=fresh.client_no))
        assert protocols["soap11"] >= 500
        assert protocols["post"] >= 1000  # GET, as a POST form: a chunk makes a long URL
    report = reconcile(journal, client)  # type: ignore[arg-type]
    assert report.all_final
    assert report.states[JournalState.DELIVERED] == 3000


class CrashingGateway(ClientGateway):
    """A ClientGateway whose process "dies" on the ``at``-th chunk: before the request goes
    out, or after the gateway took it but before the answer is recorded."""

    class Crash(BaseException):
        pass

    def __init__(self, client: object, at: int, after: bool) -> None:
        super().__init__(client)  # type: ignore[arg-type]
        self.at, self.after, self.count = at, after, 0
        self.client_no = self.client.client_no

    def send(self, messages: Sequence[Message]) -> BatchReceipt:
        self.count += 1
        if self.count == self.at and not self.after:
            raise self.Crash
        receipt = super().send(messages)
        if self.count == self.at:
            raise self.Crash
        return receipt


@pytest.mark.parametrize("after", [False, True], ids=["before-the-request", "after-the-gateway"])
def test_a_crash_in_the_middle_of_a_chunk(fresh: Emulator, tmp_path: Path, after: bool) -> None:
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    gateway = CrashingGateway(client, at=3, after=after)
    with pytest.raises(CrashingGateway.Crash):
        for _ in send_many(gateway, messages(2000), journal=journal, concurrency=1):
            pass
    states = journal_states(journal)
    assert Counter(states.values())["submitted"] == 500  # the chunk the process died in
    summary = send_many(client, messages(2000), journal=journal, settle=0).run()  # type: ignore[arg-type]
    assert summary.complete
    assert summary.accepted == 2000
    at_gateway = stored(fresh)
    assert len(at_gateway) == 2000
    assert set(at_gateway.values()) == {1}
    with sqlite3.connect(journal) as conn:
        rows = dict(
            conn.execute("SELECT idx, attempts FROM message WHERE idx BETWEEN 1000 AND 1499")
        )
    # Found at the gateway, it was not sent again; absent, it went once more.
    assert set(rows.values()) == ({1} if after else {2})


def test_a_journal_whose_outcomes_were_lost_is_resolved(fresh: Emulator, tmp_path: Path) -> None:
    # Rows written as submitted but whose answers never reached the journal, whatever their
    # fate: those at the gateway are found and never resent; those not, are sent once.
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    send_many(client, messages(1000), journal=journal).run()  # type: ignore[arg-type]
    with Journal(journal) as book:
        campaign_id = book.meta()["campaign_id"]
        plan = SendPlan(messages(1500), campaign_id=campaign_id, journal=book)
        chunks: list[object] = []
        while not chunks:  # 1000..1499 are submitted in the journal, and never sent
            chunks = list(plan.advance(1))
            plan.ready.clear()
    with sqlite3.connect(journal) as conn:
        conn.execute("UPDATE message SET state = 'submitted' WHERE idx < 300")
        conn.execute("UPDATE message SET state = 'ambiguous' WHERE idx BETWEEN 300 AND 399")
    summary = send_many(client, messages(1500), journal=journal, settle=0).run()  # type: ignore[arg-type]
    assert summary.complete
    assert summary.accepted == 1500
    assert summary.resumed == 1000
    at_gateway = stored(fresh)
    assert len(at_gateway) == 1500
    assert set(at_gateway.values()) == {1}


def test_reconcile_leaves_a_running_campaign_alone(fresh: Emulator, tmp_path: Path) -> None:
    # While a run holds the campaign, its submitted rows may be in flight: a look-up could race
    # the request and call "absent" what the gateway is about to store. Status leaves them.
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    with Journal(journal) as book:
        book.bind(client_no=fresh.client_no)
        plan = SendPlan(messages(500), campaign_id=book.meta()["campaign_id"], journal=book)
        assert len(plan.advance(1)) == 1  # submitted, as if its request were out now
        book.lock()
        report = reconcile(journal, client, settle=0)  # type: ignore[arg-type]
        assert report.in_use
        assert report.states[JournalState.SUBMITTED] == 500
        assert report.asked == 0
    report = reconcile(journal, client, settle=0)  # type: ignore[arg-type]
    assert not report.in_use
    assert (report.absent, report.states[JournalState.QUEUED]) == (500, 500)
    summary = send_many(client, messages(500), journal=journal).run()  # type: ignore[arg-type]
    assert summary.accepted == 500
    assert set(stored(fresh).values()) == {1}


def test_reconcile_lets_go_of_the_campaign_when_a_look_up_fails(
    fresh: Emulator, tmp_path: Path
) -> None:
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    send_many(client, messages(300), journal=journal).run()  # type: ignore[arg-type]
    with sqlite3.connect(journal) as conn:
        conn.execute("UPDATE message SET state = 'submitted', updated = 0")
    fresh.fault("http_500", method="GetSMSStatus")
    with pytest.raises(FiboError):
        reconcile(journal, client, settle=0)  # type: ignore[arg-type]
    # At once, while the failure is still held: the campaign is free, nothing was decided.
    with Journal(journal) as book:
        book.lock()
    assert Counter(journal_states(journal).values()) == {"submitted": 300}


def test_closing_early_records_what_flew(fresh: Emulator, tmp_path: Path) -> None:
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    with send_many(client, messages(3000), journal=journal, concurrency=4) as sending:  # type: ignore[arg-type]
        next(sending)
    assert "submitted" not in set(journal_states(journal).values())
    summary = send_many(client, messages(3000), journal=journal).run()  # type: ignore[arg-type]
    assert summary.complete
    assert len(stored(fresh)) == 3000
    assert set(stored(fresh).values()) == {1}


def test_the_journal_guards_its_campaign(fresh: Emulator, tmp_path: Path) -> None:
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    send_many(client, messages(600), journal=journal, campaign_id="spring").run()  # type: ignore[arg-type]
    with pytest.raises(JournalMismatchError, match="another input"):
        send_many(client, messages(600, start=1), journal=journal).run()  # type: ignore[arg-type]
    with pytest.raises(JournalMismatchError, match="campaign"):
        send_many(client, messages(600), journal=journal, campaign_id="autumn")  # type: ignore[arg-type]
    with Journal(journal) as book:
        with pytest.raises(JournalMismatchError, match="account"):
            book.bind(client_no="SOMEONE-ELSE")
        with pytest.raises(JournalMismatchError, match="SendSMSWithMultiMessage"):
            book.bind(client_no=fresh.client_no, bulk=True)
        book.lock()
        with pytest.raises(JournalMismatchError, match="in use"):
            send_many(client, messages(600), journal=journal)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="no such journal"):
        Journal(tmp_path / "missing.db", create=False)
    (tmp_path / "junk.db").write_text("not sqlite" * 100)
    with pytest.raises(InvalidInputError, match="not a campaign journal"):
        Journal(tmp_path / "junk.db")


def test_bulk_campaigns_use_sendbulksms(fresh: Emulator, tmp_path: Path) -> None:
    client = client_of(fresh)
    journal = tmp_path / "c.db"
    summary = send_many(client, messages(700), journal=journal, bulk=True).run()  # type: ignore[arg-type]
    assert summary.accepted == 700
    rows = fresh.received(client_no=fresh.client_no)
    assert len(rows) == 700
    assert {r.operation for r in rows} == {"SendBulkSMS"}
    assert {r.guid for r in rows} == {None}
    report = reconcile(journal, client)  # type: ignore[arg-type]
    assert report.asked == 0  # SendBulkSMS carries no GUIDs: nothing to ask about
    assert report.states[JournalState.ACCEPTED] == 700


def test_reconcile_reports_delivery(tmp_path: Path) -> None:
    with run_emulator(delivery_delay=10, record=0) as slow:
        client = client_of(slow)
        batch = [Message(phone(i), "hi") for i in range(1, 6)]
        batch += [Message("0912340003", "fails"), Message("0912340010", "spam")]
        journal = tmp_path / "c.db"
        send_many(client, batch, journal=journal).run()  # type: ignore[arg-type]
        report = reconcile(journal, client)  # type: ignore[arg-type]
        assert report.statuses == {SmsStatus.PENDING: 7}
        assert not report.all_final
        slow.advance(10)
        seen: list[int] = []
        report = reconcile(journal, client, progress=seen.append, batch_size=3)  # type: ignore[arg-type]
    assert seen == [3, 3, 1]
    assert report.statuses == {
        SmsStatus.SENT_SUCCESS: 5,
        SmsStatus.SENT_FAILED: 1,
        SmsStatus.SPAM_SMS: 1,
    }
    assert report.states[JournalState.DELIVERED] == 5
    assert report.states[JournalState.FAILED] == 2
    assert report.all_final
    document = report.as_dict()
    assert document["statuses"] == {"SentSuccess": 5, "SentFailed": 1, "SpamSMS": 1}
    out = io.StringIO()
    with Journal(journal) as book:
        assert book.export_csv(out) == 7
    lines = out.getvalue().splitlines()
    assert (
        lines[0] == "row,guid,phone,state,sms_status,sms_status_name,code,reason,attempts,updated"
    )
    assert ",0912340003,failed,3,SentFailed,200,,1," in lines[6]


# --- CSV sources ---------------------------------------------------------------------------


def test_csv_source_renders_the_template(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "\ufeffPhone,name,amount\n0909128628,An,100\n\n0909128629,Bình\n,Chi,3\n0909128630,Dũng,4\n",
        encoding="utf-8",
    )
    source = CsvSource.open(path, template="Xin chào {name}, {amount}đ")
    assert source.phone_column == "Phone"
    got = list(source.messages())
    assert got[0] == Message("0909128628", "Xin chào An, 100đ")
    assert isinstance(got[1], Refusal)
    assert "2 cells" in got[1].reason
    assert isinstance(got[2], Refusal)
    assert "no phone" in got[2].reason
    assert got[3] == Message("0909128630", "Xin chào Dũng, 4đ")
    assert source.estimate_rows() == 5
    bad_format = CsvSource.open(path, template="{amount:d}")
    assert all(isinstance(m, Refusal) for m in bad_format.messages())


def test_csv_source_checks_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("msisdn,message\n0909128628,hi\n", encoding="utf-8")
    assert list(CsvSource.open(path).messages()) == [Message("0909128628", "hi")]
    with pytest.raises(InvalidInputError, match="not a column"):
        CsvSource.open(path, template="Hi {name}")
    with pytest.raises(InvalidInputError, match="no column 'tel'"):
        CsvSource.open(path, phone_column="tel")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InvalidInputError, match="empty"):
        CsvSource.open(tmp_path / "empty.csv")
    with pytest.raises(InvalidInputError, match="no such file"):
        CsvSource.open(tmp_path / "missing.csv")
    for template, problem in [
        ("Hi {}", "positional"),
        ("Hi {0}", "positional"),
        ("Hi {name.upper}", "plain column"),
        ("Hi {name", "not valid"),
    ]:
        with pytest.raises(InvalidInputError, match=problem):
            template_fields(template)


def _csv_rows(count: int) -> list[str]:
    return [f"{phone(i)},hi {i}\n" for i in range(count)]


def _write_rows(path: Path, rows: list[str]) -> Path:
    path.write_text("phone,text\n" + "".join(rows), encoding="utf-8")
    return path


def test_records_that_are_not_valid_csv_are_refused_and_the_rest_go_out(
    fresh: Emulator, tmp_path: Path
) -> None:
    limit = csv.field_size_limit()
    rows = _csv_rows(20)
    rows[5] = f"{phone(5)},{'x' * (limit + 1)}\n"  # a cell beyond the csv module's limit
    rows[9] = f'{phone(9)},"hi" 9\n'  # more after a closing quote
    source = CsvSource.open(_write_rows(tmp_path / "c.csv", rows))
    got = list(source.messages())
    refusals = {i: m.reason for i, m in enumerate(got) if isinstance(m, Refusal)}
    # Line numbers count the header: row i is on line i + 2.
    assert sorted(refusals) == [5, 9]
    assert refusals[5].startswith("line 7: not valid CSV (")
    assert str(limit) in refusals[5]
    assert refusals[9].startswith("line 11: not valid CSV (")
    assert [m for m in got if not isinstance(m, Refusal)] == [
        Message(phone(i), f"hi {i}") for i in range(20) if i not in refusals
    ]
    client = client_of(fresh)
    for run in range(2):
        campaign, resumed = Campaign.create(
            tmp_path / "c.db", source, client_no=fresh.client_no, chunk_size=3
        )
        summary = campaign.send(client).run()  # type: ignore[arg-type]
        campaign.close()
        assert (summary.accepted, summary.refused, summary.complete) == (18, 2, True)
        assert (resumed, summary.resumed) == (run == 1, 20 * run)
    assert len(stored(fresh)) == 18


def test_a_row_with_more_cells_than_the_header_is_refused_not_cut(tmp_path: Path) -> None:
    # An unquoted comma in a text makes one cell more: the header's cells alone would send the
    # text cut at the comma. Empty cells after them (a trailing comma) cut nothing.
    rows = _csv_rows(6)
    rows[2] = f"{phone(2)},Hello, your code is 1234\n"
    rows[4] = f"{phone(4)},hi 4,\n"
    # And one cell fewer: a row without its text.
    rows[5] = f"{phone(5)}\n"
    got = list(CsvSource.open(_write_rows(tmp_path / "c.csv", rows)).messages())
    refused = [m for m in got if isinstance(m, Refusal)]
    assert [r.phone for r in refused] == [phone(2), phone(5)]
    assert refused[0].reason == "line 4: 3 cells, the header has 2: quote a text that holds a comma"
    assert refused[1].reason == "line 7: 1 cell, the header has 2"
    assert [m for m in got if not isinstance(m, Refusal)] == [
        Message(phone(i), f"hi {i}") for i in range(6) if i not in (2, 5)
    ]


def test_an_unclosed_quote_is_refused_not_merged_with_the_rows_after_it(tmp_path: Path) -> None:
    rows = _csv_rows(12)
    rows[3] = f'{phone(3)},"Quang 3\n'
    got = list(CsvSource.open(_write_rows(tmp_path / "c.csv", rows)).messages())
    assert got[:3] == [Message(phone(i), f"hi {i}") for i in range(3)]
    [refusal] = got[3:]  # the quote never closes: the record runs to the end of the file
    assert isinstance(refusal, Refusal)
    assert refusal.reason.startswith(f"lines 5-{len(rows) + 1}: not valid CSV")
    # A second stray quote closes the first one's cell in the middle of a row: the record ends
    # there, and the rows after it are read again.
    rows[7] = f'{phone(7)},"hi 7\n'
    got = list(CsvSource.open(_write_rows(tmp_path / "c.csv", rows)).messages())
    assert [m.reason[:24] for m in got if isinstance(m, Refusal)] == ["lines 5-9: not valid CSV"]
    assert [m for m in got if not isinstance(m, Refusal)] == [
        Message(phone(i), f"hi {i}") for i in (*range(3), *range(8, 12))
    ]
    (tmp_path / "h.csv").write_text('phone,"text" x\n0909128628,hi\n', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="header row is not valid CSV"):
        CsvSource.open(tmp_path / "h.csv")


def test_a_refused_rerun_leaves_the_stored_options_alone(fresh: Emulator, tmp_path: Path) -> None:
    path = _write_rows(tmp_path / "c.csv", _csv_rows(20))
    journal = tmp_path / "c.db"
    fresh.set_balance(10)
    client = client_of(fresh)
    campaign, _ = Campaign.create(
        journal, CsvSource.open(path), client_no=fresh.client_no, chunk_size=5
    )
    assert campaign.send(client).run().stopped == "balance"  # type: ignore[arg-type]
    campaign.close()
    campaign = Campaign.open(journal)
    kept = campaign.options
    campaign.close()
    for mistake, problem in [
        ({"bulk": True}, "was sent with SendSMSWithMultiMessage"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"concurrency": 0}, "concurrency"),
        ({"settle": -1}, "settle"),
    ]:
        with pytest.raises(InvalidInputError, match=problem):
            Campaign.create(journal, CsvSource.open(path), client_no=fresh.client_no, **mistake)
    with pytest.raises(JournalMismatchError, match="account"):
        Campaign.create(journal, CsvSource.open(path), client_no="ANOTHER", chunk_size=7)
    fresh.set_balance(1000)
    campaign = Campaign.open(journal)
    assert campaign.options == kept
    summary = campaign.send(client).run()  # type: ignore[arg-type]
    campaign.close()
    assert (summary.accepted, summary.complete) == (20, True)
    assert len(stored(fresh)) == 20


def test_a_campaign_resumes_from_its_journal_alone(fresh: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "phone,name\n" + "".join(f"{phone(i)},Khách {i}\n" for i in range(1500)), encoding="utf-8"
    )
    fresh.set_balance(700)
    client = client_of(fresh)
    source = CsvSource.open(path, template="Chào {name}")
    campaign, resumed = Campaign.create(
        tmp_path / "c.db", source, client_no=fresh.client_no, chunk_size=300
    )
    assert not resumed
    assert campaign.send(client).run().accepted == 700  # type: ignore[arg-type]
    campaign.close()
    fresh.set_balance(10_000)
    campaign = Campaign.open(tmp_path / "c.db")
    summary = campaign.send(client).run()  # type: ignore[arg-type]
    campaign.close()
    assert summary.complete
    assert summary.accepted == 1500
    assert len(stored(fresh)) == 1500
    again, resumed = Campaign.create(tmp_path / "c.db", source, client_no=fresh.client_no)
    assert resumed
    again.close()
    with pytest.raises(JournalMismatchError, match="template"):
        Campaign.create(
            tmp_path / "c.db",
            CsvSource.open(path, template="Hello {name}"),
            client_no=fresh.client_no,
        )
    path.write_text(path.read_text(encoding="utf-8") + f"{phone(9999)},Late\n", encoding="utf-8")
    with pytest.raises(JournalMismatchError, match="changed"):
        Campaign.open(tmp_path / "c.db")
