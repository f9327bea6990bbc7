"""The emulator's SQLite store: atomic balances, delivery timelines, reads kept to one account."""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fibo_soap.emulator import store as store_module
from fibo_soap.emulator.store import Outgoing, Store, StoreFileError, SubmitResult
from fibo_soap.models import (
    VN_TZ,
    HostingBalance,
    IncomingStatus,
    SenderName,
    SmsStatus,
    SmsStatusRow,
)
from fibo_soap.operations import PAGE_SIZE

NOW = datetime(2024, 5, 10, 9, 0, tzinfo=VN_TZ)
HOSTING = 1
TEST_CHANNEL = 3


def seed(store: Store) -> None:
    store.add_account("C1", "pass1", "Client One")
    store.add_service_type("C1", HOSTING, "SMS Hosting", 100)
    store.add_service_type("C1", TEST_CHANNEL, "SMS Email", 0)
    store.add_account("C2", "pass2", "Client Two")
    store.add_service_type("C2", HOSTING, "SMS Hosting", 100)


@pytest.fixture
def store() -> Iterator[Store]:
    with Store() as s:
        seed(s)
        yield s


def send(
    store: Store,
    messages: list[Outgoing],
    *,
    client_no: str = "C1",
    service_type_id: int = HOSTING,
    now: datetime = NOW,
    charge: bool = True,
) -> SubmitResult:
    return store.submit(
        client_no,
        service_type_id,
        messages,
        now=now,
        operation="SendSMS",
        protocol="soap11",
        charge=charge,
    )


def msg(n: int, **kwargs: object) -> Outgoing:
    return Outgoing(f"090{n:07d}", f"Message {n}", **kwargs)  # type: ignore[arg-type]


# -- files ----------------------------------------------------------------------------------------


def test_temporary_store_is_a_file_removed_on_close() -> None:
    store = Store()
    path = store.path
    assert path.exists()
    store.close()
    store.close()
    assert not path.exists()
    assert not Path(f"{path}-wal").exists()


def test_reopened_file_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "emulator.sqlite3"
    with Store(path) as first:
        seed(first)
        first.add_sender_name("C1", "FiboSMS", created=NOW)
        done = NOW + timedelta(minutes=1)
        result = send(first, [msg(1, guid="g1", final_at=done), msg(2, guid="g2")])
        first.advance(done)
        first.add_incoming(
            "C1",
            phone="84913122005",
            message="FIBO DEMO",
            service_type_id=229,
            service_type_name="8022(FIBO)",
            created=NOW,
        )
    assert path.exists()

    with Store(path) as second:
        assert second.authenticate("C1", "pass1") == "Client One"
        assert second.balance("C1", HOSTING) == 98
        assert second.sender_names("C1") == [SenderName("FiboSMS", 1, NOW)]
        assert [s.status for s in second.statuses("C1", ["g1", "g2"])] == [
            SmsStatus.SENT_SUCCESS,
            SmsStatus.PENDING,
        ]
        assert [s.id for s in second.outgoing()] == list(result.ids)
        assert len(second.incoming_since("C1", 5, NOW)) == 1
        # Ids continue after the stored ones rather than restarting.
        later = send(second, [msg(3)])
        assert later.ids == (max(result.ids) + 1,)


def _page_size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


def test_a_new_file_has_small_pages_and_an_older_one_keeps_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The page size only takes on a file that has none yet: it must come before WAL mode.
    new = tmp_path / "new.sqlite3"
    with Store(new) as store:
        seed(store)
    assert _page_size(new) == store_module._PAGE_BYTES < 4096

    # A file made with SQLite's default pages (as before) opens as it is and stays usable.
    older = tmp_path / "older.sqlite3"
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "_PAGE_BYTES", 4096)
        with Store(older) as first:
            seed(first)
            send(first, [msg(1, guid="g1")])
    with Store(older) as second:
        assert second.balance("C1", HOSTING) == 99
        assert [s.guid for s in second.statuses("C1", ["g1"])] == ["g1"]
        assert send(second, [msg(2, guid="g2")]).accepted
    assert _page_size(older) == 4096


