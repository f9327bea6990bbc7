"""AsyncFiboClient.send_many against the emulator over loopback: the asyncio driver of a campaign
(fibo_soap.campaign.AsyncSending) over the same plan, journal and outcomes as the threaded one,
and FiboClient.send_many delegating to fibo_soap.campaign.send_many.

The tests run on asyncio through anyio's pytest plugin.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fibo_soap import AsyncFiboClient, FiboClient, Message
from fibo_soap.campaign import AsyncSending, Outcome, OutcomeState, Sending
from fibo_soap.emulator import Emulator, run_emulator
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


def messages(count: int) -> Iterator[Message]:
    for i in range(count):
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
