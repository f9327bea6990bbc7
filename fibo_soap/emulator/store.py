"""The emulator's state in SQLite: accounts, balances, sender names, outgoing and incoming SMS.

The only module of the project with SQL. It keeps state correctly and atomically and decides nothing
about FIBO codes, magic inputs or delivery outcomes: the emulator's app does, and tells the store.

Every public method is thread-safe (the app serves from a uvicorn thread while tests call the store
from theirs) and blocking. ``batch()`` groups the calls made inside it into one transaction with
a single commit (group commit); each call stays atomic on its own. Methods that depend on the
clock take ``now`` explicitly, because the emulator's clock is its own and tests advance it.
Instants are stored as UTC epoch seconds and returned as aware datetimes in Vietnam time, as FIBO
writes them.
"""

from __future__ import annotations

import functools
import hmac
import json
import math
import os
import sqlite3
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import chain
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple, TypeVar

from fibo_soap import models
from fibo_soap.operations import PAGE_SIZE

__all__ = [
    "Outgoing",
    "StampedMessage",
    "Store",
    "StoreFileError",
    "StoredSms",
    "SubmitReason",
    "SubmitResult",
]

#: Why a submit was accepted or refused; the app maps each to a FIBO code (200, 102, 104, 103).
SubmitReason = Literal["ok", "zero_balance", "over_balance", "no_service_type"]
#: A message as submit_stamped takes it: phone, message, guid, sender_name, final_status,
#: sending_ts, final_ts (the instants as POSIX timestamps, None for never).
StampedMessage = tuple[
    str, str, str | None, str | None, models.SmsStatus, float | None, float | None
]

_SCHEMA_VERSION: Final = 2

#: The page size of a new database. Each send adds an entry to the GUID index at a random place
#: (the GUIDs clients make are random, see _guid_key), so each dirties a page of its own, which
#: its commit writes to the WAL whole: with 1 KB pages, a quarter of SQLite's default. A database
#: made with another page size keeps it.
_PAGE_BYTES: Final = 1024
#: WAL pages between automatic checkpoints: about 40 MB of WAL with 1 KB pages.
_WAL_CHECKPOINT_PAGES: Final = 40_000