def test_a_version_1_file_is_upgraded_and_finds_its_guids(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    with Store(path) as first:
        seed(first)
        send(first, [msg(1, guid="g1"), msg(2, guid="g2"), msg(3)])
    # As the first schema left a file: no guid_key column, the GUIDs indexed whole.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX sms_guid_key")
        conn.execute("ALTER TABLE sms DROP COLUMN guid_key")
        conn.execute("CREATE INDEX sms_client_guid ON sms (client_no, guid)")
        conn.execute("PRAGMA user_version = 1")

    with Store(path) as second:
        assert [s.guid for s in second.statuses("C1", ["g2", "g1"])] == ["g2", "g1"]
        send(second, [msg(4, guid="g4")])
        assert [s.guid for s in second.statuses("C1", ["g4", "g1"])] == ["g4", "g1"]
        assert second.balance("C1", HOSTING) == 96
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
        indexes = {row[1] for row in conn.execute("PRAGMA index_list(sms)")}
    assert "sms_client_guid" not in indexes
    assert "sms_guid_key" in indexes


def test_guids_that_share_an_index_key_are_told_apart(store: Store) -> None:
    # CRC-32 gives these two the same value: the index finds both, the GUID picks one.
    first, second = "plumless", "buckeroo"
    assert zlib.crc32(first.encode()) == zlib.crc32(second.encode())
    ids = send(store, [msg(1, guid=first), msg(2, guid=second), msg(3, guid=second)]).ids
    assert [s.guid for s in store.statuses("C1", [first])] == [first]
    assert [s.guid for s in store.statuses("C1", [second, first])] == [second, second, first]
    assert store.statuses("C2", [first]) == []
    assert [s.id for s in store.outgoing(guid=first)] == [ids[0]]
    assert [s.id for s in store.outgoing(client_no="C1", guid=second)] == [ids[1], ids[2]]
    assert store.outgoing(client_no="C2", guid=second) == []


def test_a_guid_that_is_not_text_is_refused_before_anything_is_stored(store: Store) -> None:
    with pytest.raises(TypeError, match="GUID"):
        send(store, [msg(1, guid=7)])
    assert store.outgoing() == []
    assert store.balance("C1", HOSTING) == 100


def test_store_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    with Store(path) as s:
        s._conn.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="version 99"):
        Store(path)


def test_a_file_that_cannot_hold_the_store_is_refused_untouched(tmp_path: Path) -> None:
    junk = tmp_path / "notes.sqlite3"
    junk.write_bytes(b"not a database, a note of 44 bytes or so....")
    with pytest.raises(StoreFileError, match="file is not a database"):
        Store(junk)
    assert junk.read_bytes() == b"not a database, a note of 44 bytes or so...."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite3"]
    with pytest.raises(StoreFileError, match="unable to open"):
        Store(tmp_path / "no such folder" / "emu.sqlite3")
    future = tmp_path / "future.sqlite3"
    with Store(future) as s:
        s._conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreFileError, match="version 99; this version reads"):
        Store(future)


# -- accounts, service types, sender names --------------------------------------------------------


def test_authenticate_returns_the_name_only_for_the_right_secret(store: Store) -> None:
    assert store.authenticate("C1", "pass1") == "Client One"
    assert store.authenticate("C1", "pass2") is None
    assert store.authenticate("C1", "") is None
    assert store.authenticate("nobody", "pass1") is None
    store.add_account("C3", "mật khẩu", "Khách")
    assert store.authenticate("C3", "mật khẩu") == "Khách"
    assert store.authenticate("C3", "mat khau") is None
    assert store.account_exists("C1")
    assert not store.account_exists("nobody")


