"""Large sends: chunking, bounded concurrency, a crash-safe journal, and reconciliation.

``send_many(client, messages, journal="campaign.db")`` streams any iterable of messages (nothing is
held whole in memory), gives each a GUID that depends only on the campaign and the message's
position, and sends them in chunks through SendSMSWithMultiMessage (SendBulkSMS only with
``bulk=True``) from a small pool of threads. It yields one :class:`Outcome` per message: accepted,
rejected by FIBO (``ListWrongPhoneNumber``), refused locally (bad number, text too long), not sent,
or ambiguous.

The journal (SQLite, WAL) makes a campaign safe to run again after anything: each chunk's rows are
committed as ``submitted`` before its request goes out and updated with the answer after. A rerun
with the same journal and the same input first asks GetSMSStatus about every row whose fate is
unknown, then sends only what the gateway never took. Since a message's GUID is the same on every
run, a message that reached the gateway is found there whatever the journal missed.

How the pieces fit: :class:`SendPlan` decides everything (what to read, which chunk goes next under
the balance, what an answer means, what the journal records) and does no network I/O; a
:class:`Gateway` does the network I/O (:class:`ClientGateway` over a FiboClient); ``send_many``
drives the two with threads (:class:`Sending`). ``send_many_async`` (``AsyncFiboClient.send_many``)
drives the same plan and journal with asyncio tasks (:class:`AsyncSending` over an
:class:`AsyncGateway`); the look-ups of a resume (``_resolve_flow``) and of ``reconcile`` and
``areconcile`` (``_reconcile_flow``) are flows run either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import json
import os
import sqlite3
import string
import threading
import time
import uuid
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Protocol,
    TextIO,
    TypeVar,
    cast,
    runtime_checkable,
)

from fibo_soap import phone as phones
from fibo_soap import text as texts
from fibo_soap.errors import (
    AmbiguousSendError,
    BalanceError,
    FiboError,
    InvalidInputError,
    MessageTooLongError,
)
from fibo_soap.models import BatchReceipt, Message, SmsStatus, SmsStatusRow, guid_text
from fibo_soap.operations import MAX_MESSAGE_CHARS, TEST_SERVICE_TYPE

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

    from fibo_soap.client import AsyncFiboClient, FiboClient, _Client

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_CONCURRENCY",
    "AsyncGateway",
    "AsyncSending",
    "Campaign",
    "ClientGateway",
    "CsvSource",
    "Gateway",
    "Journal",
    "JournalMismatchError",
    "JournalState",
    "Outcome",
    "OutcomeState",
    "ReconcileReport",
    "Refusal",
    "SendPlan",
    "Sending",
    "Summary",
    "areconcile",
    "aresolve",
    "reconcile",
    "resolve",
    "send_many",
    "send_many_async",
    "summarize",
]

#: Messages per request. 500 keeps a request near 100 kB, far below what servers accept.
DEFAULT_CHUNK_SIZE: Final = 500
#: Requests in flight at once.
DEFAULT_CONCURRENCY: Final = 4
#: GUIDs per GetSMSStatus request when resolving or reconciling.
LOOKUP_BATCH: Final = 500
#: Seconds to wait, after a send whose fate is unknown, before GetSMSStatus is trusted to say
#: "absent" (the request may still be running on the server). As RetryPolicy.settle.
DEFAULT_SETTLE: Final = 2.0
MAX_CHUNK_SIZE: Final = 10_000

_SCHEMA_VERSION: Final = 1

T = TypeVar("T")
_ClientT = TypeVar("_ClientT", bound="_Client[Any]")


# --- outcomes ----------------------------------------------------------------------------------


class OutcomeState(StrEnum):
    """What became of one message in a run of ``send_many``."""

    ACCEPTED = "accepted"  # the gateway took it (code 200, or found by GetSMSStatus)
    REJECTED = "rejected"  # FIBO refused the number (ListWrongPhoneNumber)
    REFUSED = "refused"  # refused locally before sending: bad number, text too long, bad row
    NOT_SENT = "not_sent"  # certainly not taken: the balance ran out, or the campaign stopped
    AMBIGUOUS = "ambiguous"  # may or may not have been taken; a rerun looks it up first


@dataclass(frozen=True, slots=True)
class Outcome:
    """One message's outcome: its position in the input, GUID, phone (as given), state, FIBO's
    code when FIBO answered (200, 101, 102, 104, ...), a reason for anything but acceptance, and
    ``resumed`` when a previous run with the same journal settled it."""

    index: int
    guid: str
    phone: str
    state: OutcomeState
    code: int | None = None
    reason: str | None = None
    resumed: bool = False


@dataclass(slots=True)
class Summary:
    """Counts of a run's outcomes, why it stopped early (``stopped``: None, ``"balance"`` or
    ``"error"``), the error that stopped it, and the balance left as the run saw it."""

    accepted: int = 0
    rejected: int = 0
    refused: int = 0
    not_sent: int = 0
    ambiguous: int = 0
    resumed: int = 0
    requests: int = 0
    stopped: str | None = None
    error: BaseException | None = None
    balance: int | None = None
    elapsed: float = 0.0

    @property
    def total(self) -> int:
        """Every message the run gave an outcome to."""
        return self.accepted + self.rejected + self.refused + self.not_sent + self.ambiguous

    @property
    def rate(self) -> float:
        """Messages per second over the run (0 before it has taken any time)."""
        return self.total / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def complete(self) -> bool:
        """True when nothing is left to send or to look up: every message was accepted,
        rejected or refused."""
        return self.not_sent == 0 and self.ambiguous == 0 and self.stopped is None

    def add(self, outcome: Outcome) -> None:
        """Count one outcome."""
        state = outcome.state
        if state is OutcomeState.ACCEPTED:
            self.accepted += 1
        elif state is OutcomeState.REJECTED:
            self.rejected += 1
        elif state is OutcomeState.REFUSED:
            self.refused += 1
        elif state is OutcomeState.NOT_SENT:
            self.not_sent += 1
        else:
            self.ambiguous += 1
        if outcome.resumed:
            self.resumed += 1

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {
            "total": self.total,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "refused": self.refused,
            "not_sent": self.not_sent,
            "ambiguous": self.ambiguous,
            "resumed": self.resumed,
            "requests": self.requests,
            "stopped": self.stopped,
            "error": None if self.error is None else str(self.error),
            "balance": self.balance,
            "elapsed": round(self.elapsed, 3),
            "rate": round(self.rate, 1),
            "complete": self.complete,
        }


def summarize(outcomes: Iterable[Outcome]) -> Summary:
    """The counts of ``outcomes`` (consumed); ``stopped``, ``balance`` and timing stay unset."""
    summary = Summary()
    for outcome in outcomes:
        summary.add(outcome)
    return summary


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """An input entry that cannot become a message (a bad CSV row, a template that failed): it
    gets a REFUSED outcome and a journal row like any refused message, and keeps its position."""

    phone: str
    reason: str


Entry = Message | tuple[str, str] | tuple[str, str, str | None] | Refusal


class JournalMismatchError(InvalidInputError):
    """The journal belongs to another campaign, account or input than the one given."""


# --- the journal -------------------------------------------------------------------------------


class JournalState(StrEnum):
    """A journal row's state.

    A chunk's rows are written ``submitted`` just before its request goes out, then become
    ``accepted`` / ``rejected`` / ``ambiguous`` / ``not_sent``, and ``delivered`` / ``failed`` once
    reconciled; ``refused`` is what never left the machine. ``queued`` is a row a look-up found
    absent at the gateway after a stop. ``queued`` and ``not_sent`` are certainly not at the
    gateway and go out on the next run; ``submitted`` and ``ambiguous`` may be, and are looked up
    first.
    """

    QUEUED = "queued"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REFUSED = "refused"
    NOT_SENT = "not_sent"
    AMBIGUOUS = "ambiguous"
    DELIVERED = "delivered"
    FAILED = "failed"

    @property
    def settled(self) -> bool:
        """True once the message will never be sent again (taken, rejected or refused)."""
        return self in _SETTLED

    @property
    def is_final(self) -> bool:
        """True once the row will not change any more: delivered, failed, rejected, refused."""
        return self in _FINAL

    @property
    def unresolved(self) -> bool:
        """True when the gateway may or may not have the message."""
        return self in (JournalState.SUBMITTED, JournalState.AMBIGUOUS)


_FINAL: Final = frozenset(
    {JournalState.DELIVERED, JournalState.FAILED, JournalState.REJECTED, JournalState.REFUSED}
)
_SETTLED: Final = _FINAL | {JournalState.ACCEPTED}
_AS_OUTCOME: Final = {
    JournalState.ACCEPTED: OutcomeState.ACCEPTED,
    JournalState.DELIVERED: OutcomeState.ACCEPTED,
    JournalState.FAILED: OutcomeState.ACCEPTED,
    JournalState.REJECTED: OutcomeState.REJECTED,
    JournalState.REFUSED: OutcomeState.REFUSED,
    JournalState.SUBMITTED: OutcomeState.AMBIGUOUS,
    JournalState.AMBIGUOUS: OutcomeState.AMBIGUOUS,
}

_SCHEMA: Final = f"""
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS message (
    idx        INTEGER PRIMARY KEY,
    guid       TEXT NOT NULL,
    phone      TEXT NOT NULL,
    digest     BLOB NOT NULL,
    state      TEXT NOT NULL,
    code       INTEGER,
    reason     TEXT,
    sms_status INTEGER,
    attempts   INTEGER NOT NULL DEFAULT 0,
    updated    REAL NOT NULL
);
PRAGMA user_version = {_SCHEMA_VERSION};
"""

_SUBMIT: Final = """
INSERT INTO message (idx, guid, phone, digest, state, attempts, updated)
VALUES (?, ?, ?, ?, 'submitted', 1, ?)
ON CONFLICT (idx) DO UPDATE SET
    state = 'submitted', code = NULL, reason = NULL, attempts = attempts + 1,
    updated = excluded.updated
