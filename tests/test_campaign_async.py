"""AsyncFiboClient.send_many against the emulator over loopback: the asyncio driver of a campaign
(fibo_soap.campaign.AsyncSending) over the same plan, journal and outcomes as the threaded one,
FiboClient.send_many delegating to fibo_soap.campaign.send_many, and areconcile: reconcile's
flow over an AsyncFiboClient, reporting what reconcile reports.

The tests run on asyncio through anyio's pytest plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from fibo_soap import AsyncFiboClient, FiboClient, Message
from fibo_soap.campaign import (
    AsyncGateway,
    AsyncSending,
    Journal,
    JournalState,
    Outcome,
    OutcomeState,
    Sending,
    areconcile,
    reconcile,
    send_many_async,
)
from fibo_soap.emulator import Emulator, run_emulator
from fibo_soap.emulator.service import final_status, refused
from fibo_soap.errors import FiboError, InvalidInputError
from fibo_soap.models import BatchReceipt, SmsStatus
from fibo_soap.resilience import RetryPolicy

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

FAST = RetryPolicy(attempts=3, backoff_initial=0.005, backoff_max=0.02, jitter=0, settle=0.02)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def phone(i: int) -> str:
    """A valid number for message i, never one of the emulator's magic ones (0101, 00NN)."""
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
    """A new account per test (count_by_guid sees only this test's messages), a large balance,
    no faults."""
    client_no = f"A{uuid.uuid4().hex[:8].upper()}"
    emu.add_account(client_no, "campaign-secret")
    previous = emu.client_no
    emu.client_no, emu.client_pass = client_no, "campaign-secret"
    emu.set_balance(1_000_000)
    yield emu
    emu.faults.clear()
    emu.client_no = previous


def aclient(emu: Emulator, **options: Any) -> AsyncFiboClient:
    options.setdefault("service_type", 1)
    options.setdefault("retry", FAST)
    options.setdefault("protocols", ("soap11", "get"))
    return AsyncFiboClient(emu.client_no, emu.client_pass, endpoint=emu.endpoint, **options)


def blocking_client(emu: Emulator) -> FiboClient:
    """A FiboClient of the test's account, as ``aclient`` is an AsyncFiboClient of it."""
    client: FiboClient = emu.client(retry=FAST, protocols=("soap11", "get"))
    return client


def stored(emu: Emulator) -> Counter[str]:
    return Counter(emu.store.count_by_guid(emu.client_no))