def test_bad_seed_data_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="already exists"):
        store.add_account("C1", "x", "y")
    with pytest.raises(ValueError, match="service type 1"):
        store.add_service_type("C1", HOSTING, "again", 5)
    with pytest.raises(ValueError, match="nobody"):
        store.add_service_type("nobody", HOSTING, "SMS Hosting", 5)
    with pytest.raises(ValueError, match="0 or more"):
        store.add_service_type("C1", 7, "x", -1)
    with pytest.raises(KeyError):
        store.set_balance("C1", 7, 5)
    with pytest.raises(ValueError, match="0 or more"):
        store.set_balance("C1", HOSTING, -1)
    with pytest.raises(ValueError, match="nobody"):
        store.add_sender_name("nobody", "Brand", created=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.add_sender_name("C1", "Brand", created=datetime(2024, 1, 1))


def test_balances_are_per_account_and_service_type(store: Store) -> None:
    store.set_balance("C2", HOSTING, 7)
    assert store.balance("C1", HOSTING) == 100
    assert store.balance("C2", HOSTING) == 7
    assert store.balance("C1", TEST_CHANNEL) == 0
    assert store.balance("C2", TEST_CHANNEL) is None
    assert store.balance("nobody", HOSTING) is None
    assert store.hosting_balances("C1") == [
        HostingBalance("SMS Hosting", 100),
        HostingBalance("SMS Email", 0),
    ]
    assert store.hosting_balances("C2") == [HostingBalance("SMS Hosting", 7)]
    assert store.hosting_balances("nobody") == []


def test_sender_names_in_registration_order_per_account(store: Store) -> None:
    store.add_sender_name("C1", "FiboSMS", created=NOW)
    store.add_sender_name("C1", "Brand2", status=0, created=NOW + timedelta(days=1))
    store.add_sender_name("C2", "Other", created=NOW)
    assert store.sender_names("C1") == [
        SenderName("FiboSMS", 1, NOW),
        SenderName("Brand2", 0, NOW + timedelta(days=1)),
    ]
    assert store.sender_names("C2") == [SenderName("Other", 1, NOW)]


# -- submit and balances --------------------------------------------------------------------------


def test_accepted_submit_stores_every_column_and_takes_the_balance(store: Store) -> None:
    at = datetime(2024, 5, 10, 2, 0, tzinfo=UTC)
    result = store.submit(
        "C1",
        HOSTING,
        [msg(1, guid="g1", sender_name="FiboSMS"), msg(2)],
        now=at,
        operation="SendBulkSMS",
        protocol="http-get",
    )
    assert result == SubmitResult(accepted=True, reason="ok", ids=result.ids)
    assert len(result.ids) == 2
    assert store.balance("C1", HOSTING) == 98
    first, second = store.outgoing(client_no="C1")
    assert (first.id, second.id) == result.ids
    assert first.client_no == "C1"
    assert first.service_type_id == HOSTING
    assert (first.phone, first.message) == ("0900000001", "Message 1")
    assert (first.guid, first.sender_name) == ("g1", "FiboSMS")
    assert (second.guid, second.sender_name) == (None, None)
    assert first.status is SmsStatus.PENDING
    assert first.created == at
    assert first.created.tzinfo is VN_TZ
    assert first.sent is None
    assert (first.operation, first.protocol) == ("SendBulkSMS", "http-get")


def test_more_messages_than_the_balance_are_refused_whole(store: Store) -> None:
    store.set_balance("C1", HOSTING, 5)
    result = send(store, [msg(i) for i in range(6)])
    assert result == SubmitResult(accepted=False, reason="over_balance", ids=())
    assert store.outgoing() == []
    assert store.balance("C1", HOSTING) == 5
    # Exactly the balance still goes.
    assert send(store, [msg(i) for i in range(5)]).accepted
    assert store.balance("C1", HOSTING) == 0


def test_zero_balance_is_refused(store: Store) -> None:
    store.set_balance("C1", HOSTING, 0)
    assert send(store, [msg(1)]) == SubmitResult(accepted=False, reason="zero_balance")
    assert store.outgoing() == []
    assert store.balance("C1", HOSTING) == 0


def test_unknown_service_type_or_account_is_refused(store: Store) -> None:
    refused = SubmitResult(accepted=False, reason="no_service_type")
    assert send(store, [msg(1)], service_type_id=99) == refused
    assert send(store, [msg(1)], service_type_id=TEST_CHANNEL, client_no="C2") == refused
    assert send(store, [msg(1)], client_no="nobody") == refused
    assert send(store, [msg(1)], service_type_id=99, charge=False) == refused
    assert store.outgoing() == []


def test_uncharged_submit_ignores_the_balance(store: Store) -> None:
    free = send(store, [msg(1), msg(2)], service_type_id=TEST_CHANNEL, charge=False)
    assert free.accepted
    assert len(free.ids) == 2
    assert store.balance("C1", TEST_CHANNEL) == 0
    assert send(store, [msg(3)], charge=False).accepted
    assert store.balance("C1", HOSTING) == 100
    assert len(store.outgoing(client_no="C1")) == 3


def test_empty_submit_is_accepted_with_no_ids(store: Store) -> None:
    assert send(store, []) == SubmitResult(accepted=True, reason="ok", ids=())
    assert store.balance("C1", HOSTING) == 100


def _hammer(stores: list[Store], threads: int, sends_each: int) -> list[SubmitResult]:
    """Every thread sends single messages as fast as it can, all starting together."""
    barrier = threading.Barrier(threads)

    def worker(n: int) -> list[SubmitResult]:
        target = stores[n % len(stores)]
        barrier.wait()
        return [send(target, [msg(n * 1000 + i)]) for i in range(sends_each)]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(worker, n) for n in range(threads)]
    # result() re-raises a worker's exception, which a bare thread would only print.
    return [r for f in futures for r in f.result()]


def test_concurrent_submits_never_overdraw(store: Store) -> None:
    store.set_balance("C1", HOSTING, 57)
    results = _hammer([store], threads=20, sends_each=10)
    accepted = [r for r in results if r.accepted]
    assert len(results) == 200
    assert len(accepted) == 57
    assert {r.reason for r in results if not r.accepted} == {"zero_balance"}
    assert store.balance("C1", HOSTING) == 0
    stored = store.outgoing(client_no="C1")
    assert len(stored) == 57
    assert sorted(i for r in accepted for i in r.ids) == [s.id for s in stored]


def test_concurrent_submits_through_two_connections_never_overdraw(tmp_path: Path) -> None:
    # Two Store objects share the file but not the Python lock: only SQLite's locking holds.
    path = tmp_path / "shared.sqlite3"
    with Store(path) as a, Store(path) as b:
        seed(a)
        a.set_balance("C1", HOSTING, 57)
        results = _hammer([a, b], threads=20, sends_each=10)
        assert sum(r.accepted for r in results) == 57
        assert b.balance("C1", HOSTING) == 0
        assert len(a.outgoing(client_no="C1")) == 57
        ids = [i for r in results for i in r.ids]
        assert len(set(ids)) == 57


def test_ten_thousand_messages_submit_as_one_batch(store: Store) -> None:
    # How fast is bench/emulator_throughput.py's to say; here, that all of them land, once.
    store.set_balance("C1", HOSTING, 10_000)
    due = NOW + timedelta(seconds=30)
    batch = [msg(i, guid=f"g{i}", sending_at=NOW, final_at=due) for i in range(10_000)]
    result = send(store, batch)
    assert result.accepted
    assert len(result.ids) == 10_000
    assert store.balance("C1", HOSTING) == 0
    assert store.total_pages("C1", "") == 500
    assert store.advance(due) == 10_000