"""
_RECORD: Final = """
INSERT INTO message (idx, guid, phone, digest, state, code, reason, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (idx) DO UPDATE SET
    state = excluded.state, code = excluded.code, reason = excluded.reason,
    updated = excluded.updated
"""
_UPDATE: Final = "UPDATE message SET state = ?, code = ?, reason = ?, updated = ? WHERE idx = ?"
_STATUS: Final = "UPDATE message SET state = ?, sms_status = ?, updated = ? WHERE idx = ?"

_EXPORT_COLUMNS: Final = (
    "row",
    "guid",
    "phone",
    "state",
    "sms_status",
    "sms_status_name",
    "code",
    "reason",
    "attempts",
    "updated",
)


@dataclass(frozen=True, slots=True)
class JournalRow:
    """A journal row as the plan reads it back."""

    index: int
    guid: str
    phone: str
    digest: bytes
    state: JournalState
    code: int | None
    reason: str | None


class Journal:
    """A campaign's journal: one SQLite file (WAL), one row per input message.

    Every write is one transaction, committed before the call that depends on it returns; rows
    are ``submitted`` with an fsync before their request goes out, so a crash (a kill -9, a power
    cut) never leaves a request out that the journal does not know of.
    Use it from one thread; ``lock()`` keeps two processes from running one campaign at once.
    ``create=False`` refuses a path where no journal exists.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise InvalidInputError(f"{self.path}: no such journal", field="journal")
        self._lock_handle: TextIO | None = None
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            tables = self._conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'"
            ).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise InvalidInputError(
                f"{self.path} is not a campaign journal ({exc})", field="journal"
            ) from None
        if version == 0 and tables == 0:
            self._conn.executescript(_SCHEMA)
        elif version != _SCHEMA_VERSION:
            self._conn.close()
            raise InvalidInputError(
                f"{self.path} is not a campaign journal of this version "
                f"(schema {version}, expected {_SCHEMA_VERSION})",
                field="journal",
            )

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock and close the database."""
        self.unlock()
        self._conn.close()

    @contextlib.contextmanager
    def _write(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        # Only "submitted" must be on disk before the request goes out (durable: fsync at
        # COMMIT). Any other write lost to a power cut leaves a row the next run looks up or
        # derives again; and in WAL mode the next durable commit syncs the ones before it.
        if durable:
            self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            if durable:
                self._conn.execute("PRAGMA synchronous = NORMAL")
            raise
        self._conn.execute("COMMIT")
        if durable:
            self._conn.execute("PRAGMA synchronous = NORMAL")

    # --- one campaign at a time ------------------------------------------------------------

    def lock(self) -> None:
        """Take the campaign's lock (``<journal>.lock``, released when the process ends, however
        it ends); JournalMismatchError when another process holds it."""
        if self._lock_handle is not None:
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no cross-process guard
            return
        handle = open(f"{self.path}.lock", "w")  # noqa: SIM115 - held until unlock()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise JournalMismatchError(
                f"{self.path} is in use by another run of this campaign", field="journal"
            ) from None
        self._lock_handle = handle

    @property
    def locked(self) -> bool:
        """True while this Journal holds the campaign's lock."""
        return self._lock_handle is not None

    def unlock(self) -> None:
        """Release the lock taken by ``lock()``."""
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    # --- what the campaign is --------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        """The campaign's description (campaign id, account, source, options)."""
        rows = self._conn.execute("SELECT key, value FROM meta").fetchall()
        return {key: json.loads(value) for key, value in rows}

    def set_meta(self, **values: Any) -> None:
        """Store entries of the campaign's description (JSON values)."""
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [(key, json.dumps(value, ensure_ascii=False)) for key, value in values.items()],
            )

    def bind(self, *, client_no: str, campaign_id: str | None = None, bulk: bool = False) -> str:
        """The campaign id, recorded on first use with the account and the send method; a
        journal of another account, campaign or method raises JournalMismatchError."""
        meta = self.meta()
        known = meta.get("campaign_id")
        if known is None:
            chosen = campaign_id or str(uuid.uuid4())
            _campaign_uuid(chosen)
            self.set_meta(campaign_id=chosen, client_no=client_no, bulk=bulk, created=time.time())
            return chosen
        if campaign_id is not None and campaign_id != known:
            raise JournalMismatchError(
                f"{self.path} is campaign {known}, not {campaign_id}", field="journal"
            )
        if meta.get("client_no") != client_no:
            raise JournalMismatchError(
                f"{self.path} was sent from account {meta.get('client_no')}, not {client_no}: "
                "its messages cannot be looked up from this one",
                field="journal",
            )
        if bool(meta.get("bulk")) != bulk:
            method = "SendBulkSMS" if meta.get("bulk") else "SendSMSWithMultiMessage"
            raise JournalMismatchError(
                f"{self.path} was sent with {method}: resume it the same way", field="journal"
            )
        return str(known)

    # --- rows ------------------------------------------------------------------------------

    def window(self, first: int, last: int) -> dict[int, JournalRow]:
        """The rows with positions ``first`` to ``last`` (inclusive), by position."""
        rows = self._conn.execute(
            "SELECT idx, guid, phone, digest, state, code, reason FROM message"
            " WHERE idx BETWEEN ? AND ?",
            (first, last),
        ).fetchall()
        return {
            r[0]: JournalRow(r[0], r[1], r[2], r[3], JournalState(r[4]), r[5], r[6]) for r in rows
        }

    def submit(self, rows: Iterable[tuple[int, str, str, bytes]]) -> None:
        """Mark rows ``(index, guid, phone, digest)`` submitted: their request may go out now."""
        now = time.time()
        with self._write(durable=True) as conn:
            conn.executemany(_SUBMIT, [(*row, now) for row in rows])

    def record(
        self,
        rows: Iterable[tuple[int, str, str, bytes]],
        state: JournalState,
        code: int | None = None,
        reason: str | None = None,
    ) -> None:
        """Write rows ``(index, guid, phone, digest)`` in ``state`` (new rows or old ones)."""
        now = time.time()
        with self._write() as conn:
            conn.executemany(_RECORD, [(*row, state.value, code, reason, now) for row in rows])

    def update(self, changes: Iterable[tuple[int, JournalState, int | None, str | None]]) -> None:
        """Set ``(index, state, code, reason)`` on existing rows, in one transaction."""
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                _UPDATE,
                [(state.value, code, reason, now, idx) for idx, state, code, reason in changes],
            )

    def set_statuses(self, changes: Iterable[tuple[int, JournalState, int | None]]) -> None:
        """Set ``(index, state, SmsStatus)`` from GetSMSStatus answers, in one transaction."""
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                _STATUS, [(state.value, status, now, idx) for idx, state, status in changes]
            )

    def found(self, changes: Iterable[tuple[int, JournalState, int | None]], reason: str) -> None:
        """Mark open rows ``(index, state, SmsStatus)`` as taken, found by GetSMSStatus."""
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                "UPDATE message SET state = ?, sms_status = ?, code = 200, reason = ?,"
                " updated = ? WHERE idx = ?",
                [(state.value, status, reason, now, idx) for idx, state, status in changes],
            )

    def batches(
        self, states: Iterable[JournalState], size: int = LOOKUP_BATCH
    ) -> Iterator[list[tuple[int, str]]]:
        """``(index, guid)`` of the rows in ``states``, in position order, ``size`` at a time.

        Rows may be updated between batches: each batch starts after the last position given.
        """
        wanted = [s.value for s in states]
        marks = ", ".join("?" * len(wanted))
        after = -1
        while True:
            rows = self._conn.execute(
                f"SELECT idx, guid FROM message WHERE idx > ? AND state IN ({marks})"  # noqa: S608 -- placeholders only
                " ORDER BY idx LIMIT ?",
                (after, *wanted, size),
            ).fetchall()
            if not rows:
                return
            yield [(int(i), str(g)) for i, g in rows]
            after = rows[-1][0]

    def last_update(self, states: Iterable[JournalState]) -> float | None:
        """When a row in ``states`` last changed (epoch seconds), or None when there is none."""
        wanted = [s.value for s in states]
        marks = ", ".join("?" * len(wanted))
        row = self._conn.execute(
            f"SELECT MAX(updated) FROM message WHERE state IN ({marks})",  # noqa: S608 -- placeholders only
            wanted,
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def counts(self) -> dict[JournalState, int]:
        """How many rows are in each state (every state listed, zeros included)."""
        found = dict(self._conn.execute("SELECT state, COUNT(*) FROM message GROUP BY state"))
        return {state: int(found.get(state.value, 0)) for state in JournalState}

    def status_counts(self) -> dict[SmsStatus | None, int]:
        """How many taken messages are in each SmsStatus (None: not looked up yet)."""
        rows = self._conn.execute(
            "SELECT sms_status, COUNT(*) FROM message"
            " WHERE state IN ('accepted', 'delivered', 'failed') GROUP BY sms_status"
        ).fetchall()
        return {None if s is None else SmsStatus(s): int(n) for s, n in rows}

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM message").fetchone()[0])

    def export_csv(self, out: TextIO) -> int:
        """Write every row as CSV to ``out`` (header first, in input order); the row count."""
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_EXPORT_COLUMNS)
        count = 0
        cursor = self._conn.execute(
            "SELECT idx, guid, phone, state, sms_status, code, reason, attempts, updated"
            " FROM message ORDER BY idx"
        )
        for idx, guid, phone, state, status, code, reason, attempts, updated in cursor:
            name = None if status is None else _status_name(status)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated))
            writer.writerow(
                [idx + 1, guid, phone, state, status, name, code, reason, attempts, stamp]
            )
            count += 1
        return count