def journal_states(path: Path) -> dict[int, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT idx, state FROM message"))


async def test_async_send_many_end_to_end(fresh: Emulator, tmp_path: Path) -> None:
    entries = list(messages(2000))
    rejected = {7, 1234}
    for i in rejected:
        entries[i] = Message(f"09{i % 10}3000101", "rejected by the gateway")  # the emulator's 0101
    async with aclient(fresh) as client:
        sending = client.send_many(entries, journal=tmp_path / "c.db", concurrency=4)
        assert isinstance(sending, AsyncSending)
        outcomes: dict[int, Outcome] = {}
        async with sending:
            async for outcome in sending:
                assert outcome.index not in outcomes
                outcomes[outcome.index] = outcome
    summary = sending.summary
    assert len(outcomes) == 2000
    assert (summary.accepted, summary.rejected, summary.not_sent) == (1998, 2, 0)
    assert summary.complete
    assert summary.requests >= 4
    assert {i for i, o in outcomes.items() if o.state is OutcomeState.REJECTED} == rejected
    at_gateway = stored(fresh)
    accepted = {o.guid for o in outcomes.values() if o.state is OutcomeState.ACCEPTED}
    assert set(at_gateway) == accepted
    assert set(at_gateway.values()) == {1}
    states = Counter(journal_states(tmp_path / "c.db").values())
    assert states == {"accepted": 1998, "rejected": 2}


async def test_async_a_guid_the_client_refuses_is_refused_alone(
    fresh: Emulator, tmp_path: Path
) -> None:
    entries = [Message(phone(i), f"hi {i}", f"order-{i}") for i in range(30)]
    entries[12] = Message(phone(12), "hi 12", "order-12 ")  # a CHAR(n) column's padding
    async with aclient(fresh) as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.send_sms(phone(12), "hi 12", guid="order-12 ")
        sending = client.send_many(entries, journal=tmp_path / "c.db", chunk_size=10)
        outcomes = {o.index: o async for o in sending}
    summary = sending.summary
    assert (summary.stopped, summary.complete) == (None, True), summary.error
    assert {i: o.reason for i, o in outcomes.items() if o.state is OutcomeState.REFUSED} == {
        12: caught.value.detail
    }
    assert stored(fresh) == Counter({m.guid: 1 for m in entries if m.guid != "order-12 "})


async def test_async_balance_stop_is_exact(fresh: Emulator, tmp_path: Path) -> None:
    fresh.set_balance(700)
    journal = tmp_path / "c.db"
    async with aclient(fresh) as client:
        summary = await client.send_many(messages(2000), journal=journal, concurrency=4).run()
        assert (summary.accepted, summary.not_sent, summary.stopped) == (700, 1300, "balance")
        assert summary.balance == 0
        assert fresh.balance(1) == 0
        states = journal_states(journal)
        assert {i for i, s in states.items() if s == "accepted"} == set(range(700))
        assert {i for i, s in states.items() if s == "not_sent"} == set(range(700, 2000))
        assert len(stored(fresh)) == 700
        # Topped up, the same campaign sends the rest, and nothing twice.
        fresh.set_balance(5000)
        summary = await client.send_many(messages(2000), journal=journal).run()
    assert (summary.accepted, summary.resumed, summary.not_sent) == (2000, 700, 0)
    at_gateway = stored(fresh)
    assert len(at_gateway) == 2000
    assert set(at_gateway.values()) == {1}


async def test_async_resume_looks_up_open_rows(fresh: Emulator, tmp_path: Path) -> None:
    # A run that died with chunks in flight leaves rows "submitted": the async rerun asks
    # GetSMSStatus about them (aresolve), then sends only what the gateway never took.
    journal = tmp_path / "c.db"
    async with aclient(fresh) as client:
        first = await client.send_many(messages(900), journal=journal, chunk_size=300).run()
        assert first.accepted == 900
        with sqlite3.connect(journal) as conn:
            conn.execute("UPDATE message SET state = 'submitted', updated = 0 WHERE idx >= 500")
        summary = await client.send_many(messages(1000), journal=journal, settle=0.0).run()
    assert summary.complete
    assert (summary.accepted, summary.resumed, summary.requests) == (1000, 900, 1)
    assert len(stored(fresh)) == 1000
    assert set(stored(fresh).values()) == {1}
    # The 400 found by GetSMSStatus carry its status (delivered: no delivery delay here).
    assert Counter(journal_states(journal).values()) == {"accepted": 600, "delivered": 400}


async def test_async_close_after_mid_run_stores_every_guid_once(
    fresh: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "c.db"
    async with aclient(fresh) as client:
        sending = client.send_many(
            messages(2000), journal=journal, chunk_size=250, concurrency=4, settle=0.02
        )
        count = 0
        async for _ in sending:
            count += 1
            if count == 300:
                fresh.fault("close_after", method="SendSMSWithMultiMessage", times=2)
        summary = sending.summary
        assert not fresh.faults.rules(), "the fault did not fire as often as set"
        fresh.faults.clear()
        if not summary.complete:  # a chunk the client could not settle: the rerun does
            summary = await client.send_many(messages(2000), journal=journal, settle=0.02).run()
    assert summary.complete
    assert summary.accepted == 2000
    at_gateway = stored(fresh)
    assert len(at_gateway) == 2000
    assert set(at_gateway.values()) == {1}


def test_fibo_client_send_many_delegates(fresh: Emulator) -> None:
    with FiboClient(
        fresh.client_no, fresh.client_pass, endpoint=fresh.endpoint, service_type=1, retry=FAST
    ) as client:
        sending = client.send_many(messages(120), chunk_size=50, concurrency=2)
        assert isinstance(sending, Sending)
        summary = sending.run()
    assert (summary.accepted, summary.requests) == (120, 3)
    assert set(stored(fresh).values()) == {1}
    assert len(stored(fresh)) == 120


# --- areconcile: reconcile over an AsyncFiboClient --------------------------------------------


@pytest.fixture
def slow(fresh: Emulator) -> Iterator[Emulator]:
    """``fresh``, with every message sent during the test Pending (then Sending) until the
    emulator's clock has moved 10 s: delivery advances only when the test says so."""
    service = fresh.app.service
    previous = service.delivery_delay
    service.delivery_delay = 10
    yield fresh
    service.delivery_delay = previous


class DyingGateway(AsyncGateway):
    """An AsyncGateway whose process "dies" on its ``at``-th chunk, before the request goes out:
    the chunk's rows stay ``submitted`` in the journal, and the gateway never saw them."""

    class Crash(BaseException):
        pass

    def __init__(self, client: AsyncFiboClient, at: int) -> None:
        super().__init__(client)
        self.at, self.count = at, 0

    async def send(self, messages: Sequence[Message]) -> BatchReceipt:
        self.count += 1
        if self.count == self.at:
            raise self.Crash
        return await super().send(messages)


class HeldGateway(AsyncGateway):
    """An AsyncGateway that holds its second chunk at the door (``at_door`` set) until
    ``release`` is set: a running campaign caught with a request in flight."""

    def __init__(self, client: AsyncFiboClient) -> None:
        super().__init__(client)
        self.at_door = asyncio.Event()
        self.release = asyncio.Event()
        self.count = 0

    async def send(self, messages: Sequence[Message]) -> BatchReceipt:
        self.count += 1
        if self.count == 2:
            self.at_door.set()
            await self.release.wait()
        return await super().send(messages)


async def drain(sending: AsyncSending) -> list[Outcome]:
    """The rest of a run's outcomes."""
    return [outcome async for outcome in sending]


def journal_rows(path: Path) -> dict[str, tuple[str, int | None]]:
    """Every row's (state, sms_status), by GUID."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {
            g: (s, n) for g, s, n in conn.execute("SELECT guid, state, sms_status FROM message")
        }


def mark_open(path: Path, first: int, last: int, state: str) -> None:
    """Rows ``first`` to ``last`` as a stopped run leaves them: open, their answer lost."""
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "UPDATE message SET state = ?, updated = 0 WHERE idx BETWEEN ? AND ?",
            (state, first, last),
        )


def state_for(status: SmsStatus) -> str:
    """The journal state a message in ``status`` at the gateway is given."""
    if not status.is_final:
        return JournalState.ACCEPTED.value
    delivered = status is SmsStatus.SENT_SUCCESS
    return (JournalState.DELIVERED if delivered else JournalState.FAILED).value


def held_statuses(emu: Emulator) -> dict[str, SmsStatus]:
    """What the emulator holds for this test's account: each GUID's status now."""
    return {sms.guid: sms.status for sms in emu.received(client_no=emu.client_no) if sms.guid}


async def test_areconcile_follows_delivery(slow: Emulator, tmp_path: Path) -> None:
    batch = [Message(phone(i), "hi") for i in range(1, 6)]
    # The emulator's magic numbers: ends in SentFailed, ends in SpamSMS, refused at the gateway.
    batch += [Message("0912340003", "fails"), Message("0912340010", "spam")]
    batch += [Message("0912340101", "refused")]
    journal = tmp_path / "c.db"
    async with aclient(slow) as client:
        summary = await client.send_many(batch, journal=journal).run()
        taken = [m for m in batch if not refused(m.phone)]
        assert (summary.accepted, summary.rejected) == (len(taken), len(batch) - len(taken))
        report = await areconcile(journal, client)
        held = held_statuses(slow)
        assert set(held.values()) == {SmsStatus.PENDING}  # nothing delivered yet
        assert report.statuses == Counter(held.values())
        assert report.states[JournalState.ACCEPTED] == len(taken)
        assert report.states[JournalState.REJECTED] == summary.rejected
        assert (report.asked, report.unknown) == (len(taken), 0)
        assert not report.all_final
        slow.advance(10)
        seen: list[int] = []
        report = await areconcile(journal, client, progress=seen.append, batch_size=3)
    final = Counter(final_status(m.phone) for m in taken)
    assert report.statuses == final
    assert report.statuses == Counter(held_statuses(slow).values())
    assert seen == [min(3, len(taken) - i) for i in range(0, len(taken), 3)]
    assert sum(seen) == report.asked
    assert report.states[JournalState.DELIVERED] == final[SmsStatus.SENT_SUCCESS]
    assert report.states[JournalState.FAILED] == final.total() - final[SmsStatus.SENT_SUCCESS]
    assert report.states[JournalState.FAILED] > 0
    assert report.all_final
    # Each row carries its own message's status.
    rows = journal_rows(journal)
    for guid, status in held_statuses(slow).items():
        assert rows[guid] == (state_for(status), int(status))


async def test_areconcile_resolves_what_a_stopped_run_left(fresh: Emulator, tmp_path: Path) -> None:
    # Rows a run left open, whatever their fate: those at the gateway are found (and carry its
    # status), those not become queued, and the next run sends them, once.
    journal = tmp_path / "c.db"
    async with aclient(fresh) as client:
        gateway = DyingGateway(client, at=3)
        with pytest.raises(DyingGateway.Crash):
            await send_many_async(
                gateway, messages(1500), journal=journal, chunk_size=300, concurrency=1
            ).run()
        mark_open(journal, 0, 199, "submitted")  # taken, but their answers were lost
        mark_open(journal, 200, 299, "ambiguous")
        before = journal_rows(journal)
        open_rows = {g for g, (s, _) in before.items() if s in ("submitted", "ambiguous")}
        accepted = {g for g, (s, _) in before.items() if s == "accepted"}
        at_gateway = held_statuses(fresh)
        found = open_rows & at_gateway.keys()
        absent = open_rows - found
        assert found  # taken, their answers lost
        assert absent  # the chunk the process died in was never sent
        report = await areconcile(journal, client, settle=0)
        assert not report.in_use
        assert report.absent == len(absent)
        assert report.asked == len(open_rows) + len(accepted)
        assert report.unknown == 0
        rows = journal_rows(journal)
        assert {g: rows[g][0] for g in absent} == dict.fromkeys(absent, "queued")
        for guid in found | accepted:
            assert rows[guid] == (state_for(at_gateway[guid]), int(at_gateway[guid]))
        assert report.states[JournalState.QUEUED] == len(absent)
        summary = await client.send_many(messages(1500), journal=journal).run()
    assert summary.complete
    assert summary.accepted == 1500
    at_gateway_now = stored(fresh)
    assert len(at_gateway_now) == 1500
    assert set(at_gateway_now.values()) == {1}


async def test_areconcile_leaves_a_running_campaign_alone(fresh: Emulator, tmp_path: Path) -> None:
    # While a run holds the campaign, its submitted rows may be in flight: a look-up could race
    # the request and call "absent" what the gateway is about to store. areconcile leaves them.
    journal = tmp_path / "c.db"
    async with aclient(fresh) as client:
        gateway = HeldGateway(client)
        sending = send_many_async(
            gateway, messages(900), journal=journal, chunk_size=300, concurrency=1
        )
        async with sending:
            outcomes = [await anext(sending)]
            rest = asyncio.create_task(drain(sending))
            door = asyncio.create_task(gateway.at_door.wait())
            try:  # (a failure here must not leave the held request, and the test, hanging)
                await asyncio.wait([door, rest], return_when=asyncio.FIRST_COMPLETED)
                assert door.done(), "the run ended before its second chunk went out"
                # The second chunk is submitted, its request going out.
                before = Counter(s for s, _ in journal_rows(journal).values())
                assert before["submitted"] > 0
                report = await areconcile(journal, client, settle=0)
                assert report.in_use
                assert report.states[JournalState.SUBMITTED] == before["submitted"]
                assert (report.asked, report.absent) == (before["accepted"], 0)
                after = Counter(s for s, _ in journal_rows(journal).values())
                assert after == {"delivered": before["accepted"], "submitted": before["submitted"]}
            finally:
                door.cancel()
                gateway.release.set()
            outcomes += await rest
        assert len(outcomes) == 900
        assert sending.summary.accepted == 900
        pending = Counter(s for s, _ in journal_rows(journal).values())["accepted"]
        report = await areconcile(journal, client, settle=0)
    assert not report.in_use
    assert (report.asked, report.absent) == (pending, 0)
    assert report.states[JournalState.DELIVERED] == 900
    assert report.all_final
    assert set(stored(fresh).values()) == {1}


async def test_areconcile_lets_go_of_the_campaign_when_a_look_up_fails(
    fresh: Emulator, tmp_path: Path
) -> None:
    journal = tmp_path / "c.db"
    async with aclient(fresh) as client:
        await client.send_many(messages(300), journal=journal).run()
        mark_open(journal, 0, 299, "submitted")
        fresh.fault("http_500", method="GetSMSStatus")
        with pytest.raises(FiboError):
            await areconcile(journal, client, settle=0)
        # At once, not when the failure is collected: the campaign is free, nothing decided.
        with Journal(journal) as book:
            book.lock()
    assert Counter(s for s, _ in journal_rows(journal).values()) == {"submitted": 300}


async def test_areconcile_reports_what_reconcile_reports(slow: Emulator, tmp_path: Path) -> None:
    # One journal state, copied: reconcile over a FiboClient and areconcile over an
    # AsyncFiboClient make the same report and leave the same rows.
    journal = tmp_path / "c.db"
    early = [*messages(400), Message("0912340003", "fails"), Message("0912340101", "refused")]
    async with aclient(slow) as client:
        await client.send_many(early, journal=journal, chunk_size=200).run()
        slow.advance(10)  # these are final at the gateway; the next ones are Pending
        later = [*early, *(Message(phone(i), f"later {i}") for i in range(400, 800))]
        await client.send_many(later, journal=journal, chunk_size=200).run()
        with pytest.raises(DyingGateway.Crash):  # a run dies with a chunk submitted, unsent
            await send_many_async(
                DyingGateway(client, at=1), [*later, *messages(200, start=800)], journal=journal
            ).run()
        mark_open(journal, 100, 149, "submitted")
        mark_open(journal, 500, 549, "ambiguous")
        copy = tmp_path / "copy.db"
        with (
            contextlib.closing(sqlite3.connect(journal)) as src,
            contextlib.closing(sqlite3.connect(copy)) as dst,
        ):
            src.backup(dst)
        assert journal_rows(copy) == journal_rows(journal)
        with blocking_client(slow) as sync_client:
            expected = reconcile(journal, sync_client, settle=0)
        report = await areconcile(copy, client, settle=0)
    assert report == expected
    assert journal_rows(copy) == journal_rows(journal)
    # The state was worth comparing: open rows found and absent, taken ones final and not.
    assert report.absent > 0
    assert report.asked > report.absent
    assert report.states[JournalState.REJECTED] > 0
    assert len(report.statuses) > 2
    assert not report.all_final


async def finished(result: Any) -> Any:
    """``result``, awaited when it is a coroutine (the async functions check when awaited)."""
    return await result if asyncio.iscoroutine(result) else result


async def test_a_client_of_the_other_kind_is_refused_before_anything_is_sent(
    fresh: Emulator, tmp_path: Path
) -> None:
    # A blocking function would get coroutines back from an async client, and an async one
    # could not await a blocking client: each says which twin to use, and nothing is sent.
    from fibo_soap.campaign import ClientGateway, aresolve, resolve, send_many

    journal = tmp_path / "c.db"
    async with aclient(fresh) as client:
        await client.send_many(messages(3), journal=journal).run()
        before = len(fresh.recorded)
        with blocking_client(fresh) as sync_client, Journal(journal) as book:
            blocking = (
                (send_many, "send_many_async", lambda c: send_many(c, messages(3))),
                (reconcile, "areconcile", lambda c: reconcile(journal, c)),
                (resolve, "aresolve", lambda c: resolve(book, c)),
            )
            for function, twin, call in blocking:
                for wrong in (client, AsyncGateway(client)):
                    with pytest.raises(TypeError, match=rf"{function.__name__}\(\).*{twin}\(\)"):
                        call(wrong)
            awaited = (
                (send_many_async, "send_many", lambda c: send_many_async(c, messages(3))),
                (areconcile, "reconcile", lambda c: areconcile(journal, c)),
                (aresolve, "resolve", lambda c: aresolve(book, c)),
            )
            for function, twin, call in awaited:
                for wrong in (sync_client, ClientGateway(sync_client)):
                    with pytest.raises(TypeError, match=rf"{function.__name__}\(\).*{twin}\(\)"):
                        await finished(call(wrong))
    assert len(fresh.recorded) == before