# -- delivery timeline ----------------------------------------------------------------------------


def test_advance_moves_pending_to_sending_to_final_with_sent_date(store: Store) -> None:
    sending, final = NOW + timedelta(seconds=5), NOW + timedelta(seconds=65)
    send(
        store,
        [msg(1, guid="g", final_status=SmsStatus.SENT_FAILED, sending_at=sending, final_at=final)],
    )

    def state() -> tuple[SmsStatus, datetime | None]:
        (row,) = store.outgoing(guid="g")
        return row.status, row.sent

    assert store.advance(NOW) == 0
    assert state() == (SmsStatus.PENDING, None)
    assert store.advance(sending - timedelta(microseconds=1)) == 0
    assert state() == (SmsStatus.PENDING, None)
    assert store.advance(sending) == 1
    assert state() == (SmsStatus.SENDING, None)
    assert store.advance(final - timedelta(seconds=1)) == 0
    assert state() == (SmsStatus.SENDING, None)
    assert store.advance(final) == 1
    assert state() == (SmsStatus.SENT_FAILED, final)
    assert store.advance(final + timedelta(days=1)) == 0
    assert state() == (SmsStatus.SENT_FAILED, final)
    (page_row,) = store.sent_page(
        "C1", 1, from_day=None, to_day=None, status=None, service_type_id=None, key=""
    )
    assert page_row.sent == final
    assert page_row.status is SmsStatus.SENT_FAILED


def test_advance_past_both_instants_goes_straight_to_final(store: Store) -> None:
    final = NOW + timedelta(minutes=2)
    send(store, [msg(1, guid="g", sending_at=NOW + timedelta(minutes=1), final_at=final)])
    assert store.advance(NOW + timedelta(hours=1)) == 1
    (row,) = store.outgoing(guid="g")
    assert (row.status, row.sent) == (SmsStatus.SENT_SUCCESS, final)


def test_submit_stores_messages_already_due_in_their_state_at_now(store: Store) -> None:
    send(
        store,
        [
            msg(1, guid="done", final_status=SmsStatus.SPAM_SMS, sending_at=NOW, final_at=NOW),
            msg(2, guid="going", sending_at=NOW, final_at=NOW + timedelta(seconds=1)),
        ],
    )
    assert [(s.status, s.sent) for s in store.outgoing()] == [
        (SmsStatus.SPAM_SMS, NOW),
        (SmsStatus.SENDING, None),
    ]


def test_missing_instants_are_never_reached(store: Store) -> None:
    send(
        store,
        [
            msg(1, guid="forever-pending"),
            msg(2, guid="forever-sending", sending_at=NOW + timedelta(seconds=1)),
            msg(3, guid="no-sending-step", final_at=NOW + timedelta(seconds=2)),
        ],
    )
    store.advance(NOW + timedelta(seconds=1, microseconds=500_000))
    assert [s.status for s in store.outgoing()] == [
        SmsStatus.PENDING,
        SmsStatus.SENDING,
        SmsStatus.PENDING,
    ]
    store.advance(NOW + timedelta(days=3650))
    assert [(s.status, s.sent) for s in store.outgoing()] == [
        (SmsStatus.PENDING, None),
        (SmsStatus.SENDING, None),
        (SmsStatus.SENT_SUCCESS, NOW + timedelta(seconds=2)),
    ]


def test_advance_finds_due_rows_through_an_index(store: Store) -> None:
    plan = store._conn.execute(
        "EXPLAIN QUERY PLAN SELECT 1 FROM sms WHERE next_at IS NOT NULL AND next_at <= 0"
    ).fetchall()
    assert any("INDEX sms_due" in str(step[-1]) for step in plan), plan


def test_outgoing_refuses_an_impossible_timeline() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Outgoing("0900000001", "x", sending_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="after final_at"):
        Outgoing("0900000001", "x", sending_at=NOW + timedelta(seconds=1), final_at=NOW)
    with pytest.raises(ValueError, match="not a final status"):
        Outgoing("0900000001", "x", final_status=SmsStatus.SENDING, final_at=NOW)


def test_naive_now_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        send(store, [msg(1)], now=datetime(2024, 1, 1))
    assert store.outgoing() == []
    assert store.balance("C1", HOSTING) == 100


# -- reads ----------------------------------------------------------------------------------------


def test_pages_of_twenty_newest_first(store: Store) -> None:
    ids = [send(store, [msg(i)], now=NOW + timedelta(seconds=i)).ids[0] for i in range(45)]

    def page(n: int) -> list[int | None]:
        rows = store.sent_page(
            "C1", n, from_day=None, to_day=None, status=None, service_type_id=None, key=""
        )
        return [r.id for r in rows]

    newest_first = ids[::-1]
    assert page(1) == newest_first[:PAGE_SIZE]
    assert page(2) == newest_first[PAGE_SIZE : 2 * PAGE_SIZE]
    assert page(3) == newest_first[2 * PAGE_SIZE :]
    assert page(4) == []
    assert page(1) == newest_first[:PAGE_SIZE]  # stable on a second read
    with pytest.raises(ValueError, match="page"):
        page(0)


