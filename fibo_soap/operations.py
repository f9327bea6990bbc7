"""The one description of FIBO's API: the 16 wire methods, their parameters in wire order, what
they return, and for list results the element of each column.

The client builds requests from this table, the codec decodes and writes list documents from it, the
emulator routes and validates with it, and a test checks the WSDL against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

from fibo_soap import models


class Result(Enum):
    """What the ``<MethodResult>`` text holds."""

    TEXT = "text"  # plain text (About)
    STATUS = "status"  # a status document (CheckClient)
    BALANCE = "balance"  # a bare integer, or a status document (GetClientBalance)
    LIST = "list"  # a list document, or a status document
    SEND = "send"  # a status document, or ListWrongPhoneNumber for list sends
    INT = "int"  # an s:int result (GetTotalPageOfClientSMS)


class Kind(Enum):
    """How a column's text becomes a Python value."""

    INT = "int"
    TEXT = "text"  # trimmed
    RAW = "raw"  # kept as sent (message bodies)
    TIME = "time"  # ISO 8601 with offset
    VN_TIME = "vn_time"  # dd/MM/yyyy(HH:mm:ss), Vietnam time
    SMS_STATUS = "sms_status"
    INCOMING_STATUS = "incoming_status"


@dataclass(frozen=True, slots=True)
class Column:
    """One element of a list row: its wire name (decoded case-insensitively) and model field."""

    element: str
    field: str
    kind: Kind


@dataclass(frozen=True, slots=True)
class RequestDocument:
    """An XML document passed as escaped text in one string parameter.

    Each ``row`` element holds one child per name in ``fields``; with no fields the row element's
    own text is the value (GetSMSStatus's ``<SMS><msguid>…</msguid></SMS>``).
    """

    root: str
    row: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Operation:
    """One wire method."""

    name: str
    params: tuple[str, ...]
    result: Result
    row: type | None = None
    columns: tuple[Column, ...] = ()
    sends: bool = False  # takes money and delivers SMS: retried only when provably not received
    guid_param: str | None = None  # the parameter whose value or document carries the GUIDs
    documents: tuple[tuple[str, RequestDocument], ...] = ()  # parameter → its document shape

    def document(self, param: str) -> RequestDocument | None:
        """The document shape of a parameter, or None when it is plain text."""
        return dict(self.documents).get(param)

    @property
    def authenticated(self) -> bool:
        """True when the method takes clientNo and clientPass."""
        return "clientPass" in self.params

    @property
    def returns_int(self) -> bool:
        """True when the WSDL types the result ``s:int`` rather than ``s:string``."""
        return self.result is Result.INT


CLIENT_NO: Final = "clientNo"
CLIENT_PASS: Final = "clientPass"  # noqa: S105 - a parameter name, not a secret
_ACCOUNT = (CLIENT_NO, CLIENT_PASS)

BULK_DOCUMENT: Final = RequestDocument("DocumentElement", "SMSLIST", ("PhoneNumber", "Message"))
PHONE_LIST_DOCUMENT: Final = RequestDocument(
    "Document", "ListMobilePhone", ("PhoneNumber", "MSGUID")
)
MULTI_MESSAGE_DOCUMENT: Final = RequestDocument(
    "Document", "ListMobilePhone", ("PhoneNumber", "MSGUID", "Message")
)
STATUS_QUERY_DOCUMENT: Final = RequestDocument("SMS", "msguid")

_SENT_COLUMNS = (
    Column("SMSID", "id", Kind.INT),
    Column("MSGUID", "guid", Kind.TEXT),
    Column("PhoneNumber", "phone", Kind.TEXT),
    Column("Message", "message", Kind.RAW),
)
_SENT_TAIL = (
    Column("SentDate", "sent", Kind.TIME),
    Column("SMSStatus", "status", Kind.SMS_STATUS),
)

