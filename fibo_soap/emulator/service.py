"""What FIBO's methods do, run against the emulator's store: codes, balances, magic numbers.

This is the emulator's side of the operation table: each wire method takes its parameters (None
for an element a SOAP request left out, as .NET binds it) and returns the result text or int that
the protocol layer wraps. Result documents are written by the project's codec.

Magic phone numbers (any valid mobile number whose last four digits, once normalized, are these;
spaces, dashes and a +84 prefix do not matter):
- ``00NN`` with NN from 03 to 11: the message ends in SMSStatus NN (03 SentFailed,
  05 ToNumberNotCorrect, 10 SpamSMS, ...) instead of SentSuccess;
- ``0101``: the gateway refuses the number (code 101, or ListWrongPhoneNumber in a list send).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from fibo_soap import codec, phone
from fibo_soap.emulator.store import INTEGER_MAX, INTEGER_MIN, Store
from fibo_soap.errors import (
    CODE_ACCEPTED,
    CODE_AUTH,
    CODE_ERROR,
    CODE_NO_SMS,
    CODE_OK,
    CODE_OVER_BALANCE,
    CODE_PHONE,
    CODE_SERVICE_TYPE,
    CODE_ZERO_BALANCE,
    FiboError,
)
from fibo_soap.models import SmsStatus
from fibo_soap.operations import (
    BULK_DOCUMENT,
    MULTI_MESSAGE_DOCUMENT,
    OPERATIONS,
    PHONE_LIST_DOCUMENT,
    STATUS_QUERY_DOCUMENT,
    TEST_SERVICE_TYPE,
    Operation,
    RequestDocument,
)

ABOUT_TEXT = "www.Fibovietnam.com"
MESSAGES = {
    CODE_AUTH: "Please check your account!",
    CODE_PHONE: "Please check your Phone number!",
    CODE_ZERO_BALANCE: "Your balance is zero!",
    CODE_SERVICE_TYPE: " Service type is wrong! ",
    CODE_OVER_BALANCE: " The number of SMS is greater than SMS balance! ",
    CODE_ACCEPTED: "Sending...",
    CODE_NO_SMS: "No SMS!",
}

#: Last four digits of a number the gateway refuses.
REFUSED_SUFFIX = "0101"

_REFUSALS = {"zero_balance": CODE_ZERO_BALANCE, "over_balance": CODE_OVER_BALANCE}
_MICROSECOND = timedelta(microseconds=1)
#: The free test channel's service type, as the number a send reads.
_TEST_SERVICE_TYPE = int(TEST_SERVICE_TYPE)


class Clock:
    """The emulator's clock: real time plus an offset that tests move with ``advance``.

    ``timestamp()`` is the one reading of it (a subclass that stops or moves time overrides it
    and ``advance``); ``now()`` is the same instant as a datetime. ``offset_us``: how far it is
    ahead of real time, in microseconds (a restarted emulator's clock starts where it was).
    """

    def __init__(self, offset_us: int = 0) -> None:
        self._offset_us = offset_us
        self._lock = threading.Lock()

    @property
    def offset_us(self) -> int:
        """How far the clock is ahead of real time, in microseconds."""
        return self._offset_us

    def timestamp(self) -> float:
        """The emulator's current time as a POSIX timestamp, to the microsecond."""
        return (time.time_ns() // 1000 + self._offset_us) / 1_000_000

    def now(self) -> datetime:
        """The emulator's current time (aware, UTC)."""
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def advance(self, seconds: float) -> None:
        """Move the clock forward, so that delivery and time windows move with it.

        ValueError when that would take it out of the years 2 to 9998, where datetimes and the
        delays and windows counted from them fit (every later call would fail on the time).
        """
        try:
            step = timedelta(seconds=seconds) // _MICROSECOND
        except OverflowError:
            step = None
        with self._lock:
            if step is None or not _FIRST_INSTANT <= self.timestamp() + step / 1e6 < _LAST_INSTANT:
                raise ValueError(
                    f"advancing the clock by {seconds} seconds takes it out of the years 2 to 9998"
                )
            self._offset_us += step


#: The bounds of the clock: a year of delivery delays and time windows inside those of datetimes.
_FIRST_INSTANT = datetime(2, 1, 1, tzinfo=UTC).timestamp()
_LAST_INSTANT = datetime(9999, 1, 1, tzinfo=UTC).timestamp()


def final_status(number: str) -> SmsStatus:
    """The status a message to ``number`` ends in, by the magic-number rule: the last four digits
    of the number as normalized (``0909 120 003`` ends in SentFailed); ToNumberNotCorrect for a
    number the gateway refuses (see :func:`refused`), as a bulk send that takes one stores it."""
    fate = _fate(number)
    return SmsStatus.TO_NUMBER_NOT_CORRECT if fate is None else fate


def refused(number: str) -> bool:
    """True when the gateway refuses the number: not a valid mobile number, or magic ``0101``."""
    return _fate(number) is None


#: A normalized number's last four digits → its final status; None: the gateway refuses it.
_MAGIC: dict[str, SmsStatus | None] = {
    **{
        f"00{code:02d}": SmsStatus(code)
        for code in range(SmsStatus.SENT_FAILED, SmsStatus.RESTORE_TO_ACCOUNT_CLIENT + 1)
    },
    REFUSED_SUFFIX: None,
}


def _fate(number: str) -> SmsStatus | None:
    # The one reading of a number behind refused() and final_status(), and the only place a send
    # normalizes it: the final status of a message to it, None when the gateway refuses it.
    # The wire carries national (0…) or international digits without "+"; give the latter back
    # their "+" so a foreign number is read under its own country, not as a Vietnamese one.
    spelled = number if number.startswith(("0", "+")) else f"+{number}"
    try:
        normalized = phone.normalize(spelled)
    except FiboError:
        return None
    # Normalized numbers are digits only, whatever spaces, dashes or "+84" the sender wrote.
    return _MAGIC.get(normalized[-4:], SmsStatus.SENT_SUCCESS)


class MethodError(Exception):
    """The method itself failed: ASMX answers with a soap:Server fault or HTTP 500."""


class _Planned(NamedTuple):
    # A NamedTuple rather than a frozen dataclass: one is made per message, in a third the time.
    phone: str
    message: str
    guid: str | None
    refused: bool
    final: SmsStatus  # ToNumberNotCorrect when refused


def _plan(number: str | None, message: str | None, guid: str | None) -> _Planned:
    # Validation runs once per message, here, whatever the send does with the result. The GUID is
    # trimmed as GetSMSStatus trims the ones it is asked for, so the same string finds it.
    phone_number = (number or "").strip()
    fate = _fate(phone_number)
    return _Planned(
        phone_number,
        message or "",
        None if guid is None else guid.strip(),
        fate is None,
        SmsStatus.TO_NUMBER_NOT_CORRECT if fate is None else fate,
    )


class FiboService:
    """FIBO's 16 methods over a Store. ``delivery_delay`` is seconds from accepted to final."""

    def __init__(self, store: Store, clock: Clock, *, delivery_delay: float = 1.0) -> None:
        self.store = store
        self.clock = clock
        self.delivery_delay = delivery_delay  # the setter below
        self._handlers: dict[str, Callable[[str, Mapping[str, str | None], str], str | int]] = {
            "GetClientBalance": self._balance,
            "GetListSMSHostingWithBalance": self._hosting,
            "GetClientSenderNameList": self._senders,
            # The shared handlers are told the method: what a call does follows from the method
            # it names, never from which parameters it carries.
            "SendSMS": functools.partial(self._send_one, name="SendSMS"),
            "SendMaskedSMS": functools.partial(self._send_one, name="SendMaskedSMS"),
            "SendBulkSMS": self._send_bulk,
            "SendSMSToListMobilePhone": functools.partial(
                self._send_list, name="SendSMSToListMobilePhone"
            ),
            "SendSMSWithMultiMessage": functools.partial(
                self._send_list, name="SendSMSWithMultiMessage"
            ),
            "GetSMSStatus": self._statuses,
            "GetSMSSentList": self._sent_list,
            "GetClientSMSListOfPage": self._sent_page,
            "GetTotalPageOfClientSMS": self._total_pages,
            "GetCommingSMSList": self._incoming_list,
            "GetClientCommingSMSNotDividePage": self._incoming_range,
        }

    @property
    def delivery_delay(self) -> float:
        """Seconds from accepted to final (Sending after half of it)."""
        return self._delivery_delay

    @delivery_delay.setter
    def delivery_delay(self, seconds: float) -> None:
        self._delivery_delay = seconds
        # Every send adds these to its now, in whole microseconds as datetimes count them (the
        # Sending delay is half the final one, rounded as timedelta rounds it).
        final = timedelta(seconds=seconds)
        self._final_after_us = final // _MICROSECOND
        self._sending_after_us = (final / 2) // _MICROSECOND

    def advance(self, seconds: float) -> int:
        """Move the clock forward, and delivery with it; how many messages changed state.

        The store keeps how far the clock is ahead, so that a restart on the same file goes on
        from there (messages sent in the moved time would otherwise wait for real time to catch
        up). ValueError, nothing moved, when that takes the clock out of the years 2 to 9998.
        """
        self.clock.advance(seconds)
        self.store.set_clock_offset(self.clock.offset_us)
        return self.store.advance(self.clock.now())

    def call(self, op: Operation, params: Mapping[str, str | None], protocol: str) -> str | int:
        """The result of one method call: the text (or int) inside ``<OpResult>``/``<string>``."""
        if op.name == "About":
            return ABOUT_TEXT
        account = self.store.authenticate(
            params.get("clientNo") or "", params.get("clientPass") or ""
        )
        if account is None:
            return -1 if op.returns_int else _status(CODE_AUTH)
        client_no = params["clientNo"] or ""
        if op.name == "CheckClient":
            return codec.encode_status(CODE_OK, account)
        return self._handlers[op.name](client_no, params, protocol)

    # --- account ---------------------------------------------------------------------------

    def _balance(self, client_no: str, params: Mapping[str, str | None], _: str) -> str:
        service_type = _int(params.get("serviceType"))
        balance = None if service_type is None else self.store.balance(client_no, service_type)
        return str(-1 if balance is None else balance)

    def _hosting(self, client_no: str, params: Mapping[str, str | None], _: str) -> str:
        op = _op("GetListSMSHostingWithBalance")
        return codec.encode_rows(op, self.store.hosting_balances(client_no))

    def _senders(self, client_no: str, params: Mapping[str, str | None], _: str) -> str:
        op = _op("GetClientSenderNameList")
        return codec.encode_rows(op, self.store.sender_names(client_no))

    # --- sends -----------------------------------------------------------------------------

    def _send_one(
        self, client_no: str, params: Mapping[str, str | None], protocol: str, name: str
    ) -> str:
        service_type = _int(params.get("serviceType"))
        if service_type is None:
            return _status(CODE_SERVICE_TYPE)
        planned = _plan(params.get("phoneNumber"), params.get("smsMessage"), params.get("smsGUID"))
        if planned.refused:
            # A wrong service type is reported before a wrong number. A number that passes needs
            # no look-up here: submit refuses an unknown service type itself, storing nothing.
            if self.store.balance(client_no, service_type) is None:
                return _status(CODE_SERVICE_TYPE)
            return _status(CODE_PHONE)
        # SendMaskedSMS is the only single send that carries a senderName.
        sender = (params.get("senderName") or None) if name == "SendMaskedSMS" else None
        return _status(self._submit(client_no, service_type, (planned,), sender, protocol, name))

    def _send_bulk(self, client_no: str, params: Mapping[str, str | None], protocol: str) -> str:
        service_type = _int(params.get("serviceType"))
        if service_type is None or self.store.balance(client_no, service_type) is None:
            return _status(CODE_SERVICE_TYPE)
        rows = _document(BULK_DOCUMENT, params.get("smsList"))
        if rows is None:
            return codec.encode_status(CODE_ERROR, "smsList is not a valid document")
        planned = [_plan(p, m, None) for p, m in rows]
        return _status(
            self._submit(client_no, service_type, planned, None, protocol, "SendBulkSMS")
        )

    def _send_list(
        self, client_no: str, params: Mapping[str, str | None], protocol: str, name: str
    ) -> str:
        service_type = _int(params.get("serviceType"))
        if service_type is None or self.store.balance(client_no, service_type) is None:
            return _status(CODE_SERVICE_TYPE)
        if name == "SendSMSToListMobilePhone":
            rows = _document(PHONE_LIST_DOCUMENT, params.get("listPhoneNumber"))
            content = params.get("smsContent") or ""
            planned = None if rows is None else [_plan(p, content, g) for p, g in rows]
        else:
            rows = _document(MULTI_MESSAGE_DOCUMENT, params.get("smsMessage"))
            planned = None if rows is None else [_plan(p, m, g) for p, g, m in rows]
        if planned is None:
            return codec.encode_status(CODE_ERROR, "the message document is not valid")
        wrong = [item for item in planned if item.refused]
        good = [item for item in planned if not item.refused]
        sender = params.get("senderName")
        sender = None if sender in (None, "", "n/a") else sender
        if good:
            code = self._submit(client_no, service_type, good, sender, protocol, name)
            if code != CODE_ACCEPTED or not wrong:
                return _status(code)
        return codec.encode_wrong_phones(item.guid or "" for item in wrong)

    def _submit(
        self,
        client_no: str,
        service_type: int,
        planned: Sequence[_Planned],
        sender: str | None,
        protocol: str,
        operation: str,
    ) -> int:
        now = self.clock.timestamp()
        free = service_type == _TEST_SERVICE_TYPE
        if len(planned) == 1:
            # Every single send: the store takes the message's fields and timestamps, with no
            # Outgoing nor datetime made.
            item = planned[0]
            result = self.store.submit_one(
                client_no,
                service_type,
                item.phone,
                item.message,
                item.guid,
                sender,
                *self._delivery(item, now, free),
                now_ts=now,
                operation=operation,
                protocol=protocol,
                charge=not free,
            )
        else:
            result = self.store.submit_stamped(
                client_no,
                service_type,
                [
                    (item.phone, item.message, item.guid, sender, *self._delivery(item, now, free))
                    for item in planned
                ],
                now_ts=now,
                operation=operation,
                protocol=protocol,
                charge=not free,
            )
        if result.accepted:
            return CODE_ACCEPTED
        return _REFUSALS.get(result.reason, CODE_SERVICE_TYPE)

    def _delivery(
        self, item: _Planned, now: float, free: bool
    ) -> tuple[SmsStatus, float | None, float | None]:
        """How a message accepted at ``now`` is delivered: its final status, and when it is
        Sending and final (never, on the free channel), as timestamps."""
        if free:
            # The test channel stores messages and never delivers them.
            return SmsStatus.PENDING, None, None
        if item.refused:
            # Bulk sends do not refuse numbers up front; such messages fail at once.
            return item.final, now, now
        # Added in whole microseconds, then made a timestamp: the float nearest the instant, as
        # the clock's own readings are. A float sum (now + 2.7) can land a step past it, and a
        # clock moved by exactly the delay would then leave the message Sending.
        now_us = round(now * 1_000_000)
        return (
            item.final,
            (now_us + self._sending_after_us) / 1_000_000,
            (now_us + self._final_after_us) / 1_000_000,
        )

    # --- reads -----------------------------------------------------------------------------

    def _statuses(self, client_no: str, params: Mapping[str, str | None], _: str) -> str:
        rows = _document(STATUS_QUERY_DOCUMENT, params.get("smsList"))
        if rows is None:
            return codec.encode_status(CODE_ERROR, "smsList is not a valid document")
        self.store.advance(self.clock.now())
        guids = [(guid or "").strip() for (guid,) in rows]
        return codec.encode_rows(_op("GetSMSStatus"), self.store.statuses(client_no, guids))

    def _sent_list(self, client_no: str, params: Mapping[str, str | None], _: str) -> str:
        minutes = _int(params.get("minutes"))
        if minutes is None or minutes < 0:
            return codec.encode_status(CODE_ERROR, "minutes must be a whole number")
        now = self.clock.now()
        self.store.advance(now)
        return codec.encode_rows(
            _op("GetSMSSentList"), self.store.sent_since(client_no, minutes, now)
        )

    def _sent_page(self, client_no: str, params: Mapping[str, str | None], _: str) -> str:
        page = _int(params.get("pageNO"))
        try:
            from_day = codec.parse_request_date(params.get("fromDate") or "")
            to_day = codec.parse_request_date(params.get("toDate") or "")
        except ValueError:
            return codec.encode_status(CODE_ERROR, "dates are MM-DD-YYYY")
        if page is None or page < 1:
            return codec.encode_status(CODE_ERROR, "pageNO must be a whole number ≥ 1")
        self.store.advance(self.clock.now())
        rows = self.store.sent_page(
            client_no,
            page,
            from_day=from_day,
            to_day=to_day,
            status=_int(params.get("smsStatus")),
            service_type_id=_int(params.get("serviceTypeID")),
            key=params.get("key") or "",
        )
        return codec.encode_rows(_op("GetClientSMSListOfPage"), rows)

    def _total_pages(self, client_no: str, params: Mapping[str, str | None], _: str) -> int:
        key = params.get("key")
        return -1 if key is None else self.store.total_pages(client_no, key)

    def _incoming_list(self, client_no: str, params: Mapping[str, str | None], _: str) -> str:
        minutes = _int(params.get("minutes"))
        if minutes is None or minutes < 0:
            return codec.encode_status(CODE_ERROR, "minutes must be a whole number")
        rows = self.store.incoming_since(client_no, minutes, self.clock.now())
        return codec.encode_rows(_op("GetCommingSMSList"), rows)

    def _incoming_range(self, client_no: str, params: Mapping[str, str | None], _: str) -> str:
        try:
            from_day = codec.parse_request_date(params.get("fromDate") or "")
            to_day = codec.parse_request_date(params.get("toDate") or "")
        except ValueError:
            return codec.encode_status(CODE_ERROR, "dates are MM-DD-YYYY")
        if from_day is None or to_day is None:
            return codec.encode_status(CODE_ERROR, "fromDate and toDate are required")
        rows = self.store.incoming_range(
            client_no,
            from_day=from_day,
            to_day=to_day,
            status=_int(params.get("smsStatus")),
            service_type_id=_int(params.get("serviceTypeID")),
            key=params.get("key") or "",
        )
        if not rows:
            return _status(CODE_NO_SMS)
        return codec.encode_rows(_op("GetClientCommingSMSNotDividePage"), rows)


def _op(name: str) -> Operation:
    return OPERATIONS[name]


@functools.cache
def _status(code: int) -> str:
    # A constant document per code: written once, not on every send.
    return codec.encode_status(code, MESSAGES[code])


def _int(value: str | None) -> int | None:
    """A whole number parameter (FIBO's WSDL types them all as strings), None when it is not one.

    One beyond what the store's INTEGER holds is taken as its bound: a service type, status or
    page that far is one that nothing has, as it would be; minutes that many reach back as far as
    any.
    """
    text = (value or "").strip()
    try:
        number = int(text)
    except ValueError:
        return None
    return max(INTEGER_MIN, min(number, INTEGER_MAX))


def _document(shape: RequestDocument, value: str | None) -> list[tuple[str | None, ...]] | None:
    if not value:
        return None
    try:
        return codec.decode_document(shape, value, max_bytes=codec.MAX_XML_BYTES)
    except FiboError:
        return None