def test_page_filters_and_key(store: Store) -> None:
    day = date(2024, 5, 10)
    # 00:30 in Vietnam is still the previous day in UTC: the day filter must use Vietnam days.
    early = datetime(2024, 5, 10, 0, 30, tzinfo=VN_TZ)
    late = datetime(2024, 5, 10, 23, 59, 59, tzinfo=VN_TZ)
    before = datetime(2024, 5, 9, 23, 59, 59, tzinfo=VN_TZ)
    after = datetime(2024, 5, 11, 0, 0, tzinfo=VN_TZ)
    a = send(store, [Outgoing("0905111222", "Xin chào Hà Nội")], now=early).ids[0]
    b = send(store, [Outgoing("0913000000", "Giao hàng", final_at=late)], now=late).ids[0]
    c = send(store, [Outgoing("0905333444", "other")], now=before).ids[0]
    d = send(store, [Outgoing("0909000000", "next day")], now=after).ids[0]
    free = Outgoing("0905999999", "free")
    e = send(store, [free], service_type_id=TEST_CHANNEL, now=early, charge=False).ids[0]
    send(store, [Outgoing("0905111222", "Xin chào")], client_no="C2", now=early)

    def ids(
        *,
        from_day: date | None = None,
        to_day: date | None = None,
        status: int | None = None,
        service_type_id: int | None = None,
        key: str = "",
    ) -> set[int | None]:
        rows = store.sent_page(
            "C1",
            1,
            from_day=from_day,
            to_day=to_day,
            status=status,
            service_type_id=service_type_id,
            key=key,
        )
        return {r.id for r in rows}

    assert ids() == {a, b, c, d, e}
    assert ids(from_day=day, to_day=day) == {a, b, e}
    assert ids(from_day=day) == {a, b, d, e}
    assert ids(to_day=day) == {a, b, c, e}
    assert ids(from_day=day + timedelta(days=1), to_day=day) == set()
    assert ids(status=int(SmsStatus.SENT_SUCCESS)) == {b}
    assert ids(status=int(SmsStatus.PENDING)) == {a, c, d, e}
    assert ids(service_type_id=TEST_CHANNEL) == {e}
    assert ids(key="0905") == {a, c, e}
    assert ids(key="CHÀO") == {a}
    assert ids(key="hàng") == {b}
    assert ids(key="%") == set()
    assert ids(key="0905", from_day=day, to_day=day, service_type_id=HOSTING) == {a}


def test_total_pages_counts_pages_of_twenty_matching_key(store: Store) -> None:
    assert store.total_pages("C1", "") == 0
    send(store, [msg(i) for i in range(PAGE_SIZE)])
    assert store.total_pages("C1", "") == 1
    send(store, [Outgoing("0777000000", "last one")])
    assert store.total_pages("C1", "") == 2
    assert store.total_pages("C1", "0777") == 1
    assert store.total_pages("C1", "LAST") == 1
    assert store.total_pages("C1", "nothing like it") == 0
    assert store.total_pages("C2", "") == 0


def test_statuses_follow_the_order_asked(store: Store) -> None:
    send(
        store,
        [
            msg(1, guid="a", sender_name="Brand"),
            msg(2, guid="b", final_at=NOW, final_status=SmsStatus.SENT_FAILED),
            msg(3, guid="c"),
            msg(4, guid="a"),
        ],
    )
    send(store, [msg(5, guid="b")], client_no="C2")
    rows = store.statuses("C1", ["c", "missing", "a", "b", "c"])
    assert rows == [
        SmsStatusRow("c", SmsStatus.PENDING, None),
        SmsStatusRow("a", SmsStatus.PENDING, "Brand"),
        SmsStatusRow("a", SmsStatus.PENDING, None),
        SmsStatusRow("b", SmsStatus.SENT_FAILED, None),
    ]
    assert store.statuses("C2", ["a", "b", "c"]) == [SmsStatusRow("b", SmsStatus.PENDING, None)]
    assert store.statuses("C1", []) == []


def test_statuses_of_many_guids(store: Store) -> None:
    guids = [f"g{i}" for i in range(5_000)]
    store.set_balance("C1", HOSTING, len(guids))
    send(store, [msg(i, guid=g) for i, g in enumerate(guids)])
    asked = guids[::-1]
    assert [r.guid for r in store.statuses("C1", asked)] == asked