# Outgoing rows carry their whole future (final_status, sending_at, final_at) from the start, and
# next_at is the next instant at which the row changes state, NULL once it never will. advance()
# then touches only due rows through the partial index, which stays small: rows leave it when final.
_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS account (
    client_no   TEXT PRIMARY KEY,
    client_pass TEXT NOT NULL,
    name        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS service_type (
    client_no       TEXT NOT NULL REFERENCES account (client_no),
    service_type_id INTEGER NOT NULL,
    name            TEXT NOT NULL,
    balance         INTEGER NOT NULL CHECK (balance >= 0),
    PRIMARY KEY (client_no, service_type_id)
);
CREATE TABLE IF NOT EXISTS sender_name (
    id        INTEGER PRIMARY KEY,
    client_no TEXT NOT NULL REFERENCES account (client_no),
    name      TEXT NOT NULL,
    status    INTEGER NOT NULL,
    created   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sender_name_client ON sender_name (client_no);
CREATE TABLE IF NOT EXISTS sms (
    id              INTEGER PRIMARY KEY,
    client_no       TEXT NOT NULL REFERENCES account (client_no),
    service_type_id INTEGER NOT NULL,
    phone           TEXT NOT NULL,
    message         TEXT NOT NULL,
    guid            TEXT,
    guid_key        INTEGER,  -- _guid_key(guid): what the GUID index holds
    sender_name     TEXT,
    status          INTEGER NOT NULL,
    created         REAL NOT NULL,
    sent            REAL,
    final_status    INTEGER NOT NULL,
    sending_at      REAL,
    final_at        REAL,
    next_at         REAL,
    operation       TEXT NOT NULL,
    protocol        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sms_client_created ON sms (client_no, created);
CREATE INDEX IF NOT EXISTS sms_guid_key ON sms (guid_key);
CREATE INDEX IF NOT EXISTS sms_due ON sms (next_at) WHERE next_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS incoming (
    id                INTEGER PRIMARY KEY,
    client_no         TEXT NOT NULL REFERENCES account (client_no),
    phone             TEXT NOT NULL,
    message           TEXT NOT NULL,
    status            INTEGER NOT NULL,
    created           REAL NOT NULL,
    sent              REAL,
    service_type_id   INTEGER NOT NULL,
    service_type_name TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incoming_client_created ON incoming (client_no, created);
CREATE TABLE IF NOT EXISTS clock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    offset_us INTEGER NOT NULL
);
PRAGMA user_version = {_SCHEMA_VERSION};
"""

_SENT_COLUMNS: Final = "id, guid, phone, message, created, sent, status"
_INCOMING_COLUMNS: Final = (
    "id, phone, message, status, created, sent, service_type_id, service_type_name"
)
_STORED_COLUMNS: Final = (
    "id, client_no, service_type_id, phone, message, guid, sender_name, status, created, sent,"
    " operation, protocol"
)

# One statement for both steps of the timeline, so a row whose final_at has also passed goes
# straight to its final status (SentDate = final_at) even when advance() was not called between.
_ADVANCE: Final = """
UPDATE sms SET
    status = CASE WHEN final_at <= :now THEN final_status ELSE :sending END,
    sent = CASE WHEN final_at <= :now THEN final_at ELSE sent END,
    next_at = CASE WHEN final_at <= :now THEN NULL ELSE final_at END
WHERE next_at IS NOT NULL AND next_at <= :now
"""
_ANY_DUE: Final = "SELECT EXISTS (SELECT 1 FROM sms WHERE next_at IS NOT NULL AND next_at <= ?)"

# Filters take NULL (or '' for key) as "no filter", which keeps every statement a constant string.
# fibo_has_key looks for the key its query registered (Store._query).
_KEY_FILTER: Final = "(:key = '' OR fibo_has_key(phone) OR fibo_has_key(message))"
_FILTER: Final = f"""
WHERE client_no = :client_no
  AND (:lo IS NULL OR created >= :lo)
  AND (:hi IS NULL OR created < :hi)
  AND (:status IS NULL OR status = :status)
  AND (:service_type_id IS NULL OR service_type_id = :service_type_id)
  AND {_KEY_FILTER}
"""

_DUMMY_SECRET: Final = b"\x00" * 32

_TAKE_BALANCE: Final = (
    "UPDATE service_type SET balance = balance - ?"
    " WHERE client_no = ? AND service_type_id = ? AND balance >= ? AND balance > 0"
)
# What a batch's submits took of a balance, written once (see Store._submit_deferred). The CHECK
# on balance stays the last word: a balance that went below zero fails the batch.
_TAKE_TAKEN: Final = (
    "UPDATE service_type SET balance = balance - ? WHERE client_no = ? AND service_type_id = ?"
)
_BALANCE: Final = "SELECT balance FROM service_type WHERE client_no = ? AND service_type_id = ?"
_SMS_COLUMNS: Final = (
    "client_no, service_type_id, phone, message, guid, guid_key, sender_name, status, created,"
    " sent, final_status, sending_at, final_at, next_at, operation, protocol"
)
_INSERT_SMS: Final = (
    f"INSERT INTO sms ({_SMS_COLUMNS})"  # noqa: S608 -- constant column list
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The whole numbers SQLite's INTEGER holds: ids, statuses, service types, balances, offsets.
INTEGER_MIN: Final = -(2**63)
INTEGER_MAX: Final = 2**63 - 1
#: Rows per INSERT of rows with their ids (see _insert_with_ids): 512 parameters, under the
#: 999 of SQLite's oldest builds.
_INSERT_CHUNK: Final = 32


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to store, with the delivery outcome the app chose for it.

    The row is Pending until ``sending_at``, Sending until ``final_at``, then ``final_status`` with
    SentDate = ``final_at``. A None instant is never reached: both None keeps it Pending forever
    (the free test channel); ``final_at`` None leaves it Sending forever once ``sending_at`` passes.
    """

    phone: str
    message: str
    guid: str | None = None
    sender_name: str | None = None
    final_status: models.SmsStatus = models.SmsStatus.SENT_SUCCESS
    sending_at: datetime | None = None
    final_at: datetime | None = None

    def __post_init__(self) -> None:
        _check_timeline(self.final_status, self.sending_at, self.final_at)


class SubmitResult(NamedTuple):
    """What submit() did: accepted with the new SMS ids in order, or refused whole and why.

    A NamedTuple rather than a frozen dataclass: every send makes one, in a third of the time.
    """

    accepted: bool
    reason: SubmitReason
    ids: tuple[int, ...] = ()


_NO_SERVICE_TYPE: Final = SubmitResult(accepted=False, reason="no_service_type")
_ZERO_BALANCE: Final = SubmitResult(accepted=False, reason="zero_balance")
_OVER_BALANCE: Final = SubmitResult(accepted=False, reason="over_balance")


def _refused(balance: int | None) -> SubmitResult:
    """The refusal of a send that met ``balance`` (None: the account has no such service type)
    and could not take it."""
    if balance is None:
        return _NO_SERVICE_TYPE
    return _ZERO_BALANCE if balance == 0 else _OVER_BALANCE


@dataclass(frozen=True, slots=True)
class StoredSms:
    """Every column of one stored outgoing SMS, for asserting what reached the gateway."""

    id: int
    client_no: str
    service_type_id: int
    phone: str
    message: str
    guid: str | None
    sender_name: str | None
    status: models.SmsStatus
    created: datetime
    sent: datetime | None
    operation: str
    protocol: str


class StoreFileError(RuntimeError):
    """The file cannot hold the emulator's state: it cannot be opened, is no SQLite database, or
    holds a schema of a later version. Nothing in it was changed."""


class Store:
    """The emulator's SQLite state; ``Store()`` is a temporary file deleted on close.

    A reopened file keeps everything. Thread-safe; every method blocks on SQLite.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._owns_file = path is None
        if path is None:
            fd, name = tempfile.mkstemp(prefix="fibo-emulator-", suffix=".sqlite3")
            os.close(fd)
            path = name
        self.path: Final = Path(path)
        # Reentrant: batch() holds it across the calls it groups, which take it again.
        self._lock = threading.RLock()
        # The state of an open batch(), only ever seen by the thread holding the lock for it.
        self._batching = False
        self._pending: list[tuple[Any, ...]] = []  # sms rows submit() left for the flush
        self._next_id: int | None = None  # the id the next deferred sms row takes
        self._accounts: dict[str, tuple[str, str] | None] = {}  # account rows read in the batch
        # Balances as the batch's submits see them (None: no such service type), and what they
        # took and left for one UPDATE; forgotten at each flush, after which anything may write.
        self._balances: dict[tuple[str, int], int | None] = {}
        self._taken: dict[tuple[str, int], int] = {}
        self._broken: BaseException | None = None  # a deferred write failed: no commit
        # Autocommit mode: every write below opens its own BEGIN IMMEDIATE, so sqlite3's implicit
        # transactions never hold a lock across calls. The timeout covers other connections to
        # the same file (another Store, another process), whose writers SQLite serializes.
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            self._remove_owned_file()
            raise StoreFileError(f"cannot open {self.path}: {exc}") from exc
        try:
            self._conn.execute(f"PRAGMA page_size = {_PAGE_BYTES}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            # A checkpoint (SQLite's default: every 1000 pages of WAL) writes back every page the
            # commits since the last one touched, once, and syncs. Under a stream of sends the
            # commits touch the same pages again and again (the GUID index's among many): the
            # more commits one checkpoint covers, the fewer writes. What a crash keeps is
            # synchronous's say.
            self._conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.create_function("fibo_has_key", 1, _has_key(""), deterministic=True)
            self._migrate()
        except BaseException as exc:
            self._conn.close()
            self._remove_owned_file()
            if isinstance(exc, sqlite3.DatabaseError):
                # Not a database, a locked or read-only one: nothing of it was changed.
                raise StoreFileError(
                    f"cannot use {self.path} as the emulator's database: {exc}"
                ) from exc
            raise

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, _SCHEMA_VERSION):
            raise StoreFileError(
                f"{self.path} holds emulator schema version {version}; "
                f"this version reads {_SCHEMA_VERSION}"
            )
        with self._write():
            if version == 1:
                # Version 1 indexed (client_no, guid): each GUID's whole text, at a random place.
                self._conn.create_function("fibo_guid_key", 1, _guid_key, deterministic=True)
                self._conn.execute("ALTER TABLE sms ADD COLUMN guid_key INTEGER")
                self._conn.execute(
                    "UPDATE sms SET guid_key = fibo_guid_key(guid) WHERE guid IS NOT NULL"
                )
                self._conn.execute("DROP INDEX IF EXISTS sms_client_guid")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)

    def close(self) -> None:
        """Closes the database (idempotent); a temporary store's file is deleted."""
        with self._lock:
            self._conn.close()
            self._remove_owned_file()

    def _remove_owned_file(self) -> None:
        if self._owns_file:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write(self) -> _Write:
        """A context that yields the connection inside BEGIN IMMEDIATE; commits, or rolls back on
        any error.

        The caller holds self._lock. IMMEDIATE takes SQLite's write lock before the first read, so
        a check and the write it guards see the same balance even across connections. Inside
        batch() the transaction is already open: a savepoint keeps this write atomic on its own,
        and the batch commits it.
        """
        if self._batching:
            self._flush()
        return _Write(self._conn, nested=self._batching)

    def _flush(self) -> None:
        """Writes what submit() deferred in the open batch (the balances taken, the rows), before
        anything that may read or change them. The caller holds self._lock.

        A failed write leaves the batch half done: it cannot commit any more, and every later
        call in it fails too.
        """
        if self._broken is not None:
            raise RuntimeError("a write of this batch failed; it is rolled back") from self._broken
        self._balances.clear()
        if self._taken or self._pending:
            taken = [(count, *key) for key, count in self._taken.items()]
            rows, self._pending = self._pending, []
            self._taken.clear()
            try:
                self._conn.executemany(_TAKE_TAKEN, taken)
                _insert_with_ids(self._conn, rows)
            except BaseException as exc:
                self._broken = exc
                raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Runs the store calls made inside it (from this thread) in one transaction, one commit.

        Group commit: the commit, SQLite's costly step, is shared by the calls. Each call is
        still atomic on its own (a call that raises leaves no trace, the others stay); nothing
        inside is durable, nor visible to other connections, until the block ends without an
        exception and the commit succeeds. An exception out of the block, or a failed commit,
        rolls every call back. Other threads wait for the batch to end. Not reentrant.

        Inside a batch, a submit checks and takes its balance in memory, from the balance read
        once, and leaves what it took and its rows for one UPDATE per balance and one INSERT per
        _INSERT_CHUNK rows, made before any other call reads or writes anything and at the end;
        an account is read once. Nothing else can write meanwhile: the batch holds SQLite's write
        lock.
        """
        with self._lock:
            if self._batching:
                raise RuntimeError("Store.batch() is already open")
            self._conn.execute("BEGIN IMMEDIATE")
            self._batching = True
            try:
                yield
                self._flush()
            except BaseException:
                self._end_batch()
                self._conn.execute("ROLLBACK")
                raise
            self._end_batch()
            _commit(self._conn)

    def _end_batch(self) -> None:
        self._batching = False
        self._pending = []
        self._next_id = None
        self._accounts.clear()
        self._balances.clear()
        self._taken.clear()
        self._broken = None

    def _query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] = (), *, key: str = ""
    ) -> list[Any]:
        """The rows of a read; ``key`` is what fibo_has_key looks for in it."""
        with self._lock:
            if self._batching:
                self._flush()
            if key:
                # The key is folded once for the query, in a function of the text alone: passed
                # to SQLite's function with each row, it was copied and folded again for each
                # (a key of megabytes over thousands of rows held the loop for seconds).
                self._conn.create_function("fibo_has_key", 1, _has_key(key), deterministic=True)
            return self._conn.execute(sql, params).fetchall()

    # -- accounts -----------------------------------------------------------------------------

    def add_account(self, client_no: str, client_pass: str, name: str) -> None:
        """Creates an account; ValueError when client_no is taken."""
        with self._lock, self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO account (client_no, client_pass, name) VALUES (?, ?, ?)",
                    (client_no, client_pass, name),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"account {client_no!r} already exists") from None
            self._accounts.pop(client_no, None)

    def authenticate(self, client_no: str, client_pass: str) -> str | None:
        """The account's name when client_no and client_pass match, else None."""
        with self._lock:
            if self._batching and client_no in self._accounts:
                account = self._accounts[client_no]
            else:
                rows = self._query(
                    "SELECT client_pass, name FROM account WHERE client_no = ?", (client_no,)
                )
                account = (str(rows[0][0]), str(rows[0][1])) if rows else None
                if self._batching:
                    self._accounts[client_no] = account
        # Compared as UTF-8 bytes: compare_digest refuses non-ASCII str. An unknown account still
        # costs one comparison so the two refusals take about the same time.
        stored = account[0].encode() if account else _DUMMY_SECRET
        matches = hmac.compare_digest(stored, client_pass.encode())
        return account[1] if account and matches else None

    def account_exists(self, client_no: str) -> bool:
        """True when the account exists."""
        return bool(self._query("SELECT 1 FROM account WHERE client_no = ?", (client_no,)))

    def password(self, client_no: str) -> str | None:
        """The account's password, for an emulator restarted on the same database to announce."""
        rows = self._query("SELECT client_pass FROM account WHERE client_no = ?", (client_no,))
        return str(rows[0][0]) if rows else None

    # -- service types and balances -----------------------------------------------------------

    def add_service_type(
        self, client_no: str, service_type_id: int, name: str, balance: int
    ) -> None:
        """Gives the account a service type with a balance.

        ValueError for a duplicate, an unknown account or a negative balance.
        """
        _require_balance(balance)
        with self._lock, self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO service_type (client_no, service_type_id, name, balance)"
                    " VALUES (?, ?, ?, ?)",
                    (client_no, service_type_id, name, balance),
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(
                    f"cannot add service type {service_type_id} to {client_no!r}: {exc}"
                ) from None

    def clock_offset(self) -> int:
        """How far the emulator's clock was moved ahead of real time, in microseconds (0 when it
        never was)."""
        rows = self._query("SELECT offset_us FROM clock WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    def set_clock_offset(self, offset_us: int) -> None:
        """Keeps how far the emulator's clock is ahead of real time, for a restart."""
        with self._lock, self._write() as conn:
            conn.execute(
                "INSERT INTO clock (id, offset_us) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET offset_us = excluded.offset_us",
                (offset_us,),
            )

    def set_balance(self, client_no: str, service_type_id: int, balance: int) -> None:
        """Sets the messages left; KeyError when the account has no such service type."""
        _require_balance(balance)
        with self._lock, self._write() as conn:
            changed = conn.execute(
                "UPDATE service_type SET balance = ? WHERE client_no = ? AND service_type_id = ?",
                (balance, client_no, service_type_id),
            ).rowcount
            if changed != 1:
                raise KeyError(f"{client_no!r} has no service type {service_type_id}")

    def balance(self, client_no: str, service_type_id: int) -> int | None:
        """The messages left on a service type; None when the account has no such service type."""
        rows = self._query(_BALANCE, (client_no, service_type_id))
        return int(rows[0][0]) if rows else None

    def hosting_balances(self, client_no: str) -> list[models.HostingBalance]:
        """The account's service types with their balances, by service type id."""
        rows = self._query(
            "SELECT name, balance FROM service_type WHERE client_no = ? ORDER BY service_type_id",
            (client_no,),
        )
        return [models.HostingBalance(service_type_name=n, balance=b) for n, b in rows]

    # -- sender names -------------------------------------------------------------------------

    def add_sender_name(
        self, client_no: str, name: str, *, status: int = 1, created: datetime
    ) -> None:
        """Registers a sender (brand) name; ValueError for an unknown account."""
        created_ts = _ts(created)
        with self._lock, self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO sender_name (client_no, name, status, created)"
                    " VALUES (?, ?, ?, ?)",
                    (client_no, name, status, created_ts),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"account {client_no!r} does not exist") from None

    def sender_names(self, client_no: str) -> list[models.SenderName]:
        """The account's sender names in the order they were registered."""
        rows = self._query(
            "SELECT name, status, created FROM sender_name WHERE client_no = ? ORDER BY id",
            (client_no,),
        )
        return [models.SenderName(name=n, status=s, created=_dt(c)) for n, s, c in rows]

    # -- outgoing -----------------------------------------------------------------------------

    def submit(
        self,
        client_no: str,
        service_type_id: int,
        messages: Sequence[Outgoing],
        *,
        now: datetime,
        operation: str,
        protocol: str,
        charge: bool = True,
    ) -> SubmitResult:
        """Stores all messages and takes one message of balance each, or refuses the whole batch.

        Refusals store nothing and leave the balance alone: ``no_service_type`` (the account has no
        such service type, or no such account), and when charging, ``zero_balance`` and
        ``over_balance`` (more messages than the balance). Messages already due at ``now`` are
        stored in the state they have at ``now``.
        """
        stamped = [
            (
                m.phone,
                m.message,
                m.guid,
                m.sender_name,
                m.final_status,
                None if m.sending_at is None else m.sending_at.timestamp(),
                None if m.final_at is None else m.final_at.timestamp(),
            )
            for m in messages
        ]
        return self.submit_stamped(
            client_no,
            service_type_id,
            stamped,
            now_ts=_ts(now),
            operation=operation,
            protocol=protocol,
            charge=charge,
        )

    def submit_stamped(
        self,
        client_no: str,
        service_type_id: int,
        messages: Iterable[StampedMessage],
        *,
        now_ts: float,
        operation: str,
        protocol: str,
        charge: bool = True,
    ) -> SubmitResult:
        """``submit()`` of messages given as ``(phone, message, guid, sender_name, final_status,
        sending_ts, final_ts)``, their instants and ``now_ts`` as POSIX timestamps.

        The list sends' path: the same checks (ValueError for an impossible timeline), rows and
        result, with no Outgoing nor datetime made for each message.
        """
        rows = []
        for phone, message, guid, sender_name, final_status, sending_ts, final_ts in messages:
            _check_order(final_status, sending_ts, final_ts)
            rows.append(
                _row(phone, message, guid, sender_name, final_status, sending_ts, final_ts, now_ts)
            )
        return self._submit_rows((client_no, service_type_id), rows, charge, operation, protocol)

    def submit_one(
        self,
        client_no: str,
        service_type_id: int,
        phone: str,
        message: str,
        guid: str | None = None,
        sender_name: str | None = None,
        final_status: models.SmsStatus = models.SmsStatus.SENT_SUCCESS,
        sending_ts: float | None = None,
        final_ts: float | None = None,
        *,
        now_ts: float,
        operation: str,
        protocol: str,
        charge: bool = True,
    ) -> SubmitResult:
        """``submit()`` of the one message ``Outgoing(phone, …, final_at)``, without making it,
        its instants given as POSIX timestamps (``sending_ts`` for ``sending_at``…, ``now_ts``
        for ``now``).

        The single send's path: the same checks (ValueError for an impossible timeline), the
        same row, the same result. Timestamps spare it the datetimes and their conversions: a
        tenth of a SendSMS's time in the service and store (11.3 µs to 10.1, in groups of 16).
        """
        _check_order(final_status, sending_ts, final_ts)
        row = _row(phone, message, guid, sender_name, final_status, sending_ts, final_ts, now_ts)
        return self._submit_rows((client_no, service_type_id), [row], charge, operation, protocol)

    def _submit_rows(
        self,
        key: tuple[str, int],
        rows: list[tuple[Any, ...]],
        charge: bool,
        operation: str,
        protocol: str,
    ) -> SubmitResult:
        """submit() of rows made by _row, at once or deferred in a batch."""
        count = len(rows)
        if not isinstance(operation, str) or not isinstance(protocol, str):
            raise TypeError("operation and protocol are text")
        with self._lock:
            if self._batching:
                return self._submit_deferred(key, rows, charge, operation, protocol)
            with self._write() as conn:
                if charge:
                    # The usual case in one statement: take the balance if it covers the batch.
                    taken = conn.execute(_TAKE_BALANCE, (count, *key, count)).rowcount
                    if taken != 1:
                        return _refused(self._read_balance(key))
                elif self._read_balance(key) is None:
                    return _NO_SERVICE_TYPE
                if count == 1:
                    # The common single send: the new id read back rather than looked up.
                    new_id = conn.execute(
                        _INSERT_SMS, (*key, *rows[0], operation, protocol)
                    ).lastrowid
                    return SubmitResult(accepted=True, reason="ok", ids=(int(new_id or 0),))
                first = _free_id(conn)
                _insert_with_ids(conn, _numbered(first, key, rows, operation, protocol))
                return SubmitResult(
                    accepted=True, reason="ok", ids=tuple(range(first, first + count))
                )

    def _submit_deferred(
        self,
        key: tuple[str, int],
        rows: list[tuple[Any, ...]],
        charge: bool,
        operation: str,
        protocol: str,
    ) -> SubmitResult:
        """submit() inside a batch: the balance checked and taken in memory, the rows and what
        was taken left for the batch's flush.

        The batch holds SQLite's write lock and every other call flushes first, so the balance
        read once is the balance until then: the check is the conditional UPDATE's, made on it.
        A refusal leaves nothing behind. The caller holds self._lock.
        """
        if self._broken is not None:
            self._flush()  # raises
        count = len(rows)
        balances = self._balances
        if key in balances:
            balance = balances[key]
        else:
            balance = balances[key] = self._read_balance(key)
        if balance is None or (charge and (balance < count or balance == 0)):
            return _refused(balance)
        if charge:
            balances[key] = balance - count
            self._taken[key] = self._taken.get(key, 0) + count
        first = self._next_id
        if first is None:
            # Nothing else inserts sms rows while the batch holds the write lock.
            first = _free_id(self._conn)
        self._next_id = first + count
        if count == 1:
            self._pending.append((first, *key, *rows[0], operation, protocol))
            # Positional: every single send makes one, and keywords cost it a third more.
            return SubmitResult(True, "ok", (first,))
        self._pending += _numbered(first, key, rows, operation, protocol)
        return SubmitResult(accepted=True, reason="ok", ids=tuple(range(first, first + count)))

    def _read_balance(self, key: tuple[str, int]) -> int | None:
        row = self._conn.execute(_BALANCE, key).fetchone()
        return None if row is None else int(row[0])

    def advance(self, now: datetime) -> int:
        """Moves every due outgoing SMS along its timeline to its state at ``now``; the count moved.

        Cheap when nothing is due (one indexed lookup, no write), so the app may call it before
        every read.
        """
        now_ts = _ts(now)
        with self._lock:
            if self._batching:
                self._flush()
            if not self._conn.execute(_ANY_DUE, (now_ts,)).fetchone()[0]:
                return 0
            with self._write() as conn:
                return conn.execute(_ADVANCE, _advance_params(now_ts)).rowcount

    def sent_since(self, client_no: str, minutes: int, now: datetime) -> list[models.SentSms]:
        """The account's SMS created in the last ``minutes`` up to ``now``, oldest first."""
        lo, hi = _window(minutes, now)
        rows = self._query(
            f"SELECT {_SENT_COLUMNS} FROM sms"  # noqa: S608 -- constant column list
            " WHERE client_no = ? AND created >= ? AND created <= ? ORDER BY created, id",
            (client_no, lo, hi),
        )
        return [_sent(r) for r in rows]

    def sent_page(
        self,
        client_no: str,
        page: int,
        *,
        from_day: date | None,
        to_day: date | None,
        status: int | None,
        service_type_id: int | None,
        key: str,
    ) -> list[models.SentSms]:
        """One page of the account's SMS, newest first, PAGE_SIZE rows; page 1 is the newest.

        Days are inclusive calendar days in Vietnam time (None: unbounded); ``key`` matches a
        substring of phone or message, ignoring case ('' matches all). A page past the end is
        empty; ValueError for page < 1.
        """
        if page < 1:
            raise ValueError(f"page must be 1 or more, not {page}")
        params = {
            "client_no": client_no,
            "lo": None if from_day is None else _day_start(from_day),
            "hi": None if to_day is None else _day_end(to_day),
            "status": status,
            "service_type_id": service_type_id,
            "key": key,
            "limit": PAGE_SIZE,
            # A page past what SQLite can count is as empty as any page past the end.
            "offset": min((page - 1) * PAGE_SIZE, INTEGER_MAX),
        }
        rows = self._query(
            f"SELECT {_SENT_COLUMNS} FROM sms {_FILTER}"  # noqa: S608 -- constant parts
            " ORDER BY created DESC, id DESC LIMIT :limit OFFSET :offset",
            params,
            key=key,
        )
        return [_sent(r) for r in rows]

    def total_pages(self, client_no: str, key: str) -> int:
        """How many pages of PAGE_SIZE the account's SMS matching ``key`` fill (0 when none)."""
        rows = self._query(
            f"SELECT COUNT(*) FROM sms WHERE client_no = :client_no AND {_KEY_FILTER}",  # noqa: S608 -- constant parts
            {"client_no": client_no, "key": key},
            key=key,
        )
        return -(-int(rows[0][0]) // PAGE_SIZE)

    def statuses(self, client_no: str, guids: Sequence[str]) -> list[models.SmsStatusRow]:
        """One row per stored SMS of the account with each GUID, in the order the GUIDs are asked.

        A GUID asked twice is answered once; unknown GUIDs give no row; several SMS sharing a GUID
        give a row each, oldest first.
        """
        rows = self._query(
            "SELECT guid, status, sender_name FROM sms INDEXED BY sms_guid_key"
            " WHERE guid_key IN (SELECT value FROM json_each(?))"
            " AND guid IN (SELECT value FROM json_each(?)) AND client_no = ? ORDER BY id",
            (json.dumps([_guid_key(g) for g in guids]), json.dumps(list(guids)), client_no),
        )
        by_guid: dict[str, list[models.SmsStatusRow]] = {}
        for guid, status, sender in rows:
            by_guid.setdefault(guid, []).append(
                models.SmsStatusRow(guid=guid, status=models.SmsStatus(status), sender_name=sender)
            )
        return [row for guid in dict.fromkeys(guids) for row in by_guid.get(guid, ())]

    def outgoing(self, *, client_no: str | None = None, guid: str | None = None) -> list[StoredSms]:
        """Every stored outgoing SMS, optionally of one account and/or one GUID, in id order."""
        # A GUID is looked up through its index: a test may ask after each of its sends.
        where = " WHERE" if guid is None else " INDEXED BY sms_guid_key WHERE guid_key = :key AND"
        rows = self._query(
            f"SELECT {_STORED_COLUMNS} FROM sms{where}"  # noqa: S608 -- constant parts
            " (:client_no IS NULL OR client_no = :client_no)"
            " AND (:guid IS NULL OR guid = :guid) ORDER BY id",
            {
                "client_no": client_no,
                "guid": guid,
                "key": None if guid is None else _guid_key(guid),
            },
        )
        return [
            StoredSms(
                id=r[0],
                client_no=r[1],
                service_type_id=r[2],
                phone=r[3],
                message=r[4],
                guid=r[5],
                sender_name=r[6],
                status=models.SmsStatus(r[7]),
                created=_dt(r[8]),
                sent=_dt_or_none(r[9]),
                operation=r[10],
                protocol=r[11],
            )
            for r in rows
        ]

    def count_by_guid(self, client_no: str) -> dict[str, int]:
        """How many SMS the account has stored under each GUID, in order of first use."""
        rows = self._query(
            "SELECT guid, COUNT(*) FROM sms WHERE client_no = ? AND guid IS NOT NULL"
            " GROUP BY guid ORDER BY MIN(id)",
            (client_no,),
        )
        return {g: int(n) for g, n in rows}

    # -- incoming -----------------------------------------------------------------------------

    def add_incoming(
        self,
        client_no: str,
        *,
        phone: str,
        message: str,
        service_type_id: int,
        service_type_name: str,
        status: models.IncomingStatus = models.IncomingStatus.JUST_RECEIVED,
        created: datetime,
        sent: datetime | None = None,
    ) -> int:
        """Stores an SMS sent to the account; its id. ValueError for an unknown account."""
        params = (
            client_no,
            phone,
            message,
            int(status),
            _ts(created),
            _ts_or_none(sent),
            service_type_id,
            service_type_name,
        )
        with self._lock, self._write() as conn:
            try:
                cursor = conn.execute(
                    "INSERT INTO incoming (client_no, phone, message, status, created, sent,"
                    " service_type_id, service_type_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    params,
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"account {client_no!r} does not exist") from None
            return int(cursor.lastrowid or 0)

    def incoming_since(
        self, client_no: str, minutes: int, now: datetime
    ) -> list[models.IncomingSms]:
        """The account's incoming SMS created in the last ``minutes`` to ``now``, oldest first."""
        lo, hi = _window(minutes, now)
        rows = self._query(
            f"SELECT {_INCOMING_COLUMNS} FROM incoming"  # noqa: S608 -- constant column list
            " WHERE client_no = ? AND created >= ? AND created <= ? ORDER BY created, id",
            (client_no, lo, hi),
        )
        return [_incoming(r) for r in rows]

    def incoming_range(
        self,
        client_no: str,
        *,
        from_day: date,
        to_day: date,
        status: int | None,
        service_type_id: int | None,
        key: str,
    ) -> list[models.IncomingSms]:
        """The account's incoming SMS created on the inclusive Vietnam-time days, oldest first.

        ``status`` and ``service_type_id`` None match all; ``key`` matches a substring of phone or
        message, ignoring case ('' matches all).
        """
        params = {
            "client_no": client_no,
            "lo": _day_start(from_day),
            "hi": _day_end(to_day),
            "status": status,
            "service_type_id": service_type_id,
            "key": key,
        }
        rows = self._query(
            f"SELECT {_INCOMING_COLUMNS} FROM incoming {_FILTER}"  # noqa: S608
            " ORDER BY created, id",
            params,
            key=key,
        )
        return [_incoming(r) for r in rows]


class _Write:
    """The transaction of one write (see Store._write); a class, as it is entered on every send."""

    __slots__ = ("_conn", "_nested")

    def __init__(self, conn: sqlite3.Connection, *, nested: bool) -> None:
        self._conn = conn
        self._nested = nested

    def __enter__(self) -> sqlite3.Connection:
        self._conn.execute("SAVEPOINT fibo_write" if self._nested else "BEGIN IMMEDIATE")
        return self._conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._nested:
            if exc_type is not None:
                self._conn.execute("ROLLBACK TO fibo_write")
            self._conn.execute("RELEASE fibo_write")
        elif exc_type is not None:
            self._conn.execute("ROLLBACK")
        else:
            _commit(self._conn)


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except BaseException:
        # A COMMIT that fails may leave the transaction open (SQLITE_BUSY, I/O errors): it is not
        # kept half way.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _free_id(conn: sqlite3.Connection) -> int:
    """The id the next sms row takes. Ids are assigned, not read back (a many-row INSERT cannot
    give them), under the write lock, which keeps them ours."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM sms").fetchone()[0])


def _numbered(
    first: int, key: tuple[str, int], rows: list[tuple[Any, ...]], operation: str, protocol: str
) -> list[tuple[Any, ...]]:
    """Rows made by _row as _insert_with_ids takes them: id, account and service type first,
    operation and protocol last."""
    return [(first + i, *key, *row, operation, protocol) for i, row in enumerate(rows)]


def _insert_with_ids(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Inserts sms rows given with their ids (id, then _SMS_COLUMNS), _INSERT_CHUNK per statement.

    executemany runs its one-row statement once per row (reset, bind, step); a statement of many
    rows runs once, and a group commit's rows take a quarter less time (3.0 µs a row to 2.2).
    """
    for start in range(0, len(rows), _INSERT_CHUNK):
        chunk = rows[start : start + _INSERT_CHUNK]
        conn.execute(_insert_sms_rows(len(chunk)), list(chain.from_iterable(chunk)))


@functools.cache
def _insert_sms_rows(count: int) -> str:
    # At most _INSERT_CHUNK texts: sqlite3's statement cache (128) keeps them all compiled.
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count)
    return f"INSERT INTO sms (id, {_SMS_COLUMNS}) VALUES {values}"  # noqa: S608 -- constant parts


def _check_timeline(
    final_status: models.SmsStatus, sending_at: datetime | None, final_at: datetime | None
) -> None:
    """ValueError for a timeline no message can follow (see Outgoing)."""
    _require_aware(sending_at, "sending_at")
    _require_aware(final_at, "final_at")
    _check_order(final_status, sending_at, final_at)


_Instant = TypeVar("_Instant", datetime, float)


def _check_order(
    final_status: models.SmsStatus, sending: _Instant | None, final: _Instant | None
) -> None:
    # The checks of _check_timeline that hold for datetimes and timestamps alike.
    if final is not None:
        if final_status not in _FINAL_STATUSES:
            raise ValueError(f"final_status {final_status!r} is not a final status")
        if sending is not None and sending > final:
            raise ValueError("sending_at is after final_at")


def _guid_key(guid: str) -> int:
    """What the GUID index holds for a GUID: its CRC-32, which look-ups compare before the GUID.

    Clients make random GUIDs (FiboClient's are uuid4), so each send adds its index entry at a
    random place and its commit writes that index page whole. Keys of a few bytes rather than
    the GUID's 36 characters make the index a fraction of the size: fewer pages to write and
    fewer to read back (a SOAP SendSMS 81 to 74 µs of server CPU at a few hundred thousand rows).
    GUIDs that count up, which the whole text kept side by side, now cost what random ones do
    (67 to 74 µs).
    """
    return zlib.crc32(guid.encode("utf-8", "surrogatepass"))


def _row(
    phone: str,
    message: str,
    guid: str | None,
    sender_name: str | None,
    final_status: models.SmsStatus,
    sending_ts: float | None,
    final_ts: float | None,
    now_ts: float,
) -> tuple[Any, ...]:
    """The columns phone through next_at of a new row, in its state at ``now_ts``; the instants
    (timestamps) have passed _check_order.

    Pending until the first instant given; a row with a transition already due (no delivery
    delay) is written as _ADVANCE would leave it, rather than moved on by a second statement.
    """
    if not isinstance(phone, str) or not isinstance(message, str):
        raise TypeError("a message's phone and text are text")
    if guid is not None and not isinstance(guid, str):
        raise TypeError("a message's GUID is text")
    status = _PENDING
    sent = None
    next_at = final_ts if sending_ts is None else sending_ts
    if next_at is not None and next_at <= now_ts:
        if final_ts is not None and final_ts <= now_ts:
            status, sent, next_at = int(final_status), final_ts, None
        else:
            status, next_at = _SENDING, final_ts
    return (
        phone,
        message,
        guid,
        None if guid is None else _guid_key(guid),
        sender_name,
        status,
        now_ts,
        sent,
        int(final_status),
        sending_ts,
        final_ts,
        next_at,
    )


_FINAL_STATUSES: Final = frozenset(s for s in models.SmsStatus if s.is_final)
_PENDING: Final = int(models.SmsStatus.PENDING)
_SENDING: Final = int(models.SmsStatus.SENDING)


def _advance_params(now_ts: float) -> dict[str, Any]:
    return {"now": now_ts, "sending": int(models.SmsStatus.SENDING)}


def _has_key(key: str) -> Callable[[str | None], bool]:
    """Whether a text holds ``key``, case ignored: casefold rather than SQLite's LIKE, whose case
    folding is ASCII only (keys are often Vietnamese text, and FIBO's SQL Server collation
    ignores case)."""
    folded = key.casefold()

    def has_key(text: str | None) -> bool:
        return text is not None and folded in text.casefold()

    return has_key


def _require_aware(value: datetime | None, name: str) -> None:
    # A naive datetime would be read as the host's local time by timestamp(): wrong silently.
    if value is not None and value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def _require_balance(balance: int) -> None:
    if balance < 0:
        raise ValueError(f"balance must be 0 or more, not {balance}")


def _ts(value: datetime) -> float:
    _require_aware(value, "datetime")
    return value.timestamp()


def _ts_or_none(value: datetime | None) -> float | None:
    return None if value is None else _ts(value)


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, models.VN_TZ)


def _dt_or_none(value: float | None) -> datetime | None:
    return None if value is None else _dt(value)


def _day_start(day: date) -> float:
    return datetime.combine(day, time(), models.VN_TZ).timestamp()


def _day_end(day: date) -> float | None:
    # The exclusive upper bound of an inclusive last day: the next day's start, None (no bound)
    # after the last day a date can name, 31 December 9999, which has no next day.
    return None if day == date.max else _day_start(day + timedelta(days=1))


def _window(minutes: int, now: datetime) -> tuple[float, float]:
    if minutes < 0:
        raise ValueError(f"minutes must be 0 or more, not {minutes}")
    hi = _ts(now)
    try:
        lo = hi - minutes * 60
    except OverflowError:
        # The wire's minutes have no upper limit; a window too long for a float reaches back
        # past every instant.
        lo = -math.inf
    return lo, hi


def _sent(row: Any) -> models.SentSms:
    sms_id, guid, phone, message, created, sent, status = row
    return models.SentSms(
        id=sms_id,
        guid=guid,
        phone=phone,
        message=message,
        created=_dt(created),
        sent=_dt_or_none(sent),
        status=models.SmsStatus(status),
    )


def _incoming(row: Any) -> models.IncomingSms:
    sms_id, phone, message, status, created, sent, service_type_id, service_type_name = row
    return models.IncomingSms(
        id=sms_id,
        phone=phone,
        message=message,
        status=models.IncomingStatus(status),
        created=_dt(created),
        sent=_dt_or_none(sent),
        service_type_id=service_type_id,
        service_type_name=service_type_name,
    )