_OPERATIONS = (
    Operation("About", (), Result.TEXT),
    Operation("CheckClient", _ACCOUNT, Result.STATUS),
    Operation("GetClientBalance", (*_ACCOUNT, "serviceType"), Result.BALANCE),
    Operation(
        "GetListSMSHostingWithBalance",
        _ACCOUNT,
        Result.LIST,
        models.HostingBalance,
        (
            Column("ServiceTypeName", "service_type_name", Kind.TEXT),
            Column("balance", "balance", Kind.INT),
        ),
    ),
    Operation(
        "GetClientSenderNameList",
        _ACCOUNT,
        Result.LIST,
        models.SenderName,
        (
            Column("clientSenderName", "name", Kind.TEXT),
            Column("clientSenderNameStatus", "status", Kind.INT),
            Column("Createddate", "created", Kind.TIME),
        ),
    ),
    Operation(
        "SendSMS",
        (*_ACCOUNT, "phoneNumber", "smsMessage", "smsGUID", "serviceType"),
        Result.SEND,
        sends=True,
        guid_param="smsGUID",
    ),
    Operation(
        "SendMaskedSMS",
        (*_ACCOUNT, "senderName", "phoneNumber", "smsMessage", "smsGUID", "serviceType"),
        Result.SEND,
        sends=True,
        guid_param="smsGUID",
    ),
    Operation(
        "SendBulkSMS",
        (*_ACCOUNT, "smsList", "serviceType"),
        Result.SEND,
        sends=True,
        documents=(("smsList", BULK_DOCUMENT),),
    ),
    Operation(
        "SendSMSToListMobilePhone",
        (*_ACCOUNT, "senderName", "smsContent", "listPhoneNumber", "serviceType"),
        Result.SEND,
        sends=True,
        guid_param="listPhoneNumber",
        documents=(("listPhoneNumber", PHONE_LIST_DOCUMENT),),
    ),
    Operation(
        "SendSMSWithMultiMessage",
        (*_ACCOUNT, "senderName", "smsMessage", "serviceType"),
        Result.SEND,
        sends=True,
        guid_param="smsMessage",
        documents=(("smsMessage", MULTI_MESSAGE_DOCUMENT),),
    ),
    Operation(
        "GetSMSStatus",
        (*_ACCOUNT, "smsList"),
        Result.LIST,
        models.SmsStatusRow,
        (
            Column("msguid", "guid", Kind.TEXT),
            Column("smsStatus", "status", Kind.SMS_STATUS),
            Column("sendername", "sender_name", Kind.TEXT),
        ),
        documents=(("smsList", STATUS_QUERY_DOCUMENT),),
    ),
    Operation(
        "GetSMSSentList",
        (*_ACCOUNT, "minutes"),
        Result.LIST,
        models.SentSms,
        (*_SENT_COLUMNS, Column("CreatedDate", "created", Kind.TIME), *_SENT_TAIL),
    ),
    Operation(
        "GetClientSMSListOfPage",
        (*_ACCOUNT, "pageNO", "fromDate", "toDate", "smsStatus", "serviceTypeID", "key"),
        Result.LIST,
        models.SentSms,
        (*_SENT_COLUMNS, Column("CreateDate", "created", Kind.TIME), *_SENT_TAIL),
    ),
    Operation("GetTotalPageOfClientSMS", (*_ACCOUNT, "key"), Result.INT),
    Operation(
        "GetCommingSMSList",
        (*_ACCOUNT, "minutes"),
        Result.LIST,
        models.IncomingSms,
        (
            Column("ClientCommingSMSID", "id", Kind.INT),
            Column("PhoneNumber", "phone", Kind.TEXT),
            Column("message", "message", Kind.RAW),
            Column("ClientCommingSMSStatus", "status", Kind.INCOMING_STATUS),
            Column("createddate", "created", Kind.TIME),
            Column("ServiceTypeID", "service_type_id", Kind.INT),
            Column("serviceTypename", "service_type_name", Kind.TEXT),
        ),
    ),
    Operation(
        "GetClientCommingSMSNotDividePage",
        (*_ACCOUNT, "fromDate", "toDate", "smsStatus", "serviceTypeID", "key"),
        Result.LIST,
        models.IncomingSms,
        (
            Column("ClientCommingSMSID", "id", Kind.INT),
            Column("PhoneNumber", "phone", Kind.TEXT),
            Column("message", "message", Kind.RAW),
            Column("SentDate", "sent", Kind.VN_TIME),
            Column("createddate", "created", Kind.TIME),
            Column("ServiceTypeID", "service_type_id", Kind.INT),
            Column("servicetypeName", "service_type_name", Kind.TEXT),
        ),
    ),
)

#: Wire method name → Operation, in the vendor document's order.
OPERATIONS: Final = MappingProxyType({op.name: op for op in _OPERATIONS})

#: Service type of the free test channel (vendor document 2.9, "SendSMSEmail").
TEST_SERVICE_TYPE: Final = "3"

#: Rows per page of GetClientSMSListOfPage / GetTotalPageOfClientSMS.
PAGE_SIZE: Final = 20

#: Longest message text FIBO takes, in characters.
MAX_MESSAGE_CHARS: Final = 1000

#: The format of fromDate / toDate in requests.
REQUEST_DATE_FORMAT: Final = "%m-%d-%Y"


def operation(name: str) -> Operation:
    """The operation of a wire method name; KeyError names it when there is none."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise KeyError(f"FIBO has no wire method {name!r}") from None