def test_sent_since_is_a_window_of_minutes_up_to_now(store: Store) -> None:
    at = [NOW - timedelta(minutes=10, seconds=1), NOW - timedelta(minutes=10), NOW]
    ids = [send(store, [msg(i)], now=t).ids[0] for i, t in enumerate(at)]
    send(store, [msg(9)], now=NOW + timedelta(seconds=1))
    send(store, [msg(8)], client_no="C2", now=NOW)
    assert [r.id for r in store.sent_since("C1", 10, NOW)] == ids[1:]
    assert [r.id for r in store.sent_since("C1", 0, NOW)] == ids[2:]
    assert [r.id for r in store.sent_since("C1", 60, NOW)] == ids
    (row,) = store.sent_since("C1", 0, NOW)
    assert (row.phone, row.message, row.created, row.status) == (
        "0900000002",
        "Message 2",
        NOW,
        SmsStatus.PENDING,
    )
    with pytest.raises(ValueError, match="minutes"):
        store.sent_since("C1", -1, NOW)


def test_outgoing_filters_and_count_by_guid(store: Store) -> None:
    send(store, [msg(1, guid="x"), msg(2, guid="y"), msg(3, guid="x"), msg(4)])
    send(store, [msg(5, guid="x")], client_no="C2")
    assert len(store.outgoing()) == 5
    assert [s.phone for s in store.outgoing(guid="x")] == [
        "0900000001",
        "0900000003",
        "0900000005",
    ]
    assert [s.phone for s in store.outgoing(client_no="C1", guid="x")] == [
        "0900000001",
        "0900000003",
    ]
    assert store.count_by_guid("C1") == {"x": 2, "y": 1}
    assert store.count_by_guid("C2") == {"x": 1}
    assert store.count_by_guid("nobody") == {}


# -- incoming -------------------------------------------------------------------------------------


def _incoming(store: Store, client_no: str, created: datetime, **kwargs: object) -> int:
    fields: dict[str, object] = {
        "phone": "84913122005",
        "message": "FIBO DEMO",
        "service_type_id": 229,
        "service_type_name": "8022(FIBO)",
        "created": created,
    }
    fields.update(kwargs)
    return store.add_incoming(client_no, **fields)  # type: ignore[arg-type]


def test_incoming_rows_keep_every_field(store: Store) -> None:
    sent = NOW + timedelta(minutes=1)
    new_id = _incoming(store, "C1", NOW, status=IncomingStatus.CONFIRMED, sent=sent)
    (row,) = store.incoming_since("C1", 1, NOW)
    assert row.id == new_id
    assert (row.phone, row.message) == ("84913122005", "FIBO DEMO")
    assert row.status is IncomingStatus.CONFIRMED
    assert (row.created, row.sent) == (NOW, sent)
    assert row.created is not None
    assert row.created.tzinfo is VN_TZ
    assert (row.service_type_id, row.service_type_name) == (229, "8022(FIBO)")
    with pytest.raises(ValueError, match="nobody"):
        _incoming(store, "nobody", NOW)


def test_incoming_since_is_a_window_of_minutes(store: Store) -> None:
    old = _incoming(store, "C1", NOW - timedelta(minutes=5, seconds=1))
    edge = _incoming(store, "C1", NOW - timedelta(minutes=5))
    fresh = _incoming(store, "C1", NOW)
    _incoming(store, "C1", NOW + timedelta(seconds=1))
    _incoming(store, "C2", NOW)
    assert [r.id for r in store.incoming_since("C1", 5, NOW)] == [edge, fresh]
    assert [r.id for r in store.incoming_since("C1", 6, NOW)] == [old, edge, fresh]
    assert store.incoming_since("C2", 5, NOW - timedelta(hours=1)) == []


def test_incoming_range_uses_vietnam_days_and_filters(store: Store) -> None:
    day = date(2024, 5, 10)
    a = _incoming(store, "C1", datetime(2024, 5, 10, 0, 0, tzinfo=VN_TZ), message="Đăng ký")
    b = _incoming(
        store,
        "C1",
        datetime(2024, 5, 10, 23, 59, 59, tzinfo=VN_TZ),
        phone="84909000000",
        status=IncomingStatus.WRONG_SYNTAX,
        service_type_id=1,
        service_type_name="19001733",
    )
    c = _incoming(store, "C1", datetime(2024, 5, 9, 23, 59, 59, tzinfo=VN_TZ))
    d = _incoming(store, "C1", datetime(2024, 5, 11, 0, 0, tzinfo=VN_TZ))
    _incoming(store, "C2", datetime(2024, 5, 10, 12, 0, tzinfo=VN_TZ))

    def ids(
        from_day: date,
        to_day: date,
        *,
        status: int | None = None,
        service_type_id: int | None = None,
        key: str = "",
    ) -> list[int | None]:
        rows = store.incoming_range(
            "C1",
            from_day=from_day,
            to_day=to_day,
            status=status,
            service_type_id=service_type_id,
            key=key,
        )
        return [r.id for r in rows]

    assert ids(day, day) == [a, b]
    assert ids(day - timedelta(days=1), day + timedelta(days=1)) == [c, a, b, d]
    assert ids(day, day, status=int(IncomingStatus.WRONG_SYNTAX)) == [b]
    assert ids(day, day, status=int(IncomingStatus.JUST_RECEIVED)) == [a]
    assert ids(day, day, service_type_id=229) == [a]
    assert ids(day, day, key="84909") == [b]
    assert ids(day, day, key="ĐĂNG") == [a]
    assert ids(day + timedelta(days=1), day) == []