def _status_name(status: int) -> str:
    # FIBO's name for a status the journal holds; a number no SmsStatus has, as it is.
    try:
        return SmsStatus(status).fibo_name
    except ValueError:
        return str(status)


def _campaign_uuid(campaign_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(campaign_id)
    except ValueError:
        # Any text names a campaign; a UUID is derived from it.
        return uuid.uuid5(uuid.NAMESPACE_URL, f"fibo-soap:campaign:{campaign_id}")


def _digest(phone: str, body: str) -> bytes:
    return hashlib.blake2b(f"{phone}\x00{body}".encode(), digest_size=8).digest()


# --- the I/O the plan needs --------------------------------------------------------------------


@runtime_checkable
class Gateway(Protocol):
    """The network side of a campaign: three calls, each blocking, each raising FiboError.

    :class:`AsyncGateway` has the same three as coroutines; the plan and the journal do not
    change.
    """

    def balance(self) -> int | None:
        """Messages the account may still send (None: not limited, or not to be checked)."""
        ...

    def send(self, messages: Sequence[Message]) -> BatchReceipt:
        """Send one chunk; the GUIDs taken and rejected."""
        ...

    def lookup(self, guids: Sequence[str]) -> list[SmsStatusRow]:
        """The rows GetSMSStatus has for ``guids`` (unknown ones are absent)."""
        ...


class _GatewayOptions(Generic[_ClientT]):
    """What ClientGateway and AsyncGateway share: the options, and what each call means. The
    two differ only in whether they await the client's methods."""

    def __init__(
        self,
        client: _ClientT,
        *,
        service_type: str | int | None = None,
        sender_name: str | None = None,
        bulk: bool = False,
        check_balance: bool = True,
    ) -> None:
        self.client = client
        self.service_type = None if service_type is None else str(service_type).strip()
        self.sender_name = sender_name
        self.bulk = bulk
        self.check_balance = check_balance

    def _limited(self) -> bool:
        """True when the balance is to be read: checked, and not the free test service type."""
        chosen = self.service_type or self.client.service_type
        return self.check_balance and chosen != TEST_SERVICE_TYPE

    def _send_call(self, messages: Sequence[Message]) -> tuple[str, dict[str, Any]]:
        """The client method that sends a chunk, and its keyword arguments."""
        if self.bulk:
            return "send_bulk_sms", {"service_type": self.service_type}
        return "send_multi_message", {
            "sender_name": self.sender_name,
            "service_type": self.service_type,
        }

    def _receipt(self, messages: Sequence[Message], answer: Any) -> BatchReceipt:
        """The receipt of a chunk from the client's answer (SendBulkSMS answers with no GUIDs:
        the whole chunk is taken)."""
        if self.bulk:
            return BatchReceipt(accepted=tuple(m.guid or "" for m in messages), rejected=())
        assert isinstance(answer, BatchReceipt)
        return answer


class ClientGateway(_GatewayOptions["FiboClient"]):
    """A Gateway over a FiboClient: SendSMSWithMultiMessage (SendBulkSMS with ``bulk``),
    GetSMSStatus, GetClientBalance. The client's own retries, fallback and look-ups apply to
    every call. ``check_balance=False``, and the free test service type, put no limit."""

    def balance(self) -> int | None:
        if not self._limited():
            return None
        return self.client.get_balance(self.service_type)

    def send(self, messages: Sequence[Message]) -> BatchReceipt:
        name, options = self._send_call(messages)
        return self._receipt(messages, getattr(self.client, name)(messages, **options))

    def lookup(self, guids: Sequence[str]) -> list[SmsStatusRow]:
        return self.client.get_sms_status(guids)


class AsyncGateway(_GatewayOptions["AsyncFiboClient"]):
    """ClientGateway's twin over an AsyncFiboClient: the same three calls, awaited."""

    async def balance(self) -> int | None:
        if not self._limited():
            return None
        return await self.client.get_balance(self.service_type)

    async def send(self, messages: Sequence[Message]) -> BatchReceipt:
        name, options = self._send_call(messages)
        return self._receipt(messages, await getattr(self.client, name)(messages, **options))

    async def lookup(self, guids: Sequence[str]) -> list[SmsStatusRow]:
        return await self.client.get_sms_status(guids)


def message_check(client: FiboClient | AsyncFiboClient) -> Callable[[str, str], str | None]:
    """A check of one message exactly as ``client`` checks a send: None when it would go out,
    else why not. (Phone normalization and text preparation with the client's ``region``,
    ``wire_format``, ``accents`` and ``max_parts``.)"""
    region, wire, accents, max_parts = (
        client.region,
        client.wire_format,
        client.accents,
        client.max_parts,
    )

    def check(number: str, body: str) -> str | None:
        try:
            phones.normalize(number, region=region, wire=wire)
            prepared = texts.prepare(body, accents=accents, max_parts=max_parts)
            if len(prepared) > MAX_MESSAGE_CHARS:
                raise MessageTooLongError(
                    f"message has {len(prepared)} characters; FIBO takes at most "
                    f"{MAX_MESSAGE_CHARS}",
                    field="message",
                )
        except InvalidInputError as exc:
            return exc.detail
        return None

    return check


# --- the plan: every decision, no network I/O ---------------------------------------------------


@dataclass(slots=True)
class Item:
    """A message on its way: position, GUID, phone and text as given, and its digest."""

    index: int
    guid: str
    phone: str
    text: str
    digest: bytes

    def row(self) -> tuple[int, str, str, bytes]:
        return (self.index, self.guid, self.phone, self.digest)


@dataclass(slots=True)
class Chunk:
    """One request's worth of messages, submitted in the journal before it goes out."""

    items: list[Item]
    number: int

    def messages(self) -> list[Message]:
        return [Message(i.phone, i.text, i.guid) for i in self.items]


@dataclass(slots=True)
class ChunkResult:
    """What the gateway said about a chunk: a receipt, or the error; for an AmbiguousSendError,
    the GUIDs a later look-up of its unknown messages found (``found``; None when there were
    none to ask about, or that look-up failed too)."""

    receipt: BatchReceipt | None = None
    error: BaseException | None = None
    found: frozenset[str] | None = None


class SendPlan:
    """The decisions of ``send_many``, with the network left out.

    The driver calls ``advance(slots)`` for the chunks to send now (each already submitted in the
    journal), sends them through a Gateway, and hands each answer to ``complete()``. Outcomes
    collect in ``ready`` (bounded: the plan reads no more input while a chunk's worth waits
    there); ``finished`` turns True once every input message has an outcome and nothing is in
    flight.

    Balance: with a ``budget`` (the balance when the run started), no chunk starts unless the
    balance left, minus what chunks in flight may take, covers it; a chunk that does not fit
    waits for those in flight, then shrinks to what is left; at zero the run stops and every
    message not sent gets NOT_SENT with reason "balance". FIBO's 102/104 stop it the same way.
    Any other failure of a chunk stops the run too (the client has already retried it): the
    chunks in flight finish, and the rest of the input is read and recorded as NOT_SENT.
    """

    def __init__(
        self,
        messages: Iterable[Entry],
        *,
        campaign_id: str,
        journal: Journal | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        budget: int | None = None,
        check: Callable[[str, str], str | None] | None = None,
    ) -> None:
        _check_chunk_size(chunk_size)
        self._source = enumerate(messages)
        self._prefix = _campaign_uuid(campaign_id).bytes
        self.campaign_id = campaign_id
        self.journal = journal
        self.chunk_size = chunk_size
        self.budget = budget
        self._check = check
        self._sendable: deque[Item] = deque()
        self.ready: deque[Outcome] = deque()
        self.summary = Summary(balance=budget)
        self._reserved = 0
        self._in_flight = 0
        self._chunks = 0
        self._exhausted = False
        self._retried: set[int] = set()
        self.stopped: str | None = None
        self.error: BaseException | None = None
        self._stop_reason = ""

    @property
    def finished(self) -> bool:
        """True once every message read has an outcome, the input is done and nothing flies."""
        return self._exhausted and not self._sendable and not self._in_flight

    @property
    def in_flight(self) -> int:
        """Chunks sent and not yet completed."""
        return self._in_flight

    def guid(self, index: int) -> str:
        """The GUID of the message at ``index``: the same in every run of this campaign,
        ``uuid5(campaign UUID, str(index))``."""
        # uuid.uuid5 without building UUID objects: this runs once per message.
        digest = hashlib.sha1(self._prefix + str(index).encode()).digest()  # noqa: S324 - RFC 4122 v5
        return guid_text(digest, 5)

    # --- reading ---------------------------------------------------------------------------

    def _emit(self, outcome: Outcome) -> None:
        self.ready.append(outcome)
        self.summary.add(outcome)

    def _read(self) -> None:
        raw = list(islice(self._source, self.chunk_size))
        if not raw:
            self._exhausted = True
            return
        known = self.journal.window(raw[0][0], raw[-1][0]) if self.journal else {}
        refused: list[tuple[Item, str]] = []
        for index, entry in raw:
            item, refusal = self._item(index, entry)
            row = known.get(index)
            if row is not None:
                if row.digest != item.digest:
                    raise JournalMismatchError(
                        f"message {index + 1} is not the one the journal holds at that position: "
                        "this is another input than the campaign's",
                        field="messages",
                    )
                state = _AS_OUTCOME.get(row.state)
                if state is not None:
                    self._emit(
                        Outcome(index, row.guid, item.phone, state, row.code, row.reason, True)
                    )
                    continue
            if refusal is not None:
                refused.append((item, refusal))
                self._emit(
                    Outcome(index, item.guid, item.phone, OutcomeState.REFUSED, None, refusal)
                )
            else:
                self._sendable.append(item)
        if refused and self.journal is not None:
            for item, reason in refused:
                self.journal.record([item.row()], JournalState.REFUSED, None, reason)

    def _item(self, index: int, entry: Entry) -> tuple[Item, str | None]:
        if isinstance(entry, Refusal):
            number, body, guid, refusal = entry.phone, "", None, entry.reason
            digest = _digest(number, f"\x00refused\x00{entry.reason}")
            return Item(index, self.guid(index), number, body, digest), refusal
        if isinstance(entry, Message):
            number, body, guid = entry.phone, entry.text, entry.guid
        elif isinstance(entry, tuple) and len(entry) in (2, 3):
            number, body = entry[0], entry[1]
            guid = entry[2] if len(entry) == 3 else None
        else:
            bad = Item(index, self.guid(index), str(entry)[:40], "", _digest(str(entry), ""))
            return bad, "not a message: give Message(phone, text) or (phone, text[, guid])"
        if not isinstance(number, str) or not isinstance(body, str):
            bad = Item(index, self.guid(index), str(number), "", _digest(str(number), str(body)))
            return bad, "phone and text must be strings"
        if not guid:
            return Item(index, self.guid(index), number, body, _digest(number, body)), None
        # The caller's GUID, checked by the rule the client applies (text.check_guid) before it
        # joins a chunk: the client would refuse the whole chunk for it.
        try:
            texts.check_guid(guid)
        except InvalidInputError as exc:
            shown = guid if isinstance(guid, str) else self.guid(index)
            return Item(index, shown, number, body, _digest(number, body)), exc.detail
        return Item(index, guid, number, body, _digest(number, body)), None

    # --- deciding --------------------------------------------------------------------------

    def advance(self, slots: int) -> list[Chunk]:
        """The chunks to send now (at most ``slots``), each submitted in the journal; reads input
        as needed, adding the outcomes that need no request to ``ready``."""
        chunks: list[Chunk] = []
        while len(self.ready) < self.chunk_size:
            if len(self._sendable) < self.chunk_size and not self._exhausted:
                self._read()
                continue
            if self.stopped is not None:
                self._drop_sendable()
                if self._exhausted:
                    break
                continue
            if not self._sendable or len(chunks) >= slots:
                break
            chunk = self._next_chunk()
            if chunk is None:
                if self.stopped is not None:
                    continue  # the balance ran out: what is left is recorded as not sent
                break
            chunks.append(chunk)
        return chunks

    def _next_chunk(self) -> Chunk | None:
        size = min(self.chunk_size, len(self._sendable))
        if self.budget is not None:
            available = self.budget - self._reserved
            if available < size:
                if self._in_flight:
                    return None  # those in flight may be rejected, and leave room
                if available <= 0:
                    self._stop("balance", None, "the balance ran out")
                    return None
                size = available
        items = [self._sendable.popleft() for _ in range(size)]
        if self.journal is not None:
            self.journal.submit(item.row() for item in items)
        self._reserved += size
        self._in_flight += 1
        self._chunks += 1
        self.summary.requests += 1
        return Chunk(items, self._chunks)

    def _stop(self, why: str, error: BaseException | None, reason: str) -> None:
        if self.stopped is None:
            self.stopped, self.error, self._stop_reason = why, error, reason
            self.summary.stopped, self.summary.error = why, error

    def _drop_sendable(self) -> None:
        if not self._sendable:
            return
        items = list(self._sendable)
        self._sendable.clear()
        reason = f"not sent: {self._stop_reason}"
        code = getattr(self.error, "code", None) if self.stopped == "balance" else None
        if self.journal is not None:
            self.journal.record((i.row() for i in items), JournalState.NOT_SENT, code, reason)
        for item in items:
            self._emit(
                Outcome(item.index, item.guid, item.phone, OutcomeState.NOT_SENT, code, reason)
            )

    # --- answers ---------------------------------------------------------------------------

    def complete(self, chunk: Chunk, result: ChunkResult) -> None:
        """Record what became of ``chunk``: outcomes to ``ready``, states to the journal."""
        self._in_flight -= 1
        self._reserved -= len(chunk.items)
        changes: list[tuple[Item, OutcomeState, int | None, str | None]] = []
        error = result.error
        if result.receipt is not None:
            rejected = set(result.receipt.rejected)
            for item in chunk.items:
                if item.guid in rejected:
                    changes.append((item, OutcomeState.REJECTED, None, "FIBO refused the number"))
                else:
                    changes.append((item, OutcomeState.ACCEPTED, 200, None))
        elif isinstance(error, AmbiguousSendError):
            changes = self._ambiguous(chunk, error, result.found)
        elif isinstance(error, InvalidInputError) and error.code is None:
            changes = self._refused(chunk, error)
        elif isinstance(error, FiboError):
            code = error.code
            if isinstance(error, BalanceError):
                self._stop("balance", error, f"FIBO refused the chunk with code {code}")
            else:
                self._stop("error", error, f"the campaign stopped: {error}")
            changes = [(i, OutcomeState.NOT_SENT, code, f"not sent: {error}") for i in chunk.items]
        else:
            # Not a FIBO error: a bug or an interruption while the request may have been out.
            self._stop("error", error, f"the campaign stopped: {error!r}")
            reason = f"unknown: {error!r}"
            changes = [(i, OutcomeState.AMBIGUOUS, None, reason) for i in chunk.items]
        self._settle(changes)

    def _ambiguous(
        self, chunk: Chunk, error: AmbiguousSendError, found: frozenset[str] | None
    ) -> list[tuple[Item, OutcomeState, int | None, str | None]]:
        # The client's look-up settled part of the chunk (error.accepted, error.unsent, and any
        # message left out of error.guids was confirmed); the driver's own look-up of the rest
        # (``found``; None when none could be made) settles what it can of error.unknown. What
        # neither settled stays ambiguous.
        unsure = set(error.guids)
        taken, absent = set(error.accepted), set(error.unsent)
        if found is not None:
            unknown = set(error.unknown)
            taken |= unknown & found
            absent |= unknown - found
        cause = error.__cause__
        if isinstance(cause, BalanceError):
            self._stop("balance", cause, f"FIBO refused the rest of a chunk with code {cause.code}")
        else:
            self._stop("error", error, f"the campaign stopped: {error}")
        code = cause.code if isinstance(cause, BalanceError) else None
        changes: list[tuple[Item, OutcomeState, int | None, str | None]] = []
        for item in chunk.items:
            if item.guid in taken or (unsure and item.guid not in unsure):
                changes.append((item, OutcomeState.ACCEPTED, 200, "found by GetSMSStatus"))
            elif item.guid in absent:
                changes.append(
                    (item, OutcomeState.NOT_SENT, code, "not sent: absent at the gateway")
                )
            else:
                changes.append(
                    (item, OutcomeState.AMBIGUOUS, None, "may or may not have been taken")
                )
        return changes

    def _refused(
        self, chunk: Chunk, error: InvalidInputError
    ) -> list[tuple[Item, OutcomeState, int | None, str | None]]:
        # The client refused the chunk before sending it: find the messages it refused, and
        # send the others again. A refusal no single message explains stops the campaign.
        self.summary.requests -= 1  # it never left the machine
        changes: list[tuple[Item, OutcomeState, int | None, str | None]] = []
        keep: list[Item] = []
        seen: set[str] = set()
        for item in chunk.items:
            why = self._check(item.phone, item.text) if self._check else None
            if why is None and item.guid in seen:
                why = f"GUID {item.guid} is used twice"
            seen.add(item.guid)
            if why is None:
                keep.append(item)
            else:
                changes.append((item, OutcomeState.REFUSED, None, why))
        if not changes or chunk.number in self._retried:
            self._stop("error", error, f"the campaign stopped: {error}")
            reason = f"not sent: {error}"
            return changes + [(i, OutcomeState.NOT_SENT, None, reason) for i in keep]
        self._retried.add(chunk.number)
        self._sendable.extendleft(reversed(keep))
        return changes

    def _settle(self, changes: Sequence[tuple[Item, OutcomeState, int | None, str | None]]) -> None:
        accepted = 0
        for item, state, code, reason in changes:
            if state is OutcomeState.ACCEPTED:
                accepted += 1
            self._emit(Outcome(item.index, item.guid, item.phone, state, code, reason))
        if self.budget is not None:
            self.budget -= accepted
            self.summary.balance = self.budget
        if self.journal is not None and changes:
            self.journal.update(
                (item.index, _JOURNAL_STATE[state], code, reason)
                for item, state, code, reason in changes
            )


_JOURNAL_STATE: Final = {
    OutcomeState.ACCEPTED: JournalState.ACCEPTED,
    OutcomeState.REJECTED: JournalState.REJECTED,
    OutcomeState.REFUSED: JournalState.REFUSED,
    OutcomeState.NOT_SENT: JournalState.NOT_SENT,
    OutcomeState.AMBIGUOUS: JournalState.AMBIGUOUS,
}


# --- resolving what a crash left open, and reconciliation --------------------------------------


@dataclass(slots=True)
class ReconcileReport:
    """What ``reconcile`` found: rows per journal state, taken messages per SmsStatus (None: not
    known yet), how many GUIDs were asked about, how many open rows turned out absent (now
    ``queued``, to be sent by the next run), how many accepted ones FIBO did not know, and
    ``in_use`` when a run of the campaign was going on (its open rows were left to it)."""

    states: dict[JournalState, int]
    statuses: dict[SmsStatus | None, int]
    asked: int = 0
    absent: int = 0
    unknown: int = 0
    in_use: bool = False

    @property
    def all_final(self) -> bool:
        """True when every row is final: delivered, failed, rejected or refused."""
        return all(n == 0 for s, n in self.states.items() if not s.is_final)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "states": {s.value: n for s, n in self.states.items()},
            "statuses": {
                ("unknown" if s is None else _status_name(s)): n for s, n in self.statuses.items()
            },
            "asked": self.asked,
            "absent": self.absent,
            "unknown": self.unknown,
            "in_use": self.in_use,
            "all_final": self.all_final,
        }


