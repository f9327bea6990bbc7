"""Typed results and inputs: frozen dataclasses for rows, IntEnums for statuses, and the GUIDs
that name messages.

Times are timezone-aware, in Vietnam time (UTC+7), as FIBO writes them. A field the service left out
is ``None``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fibo_soap.text import Segments

#: FIBO's clock: Vietnam time, no daylight saving.
VN_TZ = timezone(timedelta(hours=7), "ICT")

#: The hex digit that starts a UUID's fourth group, for each hex digit of the byte there: its top
#: two bits made 10 (RFC 4122's variant), its two low bits kept.
_VARIANT = {f"{n:x}": f"{0x8 | (n & 0x3):x}" for n in range(16)}


def guid_text(raw: bytes, version: int) -> str:
    """The first 16 bytes of ``raw`` as an RFC 4122 UUID of ``version`` (1 to 8), spelled as
    ``str(uuid.UUID(bytes=raw[:16], version=version))`` spells it.

    Every send without a GUID of its own makes one; uuid.UUID's object, checks and
    conversions were two thirds of that cost, and nothing here needs them.
    """
    h = raw[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{version:x}{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def new_guid() -> str:
    """A random (version 4) GUID, as ``str(uuid.uuid4())`` makes one: 122 bits from os.urandom."""
    return guid_text(os.urandom(16), 4)


class SmsStatus(IntEnum):
    """State of an outgoing SMS (``SMSStatus`` in the vendor document)."""

    PENDING = 0
    SENDING = 1
    SENT_SUCCESS = 2
    SENT_FAILED = 3
    DELETED = 4
    TO_NUMBER_NOT_CORRECT = 5
    CAN_NOT_SEND = 6
    OUT_OF_DATE = 7
    SEND_MT_FAILED = 8
    OTHER = 9
    SPAM_SMS = 10
    RESTORE_TO_ACCOUNT_CLIENT = 11

    @property
    def is_final(self) -> bool:
        """True once the message will not change state any more."""
        return self not in (SmsStatus.PENDING, SmsStatus.SENDING)

    @property
    def fibo_name(self) -> str:
        """FIBO's own name for the status, as its documents write it (``SentSuccess``)."""
        return _SMS_STATUS_NAMES[self]


class IncomingStatus(IntEnum):
    """State of an incoming SMS (``ClientCommingSMSStatus`` in the vendor document)."""

    JUST_RECEIVED = 0
    PROCESSING = 1
    CONFIRMED = 2
    WRONG_SYNTAX = 3
    EXPIRED = 4
    NO_CLIENT_RESPONSE = 5

    @property
    def fibo_name(self) -> str:
        """FIBO's own name for the status, as its documents write it (``JustReceived``)."""
        return _INCOMING_STATUS_NAMES[self]


_SMS_STATUS_NAMES: dict[SmsStatus, str] = {
    SmsStatus.PENDING: "Pending",
    SmsStatus.SENDING: "Sending",
    SmsStatus.SENT_SUCCESS: "SentSuccess",
    SmsStatus.SENT_FAILED: "SentFailed",
    SmsStatus.DELETED: "Deleted",
    SmsStatus.TO_NUMBER_NOT_CORRECT: "ToNumberNotCorrect",
    SmsStatus.CAN_NOT_SEND: "CanNotSend",
    SmsStatus.OUT_OF_DATE: "OutOfDate",
    SmsStatus.SEND_MT_FAILED: "SendMTFailed",
    SmsStatus.OTHER: "Other",
    SmsStatus.SPAM_SMS: "SpamSMS",
    SmsStatus.RESTORE_TO_ACCOUNT_CLIENT: "RestoreToAccountClient",
}
_INCOMING_STATUS_NAMES: dict[IncomingStatus, str] = {
    IncomingStatus.JUST_RECEIVED: "JustReceived",
    IncomingStatus.PROCESSING: "Processing",
    IncomingStatus.CONFIRMED: "Confirmed",
    IncomingStatus.WRONG_SYNTAX: "WrongSyntax",
    IncomingStatus.EXPIRED: "Expired",
    IncomingStatus.NO_CLIENT_RESPONSE: "NoClientResponse",
}


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a batch: recipient, text, and the caller's GUID (generated when None)."""

    phone: str
    text: str
    guid: str | None = None


@dataclass(frozen=True, slots=True)
class SentSms:
    """A row of GetSMSSentList or GetClientSMSListOfPage."""

    id: int | None
    guid: str | None
    phone: str | None
    message: str | None
    created: datetime | None
    sent: datetime | None
    status: SmsStatus | None


@dataclass(frozen=True, slots=True)
class IncomingSms:
    """A row of GetCommingSMSList or GetClientCommingSMSNotDividePage."""

    id: int | None
    phone: str | None
    message: str | None
    status: IncomingStatus | None
    created: datetime | None
    sent: datetime | None
    service_type_id: int | None
    service_type_name: str | None


@dataclass(frozen=True, slots=True)
class SmsStatusRow:
    """A row of GetSMSStatus: the caller's GUID, its state, and the sender it went out as."""

    guid: str | None
    status: SmsStatus | None
    sender_name: str | None


@dataclass(frozen=True, slots=True)
class SenderName:
    """A row of GetClientSenderNameList: a registered brand name."""

    name: str | None
    status: int | None
    created: datetime | None


@dataclass(frozen=True, slots=True)
class HostingBalance:
    """A row of GetListSMSHostingWithBalance: a hosting service and the messages left on it."""

    service_type_name: str | None
    balance: int | None


@dataclass(frozen=True, slots=True)
class StatusDocument:
    """FIBO's status document ``<SMS><Code/><Message/><Time/></SMS>``, message trimmed."""

    code: int
    message: str
    time: str = ""


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """The gateway took one message: its GUID and FIBO's code (200) and message."""

    guid: str
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class BulkReceipt:
    """SendBulkSMS was accepted: how many messages went, with FIBO's code and message.

    SendBulkSMS carries no GUIDs, so its messages cannot be looked up later.
    """

    count: int
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class BatchReceipt:
    """A list send: the GUIDs the gateway accepted and those it rejected (ListWrongPhoneNumber)."""

    accepted: tuple[str, ...]
    rejected: tuple[str, ...]

    @property
    def all_accepted(self) -> bool:
        """True when no recipient was rejected."""
        return not self.rejected


@dataclass(frozen=True, slots=True)
class Estimate:
    """What a planned send costs: the segments of each message (in order), the total parts, and
    the balance of the service type it would be charged to (None when not looked up)."""

    messages: tuple[Segments, ...]
    total_parts: int
    service_type: str
    balance: int | None

    @property
    def enough(self) -> bool | None:
        """True when the balance covers every part; None when the balance was not looked up."""
        return None if self.balance is None else self.total_parts <= self.balance