def test_the_first_and_last_days_a_date_can_name_leave_a_day_range_open(store: Store) -> None:
    # Noon in Vietnam on the first and the last day a date can name, and a day in between.
    at = [datetime.combine(d, time(12), VN_TZ) for d in (date.min, NOW.date(), date.max)]
    sent = [send(store, [msg(i)], now=t).ids[0] for i, t in enumerate(at)]
    received = [_incoming(store, "C1", t) for t in at]

    def read(from_day: date, to_day: date) -> tuple[list[int | None], list[int | None]]:
        page = store.sent_page(
            "C1", 1, from_day=from_day, to_day=to_day, status=None, service_type_id=None, key=""
        )
        ranged = store.incoming_range(
            "C1", from_day=from_day, to_day=to_day, status=None, service_type_id=None, key=""
        )
        return sorted(r.id or 0 for r in page), [r.id for r in ranged]

    assert read(date.min, date.max) == (sent, received)
    assert read(date.max, date.max) == (sent[2:], received[2:])
    assert read(date.min, date.min) == (sent[:1], received[:1])
    assert read(NOW.date(), date.max) == (sent[1:], received[1:])
    assert read(date.min, NOW.date()) == (sent[:2], received[:2])


def test_a_minutes_window_too_long_for_a_float_reaches_back_past_every_row(store: Store) -> None:
    at = [datetime.combine(date.min, time(12), VN_TZ), NOW]
    sent = [send(store, [msg(i)], now=t).ids[0] for i, t in enumerate(at)]
    received = [_incoming(store, "C1", t) for t in at]
    endless = 10**400  # minutes * 60 does not fit a float
    assert [r.id for r in store.sent_since("C1", endless, NOW)] == sent
    assert [r.id for r in store.incoming_since("C1", endless, NOW)] == received


# -- instants -------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    instant=st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, VN_TZ]),
    )
)
def test_instants_come_back_equal_in_vietnam_time(instant: datetime) -> None:
    with Store() as store:
        seed(store)
        store.add_sender_name("C1", "Brand", created=instant)
        (row,) = store.sender_names("C1")
    assert row.created == instant
    assert row.created is not None
    assert row.created.utcoffset() == timedelta(hours=7)


# -- the state a message is written in ----------------------------------------------------------


def expected_state(message: Outgoing, at: datetime) -> tuple[SmsStatus, datetime | None]:
    """The documented timeline: Pending until sending_at, Sending until final_at, then final."""
    if message.final_at is not None and message.final_at <= at:
        return SmsStatus(message.final_status), message.final_at
    if message.sending_at is not None and message.sending_at <= at:
        return SmsStatus.SENDING, None
    return SmsStatus.PENDING, None


instants = st.one_of(st.none(), st.integers(min_value=-3, max_value=3))


@settings(max_examples=80, deadline=None)
@given(
    timelines=st.lists(st.tuples(instants, instants), min_size=1, max_size=3),
    later=st.integers(min_value=0, max_value=4),
)
def test_a_message_is_stored_in_its_state_at_now_and_moves_on_from_there(
    timelines: list[tuple[int | None, int | None]], later: int
) -> None:
    def at(offset: int | None) -> datetime | None:
        return None if offset is None else NOW + timedelta(seconds=offset)

    messages = []
    for n, (sending, final) in enumerate(timelines):
        if sending is not None and final is not None and sending > final:
            sending, final = final, sending
        messages.append(
            msg(n, final_status=SmsStatus.SENT_FAILED, sending_at=at(sending), final_at=at(final))
        )
    with Store() as store:
        seed(store)
        assert send(store, messages).accepted
        assert [(s.status, s.sent) for s in store.outgoing()] == [
            expected_state(m, NOW) for m in messages
        ]
        then = NOW + timedelta(seconds=later)
        store.advance(then)
        assert [(s.status, s.sent) for s in store.outgoing()] == [
            expected_state(m, then) for m in messages
        ]


# -- group commit -------------------------------------------------------------------------------