def _state_for(status: SmsStatus | None) -> JournalState:
    if status is None or not status.is_final:
        return JournalState.ACCEPTED
    return JournalState.DELIVERED if status is SmsStatus.SENT_SUCCESS else JournalState.FAILED


@dataclass(frozen=True, slots=True)
class _Wait:
    """A step of a look-up flow: wait ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class _Lookup:
    """A step of a look-up flow: ask GetSMSStatus about ``guids``; the flow gets the rows."""

    guids: Sequence[str]


#: A look-up flow: yields its waits and look-ups (no I/O of its own), is sent the rows of each
#: look-up, and returns its result. ``_drive`` runs one with blocking calls, ``_adrive`` awaited.
#: A step that raises (a look-up failing, a cancelled wait) is thrown into the flow where it
#: yielded, as if the flow had made the call itself: its ``finally`` clauses run at once.
_Flow = Generator[_Wait | _Lookup, list[SmsStatusRow] | None, T]


def _drive(flow: _Flow[T], gateway: Gateway, sleep: Callable[[float], None]) -> T:
    try:
        step = next(flow)
        while True:
            answer: list[SmsStatusRow] | None = None
            try:
                if isinstance(step, _Wait):
                    sleep(step.seconds)
                else:
                    answer = gateway.lookup(step.guids)
            except BaseException as exc:  # noqa: BLE001 - raised again, from inside the flow
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as stop:
        return cast(T, stop.value)


async def _adrive(flow: _Flow[T], gateway: AsyncGateway) -> T:
    try:
        step = next(flow)
        while True:
            answer: list[SmsStatusRow] | None = None
            try:
                if isinstance(step, _Wait):
                    await asyncio.sleep(step.seconds)
                else:
                    answer = await gateway.lookup(step.guids)
            except BaseException as exc:  # noqa: BLE001 - raised again, from inside the flow
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as stop:
        return cast(T, stop.value)


def _resolve_flow(
    journal: Journal, *, settle: float, batch_size: int = LOOKUP_BATCH
) -> _Flow[tuple[int, int]]:
    open_states = (JournalState.SUBMITTED, JournalState.AMBIGUOUS)
    last = journal.last_update(open_states)
    if last is None:
        return 0, 0
    if bool(journal.meta().get("bulk")):
        return 0, 0  # SendBulkSMS carries no GUIDs: nothing can be looked up
    wait_for = last + settle - time.time()
    if wait_for > 0:
        yield _Wait(wait_for)
    asked = absent = 0
    for batch in journal.batches(open_states, batch_size):
        rows = yield _Lookup([guid for _, guid in batch])
        status = {row.guid: row.status for row in rows or () if row.guid}
        changes: list[tuple[int, JournalState, int | None]] = []
        gone: list[tuple[int, JournalState, int | None, str | None]] = []
        for idx, guid in batch:
            if guid in status:
                found = status[guid]
                changes.append((idx, _state_for(found), None if found is None else int(found)))
            else:
                gone.append((idx, JournalState.QUEUED, None, "absent at the gateway after a stop"))
        asked += len(batch)
        absent += len(gone)
        journal.found(changes, "found by GetSMSStatus after a stop")
        journal.update(gone)
    return asked, absent


def _look_up_flow(guids: Sequence[str], *, settle: float) -> _Flow[frozenset[str]]:
    # The client's own look-up could not settle these; one more, after the server has had
    # time to finish, turns most of them into "taken" or "certainly not".
    if settle:
        yield _Wait(settle)
    found: set[str] = set()
    for start in range(0, len(guids), LOOKUP_BATCH):
        rows = yield _Lookup(guids[start : start + LOOKUP_BATCH])
        found.update(row.guid for row in rows or () if row.guid)
    return frozenset(found)


def _refuse_async(client: object, name: str, twin: str) -> None:
    """TypeError for an async client or gateway handed to the blocking ``name``: its calls would
    return coroutines that nothing awaits."""
    from fibo_soap.client import AsyncFiboClient  # loaded: the caller has made a client

    if isinstance(client, AsyncFiboClient | AsyncGateway):
        raise TypeError(
            f"{name}() is blocking and takes a FiboClient or a Gateway, not "
            f"{type(client).__name__}; use {twin}() for an AsyncFiboClient"
        )


def _refuse_blocking(client: object, name: str, twin: str) -> None:
    """TypeError for anything but an AsyncFiboClient or AsyncGateway handed to ``name``."""
    from fibo_soap.client import AsyncFiboClient

    if not isinstance(client, AsyncFiboClient | AsyncGateway):
        raise TypeError(
            f"{name}() takes an AsyncFiboClient or an AsyncGateway, not "
            f"{type(client).__name__}; use {twin}() for a FiboClient"
        )


def resolve(
    journal: Journal,
    gateway: Gateway,
    *,
    settle: float = DEFAULT_SETTLE,
    sleep: Callable[[float], None] = time.sleep,
    batch_size: int = LOOKUP_BATCH,
) -> tuple[int, int]:
    """Look up every row a previous run left ``submitted`` or ``ambiguous``: found ones become
    accepted, absent ones ``queued`` (certainly not taken; the next run sends them). Waits until
    ``settle`` seconds after the last of them was written first, as a request the dead process
    sent may still be running on the server. GetSMSStatus failing raises, and leaves them open.

    Returns ``(asked, absent)``. (``aresolve`` is the same over an AsyncGateway.)
    """
    _refuse_async(gateway, "resolve", "aresolve")
    return _drive(_resolve_flow(journal, settle=settle, batch_size=batch_size), gateway, sleep)


async def aresolve(
    journal: Journal,
    gateway: AsyncGateway,
    *,
    settle: float = DEFAULT_SETTLE,
    batch_size: int = LOOKUP_BATCH,
) -> tuple[int, int]:
    """``resolve`` over an AsyncGateway: the same look-ups and journal updates, awaited."""
    _refuse_blocking(gateway, "aresolve", "resolve")
    return await _adrive(_resolve_flow(journal, settle=settle, batch_size=batch_size), gateway)


def _reconcile_flow(
    journal: Journal | str | os.PathLike[str],
    *,
    batch_size: int,
    settle: float,
    progress: Callable[[int], None] | None,
) -> _Flow[ReconcileReport]:
    owned = not isinstance(journal, Journal)
    book = Journal(journal, create=False) if not isinstance(journal, Journal) else journal
    try:
        if book.meta().get("bulk"):
            return ReconcileReport(book.counts(), book.status_counts())
        asked = absent = 0
        held = book.locked
        try:
            book.lock()
        except JournalMismatchError:
            in_use = True
        else:
            in_use = False
            try:
                asked, absent = yield from _resolve_flow(book, settle=settle, batch_size=batch_size)
            finally:
                if not held:
                    book.unlock()
        unknown = 0
        for batch in book.batches([JournalState.ACCEPTED], batch_size):
            rows = yield _Lookup([guid for _, guid in batch])
            status = {row.guid: row.status for row in rows or () if row.guid}
            changes = [
                (idx, _state_for(status[guid]), _int_or_none(status[guid]))
                for idx, guid in batch
                if guid in status
            ]
            unknown += len(batch) - len(changes)
            book.set_statuses(changes)
            asked += len(batch)
            if progress is not None:
                progress(len(batch))
        return ReconcileReport(book.counts(), book.status_counts(), asked, absent, unknown, in_use)
    finally:
        if owned:
            book.close()


def reconcile(
    journal: Journal | str | os.PathLike[str],
    client: FiboClient | Gateway,
    *,
    batch_size: int = LOOKUP_BATCH,
    settle: float = DEFAULT_SETTLE,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int], None] | None = None,
) -> ReconcileReport:
    """Poll GetSMSStatus, ``batch_size`` GUIDs at a time, for every message of the journal that
    is not final; update the journal; the counts per state and per SmsStatus.

    Rows a stopped run left open (``submitted``, ``ambiguous``) are resolved first (see
    ``resolve``), but only under the campaign's lock: while a run is going on, its rows in flight
    are its own (a look-up could race its request). ``progress`` is called with the number of
    GUIDs of each batch answered. A SendBulkSMS campaign has no GUIDs to ask about.
    (``areconcile`` is the same over an AsyncFiboClient.)
    """
    _refuse_async(client, "reconcile", "areconcile")
    gateway = client if isinstance(client, Gateway) else ClientGateway(client)
    flow = _reconcile_flow(journal, batch_size=batch_size, settle=settle, progress=progress)
    return _drive(flow, gateway, sleep)


async def areconcile(
    journal: Journal | str | os.PathLike[str],
    client: AsyncFiboClient | AsyncGateway,
    *,
    batch_size: int = LOOKUP_BATCH,
    settle: float = DEFAULT_SETTLE,
    progress: Callable[[int], None] | None = None,
) -> ReconcileReport:
    """``reconcile`` over an AsyncFiboClient (or an AsyncGateway): the same look-ups, journal
    updates, lock and report, with GetSMSStatus awaited and the settle wait an
    ``asyncio.sleep``. The journal itself is read and written in the calling thread."""
    _refuse_blocking(client, "areconcile", "reconcile")
    gateway = client if isinstance(client, AsyncGateway) else AsyncGateway(client)
    flow = _reconcile_flow(journal, batch_size=batch_size, settle=settle, progress=progress)
    return await _adrive(flow, gateway)


def _int_or_none(status: SmsStatus | None) -> int | None:
    return None if status is None else int(status)


# --- the threaded driver -----------------------------------------------------------------------


class Sending:
    """A running ``send_many``: iterate it for the outcomes, as they come (chunks finish in any
    order; every message gets exactly one). ``summary`` counts them so far; ``run()`` consumes
    the rest and returns it. ``close()`` (or leaving a ``with`` block) waits for the chunks in
    flight, records them, and sends nothing more: the messages never read stay unsent, and a
    rerun with the journal sends them.
    """

    def __init__(
        self,
        plan: SendPlan,
        gateway: Gateway,
        *,
        concurrency: int,
        settle: float,
        sleep: Callable[[float], None],
        journal: Journal | None,
        owns_journal: bool,
        resume: Callable[[], None] | None = None,
    ) -> None:
        self.plan = plan
        self.gateway = gateway
        self.concurrency = concurrency
        self.settle = settle
        self.sleep = sleep
        self.journal = journal
        self._owns_journal = owns_journal
        self._resume = resume
        self._pool: ThreadPoolExecutor | None = None
        self._flying: dict[Future[ChunkResult], Chunk] = {}
        self._started: float | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def summary(self) -> Summary:
        """The counts so far (final once iteration ended)."""
        summary = self.plan.summary
        if self._started is not None:
            summary.elapsed = time.perf_counter() - self._started
        return summary

    def __iter__(self) -> Sending:
        return self

    def __next__(self) -> Outcome:
        plan = self.plan
        if self._started is None:
            self._started = time.perf_counter()
            try:
                if self._resume is not None:
                    self._resume()
            except BaseException:
                self.close()
                raise
        while True:
            if plan.ready:
                return plan.ready.popleft()
            if self._closed or (plan.finished and not self._flying):
                self.close()
                raise StopIteration
            try:
                self._step()
            except BaseException:
                self.close()
                raise

    def _step(self) -> None:
        plan = self.plan
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="fibo-campaign")
        for chunk in plan.advance(self.concurrency - len(self._flying)):
            self._flying[self._pool.submit(self._send, chunk)] = chunk
        if plan.ready or not self._flying:
            return
        done, _ = wait(list(self._flying), return_when=FIRST_COMPLETED)
        for future in done:
            chunk = self._flying.pop(future)
            plan.complete(chunk, future.result())

    def _send(self, chunk: Chunk) -> ChunkResult:
        try:
            return ChunkResult(receipt=self.gateway.send(chunk.messages()))
        except AmbiguousSendError as exc:
            return ChunkResult(error=exc, found=self._look_up(exc.unknown))
        except Exception as exc:  # noqa: BLE001 - the plan decides what every failure means
            return ChunkResult(error=exc)

    def _look_up(self, guids: Sequence[str]) -> frozenset[str] | None:
        if not guids:
            return None
        try:
            return _drive(_look_up_flow(guids, settle=self.settle), self.gateway, self.sleep)
        except FiboError:
            return None

    def run(self) -> Summary:
        """Consume every outcome; the summary."""
        for _ in self:
            pass
        return self.summary

    def close(self) -> None:
        """Wait for the chunks in flight, record them, send nothing more; release the journal."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            if self._flying:
                for future in list(self._flying):
                    chunk = self._flying.pop(future)
                    self.plan.complete(chunk, future.result())
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if self._started is not None:
                self.plan.summary.elapsed = time.perf_counter() - self._started
            if self.journal is not None:
                if self._owns_journal:
                    self.journal.close()
                else:
                    self.journal.unlock()

    def __enter__(self) -> Sending:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def send_many(
    client: FiboClient | Gateway,
    messages: Iterable[Entry],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    journal: Journal | str | os.PathLike[str] | None = None,
    campaign_id: str | None = None,
    service_type: str | int | None = None,
    sender_name: str | None = None,
    bulk: bool = False,
    check_balance: bool = True,
    settle: float = DEFAULT_SETTLE,
    sleep: Callable[[float], None] = time.sleep,
) -> Sending:
    """Send ``messages`` (any iterable, read as the sends go) in chunks of ``chunk_size`` through
    SendSMSWithMultiMessage (SendBulkSMS with ``bulk``), ``concurrency`` requests at a time;
    iterate the result for one :class:`Outcome` per message.

    Each message's GUID is its own when it has one, else derived from ``campaign_id`` and its
    position, so the same campaign gives the same GUIDs on every run. With ``journal`` (a path
    or a Journal), every chunk is recorded before and after it goes out, and a rerun over the
    same input first looks up (GetSMSStatus) what an earlier run left open, then sends only what
    the gateway never took; the journal keeps the campaign id. ``check_balance`` reads the
    balance first (GetClientBalance) and never starts a chunk it cannot cover. ``settle`` is the
    wait before a look-up may be believed when it says "absent". Nothing is sent until the first
    outcome is asked for.
    """
    _refuse_async(client, "send_many", "send_many_async")
    _check_options(concurrency, settle)
    gateway: Gateway
    check: Callable[[str, str], str | None] | None
    if isinstance(client, Gateway):
        gateway = client
        client_no = str(getattr(client, "client_no", "") or "")
        check = None
    else:
        gateway = ClientGateway(
            client,
            service_type=service_type,
            sender_name=sender_name,
            bulk=bulk,
            check_balance=check_balance,
        )
        client_no = client.client_no
        check = message_check(client)
    plan, book, owns = _prepare(
        messages,
        client_no=client_no,
        check=check,
        journal=journal,
        campaign_id=campaign_id,
        bulk=bulk,
        chunk_size=chunk_size,
    )

    def start() -> None:
        if book is not None:
            resolve(book, gateway, settle=settle, sleep=sleep)
        plan.budget = gateway.balance()
        plan.summary.balance = plan.budget

    return Sending(
        plan,
        gateway,
        concurrency=concurrency,
        settle=settle,
        sleep=sleep,
        journal=book,
        owns_journal=owns,
        resume=start,
    )