def test_a_batch_commits_its_calls_together(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    with Store(path) as store, Store(path) as other:
        seed(store)
        with store.batch():
            first = send(store, [msg(1, guid="a")])
            second = send(store, [msg(2, guid="b")])
            # Inside the batch each call sees what the calls before it did...
            assert store.balance("C1", HOSTING) == 98
            # ...and no other connection sees any of it before the commit.
            assert other.outgoing() == []
            assert other.balance("C1", HOSTING) == 100
        assert first.accepted
        assert second.accepted
        assert [s.guid for s in other.outgoing()] == ["a", "b"]
        assert other.balance("C1", HOSTING) == 98


def test_a_call_that_fails_inside_a_batch_leaves_no_trace_and_the_others_stay(
    store: Store,
) -> None:
    with store.batch():
        send(store, [msg(1, guid="kept")])
        with pytest.raises(ValueError, match="already exists"):
            store.add_account("C1", "other", "Someone Else")
        with pytest.raises(TypeError):
            store.submit("C1", HOSTING, [msg(2)], now=NOW, operation=None, protocol="get")  # type: ignore[arg-type]
        send(store, [msg(3, guid="also kept")])
        assert store.authenticate("C1", "pass1") == "Client One"
    assert [s.guid for s in store.outgoing()] == ["kept", "also kept"]
    assert store.balance("C1", HOSTING) == 98


def test_a_deferred_insert_that_fails_rolls_the_whole_batch_back(store: Store) -> None:
    def broken_batch() -> None:
        with store.batch():
            send(store, [msg(1, guid="fine")])
            # Taken at once, stored at the batch's INSERT, where the value cannot be bound.
            assert send(store, [msg(2, sender_name=object())]).accepted
            with pytest.raises(sqlite3.ProgrammingError):
                store.outgoing()  # a read of the sent messages inserts them first
            with pytest.raises(RuntimeError, match="rolled back"):
                send(store, [msg(3)])

    with pytest.raises(RuntimeError, match="rolled back"):
        broken_batch()
    assert store.outgoing() == []
    assert store.balance("C1", HOSTING) == 100
    with store.batch():
        send(store, [msg(4)])
    assert len(store.outgoing()) == 1


@contextmanager
def plain_and_batched(
    tmp_path: Path, script: Callable[[Store], list[object]]
) -> Iterator[tuple[Store, Store]]:
    """Two seeded stores after ``script``: one ran it call by call, the other inside one batch,
    and the script saw the same results in both."""
    with Store(tmp_path / "plain.sqlite3") as plain, Store(tmp_path / "batch.sqlite3") as batched:
        seed(plain)
        seed(batched)
        expected = script(plain)
        with batched.batch():
            got = script(batched)
        assert got == expected
        yield plain, batched


def test_ids_and_reads_inside_a_batch_are_as_without_one(tmp_path: Path) -> None:
    def script(store: Store) -> list[object]:
        seen: list[object] = [send(store, [msg(1, guid="a")]).ids]
        seen.append(send(store, [msg(2, guid="b"), msg(3, guid="c")]).ids)
        seen.append([s.guid for s in store.outgoing()])
        seen.append(send(store, [msg(4, guid="d")], charge=False).ids)
        seen.append(store.count_by_guid("C1"))
        seen.append(send(store, [msg(n) for n in range(200)]).reason)
        seen.append(store.balance("C1", HOSTING))
        return seen

    with plain_and_batched(tmp_path, script) as (plain, batched):
        assert [s.guid for s in batched.outgoing()] == [s.guid for s in plain.outgoing()]


def test_a_batch_of_more_rows_than_one_insert_takes_stores_each_as_without_one(
    tmp_path: Path,
) -> None:
    # The deferred rows are written many to a statement (store._INSERT_CHUNK): single sends and
    # lists that straddle the statements' boundaries land whole, in order, column for column.
    def script(store: Store) -> list[object]:
        seen: list[object] = []
        for n in range(40):
            seen.append(send(store, [msg(n, guid=f"s{n}", sender_name="Brand")]).ids)
        seen.append(send(store, [msg(100 + n, guid=f"l{n}") for n in range(45)]).ids)
        return seen

    with plain_and_batched(tmp_path, script) as (plain, batched):
        assert batched.outgoing() == plain.outgoing()
        assert len(plain.outgoing()) == 85
        assert batched.balance("C1", HOSTING) == plain.balance("C1", HOSTING) == 15


def test_an_exception_out_of_a_batch_rolls_every_call_back(store: Store) -> None:
    def interrupted() -> None:
        with store.batch():
            send(store, [msg(1)])
            store.set_balance("C2", HOSTING, 7)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        interrupted()
    assert store.outgoing() == []
    assert store.balance("C1", HOSTING) == 100
    assert store.balance("C2", HOSTING) == 100
    # The store is usable again, in and out of batches.
    with store.batch():
        send(store, [msg(2)])
    assert len(store.outgoing()) == 1


def test_a_batch_does_not_nest(store: Store) -> None:
    with store.batch(), pytest.raises(RuntimeError, match="already open"), store.batch():
        pass
    send(store, [msg(1)])
    assert store.balance("C1", HOSTING) == 99


def test_batches_and_single_calls_from_many_threads_never_overdraw(store: Store) -> None:
    store.set_balance("C1", HOSTING, 57)
    barrier = threading.Barrier(10)

    def worker(n: int) -> list[SubmitResult]:
        barrier.wait()
        if n % 2:
            return [send(store, [msg(n * 1000 + i)]) for i in range(20)]
        results = []
        for chunk in range(4):
            with store.batch():
                results += [send(store, [msg(n * 1000 + chunk * 5 + i)]) for i in range(5)]
        return results

    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(worker, n) for n in range(10)]
    results = [r for f in futures for r in f.result()]
    accepted = [r for r in results if r.accepted]
    assert len(results) == 200
    assert len(accepted) == 57
    assert store.balance("C1", HOSTING) == 0
    assert sorted(i for r in accepted for i in r.ids) == [s.id for s in store.outgoing()]