def _check_options(concurrency: int, settle: float) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError("concurrency must be a whole number ≥ 1", field="concurrency")
    if settle < 0:
        raise InvalidInputError("settle must not be negative", field="settle")


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise InvalidInputError("chunk_size must be a whole number", field="chunk_size")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidInputError(
            f"chunk_size must be between 1 and {MAX_CHUNK_SIZE}", field="chunk_size"
        )


def _prepare(
    messages: Iterable[Entry],
    *,
    client_no: str,
    check: Callable[[str, str], str | None] | None,
    journal: Journal | str | os.PathLike[str] | None,
    campaign_id: str | None,
    bulk: bool,
    chunk_size: int,
) -> tuple[SendPlan, Journal | None, bool]:
    """The plan of a run, and its journal (opened, locked and bound) and whether the run owns
    it: what both drivers start from."""
    owns = journal is not None and not isinstance(journal, Journal)
    book: Journal | None = (
        None if journal is None else journal if isinstance(journal, Journal) else Journal(journal)
    )
    try:
        if book is not None:
            book.lock()
            chosen = book.bind(client_no=client_no, campaign_id=campaign_id, bulk=bulk)
        else:
            chosen = campaign_id or str(uuid.uuid4())
        plan = SendPlan(
            messages, campaign_id=chosen, journal=book, chunk_size=chunk_size, check=check
        )
    except BaseException:
        if book is not None:
            book.close() if owns else book.unlock()
        raise
    return plan, book, owns


# --- the asyncio driver ------------------------------------------------------------------------


class AsyncSending:
    """``Sending``'s asyncio twin (what ``AsyncFiboClient.send_many`` returns): ``async for``
    it for the outcomes, as they come; ``summary`` counts them so far; ``await run()`` consumes
    the rest and returns it; ``await aclose()`` (or leaving an ``async with`` block) waits for
    the chunks in flight, records them, and sends nothing more. ``concurrency`` chunks go out at
    once as tasks of the running loop; the plan, the journal and what every answer means are
    those of ``send_many``.
    """

    def __init__(
        self,
        plan: SendPlan,
        gateway: AsyncGateway,
        *,
        concurrency: int,
        settle: float,
        journal: Journal | None,
        owns_journal: bool,
        resume: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.plan = plan
        self.gateway = gateway
        self.concurrency = concurrency
        self.settle = settle
        self.journal = journal
        self._owns_journal = owns_journal
        self._resume = resume
        self._flying: dict[asyncio.Task[ChunkResult], Chunk] = {}
        self._started: float | None = None
        self._closed = False

    @property
    def summary(self) -> Summary:
        """The counts so far (final once iteration ended)."""
        summary = self.plan.summary
        if self._started is not None:
            summary.elapsed = time.perf_counter() - self._started
        return summary

    def __aiter__(self) -> AsyncSending:
        return self

    async def __anext__(self) -> Outcome:
        plan = self.plan
        if self._started is None:
            self._started = time.perf_counter()
            try:
                if self._resume is not None:
                    await self._resume()
            except BaseException:
                await self.aclose()
                raise
        while True:
            if plan.ready:
                return plan.ready.popleft()
            if self._closed or (plan.finished and not self._flying):
                await self.aclose()
                raise StopAsyncIteration
            try:
                await self._step()
            except BaseException:
                await self.aclose()
                raise

    async def _step(self) -> None:
        plan = self.plan
        for chunk in plan.advance(self.concurrency - len(self._flying)):
            self._flying[asyncio.create_task(self._send(chunk))] = chunk
        if plan.ready or not self._flying:
            return
        done, _ = await asyncio.wait(list(self._flying), return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            chunk = self._flying.pop(task)
            plan.complete(chunk, task.result())

    async def _send(self, chunk: Chunk) -> ChunkResult:
        try:
            return ChunkResult(receipt=await self.gateway.send(chunk.messages()))
        except AmbiguousSendError as exc:
            return ChunkResult(error=exc, found=await self._look_up(exc.unknown))
        except Exception as exc:  # noqa: BLE001 - the plan decides what every failure means
            return ChunkResult(error=exc)

    async def _look_up(self, guids: Sequence[str]) -> frozenset[str] | None:
        if not guids:
            return None
        try:
            return await _adrive(_look_up_flow(guids, settle=self.settle), self.gateway)
        except FiboError:
            return None

    async def run(self) -> Summary:
        """Consume every outcome; the summary."""
        async for _ in self:
            pass
        return self.summary

    async def aclose(self) -> None:
        """Wait for the chunks in flight, record them, send nothing more; release the journal."""
        if self._closed:
            return
        self._closed = True
        try:
            for task in list(self._flying):
                chunk = self._flying.pop(task)
                # A cancelled caller still waits for what is on the wire: its fate is recorded.
                result = await asyncio.shield(task)
                self.plan.complete(chunk, result)
        finally:
            if self._started is not None:
                self.plan.summary.elapsed = time.perf_counter() - self._started
            if self.journal is not None:
                if self._owns_journal:
                    self.journal.close()
                else:
                    self.journal.unlock()

    async def __aenter__(self) -> AsyncSending:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def send_many_async(
    client: AsyncFiboClient | AsyncGateway,
    messages: Iterable[Entry],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    concurrency: int = DEFAULT_CONCURRENCY,
    journal: Journal | str | os.PathLike[str] | None = None,
    campaign_id: str | None = None,
    service_type: str | int | None = None,
    sender_name: str | None = None,
    bulk: bool = False,
    check_balance: bool = True,
    settle: float = DEFAULT_SETTLE,
) -> AsyncSending:
    """``send_many`` over an AsyncFiboClient (or an AsyncGateway): the same arguments, GUIDs,
    journal, resume and outcomes, with ``concurrency`` requests in flight as asyncio tasks.
    ``async for`` the result (in the loop the client belongs to). Nothing is sent until the
    first outcome is asked for.
    """
    _refuse_blocking(client, "send_many_async", "send_many")
    _check_options(concurrency, settle)
    gateway: AsyncGateway
    check: Callable[[str, str], str | None] | None
    if isinstance(client, AsyncGateway):
        gateway = client
        client_no = str(getattr(client.client, "client_no", "") or "")
        check = message_check(client.client)
    else:
        gateway = AsyncGateway(
            client,
            service_type=service_type,
            sender_name=sender_name,
            bulk=bulk,
            check_balance=check_balance,
        )
        client_no = client.client_no
        check = message_check(client)
    plan, book, owns = _prepare(
        messages,
        client_no=client_no,
        check=check,
        journal=journal,
        campaign_id=campaign_id,
        bulk=bulk,
        chunk_size=chunk_size,
    )

    async def start() -> None:
        if book is not None:
            await aresolve(book, gateway, settle=settle)
        plan.budget = await gateway.balance()
        plan.summary.balance = plan.budget

    return AsyncSending(
        plan,
        gateway,
        concurrency=concurrency,
        settle=settle,
        journal=book,
        owns_journal=owns,
        resume=start,
    )


# --- campaigns from a CSV file and a template ---------------------------------------------------

_PHONE_HEADERS: Final = ("phone", "phonenumber", "phone_number", "number", "to", "msisdn", "mobile")
_TEXT_HEADERS: Final = ("text", "message", "sms", "content", "body", "smsmessage")


@dataclass(frozen=True, slots=True)
class CsvSource:
    """A CSV file with a header, one message per row: the phone from ``phone_column`` (found by
    name when None: phone, number, msisdn, ...), the text from ``template`` (``{column}``
    placeholders, str.format syntax) or else from ``text_column`` (text, message, ...).

    Rows are read as the sends go; a row that cannot become a message (too few cells, an empty
    phone, a template that fails on it) becomes a :class:`Refusal` at its position.
    """

    path: Path
    template: str | None = None
    phone_column: str | None = None
    text_column: str | None = None
    delimiter: str = ","
    columns: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        template: str | None = None,
        phone_column: str | None = None,
        text_column: str | None = None,
        delimiter: str = ",",
    ) -> CsvSource:
        """The source, with its header read and the template checked against it;
        InvalidInputError names what does not fit."""
        source = Path(path)
        if not source.is_file():
            raise InvalidInputError(f"{source}: no such file", field="file", value=str(source))
        with _open_csv(source) as handle:
            try:
                header = next(_csv_reader(handle, delimiter), None)
            except csv.Error as exc:
                raise InvalidInputError(
                    f"{source}: the header row is not valid CSV: {exc}", field="file"
                ) from None
        if not header:
            raise InvalidInputError(f"{source} is empty: it needs a header row", field="file")
        columns = tuple(c.strip().lstrip("\ufeff") for c in header)
        lowered = [c.lower() for c in columns]
        phone_at = _column(columns, lowered, phone_column, _PHONE_HEADERS, "phone")
        if template is None:
            text_at = _column(columns, lowered, text_column, _TEXT_HEADERS, "text")
            text_column = columns[text_at]
        else:
            text_column = None
            for name in template_fields(template):
                if name not in columns:
                    raise InvalidInputError(
                        f"the template uses {{{name}}}, which is not a column of {source} "
                        f"(columns: {', '.join(columns)})",
                        field="template",
                    )
        return cls(
            source,
            template,
            columns[phone_at],
            text_column,
            delimiter,
            columns,
        )

    def fingerprint(self) -> str:
        """SHA-256 of the file: a journal refuses to resume over another file."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def estimate_rows(self) -> int:
        """About how many messages the file holds (its lines, less the header and blank ones at
        the end); exact unless a quoted cell spans lines."""
        count = 0
        last = b"\n"
        with open(self.path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                count += block.count(b"\n")
                last = block[-1:]
        if last != b"\n":
            count += 1
        return max(0, count - 1)

    def describe(self) -> dict[str, Any]:
        """What a journal stores to find the source again."""
        return {
            "path": str(self.path.resolve()),
            "template": self.template,
            "phone_column": self.phone_column,
            "text_column": self.text_column,
            "delimiter": self.delimiter,
        }

    def messages(self) -> Iterator[Message | Refusal]:
        """One Message (or Refusal) per data row, in file order; blank rows are skipped. A record
        that is not valid CSV (a quote left open, a cell beyond the csv module's size limit) is
        one Refusal naming its lines; reading goes on after it."""
        phone_at = self.columns.index(self.phone_column or "")
        text_at = None if self.text_column is None else self.columns.index(self.text_column)
        template = self.template
        width = len(self.columns)
        columns = self.columns
        with _open_csv(self.path) as handle:
            reader = _csv_reader(handle, self.delimiter)
            next(reader, None)
            while True:
                first = reader.line_num + 1
                try:
                    record = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    last = reader.line_num
                    why = (
                        f"line {first}: not valid CSV ({exc})"
                        if last <= first
                        else f"lines {first}-{last}: not valid CSV, a quoted cell opened on line "
                        f"{first} does not close where it should ({exc})"
                    )
                    yield Refusal("", why)
                    continue
                if not record or not any(cell.strip() for cell in record):
                    continue
                number = record[phone_at].strip() if phone_at < len(record) else ""
                # More cells than the header is most often a comma in an unquoted text: the
                # header's cells alone would send that text cut at the comma.
                if len(record) < width or any(cell.strip() for cell in record[width:]):
                    yield Refusal(number, cells_unlike_header(reader.line_num, len(record), width))
                    continue
                if not number:
                    yield Refusal(number, f"line {reader.line_num}: no phone number")
                    continue
                if template is None:
                    assert text_at is not None
                    yield Message(number, record[text_at])
                    continue
                try:
                    body = template.format_map(dict(zip(columns, record, strict=False)))
                except (ValueError, KeyError, IndexError, AttributeError) as exc:
                    yield Refusal(number, f"line {reader.line_num}: the template failed: {exc}")
                    continue
                yield Message(number, body)


def template_fields(template: str) -> list[str]:
    """The column names a template uses; InvalidInputError for what str.format would misread
    (positional ``{}``, attribute or index access, a bad brace)."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInputError(f"the template is not valid: {exc}", field="template") from None
    for _, name, spec, _ in parsed:
        if name is None:
            continue
        if not name or name.isdigit():
            raise InvalidInputError(
                "the template uses a positional {}: name a column, as in {name}", field="template"
            )
        if any(ch in name for ch in ".["):
            raise InvalidInputError(
                f"the template uses {{{name}}}: only plain column names are allowed",
                field="template",
            )
        if spec and "{" in spec:
            raise InvalidInputError(
                "the template nests placeholders in a format spec", field="template"
            )
        names.append(name)
    return names


def _column(
    columns: Sequence[str],
    lowered: Sequence[str],
    chosen: str | None,
    known: Sequence[str],
    what: str,
) -> int:
    if chosen is not None:
        if chosen in columns:
            return columns.index(chosen)
        if chosen.lower() in lowered:
            return lowered.index(chosen.lower())
        raise InvalidInputError(
            f"no column {chosen!r} in the header ({', '.join(columns)})", field=f"{what}_column"
        )
    for name in known:
        if name in lowered:
            return lowered.index(name)
    raise InvalidInputError(
        f"no {what} column in the header ({', '.join(columns)}): name one with "
        f"--{what}-column" + (" or give a --template" if what == "text" else ""),
        field=f"{what}_column",
    )


def _csv_reader(handle: TextIO, delimiter: str) -> CsvReader:
    """The reader of a campaign's CSV. Strict: a quote left open ends in an error at the end of
    the file, and a closing quote with more after it in its cell is an error, where a lenient
    reader would make one message of several rows."""
    return csv.reader(handle, delimiter=delimiter, strict=True)


def cells_unlike_header(line: int, cells: int, width: int) -> str:
    """Why a CSV row of ``cells`` cells is refused under a header of ``width``: the words of
    campaign files and of send-bulk files alike. More cells than the header is most often a
    comma in an unquoted text, and the reason says how to mend it."""
    fix = ": quote a text that holds a comma" if cells > width else ""
    return f"line {line}: {cells} cell{'' if cells == 1 else 's'}, the header has {width}{fix}"


@contextlib.contextmanager
def _open_csv(path: Path) -> Iterator[TextIO]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            yield handle
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path} is not UTF-8 text: {exc.reason}", field="file") from None


class Campaign:
    """A journaled send of a CSV source: the journal remembers the source (path, fingerprint,
    template, columns) and the send options, so that ``Campaign.open(journal)`` resumes it with
    nothing else given."""

    def __init__(self, journal: Journal, source: CsvSource, options: Mapping[str, Any]) -> None:
        self.journal = journal
        self.source = source
        self.options = dict(options)

    @classmethod
    def create(
        cls,
        journal: str | os.PathLike[str],
        source: CsvSource,
        *,
        client_no: str,
        **options: Any,
    ) -> tuple[Campaign, bool]:
        """The campaign of ``source`` in ``journal``: a new one, or the one the journal already
        holds for this very file and template (then True: it resumes). A journal of another file
        or template raises JournalMismatchError."""
        book = Journal(journal)
        try:
            meta = book.meta()
            fingerprint = source.fingerprint()
            resumed = "source" in meta
            if resumed:
                _same_source(book, meta, source, fingerprint)
                options = {**dict(meta.get("options", {})), **options}
            elif len(book):
                raise JournalMismatchError(
                    f"{book.path} holds messages of another run: use another journal",
                    field="journal",
                )
            # Options a send would refuse are refused before they are stored: every later
            # resume runs with what is stored.
            sending = _send_options(options)
            _check_options(sending["concurrency"], sending["settle"])
            _check_chunk_size(sending["chunk_size"])
            book.bind(client_no=client_no, bulk=sending["bulk"])
            if resumed:
                book.set_meta(options=options)
            else:
                book.set_meta(source=source.describe(), fingerprint=fingerprint, options=options)
            return cls(book, source, options), resumed
        except BaseException:
            book.close()
            raise

    @classmethod
    def open(cls, journal: str | os.PathLike[str]) -> Campaign:
        """The campaign a journal holds, its source checked unchanged."""
        book = Journal(journal, create=False)
        try:
            meta = book.meta()
            described = meta.get("source")
            if not isinstance(described, dict):
                raise JournalMismatchError(
                    f"{book.path} holds no file campaign (send_many journals resume from Python)",
                    field="journal",
                )
            source = CsvSource.open(
                described["path"],
                template=described.get("template"),
                phone_column=described.get("phone_column"),
                text_column=described.get("text_column"),
                delimiter=described.get("delimiter", ","),
            )
            _same_source(book, meta, source, source.fingerprint())
            return cls(book, source, dict(meta.get("options", {})))
        except BaseException:
            book.close()
            raise

    def send(self, client: FiboClient | Gateway, **overrides: Any) -> Sending:
        """Send (or resume) the campaign: ``send_many`` over the source with the journal."""
        return send_many(
            client,
            self.source.messages(),
            journal=self.journal,
            **_send_options({**self.options, **overrides}),
        )

    def close(self) -> None:
        self.journal.close()


def _send_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``send_many`` that a campaign's options give."""
    return {
        "chunk_size": int(options.get("chunk_size", DEFAULT_CHUNK_SIZE)),
        "concurrency": int(options.get("concurrency", DEFAULT_CONCURRENCY)),
        "service_type": options.get("service_type"),
        "sender_name": options.get("sender_name"),
        "bulk": bool(options.get("bulk", False)),
        "check_balance": bool(options.get("check_balance", True)),
        "settle": float(options.get("settle", DEFAULT_SETTLE)),
    }


def _same_source(
    book: Journal, meta: Mapping[str, Any], source: CsvSource, fingerprint: str
) -> None:
    described = meta.get("source") or {}
    if described.get("template") != source.template or (
        described.get("phone_column") != source.phone_column
    ):
        raise JournalMismatchError(
            f"{book.path} is the campaign of another template or phone column: "
            "use another journal, or `fibo-sms campaign resume` it as it was",
            field="journal",
        )
    if meta.get("fingerprint") != fingerprint:
        raise JournalMismatchError(
            f"{source.path} changed since {book.path} started sending it: the positions of its "
            "messages no longer match the journal; restore the file or use another journal",
            field="journal",
        )
